"""Problems: streams of tasks generated on the device (see `problems.base`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from plasticity_jax.problems import augment, dataset_tasks
from plasticity_jax.problems.base import Problem
from plasticity_jax.problems.dataset_tasks import DatasetTasks
from plasticity_jax.problems.permuted_mnist import PermutedMNIST
from plasticity_jax.problems.slowly_changing_regression import SlowlyChangingRegression


def _permuted_mnist(config: ml_collections.ConfigDict, shapes_only: bool = False) -> tuple[Problem, Any]:
    from plasticity_jax.data import load_mnist, shapes

    mnist = shapes.stand_in('mnist') if shapes_only else load_mnist(config.data_dir or None, source=config.data_source)
    problem = PermutedMNIST(kind='classification', input_shape=(28 * 28,), num_outputs=10,
                            examples_per_task=config.problem.examples_per_task,
                            batch_size=config.problem.batch_size, probe_size=config.metrics.probe_size,
                            reshuffle_each_epoch=config.problem.get('reshuffle_each_epoch', False))
    return problem, PermutedMNIST.host_data(*mnist)


def _slowly_changing_regression(config: ml_collections.ConfigDict, shapes_only: bool = False) -> tuple[Problem, Any]:
    p = config.problem
    problem = SlowlyChangingRegression(kind='regression', input_shape=(p.num_bits,), num_outputs=1,
                                       examples_per_task=p.examples_per_task, batch_size=p.batch_size,
                                       probe_size=config.metrics.probe_size, num_flipping_bits=p.num_flipping_bits,
                                       num_target_units=p.num_target_units, beta=p.beta, flip_mode=p.flip_mode)
    return problem, {}


def _labelled_images(config: ml_collections.ConfigDict, shapes_only: bool = False):
    """(train_x, train_y, test_x, test_y) as host arrays, from `config.problem.dataset` (stand-ins of its published
    shapes, holding no data, if `shapes_only`: `train_per_class` (+ `validation_per_class`) images per class)."""
    from plasticity_jax import data as datasets
    from plasticity_jax.data import shapes

    dataset = config.problem.dataset
    if shapes_only:
        p = config.problem
        per_class = p.train_per_class + p.get('validation_per_class', 0) if p.train_per_class else 0
        return shapes.stand_in(dataset, train_per_class=per_class, test_per_class=p.test_per_class,
                               num_classes=p.num_classes)
    if dataset == 'mnist':
        return tuple(datasets.load_mnist(config.data_dir or None, source=config.data_source))
    if dataset in ('cifar10', 'cifar100'):
        return tuple(datasets.load_tfds_images(dataset, config.data_dir or None))
    if dataset == 'imagenet32':
        p = config.problem
        return tuple(datasets.load_class_folder(config.data_dir, p.train_per_class, p.test_per_class,
                                                p.num_classes or None))
    raise ValueError(f"unknown problem.dataset {dataset!r}; valid: ['cifar10', 'cifar100', 'imagenet32', 'mnist']")


def _per_class(images, labels, first: int, count: int):
    """Examples `first`, ..., `first + count - 1` (all from `first` on when `count` is 0) of every class, in dataset
    order. A stand-in's images (`data.shapes`: zero-strided, no data) stay a stand-in."""
    keep = np.concatenate([np.flatnonzero(labels == c)[first:first + count if count else None]
                           for c in np.unique(labels)])
    keep.sort()
    if images.ndim and images.strides[0] == 0:
        return np.broadcast_to(images[:1], (len(keep), *images.shape[1:])), labels[keep]
    return images[keep], labels[keep]


def _dataset_tasks(config: ml_collections.ConfigDict, shapes_only: bool = False) -> tuple[Problem, Any]:
    p = config.problem
    if not p.get('dataset'):
        raise ValueError('problem.dataset is empty; set it to one of cifar10, cifar100, imagenet32, mnist.')
    validation_per_class = p.get('validation_per_class', 0)
    if validation_per_class and p.dataset == 'imagenet32':
        raise ValueError('problem.validation_per_class is not supported for imagenet32 (Continual ImageNet has no '
                         'validation split): set --config.problem.validation_per_class=0')
    # The validation images are the first `validation_per_class` of each class of the training split, the training
    # images the next `train_per_class` (the papers' CIFAR-100 code: 50 and the other 450). Stand-ins are taken
    # whole and split the same way.
    train_x, train_y, test_x, test_y = (np.asarray(a) for a in _labelled_images(config, shapes_only))
    validation = None
    if p.dataset != 'imagenet32':
        if validation_per_class:
            validation = _per_class(train_x, train_y, 0, validation_per_class)
        if p.train_per_class or validation_per_class:
            train_x, train_y = _per_class(train_x, train_y, validation_per_class, p.train_per_class)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    data = dataset_tasks.host_data(train_x, train_y.astype(np.int32), test_x, test_y.astype(np.int32), num_classes,
                                   validation)
    normalization: dict[str, tuple[float, ...]]
    normalization = ({'mean': augment.CIFAR100_MEAN, 'std': augment.CIFAR100_STD} if p.dataset == 'cifar100'
                     else {})
    if p.get('raw_pixels', False):  # pixel values 0..255 as the papers' Continual ImageNet code feeds them
        normalization = {'mean': (0.0,), 'std': (1.0 / 255.0,)}
    problem = DatasetTasks.create(data, schedule=p.schedule, epochs=p.epochs, batch_size=p.batch_size,
                                  probe_size=config.metrics.probe_size,
                                  classes_per_increment=p.classes_per_increment, augment=p.augment,
                                  early_stopping=p.get('early_stopping', False), **normalization)
    return problem, data


# name -> factory(run_config[, shapes_only=True]) -> (problem, data as host or device arrays, uploaded by
# `make_problem`); with shapes_only=True (planning), a factory reads no data and builds from stand-ins of the
# datasets' published shapes (`data.shapes`).
PROBLEMS: dict[str, Callable[..., tuple[Problem, Any]]] = {
    'permuted_mnist': _permuted_mnist,
    'slowly_changing_regression': _slowly_changing_regression,
    'dataset_tasks': _dataset_tasks,
}


def make_problem(config: ml_collections.ConfigDict, *, shapes_only: bool = False) -> tuple[Problem, Any]:
    """Builds the problem named by `config.problem.name` and uploads its data to the device, once.

    `shapes_only`: reads no data (`data.shapes` stand-ins) and returns the data as `jax.ShapeDtypeStruct`s, enough
    to plan a run's memory (`engine.make_plan`) on a machine without the datasets.
    """
    if config.problem.name not in PROBLEMS:
        raise ValueError(f'unknown problem.name {config.problem.name!r}; valid: {sorted(PROBLEMS)}')
    factory = PROBLEMS[config.problem.name]
    problem, data = factory(config, shapes_only=True) if shapes_only else factory(config)
    data = (jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), data) if shapes_only
            else jax.device_put(data))
    if problem.examples_per_task % problem.batch_size:
        raise ValueError(f'problem.examples_per_task ({problem.examples_per_task}) must be a multiple of '
                         f'problem.batch_size ({problem.batch_size}).')
    return problem, data


__all__ = ['DatasetTasks', 'PROBLEMS', 'PermutedMNIST', 'Problem', 'SlowlyChangingRegression', 'make_problem']
