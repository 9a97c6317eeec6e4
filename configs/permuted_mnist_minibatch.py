"""Permuted MNIST, minibatch variant ("Neural Network Plasticity and Loss Sharpness", Secs. 3.1-3.4, Table 1).

100 tasks, each a new random pixel permutation of the whole MNIST train and test split; several epochs of minibatch
SGD over the 60,000 permuted training images per task, each epoch in a fresh random order; the network of Dohare et
al. that the paper replicates (784 -> 3 hidden ReLU layers -> 10). Metric: the test accuracy (10,000 test images
under the task's permutation) after training on the task, and the mean per-task accuracy change over the sequence
(the slope of a linear fit, `plasticity_jax.analysis.accuracy_change_per_task`), as in Table 1. 10 seeds as the paper.

Choices (the paper's text lost its numbers): hidden width 100, 3 epochs per task, batch size 100, step size 0.01
(variants lr0.1, lr0.001); SAM (rho 0.05) and GNP (lambda 0.04) with their usual defaults.

    python -m plasticity_jax.main --config=configs/permuted_mnist_minibatch.py --workdir=runs/pmnist_minibatch
    python -m plasticity_jax.main --config=configs/permuted_mnist_minibatch.py:gnp --workdir=runs/pmnist_minibatch_gnp

Variants: lr0.1, lr0.01, lr0.001; every learner (`sam`, `gnp`, `cbp`, ...); sweep_lr.

Data: MNIST from `--config.data_dir` (the four IDX files) or TFDS.

Measured on a 2-core CPU (2026-11-21): see the "More problems" section of README.md.
"""

from plasticity_jax import config as config_lib

STEP_SIZES = (0.1, 0.01, 0.001)
EPOCHS = 3
NUM_TRAIN_IMAGES = 60_000


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_seeds = 10
    config.num_tasks = 100

    config.problem = config_lib.ml_collections.ConfigDict()
    config.problem.name = 'permuted_mnist'
    config.problem.examples_per_task = EPOCHS * NUM_TRAIN_IMAGES
    config.problem.batch_size = 100
    config.problem.reshuffle_each_epoch = True

    config.model = config_lib.model_config(width=100, depth=3, activation='relu', init_distribution='normal')
    config.learner.step_size = 0.01
    config.metrics.probe_size = 1000

    variants = {**config_lib.step_size_variants(STEP_SIZES), **config_lib.learner_variants(),
                **config_lib.sweep_step_sizes_variant(STEP_SIZES)}
    return config_lib.apply_variants(config, arg, variants)
