"""The shared "replace these hidden units" mechanism of continual backprop and ReDo.

A learner that re-initialises units decides WHICH units to replace; this module does the rest, the same way for
every such learner:

- A replaced unit's incoming weights are drawn afresh from the model's initialisation distribution, its incoming
  bias is set to zero and its outgoing weights are set to zero, so that the new unit does not change the network's
  output when it is added. A unit is a hidden unit of a dense layer or an output channel of a convolution; the
  model declares its unit layers (`models.UnitLayer`: paths into nested params of the incoming module, of every
  module that reads the units, of the units' activations in `hidden`, and of a batch norm after them).
- Batch norm (the ResNet-18 of the papers' `lop/algos/res_gnt.py`, `gen_new_features`): the replaced channel's
  batch-norm scale is set to 1 and bias to 0, its running mean to 0 and running variance to 1 (the 'batch_stats'
  collection of the model state), as at initialisation.
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
  initialiser: `kernel_initializers` finds the `kernel_init` of each `nn.Dense` and `nn.Conv` module (by its
  path) by running `init_params` abstractly (`jax.eval_shape`, nothing computed) under
  `flax.linen.intercept_methods`, and keeps those that declare themselves `models.FanInScaling` (Kaiming, PyTorch's
  default): i.i.d. entries with a scale that depends on fan_in only (a convolution's receptive field included),
  so a unit's weights drawn as a (..., fan_in, 1) kernel have exactly the distribution of a unit of a full fresh
  kernel. Each
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

Layers: the learners take the model's declaration (`models.UnitLayer`, e.g. `model.unit_layers()`); without one
(`layers=None`) the params must be a bare MLP's (`hidden_0 ... hidden_{d-1}`, `output`) and `mlp_unit_layers`
declares them. A unit u of a layer is entry u of the last axis of its incoming `kernel` (and of its `bias`) and entry
u of the second-to-last axis of every outgoing `kernel`, viewed as (..., positions, units, outputs) when a dense
layer reads a flattened map (`unit_view`). Within one call all outgoing weights are zeroed before the fresh incoming
weights are written, so where a replaced unit of one layer meets a replaced unit of the layer that reads it (entry
(i, j) of `hidden_{l+1}/kernel`) the later unit's fresh incoming weight wins, as in the papers' code; either way the
output cannot see it, since that unit's outgoing weights are zero. Other parameters (e.g. the `norm_{l}` scale and
bias of an MLP with LayerNorm) are left as they are, and so are the model's other collections (online
normalisation statistics); with LayerNorm, which mixes the units of a layer, a replacement can change the output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from plasticity_jax.learners.adam_counts import adam_counts
from plasticity_jax.learners.backprop import make_optimizer
from plasticity_jax.learners.weight_decay import add_l2
from plasticity_jax.models.initializers import FanInScaling
from plasticity_jax.models.units import Path, UnitLayer, sequential_unit_layers

Params = Any
UnitLayers = Sequence[UnitLayer]
BATCH_STATS = 'batch_stats'  # the flax collection of batch norm's running statistics


def mlp_unit_layers(params: Params) -> tuple[UnitLayer, ...]:
    """The unit layers of a bare MLP's params (`hidden_0 ... hidden_{d-1}`, `output`; `models.MLP.unit_layers`)."""
    depth = sum(1 for name in params if name.startswith('hidden_') and name[len('hidden_'):].isdigit())
    other = sorted(name for name in params if not (name == 'output' or name.split('_')[0] in ('hidden', 'norm')))
    if other:
        raise ValueError(f'without the model\'s unit layers (models.UnitLayer), unit replacement takes an MLP\'s '
                         f'params; these have layers it cannot place: {other}')
    if not {f'hidden_{l}' for l in range(depth)} | {'output'} <= set(params):
        raise ValueError(f'expected params named hidden_0 ... hidden_{{d-1}} and output, got {sorted(params)}')
    return sequential_unit_layers([(f'hidden_{l}',) for l in range(depth)] + [('output',)])


def resolve_layers(params: Params, layers: UnitLayers | None) -> UnitLayers:
    """`layers` if given, else the bare MLP's (`mlp_unit_layers`)."""
    return mlp_unit_layers(params) if layers is None else tuple(layers)


def as_path(path: Path | str) -> Path:
    return (path,) if isinstance(path, str) else tuple(path)


def get_path(tree: Any, path: Path | str) -> Any:
    for name in as_path(path):
        tree = tree[name]
    return tree


def set_path(tree: Any, path: Path | str, value: Any) -> Any:
    """A copy of the nested dict `tree` with the entry at `path` set to `value` (the rest shared)."""
    path = as_path(path)
    if not path:
        return value
    return {**tree, path[0]: set_path(tree[path[0]], path[1:], value)}


def with_param(params: Params, module: Path | str, field: str, value: jax.Array) -> Params:
    """A copy of the (nested dict) params with `params[*module][field] = value`."""
    return set_path(params, (*as_path(module), field), value)


def layer_width(params: Params, layer: UnitLayer) -> int:
    return get_path(params, layer.incoming)['kernel'].shape[-1]


def unit_view(kernel: jax.Array, width: int) -> jax.Array:
    """An outgoing kernel (..., inputs, outputs) as (..., positions, width, outputs): unit u's weights are
    [..., :, u, :] (a dense layer reading a flattened (positions, width) map has inputs = positions * width)."""
    inputs = kernel.shape[-2]
    if inputs % width:
        raise ValueError(f'an outgoing kernel of shape {kernel.shape} cannot read {width} units on its axis -2')
    return kernel.reshape(*kernel.shape[:-2], inputs // width, width, kernel.shape[-1])


def unit_means(x: jax.Array) -> jax.Array:
    """The per-unit mean of an activation (batch, ..., units) or a weight array: over every axis but the last."""
    return jnp.mean(x, axis=tuple(range(x.ndim - 1)))


def outgoing_magnitude(params: Params, layer: UnitLayer) -> jax.Array:
    """(width,) mean |outgoing weight| of each unit, over every module that reads it and every position."""
    width = layer_width(params, layer)
    total, count = jnp.zeros(width, jnp.float32), 0
    for module in layer.outgoing:
        view = unit_view(get_path(params, module)['kernel'], width)
        view = jnp.moveaxis(jnp.abs(view), -2, -1)  # (..., outputs, width)
        total = total + jnp.sum(view.reshape(-1, width), axis=0)
        count += view.size // width
    return total / count


def incoming_magnitude(params: Params, layer: UnitLayer) -> jax.Array:
    """(width,) mean |incoming weight| of each unit (its receptive field included)."""
    return unit_means(jnp.abs(get_path(params, layer.incoming)['kernel']))


def constant_input_response(params: Params, layer: UnitLayer, values: jax.Array) -> list[jax.Array]:
    """Per outgoing module, the change of its pre-activation (outputs,) when every unit u of the layer outputs the
    constant `values[u]` at every position (away from padding): sum over positions and units of values x weights;
    a vector-matrix product in full float32 precision on every backend."""
    width = layer_width(params, layer)
    responses = []
    for module in layer.outgoing:
        view = unit_view(get_path(params, module)['kernel'], width)
        per_unit = jnp.sum(view.reshape(-1, width, view.shape[-1]), axis=0)  # (width, outputs)
        responses.append(jnp.dot(values, per_unit, precision=jax.lax.Precision.HIGHEST))
    return responses


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


def kernel_initializers(init_params: Callable[[jax.Array], Params], key: jax.Array) -> dict[Path, Callable]:
    """{module path: kernel_init} of the `nn.Dense` and `nn.Conv` modules `init_params` builds whose initialiser
    draws unit blocks exactly (`models.FanInScaling`); found by running `init_params` abstractly under
    `nn.intercept_methods` (nothing is computed). Empty for an `init_params` that is not a flax model."""
    found = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, (nn.Dense, nn.Conv)) and module.path:
            found[tuple(module.path)] = module.kernel_init
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        # A fresh function each time: `eval_shape` caches traces by function, and a cached trace runs no modules.
        jax.eval_shape(lambda k: init_params(k), key)
    return {path: init for path, init in found.items() if isinstance(init, FanInScaling)}


def fresh_incoming_weights(init_params: Callable[[jax.Array], Params], params: Params, units: Sequence[jax.Array],
                           key: jax.Array, layers: UnitLayers | None = None,
                           positions: Sequence[jax.Array] | None = None) -> list[jax.Array]:
    """New incoming weights for the listed units: per unit layer l an array shaped like its incoming kernel with
    k_l units on the last axis, unit j's weights for unit `units[l][j]`. With the layer's initialiser
    (`kernel_initializers`), unit j's weights are drawn as a (..., 1) kernel with key
    `fold_in(fold_in(key, l), positions[l][j])` (`positions[l]`: the units' places in the step's replacement order,
    default 0 ... k_l - 1), so that a unit's weights do not depend on how the units are split into chunks;
    otherwise they are unit `units[l][j]` of `init_params(key)`, a full fresh network."""
    layers = resolve_layers(params, layers)
    inits = kernel_initializers(init_params, key)
    positions = [jnp.arange(idx.shape[0]) for idx in units] if positions is None else positions
    full = None
    blocks = []
    for l, (layer, idx, places) in enumerate(zip(layers, units, positions)):
        kernel = get_path(params, layer.incoming)['kernel']
        if layer.incoming in inits:
            init, shape = inits[layer.incoming], (*kernel.shape[:-1], 1)
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.fold_in(key, l), places)
            block = jax.vmap(lambda k: init(k, shape, kernel.dtype)[..., 0], out_axes=-1)(keys)
        else:
            full = init_params(key) if full is None else full
            block = get_path(full, layer.incoming)['kernel'].at[..., idx].get(mode='fill', fill_value=0)
        blocks.append(block.astype(kernel.dtype))
    return blocks


def set_slices(array: jax.Array, axis: int, units: jax.Array, values: jax.Array | float) -> jax.Array:
    """`array` with its slices `units[j]` along `axis` set to `values[j]` (`values`: the indexed slices' shape, or
    a scalar); entries `units[j]` >= the axis' length (no unit) are dropped. A scatter: XLA updates the slices in
    place (within the loop that carries the array), at the cost of the slices written."""
    return array.at[(slice(None),) * axis + (units,)].set(values, mode='drop')


def _set_outgoing(kernel: jax.Array, width: int, units: jax.Array, kept: jax.Array | None) -> jax.Array:
    """Zeroes units' outgoing weights in `kernel` (`unit_view`), except, per output column, where `kept` is true."""
    view = unit_view(kernel, width)
    axis = view.ndim - 2
    if kept is None:
        rows = jnp.zeros((), view.dtype)
    else:
        old = view.at[(slice(None),) * axis + (units,)].get(mode='fill', fill_value=0)
        rows = jnp.where(kept, old, jnp.zeros((), view.dtype))
    return set_slices(view, axis, units, rows).reshape(kernel.shape)


def replace_units_at(params: Params, fresh_blocks: Sequence[jax.Array], units: Sequence[jax.Array],
                     layers: UnitLayers | None = None,
                     keep: Sequence[jax.Array | None] | None = None) -> Params:
    """Replaces the listed units (indices >= width: no unit), by scatters: outgoing weights of every layer's units
    set to 0, then incoming weights `units[l]` set to `fresh_blocks[l]`, incoming biases to 0, and batch norm scale
    1 and bias 0.

    `keep[l]` (optional, a bool per unit of layer l): units replaced earlier (an earlier chunk), whose fresh
    incoming weights are kept where another layer's units of this call are zeroed in a kernel that reads them, as
    when both are replaced at once."""
    layers = resolve_layers(params, layers)
    if len(units) != len(layers):
        raise ValueError(f'got {len(units)} unit lists for {len(layers)} unit layers')
    keep = [None] * len(layers) if keep is None else keep
    kept_by_module = {layer.incoming: kept for layer, kept in zip(layers, keep) if kept is not None}
    for layer, idx in zip(layers, units):
        width = layer_width(params, layer)
        for module in layer.outgoing:
            kernel = get_path(params, module)['kernel']
            params = with_param(params, module, 'kernel', _set_outgoing(kernel, width, idx, kept_by_module.get(module)))
    for layer, idx, fresh in zip(layers, units, fresh_blocks):
        incoming = get_path(params, layer.incoming)
        kernel = incoming['kernel']
        params = with_param(params, layer.incoming, 'kernel', set_slices(kernel, kernel.ndim - 1, idx, fresh))
        if 'bias' in incoming:
            params = with_param(params, layer.incoming, 'bias', set_slices(incoming['bias'], 0, idx, 0.0))
        if layer.normalization is not None:
            norm = get_path(params, layer.normalization)
            params = with_param(params, layer.normalization, 'scale', set_slices(norm['scale'], 0, idx, 1.0))
            params = with_param(params, layer.normalization, 'bias', set_slices(norm['bias'], 0, idx, 0.0))
    return params


def reset_model_state_at(model_state: Any, units: Sequence[jax.Array], layers: UnitLayers) -> Any:
    """The running mean (0) and variance (1) of the replaced units' batch norms ('batch_stats'), as at
    initialisation; a model state without that collection is returned as it is."""
    if not model_state or BATCH_STATS not in model_state:
        return model_state
    stats = model_state[BATCH_STATS]
    for layer, idx in zip(layers, units):
        if layer.normalization is not None:
            norm = get_path(stats, layer.normalization)
            stats = set_path(stats, layer.normalization, {**norm, 'mean': set_slices(norm['mean'], 0, idx, 0.0),
                                                         'var': set_slices(norm['var'], 0, idx, 1.0)})
    return {**model_state, BATCH_STATS: stats}


def _zero_at(leaf: jax.Array, cuts: tuple[tuple[int, int | None, jax.Array], ...]) -> jax.Array:
    for axis, width, idx in cuts:
        if width is None:
            leaf = set_slices(leaf, axis, idx, 0)
        else:  # an outgoing kernel, by its unit view
            leaf = _set_outgoing(leaf, width, idx, None)
    return leaf


def reset_optimizer_state_at(optimizer: optax.GradientTransformation | Callable, opt_state: Any, params: Params,
                             units: Sequence[jax.Array], layers: UnitLayers | None = None) -> Any:
    """Zeroes, in every params-shaped leaf of `opt_state` (momentum, moments, per-element counts; found by
    `optax.tree_utils.tree_map_params`, for which `optimizer` or its `init` is needed), the entries
    `replace_units_at` rewrites for these units (batch norm scale and bias included), by scatters; everything else
    is untouched."""
    layers = resolve_layers(params, layers)
    cuts = jax.tree.map(lambda _: (), params)  # per params leaf: the (axis, width or None, indices) to zero

    def add(cuts, module, field, cut):
        return with_param(cuts, module, field, get_path(cuts, module)[field] + (cut,))

    for layer, idx in zip(layers, units):
        width = layer_width(params, layer)
        kernel = get_path(params, layer.incoming)['kernel']
        cuts = add(cuts, layer.incoming, 'kernel', (kernel.ndim - 1, None, idx))
        if 'bias' in get_path(params, layer.incoming):
            cuts = add(cuts, layer.incoming, 'bias', (0, None, idx))
        for module in layer.outgoing:
            cuts = add(cuts, module, 'kernel', (None, width, idx))
        if layer.normalization is not None:
            cuts = add(cuts, layer.normalization, 'scale', (0, None, idx))
            cuts = add(cuts, layer.normalization, 'bias', (0, None, idx))
    return optax.tree_utils.tree_map_params(optimizer, _zero_at, opt_state, cuts)


def reinitialize_units_at(params: Params, opt_state: Any, optimizer, units: Sequence[jax.Array], key: jax.Array,
                          init_params: Callable[[jax.Array], Params], layers: UnitLayers | None = None,
                          keep: Sequence[jax.Array | None] | None = None,
                          positions: Sequence[jax.Array] | None = None, model_state: Any = None
                          ) -> tuple[Params, Any, Any]:
    """Replaces the listed units (`units[l]`: (k_l,) int32 indices of unit layer l, >= width for no unit): fresh
    incoming weights (`fresh_incoming_weights`, with `positions`), zero incoming bias and outgoing weights
    (`replace_units_at`, with `keep`), batch norm reset (`reset_model_state_at`), and the optimizer state of those
    weights reset. Returns params, optimizer state and model state. Costs O(k_l x fan) per layer, not
    O(weights)."""
    layers = resolve_layers(params, layers)
    fresh = fresh_incoming_weights(init_params, params, units, key, layers, positions)
    new_params = replace_units_at(params, fresh, units, layers, keep)
    if optimizer is not None:  # None: the optimizer state is kept (`resets_optimizer_state`)
        opt_state = reset_optimizer_state_at(optimizer, opt_state, params, units, layers)
    return (new_params, opt_state,
            reset_model_state_at(model_state, units, layers))


def reinitialize_units_in_order(params: Params, opt_state: Any, optimizer, orders: Sequence[jax.Array],
                                counts: Sequence[jax.Array], key: jax.Array,
                                init_params: Callable[[jax.Array], Params], layers: UnitLayers | None = None,
                                chunk_sizes: Sequence[int] | None = None, model_state: Any = None
                                ) -> tuple[Params, Any, Any, tuple[jax.Array, ...]]:
    """Replaces the units `orders[l][:counts[l]]` of every unit layer l (`orders[l]`: (width,) int32 unit indices,
    entries >= width mean no unit; `counts[l]`: a traced int), `chunk_sizes[l]` units at a time (default: the
    layer's width), by `reinitialize_units_at` (the unit at place p of the order gets the fresh weights of place p,
    whatever the chunks). Returns the new params, optimizer state, model state and the (width,) bool masks of the
    units replaced.

    The chunks run in a `lax.while_loop` whose condition, some layer of some run has units left (`any_run`), is
    not batched under `vmap`: no iteration at the steps where no run replaces a unit, ceil(max count / chunk) of
    them otherwise, and every listed unit of every run is replaced. Params, optimizer and model state are carried by
    the loop and updated in place (a `lax.cond` returning them would copy them). The result equals replacing all
    the units at once (a replaced unit's fresh incoming weights win over another replaced unit's zeroed outgoing
    weights, whichever chunks they are in)."""
    layers = resolve_layers(params, layers)
    if not len(orders) == len(counts) == len(layers):
        raise ValueError(f'got {len(orders)} orders and {len(counts)} counts for {len(layers)} unit layers')
    widths = [layer_width(params, layer) for layer in layers]
    sizes = widths if chunk_sizes is None else [min(size, width) for size, width in zip(chunk_sizes, widths)]
    if min(sizes) < 1:
        raise ValueError(f'chunk sizes must be at least 1, got {chunk_sizes}')
    counts = [jnp.asarray(count, jnp.int32) for count in counts]

    def pending(carry):
        chunk = carry[0]
        return any_run(jnp.any(jnp.stack([count > chunk * size for count, size in zip(counts, sizes)])))

    def replace_chunk(carry):
        chunk, params, opt_state, model_state, replaced = carry
        # Through a barrier with the chunk, so that XLA does not hoist draws that depend on the key alone (the
        # full network of `fresh_incoming_weights`' fallback) out of the loop, where they would run at every step.
        loop_key, chunk = jax.lax.optimization_barrier((key, chunk))
        units, places = [], []
        for order, count, size, width in zip(orders, counts, sizes, widths):
            positions = chunk * size + jnp.arange(size, dtype=jnp.int32)
            unit = order.at[positions].get(mode='fill', fill_value=width)
            units.append(jnp.where(positions < count, unit, width).astype(jnp.int32))
            places.append(positions)
        params, opt_state, model_state = reinitialize_units_at(
            params, opt_state, optimizer, units, loop_key, init_params, layers, replaced, places, model_state)
        replaced = tuple(mask.at[idx].set(True, mode='drop') for mask, idx in zip(replaced, units))
        return chunk + 1, params, opt_state, model_state, replaced

    masks = tuple(jnp.zeros(width, bool) for width in widths)
    _, params, opt_state, model_state, masks = jax.lax.while_loop(
        pending, replace_chunk, (jnp.zeros((), jnp.int32), params, opt_state, model_state, masks))
    return params, opt_state, model_state, masks


def reinitialize_units(params: Params, opt_state: Any, optimizer, masks: Sequence[jax.Array], key: jax.Array,
                       init_params: Callable[[jax.Array], Params], layers: UnitLayers | None = None,
                       chunk_sizes: Sequence[int] | None = None, model_state: Any = None
                       ) -> tuple[Params, Any, Any]:
    """Replaces the units where `masks[l]` (a (width,) bool per unit layer) is true, any number of them
    (`reinitialize_units_in_order`: nothing is computed at the steps where no run replaces a unit). Returns params,
    optimizer state and model state."""
    layers = resolve_layers(params, layers)
    if len(masks) != len(layers):
        raise ValueError(f'got {len(masks)} masks for {len(layers)} unit layers')
    params, opt_state, model_state, _ = reinitialize_units_in_order(
        params, opt_state, optimizer, [units_of_mask(mask) for mask in masks], [jnp.sum(mask) for mask in masks],
        key, init_params, layers, chunk_sizes, model_state)
    return params, opt_state, model_state


def lowest_scores_order(scores: jax.Array, eligible: jax.Array) -> jax.Array:
    """The eligible units by increasing score (ties: lower index first), as a (width,) int32 array whose other
    entries are the width (no unit): its first k entries are the k lowest-scoring eligible units."""
    width = scores.shape[0]
    ordered = jnp.argsort(jnp.where(eligible, scores, jnp.inf), stable=True).astype(jnp.int32)
    return jnp.where(eligible[ordered], ordered, width)


def resets_optimizer_state(config: ml_collections.ConfigDict) -> bool:
    """`config.reset_optimizer_state` (default True): whether a replacement resets the optimizer state of the
    replaced weights. The papers' supervised code resets Adam's (AdamGnT); their PPO code does not (`lop/algos/rl`,
    the RL configs' default, `rl.config`), and then Adam needs no per-element step counts."""
    return config.get('reset_optimizer_state', True)


def resetting_optimizer(learner_optimizer, config: ml_collections.ConfigDict):
    """What the replacement routines take as `optimizer`: the learner's, or None to keep the optimizer state."""
    return learner_optimizer if resets_optimizer_state(config) else None


def make_unit_reset_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Backprop's optimizer (`learners.backprop.make_optimizer`) for learners that reset units; Adam is replaced by
    `adam_counts` (per-element step counts, reset with the moments), with the same injected hyperparameters. With a
    `weight_decay` field (class-incremental CIFAR-100's continual backprop: SGD with weight decay 5e-4), the decay
    is coupled into the gradient first (`weight_decay.add_l2`, PyTorch's SGD `weight_decay`)."""
    if config.optimizer == 'adam' and resets_optimizer_state(config):
        optimizer = optax.inject_hyperparams(adam_counts)(learning_rate=config.step_size, b1=config.beta1,
                                                          b2=config.beta2, eps=config.eps)
    else:
        optimizer = make_optimizer(config)
    if 'weight_decay' in config:
        return optax.chain(optax.inject_hyperparams(add_l2)(weight_decay=config.weight_decay), optimizer)
    return optimizer
