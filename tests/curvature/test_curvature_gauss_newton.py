"""The exact GGN spectrum through its dual Gram matrix, against the dense float64 GGN."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from plasticity_jax.curvature import DEFAULT_EPSILONS, exact_ggn_spectrum, ggn_gram
from plasticity_jax.curvature.products import softmax_cross_entropy

EPS = np.asarray(DEFAULT_EPSILONS)


class TinyConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (2, 2), padding='VALID', name='conv_0')(x))
        x = x.reshape(x.shape[0], -1)
        x = jnp.tanh(nn.Dense(3, name='hidden_0')(x))
        return nn.Dense(3, name='output')(x)


@pytest.fixture(scope='module')
def conv_problem():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(6, 4, 4, 1))  # numpy: no eager jax op
        y = rng.integers(0, 3, size=6).astype(np.int32)
        model = TinyConvNet()
        params = jax.jit(model.init)(jax.random.key(0), x[:1])['params']  # one program, not flax's eager ops
        apply_fn = lambda p, inputs: model.apply({'params': p}, inputs)
        flat, unravel = ravel_pytree(params)
        out = lambda f: apply_fn(unravel(f), x)
        single = lambda o, t: softmax_cross_entropy(o[None], t[None])[0]
        jac, h_out = map(np.asarray, jax.jit(lambda f: (jax.jacfwd(out)(f),  # (N, C, P)
                                                        jax.vmap(jax.hessian(single))(out(f), y)))(flat))
        ggn = np.einsum('icp,icd,idq->pq', jac, h_out, jac) / x.shape[0]
        return dict(apply_fn=apply_fn, params=params, dataset=(x, y), ggn=ggn, dim=flat.size)


def _gram_and_spectrum(apply_fn, loss, params, dataset, chunk_size, method):
    return (ggn_gram(apply_fn, loss, params, dataset, chunk_size=chunk_size, method=method),
            exact_ggn_spectrum(apply_fn, loss, params, dataset, chunk_size=chunk_size, method=method))


def _check(gram, out, ggn, dim):
    """`gram` and `out` (`ggn_gram` and `exact_ggn_spectrum` of one network) against its dense GGN."""
    dual = np.sort(np.linalg.eigvalsh(gram))[::-1]
    dense = np.sort(np.linalg.eigvalsh(ggn))[::-1]
    scale = dense[0]
    k = min(dual.size, dense.size)
    np.testing.assert_allclose(dual[:k], dense[:k], atol=1e-12 * scale)  # the same nonzero eigenvalues ...
    assert np.all(np.abs(dense[k:]) < 1e-12 * scale) and np.all(np.abs(dual[k:]) < 1e-12 * scale)  # ... and zeros
    np.testing.assert_allclose(np.trace(gram), np.trace(ggn), rtol=1e-8)
    count = (np.abs(dense)[None, :] > EPS[:, None]).sum(axis=1)
    assert np.abs(np.abs(dense)[:, None] - EPS[None, :]).min() > 1e-9  # no eigenvalue sits on a threshold
    np.testing.assert_array_equal(out['ggn_exact_epsilon_count'], count)  # exact at every eps (all resolved in f64)
    np.testing.assert_allclose(out['ggn_exact_epsilon_rank'], count / dim, rtol=1e-15)
    return out


def test_dual_gram_equals_the_dense_ggn_on_an_mlp(classifier, regressor):
    # dense layers in closed form ('auto'), and every parameter by jvp/vjp; the three in one compiled program
    cases = ((classifier, 'auto'), (regressor, 'auto'), (classifier, 'jvp'))
    results = jax.device_get(jax.jit(lambda params, datasets: [
        _gram_and_spectrum(c.apply_fn, c.loss, p, d, 5, method) for (c, method), p, d in zip(cases, params, datasets)])(
            [c.params for c, _ in cases], [c.dataset for c, _ in cases]))
    for (c, _), (gram, out) in zip(cases, results):
        _check(gram, out, c.ggn, c.dim)


def test_dual_gram_equals_the_dense_ggn_on_a_conv_net(conv_problem):
    c = conv_problem  # the convolution by jvp/vjp, the dense layers in closed form
    program = jax.jit(lambda p, d: _gram_and_spectrum(c['apply_fn'], 'cross_entropy', p, d, 4, 'auto'))
    gram, out = jax.device_get(program(c['params'], c['dataset']))
    _check(gram, out, c['ggn'], c['dim'])


def test_exact_ggn_spectrum_under_vmap_over_seeds(classifier):
    c = classifier
    params = jax.tree_util.tree_map(lambda p: np.stack([p, 0.5 * p]), c.params)  # numpy: no eager jax op
    spectrum = lambda p: exact_ggn_spectrum(c.apply_fn, c.loss, p, c.dataset, chunk_size=4)
    out = jax.device_get(jax.jit(jax.vmap(spectrum))(params))
    alone = jax.jit(spectrum)  # one program for both seeds made alone
    for seed in range(2):
        one = jax.tree_util.tree_map(lambda p: p[seed], params)
        single = jax.device_get(alone(one))
        for name, value in single.items():
            np.testing.assert_allclose(out[name][seed], value, rtol=1e-10, atol=1e-14, err_msg=name)


def test_float32_counts_below_the_resolution_are_nan(classifier):
    c = classifier
    eps = 10.0 ** np.arange(-10, 1)
    with jax.enable_x64(False):
        params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float32), c.params)  # numpy: no eager jax op
        dataset = (np.asarray(c.x, np.float32), np.asarray(c.y))
        out = jax.device_get(jax.jit(lambda p, d: exact_ggn_spectrum(c.apply_fn, c.loss, p, d, epsilons=eps))(
            params, dataset))
    dense = np.linalg.eigvalsh(c.ggn)
    resolved = eps > float(out['ggn_exact_resolution'])
    assert not resolved.all() and resolved.any()
    assert np.isnan(out['ggn_exact_epsilon_rank'][~resolved]).all()
    count = (np.abs(dense)[None, :] > eps[:, None]).sum(axis=1)
    np.testing.assert_array_equal(out['ggn_exact_epsilon_count'][resolved], count[resolved])
    np.testing.assert_array_equal(out['ggn_exact_epsilon_count'][~resolved], -1)

