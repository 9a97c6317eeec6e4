"""Writes the Continual ImageNet class folder from TFDS's downsampled ImageNet, ``imagenet_resized/32x32``.

Continual ImageNet (Dohare et al., "Loss of plasticity in deep continual learning", Nature 2024) uses ImageNet
downsampled to 32x32 (Chrabaszcz et al. 2017), 700 images of each of the 1000 classes: 600 for training and 100 for
testing. This script reads the 'train' split of TFDS's ``imagenet_resized/32x32`` in its stored order (no file
shuffling, so the same TFDS version gives the same files) and writes, for each class, the first 700 images of that
class as ``OUT_DIR/{class}.npy`` (uint8, (700, 32, 32, 3)). A class file is written atomically (a temp file in the
same folder, then ``os.replace``) as soon as its class is complete, and reading stops once every class is; classes
whose file exists already are skipped, so a rerun resumes an interrupted one (delete the folder to rebuild). Peak
memory is about 2.2 GB (the images of the classes not yet complete). Then
``plasticity_jax.data.load_class_folder(OUT_DIR)`` loads it.

    python scripts/prepare_continual_imagenet.py --out_dir=data/continual_imagenet [--tfds_data_dir=DIR]

TFDS downloads the downsampled ImageNet on first use, which needs internet and the TFDS extra
(pip install 'plasticity_jax[tfds]': TFDS and TensorFlow);
offline, pass --tfds_data_dir=DIR where ``imagenet_resized/32x32`` is already prepared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from plasticity_jax.data.images import CLASS_IMAGE_SHAPE  # noqa: E402
from plasticity_jax.data.source import DataSourceError, import_tfds  # noqa: E402

TFDS_NAME = "imagenet_resized/32x32"
NUM_CLASSES = 1000
IMAGES_PER_CLASS = 700  # 600 training + 100 test images (Dohare et al. 2024)


def write_class_files(pairs: Iterable[tuple[np.ndarray, int]], out_dir: str | os.PathLike,
                      num_classes: int = NUM_CLASSES, per_class: int = IMAGES_PER_CLASS) -> list[Path]:
    """Writes ``out_dir/{label}.npy``: the first ``per_class`` images of each label in ``pairs``' order.

    Args:
      pairs: (image uint8 (32, 32, 3), label) pairs; labels outside ``0..num_classes-1`` are ignored.
      out_dir: the class folder (created if needed); classes whose file exists already are skipped.
      num_classes: the classes to write, ``0..num_classes-1``.
      per_class: images per class file.

    Returns:
      The files written by this call, in the order they were completed.

    Raises:
      DataSourceError: an image has another shape, or ``pairs`` ends before every class has ``per_class`` images
        (the complete classes are written all the same).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = {c for c in range(num_classes) if not (out_dir / f"{c}.npy").is_file()}
    buffers: dict[int, list[np.ndarray]] = {c: [] for c in pending}
    written = []
    for image, label in pairs:
        label = int(label)
        if label not in pending:
            continue
        image = np.asarray(image, np.uint8)
        if image.shape != CLASS_IMAGE_SHAPE:
            raise DataSourceError(f"An image of class {label} has shape {image.shape}, expected {CLASS_IMAGE_SHAPE}; "
                                  f"the source must be 32x32 RGB ({TFDS_NAME}).")
        buffers[label].append(image)
        if len(buffers[label]) == per_class:
            written.append(out_dir / f"{label}.npy")
            _save_atomic(written[-1], np.stack(buffers.pop(label)))
            pending.discard(label)
            if not pending:
                return written
    if pending:
        short = ", ".join(f"{c} ({len(buffers[c])})" for c in sorted(pending))
        raise DataSourceError(f"The source ended before these classes had {per_class} images (class (images seen)): "
                              f"{short}. Their files were not written; the {len(written)} complete classes were.")
    return written


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temp file beside ``path``, then ``os.replace``; the temp file is removed on failure."""
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp",
                                         delete=False) as f:
            tmp_name = f.name
            np.save(f, array)
        os.replace(tmp_name, path)
        tmp_name = None
    finally:
        if tmp_name is not None:
            os.unlink(tmp_name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", required=True, help="the class folder to write")
    parser.add_argument("--tfds_data_dir", default=None, help="TFDS data directory (default: TFDS's own)")
    args = parser.parse_args(argv)

    fix = ("Fix: install the TFDS extra (pip install 'plasticity_jax[tfds]') on a machine with internet, or pass "
           f"--tfds_data_dir=DIR where {TFDS_NAME} is already prepared.")
    tfds = import_tfds(TFDS_NAME, fix)
    try:
        split = tfds.load(TFDS_NAME, split="train", as_supervised=True, shuffle_files=False,
                          data_dir=args.tfds_data_dir)
    except Exception as e:  # noqa: BLE001 -- download/backend failures come in many types.
        raise DataSourceError(f"Loading {TFDS_NAME!r} with TensorFlow Datasets failed (download or TFDS error): "
                              f"{type(e).__name__}: {e}\n{fix}") from e
    written = write_class_files(tqdm(tfds.as_numpy(split), unit="image"), args.out_dir)
    print(f"Wrote {len(written)} class files to {args.out_dir}; "
          f"load them with plasticity_jax.data.load_class_folder({args.out_dir!r}).")


if __name__ == "__main__":
    try:
        main()
    except DataSourceError as error:  # its message names the fix
        sys.exit(f"error: {error}")
