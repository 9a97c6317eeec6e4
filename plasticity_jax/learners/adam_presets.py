"""Adam presets for non-stationary problems: 'proper_adam' (Adam with beta1 = beta2 = 0.99).

With the default beta2 = 0.999 the second-moment estimate v lags far behind the first moment m after the data
change: |m / sqrt(v)| can become much larger than 1 and the first updates of a new task are huge. Setting
beta1 = beta2 makes both moments forget at the same rate, which bounds the normalised update. Sources: Dohare, Lan &
Mahmood (2023), "Overcoming policy collapse in deep reinforcement learning", and the PPO experiments of Dohare et al.
(Nature 2024), which use beta1 = beta2 = 0.99 in non-stationary RL; the issue cites Lyle et al. for the same
recommendation. Those are RL results: on the supervised problems here this preset is a hypothesis to test, not a
reproduced setting.

The learner is backprop with Adam; the config variant `proper_adam` sets `optimizer = 'adam'`, `beta1 = beta2 =
0.99` and leaves the step size and eps to the experiment. Apply it after the experiment's `adam` variant to also get
that experiment's Adam step size: `configs/permuted_mnist.py:adam,proper_adam` (variants apply left to right; on its
own, `proper_adam` keeps the experiment's SGD step size, which is usually too large for Adam).

All of Adam's constants are `optax.inject_hyperparams` arrays in the optimizer state (see `learners.backprop`).
"""

from __future__ import annotations

import ml_collections

from plasticity_jax.learners.backprop import make_optimizer
from plasticity_jax.learners.base import Learner, make_learner_with

PROPER_ADAM_DEFAULTS = {'optimizer': 'adam', 'beta1': 0.99, 'beta2': 0.99}


def make_proper_adam(config: ml_collections.ConfigDict, init_params) -> Learner:
    del init_params
    if config.optimizer != 'adam':
        raise ValueError(f"learner 'proper_adam' is Adam; got learner.optimizer={config.optimizer!r} "
                         "(use the config variant `proper_adam`, which sets it)")
    return make_learner_with(make_optimizer(config))
