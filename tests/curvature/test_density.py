"""SLQ density, Hutchinson trace and the two epsilon-ranks against the dense Hessian."""

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.curvature import (DEFAULT_EPSILONS, epsilon_density_mass, epsilon_rank, grid_mass_outside,
                                      hutchinson_trace, mass_outside_interval, rademacher_probes, slq, slq_trace,
                                      spectral_density, spectrum_summary)

EPS = np.asarray(DEFAULT_EPSILONS)


def test_slq_at_full_order_is_the_exact_quadrature(classifier):
    h = classifier.hessian
    n = h.shape[0]
    lam, u = np.linalg.eigh(h)
    assert np.abs(np.abs(lam)[:, None] - EPS[None, :]).min() > 1e-9  # no eigenvalue sits on a threshold
    a = jnp.asarray(h)
    probes = rademacher_probes(jax.random.key(0), 64, n)
    res = jax.jit(lambda p: slq(lambda v: a @ v, p, n))(probes)

    np.testing.assert_allclose(res.weights.sum(axis=1), 1.0, atol=1e-12)
    p = np.asarray(probes)
    np.testing.assert_allclose(res.quadratic_forms, np.einsum('ri,ij,rj->r', p, h, p), rtol=1e-10, atol=1e-12)
    # With order = n, the quadrature of probe v is its exact spectral measure sum_j (u_j.v)^2/||v||^2 delta(lambda_j),
    # so definition 1 per draw equals the dense value sum_j (u_j.v)^2/n 1[|lambda_j| > eps].
    proj = (p @ u) ** 2 / n  # (R, n)
    dense_per_draw = proj @ (np.abs(lam)[:, None] > EPS[None, :])  # (R, E)
    per_draw = np.einsum('ri,rei->re', res.weights, np.abs(res.ritz_values)[:, None, :] > EPS[None, :, None])
    np.testing.assert_allclose(per_draw, dense_per_draw, atol=1e-10)
    # ... and over draws it is an unbiased estimate of the normalised epsilon-rank.
    rank = epsilon_rank(res)
    true_rank = (np.abs(lam)[None, :] > EPS[:, None]).mean(axis=1)
    np.testing.assert_allclose(rank.mean, dense_per_draw.mean(axis=0), atol=1e-10)
    assert np.all(np.abs(rank.mean - true_rank) <= 4 * rank.stderr + 1e-12)
    assert np.all(np.diff(rank.mean) <= 1e-15)  # non-increasing in epsilon

    # The smoothed density integrates to 1.
    sigma = 0.02
    grid = np.arange(lam[0] - 10 * sigma, lam[-1] + 10 * sigma, sigma / 20)
    density = np.asarray(spectral_density(res, grid, sigma))
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, atol=1e-8)
    assert float(mass_outside_interval(res, grid[0], grid[-1], sigma)) < 1e-15
    # Definition 2 (closed form) equals the integral of the gridded density outside [-eps, eps] ...
    mass = epsilon_density_mass(res, sigma)
    np.testing.assert_allclose(grid_mass_outside(grid, density), mass.mean, atol=5e-5)  # trapezoid error
    assert np.all(np.diff(mass.mean) <= 1e-15)
    # ... and becomes definition 1 as the smoothing vanishes.
    np.testing.assert_allclose(epsilon_density_mass(res, 1e-13).mean, rank.mean, atol=1e-10)


def test_hutchinson_standard_error_is_calibrated(classifier):
    h = jnp.asarray(classifier.hessian)
    n, trace = h.shape[0], float(np.trace(classifier.hessian))

    def estimate(key):
        return hutchinson_trace(lambda v: h @ v, rademacher_probes(key, 20, n))

    est = jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(1), 400))
    z = (np.asarray(est.mean) - trace) / np.asarray(est.stderr)
    # A t statistic with 19 degrees of freedom is within +-1 about 67% of the time.
    assert 0.57 <= np.mean(np.abs(z) <= 1) <= 0.77
    assert np.mean(np.abs(z) <= 3) >= 0.97
    assert abs(np.mean(z)) < 0.2


def test_spectrum_summary_on_the_hessian(classifier):
    c = classifier
    lam = np.linalg.eigvalsh(c.hessian)
    grid = (-1.2, 1.2, 2401)
    sigma = 0.02
    out = jax.jit(lambda p, k: spectrum_summary(c.apply_fn, 'cross_entropy', p, c.dataset, k, num_draws=16,
                                                order=c.dim, grid=grid, sigma=sigma, chunk_size=5))(
        c.params, jax.random.key(2))
    assert lam[0] > grid[0] + 10 * sigma and lam[-1] < grid[1] - 10 * sigma
    np.testing.assert_allclose(out['hessian_top_eigenvalue'], lam[-1], rtol=1e-8)
    np.testing.assert_allclose(out['hessian_bottom_eigenvalue'], lam[0], rtol=1e-8)
    assert abs(float(out['hessian_trace']) - lam.sum()) <= 3 * float(out['hessian_trace_stderr'])
    points = np.linspace(*grid)
    total = np.trapezoid(out['hessian_density'], points) + out['hessian_density_mass_outside_grid']
    np.testing.assert_allclose(total, 1.0, atol=1e-8)
    true_rank = (np.abs(lam)[None, :] > EPS[:, None]).mean(axis=1)
    assert out['hessian_epsilon_rank'].shape == out['hessian_epsilon_mass'].shape == EPS.shape
    assert np.all(np.abs(out['hessian_epsilon_rank'] - true_rank) <= 4 * out['hessian_epsilon_rank_stderr'] + 1e-12)
    assert int(out['hessian_lanczos_breakdowns']) >= 16  # order = dim exhausts every Krylov space


def test_spectrum_summary_vmapped_over_seeds_in_float32(classifier):
    c = classifier
    top = np.linalg.eigvalsh(c.hessian)[-1]
    with jax.enable_x64(False):
        params = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]).astype(jnp.float32), c.params)
        dataset = (c.x.astype(jnp.float32), c.y.astype(jnp.int32))

        def summary(p, k):
            return spectrum_summary(c.apply_fn, 'cross_entropy', p, dataset, k, num_draws=2, order=20, chunk_size=8,
                                    grid=(-1.0, 1.0, 51), sigma=0.05)

        out = jax.jit(jax.vmap(summary))(params, jax.random.split(jax.random.key(3), 2))
    assert out['hessian_density'].shape == (2, 51) and out['hessian_density'].dtype == jnp.float32
    assert all(np.all(np.isfinite(v)) for v in out.values())
    np.testing.assert_allclose(out['hessian_top_eigenvalue'], [top, top], rtol=1e-4)
    # Same params, different probes: the stochastic estimates differ between the two seeds.
    assert out['hessian_trace'][0] != out['hessian_trace'][1]


def test_slq_trace_equals_hutchinson_with_the_same_probes(classifier):
    h = jnp.asarray(classifier.hessian)
    probes = rademacher_probes(jax.random.key(4), 3, h.shape[0])
    a = hutchinson_trace(lambda v: h @ v, probes)
    b = slq_trace(slq(lambda v: h @ v, probes, 4))
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
    np.testing.assert_allclose(a.stderr, b.stderr, rtol=1e-10)
