"""Learners: an optax optimizer plus optional objective and after-update hooks (see `learners.base`)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import ml_collections

from plasticity_jax.learners.backprop import make_backprop, make_optimizer
from plasticity_jax.learners.base import (AfterUpdate, AfterUpdateInputs, ForwardPass, Learner, LossFn,
                                          identity_after_update, make_learner_with)



class LearnerSpec(NamedTuple):
    """`make(learner_config, init_params) -> Learner`; `init_params(key)` draws fresh parameters from the model's
    initialisation distribution, for learners that re-initialise units. `defaults` are the learner's own
    hyperparameters with the published values: the config variant named after the learner adds them to
    `config.learner` (next to the optimizer fields every learner has)."""

    make: Callable[[ml_collections.ConfigDict, Callable], Learner]
    defaults: Mapping[str, Any] = {}


LEARNERS: dict[str, LearnerSpec] = {
    'backprop': LearnerSpec(make_backprop),
}


def make_learner(config: ml_collections.ConfigDict, init_params) -> Learner:
    """Builds the learner named by `config.name` (`config` is the run config's `learner` section)."""
    if config.name not in LEARNERS:
        raise ValueError(f'unknown learner.name {config.name!r}; valid: {sorted(LEARNERS)}')
    return LEARNERS[config.name].make(config, init_params)


__all__ = ['AfterUpdate', 'AfterUpdateInputs', 'ForwardPass', 'LEARNERS', 'Learner', 'LearnerSpec', 'LossFn',
           'identity_after_update', 'make_learner', 'make_learner_with', 'make_optimizer']
