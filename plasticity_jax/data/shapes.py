"""Stand-ins for the datasets with their published shapes and class sizes, holding no data: what planning a run
(`engine.make_plan`, `--dry_run`) needs on a machine that does not have the data (a pod's login host).

The images are zero-strided views of one zero byte (`np.broadcast_to`), so a stand-in of ImageNet takes no memory;
the labels are real arrays with each class's published count, so that a problem derives the same task sizes from
them as from the data.
"""

from __future__ import annotations

import numpy as np

# name -> (image shape, training images per class, test images per class), from the datasets' documentation.
PUBLISHED = {
    # MNIST (LeCun et al.): 60,000 training and 10,000 test images, classes of unequal size.
    'mnist': ((28, 28), (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
              (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
    # CIFAR-10 / CIFAR-100 (Krizhevsky, 2009): 50,000 training and 10,000 test images, equal classes.
    'cifar10': ((32, 32, 3), (5000,) * 10, (1000,) * 10),
    'cifar100': ((32, 32, 3), (500,) * 100, (100,) * 100),
}
# Downsampled ImageNet 32x32 as Continual ImageNet's class folder (`data.images.load_class_folder`): 1000 classes.
IMAGENET32_SHAPE, IMAGENET32_CLASSES = (32, 32, 3), 1000


def _split(image_shape, counts) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    return np.broadcast_to(np.zeros((), np.uint8), (len(labels), *image_shape)), labels


def stand_in(dataset: str, *, train_per_class: int = 0, test_per_class: int = 0,
             num_classes: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y) of `dataset` with its published shapes and no data. `train_per_class`
    (if > 0) keeps that many training images per class, as the problems do; for 'imagenet32' the counts are the
    config's (`problem.train_per_class`, `test_per_class`, `num_classes`; 0 classes: all 1000)."""
    if dataset == 'imagenet32':
        classes = num_classes or IMAGENET32_CLASSES
        shape, train, test = IMAGENET32_SHAPE, (train_per_class,) * classes, (test_per_class,) * classes
    elif dataset in PUBLISHED:
        shape, train, test = PUBLISHED[dataset]
        if train_per_class:
            train = tuple(min(count, train_per_class) for count in train)
    else:
        raise ValueError(f'no published shapes for dataset {dataset!r}; known: {sorted([*PUBLISHED, "imagenet32"])}')
    return (*_split(shape, train), *_split(shape, test))
