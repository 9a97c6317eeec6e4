"""Class-incremental pairwise MNIST ("Neural Network Plasticity and Loss Sharpness", Secs. 3.1-3.5, Table 2).

45 tasks, each a binary classification between two digits: all C(10, 2) pairs in a random order per seed, each pair
with all its MNIST training images (about 12,000) and test images (about 2,000), so the 6:1 train-to-test ratio is kept.
The network of Dohare et al. that the paper replicates: 784 -> 3 hidden layers of ReLU units -> 2 outputs (a
"2-hot" head); metric: the test accuracy on the pair after training on it, and the mean per-task accuracy change
over the 45 tasks (the slope of a linear fit, `plasticity_jax.analysis.accuracy_change_per_task`), as in Table 2.

Choices (the paper's text lost its numbers): hidden width 100, 5 epochs of minibatch SGD per task with batch size 100,
step size 0.01 (variants lr0.1, lr0.001); SAM (rho 0.05) and GNP (lambda 0.04) with their usual defaults
(`--config.learner.rho=...`, `--config.learner.gnp_coef=...` for the paper's second settings). 10 seeds as the paper.

    python -m plasticity_jax.main --config=configs/pairwise_mnist.py --workdir=runs/pairwise_mnist
    python -m plasticity_jax.main --config=configs/pairwise_mnist.py:sam --workdir=runs/pairwise_mnist_sam

Variants: lr0.1, lr0.01, lr0.001; every learner (`sam`, `gnp`, `cbp`, ...); sweep_lr (the three step sizes as one
program); `convnet`: Continual ImageNet's protocol on MNIST's digit pairs (docs/conv_nets.md): the ConvNet of
`models.ConvNet` (on 28x28x1 images its last map is 1x1x128) fed raw pixel values 0..255 as the papers' code feeds
ImageNet's, the head reset at every task's start, SGD with momentum 0.9 and step size 0.01, batch size 100; with
`cbp`, Continual ImageNet's continual backprop (replacement rate 3e-4, maturity 100, adaptable contribution, decay
0.99) and Shrink and Perturb (weight decay 1e-5, noise 1e-5) when written after the learner: `cbp,convnet`.

Data: MNIST from `--config.data_dir` (the four IDX files) or TFDS.

Measured on a 2-core CPU (2026-11-21), 10 seeds, 45 tasks: see the "More problems" section of README.md.
"""

from plasticity_jax import config as config_lib

STEP_SIZES = (0.1, 0.01, 0.001)


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_seeds = 10
    config.num_tasks = 45
    config.tasks_per_chunk = 5
    config.problem = config_lib.dataset_tasks_problem(dataset='mnist', schedule='all_pairs', epochs=5,
                                                      batch_size=100)
    config.model = config_lib.model_config(width=100, depth=3, activation='relu', init_distribution='normal')
    config.learner.step_size = 0.01
    config.metrics.probe_size = 1000

    variants = {**config_lib.step_size_variants(STEP_SIZES), **config_lib.learner_variants(),
                **config_lib.sweep_step_sizes_variant(STEP_SIZES), 'convnet': _convnet}
    return config_lib.apply_variants(config, arg, variants)


def _convnet(config):
    """Continual ImageNet's network, head reset and optimizer on the digit pairs; a continual backprop or Shrink and
    Perturb learner selected before it (`cbp,convnet`) gets Continual ImageNet's settings."""
    config.model = config_lib.image_model_config('convnet', base_width=32)
    # As the papers' Continual ImageNet code (docs/conv_nets.md: on [0, 1] pixels the ConvNet does not learn).
    config.problem.raw_pixels = True
    config.reset_at_task_start = 'head'
    config.learner.step_size = 0.01
    config.learner.momentum = 0.9
    if config.learner.name == 'cbp':
        config.learner.replacement_rate = CONTINUAL_IMAGENET_REPLACEMENT_RATE
    if config.learner.name == 'shrink_perturb':
        config.learner.update(CONTINUAL_IMAGENET_SHRINK_PERTURB)


# The papers' lop/imagenet/cfg/cbp.json and snp.json.
CONTINUAL_IMAGENET_REPLACEMENT_RATE = 3e-4
CONTINUAL_IMAGENET_SHRINK_PERTURB = {'weight_decay': 1e-5, 'noise_std': 1e-5}
