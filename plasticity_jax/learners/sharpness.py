"""Sharpness regularisers: sharpness-aware minimisation ('sam') and the gradient norm penalty ('gnp').

Both use the engine's `grad_fn(params, i)` extra argument: the gradient of this step's objective (same batch) at
other parameters.

SAM (Foret et al., 2021), via `optax.contrib.sam` in opaque mode (sync_period 2: one ascent step, then the outer
step, inside one `update` call):

    e = rho * g / ||g||_2,   g = grad L(theta)               (ascent to the worst point of the rho-ball, to first order)
    theta <- theta + BaseOptimizer(grad L(theta + e))        (the base SGD/Adam step taken from theta)

The ascent optimizer is `chain(safe_normalize(), inject_hyperparams(sgd)(rho))` (optax.contrib.normalize divides by
zero when g = 0; ours leaves a zero gradient at zero). `reset_state=False`: that optimizer has no moments to reset,
and keeping its state keeps rho an array in the optimizer state, so sweeps can vary it per run.

GNP (Zhao, Zhang & Hu, 2022, "Penalizing gradient norm for efficiently improving generalization in deep learning"):

    L_gnp(theta) = L(theta) + lambda * ||grad L(theta)||_2
    grad L_gnp   = g + lambda * H g / ||g||                             (H: the Hessian of L at theta)

`gnp_mode = 'exact'` (default) computes H g / ||g|| exactly with forward-over-reverse autodiff (`jax.jvp` of
`grad_fn`), i.e. the true gradient of the penalised objective, which is what the tests check against finite
differences of L_gnp. `gnp_mode = 'finite_difference'` is Zhao et al.'s first-order scheme (their eq. for the
practical gradient, code github.com/zhaoyang-0204/gnp):

    H g / ||g|| ~= (grad L(theta + r g/||g||) - g) / r
    =>  grad L_gnp ~= (1 - lambda/r) g + (lambda/r) grad L(theta + r g/||g||)        (alpha = lambda / r)

SAM is the special case alpha = 1. The penalised gradient is then fed to the base optimizer (SGD or Adam).

Defaults. "Neural Network Plasticity and Loss Sharpness" (Koster & Kukla, 2024; /work/shared/papers/002) run SGD,
SAM and GNP on Permuted MNIST with two settings each and state that they "set [rho] for both the SAM and GNP models",
but the values are lost in the text extraction available to us. So:
  sam  rho = 0.05: Foret et al.'s standard radius (our choice).
  gnp  r = 0.05 (= SAM's rho, as the paper uses one value for both), lambda = 0.8 * r = 0.04, i.e. Zhao et al.'s
       recommended balance alpha = lambda / r = 0.8 (their CIFAR recipes: alpha = 0.8, r = 0.1). Our choice.

All continuous hyperparameters (rho; lambda and r) are `optax.inject_hyperparams` arrays in the optimizer state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from plasticity_jax.learners.backprop import make_optimizer
from plasticity_jax.learners.base import Learner, make_learner_with
from plasticity_jax.learners.weight_decay import field

SAM_DEFAULTS = {'rho': 0.05}
GNP_DEFAULTS = {'gnp_coef': 0.04, 'gnp_r': 0.05, 'gnp_mode': 'exact'}
GNP_MODES = ('exact', 'finite_difference')


def tree_norm(tree) -> jax.Array:
    """||tree||_2, with a zero (not NaN) gradient at zero."""
    squared = sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def unit_direction(tree):
    """tree / ||tree||_2, and zeros where the tree is zero."""
    norm = tree_norm(tree)
    scale = jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0)
    return jax.tree.map(lambda x: (scale * x).astype(x.dtype), tree)


def safe_normalize() -> optax.GradientTransformation:
    """g <- g / ||g||_2 (0 stays 0)."""
    return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                        lambda updates, state, params=None: (unit_direction(updates), state))


def sam(base_optimizer: optax.GradientTransformation, rho) -> optax.GradientTransformationExtraArgs:
    """SAM around `base_optimizer` (opaque `optax.contrib.sam`); needs the `grad_fn` extra argument."""
    ascent = optax.chain(safe_normalize(), optax.inject_hyperparams(optax.sgd)(learning_rate=rho))
    inner = optax.contrib.sam(base_optimizer, ascent, sync_period=2, reset_state=False, opaque_mode=True)

    def update(updates, state, params=None, *, grad_fn=None, **extra_args):
        del extra_args  # optax.contrib.sam accepts only grad_fn (the engine also passes key).
        if grad_fn is None:
            raise ValueError('sam needs grad_fn(params, i): call update(..., grad_fn=...)')
        return inner.update(updates, state, params, grad_fn=grad_fn)

    return optax.GradientTransformationExtraArgs(inner.init, update)


def gradient_norm_penalty(coef, r, mode: str = 'exact') -> optax.GradientTransformationExtraArgs:
    """g <- grad (L + coef * ||grad L||): exactly (`mode='exact'`) or by Zhao et al.'s finite difference with r."""
    if mode not in GNP_MODES:
        raise ValueError(f'unknown gnp_mode {mode!r}; valid: {list(GNP_MODES)}')

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None, *, grad_fn=None, **extra_args):
        del extra_args
        if grad_fn is None or params is None:
            raise ValueError('gradient_norm_penalty needs params and grad_fn(params, i)')
        direction = unit_direction(updates)
        if mode == 'exact':
            # H (g/||g||) = d/dt grad L(theta + t g/||g||) at t = 0: the gradient of ||grad L||.
            _, penalty_grad = jax.jvp(lambda p: grad_fn(p, 0), (params,), (direction,))
            new = jax.tree.map(lambda g, h: g + coef * h, updates, penalty_grad)
        else:
            shifted = jax.tree.map(lambda p, d: p + r * d, params, direction)
            alpha = coef / r
            new = jax.tree.map(lambda g, g1: (1 - alpha) * g + alpha * g1, updates, grad_fn(shifted, 0))
        return jax.tree.map(lambda n, g: n.astype(g.dtype), new, updates), state

    return optax.GradientTransformationExtraArgs(init, update)


def make_sam(config: ml_collections.ConfigDict, init_params) -> Learner:
    del init_params
    return make_learner_with(sam(make_optimizer(config), field(config, 'rho', SAM_DEFAULTS)))


def make_gnp(config: ml_collections.ConfigDict, init_params) -> Learner:
    del init_params
    penalty = optax.inject_hyperparams(gradient_norm_penalty, static_args=('mode',))(
        coef=field(config, 'gnp_coef', GNP_DEFAULTS), r=field(config, 'gnp_r', GNP_DEFAULTS),
        mode=field(config, 'gnp_mode', GNP_DEFAULTS))
    return make_learner_with(optax.chain(penalty, make_optimizer(config)))
