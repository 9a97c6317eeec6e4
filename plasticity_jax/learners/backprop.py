"""Backprop: plain gradient descent on the problem's loss with SGD or Adam (Dohare dissertation Sec. 2.1, eq. 2.3-2.6).

Step sizes, SGD's momentum and Adam's constants are `optax.inject_hyperparams` values, so they live in the optimizer
state as arrays: a sweep can vary them across vmapped runs without recompiling. A fixed momentum of 0 is plain SGD
(no momentum buffer); a swept momentum keeps a buffer in every run, and its points at 0 take plain SGD's steps
(g + 0 * buffer). A sweep of a field the chosen optimizer ignores (momentum with Adam, Adam's constants with SGD) is
refused by `validation`.
"""

from __future__ import annotations

import ml_collections
import optax

from plasticity_jax.learners.base import Learner, is_swept, make_learner_with

OPTIMIZERS = ('sgd', 'adam')


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SGD (optionally with momentum) or Adam with PyTorch's conventions (eps outside the square root)."""
    if config.optimizer == 'sgd':
        momentum = config.momentum if is_swept(config.momentum) else config.momentum or None
        return optax.inject_hyperparams(optax.sgd)(learning_rate=config.step_size, momentum=momentum)
    if config.optimizer == 'adam':
        return optax.inject_hyperparams(optax.adam)(learning_rate=config.step_size, b1=config.beta1,
                                                    b2=config.beta2, eps=config.eps)
    raise ValueError(f'unknown learner.optimizer {config.optimizer!r}; valid: {list(OPTIMIZERS)}')


def make_backprop(config: ml_collections.ConfigDict, init_params) -> Learner:
    del init_params  # Backprop never re-initialises units.
    return make_learner_with(make_optimizer(config))
