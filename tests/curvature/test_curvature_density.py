"""SLQ density, Hutchinson trace and the two epsilon-ranks against the dense Hessian."""

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.curvature import (
    DEFAULT_EPSILONS,
    christoffel_function,
    curvature_trace,
    epsilon_density_mass,
    epsilon_rank,
    grid_mass_outside,
    hutchinson_trace,
    mass_outside_interval,
    resolved_epsilon_rank,
    slq,
    slq_trace,
    spectral_density,
    spectrum_summary,
)

EPS = np.asarray(DEFAULT_EPSILONS)


def rademacher(seed, *shape):
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=shape)


def test_slq_at_full_order_is_the_exact_quadrature(classifier):
    h = classifier.hessian
    n = h.shape[0]
    lam, u = np.linalg.eigh(h)
    assert np.abs(np.abs(lam)[:, None] - EPS[None, :]).min() > 1e-9  # no eigenvalue sits on a threshold
    a = jnp.asarray(h)
    probes = rademacher(0, 48, n)
    sigma = 0.02
    grid = np.arange(lam[0] - 10 * sigma, lam[-1] + 10 * sigma, sigma / 20)

    @jax.jit
    def run(p):
        res = slq(lambda v: a @ v, p, n)
        density = spectral_density(res, grid, sigma)
        return dict(res=res, rank=epsilon_rank(res), mass=epsilon_density_mass(res, sigma),
                    mass_sharp=epsilon_density_mass(res, 1e-13), density=density,
                    grid_mass=grid_mass_outside(grid, density), outside=mass_outside_interval(res, grid[0], grid[-1],
                                                                                                sigma),
                    slq_trace=slq_trace(res), hutchinson=hutchinson_trace(lambda v: a @ v, p))

    out = jax.device_get(run(probes))  # numpy: no eager op in the checks
    res, rank, mass = out['res'], out['rank'], out['mass']
    np.testing.assert_allclose(res.weights.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(res.quadratic_forms, np.einsum('ri,ij,rj->r', probes, h, probes), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(out['slq_trace'].mean, out['hutchinson'].mean, rtol=1e-12)
    np.testing.assert_allclose(out['slq_trace'].stderr, out['hutchinson'].stderr, rtol=1e-10)
    # With order = n, the quadrature of probe v is its exact spectral measure sum_j (u_j.v)^2/||v||^2 delta(lambda_j),
    # so definition 1 per draw equals the dense value sum_j (u_j.v)^2/n 1[|lambda_j| > eps] ...
    proj = (probes @ u) ** 2 / n  # (R, n)
    dense_per_draw = proj @ (np.abs(lam)[:, None] > EPS[None, :])  # (R, E)
    per_draw = np.einsum('ri,rei->re', res.weights, np.abs(res.ritz_values)[:, None, :] > EPS[None, :, None])
    np.testing.assert_allclose(per_draw, dense_per_draw, atol=1e-10)
    np.testing.assert_allclose(rank.mean, dense_per_draw.mean(axis=0), atol=1e-10)
    # ... and over draws it is an unbiased estimate of the normalised epsilon-rank.
    true_rank = (np.abs(lam)[None, :] > EPS[:, None]).mean(axis=1)
    assert np.all(np.abs(rank.mean - true_rank) <= 4 * rank.stderr + 1e-12)
    assert np.all(np.diff(rank.mean) <= 1e-15)  # non-increasing in epsilon

    # The smoothed density integrates to 1.
    np.testing.assert_allclose(np.trapezoid(out['density'], grid), 1.0, atol=1e-8)
    assert float(out['outside']) < 1e-15
    # Definition 2 (closed form) equals the integral of the gridded density outside [-eps, eps] ...
    np.testing.assert_allclose(out['grid_mass'], mass.mean, atol=5e-5)  # trapezoid error
    assert np.all(np.diff(mass.mean) <= 1e-15)
    # ... and becomes definition 1 as the smoothing vanishes.
    np.testing.assert_allclose(out['mass_sharp'].mean, rank.mean, atol=1e-10)


def test_resolution_criterion_on_a_spectrum_with_a_large_null_space():
    # 70% of the eigenvalues are (numerically) zero, as in a network Hessian; the rest spread over 1e-5 ... 20, and
    # a few small negative ones. Lanczos of order 48 cannot split the null space from the eigenvalues below ~1e-2.
    rng = np.random.default_rng(0)
    n, null = 300, 210
    lam = np.concatenate([rng.normal(size=null) * 1e-9, 10 ** rng.uniform(-5, 1.3, n - null - 15),
                          -10 ** rng.uniform(-5, -1, 15)])
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = jnp.asarray((q * lam) @ q.T)
    probes = rademacher(3, 8, n)

    @jax.jit
    def run(p):
        res = slq(lambda v: a @ v, p, 48)
        points = jnp.stack([jnp.asarray(EPS), -jnp.asarray(EPS)])
        rho = jax.vmap(christoffel_function, in_axes=(0, 0, None))(res.alphas, res.betas, points)
        return res, resolved_epsilon_rank(res, n), jnp.sum(rho, axis=1)

    res, (rank, raw, bound), rho = jax.device_get(run(probes))  # numpy: no eager op in the checks
    true_rank = (np.abs(lam)[None, :] > EPS[:, None]).mean(axis=1)
    # The bound holds per draw: the Ritz-weight count vs the probe's exact spectral measure.
    weights = (probes @ q) ** 2 / n
    probe_count = weights @ (np.abs(lam)[:, None] > EPS[None, :])  # (R, E)
    per_draw = np.einsum('ri,rei->re', res.weights, np.abs(res.ritz_values)[:, None, :] > EPS[None, :, None])
    assert np.all(np.abs(per_draw - probe_count) <= np.minimum(rho, 1) + 1e-9)
    np.testing.assert_allclose(bound, np.minimum(rho, 1).mean(axis=0), rtol=1e-12)
    # Exactly the epsilons where the raw count is far off are NaN; the resolved ones are within 10% (+ sampling).
    resolved = np.isfinite(rank.mean)
    badly_off = np.abs(raw - true_rank) > 0.2 * true_rank
    assert badly_off[:3].all()  # 1e-6 ... 1e-4: the null space counted as curvature
    assert not np.any(resolved & badly_off)
    assert not resolved[:4].any()
    assert resolved[-2:].all()  # eps = 0.1 and 1 are resolved at this order
    np.testing.assert_array_equal(np.isfinite(rank.stderr), resolved)
    ok = np.abs(rank.mean - true_rank)[resolved] <= 0.1 * rank.mean[resolved] + 4 * rank.stderr[resolved] + 1e-12
    assert ok.all()


def test_hutchinson_standard_error_is_calibrated(classifier):
    h = jnp.asarray(classifier.hessian)
    n, trace = h.shape[0], float(np.trace(classifier.hessian))
    est = jax.device_get(jax.jit(jax.vmap(lambda p: hutchinson_trace(lambda v: h @ v, p)))(rademacher(1, 400, 20, n)))
    z = (np.asarray(est.mean) - trace) / np.asarray(est.stderr)
    # A t statistic with 19 degrees of freedom is within +-1 about 67% of the time.
    assert 0.55 <= np.mean(np.abs(z) <= 1) <= 0.8
    assert np.mean(np.abs(z) <= 3) >= 0.97
    assert abs(np.mean(z)) < 0.2


def test_spectrum_summary_on_the_hessian(classifier):
    c = classifier
    lam = np.linalg.eigvalsh(c.hessian)
    grid = (-1.2, 1.2, 2401)
    sigma = 0.02
    assert lam[0] > grid[0] + 10 * sigma and lam[-1] < grid[1] - 10 * sigma
    @jax.jit
    def run(p, k):
        return (spectrum_summary(c.apply_fn, 'cross_entropy', p, c.dataset, k, num_draws=16, order=c.dim, grid=grid,
                                 sigma=sigma),
                curvature_trace(c.apply_fn, 'cross_entropy', p, c.dataset, k, num_probes=64, chunk_size=5))

    out, trace = jax.device_get(run(c.params, jax.random.key(2)))  # numpy: no eager op in the checks
    assert abs(float(trace.mean) - lam.sum()) <= 3 * float(trace.stderr)
    np.testing.assert_allclose(out['hessian_top_eigenvalue'], lam[-1], rtol=1e-8)
    np.testing.assert_allclose(out['hessian_bottom_eigenvalue'], lam[0], rtol=1e-8)
    assert float(out['hessian_top_eigenvalue_residual']) < 1e-8
    assert abs(float(out['hessian_trace']) - lam.sum()) <= 3 * float(out['hessian_trace_stderr'])
    points = np.linspace(*grid)
    total = np.trapezoid(out['hessian_density'], points) + out['hessian_density_mass_outside_grid']
    np.testing.assert_allclose(total, 1.0, atol=1e-8)
    true_rank = (np.abs(lam)[None, :] > EPS[:, None]).mean(axis=1)
    assert out['hessian_epsilon_rank'].shape == out['hessian_epsilon_mass'].shape == EPS.shape
    raw, stderr = out['hessian_epsilon_rank_raw'], np.asarray(out['hessian_epsilon_rank_stderr'])
    assert np.all(np.abs(raw - true_rank) <= 4 * np.nan_to_num(stderr, nan=1.0) + 1e-12)
    resolved = np.isfinite(out['hessian_epsilon_rank'])
    np.testing.assert_array_equal(out['hessian_epsilon_rank'][resolved], raw[resolved])
    np.testing.assert_array_equal(resolved, (out['hessian_epsilon_rank_bound'] <= 0.1 * raw)
                                  | (c.dim * out['hessian_epsilon_rank_bound'] < 0.5))
    assert int(out['hessian_lanczos_breakdowns']) >= 16  # order = dim exhausts every Krylov space
