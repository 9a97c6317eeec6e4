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
  estimate of #{j : |lambda_j| > eps} / n, the epsilon-rank of A normalised by the number of parameters (the count
  itself is n times it). Unsmoothed. It is NOT unbiased: Gauss quadrature of the discontinuous indicator has a
  deterministic error, which is large when eps lies inside a cluster of eigenvalues that m nodes cannot split (a
  network Hessian's null space: one Ritz value near 1e-4 represents all of it, and counts as "above eps" for every
  smaller eps). `epsilon_rank_bound` bounds that error, and `resolved_epsilon_rank` returns the count only where
  the bound is small, NaN elsewhere (see "Resolution" below).
* `epsilon_density_mass`: DEFINITION 2, the share of the *smoothed* density's mass outside [-eps, eps] (as the
  L2-ER paper's analysis reads it off the smoothed density), computed in closed form with the normal CDF:
  sum tau (Phi((-eps - theta)/sigma) + 1 - Phi((eps - theta)/sigma)) / R. It tends to definition 1 as sigma -> 0;
  for eps below about sigma it is dominated by the smoothing. `grid_mass_outside` gives the same share from a
  density already tabulated on a grid (trapezoid rule).
* The trace: v^T A v = ||v||^2 alpha_1 (first diagonal entry of T), so every SLQ draw is also a Hutchinson sample.

Resolution (Chebyshev-Markov-Stieltjes; Akhiezer, "The Classical Moment Problem", 1965, Sec. 2.5; Golub & Meurant
2010, Sec. 6.2). The m-node Gauss rule of a probe's spectral measure mu_r (mass v^T P_j v / ||v||^2 at eigenvalue
lambda_j) matches its moments up to degree 2m - 1, and so does every measure nu that the Lanczos run cannot tell
from mu_r. Over all measures matching the moments up to 2(m - 1), the mass a measure can put at a point x is at most
the Christoffel function

    rho_m(x) = 1 / sum_{k=0}^{m-1} p_k(x)^2,          p_k the orthonormal polynomials of mu_r
                                                       (the three-term recurrence with T's alphas and betas),

and the distribution function mu_r((-inf, x]) ranges over an interval of that length: the Gauss rule's value lies
in it, so the Ritz-weight share of |theta| > eps differs from mu_r's share of |lambda| > eps by at most
rho_m(eps) + rho_m(-eps). This is a rigorous bound per draw (exact arithmetic; the basis is fully reorthogonalised),
computable from T alone: `epsilon_rank_bound` is its mean over the draws. It is small where the spectrum near +-eps
is thin compared with the polynomial resolution of degree m over the spectrum's width (about width / m^2 near an end
of the spectrum), and of the order of the cluster's mass when eps lies inside or just beside a cluster. The Monte
Carlo error of the draws (mu_r vs the spectral measure of A) comes on top and is the `stderr`.
`resolved_epsilon_rank` keeps an estimate where bound <= rtol * estimate (default rtol 0.1: within 10%) or where
n * bound < 0.5 (less than half an eigenvalue), and returns NaN elsewhere, with the bound as the reason.

Density mass vs count. Definition 2 does not estimate the count: it is the count of the spectrum convolved with the
smoothing kernel, by construction of the quantity. `grid_mass_outside(grid, spectral_density(res, grid, sigma))`
equals `epsilon_density_mass(res, sigma) - mass_outside_interval(res, grid[0], grid[-1], sigma)` up to the
trapezoid rule's error, which is O(h^2 / sigma^2) of the mass near +-eps for grid spacing h (the default grid has
h = sigma, where the two differ by up to a few 0.01; with h = sigma / 20 they agree to 1e-4, as a test checks).

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
    alphas: jax.Array  # (R, order): diagonal of each draw's T (for the Christoffel function, `epsilon_rank_bound`)
    betas: jax.Array  # (R, order - 1): off-diagonal of each draw's T (exactly 0 after a breakdown)


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
        return (values, weights, jnp.dot(v, v) * res.alphas[0], residuals, jnp.sum(res.breakdowns), res.alphas,
                res.betas)

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


def christoffel_function(alphas: jax.Array, betas: jax.Array, x: jax.Array) -> jax.Array:
    """rho(x) = 1 / sum_{k<m} p_k(x)^2 for the orthonormal polynomials of T = tridiagonal(alphas (m,), betas (m-1,)).

    The largest mass any measure with the same moments up to degree 2(m - 1) as the Lanczos run's probe measure can
    put at x (module docstring, "Resolution"). The three-term recurrence beta_{k+1} p_{k+1} = (x - alpha_{k+1}) p_k
    - beta_k p_{k-1}, p_0 = 1, is rescaled at every step (the polynomials grow exponentially outside the spectrum),
    and stops at the first breakdown (beta = 0), which keeps only the polynomials up to there: a larger, still valid
    bound. `x` has any shape.
    """
    x = jnp.asarray(x, alphas.dtype)
    one = jnp.ones_like(x)

    def step(carry, ab):
        p_prev, p, log_scale, total, done = carry  # p_{k-1}, p_k and sum_{j<=k} p_j^2, all divided by exp(log_scale)
        alpha, beta_prev, beta = ab
        done = done | (beta <= 0)
        p_next = ((x - alpha) * p - beta_prev * p_prev) / jnp.where(done, 1, beta)
        scale = jnp.maximum(jnp.maximum(jnp.abs(p_next), jnp.abs(p)), 1)
        new = (p / scale, p_next / scale, log_scale + jnp.log(scale), total / scale**2 + (p_next / scale) ** 2)
        keep = lambda old, upd: jnp.where(done, old, upd)
        return (*(keep(o, u) for o, u in zip((p_prev, p, log_scale, total), new)), done), None

    m = alphas.shape[0]
    beta_prev = jnp.concatenate([jnp.zeros((1,), betas.dtype), betas[:-1]])
    init = (jnp.zeros_like(x), one, jnp.zeros_like(x), one, jnp.zeros((), bool))
    (_, _, log_scale, total, _), _ = jax.lax.scan(step, init, (alphas[:m - 1], beta_prev, betas))
    return jnp.exp(-jnp.log(total) - 2 * log_scale)


def epsilon_rank_bound(result: SLQResult, epsilons=DEFAULT_EPSILONS) -> jax.Array:
    """Bound on |Ritz-weight count - probe measure's count| of `epsilon_rank`, mean over draws, per eps (E,).

    rho_m(eps) + rho_m(-eps) per draw (`christoffel_function`; module docstring, "Resolution"), capped at 1.
    """
    eps = jnp.asarray(epsilons, result.alphas.dtype)
    points = jnp.stack([eps, -eps])  # (2, E)
    rho = jax.vmap(christoffel_function, in_axes=(0, 0, None))(result.alphas, result.betas, points)  # (R, 2, E)
    return jnp.mean(jnp.minimum(jnp.sum(rho, axis=1), 1), axis=0)


def resolved_epsilon_rank(result: SLQResult, dim: int, epsilons=DEFAULT_EPSILONS, *,
                          rtol: float = 0.1) -> tuple[Estimate, jax.Array, jax.Array]:
    """`epsilon_rank` where eps is resolved at the Lanczos order used, NaN elsewhere.

    Resolved: `epsilon_rank_bound` <= rtol * estimate, or dim * bound < 0.5 (the quadrature cannot be off by half an
    eigenvalue). Returns `(Estimate with NaN where unresolved, the raw Ritz-weight count (E,), the bound (E,))`;
    the bound is the reason for a NaN (the count could be off by that much).
    """
    raw = epsilon_rank(result, epsilons)
    bound = epsilon_rank_bound(result, epsilons)
    resolved = (bound <= rtol * raw.mean) | (dim * bound < 0.5)
    nan = jnp.full_like(raw.mean, jnp.nan)
    return (Estimate(jnp.where(resolved, raw.mean, nan), jnp.where(resolved, raw.stderr, nan)), raw.mean, bound)


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
