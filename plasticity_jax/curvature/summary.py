"""Model-level entry points: extreme eigenvalues and the in-run spectrum summary the engine logs.

These tie the pieces together for `apply_fn`, `loss`, `params` and a `dataset = (inputs, targets)` of ONE run; the
engine vmaps them over its seed axis (params, PRNG key, and the dataset if it differs per seed). All shapes of the
outputs are fixed by static arguments (order, k, number of draws, epsilons, grid), so results of different tasks and
seeds stack into arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from plasticity_jax.curvature.density import (
    DEFAULT_EPSILONS,
    Estimate,
    epsilon_density_mass,
    hutchinson_trace,
    mass_outside_interval,
    rademacher_probes,
    resolved_epsilon_rank,
    slq,
    slq_trace,
    spectral_density,
)
from plasticity_jax.curvature.kronecker import factor_eigenvalues, kronecker_epsilon_rank, kronecker_factors
from plasticity_jax.curvature.lanczos import default_dtype, lanczos, ritz_residual_norms
from plasticity_jax.curvature.products import ApplyFn, Dataset, LossFn, Params, flat_matvec

# Fixed grid and smoothing of the logged density: same grid for every task and seed, so densities can be averaged
# and compared. Mass beyond the grid is logged separately.
DEFAULT_DENSITY_GRID = (-5.0, 45.0, 501)  # (low, high, points): spacing 0.1
DEFAULT_SIGMA = 0.1


def density_grid(spec: tuple[float, float, int] = DEFAULT_DENSITY_GRID, dtype=None) -> jax.Array:
    """`jnp.linspace(low, high, points)` for a `(low, high, points)` grid spec."""
    low, high, points = spec
    return jnp.linspace(low, high, points, dtype=dtype or default_dtype())


def extreme_eigenvalues(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, key: jax.Array, *,
                        k: int = 1, order: int = 32, curvature: str = 'hessian', chunk_size: int | None = None,
                        dtype=None, linearize: bool = True) -> dict[str, jax.Array]:
    """Top-k and bottom-k eigenvalues of the curvature matrix of the dataset-mean loss, by one Lanczos run.

    The start vector is Gaussian from `key`. Returns `{'top': (k,) descending, 'bottom': (k,) ascending,
    'top_residual': (k,), 'bottom_residual': (k,)}` where the residuals bound the distance of each Ritz value to an
    eigenvalue. Lanczos resolves both ends of the spectrum first (the better separated one faster); `order` ~ 20-50
    usually pins the top eigenvalue of a network Hessian, whose top eigenvalues are outliers. `linearize`: see
    `products.flat_matvec` (True: the forward/backward passes run once, their residuals of all examples are kept).
    """
    matvec, dim = flat_matvec(curvature, apply_fn, loss, params, dataset, chunk_size=chunk_size, linearize=linearize)
    dtype = dtype or default_dtype()
    res = lanczos(matvec, jax.random.normal(key, (dim,), dtype), min(order, dim), dtype=dtype)
    values, residuals = ritz_residual_norms(res)
    return {'top': values[::-1][:k], 'bottom': values[:k],
            'top_residual': residuals[::-1][:k], 'bottom_residual': residuals[:k]}


def top_eigenvalues(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, key: jax.Array, *,
                    k: int = 1, order: int = 32, curvature: str = 'hessian', chunk_size: int | None = None,
                    dtype=None, linearize: bool = True) -> jax.Array:
    """The k largest eigenvalues (descending) of the curvature matrix; `k=1` is the loss sharpness."""
    return extreme_eigenvalues(apply_fn, loss, params, dataset, key, k=k, order=order, curvature=curvature,
                               chunk_size=chunk_size, dtype=dtype, linearize=linearize)['top']


def curvature_trace(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, key: jax.Array, *,
                    num_probes: int = 16, curvature: str = 'hessian', chunk_size: int | None = None,
                    dtype=None, linearize: bool = True) -> Estimate:
    """Hutchinson estimate of the trace of the curvature matrix and its standard error (`num_probes` products).

    Cheaper than `spectrum_summary` when only the trace is wanted (one product per probe instead of `order`).
    """
    dtype = dtype or default_dtype()
    matvec, dim = flat_matvec(curvature, apply_fn, loss, params, dataset, chunk_size=chunk_size, linearize=linearize)
    return hutchinson_trace(matvec, rademacher_probes(key, num_probes, dim, dtype))


def spectrum_summary(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, key: jax.Array, *,
                     curvature: str = 'hessian', num_draws: int = 4, order: int = 64,
                     epsilons: Sequence[float] = DEFAULT_EPSILONS,
                     grid: tuple[float, float, int] = DEFAULT_DENSITY_GRID, sigma: float = DEFAULT_SIGMA,
                     chunk_size: int | None = None, dtype=None, batch_size: int | None = None,
                     linearize: bool = True) -> dict[str, jax.Array]:
    """Every in-run curvature metric from one SLQ computation (`num_draws` Rademacher probes x `order` steps).

    Cost: num_draws * order curvature-vector products over the dataset; with `linearize=True` (default, see
    `products.flat_matvec`) the forward and backward passes run once and each product is only their tangent half,
    at the price of keeping the residuals of all examples in memory. Keys are prefixed by `curvature`
    ('hessian_...' for the default):

      {c}_top_eigenvalue ()            largest Ritz value over all draws (a lower bound converging to lambda_max)
      {c}_top_eigenvalue_residual ()   its Lanczos residual bound (round-off excluded, see `ritz_residual_norms`)
      {c}_bottom_eigenvalue ()         smallest Ritz value over all draws
      {c}_trace, {c}_trace_stderr ()   Hutchinson estimate from the same probes, and its standard error
      {c}_epsilon_rank (E,)            definition 1: #{|lambda| > eps} / n from the Ritz weights, per epsilon,
                                       NaN where eps is not resolved at this order (`density.resolved_epsilon_rank`)
      {c}_epsilon_rank_stderr (E,)     its standard error over the draws (NaN where unresolved)
      {c}_epsilon_rank_raw (E,)        the Ritz-weight count at every eps, resolved or not (for diagnostics only)
      {c}_epsilon_rank_bound (E,)      bound on the quadrature error of the count (the reason for a NaN)
      {c}_epsilon_mass (E,)            definition 2: smoothed density mass outside [-eps, eps], per epsilon
                                       (for eps below ~sigma it reflects the smoothing, not the spectrum)
      {c}_epsilon_mass_stderr (E,)
      {c}_density (P,)                 Gaussian-smoothed density on `density_grid(grid)` (width `sigma`)
      {c}_density_mass_outside_grid () share of the smoothed density beyond the grid
      {c}_lanczos_breakdowns ()        total breakdown restarts (0 unless order approaches the Krylov dimension)

    The epsilons and the grid are static (the same for every call), so they are not returned.
    """
    dtype = dtype or default_dtype()
    matvec, dim = flat_matvec(curvature, apply_fn, loss, params, dataset, chunk_size=chunk_size, linearize=linearize)
    result = slq(matvec, rademacher_probes(key, num_draws, dim, dtype), min(order, dim), dtype=dtype,
                 batch_size=batch_size)
    trace = slq_trace(result)
    rank, raw_rank, rank_bound = resolved_epsilon_rank(result, dim, epsilons)
    mass = epsilon_density_mass(result, sigma, epsilons)
    points = density_grid(grid, dtype)
    top_index = jnp.argmax(result.ritz_values[:, -1])
    out = {
        'top_eigenvalue': result.ritz_values[top_index, -1],
        'top_eigenvalue_residual': result.residuals[top_index, -1],
        'bottom_eigenvalue': jnp.min(result.ritz_values[:, 0]),
        'trace': trace.mean,
        'trace_stderr': trace.stderr,
        'epsilon_rank': rank.mean,
        'epsilon_rank_stderr': rank.stderr,
        'epsilon_rank_raw': raw_rank,
        'epsilon_rank_bound': rank_bound,
        'epsilon_mass': mass.mean,
        'epsilon_mass_stderr': mass.stderr,
        'density': spectral_density(result, points, sigma),
        'density_mass_outside_grid': mass_outside_interval(result, points[0], points[-1], sigma),
        'lanczos_breakdowns': jnp.sum(result.breakdowns),
    }
    return {f'{curvature}_{name}': value for name, value in out.items()}


def kronecker_summary(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, *,
                      epsilons: Sequence[float] = DEFAULT_EPSILONS, chunk_size: int | None = None,
                      mode: str = 'exact', key: jax.Array | None = None, num_samples: int = 1) -> dict[str, jax.Array]:
    """Epsilon-rank of the Kronecker-factored GGN (all dense layers, and each layer) over the epsilon sweep.

    Keys: 'kfac_epsilon_rank' (E,) for the block-diagonal K-FAC of all dense layers, 'kfac_epsilon_rank/{layer}'
    (E,) per layer, and 'kfac_top_eigenvalue' () the largest lambda_A * lambda_G over layers.
    """
    factors = kronecker_factors(apply_fn, loss, params, dataset, chunk_size=chunk_size, mode=mode, key=key,
                                num_samples=num_samples)
    rank = kronecker_epsilon_rank(factors, epsilons)
    eigs = factor_eigenvalues(factors)
    out = {'kfac_epsilon_rank': rank.total,
           'kfac_top_eigenvalue': jnp.max(jnp.stack([ea[-1] * eg[-1] for ea, eg in eigs.values()]))}
    out.update({f'kfac_epsilon_rank/{name}': value for name, value in rank.per_layer.items()})
    return out
