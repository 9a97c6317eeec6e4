"""Datasets: loaders returning numpy arrays (problems turn them into JAX arrays and normalise them)."""

from plasticity_jax.data.mnist import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    MNIST,
    MNIST_FILES,
    DataSourceError,
    load_mnist,
    read_idx,
)

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "DataSourceError",
    "MNIST",
    "MNIST_FILES",
    "load_mnist",
    "read_idx",
]
