"""Datasets: loaders returning numpy arrays (problems turn them into JAX arrays and normalise them)."""

from plasticity_jax.data.images import CLASS_IMAGE_SHAPE, ImageDataset, load_class_folder, load_tfds_images
from plasticity_jax.data.mnist import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    MNIST,
    MNIST_FILES,
    load_mnist,
    read_idx,
)
from plasticity_jax.data.source import DataSourceError

__all__ = [
    "CACHE_DIR_ENV",
    "CLASS_IMAGE_SHAPE",
    "DATA_DIR_ENV",
    "DataSourceError",
    "ImageDataset",
    "MNIST",
    "MNIST_FILES",
    "load_class_folder",
    "load_mnist",
    "load_tfds_images",
    "read_idx",
]
