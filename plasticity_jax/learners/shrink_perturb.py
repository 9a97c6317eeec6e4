"""Shrink and Perturb (Ash & Adams, 2020) as run in Dohare et al.: 'shrink_perturb'.

Dohare's dissertation eq. 2.7, Shrink and Perturb with SGD:

    theta_t = theta_{t-1} - alpha (g_t + 2 lambda theta_{t-1}) + p,    p ~ N(0, sigma^2 I) drawn at every step,

i.e. every step shrinks all parameters by the factor (1 - 2 alpha lambda), takes the gradient step, and adds fresh
Gaussian noise to every parameter (weights and biases of all layers). The papers' code does exactly this: the shrink
is `weight_decay` in the torch optimizer (g + weight_decay * theta, so weight_decay = 2 lambda) and the noise is
added to every weight and bias after `opt.step()` (lop/algos/bp.py, `perturb`). Here the optimizer is

    optax.chain(add_l2(weight_decay), <SGD or Adam>, perturb(noise_std))

whose update with SGD is -alpha (g + weight_decay * theta) + noise_std * eps, eps ~ N(0, I): eq. 2.7 with the shrink
factor (1 - alpha * weight_decay) applied to theta_{t-1}. With Adam the shrink term goes through Adam (as
`torch.optim.Adam(weight_decay=...)` in the papers' code) and the noise is added after Adam's step.

Noise: `noise_std * optax.tree_utils.tree_random_like(key, params)` with the engine's `key` extra argument (a fresh
key per run and step): one key per parameter array, split from `key` in pytree-leaf order.

Defaults (config variant `shrink_perturb`), Online Permuted MNIST (Dohare dissertation Sec. 4.3, Fig. 4.10; Nature
2024 Extended Data Fig. 4b): the released config (lop/permuted_mnist/cfg/snp.json) fixes weight_decay = 1e-4 (step
size 0.003, SGD) and sweeps the noise standard deviation over {1e-4, 1e-5, 1e-6}; the dissertation reports that
large noise made loss of plasticity much worse and small noise had no effect. We use the middle value,
noise_std = 1e-5 (our choice: the value chosen in the figures is not stated in the text available to us).

`weight_decay` and `noise_std` are `optax.inject_hyperparams` arrays in the optimizer state: vmapped runs may differ.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

from plasticity_jax.learners.backprop import make_optimizer
from plasticity_jax.learners.base import Learner, make_learner_with
from plasticity_jax.learners.schedule import with_config_schedule
from plasticity_jax.learners.weight_decay import add_l2, field

DEFAULTS = {'weight_decay': 1e-4, 'noise_std': 1e-5}


def gaussian_like(key: jax.Array, tree, std):
    """std * N(0, 1) noise shaped like `tree`, one key per leaf split from `key` (optax.tree_utils)."""
    return jax.tree.map(lambda n: std * n, optax.tree_utils.tree_random_like(key, tree))


def perturb(noise_std: float) -> optax.GradientTransformationExtraArgs:
    """updates <- updates + noise_std * N(0, I), drawn from the `key` extra argument (required)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None, *, key=None, **extra_args):
        del params, extra_args
        if key is None:
            raise ValueError('perturb needs a PRNG key: call update(..., key=key)')
        noise = gaussian_like(key, updates, noise_std)
        return jax.tree.map(lambda u, n: u + n.astype(u.dtype), updates, noise), state

    return optax.GradientTransformationExtraArgs(init, update)


def shrink_and_perturb(base_optimizer: optax.GradientTransformation, weight_decay,
                       noise_std) -> optax.GradientTransformationExtraArgs:
    """Shrink (coupled weight decay before `base_optimizer`), step, perturb (noise after the step)."""
    return optax.chain(optax.inject_hyperparams(add_l2)(weight_decay=weight_decay), base_optimizer,
                       optax.inject_hyperparams(perturb)(noise_std=noise_std))


def make_shrink_perturb(config: ml_collections.ConfigDict, init_params) -> Learner:
    """With `config.step_size_milestones` (class-incremental CIFAR-100) the schedule scales the step (shrink and
    gradient, as PyTorch's `MultiStepLR` scales SGD's step size with its coupled weight decay), not the noise: the
    papers' code adds noise of a constant standard deviation after every step (`inject_noise` in
    lop/incremental_cifar/incremental_cifar_experiment.py)."""
    del init_params
    return make_learner_with(shrink_and_perturb(with_config_schedule(make_optimizer(config), config),
                                                field(config, 'weight_decay', DEFAULTS),
                                                field(config, 'noise_std', DEFAULTS)))
