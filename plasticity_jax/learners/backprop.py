"""Backprop: plain gradient descent on the problem's loss with SGD or Adam (Dohare dissertation Sec. 2.1, eq. 2.3-2.6).

Step sizes and Adam's constants are `optax.inject_hyperparams` values, so they live in the optimizer state as
arrays: a sweep can vary them across vmapped runs without recompiling.
"""

from __future__ import annotations

import ml_collections
import optax

from plasticity_jax.learners.base import Learner, make_learner_with

OPTIMIZERS = ('sgd', 'adam')


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SGD (optionally with momentum) or Adam with PyTorch's conventions (eps outside the square root)."""
    if config.optimizer == 'sgd':
        return optax.inject_hyperparams(optax.sgd)(learning_rate=config.step_size, momentum=config.momentum or None)
    if config.optimizer == 'adam':
        return optax.inject_hyperparams(optax.adam)(learning_rate=config.step_size, b1=config.beta1,
                                                    b2=config.beta2, eps=config.eps)
    raise ValueError(f'unknown learner.optimizer {config.optimizer!r}; valid: {list(OPTIMIZERS)}')


def make_backprop(config: ml_collections.ConfigDict, init_params) -> Learner:
    del init_params  # Backprop never re-initialises units.
    return make_learner_with(make_optimizer(config))
