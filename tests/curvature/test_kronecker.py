"""Kronecker-factored GGN: factors against the dense GGN, eigenvalue products against the dense Kronecker product."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.curvature import (DEFAULT_EPSILONS, kronecker_epsilon_rank, kronecker_factors,
                                      kronecker_product_eigenvalues, kronecker_summary, factor_eigenvalues,
                                      tapped_apply)

EPS = np.asarray(DEFAULT_EPSILONS)


def layer_permutation(c, layer):
    """Flat-parameter indices of a layer's [kernel; bias] matrix, row-major (the Kronecker ordering)."""
    idx = c.unravel(jnp.arange(c.dim, dtype=jnp.float64))[layer]
    return np.concatenate([np.asarray(idx['kernel']).reshape(-1), np.asarray(idx['bias'])]).astype(int)


def test_single_example_kfac_equals_the_dense_ggn_block(classifier):
    # For one example the GGN block of a dense layer is exactly (a~ a~^T) (x) (sum_c g_c g_c^T).
    c = classifier
    factors = jax.jit(lambda p: kronecker_factors(c.apply_fn, 'cross_entropy', p, (c.x[:1], c.y[:1])))(c.params)
    assert set(factors) == {'hidden_0', 'output'}
    ggn0 = c.jac[0].T @ c.h_out[0] @ c.jac[0]
    for layer, f in factors.items():
        perm = layer_permutation(c, layer)
        np.testing.assert_allclose(np.kron(f.A, f.G), ggn0[np.ix_(perm, perm)], atol=1e-12, err_msg=layer)


def test_factors_over_a_chunked_dataset_and_their_eigenvalues(classifier):
    c = classifier

    @jax.jit
    def compute(p):
        return (kronecker_factors(c.apply_fn, 'cross_entropy', p, c.dataset, chunk_size=5),
                kronecker_factors(c.apply_fn, 'cross_entropy', p, c.dataset),
                kronecker_summary(c.apply_fn, 'cross_entropy', p, c.dataset, chunk_size=5))

    chunked, whole, summary = compute(c.params)
    # The exact per-example sums: A = mean a~ a~^T, G = mean_i J_z,i^T H_out,i J_z,i (J_z = d outputs / d z).
    h = np.tanh(c.x @ c.params['hidden_0']['kernel'] + c.params['hidden_0']['bias'])
    a_out = np.concatenate([h, np.ones((13, 1))], axis=1)
    np.testing.assert_allclose(chunked['output'].A, a_out.T @ a_out / 13, atol=1e-13)
    np.testing.assert_allclose(chunked['output'].G, c.h_out.mean(axis=0), atol=1e-13)  # J_z = I for the last layer
    for layer in chunked:
        np.testing.assert_allclose(chunked[layer].A, whole[layer].A, atol=1e-13)
        np.testing.assert_allclose(chunked[layer].G, whole[layer].G, atol=1e-13)

    counts, sizes = 0, 0
    for layer, (eig_a, eig_g) in factor_eigenvalues(chunked).items():
        f = chunked[layer]
        dense = np.linalg.eigvalsh(np.kron(f.A, f.G))
        products = np.sort(np.asarray(kronecker_product_eigenvalues(eig_a, eig_g)))
        np.testing.assert_allclose(products, dense, rtol=0, atol=1e-12 * dense.max())
        count = (np.abs(dense)[None, :] > EPS[:, None]).sum(axis=1)
        assert np.all(np.abs(np.abs(dense)[None, :] - EPS[:, None]) > 1e-10)  # no eigenvalue sits on a threshold
        np.testing.assert_array_equal(summary[f'kfac_epsilon_rank/{layer}'], count / dense.size)
        counts, sizes = counts + count, sizes + dense.size
    np.testing.assert_allclose(summary['kfac_epsilon_rank'], counts / sizes, rtol=1e-14)
    rank = kronecker_epsilon_rank(chunked)
    np.testing.assert_allclose(rank.total, counts / sizes, rtol=1e-14)
    assert 0 < summary['kfac_epsilon_rank'][3] < 1  # the sweep is informative here


def test_sampled_factors_are_unbiased_and_do_not_depend_on_chunking(classifier, regressor):
    @jax.jit
    def compute(key):
        out = {}
        for name, prob in (('cls', classifier), ('reg', regressor)):
            out[name, 'exact'] = kronecker_factors(prob.apply_fn, prob.loss, prob.params, prob.dataset, chunk_size=5)
            out[name, 'sampled'] = kronecker_factors(prob.apply_fn, prob.loss, prob.params, prob.dataset, chunk_size=5,
                                                     mode='sampled', key=key, num_samples=400)
        out['cls', 'sampled_whole'] = kronecker_factors(classifier.apply_fn, 'cross_entropy', classifier.params,
                                                        classifier.dataset, mode='sampled', key=key, num_samples=400)
        return out

    out = compute(jax.random.key(0))
    for layer in ('hidden_0', 'output'):
        np.testing.assert_allclose(out['cls', 'sampled'][layer].G, out['cls', 'sampled_whole'][layer].G, atol=1e-13)
        for name in ('cls', 'reg'):
            exact, sampled = out[name, 'exact'][layer], out[name, 'sampled'][layer]
            np.testing.assert_allclose(sampled.A, exact.A, atol=1e-13)
            err = np.linalg.norm(sampled.G - exact.G) / np.linalg.norm(exact.G)
            assert err < 0.1, (name, layer, err)


def test_linear_model_with_mse_is_exactly_kronecker():
    # For a linear model and MSE (mean over C outputs) the Hessian is exactly E[a~ a~^T] (x) (2/C) I.
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.normal(size=(13, 3))), jnp.asarray(rng.normal(size=(13, 2)))
    model = nn.Dense(2)
    params = {'kernel': jnp.asarray(rng.normal(size=(3, 2))), 'bias': jnp.zeros(2)}
    apply_fn = lambda p, inputs: model.apply({'params': p}, inputs)
    factors = jax.jit(lambda p: kronecker_factors(apply_fn, 'mse', p, (x, y), chunk_size=5))(params)
    assert set(factors) == {''}  # a bare Dense module has the empty path
    a = np.concatenate([np.asarray(x), np.ones((13, 1))], axis=1)
    np.testing.assert_allclose(factors[''].A, a.T @ a / 13, atol=1e-13)
    np.testing.assert_allclose(factors[''].G, np.eye(2), atol=1e-13)  # 2/C = 1


def test_apply_without_dense_layers_is_rejected():
    with pytest.raises(ValueError, match='no flax.linen.Dense'):
        tapped_apply(lambda p, x: x * p, 2.0, jnp.ones((3, 2)))
