"""Tests of the MNIST loader: the real offline files, the IDX decoder, md5 checks, the cache, and errors."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from plasticity_jax.data import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    MNIST,
    MNIST_FILES,
    DataSourceError,
    load_mnist,
    read_idx,
)
from plasticity_jax.data import mnist as mnist_mod

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHARED_MNIST = SHARED_DATA / "mnist"

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_real_mnist = pytest.mark.skipif(
    not all((SHARED_MNIST / f"{name}.gz").is_file() for name in MNIST_FILES),
    reason=f"offline MNIST files not found in {SHARED_MNIST}")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the user's data dir, and none writes to ~/.cache."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env_cache"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache folder for the tests that only check how the files are found (decode once)."""
    return tmp_path_factory.mktemp("shared_cache")


def _write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """Writes ``array`` (uint8) as an IDX file, gzipped if ``path`` ends in .gz."""
    if magic is None:
        magic = 0x00000800 | array.ndim
    blob = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    blob += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)


def _small_mnist(n: int = 3) -> MNIST:
    rng = np.random.default_rng(0)
    images = lambda: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)  # noqa: E731
    labels = lambda: rng.integers(0, 10, (n,), dtype=np.uint8)  # noqa: E731
    return MNIST(images(), labels(), images(), labels())


# ------------------------------------------------------------------------------------------------
# Real offline files
# ------------------------------------------------------------------------------------------------


@needs_real_mnist
def test_real_files_match_readme_statistics(shared_cache):
    data = load_mnist(SHARED_DATA, cache_dir=shared_cache)  # decodes once for the module's tests of shared_cache
    assert isinstance(data, MNIST)
    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10000, 28, 28) and data.test_images.dtype == np.uint8
    assert data.train_labels.shape == (60000,) and data.test_labels.shape == (10000,)
    assert data.train_images.mean() == pytest.approx(33.3184, abs=1e-3)
    assert data.test_images.mean() == pytest.approx(33.7912, abs=1e-3)
    assert np.bincount(data.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(data.test_labels, minlength=10).tolist() == TEST_COUNTS


@needs_real_mnist
@pytest.mark.parametrize("folder", [SHARED_DATA, SHARED_MNIST], ids=["parent", "mnist_dir"])
def test_parent_and_mnist_folder_both_work(folder, shared_cache):
    data = load_mnist(str(folder), source="idx", cache_dir=shared_cache)
    assert data.train_images.shape == (60000, 28, 28)
    assert np.bincount(data.test_labels, minlength=10).tolist() == TEST_COUNTS


@needs_real_mnist
def test_env_var_selects_idx_source(monkeypatch, shared_cache):
    monkeypatch.setenv(DATA_DIR_ENV, str(SHARED_DATA))
    monkeypatch.setenv(CACHE_DIR_ENV, str(shared_cache))
    data = load_mnist()  # source='auto' picks 'idx' because of the env var
    assert np.bincount(data.train_labels, minlength=10).tolist() == TRAIN_COUNTS


@needs_real_mnist
def test_env_cache_dir_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "from_env"))
    load_mnist(SHARED_DATA)
    assert len(list((tmp_path / "from_env").glob("mnist-*.npz"))) == 1


@needs_real_mnist
def test_official_uncompressed_checksums_and_raw_files(tmp_path, shared_cache):
    # The raw-file md5s/sizes in MNIST_FILES are those of the decompressed official files.
    # A folder mixing uncompressed images (those decompressed here) and gzipped labels loads the same data.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name, spec in MNIST_FILES.items():
        raw = gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes())
        assert (hashlib.md5(raw).hexdigest(), len(raw)) == (spec.raw_md5, spec.raw_bytes), name
        if "labels" in name:
            (mixed / f"{name}.gz").symlink_to(SHARED_MNIST / f"{name}.gz")
        else:
            (mixed / name).write_bytes(raw)
    data = load_mnist(mixed, cache_dir=tmp_path / "cache")
    reference = load_mnist(SHARED_MNIST, cache_dir=shared_cache)
    for got, want in zip(data, reference):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------


@needs_real_mnist
def test_second_load_uses_cache_and_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    first = load_mnist(SHARED_DATA, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("mnist-") and files[0].suffix == ".npz"
    cache_file = files[0]

    def no_decode(path):
        raise AssertionError(f"decoded {path} although a cache exists")

    with monkeypatch.context() as m:
        m.setattr(mnist_mod, "read_idx", no_decode)
        second = load_mnist(SHARED_DATA, cache_dir=tmp_path)
    for got, want in zip(second, first):
        np.testing.assert_array_equal(got, want)

    cache_file.write_bytes(b"this is not an npz file")
    with pytest.warns(UserWarning, match="Discarding unreadable MNIST cache"):
        third = load_mnist(SHARED_DATA, cache_dir=tmp_path)
    np.testing.assert_array_equal(third.train_images, first.train_images)
    assert [p.name for p in tmp_path.iterdir()] == [cache_file.name]
    with np.load(cache_file) as npz:  # the rebuilt cache is valid again
        assert npz["train_images"].shape == (60000, 28, 28)


def test_cache_with_wrong_shapes_is_discarded(tmp_path):
    path = tmp_path / "mnist-x.npz"
    np.savez(path, **_small_mnist()._asdict())
    with pytest.warns(UserWarning, match="Discarding"):
        assert mnist_mod._read_cache(path) is None
    assert not path.exists()


def test_cache_name_depends_on_every_md5():
    md5s = {name: spec.gz_md5 for name, spec in MNIST_FILES.items()}
    base = mnist_mod._cache_name(md5s)
    for name in MNIST_FILES:
        changed = dict(md5s, **{name: "0" * 32})
        assert mnist_mod._cache_name(changed) != base


def test_cache_write_is_atomic_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    data = _small_mnist()
    target = tmp_path / "cache" / "mnist-abc.npz"
    mnist_mod._write_cache(target, data)
    assert [p.name for p in target.parent.iterdir()] == [target.name]

    def broken_savez(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(np, "savez", broken_savez)
    other = tmp_path / "cache2" / "mnist-abc.npz"
    with pytest.raises(RuntimeError, match="disk on fire"):
        mnist_mod._write_cache(other, data)
    assert list(other.parent.iterdir()) == []


def test_cache_write_oserror_warns_and_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    target = tmp_path / "mnist-abc.npz"
    with pytest.warns(UserWarning, match="Could not write MNIST cache"):
        mnist_mod._write_cache(target, _small_mnist())
    assert list(tmp_path.iterdir()) == []


@needs_real_mnist
def test_savez_failure_during_load_leaves_no_temp_file(tmp_path, monkeypatch):
    def broken_savez(*args, **kwargs):
        raise RuntimeError("savez failed")

    monkeypatch.setattr(np, "savez", broken_savez)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="savez failed"):
        load_mnist(SHARED_DATA, cache_dir=cache)
    assert list(cache.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# IDX decoder
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
def test_read_idx_round_trips_images_and_labels(tmp_path, suffix):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (5,), dtype=np.uint8)
    _write_idx(tmp_path / f"images{suffix}", images)
    _write_idx(tmp_path / f"labels{suffix}", labels)
    got_images = read_idx(tmp_path / f"images{suffix}")
    got_labels = read_idx(str(tmp_path / f"labels{suffix}"))
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
def test_read_idx_bad_magic_names_file(tmp_path, suffix):
    path = tmp_path / f"bad-magic{suffix}"
    _write_idx(path, np.zeros((5, 28, 28), np.uint8), magic=0x00000903)
    with pytest.raises(DataSourceError, match="bad magic") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_size_mismatch_names_file(tmp_path):
    path = tmp_path / "short"
    _write_idx(path, np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataSourceError, match="data bytes") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_corrupt_gzip_names_file(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataSourceError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


@needs_real_mnist
def test_one_changed_byte_gives_md5_error_naming_file(tmp_path):
    copy = tmp_path / "mnist"
    copy.mkdir()
    for name in MNIST_FILES:  # copyfile: the copies are writable even though the originals are not
        shutil.copyfile(SHARED_MNIST / f"{name}.gz", copy / f"{name}.gz")
    bad = copy / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(bad.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    actual = hashlib.md5(bytes(blob)).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError) as info:
        load_mnist(tmp_path, cache_dir=cache)
    message = str(info.value)
    assert str(bad) in message
    assert MNIST_FILES["t10k-labels-idx1-ubyte"].gz_md5 in message and actual in message
    assert "re-download" in message and "data_dir" in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_missing_dir_lists_every_path_tried(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataSourceError) as info:
        load_mnist(missing)
    message = str(info.value)
    assert str(missing) in message and str(missing / "mnist") in message
    assert DATA_DIR_ENV in message and "source='download'" in message


def test_incomplete_dir_names_missing_files(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataSourceError) as info:
        load_mnist(tmp_path, source="idx")
    message = str(info.value)
    for name in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        assert str(tmp_path / f"{name}.gz") in message and str(tmp_path / name) in message
    assert str(tmp_path / "mnist") in message


def test_idx_without_any_dir_explains_fix():
    with pytest.raises(DataSourceError, match=DATA_DIR_ENV):
        load_mnist(source="idx")


def test_unknown_source_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        load_mnist(source="torchvision")
    for valid in ("'auto'", "'idx'", "'download'", "'tfds'"):
        assert valid in str(info.value)


# ------------------------------------------------------------------------------------------------
# TFDS source
# ------------------------------------------------------------------------------------------------


def test_tfds_without_its_extra_names_the_extra_and_the_other_sources(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import tensorflow_datasets -> ImportError
    with pytest.raises(DataSourceError) as info:
        load_mnist(source="tfds")
    message = str(info.value)
    assert "tensorflow_datasets" in message and "pip install 'plasticity_jax[tfds]'" in message
    assert DATA_DIR_ENV in message and "source='download'" in message


def test_tfds_without_tensorflow_explains_both_fixes(monkeypatch):
    _fake_tfds(monkeypatch, lambda *args, **kwargs: None)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(DataSourceError) as info:
        load_mnist(source="tfds")
    message = str(info.value)
    assert "TensorFlow" in message and "pip install 'plasticity_jax[tfds]'" in message
    assert DATA_DIR_ENV in message and "data_dir" in message


def _fake_tfds(monkeypatch, load):
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    fake = types.ModuleType("tensorflow_datasets")
    fake.load = load
    fake.as_numpy = lambda tree: tree
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)


def test_tfds_download_failure_is_wrapped(monkeypatch):
    def failing_load(*args, **kwargs):
        raise ConnectionError("no route to host")

    _fake_tfds(monkeypatch, failing_load)
    with pytest.raises(DataSourceError) as info:
        load_mnist(source="tfds")
    message = str(info.value)
    assert "no route to host" in message and "[tfds]" in message and DATA_DIR_ENV in message


def test_tfds_result_is_converted_to_uint8_without_channel_axis(monkeypatch):
    calls = {}

    def fake_load(name, **kwargs):
        calls.update(kwargs, name=name)
        split = lambda n: (np.full((n, 28, 28, 1), 7, np.uint8), np.arange(n, dtype=np.int64) % 10)  # noqa: E731
        return [split(60000), split(10000)]

    _fake_tfds(monkeypatch, fake_load)
    data = load_mnist(source="tfds", data_dir="/some/tfds_dir")
    assert calls["name"] == "mnist" and calls["batch_size"] == -1 and calls["as_supervised"] is True
    assert calls["data_dir"] == "/some/tfds_dir"
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert all(a.dtype == np.uint8 for a in data)
    assert data.test_labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


# ------------------------------------------------------------------------------------------------
# Download source (mirrors served from local folders through file:// URLs)
# ------------------------------------------------------------------------------------------------


@needs_real_mnist
def test_download_fetches_from_the_first_good_mirror_and_then_stays_offline(tmp_path, monkeypatch):
    corrupt = tmp_path / "corrupt_mirror"
    corrupt.mkdir()
    for name in MNIST_FILES:
        (corrupt / f"{name}.gz").write_bytes(b"not the official file")
    mirrors = ("file:///nonexistent/mirror/", corrupt.as_uri() + "/", SHARED_MNIST.as_uri() + "/")
    monkeypatch.setattr(mnist_mod, "MIRRORS", mirrors)
    cache = tmp_path / "cache"
    data = load_mnist(cache_dir=cache)  # source 'auto' without a data dir: download
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(f"{name}.gz" for name in MNIST_FILES)
    assert np.bincount(data.test_labels, minlength=10).tolist() == TEST_COUNTS

    monkeypatch.setattr(mnist_mod, "MIRRORS", ("file:///nonexistent/mirror/",))  # offline from now on
    again = load_mnist(source="download", cache_dir=cache)
    np.testing.assert_array_equal(again.train_images, data.train_images)


def test_download_failure_names_every_url_and_leaves_no_partial_file(tmp_path, monkeypatch):
    corrupt = tmp_path / "corrupt_mirror"
    corrupt.mkdir()
    for name in MNIST_FILES:
        (corrupt / f"{name}.gz").write_bytes(b"not the official file")
    mirrors = ("file:///nonexistent/mirror/", corrupt.as_uri() + "/")
    monkeypatch.setattr(mnist_mod, "MIRRORS", mirrors)
    with pytest.raises(DataSourceError) as info:
        load_mnist(source="download", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert all(mirror + "train-images-idx3-ubyte.gz" in message for mirror in mirrors)
    assert "md5" in message and DATA_DIR_ENV in message
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []
