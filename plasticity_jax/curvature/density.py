"""Spectral density by stochastic Lanczos quadrature, Hutchinson trace, and the two epsilon-ranks.

Stochastic Lanczos quadrature (SLQ; Golub & Meurant 2010; Lin, Saad & Yang 2016; Ubaru, Chen & Saad 2017; applied
to network Hessians by Ghorbani, Krishnan & Xiao 2019 and Yao et al. 2020 "PyHessian"). For a probe v with
E[v v^T] = I, m Lanczos steps from v give Ritz values theta_i and weights tau_i = (e_1^T s_i)^2 (squared first
components of T's eigenvectors, sum_i tau_i = 1), and

    v^T f(A) v / ||v||^2 ~= sum_i tau_i f(theta_i)          (Gauss quadrature, exact for polynomials of degree < 2m).

Averaging over R probes estimates the spectral measure phi = (1/n) sum_j delta(lambda_j) of the n x n matrix A:

    phi_hat = (1/R) sum_r sum_i tau_{r,i} delta(theta_{r,i}),

unbiased for Rademacher probes (||v||^2 = n) and for Gaussian probes (v / ||v|| uniform on the sphere). Everything
below is a functional of phi_hat (an `SLQResult`):

* `spectral_density`: phi_hat convolved with a Gaussian of width sigma, on a grid (integrates to 1 over the line).
* `epsilon_rank`: DEFINITION 1, the Ritz-weight count, (1/R) sum_r sum_i tau_{r,i} 1[|theta_{r,i}| > eps], an
  unbiased estimate of #{j : |lambda_j| > eps} / n, the epsilon-rank of A normalised by the number of parameters
  (the count itself is n times it). Unsmoothed.
* `epsilon_density_mass`: DEFINITION 2, the share of the *smoothed* density's mass outside [-eps, eps] (as the
  L2-ER paper's analysis reads it off the smoothed density), computed in closed form with the normal CDF:
  sum tau (Phi((-eps - theta)/sigma) + 1 - Phi((eps - theta)/sigma)) / R. It tends to definition 1 as sigma -> 0;
  for eps below about sigma it is dominated by the smoothing. `grid_mass_outside` gives the same share from a
  density already tabulated on a grid (trapezoid rule).
* The trace: v^T A v = ||v||^2 alpha_1 (first diagonal entry of T), so every SLQ draw is also a Hutchinson sample.

Both epsilon-ranks are reported over a sweep of epsilons (`DEFAULT_EPSILONS`) rather than one picked value, each with
the standard error over the R draws.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

from plasticity_jax.curvature.lanczos import Matvec, default_dtype, lanczos, ritz_decomposition

# Absolute thresholds for the epsilon-rank sweep.
DEFAULT_EPSILONS = tuple(10.0**e for e in range(-6, 1))  # 1e-6 ... 1


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error (sample std over draws / sqrt(draws); 0 for one draw)."""

    mean: jax.Array
    stderr: jax.Array


def _estimate(samples: jax.Array) -> Estimate:
    """Mean and standard error over the leading (draw) axis."""
    r = samples.shape[0]
    mean = jnp.mean(samples, axis=0)
    if r < 2:
        return Estimate(mean, jnp.zeros_like(mean))
    return Estimate(mean, jnp.std(samples, axis=0, ddof=1) / jnp.sqrt(r))


def rademacher_probes(key: jax.Array, num_probes: int, dim: int, dtype=None) -> jax.Array:
    """(num_probes, dim) i.i.d. +-1 entries: E[v v^T] = I, ||v||^2 = dim (the lowest-variance Hutchinson probe)."""
    dtype = dtype or default_dtype()
    return jax.random.rademacher(key, (num_probes, dim), dtype=jnp.int8).astype(dtype)


def gaussian_probes(key: jax.Array, num_probes: int, dim: int, dtype=None) -> jax.Array:
    """(num_probes, dim) i.i.d. standard normal entries."""
    return jax.random.normal(key, (num_probes, dim), dtype or default_dtype())


# ------------------------------------------------------------------------------------------------------------- SLQ

class SLQResult(NamedTuple):
    """R independent Lanczos runs: the quadrature nodes and weights of each probe's spectral measure."""

    ritz_values: jax.Array  # (R, order), ascending within each draw
    weights: jax.Array  # (R, order): squared first components of T's eigenvectors; each row sums to 1
    quadratic_forms: jax.Array  # (R,): v_r^T A v_r = ||v_r||^2 alpha_1 (Hutchinson samples of the trace)
    residuals: jax.Array  # (R, order): residual norm bound of every Ritz value (see `ritz_residual_norms`)
    breakdowns: jax.Array  # (R,): number of breakdown restarts in each run


def slq(matvec: Matvec, probes: jax.Array, order: int, *, dtype=None, batch_size: int | None = None) -> SLQResult:
    """Stochastic Lanczos quadrature: `order` Lanczos steps from each row of `probes` (R, dim).

    Draws run one after the other (`lax.map`), so memory holds one basis; `batch_size` > 1 vmaps that many draws at
    a time (faster on an accelerator, `batch_size` bases in memory).
    """
    dtype = jnp.dtype(dtype) if dtype is not None else default_dtype()

    def one(v):
        v = v.astype(dtype)
        res = lanczos(matvec, v, order, dtype=dtype)
        values, vectors = ritz_decomposition(res)
        weights = vectors[0, :] ** 2
        residuals = jnp.abs(res.residual_norm) * jnp.abs(vectors[-1, :])
        return values, weights, jnp.dot(v, v) * res.alphas[0], residuals, jnp.sum(res.breakdowns)

    return SLQResult(*jax.lax.map(one, probes, batch_size=batch_size))


def spectral_density(result: SLQResult, grid: jax.Array, sigma: float) -> jax.Array:
    """Gaussian-smoothed SLQ density on `grid`: (1/R) sum_{r,i} tau_{r,i} N(t; theta_{r,i}, sigma^2).

    A probability density in t (it integrates to 1 over the real line; the share beyond the grid is
    `mass_outside_interval(result, grid[0], grid[-1], sigma)`).
    """
    grid = jnp.asarray(grid, result.ritz_values.dtype)
    z = (grid[:, None, None] - result.ritz_values[None]) / sigma
    kernel = jnp.exp(-0.5 * z**2) / (sigma * jnp.sqrt(2 * jnp.pi))
    return jnp.sum(kernel * result.weights[None], axis=(1, 2)) / result.ritz_values.shape[0]


def _normal_cdf(x: jax.Array) -> jax.Array:
    return 0.5 * jsp.erfc(-x / jnp.sqrt(2.0).astype(x.dtype))


def mass_outside_interval(result: SLQResult, low: float, high: float, sigma: float) -> jax.Array:
    """Mass of the smoothed density outside [low, high] (e.g. beyond a plotting grid), in closed form."""
    theta = result.ritz_values
    mass = _normal_cdf((low - theta) / sigma) + _normal_cdf((theta - high) / sigma)
    return jnp.sum(result.weights * mass) / theta.shape[0]


# -------------------------------------------------------------------------------------------------- trace and ranks

def hutchinson_trace(matvec: Matvec, probes: jax.Array) -> Estimate:
    """Hutchinson's estimator tr(A) ~= (1/R) sum_r v_r^T A v_r (Hutchinson 1990) with its standard error.

    With Rademacher probes the variance of one sample is 2 sum_{i != j} A_ij^2 (the diagonal is exact). Probes are
    multiplied one after the other (`lax.map`).
    """
    samples = jax.lax.map(lambda v: jnp.dot(v, matvec(v)), probes)
    return _estimate(samples)


def slq_trace(result: SLQResult) -> Estimate:
    """The trace from the SLQ draws themselves: each v^T A v = ||v||^2 alpha_1 is a Hutchinson sample."""
    return _estimate(result.quadratic_forms)


def epsilon_rank(result: SLQResult, epsilons=DEFAULT_EPSILONS) -> Estimate:
    """Definition 1: #{j : |lambda_j| > eps} / n, estimated from the SLQ Ritz weights, for each eps (E,).

    Per draw, sum_i tau_i 1[|theta_i| > eps]; the mean over draws and its standard error. Multiply by the number of
    parameters n for the count. Ritz values are not smoothed, so eigenvalues within the Ritz-value resolution of
    +-eps may fall on either side.
    """
    eps = jnp.asarray(epsilons, result.ritz_values.dtype)
    above = jnp.abs(result.ritz_values)[:, None, :] > eps[None, :, None]  # (R, E, order)
    per_draw = jnp.sum(result.weights[:, None, :] * above, axis=-1)  # (R, E)
    return _estimate(jnp.clip(per_draw, 0, 1))  # the weights sum to 1 only up to round-off


def epsilon_density_mass(result: SLQResult, sigma: float, epsilons=DEFAULT_EPSILONS) -> Estimate:
    """Definition 2: share of the Gaussian-smoothed SLQ density's mass outside [-eps, eps], for each eps (E,).

    Closed form per draw: sum_i tau_i (Phi((-eps - theta_i)/sigma) + Phi((theta_i - eps)/sigma)); the mean over
    draws equals the integral of `spectral_density(result, t, sigma)` over |t| > eps.
    """
    eps = jnp.asarray(epsilons, result.ritz_values.dtype)[None, :, None]
    theta = result.ritz_values[:, None, :]
    outside = _normal_cdf((-eps - theta) / sigma) + _normal_cdf((theta - eps) / sigma)
    per_draw = jnp.sum(result.weights[:, None, :] * outside, axis=-1)
    return _estimate(jnp.clip(per_draw, 0, 1))


def grid_mass_outside(grid: jax.Array, density: jax.Array, epsilons=DEFAULT_EPSILONS) -> jax.Array:
    """Definition 2 from a density tabulated on an increasing `grid`: its mass outside [-eps, eps], for each eps.

    Integrates the piecewise-linear interpolant of `density` (the trapezoid rule, with the segments that straddle
    +-eps split there) over the grid minus [-eps, eps]. Only mass on the grid counts. `epsilon_density_mass` gives
    the same quantity in closed form; this one is for densities that only exist on a grid.
    """
    grid = jnp.asarray(grid, density.dtype)
    eps = jnp.asarray(epsilons, density.dtype)[:, None]  # (E, 1)
    t0, t1, f0, f1 = grid[None, :-1], grid[None, 1:], density[None, :-1], density[None, 1:]

    def integral(a, b):  # integral of the interpolant over [a, b] (per eps), segment by segment
        s0 = jnp.clip(a, t0, t1)
        s1 = jnp.clip(b, t0, t1)
        slope = (f1 - f0) / (t1 - t0)
        return jnp.sum((s1 - s0) * (f0 + slope * (0.5 * (s0 + s1) - t0)), axis=-1)

    return integral(grid[0], grid[-1]) - integral(-eps, eps)
