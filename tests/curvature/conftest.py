"""Shared fixtures: tiny flax networks in float64 and their dense curvature matrices.

Every test in this directory runs inside `jax.enable_x64(True)` (restored afterwards, so other test directories are
unaffected); a test that needs float32 opens `jax.enable_x64(False)` itself.
"""

from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from plasticity_jax.curvature import mean_squared_error, softmax_cross_entropy


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


class TinyMLP(nn.Module):
    hidden: int = 4
    outputs: int = 3

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(self.hidden, name='hidden_0')(x))
        return nn.Dense(self.outputs, name='output')(x)


def make_problem(loss: str, n_examples: int = 13, n_inputs: int = 3, hidden: int = 4, outputs: int = 3,
                 seed: int = 0):
    """A tiny tanh MLP in float64, its dataset, and its dense Hessian / GGN / empirical Fisher."""
    # Data and parameters come from numpy (no jax PRNG to compile); `TinyMLP.init` would give the same structure.
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n_examples, n_inputs)))
    if loss == 'cross_entropy':
        y = jnp.asarray(rng.integers(0, outputs, size=n_examples), jnp.int32)
        loss_fn = softmax_cross_entropy
    else:
        y = jnp.asarray(rng.normal(size=(n_examples, outputs)))
        loss_fn = mean_squared_error
    model = TinyMLP(hidden=hidden, outputs=outputs)
    params = {'hidden_0': {'kernel': rng.normal(size=(n_inputs, hidden)) * 1.5, 'bias': rng.normal(size=hidden) * 0.5},
              'output': {'kernel': rng.normal(size=(hidden, outputs)) * 1.5, 'bias': rng.normal(size=outputs) * 0.5}}
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def apply_fn(p, inputs):
        return model.apply({'params': p}, inputs)

    flat, unravel = ravel_pytree(params)

    @jax.jit
    def dense(f):
        outputs_fn = lambda g: apply_fn(unravel(g), x)
        hessian = jax.hessian(lambda g: jnp.mean(loss_fn(outputs_fn(g), y)))(f)
        jac = jax.jacfwd(outputs_fn)(f)  # (N, C, n)
        single = lambda o, t: loss_fn(o[None], t[None])[0]
        h_out = jax.vmap(jax.hessian(single))(outputs_fn(f), y)  # (N, C, C)
        grads = jax.jacrev(lambda g: loss_fn(outputs_fn(g), y))(f)  # (N, n)
        return hessian, jac, h_out, grads

    hessian, jac, h_out, grads = map(np.asarray, dense(flat))
    ggn = np.einsum('icp,icd,idq->pq', jac, h_out, jac) / n_examples
    fisher = grads.T @ grads / n_examples
    return SimpleNamespace(loss=loss, loss_fn=loss_fn, x=x, y=y, dataset=(x, y), model=model, params=params,
                           apply_fn=apply_fn, flat=flat, unravel=unravel, dim=flat.size, hessian=hessian, ggn=ggn,
                           fisher=fisher, jac=jac, h_out=h_out)


@pytest.fixture(scope='session')
def classifier():
    with jax.enable_x64(True):
        return make_problem('cross_entropy')


@pytest.fixture(scope='session')
def regressor():
    with jax.enable_x64(True):
        return make_problem('mse', outputs=2)
