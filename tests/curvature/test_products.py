"""Curvature-vector products against dense matrices, and exact averaging over chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from plasticity_jax.curvature import (curvature_vector_product, dataset_average, flat_matvec,
                                      hessian_vector_product, mean_squared_error)


def dense_from_matvec(matvec, dim):
    return np.asarray(jax.jit(jax.vmap(matvec))(jnp.eye(dim)))


@pytest.mark.parametrize('curvature', ['hessian', 'ggn', 'fisher'])
def test_products_match_dense_matrices(classifier, curvature):
    # 13 examples in chunks of 5: the last chunk is partial (3 examples), so the exact average is exercised.
    matvec, dim = flat_matvec(curvature, classifier.apply_fn, 'cross_entropy', classifier.params,
                              classifier.dataset, chunk_size=5)
    assert dim == classifier.dim
    dense = getattr(classifier, curvature)
    np.testing.assert_allclose(dense_from_matvec(matvec, dim), dense, rtol=0, atol=1e-12 * np.abs(dense).max())


def test_ggn_and_hessian_for_mse(regressor):
    matvec, dim = flat_matvec('ggn', regressor.apply_fn, 'mse', regressor.params, regressor.dataset, chunk_size=4)
    np.testing.assert_allclose(dense_from_matvec(matvec, dim), regressor.ggn, atol=1e-12)
    # For MSE the output Hessian is (2/C) I, so the GGN is (2/C) J^T J / N.
    jac = regressor.jac
    c = jac.shape[1]
    np.testing.assert_allclose(regressor.ggn, 2 / c * np.einsum('icp,icq->pq', jac, jac) / jac.shape[0], atol=1e-12)


def test_chunking_does_not_change_the_average(classifier):
    v = jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape),
                               classifier.params)
    results = [ravel_pytree(hessian_vector_product(classifier.apply_fn, 'cross_entropy', classifier.params,
                                                   classifier.dataset, v, chunk_size=cs))[0]
               for cs in (None, 1, 4, 13, 100)]
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-12, atol=1e-14)


def test_dataset_average_counts_every_example_once():
    n = 11
    data = (jnp.arange(n, dtype=jnp.float64), jnp.ones((n, 2)))
    for cs in (1, 3, 4, 5, 10, 11, None):
        mean = dataset_average(lambda chunk, w: jnp.sum(w * chunk[0]), data, cs)
        count = dataset_average(lambda chunk, w: jnp.sum(w * chunk[1][:, 0]), data, cs)
        np.testing.assert_allclose(mean, np.arange(n).mean(), rtol=1e-14)
        np.testing.assert_allclose(count, 1.0, rtol=1e-14)


def test_matvec_casts_between_basis_and_param_dtypes(classifier):
    params32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), classifier.params)
    matvec, dim = flat_matvec('hessian', classifier.apply_fn, 'cross_entropy', params32,
                              (classifier.x.astype(jnp.float32), classifier.y))
    u = jnp.ones((dim,), jnp.float64)
    out = matvec(u)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out, classifier.hessian @ np.ones(dim), rtol=1e-4, atol=1e-5)


def test_custom_loss_callable(regressor):
    v = jax.tree_util.tree_map(jnp.ones_like, regressor.params)
    a = curvature_vector_product('ggn', regressor.apply_fn, mean_squared_error, regressor.params, regressor.dataset, v)
    b = curvature_vector_product('ggn', regressor.apply_fn, 'mse', regressor.params, regressor.dataset, v)
    np.testing.assert_allclose(ravel_pytree(a)[0], ravel_pytree(b)[0], rtol=1e-14)
    with pytest.raises(ValueError):
        curvature_vector_product('newton', regressor.apply_fn, 'mse', regressor.params, regressor.dataset, v)
