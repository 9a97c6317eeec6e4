"""SAM and the gradient norm penalty on a tiny network: the hand-computed SAM step, GNP's gradient of the penalised
objective (checked by finite differences), Zhao et al.'s finite-difference scheme, the config variants."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_jax import engine, learners
from tests.conftest import load_config

_keys = jax.random.split(jax.random.PRNGKey(0), 4)
PARAMS = {'hidden': {'kernel': jax.random.normal(_keys[0], (3, 4)), 'bias': jnp.full((4,), 0.1)},
          'output': {'kernel': jax.random.normal(_keys[1], (4, 2)), 'bias': jnp.zeros((2,))}}
X = jax.random.normal(_keys[2], (5, 3))
Y = jax.random.normal(_keys[3], (5, 2))


def loss(params):
    hidden = jnp.tanh(X @ params['hidden']['kernel'] + params['hidden']['bias'])
    return jnp.mean((hidden @ params['output']['kernel'] + params['output']['bias'] - Y) ** 2)


@jax.jit
def grad_fn(params, _=0):
    return jax.grad(loss)(params)


HOST_PARAMS = jax.device_get(PARAMS)  # for references computed in NumPy


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def make(name, **fields):
    config = ml_collections.ConfigDict({'name': name, 'optimizer': 'sgd', 'step_size': 0.1, 'momentum': 0.0,
                                        'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8})
    config.update(fields)
    return learners.make_learner(config, None).optimizer


def one_update(optimizer, params=PARAMS):
    return optimizer.update(grad_fn(params), optimizer.init(params), params, key=jax.random.PRNGKey(0),
                            grad_fn=grad_fn)


def test_sam_update_is_the_base_step_with_the_gradient_at_the_ascended_point():
    updates, state = one_update(make('sam', rho=0.05))
    g = jax.device_get(grad_fn(PARAMS))
    norm = np.linalg.norm(flat(g))
    ascended = jax.tree.map(lambda p, gi: p + 0.05 * gi / norm, HOST_PARAMS, g)
    expected = jax.tree.map(lambda gi: -0.1 * gi, jax.device_get(grad_fn(ascended)))
    np.testing.assert_allclose(flat(updates), flat(expected), rtol=1e-5, atol=1e-7)
    assert not np.allclose(flat(updates), -0.1 * flat(g), rtol=1e-3)  # SAM is not plain SGD here
    # rho is a traced value in the state (the ascent SGD's learning rate).
    assert float(state.adv_state[1].hyperparams['learning_rate']) == pytest.approx(0.05)


def test_sam_with_zero_gradient_stays_finite_and_needs_grad_fn():
    optimizer = make('sam', rho=0.05)
    zeros = jax.tree.map(np.zeros_like, HOST_PARAMS)
    updates, _ = jax.jit(lambda: optimizer.update(zeros, optimizer.init(PARAMS), PARAMS, key=jax.random.PRNGKey(0),
                                                  grad_fn=lambda p, _: jax.tree.map(jnp.zeros_like, p)))()
    assert np.all(flat(updates) == 0)
    with pytest.raises(ValueError, match='grad_fn'):
        optimizer.update(zeros, optimizer.init(PARAMS), PARAMS, key=jax.random.PRNGKey(0))


@jax.jit
def penalised(params, coef):
    return loss(params) + coef * jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grad_fn(params))))


def test_gnp_exact_gradient_matches_finite_differences_of_the_penalised_objective():
    coef = 0.3
    updates, _ = one_update(make('gnp', gnp_coef=coef, gnp_r=0.05, gnp_mode='exact', step_size=1.0))
    gnp_grad = -flat(updates)
    # Same as autodiff through the norm of the gradient ...
    np.testing.assert_allclose(gnp_grad, flat(jax.grad(penalised)(PARAMS, coef)), rtol=1e-4, atol=1e-6)
    # ... and as central differences of L + coef ||grad L|| along random directions.
    rng = np.random.default_rng(10)
    for _ in range(3):
        direction = jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), HOST_PARAMS)
        h = 1e-2
        shifted = lambda s: jax.tree.map(lambda p, d: p + np.float32(s * h) * d, HOST_PARAMS, direction)
        numeric = (penalised(shifted(1), coef) - penalised(shifted(-1), coef)) / (2 * h)
        assert float(gnp_grad @ flat(direction)) == pytest.approx(float(numeric), rel=2e-3, abs=1e-4)
    # The penalty changes the gradient.
    assert not np.allclose(gnp_grad, flat(grad_fn(PARAMS)), rtol=1e-2)


def test_gnp_finite_difference_mode_is_zhaos_scheme_and_approaches_the_exact_gradient():
    coef, r = 0.04, 0.05
    updates, state = one_update(make('gnp', gnp_coef=coef, gnp_r=r, gnp_mode='finite_difference', step_size=1.0))
    g = jax.device_get(grad_fn(PARAMS))
    norm = np.linalg.norm(flat(g))
    g1 = grad_fn(jax.tree.map(lambda p, gi: p + np.float32(r / norm) * gi, HOST_PARAMS, g))
    expected = (1 - coef / r) * flat(g) + (coef / r) * flat(g1)
    np.testing.assert_allclose(-flat(updates), expected, rtol=1e-5, atol=1e-7)
    assert float(state[0].hyperparams['r']) == pytest.approx(r)
    small_r, _ = one_update(make('gnp', gnp_coef=coef, gnp_r=1e-3, gnp_mode='finite_difference', step_size=1.0))
    exact, _ = one_update(make('gnp', gnp_coef=coef, gnp_r=1e-3, gnp_mode='exact', step_size=1.0))
    np.testing.assert_allclose(flat(small_r), flat(exact), rtol=1e-2, atol=1e-4)


def test_gnp_rejects_unknown_modes():
    with pytest.raises(ValueError, match='gnp_mode'):
        one_update(make('gnp', gnp_mode='hutchinson'))


@pytest.mark.parametrize('name', ['sam', 'gnp'])
def test_config_variant_runs_through_the_engine(name, tmp_path):
    config = load_config('slowly_changing_regression.py', name)
    assert config.learner.name == name
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = 2, 2, 2
    config.problem.examples_per_task, config.metrics.probe_size = 200, 32
    metrics = engine.run(config, str(tmp_path), progress=False)
    assert np.all(np.isfinite(metrics['online_mse'])) and np.all(metrics['nonfinite_steps'] == 0)
