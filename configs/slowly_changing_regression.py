"""Slowly-Changing Regression with backprop (Dohare et al., Nature 2024, Fig. 1c/Extended Data; Dohare et al. 2021).

The default job of the README: one hidden layer of 5 ReLU units learns online (batch size 1) a target that changes
every T = 10,000 examples, for 1M examples (100 tasks), 4 seeds in one program. Problem details and the choices made
where the papers leave room are in `plasticity_jax/problems/slowly_changing_regression.py`.

    python -m plasticity_jax.main --config=configs/slowly_changing_regression.py --workdir=runs/scr

Variants (comma-separated after a colon, e.g. `configs/slowly_changing_regression.py:tanh,lr0.001`):
  sweep_lr                   the three step sizes below as ONE program (a sweep: results (point, seed, task))
  lr0.01, lr0.003, lr0.001   SGD step size (default 0.01, the papers' largest)
  relu, tanh, sigmoid, elu, leaky_relu, swish, identity   hidden activation (default relu)
  adam                       Adam with step size 0.001 (variants apply left to right: `adam,lr0.01` is Adam at 0.01)
  redraw_all                 redraw all 15 flipping bits at each switch, as the papers' code does by default
  dropout, layernorm, online_norm   Dropout (p = 0.1), layer normalization, Online Normalization (decays 0.999
                             and 0.99) in the hidden layer: the Permuted MNIST settings of the dissertation's
                             Sec. 4.3; the papers do not run them on this problem

Expected: 7-15 s on a 2-core CPU for 4 seeds, about 25 s for 30 (measured 2026-11-20, see BENCHMARKS.md).
With SGD 0.01 and ReLU, the per-task MSE first falls, then rises again over the 100 tasks as units die and
plasticity is lost (the papers' pattern); the identity (linear) network's error stays flat at a higher level.
"""

from plasticity_jax import config as config_lib
from plasticity_jax.models import ACTIVATIONS


def get_config(arg=None):
    config = config_lib.base_config()
    config.num_tasks = 100

    config.problem = config_lib.ml_collections.ConfigDict()
    config.problem.name = 'slowly_changing_regression'
    config.problem.examples_per_task = 10_000  # T: examples between bit flips.
    config.problem.batch_size = 1
    config.problem.num_bits = 20  # m
    config.problem.num_flipping_bits = 15  # f
    config.problem.num_target_units = 100
    config.problem.beta = 0.7
    config.problem.flip_mode = 'flip_one'

    # The papers' code: kaiming_uniform_.
    config.model = config_lib.model_config(width=5, depth=1, activation='relu', init_distribution='uniform')

    config.learner.step_size = 0.01
    config.metrics.probe_size = 2000

    variants = {**config_lib.step_size_variants((0.01, 0.003, 0.001)), **config_lib.learner_variants(),
                **config_lib.sweep_step_sizes_variant((0.01, 0.003, 0.001)),
                **config_lib.model_variants(),
                'adam': lambda c: (config_lib.adam_variant(c), setattr(c.learner, 'step_size', 0.001)),
                'redraw_all': lambda c: setattr(c.problem, 'flip_mode', 'redraw_all')}
    variants.update({name: (lambda c, a=name: setattr(c.model, 'activation', a)) for name in ACTIVATIONS})
    return config_lib.apply_variants(config, arg, variants)
