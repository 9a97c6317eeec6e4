"""Continual backprop (Dohare et al., Nature 2024, Methods and Algorithm 1; Dohare, Sutton & Mahmood 2021): backprop
plus, after every update, the replacement of a small fraction of mature, low-utility hidden units by fresh ones.

Each step, for every unit layer l the model declares (`models.UnitLayer`: hidden units of dense layers, output
channels of convolutions, `learners.reinit`) with activations h (batch, width) of this step's forward pass (a
convolution's (batch, ..., channels) map: every mean over the batch below is also over the positions, as the papers'
`convGnT.py` and `res_gnt.py`; "incoming weights" then include the receptive field, "outgoing weights" every
position of every module that reads the channel) and the weights after the optimizer's update (the papers' code does
the same), in the order of the papers' `lop/algos/gnt.py`:

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
5. The eligible units with the lowest u_hat are replaced (`reinit.reinitialize_units_in_order`): incoming weights
   drawn from the model's initialisation distribution, incoming bias 0, outgoing weights 0, optimizer state of those
   weights reset (SGD momentum; Adam moments AND per-element step counts: with Adam this learner uses
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

Cost. Replacements are rare (at the default rate a layer of 2000 units replaces one unit every 5 steps, a layer of
5 units one every 2000 steps), so a step costs what the units it replaces need, not a new network (`reinit`'s
docstring has the mechanism): steps 1-4 run every step (O(weights): the mean |weights| per unit); the selection
(the sort of u_hat, the bias correction, a vector-matrix product per layer) sits behind a `lax.cond` on
`reinit.any_run` and runs only at the steps where some run of the engine's batch replaces a unit (with the same
counts in every run, all runs replace at the same steps); the replacement draws only the replaced units' fresh
incoming weights (fan_in each) and scatters them, chunk by chunk, in a `lax.while_loop` of no iteration at the
other steps. The chunk is ceil(replacement_rate * width) units (`default_chunk_size`; 1 for a swept, traced rate),
the most units that can be due in a step while the carry is below 1: one iteration per replacing step. No count is
bounded: a step with more units due runs more iterations and replaces them all, with the same result (a unit's
fresh weights depend on its place in the step's order, not on the chunks).

Defaults (`LEARNERS['cbp'].defaults`): eta = 0.99, maturity_threshold = 100, replacement_rate = 1e-4 (Nature paper,
Methods; the papers' Permuted MNIST config; ImageNet's cbp.json uses 3e-4, as configs/continual_imagenet.py:cbp)
and utility = 'adaptable_contribution', the utility of every
experiment config the papers' code ships (`lop/*/cfg/**/cbp*.json`); the Nature text describes 'contribution'.
"""

from __future__ import annotations

import math
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


def _concrete(value) -> float | None:
    """`value` as a float, or None if it is traced (a swept hyperparameter, `sweeps`)."""
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def default_chunk_size(replacement_rate, width: int) -> int:
    """How many units of a layer of `width` units `reinit.reinitialize_units_in_order` replaces per iteration:
    ceil(rate * width), the most that can be due in one step (module docstring), so that a step replaces its units
    in one iteration; 1 for a traced (swept) rate."""
    rate = _concrete(replacement_rate)
    return 1 if rate is None else max(1, min(width, math.ceil(rate * width)))


def continual_backprop_after_update(optimizer, init_params, *, replacement_rate: float, decay_rate: float,
                                    maturity_threshold: int, utility: str,
                                    bias_correction: bool | None = None, layers=None) -> AfterUpdate:
    """The unit-replacement routine; its state is a tuple of `UnitStats`, one per unit layer (`layers`: the model's
    `models.UnitLayer`s; None: a bare MLP's, `reinit.mlp_unit_layers`).

    `bias_correction=None` means: on for the mean-corrected utilities, off for 'contribution'."""
    if utility not in UTILITIES:
        raise ValueError(f'unknown continual backprop utility {utility!r}; valid: {list(UTILITIES)}')
    rate, decay = _concrete(replacement_rate), _concrete(decay_rate)  # None when swept (traced): not checked
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise ValueError(f'replacement_rate must be in [0, 1], got {replacement_rate}')
    if decay is not None and not 0.0 <= decay < 1.0:
        raise ValueError(f'decay_rate must be in [0, 1), got {decay_rate}')
    if bias_correction is None:
        bias_correction = utility in MEAN_CORRECTED
    eta = decay_rate

    def init(params):
        widths = [reinit.layer_width(params, layer) for layer in reinit.resolve_layers(params, layers)]
        return tuple(UnitStats(utility=jnp.zeros(w, jnp.float32), mean_activation=jnp.zeros(w, jnp.float32),
                               age=jnp.zeros(w, jnp.int32), to_replace=jnp.zeros((), jnp.float32),
                               num_replaced=jnp.zeros((), jnp.int32)) for w in widths)

    def update(state, inputs: AfterUpdateInputs):
        params = inputs.params
        unit_layers = reinit.resolve_layers(params, layers)
        layer_stats = []
        for layer, stats in zip(unit_layers, state):
            h = inputs.forward.hidden[layer.activation]  # (batch, units) or (batch, ..., units): positions average
            age = stats.age + 1
            correction = 1.0 - eta ** age.astype(jnp.float32)
            mean_activation = eta * stats.mean_activation + (1 - eta) * reinit.unit_means(h)
            mean_hat = mean_activation / correction
            out_magnitude = reinit.outgoing_magnitude(params, layer)
            if utility == 'contribution':
                instant = out_magnitude * reinit.unit_means(jnp.abs(h))
            else:
                instant = out_magnitude * reinit.unit_means(jnp.abs(h - mean_hat))
                if utility == 'adaptable_contribution':
                    instant = instant / reinit.incoming_magnitude(params, layer)
            util = eta * stats.utility + (1 - eta) * instant
            util_hat = util / correction

            eligible = age > maturity_threshold
            num_eligible = jnp.sum(eligible)
            to_replace = stats.to_replace + replacement_rate * num_eligible.astype(jnp.float32)
            num_now = jnp.minimum(jnp.floor(to_replace).astype(jnp.int32), num_eligible)
            to_replace = to_replace - num_now.astype(jnp.float32)
            layer_stats.append(dict(age=age, mean_activation=mean_activation, mean_hat=mean_hat, util=util,
                                    util_hat=util_hat, eligible=eligible, num_now=num_now, to_replace=to_replace))

        def select(_):
            """Per layer: the units in replacement order (lowest u_hat first; ineligible units: none) and the shift
            of the biases of the modules that read them."""
            orders, shifts = [], []
            for layer, s in zip(unit_layers, layer_stats):
                order = reinit.lowest_scores_order(s['util_hat'], s['eligible'])
                orders.append(order)
                if bias_correction:  # the removed units' mean contribution moves to the reading modules' biases
                    weights = jnp.where(reinit.first_units_mask(order, s['num_now']), s['mean_hat'], 0.0)
                    shifts.append(tuple(reinit.constant_input_response(params, layer, weights)))
            return tuple(orders), tuple(shifts)

        def nothing(_):  # no unit, no shift
            orders, shifts = jax.eval_shape(select, None)
            return (tuple(jnp.full(o.shape, o.shape[0], o.dtype) for o in orders),
                    jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype), shifts))

        # Skipped, with the replacement, at the steps where no run replaces a unit (`reinit.any_run`).
        due = reinit.any_run(jnp.any(jnp.stack([s['num_now'] > 0 for s in layer_stats])))
        orders, shifts = jax.lax.cond(due, select, nothing, None)
        for layer, layer_shifts in zip(unit_layers, shifts):  # before the replacement zeroes new units' own bias
            for module, shift in zip(layer.outgoing, layer_shifts):
                reader = reinit.get_path(params, module)
                if 'bias' in reader:
                    params = reinit.with_param(params, module, 'bias', reader['bias'] + shift)
        chunk_sizes = [default_chunk_size(replacement_rate, s['eligible'].shape[0]) for s in layer_stats]
        params, opt_state, model_state, masks = reinit.reinitialize_units_in_order(
            params, inputs.opt_state, optimizer, orders, [s['num_now'] for s in layer_stats], inputs.key,
            init_params, unit_layers, chunk_sizes, inputs.forward.model_state)

        new_state = tuple(
            UnitStats(utility=jnp.where(mask, 0.0, s['util']),
                      mean_activation=jnp.where(mask, 0.0, s['mean_activation']),
                      age=jnp.where(mask, 0, s['age']), to_replace=s['to_replace'],
                      num_replaced=stats.num_replaced + s['num_now'])
            for mask, stats, s in zip(masks, state, layer_stats))
        return new_state, params, opt_state, model_state

    return AfterUpdate(init=init, update=update)


def make_continual_backprop(config: ml_collections.ConfigDict, init_params, unit_layers=None) -> Learner:
    """Continual backprop with the optimizer of `config` (SGD, or Adam with per-element step counts; plus coupled
    weight decay when `config.weight_decay` is set) on the model's `unit_layers` (`models.UnitLayer`)."""
    optimizer = reinit.make_unit_reset_optimizer(config)
    learner = make_learner_with(optimizer)
    after_update = continual_backprop_after_update(
        reinit.resetting_optimizer(learner.optimizer, config), init_params,
        replacement_rate=config.replacement_rate, decay_rate=config.decay_rate,
        maturity_threshold=config.maturity_threshold, utility=config.utility, layers=unit_layers)
    return learner._replace(after_update=after_update)
