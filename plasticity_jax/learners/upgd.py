"""Utility-based Perturbed Gradient Descent (Elsayed & Mahmood, ICLR 2024, "Addressing loss of plasticity and
catastrophic forgetting in continual learning"): 'upgd'.

UPGD is its own optimizer (it replaces SGD): useful weights are protected from change, useless weights are updated
and perturbed, which restores their plasticity. Per step t, for every weight w with gradient g (first-order global
UPGD, the paper's Algorithm 1 as implemented in the authors' `FirstOrderGlobalUPGD`, github.com/mohmdelsayed/upgd,
core/optim/weight_upgd/first_order.py):

    u      <- beta_u * u + (1 - beta_u) * (-g * w)              utility trace, first-order utility -g w
    eta    =  max over ALL weights of u                          (of the trace before bias correction)
    s      =  sigmoid( (u / (1 - beta_u^t)) / eta )              scaled utility in (0, 1)
    xi     ~  N(0, sigma^2)                                      fresh noise per weight (the `key` extra argument)
    w      <- (1 - alpha * weight_decay) * w - alpha * (g + xi) * (1 - s)

so the update is -alpha * weight_decay * w - alpha * (g + xi) * (1 - s). If every trace is 0 (eta = 0; e.g. the first
step with zero gradients) we take u / eta = 0, i.e. s = 1/2, instead of the authors' NaN. The README of the authors'
repository shows the same optimizer with the step doubled (alpha=-2.0*lr); we follow the paper's algorithm and the
optimizer their experiments import (step alpha).

Defaults (config variant `upgd`), the authors' Input-Permuted MNIST setting for UPGD (experiments/
statistics_input_permuted_mnist.py, `upgd2_grid` for FirstOrderGlobalUPGD): step size alpha = 0.01,
beta_utility = 0.9999, noise sigma = 0.1, weight_decay = 0.01. The variant sets `step_size` too, so it overrides the
experiment's SGD step size (apply `lr...` variants after `upgd` to change it). The learner requires
`optimizer = 'sgd'` and `momentum = 0` (UPGD has no momentum), which the variant sets too: it replaces an experiment's
SGD with momentum (Continual ImageNet, warm start) or Adam.

All four hyperparameters are `optax.inject_hyperparams` arrays in the optimizer state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from plasticity_jax.learners.base import Learner, make_learner_with
from plasticity_jax.learners.shrink_perturb import gaussian_like
from plasticity_jax.learners.weight_decay import field

DEFAULTS = {'step_size': 0.01, 'weight_decay': 0.01, 'beta_utility': 0.9999, 'noise_std': 0.1, 'momentum': 0.0,
            'optimizer': 'sgd'}


class UPGDState(NamedTuple):
    count: jax.Array  # int32: steps taken
    utility: Any  # the utility traces u, shaped like params


def upgd(learning_rate, weight_decay, beta_utility, noise_std) -> optax.GradientTransformationExtraArgs:
    """First-order global UPGD; `update` needs params and the `key` extra argument."""

    def init(params):
        return UPGDState(count=jnp.zeros((), jnp.int32), utility=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None, *, key=None, **extra_args):
        del extra_args
        if params is None or key is None:
            raise ValueError('upgd needs params and a PRNG key: call update(grads, state, params, key=key)')
        count = state.count + 1
        utility = jax.tree.map(lambda u, g, w: beta_utility * u + (1 - beta_utility) * (-g * w),
                               state.utility, updates, params)
        eta = jnp.max(jnp.stack([jnp.max(u) for u in jax.tree.leaves(utility)]))
        correction = 1 - beta_utility ** count.astype(jnp.float32)
        safe_eta = jnp.where(eta != 0, eta, 1.0)
        noise = gaussian_like(key, updates, noise_std)

        def step(u, g, w, xi):
            scaled = jax.nn.sigmoid(jnp.where(eta != 0, (u / correction) / safe_eta, 0.0))
            return (-learning_rate * weight_decay * w - learning_rate * (g + xi) * (1 - scaled)).astype(g.dtype)

        new_updates = jax.tree.map(step, utility, updates, params, noise)
        return new_updates, UPGDState(count=count, utility=utility)

    return optax.GradientTransformationExtraArgs(init, update)


def make_upgd(config: ml_collections.ConfigDict, init_params) -> Learner:
    del init_params
    if config.optimizer != 'sgd' or config.momentum:
        raise ValueError('UPGD is its own optimizer: it needs learner.optimizer = "sgd" and learner.momentum = 0, '
                         f'got {config.optimizer!r} and {config.momentum}')
    return make_learner_with(optax.inject_hyperparams(upgd)(
        learning_rate=config.get('step_size', DEFAULTS['step_size']),
        weight_decay=field(config, 'weight_decay', DEFAULTS), beta_utility=field(config, 'beta_utility', DEFAULTS),
        noise_std=field(config, 'noise_std', DEFAULTS)))
