"""Learners: an optax optimizer plus optional objective and after-update hooks (see `learners.base`)."""

from __future__ import annotations

from typing import Callable

import ml_collections

from plasticity_jax.learners.backprop import make_backprop, make_optimizer
from plasticity_jax.learners.base import (AfterUpdate, AfterUpdateInputs, ForwardPass, Learner, LossFn,
                                          identity_after_update, make_learner_with)

# name -> factory(learner_config, init_params) -> Learner. `init_params(key)` draws a fresh set of parameters from
# the model's initialisation distribution, for learners that re-initialise units.
LEARNERS: dict[str, Callable[..., Learner]] = {
    'backprop': make_backprop,
}


def make_learner(config: ml_collections.ConfigDict, init_params) -> Learner:
    """Builds the learner named by `config.name` (`config` is the run config's `learner` section)."""
    if config.name not in LEARNERS:
        raise ValueError(f'unknown learner.name {config.name!r}; valid: {sorted(LEARNERS)}')
    return LEARNERS[config.name](config, init_params)


__all__ = ['AfterUpdate', 'AfterUpdateInputs', 'ForwardPass', 'LEARNERS', 'Learner', 'LossFn',
           'identity_after_update', 'make_learner', 'make_learner_with', 'make_optimizer']
