"""What every data source shares: the error it raises, and the one way datasets are loaded from TFDS.

TensorFlow Datasets builds and returns datasets through TensorFlow; both come with the optional ``tfds`` extra
(``pip install 'plasticity_jax[tfds]'``), used for CIFAR and ImageNet (MNIST downloads its IDX files without them).
Without them, or without internet on first use, a TFDS load fails, and :class:`DataSourceError` says so together
with the loader's own offline fix.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["DataSourceError", "import_tfds", "load_tfds"]


class DataSourceError(RuntimeError):
    """A data source is missing, corrupt or unusable; the message says what was tried and how to fix it."""


def import_tfds(name: str, fix: str):
    """Returns the ``tensorflow_datasets`` module after checking that TensorFlow imports too.

    Args:
      name: the dataset about to be loaded (for the message).
      fix: the last paragraph of the error message: how to fix it.

    Raises:
      DataSourceError: ``tensorflow_datasets`` or TensorFlow cannot be imported.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataSourceError(f"Loading {name!r} with TensorFlow Datasets failed: cannot import "
                              f"tensorflow_datasets ({e}).\n{fix}") from e
    try:
        import tensorflow  # noqa: F401 -- TFDS builds and returns the dataset through TensorFlow.
    except ImportError as e:
        raise DataSourceError(f"Loading {name!r} with TensorFlow Datasets failed: TensorFlow, which TFDS needs "
                              f"to build the dataset, is not installed ({e}).\n{fix}") from e
    return tfds


def load_tfds(name: str, data_dir: str | os.PathLike | None, fix: str) -> tuple[np.ndarray, ...]:
    """Loads the 'train' and 'test' splits of the TFDS dataset ``name`` as numpy arrays, each split whole.

    Calls ``tfds.load(name, split=['train', 'test'], batch_size=-1, as_supervised=True, data_dir=data_dir)``
    (downloading and preparing the dataset on first use) and ``tfds.as_numpy``.

    Args:
      name: a TFDS dataset with 'train' and 'test' splits and a supervised (input, label) pair.
      data_dir: the TFDS data directory; ``None``: TFDS's default (``~/tensorflow_datasets``).
      fix: the last paragraph of any error message: how to fix it.

    Returns:
      ``(train_x, train_y, test_x, test_y)`` as TFDS gives them.

    Raises:
      DataSourceError: TFDS or TensorFlow is missing, or the download or preparation failed.
    """
    tfds = import_tfds(name, fix)
    try:
        splits = tfds.load(name, split=["train", "test"], batch_size=-1, as_supervised=True,
                           data_dir=None if data_dir is None else os.fspath(data_dir))
        (train_x, train_y), (test_x, test_y) = tfds.as_numpy(splits)
    except Exception as e:  # noqa: BLE001 -- download/backend failures come in many types.
        raise DataSourceError(f"Loading {name!r} with TensorFlow Datasets failed (download or TFDS error): "
                              f"{type(e).__name__}: {e}\n{fix}") from e
    return train_x, train_y, test_x, test_y
