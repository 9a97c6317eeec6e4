"""Exact dense curvature matrices and their spectra, for small networks (up to some thousands of parameters).

The reference every estimate is checked against: the P x P Hessian (or GGN, empirical Fisher) of the dataset-mean
loss is built column by column from the curvature-vector products of `products.flat_matvec` applied to the unit
vectors, `batch_size` columns at a time (`lax.map`; the products are linearised once, so each column is the tangent
half of forward-over-reverse), symmetrised, and decomposed by `eigh`. Precision is that of the parameters: float64
when they are float64 (inside `jax.enable_x64(True)`), where the eigenvalues are accurate to ~1e-15 ||H||. Memory
is P^2 entries (8 GB at P = 30,000 in float64) and time O(P) products plus O(P^3) for `eigh`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from plasticity_jax.curvature.density import DEFAULT_EPSILONS
from plasticity_jax.curvature.products import ApplyFn, Dataset, LossFn, Params, flat_matvec
from plasticity_jax.linalg import eigvalsh


def dense_curvature(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, *,
                    curvature: str = 'hessian', chunk_size: int | None = None,
                    batch_size: int | None = 64) -> jax.Array:
    """The P x P curvature matrix of the mean loss over `dataset`, symmetrised ((C + C^T) / 2), in params' dtype."""
    matvec, dim = flat_matvec(curvature, apply_fn, loss, params, dataset, chunk_size=chunk_size)
    dtype = jax.flatten_util.ravel_pytree(params)[0].dtype
    columns = jax.lax.map(matvec, jnp.eye(dim, dtype=dtype), batch_size=batch_size)
    return 0.5 * (columns + columns.T)


def exact_spectrum(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, *,
                   curvature: str = 'hessian', epsilons: Sequence[float] = DEFAULT_EPSILONS,
                   chunk_size: int | None = None, batch_size: int | None = 64) -> dict[str, jax.Array]:
    """All eigenvalues of the dense curvature matrix and its exact epsilon-ranks (prefix `{curvature}_dense_`).

      {c}_dense_eigenvalues (P,)      ascending
      {c}_dense_epsilon_rank (E,)     #{|lambda| > eps} / P, NaN for eps at or below the round-off resolution
                                      sqrt(P) * eps_mach * max|lambda| (cf. `gauss_newton.exact_ggn_spectrum`)
      {c}_dense_epsilon_count (E,)    the count (-1 where unresolved)
      {c}_dense_resolution ()         that resolution
      {c}_dense_trace ()
    """
    matrix = dense_curvature(apply_fn, loss, params, dataset, curvature=curvature, chunk_size=chunk_size,
                             batch_size=batch_size)
    values = eigvalsh(matrix)
    dim = values.shape[0]
    resolution = jnp.sqrt(dim) * jnp.finfo(values.dtype).eps * jnp.max(jnp.abs(values))
    eps = jnp.asarray(epsilons, values.dtype)
    count = jnp.sum(jnp.abs(values)[None, :] > eps[:, None], axis=1)
    resolved = eps > resolution
    out = {'eigenvalues': values, 'epsilon_rank': jnp.where(resolved, count / dim, jnp.nan),
           'epsilon_count': jnp.where(resolved, count, -1), 'resolution': resolution, 'trace': jnp.trace(matrix)}
    return {f'{curvature}_dense_{name}': value for name, value in out.items()}
