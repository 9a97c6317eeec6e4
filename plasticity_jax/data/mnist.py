"""MNIST, from the four original IDX files: downloaded into a cache, or read from a folder; or from TFDS.

Three sources:

* ``'download'`` -- the four gzipped IDX files, downloaded on first use from the first mirror of :data:`MIRRORS`
  that answers into ``<cache dir>/mnist/`` (11 MB), each written atomically and checked against its md5; later
  loads find them there and never touch the network. Needs only the standard library.
* ``'tfds'`` -- ``tensorflow_datasets.load('mnist')``; needs the ``tfds`` extra
  (``pip install 'plasticity_jax[tfds]'``: TFDS and TensorFlow).
* ``'idx'`` -- the four original files (``train-images-idx3-ubyte.gz`` and friends, gzipped or not) read
  from a local directory. Each file's md5 is checked against the well-known checksum before decoding, and
  the decoded arrays are cached in one ``.npz`` file (the issue's "decoded .npy": an ``.npz`` holds the
  four arrays together) whose name carries the source files' md5s, so a different source never reuses a
  stale cache. A cache that cannot be read is discarded and rebuilt; cache writes are atomic.

``load_mnist`` picks ``'idx'`` when a directory is given (argument ``data_dir`` or environment variable
``PLASTICITY_JAX_DATA_DIR``) and ``'download'`` otherwise. Every failure of a data source raises
:class:`DataSourceError` with what failed, the paths involved and how to fix it.

Images are returned as uint8 in [0, 255]; normalisation is left to the problems that use them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
import warnings
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from plasticity_jax.data.source import DataSourceError, load_tfds

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "DataSourceError",
    "MNIST",
    "MIRRORS",
    "MNIST_FILES",
    "download_mnist",
    "load_mnist",
    "read_idx",
]

DATA_DIR_ENV = "PLASTICITY_JAX_DATA_DIR"
CACHE_DIR_ENV = "PLASTICITY_JAX_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/plasticity_jax"
SOURCES = ("auto", "idx", "download", "tfds")
OFFICIAL_URL = "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
# Where source 'download' fetches the gzipped files from, tried in order (the original site often refuses scripts).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_TIMEOUT_S = 60

_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801


class _FileSpec(NamedTuple):
    """The well-known md5 and size of one MNIST file, gzipped and uncompressed."""

    field: str  # the MNIST field it decodes into
    shape: tuple[int, ...]
    gz_md5: str
    gz_bytes: int
    raw_md5: str
    raw_bytes: int


# Keyed by the uncompressed file name; the gzipped file is the same name + ".gz".
MNIST_FILES: dict[str, _FileSpec] = {
    "train-images-idx3-ubyte": _FileSpec(
        "train_images", (60000, 28, 28),
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422, "6bbc9ace898e44ae57da46a324031adb", 47040016),
    "train-labels-idx1-ubyte": _FileSpec(
        "train_labels", (60000,),
        "d53e105ee54ea40749a09fcbcd1e9432", 28881, "a25bea736e30d166cdddb491f175f624", 60008),
    "t10k-images-idx3-ubyte": _FileSpec(
        "test_images", (10000, 28, 28),
        "9fb629c4189551a2d022fa330f9573f3", 1648877, "2646ac647ad5339dbf082846283269ea", 7840016),
    "t10k-labels-idx1-ubyte": _FileSpec(
        "test_labels", (10000,),
        "ec29112dd5afa0611ce80d1b7f02629c", 4542, "27ae3e4e09519cfbb04c329615203637", 10008),
}


class MNIST(NamedTuple):
    """The MNIST arrays: uint8 images (N, 28, 28) in [0, 255] and uint8 labels (N,) in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------


def load_mnist(data_dir: str | os.PathLike | None = None, *, source: str = "auto",
               cache_dir: str | os.PathLike | None = None) -> MNIST:
    """Loads MNIST.

    Args:
      data_dir: for ``source='idx'``, the folder holding the four IDX files, or a parent folder with them
        in ``mnist/`` (defaults to ``$PLASTICITY_JAX_DATA_DIR``). For ``source='tfds'``, the TFDS data
        directory (``None``: TFDS's default). Unused by ``'download'``.
      source: ``'idx'``, ``'download'``, ``'tfds'``, or ``'auto'`` (``'idx'`` if ``data_dir`` or
        ``$PLASTICITY_JAX_DATA_DIR`` is set, else ``'download'``).
      cache_dir: where ``'idx'`` and ``'download'`` cache the decoded arrays, and ``'download'`` the files in
        ``mnist/`` (defaults to ``$PLASTICITY_JAX_CACHE_DIR``, else ``~/.cache/plasticity_jax``).

    Returns:
      An :class:`MNIST` of uint8 arrays.

    Raises:
      ValueError: ``source`` is not one of :data:`SOURCES`.
      DataSourceError: the data source is missing, corrupt, or could not be loaded.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown MNIST source {source!r}; valid sources are {', '.join(map(repr, SOURCES))}.")
    if source == "auto":
        source = "idx" if data_dir is not None or _env_path(DATA_DIR_ENV) is not None else "download"
    if source == "tfds":
        return _load_tfds(data_dir)
    if source == "download":
        return _load_idx(download_mnist(_cache_dir(cache_dir) / "mnist"), cache_dir)
    return _load_idx(data_dir, cache_dir)


# --------------------------------------------------------------------------------------------------
# Download source
# --------------------------------------------------------------------------------------------------


def download_mnist(folder: str | os.PathLike, mirrors: tuple[str, ...] | None = None) -> Path:
    """Makes sure ``folder`` holds the four official gzipped IDX files, downloading those it lacks; returns it.

    A file already there with the right md5 is kept. Each missing (or corrupt) file is fetched from the first
    mirror that serves it with the official md5, through a temporary file renamed into place, so an interrupted
    download never leaves a partial file under the final name.

    Raises:
      DataSourceError: no mirror served a file, naming every URL tried and the offline fix.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for name, spec in MNIST_FILES.items():
        path = folder / (name + ".gz")
        if path.is_file() and _md5(path) == spec.gz_md5:
            continue
        failures = []
        for mirror in mirrors or MIRRORS:
            url = mirror + path.name
            try:
                _fetch(url, path, spec.gz_md5)
                break
            except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors; ValueError: bad md5 or URL.
                failures.append(f"  {url}: {e}")
        else:
            raise DataSourceError(
                f"Could not download MNIST file {path.name}. URLs tried:\n" + "\n".join(failures) + "\n"
                f"Fix: check the internet connection, or download the four files by hand into {folder} (or any "
                f"folder, then set data_dir / {DATA_DIR_ENV} to it).")
    return folder


def _fetch(url: str, path: Path, md5: str) -> None:
    """Downloads ``url`` to ``path`` atomically, refusing content whose md5 is not ``md5``."""
    tmp_name = None
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=f".{path.name}-", suffix=".tmp", delete=False) as f:
            tmp_name = f.name
            digest = hashlib.md5()
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f"md5 {digest.hexdigest()}, expected {md5}")
        os.replace(tmp_name, path)
        tmp_name = None
    finally:
        if tmp_name is not None:
            os.unlink(tmp_name)


# --------------------------------------------------------------------------------------------------
# IDX source
# --------------------------------------------------------------------------------------------------


def _env_path(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _load_idx(data_dir, cache_dir) -> MNIST:
    """Locates, verifies, and decodes (or reads from cache) the four IDX files."""
    if data_dir is None:
        data_dir = _env_path(DATA_DIR_ENV)
    if data_dir is None:
        raise DataSourceError(
            "MNIST source 'idx' needs a directory with the IDX files, but none was given.\n"
            f"Fix: pass data_dir=... or set the environment variable {DATA_DIR_ENV} to the folder holding "
            f"{', '.join(f + '.gz' for f in MNIST_FILES)} (or to its parent containing mnist/), "
            "or leave both unset to download them (source='download').")
    files = _find_idx_files(Path(data_dir).expanduser())
    md5s = {name: _verify_md5(name, path) for name, path in files.items()}

    cache_path = _cache_dir(cache_dir) / _cache_name(md5s)
    cached = _read_cache(cache_path)
    if cached is not None:
        return cached
    data = MNIST(**{MNIST_FILES[name].field: _decode_checked(name, path) for name, path in files.items()})
    _write_cache(cache_path, data)
    return data


def _find_idx_files(root: Path) -> dict[str, Path]:
    """Returns {file name: path} from ``root`` or ``root/mnist``; raises listing every place tried."""
    tried = []
    for folder in (root, root / "mnist"):
        if not folder.is_dir():
            tried.append(f"  {folder}  (not a directory)")
            continue
        found, missing = {}, []
        for name in MNIST_FILES:
            gz, raw = folder / (name + ".gz"), folder / name
            if gz.is_file():
                found[name] = gz
            elif raw.is_file():
                found[name] = raw
            else:
                missing.append(f"{gz} or {raw}")
        if not missing:
            return found
        tried.append(f"  {folder}  (missing: {'; '.join(missing)})")
    raise DataSourceError(
        "Could not find the four MNIST IDX files. Paths tried:\n" + "\n".join(tried) + "\n"
        f"Fix: set data_dir (or the environment variable {DATA_DIR_ENV}) to a folder holding "
        f"{', '.join(f + '.gz' for f in MNIST_FILES)} (gzipped or not; the folder or its parent with them in "
        f"mnist/), downloading them from {OFFICIAL_URL} if needed; or leave data_dir unset (source='download') "
        "to download them into the cache.")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_md5(name: str, path: Path) -> str:
    """Returns the md5 of ``path`` after checking it is the well-known one for ``name``."""
    spec = MNIST_FILES[name]
    gzipped = path.suffix == ".gz"
    expected, size = (spec.gz_md5, spec.gz_bytes) if gzipped else (spec.raw_md5, spec.raw_bytes)
    try:
        actual = _md5(path)
        actual_size = path.stat().st_size
    except OSError as e:
        raise DataSourceError(f"Could not read MNIST file {path}: {e}") from e
    if actual != expected:
        size_note = "" if actual_size == size else f" It has {actual_size} bytes, expected {size}."
        raise DataSourceError(
            f"MNIST file {path} is corrupt or not the official file: md5 {actual}, expected {expected}."
            f"{size_note}\nFix: re-download {path.name} from the official source {OFFICIAL_URL}, "
            f"or point data_dir / {DATA_DIR_ENV} at a folder with the official files.")
    return actual


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Decodes one IDX file (gzipped or not) of unsigned bytes into a uint8 array.

    Format: big-endian; magic 0x00000803 (images, 3 dims) or 0x00000801 (labels, 1 dim), then one 32-bit
    size per dimension, then the raw uint8 data. Gzip is recognised by its magic bytes, not the file name.

    Raises:
      DataSourceError: naming the file, if it cannot be read, the magic is unknown, or the data length does
        not match the header.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
        if blob[:2] == b"\x1f\x8b":
            blob = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as e:
        raise DataSourceError(f"Could not read IDX file {path}: {e}") from e
    if len(blob) < 4:
        raise DataSourceError(f"IDX file {path} is truncated: {len(blob)} bytes, no header.")
    magic = int.from_bytes(blob[:4], "big")
    if magic not in (_IMAGES_MAGIC, _LABELS_MAGIC):
        raise DataSourceError(
            f"IDX file {path} has bad magic number 0x{magic:08x}; expected 0x{_IMAGES_MAGIC:08x} (images) or "
            f"0x{_LABELS_MAGIC:08x} (labels). It is not an uncompressed or gzipped MNIST IDX file.")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataSourceError(f"IDX file {path} is truncated: {len(blob)} bytes, header needs {header}.")
    shape = tuple(int(d) for d in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(blob) - header != expected:
        raise DataSourceError(
            f"IDX file {path} has {len(blob) - header} data bytes, but its header shape {shape} needs {expected}.")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape).copy()


def _decode_checked(name: str, path: Path) -> np.ndarray:
    """Decodes ``path`` and checks it has the shape MNIST's ``name`` must have."""
    array = read_idx(path)
    shape = MNIST_FILES[name].shape
    if array.shape != shape:
        raise DataSourceError(f"IDX file {path} decodes to shape {array.shape}, expected {shape} for {name}.")
    return array


# --------------------------------------------------------------------------------------------------
# Cache of decoded arrays
# --------------------------------------------------------------------------------------------------


def _cache_dir(cache_dir) -> Path:
    chosen = cache_dir if cache_dir is not None else (_env_path(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)
    return Path(chosen).expanduser()


def _cache_name(md5s: dict[str, str]) -> str:
    """A file name that changes whenever any source file does: a digest of the four md5s, in fixed order."""
    key = hashlib.md5("".join(md5s[name] for name in MNIST_FILES).encode()).hexdigest()
    return f"mnist-{key}.npz"


def _read_cache(path: Path) -> MNIST | None:
    """Returns the cached arrays, or None if there is no cache; a cache that is unreadable or has the wrong
    arrays is deleted (it will be rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {field: npz[field] for field in MNIST._fields}
        for spec in MNIST_FILES.values():
            array = arrays[spec.field]
            if array.shape != spec.shape or array.dtype != np.uint8:
                raise ValueError(f"{spec.field} has shape {array.shape} dtype {array.dtype}")
        return MNIST(**arrays)
    except Exception as e:  # noqa: BLE001 -- any unreadable cache is rebuilt, never fatal.
        warnings.warn(f"Discarding unreadable MNIST cache {path} ({e}); rebuilding it.", stacklevel=4)
        try:
            path.unlink()
        except OSError:
            pass
        return None


def _write_cache(path: Path, data: MNIST) -> None:
    """Atomically writes ``data`` to ``path`` (temp file in the same folder, then os.replace).

    The temp file is removed on any failure. An OSError (e.g. read-only cache folder) only warns, since the
    data is already loaded; other errors propagate.
    """
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp",
                                         delete=False) as f:
            tmp_name = f.name
            np.savez(f, **data._asdict())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as e:
        warnings.warn(f"Could not write MNIST cache {path} ({e}); continuing without it. Set cache_dir or "
                      f"{CACHE_DIR_ENV} to a writable folder to cache the decoded arrays.", stacklevel=4)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------------
# TFDS source
# --------------------------------------------------------------------------------------------------


def _tfds_fix() -> str:
    return (f"Fix: install the TFDS extra (pip install 'plasticity_jax[tfds]': TFDS and TensorFlow), or use the "
            f"default source, which downloads the four IDX files (source='download'), or set data_dir / "
            f"{DATA_DIR_ENV} to a folder with them (source='idx').")


def _load_tfds(data_dir) -> MNIST:
    """Loads MNIST with ``tensorflow_datasets.load`` (downloading it on first use)."""
    train_x, train_y, test_x, test_y = load_tfds("mnist", data_dir, _tfds_fix())
    data = MNIST(_tfds_images(train_x), np.asarray(train_y).astype(np.uint8),
                 _tfds_images(test_x), np.asarray(test_y).astype(np.uint8))
    for spec in MNIST_FILES.values():
        if getattr(data, spec.field).shape != spec.shape:
            raise DataSourceError(f"TFDS MNIST {spec.field} has shape {getattr(data, spec.field).shape}, "
                                  f"expected {spec.shape}.")
    return data


def _tfds_images(images) -> np.ndarray:
    """TFDS gives (N, 28, 28, 1) uint8; drop the channel axis."""
    images = np.asarray(images, dtype=np.uint8)
    return images[..., 0] if images.ndim == 4 else images
