"""The shared "replace these hidden units" mechanism of continual backprop and ReDo.

A learner that re-initialises units decides WHICH units to replace; this module does the rest, the same way for
every such learner:

- A replaced unit's incoming weights are drawn afresh from the model's initialisation distribution, its incoming
  bias is set to zero and its outgoing weights are set to zero, so that the new unit does not change the network's
  output when it is added.
- Every optimizer-state leaf shaped like the params (SGD's momentum, Adam's moments, the per-element step counts of
  `adam_counts`, inside any `inject_hyperparams` wrapper or chain) is found with
  `optax.tree_utils.tree_map_params` and zeroed exactly at the replaced weights' entries; everything else in the
  state (scalar counts, hyperparameters, other weights' entries) is untouched.
- `make_unit_reset_optimizer`: backprop's optimizer, except that Adam keeps a step count per element
  (`learners.adam_counts`), so that the bias correction of a fresh unit's weights starts again at step 1.

The rewrite is stated densely (one (width,) bool mask per hidden layer, the columns copied from a full fresh
network) in the tests' reference, tests/learners/dense_reinit.py. What the learners run costs what the replaced units
need instead of a network per step:

- Unit lists. `units[l]` is a fixed-size (k,) int32 array of unit indices of hidden layer l; an index equal to the
  layer's width means "no unit". `replace_units_at` and `reset_optimizer_state_at` write exactly those columns,
  biases and rows by scatters (`set_slices`, out-of-range indices dropped), which XLA performs in place.
- Fresh weights. `fresh_incoming_weights` draws only the k new columns of each layer, with the layer's own kernel
  initialiser: `kernel_initializers` finds the `kernel_init` of each top-level `nn.Dense` module by running
  `init_params` abstractly (`jax.eval_shape`, nothing computed) under `flax.linen.intercept_methods`, and keeps
  those that declare themselves `models.FanInScaling` (the MLP's Kaiming initialiser): i.i.d. entries with a
  scale that depends on fan_in only, so a column drawn as a (fan_in, 1) kernel has exactly the distribution of a
  column of a full fresh (fan_in, width) kernel. Each
  column has its own key, from the step's key, the layer and the unit's place in the step's replacement order,
  so the result does not depend on how the units are chunked (below). For any other initialiser, or an
  `init_params` that is not a flax model, the full `init_params(key)` is drawn and its columns gathered: the same
  distribution at the old cost.
- Runs under `vmap`. The engine vmaps over runs (seeds, sweep points), and a `lax.cond` or `lax.while_loop` on a
  per-run condition then becomes a select that computes both sides for every run: a cond on "this run replaces a
  unit" would save nothing. `any_run(pred)` is `pred` for one run and, under `vmap` (`jax.custom_batching`), the OR
  of `pred` over all runs of the batch (at every nesting level), unbatched, so control flow on it stays real: the
  work is skipped at the steps where no run replaces a unit, and done for every run (those with nothing to replace
  get no-op unit lists) when some run does. A run's result never depends on the other runs. (With the runs sharded
  over devices this OR is one all-reduce of a boolean per step.)
- The loop. `reinitialize_units_in_order(params, opt_state, optimizer, orders, counts, ...)` replaces the units
  `orders[l][:counts[l]]`, `chunk_sizes[l]` at a time, in a `lax.while_loop` on `any_run(some layer of some run
  has units left)`: no iteration at the steps without a replacement, ceil(count / chunk) otherwise, never a unit
  left out. The loop carries params and optimizer state and scatters into them in place, whereas a `lax.cond`
  returning them would copy every weight matrix at every step. `reinitialize_units(..., masks, ...)` is the same
  for masks (one chunk of the layer's width: ReDo recycles any number of units at once, at rare steps).

Everything works on fixed shapes: masks are (width,) booleans and unit lists have a fixed length, so the number of
replaced units may depend on the data while no shape does; all functions are jittable and vmappable.
`lowest_scores_order` orders the eligible units by score (a sort), so that its first k, for a traced k, are the k
lowest (`first_units_mask`).

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
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from plasticity_jax.learners.adam_counts import adam_counts
from plasticity_jax.learners.backprop import make_optimizer
from plasticity_jax.models.initializers import FanInScaling

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


@jax.custom_batching.custom_vmap
def any_run(pred: jax.Array) -> jax.Array:
    """`pred` (a bool scalar) for one run; under `jax.vmap`, the OR over the batch's runs, unbatched (at every
    nesting level), so that a `lax.cond` on it stays a branch instead of a select of both sides."""
    return pred


@any_run.def_vmap
def _any_run_vmap(axis_size, in_batched, pred):
    (batched,) = in_batched
    return (any_run(jnp.any(pred)) if batched else pred), False


def units_of_mask(mask: jax.Array) -> jax.Array:
    """The indices of `mask`'s true entries, ascending, in a (width,) int32 array filled with the width (no unit)."""
    width = mask.shape[0]
    return jnp.nonzero(mask, size=width, fill_value=width)[0].astype(jnp.int32)


def first_units_mask(order: jax.Array, count: jax.Array) -> jax.Array:
    """The (width,) bool mask of the units `order[:count]` (entries >= width: no unit)."""
    width = order.shape[0]
    units = jnp.where(jnp.arange(width) < count, order, width)
    return jnp.zeros(width, bool).at[units].set(True, mode='drop')


def kernel_initializers(init_params: Callable[[jax.Array], Params], key: jax.Array) -> dict[str, Callable]:
    """{layer name: kernel_init} of the top-level `nn.Dense` modules `init_params` builds whose initialiser draws
    column blocks exactly (`models.FanInScaling`); found by running `init_params` abstractly under
    `nn.intercept_methods` (nothing is computed). Empty for an `init_params` that is not a flax model."""
    found = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, nn.Dense) and len(module.path) == 1:
            found[module.path[0]] = module.kernel_init
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        # A fresh function each time: `eval_shape` caches traces by function, and a cached trace runs no modules.
        jax.eval_shape(lambda k: init_params(k), key)
    return {name: init for name, init in found.items() if isinstance(init, FanInScaling)}


def fresh_incoming_weights(init_params: Callable[[jax.Array], Params], params: Params, units: Sequence[jax.Array],
                           key: jax.Array, layers: UnitLayers | None = None,
                           positions: Sequence[jax.Array] | None = None) -> list[jax.Array]:
    """New incoming weights for the listed units: per hidden layer l a (fan_in, k_l) array whose column j is for
    unit `units[l][j]`. With the layer's initialiser (`kernel_initializers`), column j is drawn as a (fan_in, 1)
    kernel with key `fold_in(fold_in(key, l), positions[l][j])` (`positions[l]`: the units' places in the step's
    replacement order, default 0 ... k_l - 1), so that a unit's weights do not depend on how the units are split
    into chunks; otherwise it is column `units[l][j]` of `init_params(key)`, a full fresh network."""
    layers = resolve_layers(params, layers)
    inits = kernel_initializers(init_params, key)
    positions = [jnp.arange(idx.shape[0]) for idx in units] if positions is None else positions
    full = None
    columns = []
    for l, ((incoming, _), idx, places) in enumerate(zip(layers, units, positions)):
        kernel = params[incoming]['kernel']
        if incoming in inits:
            init, fan_in = inits[incoming], kernel.shape[0]
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.fold_in(key, l), places)
            block = jax.vmap(lambda k: init(k, (fan_in, 1), kernel.dtype)[:, 0], out_axes=1)(keys)
        else:
            full = init_params(key) if full is None else full
            block = full[incoming]['kernel'].at[:, idx].get(mode='fill', fill_value=0)
        columns.append(block.astype(kernel.dtype))
    return columns


def set_slices(array: jax.Array, axis: int, units: jax.Array, values: jax.Array | float) -> jax.Array:
    """`array` with its slices `units[j]` along `axis` set to `values[j]` (`values`: the indexed slices' shape, or
    a scalar); entries `units[j]` >= the axis' length (no unit) are dropped. A scatter: XLA updates the slices in
    place (within the loop that carries the array), at the cost of the slices written."""
    return array.at[(slice(None),) * axis + (units,)].set(values, mode='drop')


def replace_units_at(params: Params, fresh_columns: Sequence[jax.Array], units: Sequence[jax.Array],
                     layers: UnitLayers | None = None,
                     keep: Sequence[jax.Array | None] | None = None) -> Params:
    """Replaces the listed units (indices >= width: no unit), by scatters: incoming kernel columns
    `units[l]` set to `fresh_columns[l]`, their incoming biases and outgoing kernel rows to 0, layer after layer.

    `keep[l]` (optional, a bool per column of layer l's outgoing kernel): columns whose entries in the zeroed rows
    keep their value, for units of layer l + 1 replaced earlier (an earlier chunk), whose fresh incoming weights
    win as when both are replaced at once."""
    layers = resolve_layers(params, layers)
    if len(units) != len(layers):
        raise ValueError(f'got {len(units)} unit lists for {len(layers)} hidden layers')
    keep = [None] * len(layers) if keep is None else keep
    for (incoming, outgoing), idx, fresh, kept in zip(layers, units, fresh_columns, keep):
        params = with_param(params, incoming, 'kernel', set_slices(params[incoming]['kernel'], 1, idx, fresh))
        params = with_param(params, incoming, 'bias', set_slices(params[incoming]['bias'], 0, idx, 0.0))
        w_out = params[outgoing]['kernel']
        rows = 0.0 if kept is None else jnp.where(kept, w_out.at[idx].get(mode='fill', fill_value=0), 0.0)
        params = with_param(params, outgoing, 'kernel', set_slices(w_out, 0, idx, rows))
    return params


def _zero_at(leaf: jax.Array, cuts: tuple[tuple[int, jax.Array], ...]) -> jax.Array:
    for axis, idx in cuts:
        leaf = set_slices(leaf, axis, idx, 0)
    return leaf


def reset_optimizer_state_at(optimizer: optax.GradientTransformation | Callable, opt_state: Any, params: Params,
                             units: Sequence[jax.Array], layers: UnitLayers | None = None) -> Any:
    """Zeroes, in every params-shaped leaf of `opt_state` (momentum, moments, per-element counts; found by
    `optax.tree_utils.tree_map_params`, for which `optimizer` or its `init` is needed), the entries
    `replace_units_at` rewrites for these units, by scatters; everything else is untouched."""
    layers = resolve_layers(params, layers)
    cuts = jax.tree.map(lambda _: (), params)  # per params leaf: the (axis, indices) to zero
    for (incoming, outgoing), idx in zip(layers, units):
        cuts = with_param(cuts, incoming, 'kernel', cuts[incoming]['kernel'] + ((1, idx),))
        cuts = with_param(cuts, incoming, 'bias', cuts[incoming]['bias'] + ((0, idx),))
        cuts = with_param(cuts, outgoing, 'kernel', cuts[outgoing]['kernel'] + ((0, idx),))
    return optax.tree_utils.tree_map_params(optimizer, _zero_at, opt_state, cuts)


def reinitialize_units_at(params: Params, opt_state: Any, optimizer, units: Sequence[jax.Array], key: jax.Array,
                          init_params: Callable[[jax.Array], Params], layers: UnitLayers | None = None,
                          keep: Sequence[jax.Array | None] | None = None,
                          positions: Sequence[jax.Array] | None = None) -> tuple[Params, Any]:
    """Replaces the listed units (`units[l]`: (k_l,) int32 indices of hidden layer l, >= width for no unit): fresh
    incoming weights (`fresh_incoming_weights`, with `positions`), zero incoming bias and outgoing weights
    (`replace_units_at`, with `keep`), and the optimizer state of those weights reset. Costs O(k_l x fan) per layer,
    not O(weights)."""
    layers = resolve_layers(params, layers)
    fresh = fresh_incoming_weights(init_params, params, units, key, layers, positions)
    new_params = replace_units_at(params, fresh, units, layers, keep)
    return new_params, reset_optimizer_state_at(optimizer, opt_state, params, units, layers)


def reinitialize_units_in_order(params: Params, opt_state: Any, optimizer, orders: Sequence[jax.Array],
                                counts: Sequence[jax.Array], key: jax.Array,
                                init_params: Callable[[jax.Array], Params], layers: UnitLayers | None = None,
                                chunk_sizes: Sequence[int] | None = None
                                ) -> tuple[Params, Any, tuple[jax.Array, ...]]:
    """Replaces the units `orders[l][:counts[l]]` of every hidden layer l (`orders[l]`: (width,) int32 unit indices,
    entries >= width mean no unit; `counts[l]`: a traced int), `chunk_sizes[l]` units at a time (default: the
    layer's width), by `reinitialize_units_at` (the unit at place p of the order gets the fresh column of place p,
    whatever the chunks). Returns the new params, optimizer state and the (width,) bool masks of the units
    replaced.

    The chunks run in a `lax.while_loop` whose condition, some layer of some run has units left (`any_run`), is
    not batched under `vmap`: no iteration at the steps where no run replaces a unit, ceil(max count / chunk) of
    them otherwise, and every listed unit of every run is replaced. Params and optimizer state are carried by the
    loop and updated in place (a `lax.cond` returning them would copy them). The result equals replacing all the units
    at once with fresh columns (the later layer's fresh weight wins where replaced units of
    consecutive layers meet, whichever chunks they are in)."""
    layers = resolve_layers(params, layers)
    if not len(orders) == len(counts) == len(layers):
        raise ValueError(f'got {len(orders)} orders and {len(counts)} counts for {len(layers)} hidden layers')
    widths = [params[incoming]['kernel'].shape[-1] for incoming, _ in layers]
    sizes = widths if chunk_sizes is None else [min(size, width) for size, width in zip(chunk_sizes, widths)]
    if min(sizes) < 1:
        raise ValueError(f'chunk sizes must be at least 1, got {chunk_sizes}')
    counts = [jnp.asarray(count, jnp.int32) for count in counts]

    def pending(carry):
        chunk = carry[0]
        return any_run(jnp.any(jnp.stack([count > chunk * size for count, size in zip(counts, sizes)])))

    def replace_chunk(carry):
        chunk, params, opt_state, replaced = carry
        # Through a barrier with the chunk, so that XLA does not hoist draws that depend on the key alone (the
        # full network of `fresh_incoming_weights`' fallback) out of the loop, where they would run at every step.
        loop_key, chunk = jax.lax.optimization_barrier((key, chunk))
        units, places = [], []
        for order, count, size, width in zip(orders, counts, sizes, widths):
            positions = chunk * size + jnp.arange(size, dtype=jnp.int32)
            unit = order.at[positions].get(mode='fill', fill_value=width)
            units.append(jnp.where(positions < count, unit, width).astype(jnp.int32))
            places.append(positions)
        keep = [*replaced[1:], None]  # the next layer's units replaced in earlier chunks
        params, opt_state = reinitialize_units_at(params, opt_state, optimizer, units, loop_key, init_params, layers,
                                                  keep, places)
        replaced = tuple(mask.at[idx].set(True, mode='drop') for mask, idx in zip(replaced, units))
        return chunk + 1, params, opt_state, replaced

    masks = tuple(jnp.zeros(width, bool) for width in widths)
    _, params, opt_state, masks = jax.lax.while_loop(
        pending, replace_chunk, (jnp.zeros((), jnp.int32), params, opt_state, masks))
    return params, opt_state, masks


def reinitialize_units(params: Params, opt_state: Any, optimizer, masks: Sequence[jax.Array], key: jax.Array,
                       init_params: Callable[[jax.Array], Params], layers: UnitLayers | None = None,
                       chunk_sizes: Sequence[int] | None = None) -> tuple[Params, Any]:
    """Replaces the units where `masks[l]` (a (width,) bool per hidden layer) is true, any number of them
    (`reinitialize_units_in_order`: nothing is computed at the steps where no run replaces a unit)."""
    layers = resolve_layers(params, layers)
    if len(masks) != len(layers):
        raise ValueError(f'got {len(masks)} masks for {len(layers)} hidden layers')
    params, opt_state, _ = reinitialize_units_in_order(
        params, opt_state, optimizer, [units_of_mask(mask) for mask in masks], [jnp.sum(mask) for mask in masks],
        key, init_params, layers, chunk_sizes)
    return params, opt_state


def lowest_scores_order(scores: jax.Array, eligible: jax.Array) -> jax.Array:
    """The eligible units by increasing score (ties: lower index first), as a (width,) int32 array whose other
    entries are the width (no unit): its first k entries are the k lowest-scoring eligible units."""
    width = scores.shape[0]
    ordered = jnp.argsort(jnp.where(eligible, scores, jnp.inf), stable=True).astype(jnp.int32)
    return jnp.where(eligible[ordered], ordered, width)


def make_unit_reset_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Backprop's optimizer (`learners.backprop.make_optimizer`) for learners that reset units; Adam is replaced by
    `adam_counts` (per-element step counts, reset with the moments), with the same injected hyperparameters."""
    if config.optimizer == 'adam':
        return optax.inject_hyperparams(adam_counts)(learning_rate=config.step_size, b1=config.beta1,
                                                     b2=config.beta2, eps=config.eps)
    return make_optimizer(config)
