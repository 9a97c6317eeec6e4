"""Labelled image datasets as host uint8 arrays: TFDS image classification, and Continual ImageNet class folders.

* :func:`load_tfds_images` -- a TFDS image-classification dataset (``'cifar100'``, ``'cifar10'``, ``'mnist'``, ...)
  through the one TFDS mechanism of :mod:`plasticity_jax.data.source`. The labels are TFDS's ``'label'`` feature;
  for ``'cifar100'`` those are the 100 fine labels (the coarse ones are ``'coarse_label'``).
* :func:`load_class_folder` -- Continual ImageNet (Dohare et al., "Loss of plasticity in deep continual learning",
  Nature 2024): ImageNet downsampled to 32x32 (Chrabaszcz et al. 2017), 1000 classes, 600 training and 100 test
  images per class. A folder holds one file per class, ``{class_index}.npy`` for class indices ``0..C-1``, each a
  uint8 array of shape ``(n, 32, 32, 3)`` with ``n >= train_per_class + test_per_class``. As in the paper's code
  (``lop/imagenet/online_batch_expr.py`` of shibhansh/loss-of-plasticity, which reads ``data/classes/{c}.npy``), the
  first ``train_per_class`` images of a class are its training images and the next ``test_per_class`` its test
  images. ``scripts/prepare_continual_imagenet.py`` writes such a folder from TFDS's ``imagenet_resized/32x32``.
  (The paper's own class files feed ``torch.nn.Conv2d`` directly, so they are channels-first,
  ``(700, 3, 32, 32)``, of a dtype the code does not say: convert them to uint8 ``(n, 32, 32, 3)`` or rebuild the
  folder with the script.)

Images are uint8 ``(N, H, W, C)`` in [0, 255] and labels int32 ``(N,)``; normalisation is left to the problems.
Every failure of a data source raises :class:`DataSourceError` with what failed, the paths involved and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from plasticity_jax.data.source import DataSourceError, load_tfds

__all__ = ["CLASS_IMAGE_SHAPE", "ImageDataset", "load_class_folder", "load_tfds_images"]

CLASS_IMAGE_SHAPE = (32, 32, 3)
_PREPARE = "scripts/prepare_continual_imagenet.py"


class ImageDataset(NamedTuple):
    """uint8 images (N, H, W, C) and int32 labels (N,) of the training and the test set."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_tfds_images(name: str, data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Loads the 'train' and 'test' splits of a TFDS image-classification dataset.

    Args:
      name: the TFDS name, e.g. ``'cifar100'`` (labels: the fine labels), ``'cifar10'``, ``'mnist'``.
      data_dir: the TFDS data directory (``None``: TFDS's default); offline, one where ``name`` is prepared.

    Raises:
      DataSourceError: TensorFlow is missing, the download failed, or the splits are not (image, label) batches.
    """
    fix = (f"Fix: install the TFDS extra (pip install 'plasticity_jax[tfds]': TFDS and TensorFlow), or pass "
           f"data_dir=... a TFDS data directory in which {name!r} is already prepared (e.g. copied from a machine "
           f"with internet where tensorflow_datasets.load({name!r}, data_dir=...) has run).")
    train_x, train_y, test_x, test_y = load_tfds(name, data_dir, fix)
    data = ImageDataset(np.asarray(train_x, np.uint8), np.asarray(train_y, np.int32),
                        np.asarray(test_x, np.uint8), np.asarray(test_y, np.int32))
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        if x.ndim != 4 or y.shape != x.shape[:1]:
            raise DataSourceError(f"TFDS {name!r} {split} split has images of shape {x.shape} and labels of shape "
                                  f"{y.shape}; expected images (N, H, W, C) and labels (N,). Is {name!r} an "
                                  "image-classification dataset with 'image' and 'label' features?")
    return data


def load_class_folder(directory: str | os.PathLike, train_per_class: int = 600, test_per_class: int = 100,
                      num_classes: int | None = None) -> ImageDataset:
    """Loads a Continual ImageNet class folder (see the module docstring for the format).

    Each class file is memory-mapped (``np.load(mmap_mode='r')``) and only its first
    ``train_per_class + test_per_class`` images are read, into the returned arrays.

    Args:
      directory: the folder of ``{class_index}.npy`` files.
      train_per_class: training images per class: the first ones of each file.
      test_per_class: test images per class: the ones right after the training images.
      num_classes: load classes ``0..num_classes-1`` (others are ignored); ``None``: every class in the folder.

    Returns:
      An :class:`ImageDataset`, class by class in index order; the label of an image is its file's class index.

    Raises:
      DataSourceError: the folder is missing or has no ``.npy`` files; a file is not named ``{class_index}.npy``;
        a class index is missing; a file is unreadable, not uint8 ``(n, 32, 32, 3)``, or has too few images.
    """
    if train_per_class < 1 or test_per_class < 0 or (num_classes is not None and num_classes < 1):
        raise ValueError(f"Need train_per_class >= 1, test_per_class >= 0 and num_classes >= 1 (or None); got "
                         f"{train_per_class}, {test_per_class}, {num_classes}.")
    root = Path(directory).expanduser()
    fix = f"Fix: point it at the folder written by {_PREPARE} (python {_PREPARE} --out_dir=FOLDER)."
    if not root.is_dir():
        raise DataSourceError(f"Continual ImageNet folder {root} does not exist or is not a directory.\n{fix}")
    files = sorted(root.glob("*.npy"))
    if not files:
        raise DataSourceError(f"Continual ImageNet folder {root} holds no .npy files; expected one file per class, "
                              f"0.npy, 1.npy, ...\n{fix}")
    misnamed = [p.name for p in files if not re.fullmatch(r"0|[1-9][0-9]*", p.stem)]
    if misnamed:
        raise DataSourceError(f"Continual ImageNet folder {root} holds .npy files not named {{class_index}}.npy: "
                              f"{', '.join(misnamed)}. Move them out of the folder.")
    by_index = {int(p.stem): p for p in files}
    count = num_classes if num_classes is not None else max(by_index) + 1
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        raise DataSourceError(f"Continual ImageNet folder {root} has no file for class indices {_ranges(missing)}: "
                              f"classes must be numbered 0..{count - 1} without gaps, one {{class_index}}.npy "
                              f"each.\n{fix}")

    per_class = train_per_class + test_per_class
    train_x = np.empty((count * train_per_class, *CLASS_IMAGE_SHAPE), np.uint8)
    test_x = np.empty((count * test_per_class, *CLASS_IMAGE_SHAPE), np.uint8)
    for c in range(count):
        images = _class_images(by_index[c], per_class, fix)
        train_x[c * train_per_class:(c + 1) * train_per_class] = images[:train_per_class]
        test_x[c * test_per_class:(c + 1) * test_per_class] = images[train_per_class:per_class]
        del images  # closes the memory map: one open file at a time
    labels = np.arange(count, dtype=np.int32)
    return ImageDataset(train_x, np.repeat(labels, train_per_class), test_x, np.repeat(labels, test_per_class))


def _class_images(path: Path, per_class: int, fix: str) -> np.ndarray:
    """The memory-mapped array of one class file, checked to be uint8 (n, 32, 32, 3) with n >= per_class."""
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataSourceError(f"Could not read Continual ImageNet class file {path} as a .npy array: {e}\n{fix}") from e
    if images.dtype != np.uint8 or images.shape[1:] != CLASS_IMAGE_SHAPE or len(images) < per_class:
        hint = (" It looks channels-first (the layout of the paper's own files): transpose it to (n, 32, 32, 3)."
                if images.shape[1:] == CLASS_IMAGE_SHAPE[::-1] else "")
        raise DataSourceError(f"Continual ImageNet class file {path} holds {images.dtype} of shape {images.shape}; "
                              f"expected uint8 of shape (n, 32, 32, 3) with n >= {per_class} (train_per_class + "
                              f"test_per_class).{hint}\n{fix}")
    return images


def _ranges(indices: list[int]) -> str:
    """'0, 3-5, 9' for the sorted indices [0, 3, 4, 5, 9]."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
