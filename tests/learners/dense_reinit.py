"""The dense statement of unit replacement: the tests' reference for `plasticity_jax.learners.reinit`.

One (width,) bool mask per unit layer and a full fresh network whose units' incoming weights are copied; dense
layers only (a unit's incoming weights are a kernel column, its outgoing weights a row of the reading kernel). The
package runs the same rewrite by scatters of the replaced units only (`reinit.replace_units_at`,
`reinit.reset_optimizer_state_at`); the tests check these definitions by hand and the package against them.
Written in NumPy (eagerly, outside jit): a reference independent of jax's ops, and no small program compiled per
array operation.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax

from plasticity_jax.learners.reinit import Params, UnitLayers, get_path, resolve_layers, with_param


def replace_units(params: Params, fresh_params: Params, masks: Sequence[jax.Array],
                  layers: UnitLayers | None = None) -> Params:
    """Re-initialises the units where `masks[l]` (one (width,) bool per hidden layer) is true: incoming kernel
    columns from `fresh_params`, incoming bias 0, outgoing kernel rows 0. Every other parameter is kept."""
    layers = resolve_layers(params, layers)
    if len(masks) != len(layers):
        raise ValueError(f'got {len(masks)} masks for {len(layers)} hidden layers')
    params = jax.tree.map(np.asarray, params)
    for layer, mask in zip(layers, masks):
        incoming, (outgoing,) = layer.incoming, layer.outgoing
        mask = np.asarray(mask)
        fresh_kernel = np.asarray(get_path(fresh_params, incoming)['kernel'])
        kernel, bias = get_path(params, incoming)['kernel'], get_path(params, incoming)['bias']
        params = with_param(params, incoming, 'kernel', np.where(mask[None, :], fresh_kernel, kernel))
        params = with_param(params, incoming, 'bias', np.where(mask, np.zeros_like(bias), bias))
        outgoing_kernel = get_path(params, outgoing)['kernel']
        params = with_param(params, outgoing, 'kernel',
                            np.where(mask[:, None], np.zeros_like(outgoing_kernel), outgoing_kernel))
    return params


def replaced_entries(params: Params, masks: Sequence[jax.Array], layers: UnitLayers | None = None) -> Params:
    """A bool tree shaped like `params`: true at every entry `replace_units` rewrites for these masks."""
    layers = resolve_layers(params, layers)
    entries = jax.tree.map(lambda p: np.zeros(np.shape(p), bool), params)
    for layer, mask in zip(layers, masks):
        incoming, (outgoing,) = layer.incoming, layer.outgoing
        mask = np.asarray(mask)
        entries = with_param(entries, incoming, 'kernel', get_path(entries, incoming)['kernel'] | mask[None, :])
        entries = with_param(entries, incoming, 'bias', get_path(entries, incoming)['bias'] | mask)
        entries = with_param(entries, outgoing, 'kernel', get_path(entries, outgoing)['kernel'] | mask[:, None])
    return entries


def reset_optimizer_state(optimizer: optax.GradientTransformation | Callable, opt_state: Any,
                          entries: Params) -> Any:
    """Zeroes, in every params-shaped leaf of `opt_state` (momentum, moments, per-element counts), the entries
    where `entries` is true. `optimizer` (or its `init`) is what `optax.tree_utils.tree_map_params` needs to find
    those leaves."""
    return optax.tree_utils.tree_map_params(
        optimizer, lambda leaf, reset: np.where(reset, np.zeros_like(leaf), leaf), opt_state, entries)
