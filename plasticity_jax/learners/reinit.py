"""The shared "replace these hidden units" mechanism of continual backprop and ReDo.

A learner that re-initialises units decides WHICH units to replace (a boolean mask per hidden layer); this module
does the rest, the same way for every such learner:

- `replace_units`: the unit's incoming weights are copied from freshly initialised params (`init_params(key)`, i.e.
  the model's own initialisation distribution), its incoming bias is set to zero and its outgoing weights are set
  to zero, so that the new unit does not change the network's output when it is added.
- `replaced_entries` / `reset_optimizer_state`: every optimizer-state leaf shaped like the params (SGD's momentum,
  Adam's moments, the per-element step counts of `adam_counts`, inside any `inject_hyperparams` wrapper or chain)
  is found with `optax.tree_utils.tree_map_params` and zeroed exactly at the replaced weights' entries; everything
  else in the state (scalar counts, hyperparameters, other weights' entries) is untouched.
- `make_unit_reset_optimizer`: backprop's optimizer, except that Adam keeps a step count per element
  (`learners.adam_counts`), so that the bias correction of a fresh unit's weights starts again at step 1.

Everything works on fixed shapes: the masks are (width,) booleans, so the number of replaced units may depend on the
data while no shape does; all functions are jittable and vmappable. `lowest_scores_mask` picks the k lowest scores
among eligible units with a traced k, by ranks from a sort.

Layers: `mlp_unit_layers(params)` lists, for the MLP's naming (`hidden_0 ... hidden_{d-1}`, `output`), each hidden
layer's (incoming layer, outgoing layer) names; a unit of hidden layer l is column l of `hidden_l/kernel` (+ its
bias entry) and row l of the next layer's kernel. Layers are processed in order, so where a replaced unit of layer l
meets a replaced unit of layer l + 1 (entry (i, j) of `hidden_{l+1}/kernel`) the fresh incoming weight of the later
unit wins, as in the papers' code; either way the output cannot see it, since the later unit's outgoing weights are
zero. Other parameters (e.g. the `norm_{l}` scale and bias of an MLP with a normalization) are left as they are, and
so are the model's other collections (online normalisation statistics); with LayerNorm, which mixes the units of a
layer, a replacement can change the output.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from plasticity_jax.learners.adam_counts import adam_counts
from plasticity_jax.learners.backprop import make_optimizer

Params = Any
UnitLayers = Sequence[tuple[str, str]]  # (incoming layer, outgoing layer) per hidden layer, in order


def mlp_unit_layers(params: Params) -> tuple[tuple[str, str], ...]:
    """((hidden_0, hidden_1), ..., (hidden_{d-1}, output)) for the MLP's parameter names."""
    depth = sum(1 for name in params if re.fullmatch(r'hidden_\d+', name))
    other = sorted(name for name in params if not re.fullmatch(r'(hidden|norm)_\d+|output', name))
    if other:
        raise ValueError(f'unit replacement (continual backprop, ReDo) supports the MLP (model.name=mlp) only; '
                         f'these params have layers it cannot handle: {other}')
    if not {f'hidden_{l}' for l in range(depth)} | {'output'} <= set(params):
        raise ValueError(f'expected params named hidden_0 ... hidden_{{d-1}} and output, got {sorted(params)}')
    names = [f'hidden_{l}' for l in range(depth)] + ['output']
    return tuple(zip(names[:-1], names[1:]))


def resolve_layers(params: Params, layers: UnitLayers | None) -> UnitLayers:
    """`layers` if given, else the MLP's (`mlp_unit_layers`)."""
    return mlp_unit_layers(params) if layers is None else layers


def with_param(params: Params, layer: str, field: str, value: jax.Array) -> Params:
    """A copy of the (nested dict) params with `params[layer][field] = value`."""
    return {**params, layer: {**params[layer], field: value}}


def replace_units(params: Params, fresh_params: Params, masks: Sequence[jax.Array],
                  layers: UnitLayers | None = None) -> Params:
    """Re-initialises the units where `masks[l]` (one (width,) bool per hidden layer) is true: incoming kernel
    columns from `fresh_params`, incoming bias 0, outgoing kernel rows 0. Every other parameter is kept."""
    layers = resolve_layers(params, layers)
    if len(masks) != len(layers):
        raise ValueError(f'got {len(masks)} masks for {len(layers)} hidden layers')
    for (incoming, outgoing), mask in zip(layers, masks):
        params = with_param(params, incoming, 'kernel',
                      jnp.where(mask[None, :], fresh_params[incoming]['kernel'], params[incoming]['kernel']))
        params = with_param(params, incoming, 'bias', jnp.where(mask, 0.0, params[incoming]['bias']))
        params = with_param(params, outgoing, 'kernel', jnp.where(mask[:, None], 0.0, params[outgoing]['kernel']))
    return params


def replaced_entries(params: Params, masks: Sequence[jax.Array], layers: UnitLayers | None = None) -> Params:
    """A bool tree shaped like `params`: true at every entry `replace_units` rewrites for these masks."""
    layers = resolve_layers(params, layers)
    entries = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), bool), params)
    for (incoming, outgoing), mask in zip(layers, masks):
        entries = with_param(entries, incoming, 'kernel', entries[incoming]['kernel'] | mask[None, :])
        entries = with_param(entries, incoming, 'bias', entries[incoming]['bias'] | mask)
        entries = with_param(entries, outgoing, 'kernel', entries[outgoing]['kernel'] | mask[:, None])
    return entries


def reset_optimizer_state(optimizer: optax.GradientTransformation | Callable, opt_state: Any,
                          entries: Params) -> Any:
    """Zeroes, in every params-shaped leaf of `opt_state` (momentum, moments, per-element counts), the entries
    where `entries` is true. `optimizer` (or its `init`) is what `optax.tree_utils.tree_map_params` needs to find
    those leaves."""
    return optax.tree_utils.tree_map_params(
        optimizer, lambda leaf, reset: jnp.where(reset, jnp.zeros_like(leaf), leaf), opt_state, entries)


def reinitialize_units(params: Params, opt_state: Any, optimizer, masks: Sequence[jax.Array], key: jax.Array,
                       init_params: Callable[[jax.Array], Params],
                       layers: UnitLayers | None = None) -> tuple[Params, Any]:
    """`replace_units` with fresh params `init_params(key)` plus `reset_optimizer_state` of the replaced entries.

    The fresh network is drawn only when some unit is replaced (`lax.cond`; under `vmap` over runs the draw is
    computed for every run and selected, since the condition differs between runs)."""
    layers = resolve_layers(params, layers)
    any_replaced = jnp.any(jnp.stack([jnp.any(mask) for mask in masks]))
    fresh = jax.lax.cond(any_replaced, init_params, lambda _: jax.tree.map(jnp.zeros_like, params), key)
    new_params = replace_units(params, fresh, masks, layers)
    new_opt_state = reset_optimizer_state(optimizer, opt_state, replaced_entries(params, masks, layers))
    return new_params, new_opt_state


def lowest_scores_mask(scores: jax.Array, eligible: jax.Array, k: jax.Array) -> jax.Array:
    """A (width,) bool mask of the `k` eligible units with the lowest scores (ties: lower index first).

    `k` may be traced; at most the number of eligible units are selected."""
    ordered = jnp.argsort(jnp.where(eligible, scores, jnp.inf), stable=True)
    ranks = jnp.zeros(scores.shape, jnp.int32).at[ordered].set(jnp.arange(scores.shape[0], dtype=jnp.int32))
    return eligible & (ranks < k)


def make_unit_reset_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Backprop's optimizer (`learners.backprop.make_optimizer`) for learners that reset units; Adam is replaced by
    `adam_counts` (per-element step counts, reset with the moments), with the same injected hyperparameters."""
    if config.optimizer == 'adam':
        return optax.inject_hyperparams(adam_counts)(learning_rate=config.step_size, b1=config.beta1,
                                                     b2=config.beta2, eps=config.eps)
    return make_optimizer(config)
