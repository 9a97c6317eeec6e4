"""Lanczos with full reorthogonalisation against dense `eigh`."""

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.curvature import (
    bottom_k,
    flat_matvec,
    lanczos,
    ritz_decomposition,
    ritz_residual_norms,
    ritz_values,
    spectrum_summary,
    top_eigenvalues,
    top_k,
)


def test_full_order_lanczos_on_hessian_matches_eigh(classifier):
    c = classifier
    dim = c.dim
    v0 = np.random.default_rng(0).normal(size=dim)

    @jax.jit
    def run(params, dataset, v):  # the product linearised inside the program, as flat_matvec's docstring asks
        matvec, _ = flat_matvec('hessian', c.apply_fn, 'cross_entropy', params, dataset)
        res = lanczos(matvec, v, dim)
        return res, ritz_values(res), top_k(res, 2), bottom_k(res, 2)

    res, theta, top, bottom = jax.device_get(run(c.params, c.dataset, v0))  # numpy: no eager op in the checks
    assert res.basis.dtype == np.float64 and res.alphas.dtype == np.float64

    exact = np.linalg.eigvalsh(c.hessian)
    norm = np.abs(exact).max()
    assert exact[0] < -1e-2 * norm and exact[-1] > 1e-2 * norm  # an indefinite Hessian: both ends are informative
    np.testing.assert_allclose(top, exact[::-1][:2], rtol=1e-8)
    np.testing.assert_allclose(bottom, exact[:2], rtol=1e-8)
    # With order = dim every eigenvalue is found, including the multiple zero eigenvalue (softmax is invariant to
    # shifting all logits), which the Krylov space of v0 alone cannot resolve: breakdown restarts supply the rest.
    np.testing.assert_allclose(theta, exact, rtol=0, atol=1e-10 * norm)
    assert np.sum(np.abs(exact) < 1e-10 * norm) >= 2
    assert int(res.breakdowns.sum()) >= 1
    np.testing.assert_allclose(res.basis @ res.basis.T, np.eye(dim), atol=1e-12)
    assert np.all(np.isfinite(res.basis))


def test_breakdown_restart_keeps_quadrature_exact():
    # A has eigenvalues 1, 2, 3, each three times; v0 lives in the span of two eigenvectors, so the Krylov space
    # is invariant after 2 steps. The restart must find the remaining eigenvalues without NaNs, and the restarted
    # blocks must get zero weight in the quadrature of v0.
    eig = np.repeat([1.0, 2.0, 3.0], 3)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(9, 9)))
    a = jnp.asarray((q * eig) @ q.T)
    v0 = q[:, 0] + 2 * q[:, 4]

    @jax.jit
    def run(v):
        res = lanczos(lambda u: a @ u, v, 9)
        return res, ritz_decomposition(res)

    res, (values, vectors) = jax.device_get(run(v0))
    assert bool(res.breakdowns[1]) and float(res.betas[1]) == 0.0
    np.testing.assert_allclose(values, np.sort(eig), atol=1e-12)
    weights = np.asarray(vectors[0] ** 2)
    measure = [weights[np.abs(np.asarray(values) - lam) < 1e-8].sum() for lam in (1.0, 2.0, 3.0)]
    np.testing.assert_allclose(measure, [0.2, 0.8, 0.0], atol=1e-12)
    assert np.all(np.isfinite(res.basis))


def test_breakdowns_at_different_steps_under_vmap():
    # A has eigenvalues 1, 2, 3, each three times. Two start vectors in one vmapped call: the first has equal parts
    # on all nine eigenvectors, so its Krylov space is invariant after 3 steps; the second lies in the span of two
    # eigenvectors (eigenvalues 1 and 2), invariant after 2 steps. Each run restarts at its own step (under vmap the
    # restart branch is selected per run) and must equal the same run made alone, with exact quadrature weights.
    eig = np.repeat([1.0, 2.0, 3.0], 3)
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(9, 9)))
    a = jnp.asarray((q * eig) @ q.T)
    starts = np.stack([q.sum(axis=1), q[:, 0] + 2 * q[:, 4]])

    def run(v):
        res = lanczos(lambda u: a @ u, v, 6)
        return res, ritz_decomposition(res)

    batched, (values, vectors) = jax.device_get(jax.jit(jax.vmap(run))(starts))
    breakdowns = batched.breakdowns
    assert list(breakdowns[0, :3]) == [False, False, True] and list(breakdowns[1, :2]) == [False, True]
    alone = jax.jit(run)  # one program for both runs made alone
    for i, expected in enumerate(([1 / 3, 1 / 3, 1 / 3], [0.2, 0.8, 0.0])):
        single, (single_values, _) = jax.device_get(alone(starts[i]))
        np.testing.assert_allclose(values[i], single_values, atol=1e-12)
        np.testing.assert_allclose(batched.basis[i], single.basis, atol=1e-12)
        np.testing.assert_allclose(batched.basis[i] @ batched.basis[i].T, np.eye(6), atol=1e-12)
        weights = np.asarray(vectors[i, 0] ** 2)
        measure = [weights[np.abs(np.asarray(values[i]) - lam) < 1e-8].sum() for lam in (1.0, 2.0, 3.0)]
        np.testing.assert_allclose(measure, expected, atol=1e-12)
    assert np.all(np.isfinite(np.asarray(batched.basis)))


def test_residual_bounds_and_float32_without_x64(classifier):
    h = classifier.hessian
    exact = np.linalg.eigvalsh(h)
    with jax.enable_x64(False):
        a = jnp.asarray(h, jnp.float32)
        v0 = jnp.asarray(np.random.default_rng(2).normal(size=h.shape[0]), jnp.float32)

        @jax.jit
        def run(v):
            res = lanczos(lambda u: a @ u, v, 20)
            return res, ritz_residual_norms(res)

        res, (values, residuals) = run(v0)
        assert res.basis.dtype == jnp.float32 and res.alphas.dtype == jnp.float32
    values, residuals = np.asarray(values, np.float64), np.asarray(residuals, np.float64)
    # Each Ritz value lies within its residual norm of some eigenvalue (up to float32 round-off).
    dist = np.abs(values[:, None] - exact[None, :]).min(axis=1)
    assert np.all(dist <= residuals + 1e-5 * np.abs(exact).max())
    np.testing.assert_allclose(values[-1], exact[-1], rtol=1e-4)


def _count_eqns(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        total += 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, 'jaxpr', sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, 'eqns'):
                    total += _count_eqns(inner)
    return total


def test_jaxpr_size_does_not_grow_with_order(classifier):
    c = classifier
    v0 = np.ones((c.dim,))

    def program(order):
        def fn(params, dataset, v):
            matvec, _ = flat_matvec('hessian', c.apply_fn, 'cross_entropy', params, dataset, chunk_size=5)
            return ritz_values(lanczos(matvec, v, order))
        return fn

    counts = [_count_eqns(jax.make_jaxpr(program(order))(c.params, c.dataset, v0).jaxpr) for order in (10, 30)]
    assert counts[0] == counts[1]
    assert counts[0] > 20  # the (recursive) count includes the loop body with the Hessian-vector product


def test_vmap_over_param_sets_equals_separate_calls(classifier):
    c = classifier
    params2 = jax.tree_util.tree_map(lambda a: 0.7 * np.asarray(a)[::-1] + 0.1, c.params)  # numpy: no eager jax op
    stacked = jax.tree_util.tree_map(lambda a, b: np.stack([a, b]), c.params, params2)
    keys = jax.random.split(jax.random.key(3), 2)

    def fn(p, k):
        return top_eigenvalues(c.apply_fn, 'cross_entropy', p, c.dataset, k, k=2, order=8)

    batched = jax.jit(jax.vmap(fn))(stacked, keys)
    single = jax.jit(fn)
    separate = np.stack([single(c.params, keys[0]), single(params2, keys[1])])
    np.testing.assert_allclose(batched, separate, rtol=1e-10)
    assert abs(separate[0, 0] - separate[1, 0]) > 1e-3  # two genuinely different problems


def test_spectrum_summary_traces_under_vmap_in_float32(classifier):
    # The engine's use: float32 params with a leading seed axis. Tracing (no compilation) checks that every piece
    # has a batching rule and that shapes and dtypes come out as documented.
    c = classifier
    with jax.enable_x64(False):
        params = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((3,) + a.shape, jnp.float32), c.params)
        dataset = (jax.ShapeDtypeStruct(c.x.shape, jnp.float32), jax.ShapeDtypeStruct(c.y.shape, jnp.int32))
        keys = jax.ShapeDtypeStruct((3,), jax.random.key(0).dtype)
        out = jax.eval_shape(jax.vmap(lambda p, k, d: spectrum_summary(c.apply_fn, 'cross_entropy', p, d, k, order=8,
                                                                       num_draws=2, chunk_size=5, grid=(-1, 1, 21)),
                                      in_axes=(0, 0, None)), params, keys, dataset)
    assert out['hessian_density'].shape == (3, 21) and out['hessian_density'].dtype == jnp.float32
    assert out['hessian_top_eigenvalue'].shape == (3,) and out['hessian_epsilon_rank'].shape == (3, 7)


def test_lanczos_loop_updates_the_basis_in_place():
    """No basis-sized copy inside the Lanczos loop (one seed and vmapped over two): the basis is written in place.

    Before the write was ordered after every read (see `curvature.lanczos`, "In-place basis"), XLA copied the whole
    (order, dim) basis twice per step. Compiled with the code generator users get, not run.
    """
    from plasticity_jax import hlo
    from tests.conftest import USERS_CODEGEN

    dim, order = 20_000, 6
    scale = np.linspace(0.0, 1.0, dim)

    def one(key, scale):
        return lanczos(lambda u: scale * u, jax.random.normal(key, (dim,)), order)

    keys = jax.random.split(jax.random.key(0), 2)
    for program in (jax.jit(lambda k, s: one(k[0], s)), jax.jit(jax.vmap(one, in_axes=(0, None)))):
        text = program.lower(keys, scale).compile(compiler_options=USERS_CODEGEN).as_text()
        assert hlo.loop_bodies(text), 'no loop in the program: the test no longer looks at the Lanczos loop'
        assert hlo.loop_body_copies(text, min_elements=dim * order // 2) == {}


def test_vmapped_restart_vectors_are_computed_only_when_a_run_breaks_down():
    """Under vmap the breakdown branch stays a conditional (on whether any run broke down), not a select that
    computes every run's restart vector at every step; that each run restarts as it would alone is
    `test_breakdowns_at_different_steps_under_vmap`."""
    scale = np.linspace(0.0, 1.0, 50)
    one = lambda v: lanczos(lambda u: scale * u, v, 5).alphas
    run = jax.jit(jax.vmap(one))
    starts = np.random.default_rng(0).normal(size=(3, 50))
    text = run.lower(starts).as_text()
    assert 'stablehlo.case' in text or 'stablehlo.if' in text
    single = jax.jit(one)  # one program for the three runs made alone
    alone = np.stack([single(v) for v in starts])
    np.testing.assert_allclose(run(starts), alone, rtol=1e-12)
