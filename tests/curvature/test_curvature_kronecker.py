"""Kronecker-factored GGN: factors against the dense GGN, eigenvalue products against the dense Kronecker product."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.curvature import (
    DEFAULT_EPSILONS,
    factor_eigenvalues,
    kronecker_epsilon_rank,
    kronecker_factors,
    kronecker_product_eigenvalues,
    kronecker_summary,
    tapped_apply,
)

EPS = np.asarray(DEFAULT_EPSILONS)


def layer_permutation(c, layer):
    """Flat-parameter indices of a layer's [kernel; bias] matrix, row-major (the Kronecker ordering)."""
    leaves, treedef = jax.tree_util.tree_flatten(c.params)  # ravel_pytree's order
    sizes = [leaf.size for leaf in leaves]
    chunks = np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])
    idx = jax.tree_util.tree_unflatten(treedef, [ch.reshape(leaf.shape) for ch, leaf in zip(chunks, leaves)])[layer]
    return np.concatenate([idx['kernel'].reshape(-1), idx['bias']])


def exact_factors(c):
    """Exact K-FAC factors of TinyMLP (tanh hidden layer) in numpy: A = mean a~ a~^T, G = mean J_z^T H_out J_z."""
    p = jax.tree_util.tree_map(np.asarray, c.params)
    x = np.asarray(c.x)
    h = np.tanh(x @ p['hidden_0']['kernel'] + p['hidden_0']['bias'])
    ones = np.ones((x.shape[0], 1))
    a_hidden, a_out = np.concatenate([x, ones], axis=1), np.concatenate([h, ones], axis=1)
    # z_out = W_out^T tanh(z_hidden) + b: d outputs / d z_hidden = W_out^T diag(1 - h^2).
    jz = np.einsum('oc,io->ico', p['output']['kernel'], 1 - h**2)  # (N, C, hidden)
    return {'hidden_0': (a_hidden.T @ a_hidden / len(x), np.einsum('ico,icd,idp->op', jz, c.h_out, jz) / len(x)),
            'output': (a_out.T @ a_out / len(x), c.h_out.mean(axis=0))}


def test_single_example_kfac_equals_the_dense_ggn_block(classifier):
    # For one example the GGN block of a dense layer is exactly (a~ a~^T) (x) (sum_c g_c g_c^T).
    c = classifier
    first = (np.asarray(c.x)[:1], np.asarray(c.y)[:1])  # numpy: no eager jax op
    factors = jax.device_get(jax.jit(lambda p, d: kronecker_factors(c.apply_fn, 'cross_entropy', p, d))(c.params,
                                                                                                      first))
    assert set(factors) == {'hidden_0', 'output'}
    ggn0 = c.jac[0].T @ c.h_out[0] @ c.jac[0]
    for layer, f in factors.items():
        perm = layer_permutation(c, layer)
        np.testing.assert_allclose(np.kron(f.A, f.G), ggn0[np.ix_(perm, perm)], atol=1e-12, err_msg=layer)


def test_factors_over_a_chunked_dataset_and_their_eigenvalues(classifier):
    c = classifier

    @jax.jit
    def compute(p):
        factors = kronecker_factors(c.apply_fn, 'cross_entropy', p, c.dataset, chunk_size=5)
        return (factors, factor_eigenvalues(factors), kronecker_epsilon_rank(factors),
                kronecker_summary(c.apply_fn, 'cross_entropy', p, c.dataset, chunk_size=5))

    chunked, eigenvalues, rank, summary = jax.device_get(compute(c.params))  # numpy: no eager op in the checks
    for layer, (a, g) in exact_factors(c).items():
        np.testing.assert_allclose(chunked[layer].A, a, atol=1e-13, err_msg=layer)
        np.testing.assert_allclose(chunked[layer].G, g, atol=1e-13, err_msg=layer)

    counts, sizes = 0, 0
    for layer, (eig_a, eig_g) in eigenvalues.items():
        f = chunked[layer]
        dense = np.linalg.eigvalsh(np.kron(f.A, f.G))
        products = np.sort(np.outer(eig_a, eig_g).reshape(-1))
        np.testing.assert_allclose(products, dense, rtol=0, atol=1e-12 * dense.max())
        count = (np.abs(dense)[None, :] > EPS[:, None]).sum(axis=1)
        assert np.all(np.abs(np.abs(dense)[None, :] - EPS[:, None]) > 1e-10)  # no eigenvalue sits on a threshold
        np.testing.assert_array_equal(summary[f'kfac_epsilon_rank/{layer}'], count / dense.size)
        counts, sizes = counts + count, sizes + dense.size
    np.testing.assert_allclose(summary['kfac_epsilon_rank'], counts / sizes, rtol=1e-14)
    np.testing.assert_array_equal(kronecker_product_eigenvalues(np.array([1.0, 2.0]), np.array([3.0, 5.0])),
                                  [3.0, 5.0, 6.0, 10.0])
    np.testing.assert_allclose(rank.total, counts / sizes, rtol=1e-14)
    assert 0 < summary['kfac_epsilon_rank'][3] < 1  # the sweep is informative here


def test_sampled_factors_are_unbiased_and_do_not_depend_on_chunking(classifier, regressor):
    @jax.jit
    def compute(key):
        def sampled(prob, chunk_size):
            return kronecker_factors(prob.apply_fn, prob.loss, prob.params, prob.dataset, chunk_size=chunk_size,
                                     mode='sampled', key=key, num_samples=400)
        return sampled(classifier, 5), sampled(classifier, None), sampled(regressor, 5)

    cls, cls_whole, reg = jax.device_get(compute(jax.random.key(0)))  # numpy: no eager op in the checks
    for prob, sampled in ((classifier, cls), (regressor, reg)):
        for layer, (a, g) in exact_factors(prob).items():
            np.testing.assert_allclose(sampled[layer].A, a, atol=1e-13)
            err = np.linalg.norm(sampled[layer].G - g) / np.linalg.norm(g)
            assert err < 0.1, (prob.loss, layer, err)
    for layer in cls:  # draws are per example, so chunking does not change them
        np.testing.assert_allclose(cls[layer].G, cls_whole[layer].G, atol=1e-13)


def test_linear_model_with_mse_is_exactly_kronecker():
    # For a linear model and MSE (mean over C outputs) the Hessian is exactly E[a~ a~^T] (x) (2/C) I.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(13, 3)), rng.normal(size=(13, 2))  # numpy: no eager jax op
    model = nn.Dense(2)
    params = {'kernel': rng.normal(size=(3, 2)), 'bias': np.zeros(2)}
    apply_fn = lambda p, inputs: model.apply({'params': p}, inputs)
    factors = jax.device_get(jax.jit(lambda p, d: kronecker_factors(apply_fn, 'mse', p, d, chunk_size=5))(params,
                                                                                                         (x, y)))
    assert set(factors) == {''}  # a bare Dense module has the empty path
    a = np.concatenate([np.asarray(x), np.ones((13, 1))], axis=1)
    np.testing.assert_allclose(factors[''].A, a.T @ a / 13, atol=1e-13)
    np.testing.assert_allclose(factors[''].G, np.eye(2), atol=1e-13)  # 2/C = 1


def test_apply_without_dense_layers_is_rejected():
    with pytest.raises(ValueError, match='no flax.linen.Dense'):
        tapped_apply(lambda p, x: x * p, 2.0, jnp.ones((3, 2)))
