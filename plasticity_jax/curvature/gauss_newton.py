"""The exact Gauss-Newton spectrum of a probe set, through its dual (N C) x (N C) Gram matrix.

For N probe examples and C outputs, the GGN of the mean loss is (products.py; Schraudolph 2002; Martens 2020)

    G = (1/N) sum_i J_i^T H_i J_i = B^T B,    B = (1/sqrt(N)) [L_1^T J_1; ...; L_N^T J_N]   ((N C) x P),

with L_i L_i^T = H_i the output Hessian of example i (`kronecker.output_hessian_sqrt`: V sqrt(Lambda) from its
eigendecomposition). The nonzero eigenvalues of B^T B (P x P) are those of the dual Gram matrix

    M = B B^T = (1/N) L^T J J^T L,    M[(i, c), (j, d)] = (1/N) (J_i^T L_i e_c) . (J_j^T L_j e_d),

so `eigvalsh(M)` gives EVERY nonzero eigenvalue of G: its count above any eps (the GGN epsilon-rank, exact, no
quadrature), its trace tr(G) = tr(M) and its top eigenvalues, at a cost set by the probe size N (the matrix is N C
square) rather than by the P parameters, whose other P - N C eigenvalues are exactly 0. This is the rank of the
GGN that the spectral-collapse work keeps up to stay trainable (Prakash, He, Guo et al., poster: L2-ER regularises
rank(H_GGN) through its Kronecker factors, Eq. 1, and its Theorem B.3 ties rank(H_GGN) to the Hessian's rank);
the Hessian epsilon-rank of its experiments is estimated, the GGN's is exact here.

How M is built (`ggn_gram`), chunk by chunk (`chunk_size` examples):

* Rows of B are per-example gradients: row (i, c) is the vector-Jacobian product of example i's outputs with the
  cotangent L_i e_c (`jax.vjp`, vmapped over the C columns and over the examples of a chunk).
* Parameters of flax `nn.Dense` layers (`method='auto'`, found by `kronecker.tapped_apply`, as for K-FAC): the
  gradient of row (i, c) w.r.t. a dense layer's [W; b] is a~_i (x) g_{i,c} (layer input with a 1 appended, and the
  back-propagated cotangent at its pre-activation), so that layer's share of M is the elementwise product

      M_l[(i, c), (j, d)] = (1/N) (a~_i . a~_j) (g_{i,c} . g_{j,d}),

  i.e. an N x N and an (N C) x (N C) Gram matrix of layer-width vectors: O(N^2 C^2 width) per layer, no P-sized
  vector per row. This is exact (not K-FAC: nothing is factored across examples).
* Every other parameter (convolution kernels, normalisation scales, ..., or all of them with `method='jvp'`): rows
  of B restricted to those parameters are materialised for one chunk of examples at a time (chunk_size x C vectors
  of that size), and their inner products with all rows are Jacobian-vector products over the probe set
  (`jax.jvp`, vmapped over the chunk's rows): J_j r contracted with L_j. Cost O(N^2 C P_rest); memory one chunk's
  rows.

Precision: eigvalsh of M in the parameters' dtype has errors of order eps_mach * ||M|| per eigenvalue (Golub & Van
Loan, Sec. 8.1), and forming M by sums over parameters adds rounding of the same order relative to ||M||; an
eigenvalue below `resolution = sqrt(N C) * eps_mach * lambda_max` cannot be told from 0, so counts at eps at or
below it are NaN (the resolution is returned as the reason). In float64 this is ~1e-12 lambda_max.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.flatten_util import ravel_pytree

from plasticity_jax.curvature.density import DEFAULT_EPSILONS
from plasticity_jax.curvature.kronecker import output_hessian_sqrt, tapped_apply
from plasticity_jax.curvature.products import (
    ApplyFn,
    Dataset,
    LossFn,
    Params,
    chunk_bounds,
    get_chunk,
    get_loss,
    num_examples,
)
from plasticity_jax.linalg import eigvalsh

GRAM_METHODS = ('auto', 'jvp')
# Log-spaced bins of the exact eigenvalue histogram: 4 per decade from 1e-8 to 1e4.
HISTOGRAM_EDGES = tuple(10.0 ** (e / 4) for e in range(-32, 17))


def map_examples(fn, dataset: Any, chunk_size: int | None) -> Any:
    """`fn(chunk)` (per-example outputs, leading axis = chunk's examples) over all N examples, chunk by chunk.

    Chunks are those of `products.get_chunk` (the last one shifted back to end at N); the examples two chunks share
    get identical values, so scattering every chunk's outputs to its examples' rows gives each example's value once.
    """
    n = num_examples(dataset)
    size, count = chunk_bounds(n, chunk_size)
    if count == 1:
        return fn(dataset)
    outs = jax.lax.map(lambda i: fn(get_chunk(dataset, i, size)[0]), jnp.arange(count))
    rows = (jnp.minimum(jnp.arange(count) * size, n - size)[:, None] + jnp.arange(size)).reshape(-1)
    return jax.tree_util.tree_map(
        lambda o: jnp.zeros((n,) + o.shape[2:], o.dtype).at[rows].set(o.reshape((-1,) + o.shape[2:])), outs)


def _split_dense(apply_fn: ApplyFn, params: Params, inputs: Any) -> tuple[dict, dict]:
    """(dense layer paths -> use_bias, the other parameters as a flat {path tuple: leaf} dict)."""
    use_bias: dict[str, bool] = {}
    jax.eval_shape(lambda x: tapped_apply(apply_fn, params, x, use_bias=use_bias),
                   jax.tree_util.tree_map(lambda leaf: leaf[:1], inputs))
    flat = traverse_util.flatten_dict(params)
    prefixes = {tuple(name.split('/')) for name in use_bias}
    dense = {k: v for k, v in flat.items() if k[:-1] in prefixes}
    missing = prefixes - {k[:-1] for k in dense}
    if missing:
        raise ValueError(f'dense layers {sorted(missing)} have no parameters at that path of params; '
                         "use method='jvp'")
    return use_bias, {k: v for k, v in flat.items() if k not in dense}


def ggn_gram(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, *,
             chunk_size: int | None = None, method: str = 'auto') -> jax.Array:
    """The dual Gram matrix M = (1/N) L^T J J^T L, (N C) x (N C), rows ordered (example, column of L_i).

    Its eigenvalues are the nonzero eigenvalues of the GGN of the mean loss over `dataset` (plus zeros). `method`:
    'auto' (dense layers in closed form, other parameters by jvp/vjp) or 'jvp' (all parameters by jvp/vjp).
    """
    if method not in GRAM_METHODS:
        raise ValueError(f'method must be one of {GRAM_METHODS}, got {method!r}')
    loss_fn = get_loss(loss)
    inputs, targets = dataset
    n = num_examples(dataset)

    def hessian_sqrt(chunk):
        x, y = chunk
        return output_hessian_sqrt(loss_fn, apply_fn(params, x), y)

    sqrt_h = map_examples(hessian_sqrt, dataset, chunk_size)  # (N, C, C)
    c = sqrt_h.shape[-1]
    flat = traverse_util.flatten_dict(params)
    if method == 'auto':
        use_bias, rest = _split_dense(apply_fn, params, inputs)
    else:
        use_bias, rest = {}, flat
    gram = jnp.zeros((n * c, n * c), sqrt_h.dtype)
    if use_bias:
        gram = gram + _dense_gram(apply_fn, params, dataset, sqrt_h, use_bias, chunk_size)
    if rest:
        gram = gram + _jvp_gram(apply_fn, flat, rest, dataset, sqrt_h, chunk_size)
    return gram / n


def _dense_gram(apply_fn, params, dataset, sqrt_h, use_bias, chunk_size) -> jax.Array:
    """sum over dense layers of (a~_i . a~_j)(g_ic . g_jd): the layers' share of N M."""
    inputs, _ = dataset
    _, _, out_shapes = jax.eval_shape(lambda x: tapped_apply(apply_fn, params, x),
                                      jax.tree_util.tree_map(lambda leaf: leaf[:1], inputs))

    def features(chunk):
        x, sqrt = chunk
        zeros = {name: jnp.zeros((sqrt.shape[0],) + s.shape[1:], s.dtype) for name, s in out_shapes.items()}
        _, vjp_fn, acts = jax.vjp(lambda pert: tapped_apply(apply_fn, params, x, pert)[:2], zeros, has_aux=True)
        (grads,) = jax.vmap(vjp_fn)(jnp.moveaxis(sqrt, 2, 0))  # {name: (C, b, d_out)}: cotangent column c of L_i
        return ({name: jnp.concatenate([a, jnp.ones_like(a[:, :1])], 1) if use_bias[name] else a
                 for name, a in acts.items()},
                {name: jnp.moveaxis(g, 0, 1) for name, g in grads.items()})  # (b, C, d_out)

    acts, grads = map_examples(features, (inputs, sqrt_h), chunk_size)
    n, c = sqrt_h.shape[:2]
    total = jnp.zeros((n, c, n, c), sqrt_h.dtype)
    for name in acts:
        a, g = acts[name], grads[name]
        total = total + (a @ a.T)[:, None, :, None] * jnp.einsum('icd,jed->icje', g, g)
    return total.reshape(n * c, n * c)


def _jvp_gram(apply_fn, flat, rest, dataset, sqrt_h, chunk_size) -> jax.Array:
    """N M restricted to the parameters in `rest`: rows of B by vjp per chunk, inner products by jvp over all."""
    fixed = {k: v for k, v in flat.items() if k not in rest}
    rest_tree = traverse_util.unflatten_dict(rest)

    def outputs(r, x):
        return apply_fn(traverse_util.unflatten_dict({**fixed, **traverse_util.flatten_dict(r)}), x)

    def example_rows(x, sqrt):  # the C rows J_i^T L_i e_c of one example, as pytrees with a leading C axis
        _, vjp_fn = jax.vjp(lambda r: outputs(r, jax.tree_util.tree_map(lambda leaf: leaf[None], x))[0], rest_tree)
        return jax.vmap(vjp_fn)(sqrt.T)[0]

    inputs = dataset[0]
    n, c = sqrt_h.shape[:2]
    size, _ = chunk_bounds(n, chunk_size)

    def block_rows(chunk):  # (b, C, N, C): inner products of the chunk's rows with every row
        x_a, sqrt_a = chunk
        rows = jax.tree_util.tree_map(lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]),
                                      jax.vmap(example_rows)(x_a, sqrt_a))  # (b C, ...)

        def columns(chunk_b):  # (b', b C, C)
            x_b, sqrt_b = chunk_b
            jv = jax.vmap(lambda t: jax.jvp(lambda r: outputs(r, x_b), (rest_tree,), (t,))[1])(rows)  # (bC, b', C)
            return jnp.einsum('rjk,jkd->jrd', jv, sqrt_b)

        cols = map_examples(columns, (inputs, sqrt_h), size)  # (N, b C, C)
        return jnp.moveaxis(cols, 0, 1).reshape(sqrt_a.shape[0], c, n, c)

    return map_examples(block_rows, (inputs, sqrt_h), size).reshape(n * c, n * c)


def exact_ggn_spectrum(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, *,
                       epsilons: Sequence[float] = DEFAULT_EPSILONS, chunk_size: int | None = None,
                       method: str = 'auto', top_k: int = 10) -> dict[str, jax.Array]:
    """Every eigenvalue-derived GGN metric of the probe set `dataset`, exactly, from `ggn_gram`.

    Keys (all for ONE run; the engine vmaps over seeds):

      ggn_exact_epsilon_rank (E,)     #{j : |lambda_j(G)| > eps} / P, P the number of parameters; NaN for eps at or
                                      below `ggn_exact_resolution` (round-off could put a zero eigenvalue above it)
      ggn_exact_epsilon_count (E,)    the count itself (-1 where unresolved)
      ggn_exact_resolution ()         sqrt(N C) * eps_mach * lambda_max: eigenvalues below are not told from 0
      ggn_exact_trace ()              tr(G) = tr(M)
      ggn_exact_top_eigenvalues (k,)  the `top_k` largest eigenvalues, descending
      ggn_exact_histogram (B,)        number of eigenvalues in each bin [HISTOGRAM_EDGES[b], HISTOGRAM_EDGES[b+1])
      ggn_exact_nonzero_bound ()      N C: the GGN's rank can be at most this (the dual's size)
    """
    gram = ggn_gram(apply_fn, loss, params, dataset, chunk_size=chunk_size, method=method)
    values = eigvalsh(gram)  # ascending
    size = gram.shape[0]
    num_params = ravel_pytree(params)[0].size
    resolution = jnp.sqrt(size) * jnp.finfo(values.dtype).eps * jnp.max(jnp.abs(values))
    eps = jnp.asarray(epsilons, values.dtype)
    count = jnp.sum(jnp.abs(values)[None, :] > eps[:, None], axis=1)
    resolved = eps > resolution
    edges = jnp.asarray(HISTOGRAM_EDGES, values.dtype)
    histogram = jnp.sum((values[None, :] >= edges[:-1, None]) & (values[None, :] < edges[1:, None]), axis=1)
    return {'ggn_exact_epsilon_rank': jnp.where(resolved, count / num_params, jnp.nan),
            'ggn_exact_epsilon_count': jnp.where(resolved, count, -1),
            'ggn_exact_resolution': resolution,
            'ggn_exact_trace': jnp.trace(gram),
            'ggn_exact_top_eigenvalues': values[::-1][:min(top_k, size)],
            'ggn_exact_histogram': histogram,
            'ggn_exact_nonzero_bound': jnp.asarray(size, jnp.int32)}
