"""Online Permuted MNIST with backprop (Dohare dissertation Sec. 4.1, Figs. 4.2-4.7; Dohare et al., Nature 2024).

784 -> 3 hidden layers of 2000 ReLU units -> 10, Kaiming-normal initialisation, SGD, batch size 1, one pass over the
60,000 training images per task in a fresh random order, a new pixel permutation per task, 800 tasks, 30 seeds.

    python -m plasticity_jax.main --config=configs/permuted_mnist.py --workdir=runs/pmnist

Small CPU check (4 seeds, 10 tasks of 2,000 examples, width 100; measured 2026-12-01 on the 2-core machine, MNIST
already on disk: 18 s wall, 26 CPU-s):

    python -m plasticity_jax.main --config=configs/permuted_mnist.py --workdir=runs/pmnist_small \\
        --config.num_seeds=4 --config.num_tasks=10 --config.problem.examples_per_task=2000 --config.model.width=100

Variants (comma-separated after a colon, e.g. `configs/permuted_mnist.py:lr0.01`):
  sweep_lr                   the three step sizes below as ONE program (a sweep: results (point, seed, task))
  lr0.01, lr0.003, lr0.001   SGD step size (default 0.003, the best of the three in the dissertation)
  adam                       Adam (step size 0.0001) instead of SGD
  width100, width1000, width10000   hidden width (Fig. 4.3; default 2000)
  switch10k, switch100k, switch1m   examples per task (Fig. 4.4; the dissertation keeps 48M examples in total)
  dropout                    Dropout with p = 0.1 on every hidden layer (Sec. 4.3, Fig. 4.8; p = 0.01 was the best
                             value there: `--config.model.dropout_rate=0.01`)
  layernorm                  layer normalization before each hidden activation (not in the dissertation's Sec. 4.3;
                             Lyle et al. 2024 find it helps plasticity)
  online_norm                Online Normalization (Chiley et al., 2019) before each hidden activation (Sec. 4.3),
                             decays alpha_f = 0.999, alpha_b = 0.99 (plasticity_jax/models/normalization.py)

Data: MNIST's four IDX files, downloaded into the cache on first use, or offline from `--config.data_dir=DIR` (or
$PLASTICITY_JAX_DATA_DIR); see `plasticity_jax/data/mnist.py`.

Measured on a 2-core CPU (2026-11-20), reduced: `:lr0.01` with --config.num_seeds=4 --config.num_tasks=60
--config.problem.examples_per_task=10000 --config.model.width=100 (10 minutes on a loaded machine): online accuracy
0.852 (task 1) -> peak 0.862 (task 3) -> 0.797 (task 60); test accuracy 0.917 -> 0.886; dead units 0.3% -> 16%;
weight magnitude 0.055 -> 0.152; effective rank 58 -> 28 (mean over the 3 layers): the dissertation's pattern.

Expected (dissertation Fig. 4.2, 30 seeds): online accuracy rises over the first tasks to about 0.93-0.95 (step size
0.003) and then falls steadily over the 800 tasks, faster for step size 0.01; dead units, weight magnitude grow and
effective rank falls alongside (Figs. 4.5-4.7). Runtime: see BENCHMARKS.md (seed-steps per second); the full job is
800 x 60,000 steps per seed and needs an accelerator.
"""

from plasticity_jax import config as config_lib

TOTAL_EXAMPLES_FIG_4_4 = 48_000_000


def _switch(examples_per_task):
    def apply(config):
        config.problem.examples_per_task = examples_per_task
        config.num_tasks = TOTAL_EXAMPLES_FIG_4_4 // examples_per_task
    return apply


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_seeds = 30
    config.num_tasks = 800

    config.problem = config_lib.ml_collections.ConfigDict()
    config.problem.name = 'permuted_mnist'
    config.problem.examples_per_task = 60_000
    config.problem.batch_size = 1

    # Dissertation Sec. 2.1: Kaiming normal, N(0, 2 / fan_in).
    config.model = config_lib.model_config(width=2000, depth=3, activation='relu', init_distribution='normal')

    config.learner.step_size = 0.003

    variants = {**config_lib.step_size_variants((0.01, 0.003, 0.001)), **config_lib.learner_variants(),
                **config_lib.sweep_step_sizes_variant((0.01, 0.003, 0.001)),
                **config_lib.model_variants(),
                'adam': lambda c: (config_lib.adam_variant(c), setattr(c.learner, 'step_size', 1e-4)),
                'switch10k': _switch(10_000), 'switch100k': _switch(100_000), 'switch1m': _switch(1_000_000)}
    variants.update({f'width{w}': (lambda c, w=w: setattr(c.model, 'width', w)) for w in (100, 1000, 10_000)})
    return config_lib.apply_variants(config, arg, variants)
