"""Continual backprop (Dohare et al., Nature 2024, Methods and Algorithm 1; Dohare, Sutton & Mahmood 2021): backprop
plus, after every update, the replacement of a small fraction of mature, low-utility hidden units by fresh ones.

Each step, for every hidden layer l with activations h (batch, width) of this step's forward pass and the weights
after the optimizer's update (the papers' code does the same), in the order of the papers' `lop/algos/gnt.py`:

1. age += 1 for every unit.
2. Running mean of the activation, f = eta f + (1 - eta) mean_batch(h), bias-corrected f_hat = f / (1 - eta^age).
3. Instantaneous utility, with o = mean |outgoing weights| and i = mean |incoming weights| of the unit:
     'contribution'                 o * mean_batch |h|                    (the Nature paper's eq. 1, with a mean
                                                                           instead of a sum: same ranking)
     'mean_corrected_contribution'  o * mean_batch |h - f_hat|            (`zero_contribution` in the code)
     'adaptable_contribution'       o * mean_batch |h - f_hat| / i
   running utility u = eta u + (1 - eta) * that, bias-corrected u_hat = u / (1 - eta^age).
4. Units with age > maturity_threshold are eligible. The number to replace accumulates
   replacement_rate * (number eligible) per step; its integer part is replaced now and the fractional remainder is
   carried to the next step (the code's `accumulate=True`, the Nature paper's Algorithm 1).
5. The eligible units with the lowest u_hat are replaced (`reinit.reinitialize_units`): incoming weights drawn from
   the model's initialisation distribution, incoming bias 0, outgoing weights 0, optimizer state of those weights
   reset (SGD momentum; Adam moments AND per-element step counts: with Adam this learner uses
   `learners.adam_counts`, as the code's AdamGnT). The unit's age, utility and mean activation restart at 0.

Replacing units must not change what the network has learned. The outgoing weights of a new unit are zero, so the
new unit itself adds nothing to the output. The removed unit's contribution disappears; with a mean-corrected utility
a unit whose activation is nearly constant has low utility even if that constant matters, so for those utilities
the removed unit's mean contribution f_hat * w_out is added to the next layer's bias (`bias_correction`), which
leaves the output exactly unchanged when the unit's activation was constant. The papers' code intends the same
correction (`gnt.py`, gen_new_features) but zeroes the unit's running mean just before using it, so there it adds
nothing; we implement the intended correction, for the mean-corrected utilities only (with 'contribution' the
removed unit has a small |h| w_out, and the Nature paper describes no correction). Other departures from the code:
SGD momentum of replaced weights is reset too (the code resets only Adam's state), and the fractional carry is the
only counting rule (the code's default `accumulate=False` draws a Bernoulli when fewer than one unit is due).

Defaults (`LEARNERS['cbp'].defaults`): eta = 0.99, maturity_threshold = 100, replacement_rate = 1e-4 (Nature paper,
Methods; the papers' Permuted MNIST and ImageNet configs) and utility = 'adaptable_contribution', the utility of every
experiment config the papers' code ships (`lop/*/cfg/**/cbp*.json`); the Nature text describes 'contribution'.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from plasticity_jax.learners import reinit
from plasticity_jax.learners.base import AfterUpdate, AfterUpdateInputs, Learner, make_learner_with

UTILITIES = ('contribution', 'mean_corrected_contribution', 'adaptable_contribution')
MEAN_CORRECTED = ('mean_corrected_contribution', 'adaptable_contribution')

DEFAULTS = {'replacement_rate': 1e-4, 'decay_rate': 0.99, 'maturity_threshold': 100,
            'utility': 'adaptable_contribution'}


class UnitStats(NamedTuple):
    """Continual backprop's state for one hidden layer."""

    utility: jax.Array  # (width,) running utility u, not bias-corrected
    mean_activation: jax.Array  # (width,) running mean f of the activation, not bias-corrected
    age: jax.Array  # (width,) int32 updates since the unit was (re)initialised
    to_replace: jax.Array  # () float32 replacements due but not yet made (the fractional carry)
    num_replaced: jax.Array  # () int32 units of this layer replaced so far (a diagnostic)


def continual_backprop_after_update(optimizer, init_params, *, replacement_rate: float, decay_rate: float,
                                    maturity_threshold: int, utility: str,
                                    bias_correction: bool | None = None, layers=None) -> AfterUpdate:
    """The unit-replacement routine; its state is a tuple of `UnitStats`, one per hidden layer.

    `bias_correction=None` means: on for the mean-corrected utilities, off for 'contribution'."""
    if utility not in UTILITIES:
        raise ValueError(f'unknown continual backprop utility {utility!r}; valid: {list(UTILITIES)}')
    if not 0.0 <= replacement_rate <= 1.0:
        raise ValueError(f'replacement_rate must be in [0, 1], got {replacement_rate}')
    if not 0.0 <= decay_rate < 1.0:
        raise ValueError(f'decay_rate must be in [0, 1), got {decay_rate}')
    if bias_correction is None:
        bias_correction = utility in MEAN_CORRECTED
    eta = decay_rate

    def init(params):
        widths = [params[incoming]['kernel'].shape[-1] for incoming, _ in reinit.resolve_layers(params, layers)]
        return tuple(UnitStats(utility=jnp.zeros(w, jnp.float32), mean_activation=jnp.zeros(w, jnp.float32),
                               age=jnp.zeros(w, jnp.int32), to_replace=jnp.zeros((), jnp.float32),
                               num_replaced=jnp.zeros((), jnp.int32)) for w in widths)

    def update(state, inputs: AfterUpdateInputs):
        params = inputs.params
        unit_layers = reinit.resolve_layers(params, layers)
        masks, new_state, bias_shifts = [], [], {}
        for (incoming, outgoing), stats, h in zip(unit_layers, state, inputs.forward.hidden):
            age = stats.age + 1
            correction = 1.0 - eta ** age.astype(jnp.float32)
            mean_activation = eta * stats.mean_activation + (1 - eta) * jnp.mean(h, axis=0)
            mean_hat = mean_activation / correction
            w_out = params[outgoing]['kernel']  # (width, next width)
            out_magnitude = jnp.mean(jnp.abs(w_out), axis=1)
            if utility == 'contribution':
                instant = out_magnitude * jnp.mean(jnp.abs(h), axis=0)
            else:
                instant = out_magnitude * jnp.mean(jnp.abs(h - mean_hat), axis=0)
                if utility == 'adaptable_contribution':
                    instant = instant / jnp.mean(jnp.abs(params[incoming]['kernel']), axis=0)
            util = eta * stats.utility + (1 - eta) * instant
            util_hat = util / correction

            eligible = age > maturity_threshold
            num_eligible = jnp.sum(eligible)
            to_replace = stats.to_replace + replacement_rate * num_eligible.astype(jnp.float32)
            num_now = jnp.minimum(jnp.floor(to_replace).astype(jnp.int32), num_eligible)
            to_replace = to_replace - num_now.astype(jnp.float32)
            mask = reinit.lowest_scores_mask(util_hat, eligible, num_now)

            if bias_correction:  # the removed units' mean contribution moves to the next layer's bias
                shift = jnp.sum(jnp.where(mask, mean_hat, 0.0)[:, None] * w_out, axis=0)
                bias_shifts[outgoing] = shift
            masks.append(mask)
            new_state.append(UnitStats(utility=jnp.where(mask, 0.0, util),
                                       mean_activation=jnp.where(mask, 0.0, mean_activation),
                                       age=jnp.where(mask, 0, age), to_replace=to_replace,
                                       num_replaced=stats.num_replaced + num_now))

        for layer, shift in bias_shifts.items():  # before replace_units, which zeroes the new units' own bias
            params = reinit.with_param(params, layer, 'bias', params[layer]['bias'] + shift)
        params, opt_state = reinit.reinitialize_units(params, inputs.opt_state, optimizer, masks, inputs.key,
                                                      init_params, unit_layers)
        return tuple(new_state), params, opt_state

    return AfterUpdate(init=init, update=update)


def make_continual_backprop(config: ml_collections.ConfigDict, init_params) -> Learner:
    """Continual backprop with the optimizer of `config` (SGD, or Adam with per-element step counts)."""
    optimizer = reinit.make_unit_reset_optimizer(config)
    learner = make_learner_with(optimizer)
    after_update = continual_backprop_after_update(
        learner.optimizer, init_params, replacement_rate=config.replacement_rate, decay_rate=config.decay_rate,
        maturity_threshold=config.maturity_threshold, utility=config.utility)
    return learner._replace(after_update=after_update)
