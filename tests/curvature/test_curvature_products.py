"""Curvature-vector products against dense matrices, and exact averaging over chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from plasticity_jax.curvature import dataset_average, flat_matvec, get_loss, hessian_vector_product, mean_squared_error


@pytest.mark.parametrize('linearize', [True, False])
def test_products_match_dense_matrices(classifier, linearize):
    # 13 examples in chunks of 5: the last chunk is partial (3 examples), so the exact average is exercised, both by
    # the products linearised once (default) and by those that recompute every chunk's passes.
    c = classifier

    @jax.jit
    def all_dense(params):
        out = []
        for curvature in ('hessian', 'ggn', 'fisher'):
            matvec, _ = flat_matvec(curvature, c.apply_fn, 'cross_entropy', params, c.dataset, chunk_size=5,
                                    linearize=linearize)
            out.append(jax.vmap(matvec)(jnp.eye(c.dim)))
        return out

    for curvature, got in zip(('hessian', 'ggn', 'fisher'), all_dense(c.params)):
        dense = getattr(c, curvature)
        np.testing.assert_allclose(got, dense, rtol=0, atol=1e-12 * np.abs(dense).max(), err_msg=curvature)
    # The three matrices differ here (the network is not at a minimum), so the comparison is not vacuous.
    assert np.abs(c.hessian - c.ggn).max() > 1e-3 and np.abs(c.ggn - c.fisher).max() > 1e-3


def test_ggn_and_hessian_for_mse(regressor):
    @jax.jit
    def dense(params, dataset):  # the product linearised inside the program, as flat_matvec's docstring asks
        matvec, dim = flat_matvec('ggn', regressor.apply_fn, 'mse', params, dataset, chunk_size=4)
        return jax.vmap(matvec)(jnp.eye(dim))

    np.testing.assert_allclose(dense(regressor.params, regressor.dataset), regressor.ggn, atol=1e-12)
    # For MSE the output Hessian is (2/C) I, so the GGN is (2/C) J^T J / N.
    jac = regressor.jac
    c = jac.shape[1]
    np.testing.assert_allclose(regressor.ggn, 2 / c * np.einsum('icp,icq->pq', jac, jac) / jac.shape[0], atol=1e-12)


def _primitive_names(jaxpr) -> list[str]:
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, 'jaxpr', sub)
                if hasattr(inner, 'eqns'):
                    names += _primitive_names(inner)
    return names


@pytest.mark.parametrize('curvature', ['hessian', 'ggn', 'fisher'])
def test_linearized_matvec_does_not_rerun_the_network(classifier, curvature):
    # With linearize=True the forward (and backward) pass runs once, when flat_matvec is called: the product itself
    # only replays the tangent part, so the network's tanh is not evaluated in it (its derivative is a residual).
    c = classifier

    def names(linearize):  # primitives of the product alone, given what flat_matvec computed
        out = {}

        def fn(params, dataset, u):
            matvec, _ = flat_matvec(curvature, c.apply_fn, 'cross_entropy', params, dataset, chunk_size=5,
                                    linearize=linearize)
            out['jaxpr'] = jax.make_jaxpr(matvec)(u).jaxpr
            return matvec(u)

        jax.make_jaxpr(fn)(c.params, c.dataset, jnp.ones(c.dim))
        return _primitive_names(out['jaxpr'])

    recomputed, linearized = names(False), names(True)
    assert 'tanh' in recomputed and 'scan' in recomputed
    assert 'tanh' not in linearized and 'scan' in linearized  # still a loop over the chunks


def test_chunking_does_not_change_the_average(classifier):
    v = jax.tree_util.tree_map(lambda a: np.cos(np.arange(a.size)).reshape(a.shape), classifier.params)

    @jax.jit
    def products(p, w):
        return [ravel_pytree(hessian_vector_product(classifier.apply_fn, 'cross_entropy', p, classifier.dataset, w,
                                                    chunk_size=cs))[0] for cs in (None, 1, 4)]

    results = products(classifier.params, v)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-12, atol=1e-14)


def test_dataset_average_counts_every_example_once():
    n = 11
    data = (jnp.arange(n, dtype=jnp.float64), jnp.ones((n, 2)))

    @jax.jit
    def averages(data):
        return [dataset_average(lambda chunk, w: (jnp.sum(w * chunk[0]), jnp.sum(w * chunk[1][:, 0])), data, cs)
                for cs in (1, 4, None)]  # 11 chunks; a partial last chunk (3 new examples of 4); one chunk

    for mean, count in averages(data):
        np.testing.assert_allclose(mean, np.arange(n).mean(), rtol=1e-14)
        np.testing.assert_allclose(count, 1.0, rtol=1e-14)


def test_matvec_casts_between_basis_and_param_dtypes(classifier):
    params32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), classifier.params)  # numpy: no eager op
    dataset32 = (np.asarray(classifier.x, np.float32), classifier.y)

    @jax.jit
    def product(params, dataset, u):  # the product linearised inside the program, as flat_matvec's docstring asks
        matvec, _ = flat_matvec('hessian', classifier.apply_fn, 'cross_entropy', params, dataset)
        return matvec(u)

    out = product(params32, dataset32, np.ones((classifier.dim,), np.float64))
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out, classifier.hessian @ np.ones(classifier.dim), rtol=1e-4, atol=1e-5)


def test_losses():
    logits = np.array([[1.0, 2.0, 0.5]])
    ce, mse = jax.jit(lambda: (get_loss('cross_entropy')(logits, jnp.array([1])),
                               get_loss('mse')(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0]))))()
    np.testing.assert_allclose(ce, np.log(np.exp(logits).sum()) - 2.0, rtol=1e-14)
    np.testing.assert_allclose(mse, [1.0, 4.0])
    assert get_loss(mean_squared_error) is mean_squared_error
    with pytest.raises(ValueError):
        get_loss('hinge')
    with pytest.raises(ValueError):
        flat_matvec('newton', None, 'mse', {'w': np.ones(2)}, (np.ones((2, 1)), np.ones(2)))
