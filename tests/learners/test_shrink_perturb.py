"""Shrink and Perturb: shrink inside the SGD step, then Gaussian noise from the step's key (dissertation eq. 2.7)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_jax import engine, learners
from tests.conftest import load_config

PARAMS = {'layer': {'kernel': jnp.arange(6.0).reshape(2, 3) - 2.0, 'bias': jnp.array([0.5, -0.5, 1.0])}}
GRADS = {'layer': {'kernel': jnp.full((2, 3), 0.2), 'bias': jnp.array([1.0, 0.0, -1.0])}}


def make(weight_decay=0.01, noise_std=0.1, step_size=0.1):
    config = ml_collections.ConfigDict({'name': 'shrink_perturb', 'optimizer': 'sgd', 'step_size': step_size,
                                        'momentum': 0.0, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8,
                                        'weight_decay': weight_decay, 'noise_std': noise_std})
    return learners.make_learner(config, None).optimizer


def step(optimizer, key, state=None):
    state = optimizer.init(PARAMS) if state is None else state
    updates, state = optimizer.update(GRADS, state, PARAMS, key=key, grad_fn=None)
    return optax.apply_updates(PARAMS, updates), state


def test_update_is_shrink_then_sgd_step_then_noise_from_the_given_key():
    """theta' = (1 - alpha wd) theta - alpha g + sigma eps, eps = tree_random_like(key): eq. 2.7 with 2 lambda = wd."""
    key = jax.random.PRNGKey(3)
    new, state = step(make(weight_decay=0.01, noise_std=0.1, step_size=0.1), key)
    eps = optax.tree_utils.tree_random_like(key, PARAMS)
    expected = jax.tree.map(lambda p, g, e: (1 - 0.1 * 0.01) * p - 0.1 * g + 0.1 * e, PARAMS, GRADS, eps)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new, expected)
    assert float(state[2].hyperparams['noise_std']) == pytest.approx(0.1)


def test_a_step_size_schedule_scales_the_step_not_the_noise():
    """Class-incremental CIFAR-100's milestones: after 2 of 3 milestones the shrink and gradient step is 0.2**2 of
    the step size's, the noise keeps its standard deviation (the papers' `inject_noise`)."""
    config = ml_collections.ConfigDict({'name': 'shrink_perturb', 'optimizer': 'sgd', 'step_size': 0.1,
                                        'momentum': 0.0, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8,
                                        'weight_decay': 0.01, 'noise_std': 0.1,
                                        'step_size_milestones': (0.3, 0.6, 0.8), 'step_size_decay': 0.2})
    optimizer = learners.make_learner(config, None).optimizer
    key = jax.random.PRNGKey(3)
    updates, _ = optimizer.update(GRADS, optimizer.init(PARAMS), PARAMS, key=key, grad_fn=None, task_progress=0.7)
    eps = optax.tree_utils.tree_random_like(key, PARAMS)
    expected = jax.tree.map(lambda p, g, e: -0.04 * 0.1 * (g + 0.01 * p) + 0.1 * e, PARAMS, GRADS, eps)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), updates, expected)


def test_zero_noise_is_plain_l2_and_noise_depends_on_the_key():
    quiet, _ = step(make(noise_std=0.0), jax.random.PRNGKey(0))
    expected = jax.tree.map(lambda p, g: p - 0.1 * (g + 0.01 * p), PARAMS, GRADS)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), quiet, expected)
    a, _ = step(make(), jax.random.PRNGKey(0))
    b, _ = step(make(), jax.random.PRNGKey(1))
    again, _ = step(make(), jax.random.PRNGKey(0))
    assert not np.allclose(a['layer']['kernel'], b['layer']['kernel'])
    np.testing.assert_array_equal(a['layer']['kernel'], again['layer']['kernel'])
    # Different leaves get different noise (one key per leaf).
    assert not np.allclose(a['layer']['bias'] - expected['layer']['bias'],
                           a['layer']['kernel'][0] - expected['layer']['kernel'][0])


def test_noise_has_the_configured_standard_deviation():
    optimizer = make(weight_decay=0.0, noise_std=0.3)
    big = {'w': jnp.zeros((200, 100))}
    updates, _ = optimizer.update({'w': jnp.zeros((200, 100))}, optimizer.init(big), big, key=jax.random.PRNGKey(7))
    assert np.std(updates['w']) == pytest.approx(0.3, rel=0.03) and abs(np.mean(updates['w'])) < 0.01


def test_vmapped_seeds_get_different_noise_and_a_key_is_required():
    optimizer = make()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = jax.vmap(lambda _: optimizer.init(PARAMS))(keys)
    new, _ = jax.jit(jax.vmap(lambda k, s: step(optimizer, k, s)))(keys, states)
    assert not np.allclose(new['layer']['kernel'][0], new['layer']['kernel'][1])
    np.testing.assert_allclose(new['layer']['kernel'][1], step(optimizer, keys[1])[0]['layer']['kernel'], rtol=1e-6)
    with pytest.raises(ValueError, match='key'):
        optimizer.update(GRADS, optimizer.init(PARAMS), PARAMS)


def test_config_variant_runs_through_the_engine(tmp_path):
    config = load_config('slowly_changing_regression.py', 'shrink_perturb')
    learner = config.learner
    assert (learner.name, learner.weight_decay, learner.noise_std) == ('shrink_perturb', 1e-4, 1e-5)
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = 2, 2, 2
    config.problem.examples_per_task, config.metrics.probe_size = 200, 32
    metrics = engine.run(config, str(tmp_path), progress=False)
    assert np.all(np.isfinite(metrics['online_mse'])) and np.all(metrics['nonfinite_steps'] == 0)
