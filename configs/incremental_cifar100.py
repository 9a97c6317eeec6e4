"""Class-incremental CIFAR-100 (Dohare et al., "Loss of plasticity in deep continual learning", Nature 2024, Fig. 2).

Training starts with 5 classes and adds 5 every 200 epochs up to all 100 (20 tasks; task t trains on the first
5(t + 1) classes of a per-seed class order). 450 training images per class (the first 450 of each class in CIFAR-100's
training split; the remaining 50 are the papers' validation images, not used here); the test accuracy after each task
is measured on the 100 test images of every class seen so far. The network has 100 outputs; the classes not seen yet
are hidden from the loss and the predictions. Network: the papers' modified ResNet-18 (`models.ResNet18`: 3x3 stride-1
first convolution, no max-pool, batch normalisation). SGD with step size 0.1, momentum 0.9, weight decay 5e-4 (the `l2`
learner: coupled into the gradient as PyTorch's SGD), batch size 90, step size x0.2 at epochs 60, 120 and 160 of each
task (`learner.step_size_milestones` = (0.3, 0.6, 0.8) of the task); on-device augmentation of training images:
normalisation, random horizontal flip, random crop with reflect-padding 4, random rotation of 0-15 degrees
(`problems.augment`, which documents the source of each detail).

The `scratch` variant trains a freshly initialised network at every task (`reset_at_task_start='network'`): the
papers' comparison of a network retrained from scratch on the same classes.

    python -m plasticity_jax.main --config=configs/incremental_cifar100.py --workdir=runs/cifar100
    python -m plasticity_jax.main --config=configs/incremental_cifar100.py:scratch --workdir=runs/cifar100_scratch

Choices: the papers' code evaluates on augmented test images and keeps the best validation checkpoint of each task
(early stopping); here the test images are not augmented and the network at the end of each task is scored.

Expected (Nature 2024, Fig. 2b): the incrementally trained network's test accuracy falls behind the network retrained
from scratch as classes are added (by task 20 it is several points lower). Runtime: about 1M steps of ResNet-18 per
seed: an accelerator job; CIFAR-100 loads from TFDS (needs TensorFlow and the dataset prepared in
`--config.data_dir`). On the development machine it has only run on generated data of CIFAR-100's shapes.
"""

from plasticity_jax import config as config_lib


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_seeds = 5
    config.num_tasks = 20
    config.tasks_per_chunk = 1
    config.problem = config_lib.dataset_tasks_problem(dataset='cifar100', schedule='class_increments', epochs=200,
                                                      batch_size=90, classes_per_increment=5, train_per_class=450,
                                                      augment=True)
    config.model = config_lib.image_model_config('resnet18', base_width=64)
    config.learner.name = 'l2'
    config.learner.weight_decay = 5e-4
    config.learner.step_size = 0.1
    config.learner.momentum = 0.9
    config.learner.step_size_milestones = (0.3, 0.6, 0.8)
    config.learner.step_size_decay = 0.2
    config.metrics.probe_size = 500

    variants = {'scratch': lambda c: setattr(c, 'reset_at_task_start', 'network')}
    return config_lib.apply_variants(config, arg, variants)
