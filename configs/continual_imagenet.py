"""Continual ImageNet (Dohare et al., "Loss of plasticity in deep continual learning", Nature 2024, Fig. 1).

2,000 binary classification tasks over 32x32 downsampled ImageNet (1,000 classes, 600 training and 100 test images per
class): task t separates classes order[2t] and order[2t + 1] of a per-seed random class order (reused from the start
after 500 tasks, as the papers' code does). Network (`models.ConvNet`): conv 32@5x5, 64@3x3, 128@3x3, each followed
by ReLU and 2x2 max-pool, then fully connected 512 -> 128 -> 128 -> 2 with ReLU. The head's weights and bias are set
to zero at the start of every task (`reset_at_task_start='head'`; the optimizer state is kept, as in the papers'
code). SGD with momentum 0.9, batch size 100, 250 epochs over the task's 1,200 training images (3,000 steps). Metric:
test accuracy on the task's 200 test images after training on it. 30 seeds.

Choices: step size 0.01 (the papers' sweep is 0.01, 0.001, 0.0001: variants lr0.01, lr0.001, lr0.0001, and
`sweep_lr` runs them as one program); pixels scaled to [0, 1] (the papers' code feeds raw pixel values).

    python scripts/prepare_continual_imagenet.py --out_dir=data/imagenet32_classes   # once (TFDS imagenet_resized)
    python -m plasticity_jax.main --config=configs/continual_imagenet.py --workdir=runs/cimagenet \\
        --config.data_dir=data/imagenet32_classes

Variants: lr0.01, lr0.001, lr0.0001, sweep_lr; every learner (`l2`, `redo`, ...), with the papers' settings for

- `cbp`: continual backprop as the papers' lop/imagenet/cfg/cbp.json: SGD with momentum 0.9, step size 0.01,
  replacement rate 3e-4, maturity threshold 100, utility 'adaptable_contribution', decay rate 0.99, on the channels
  of the three convolutions and the units of the two dense layers (`models.ConvNet.unit_layers`);
- `shrink_perturb`: lop/imagenet/cfg/snp.json: weight decay 1e-5, noise standard deviation 1e-5;
- `l2`: lop/imagenet/cfg/l2.json: weight decay 3e-6, step size 0.03;
- these three run 5,000 tasks, as their released configs (backprop's bp.json: 2,000);
- `l2_er`: the learner's defaults with `erank_layers='per_layer'` (the ConvNet's layers differ in width, so the
  default 'sum' of their E[a a^T] is undefined; our choice: the sum of each layer's effective rank).

    python -m plasticity_jax.main --config=configs/continual_imagenet.py:cbp --workdir=runs/cimagenet_cbp \
        --config.data_dir=data/imagenet32_classes

Expected (Nature 2024, Fig. 1b): backprop's test accuracy rises to about 88-89% over the first tasks and falls to
about 77% by task 2,000, below a linear network; continual backprop stays near 90% (and Shrink and Perturb, L2 also
keep much of it). Runtime: 2,000 x 3,000 steps per seed: an accelerator job (on one GPU, 30 seeds at the ConvNet's
throughput measured in BENCHMARKS.md, "Image models"; not measured in this repository, no GPU was lent). No
ImageNet copy is available on the development machine, so this config has only run on generated data in the same
format (tests/problems/test_dataset_tasks.py).
"""

from plasticity_jax import config as config_lib

STEP_SIZES = (0.01, 0.001, 0.0001)
# The papers' lop/imagenet/cfg/cbp.json, snp.json and l2.json (the other continual backprop fields are the learner's
# defaults); those configs run 5,000 tasks where backprop's bp.json runs 2,000.
CBP = {'replacement_rate': 3e-4, 'maturity_threshold': 100, 'utility': 'adaptable_contribution', 'decay_rate': 0.99}
SHRINK_PERTURB = {'weight_decay': 1e-5, 'noise_std': 1e-5}
L2 = {'weight_decay': 3e-6, 'step_size': 0.03}
RELEASED_LEARNER_TASKS = 5000


def _as_released(name, fields):
    """The variant of learner `name` with its released config's fields and length."""
    select = config_lib.learner_with(name, fields)

    def variant(config):
        select(config)
        config.num_tasks = RELEASED_LEARNER_TASKS

    return variant


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_seeds = 30
    config.num_tasks = 2000
    config.tasks_per_chunk = 20
    config.reset_at_task_start = 'head'
    config.problem = config_lib.dataset_tasks_problem(dataset='imagenet32', schedule='consecutive_pairs',
                                                      epochs=250, batch_size=100, train_per_class=600,
                                                      test_per_class=100)
    config.model = config_lib.image_model_config('convnet', base_width=32)
    config.learner.step_size = 0.01
    config.learner.momentum = 0.9
    config.metrics.probe_size = 500

    variants = {**config_lib.step_size_variants(STEP_SIZES), **config_lib.learner_variants(),
                **config_lib.sweep_step_sizes_variant(STEP_SIZES)}
    variants.update({'cbp': _as_released('cbp', CBP), 'shrink_perturb': _as_released('shrink_perturb', SHRINK_PERTURB),
                     'l2': _as_released('l2', L2),
                     'l2_er': config_lib.learner_with('l2_er', {'erank_layers': 'per_layer'})})
    return config_lib.apply_variants(config, arg, variants)
