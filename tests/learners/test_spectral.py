"""Spectral regularisation: power iteration, the penalty's gradient against exact SVD, the config variant."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_jax import engine, learners
from plasticity_jax.learners.spectral import spectral_regularization
from tests.conftest import load_config

PARAMS = {'dense': {'kernel': jax.random.normal(jax.random.PRNGKey(0), (5, 3)), 'bias': jnp.array([0.5, -1.0, 0.2])},
          'norm': {'scale': jnp.array([1.5, 0.3, -0.2]), 'bias': jnp.array([0.1, 0.0, -0.3])}}
ZERO = jax.tree.map(jnp.zeros_like, PARAMS)


def exact_penalty(params, k):
    sigma = jnp.linalg.svd(params['dense']['kernel'], compute_uv=False)[0]
    return ((sigma**k - 1) ** 2 + jnp.sum(params['dense']['bias'] ** 2) ** k
            + (jnp.max(jnp.abs(params['norm']['scale'])) ** k - 1) ** 2 + jnp.sum(params['norm']['bias'] ** 2) ** k)


def test_power_iteration_finds_the_largest_singular_value():
    transform = spectral_regularization(coef=0.0, power=2.0, power_iterations=1)
    state = jax.jit(transform.init)(PARAMS)
    kernel = np.asarray(PARAMS['dense']['kernel'])
    sigma_max = float(np.linalg.svd(kernel, compute_uv=False)[0])
    estimates = []
    update = jax.jit(transform.update)
    for _ in range(30):  # persistent vectors: one iteration per step converges across steps
        _, state = update(ZERO, state, PARAMS)
        (u,), (v,) = state.u.values(), state.v.values()
        estimates.append(float(u @ kernel @ v))
    assert estimates[0] <= sigma_max + 1e-5 and estimates[-1] == pytest.approx(sigma_max, rel=1e-5)
    assert list(state.u) == ["['dense']['kernel']"]  # only weight matrices carry singular vectors


@pytest.mark.parametrize('k', [1.0, 2.0])
def test_added_gradient_is_coef_times_the_gradient_of_the_exact_penalty(k):
    transform = spectral_regularization(coef=0.1, power=k, power_iterations=100)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), PARAMS)
    updates, _ = transform.update(grads, transform.init(PARAMS), PARAMS)
    expected = jax.tree.map(lambda g, r: g + 0.1 * r, grads, jax.grad(exact_penalty)(PARAMS, k))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), updates, expected)


def test_sgd_steps_pull_the_largest_singular_value_toward_one():
    config = ml_collections.ConfigDict({'name': 'spectral_reg', 'optimizer': 'sgd', 'step_size': 0.05,
                                        'momentum': 0.0, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8,
                                        'spectral_coef': 1.0, 'spectral_power': 2.0, 'spectral_power_iterations': 1})
    optimizer = learners.make_learner(config, None).optimizer

    @jax.jit
    def step(params, state):
        updates, state = optimizer.update(jax.tree.map(jnp.zeros_like, params), state, params,
                                          key=jax.random.PRNGKey(0), grad_fn=None)
        return optax.apply_updates(params, updates), state

    # Distinct singular values: with a degenerate spectrum (e.g. a scaled permutation) the power iteration's start
    # v = 1/sqrt(n) can be an exact singular vector, and only rounding noise would lead it to the others.
    matrix = np.array([[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.6]])
    matrix /= np.linalg.svd(matrix, compute_uv=False)[0]
    for scale in (3.0, 0.3):
        params = {'w': jnp.asarray(scale * matrix, jnp.float32), 'b': jnp.ones(3)}
        state = jax.jit(optimizer.init)(params)
        for _ in range(100):
            params, state = step(params, state)
        assert float(np.linalg.svd(np.asarray(params['w']), compute_uv=False)[0]) == pytest.approx(1.0, abs=0.05)
        assert float(jnp.linalg.norm(params['b'])) < 0.9  # biases are pulled toward zero
    assert float(state[0].hyperparams['coef']) == 1.0


def test_config_variant_runs_through_the_engine(tmp_path):
    config = load_config('slowly_changing_regression.py', 'spectral_reg')
    assert (config.learner.name, config.learner.spectral_power) == ('spectral_reg', 2.0)
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = 2, 2, 2
    config.problem.examples_per_task, config.metrics.probe_size = 200, 32
    metrics = engine.run(config, str(tmp_path), progress=False)
    assert np.all(np.isfinite(metrics['online_mse'])) and np.all(metrics['nonfinite_steps'] == 0)
