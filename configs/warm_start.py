"""Warm-starting (Ash & Adams, "On warm-starting neural network training", NeurIPS 2020, Sec. 2, Fig. 1).

Two tasks: task 0 trains on a random half of the training set (half of every class), task 1 on all of it. The
warm-started network (default) continues from task 0's parameters; the `scratch` variant resets the network at the
start of task 1 (`reset_at_task_start='network'`, which also re-initialises it before task 0, a network that has
never trained either way). Ash & Adams find that the warm-started network reaches a similar training accuracy but a
worse test accuracy than the one trained from scratch: the generalisation gap of warm starting.

Choices: the paper's headline experiments use ResNet-18 on CIFAR-10 and also an MLP and logistic regression; the
default here is the CPU-sized case, a 3-layer ReLU MLP of width 100 on MNIST, SGD step size 0.01 with momentum 0.9,
batch size 128, 20 epochs per task (trained to ~100% training accuracy, as the paper trains to convergence).
`cifar10` switches to CIFAR-10 from TFDS with a width-1000 MLP.

    python -m plasticity_jax.main --config=configs/warm_start.py --workdir=runs/warm_start
    python -m plasticity_jax.main --config=configs/warm_start.py:scratch --workdir=runs/warm_start_scratch

Compare `test_accuracy[:, 1]` of the two runs (`plasticity_jax.results.load_run`).

Measured on a 2-core CPU (2026-11-21): see the "More problems" section of README.md.
"""

from plasticity_jax import config as config_lib


def _cifar10(config):
    config.problem.dataset = 'cifar10'
    config.model.width = 1000


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_seeds = 5
    config.num_tasks = 2
    config.tasks_per_chunk = 1
    config.problem = config_lib.dataset_tasks_problem(dataset='mnist', schedule='warm_start', epochs=20,
                                                      batch_size=128)
    config.model = config_lib.model_config(width=100, depth=3, activation='relu', init_distribution='normal')
    config.learner.step_size = 0.01
    config.learner.momentum = 0.9
    config.metrics.probe_size = 1000

    variants = {'scratch': lambda c: setattr(c, 'reset_at_task_start', 'network'), 'cifar10': _cifar10,
                **config_lib.learner_variants()}
    return config_lib.apply_variants(config, arg, variants)
