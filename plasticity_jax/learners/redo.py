"""ReDo, Recycling Dormant neurons (Sokar, Agarwal, Castro & Evci, "The dormant neuron phenomenon in deep
reinforcement learning", ICML 2023): every F updates, the hidden units whose normalised activity is at most tau are
re-initialised.

The score of unit i of a layer is s_i = a_i / mean_j a_j, with a_i the unit's mean |activation| (Sokar et al.,
Def. 3.1; a unit is tau-dormant when s_i <= tau). Sokar et al. compute a_i on one batch at the recycling step. Here
the batch may be a single example (Slowly-Changing Regression), so a_i is the mean of mean_batch |h_i| over the F
steps since the last recycling (exactly the last F steps); with F = 1 it is Sokar's batch score. Dohare's ReDo
baseline (`lop/algos/gntRedo.py`, called from `lop/algos/rl/ppo.py`) scores the |activations| of the recycling
step's minibatch only (`get_activations()` of the last forward pass), as Sokar et al.: on the RL configs'
minibatches of 128 ours averages the period's F = 100 minibatches instead (our choice, one rule for every problem).
A layer whose units are all silent (mean a = 0) has every score 0 (a 1e-9 guard in the denominator, as the ReDo
code), so all of its units are recycled.

Units are those the model declares (`models.UnitLayer`): hidden units of dense layers and output channels of
convolutions, whose |activation| is averaged over the batch and the positions of the map.

Recycling goes through `reinit.reinitialize_units`, as continual backprop (a replaced channel's batch norm, if any,
is reset to its initial scale, bias and running statistics): incoming weights from the model's
initialisation distribution (the ReDo code draws Xavier uniform instead), incoming bias 0, outgoing weights 0, and
the optimizer state of those weights reset (momentum; Adam's moments and, with `learners.adam_counts`, which this
learner uses for Adam, the per-element step counts; the ReDo code resets Adam's moments only). Any number of units
may be recycled at once, so fresh incoming weights are drawn for a layer's width of units (one chunk, the cost of
a fresh layer), but only at the recycling steps: at the other F - 1 steps of every period no run
recycles a unit (all runs count steps alike) and `reinit.any_run` skips the replacement altogether (a
`lax.while_loop` of no iteration) instead of drawing and discarding fresh weights at every step.

Defaults (`LEARNERS['redo'].defaults`): recycle_period F = 1000 updates (Sokar et al.; also Dohare's ReDo baseline)
and dormancy_threshold tau = 0.1 (the default `dead_neurons_threshold` of the ReDo code's `BaseRecycler` in
`dopamine/labs/redo/weight_recyclers.py`; the paper also reports smaller thresholds, e.g. 0.025, for some agents).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from plasticity_jax.learners import reinit
from plasticity_jax.learners.base import AfterUpdate, AfterUpdateInputs, Learner, make_learner_with

DEFAULTS = {'recycle_period': 1000, 'dormancy_threshold': 0.1}
SCORE_GUARD = 1e-9


class ReDoState(NamedTuple):
    activity: tuple[jax.Array, ...]  # per hidden layer (width,): sum of mean_batch |h| since the last recycling
    steps: jax.Array  # () int32 updates since the last recycling
    num_recycled: tuple[jax.Array, ...]  # per hidden layer () int32 units recycled so far (a diagnostic)


def dormancy_scores(mean_abs_activation: jax.Array) -> jax.Array:
    """s_i = a_i / mean_j a_j for one layer's (width,) mean |activations|."""
    return mean_abs_activation / (jnp.mean(mean_abs_activation) + SCORE_GUARD)


def redo_after_update(optimizer, init_params, *, recycle_period: int, dormancy_threshold: float,
                      layers=None) -> AfterUpdate:
    if recycle_period < 1:
        raise ValueError(f'recycle_period must be at least 1, got {recycle_period}')

    def init(params):
        widths = [reinit.layer_width(params, layer) for layer in reinit.resolve_layers(params, layers)]
        return ReDoState(activity=tuple(jnp.zeros(w, jnp.float32) for w in widths),
                         steps=jnp.zeros((), jnp.int32),
                         num_recycled=tuple(jnp.zeros((), jnp.int32) for _ in widths))

    def update(state: ReDoState, inputs: AfterUpdateInputs):
        steps = state.steps + 1
        recycle_now = steps >= recycle_period
        unit_layers = reinit.resolve_layers(inputs.params, layers)
        hidden = [inputs.forward.hidden[layer.activation] for layer in unit_layers]
        activity = tuple(total + reinit.unit_means(jnp.abs(h)) for total, h in zip(state.activity, hidden))
        masks = tuple(recycle_now & (dormancy_scores(total / steps.astype(jnp.float32)) <= dormancy_threshold)
                      for total in activity)
        params, opt_state, model_state = reinit.reinitialize_units(
            inputs.params, inputs.opt_state, optimizer, masks, inputs.key, init_params, unit_layers,
            model_state=inputs.forward.model_state)
        new_state = ReDoState(activity=tuple(jnp.where(recycle_now, 0.0, total) for total in activity),
                              steps=jnp.where(recycle_now, 0, steps),
                              num_recycled=tuple(n + jnp.sum(m) for n, m in zip(state.num_recycled, masks)))
        return new_state, params, opt_state, model_state

    return AfterUpdate(init=init, update=update)


def make_redo(config: ml_collections.ConfigDict, init_params, unit_layers=None) -> Learner:
    """ReDo with the optimizer of `config` (SGD, or Adam with per-element step counts; plus coupled weight decay
    when `config.weight_decay` is set) on the model's `unit_layers` (`models.UnitLayer`)."""
    learner = make_learner_with(reinit.make_unit_reset_optimizer(config))
    after_update = redo_after_update(reinit.resetting_optimizer(learner.optimizer, config), init_params,
                                     recycle_period=config.recycle_period,
                                     dormancy_threshold=config.dormancy_threshold, layers=unit_layers)
    return learner._replace(after_update=after_update)
