"""UPGD: two steps against a NumPy transcription of the published algorithm, its edge case, noise, the variant."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_jax import engine, learners
from tests.conftest import load_config

PARAMS = {'a': jnp.array([[1.0, -0.5], [0.2, 2.0]]), 'b': jnp.array([0.3, -1.0, 0.0])}
GRADS = [{'a': jnp.array([[0.5, 0.1], [-0.3, -0.2]]), 'b': jnp.array([0.2, 0.4, -0.1])},
         {'a': jnp.array([[-0.1, 0.3], [0.2, 0.6]]), 'b': jnp.array([0.0, -0.5, 0.3])}]


def make(step_size=0.1, weight_decay=0.01, beta_utility=0.9, noise_std=0.5, optimizer='sgd'):
    config = ml_collections.ConfigDict({'name': 'upgd', 'optimizer': optimizer, 'step_size': step_size,
                                        'momentum': 0.0, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8,
                                        'weight_decay': weight_decay, 'beta_utility': beta_utility,
                                        'noise_std': noise_std})
    return learners.make_learner(config, None).optimizer


def numpy_upgd(params, grads_list, keys, alpha, wd, beta, sigma):
    """Algorithm 1 of Elsayed & Mahmood (2024), first-order global UPGD, transcribed leaf by leaf."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    utility = {k: np.zeros_like(v) for k, v in params.items()}
    for t, (grads, key) in enumerate(zip(grads_list, keys), start=1):
        noise = optax.tree_utils.tree_random_like(key, grads)
        for k in params:
            utility[k] = beta * utility[k] + (1 - beta) * (-np.asarray(grads[k]) * params[k])
        eta = max(u.max() for u in utility.values())
        for k in params:
            scaled = 1 / (1 + np.exp(-(utility[k] / (1 - beta**t)) / eta))
            xi = sigma * np.asarray(noise[k])
            params[k] = (1 - alpha * wd) * params[k] - alpha * (np.asarray(grads[k]) + xi) * (1 - scaled)
    return params


def test_two_steps_match_the_published_algorithm():
    optimizer = make()
    keys = [jax.random.PRNGKey(5), jax.random.PRNGKey(6)]
    params, state = PARAMS, optimizer.init(PARAMS)
    for grads, key in zip(GRADS, keys):
        updates, state = optimizer.update(grads, state, params, key=key, grad_fn=None)
        params = optax.apply_updates(params, updates)
    expected = numpy_upgd(PARAMS, GRADS, keys, alpha=0.1, wd=0.01, beta=0.9, sigma=0.5)
    for k in PARAMS:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-5, atol=1e-6)
    assert int(state.inner_state.count) == 2 and float(state.hyperparams['beta_utility']) == pytest.approx(0.9)


def test_the_most_useful_weight_is_protected_and_useless_ones_are_perturbed():
    optimizer = make(weight_decay=0.0, beta_utility=0.9999, noise_std=1.0)
    updates, _ = optimizer.update(GRADS[0], optimizer.init(PARAMS), PARAMS, key=jax.random.PRNGKey(0))
    # Utility -g w is largest for a[1, 1] (0.4): scaled utility ~ sigmoid(1e4) = 1, so it does not move at all.
    assert abs(float(updates['a'][1, 1])) < 1e-6
    assert abs(float(updates['b'][2])) > 1e-3  # zero utility (w = 0): s = 1/2, gradient plus noise


def test_all_zero_utilities_give_half_protection_instead_of_nan():
    optimizer = make(weight_decay=0.0, noise_std=0.0)
    zero_grads = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = optimizer.update(zero_grads, optimizer.init(PARAMS), PARAMS, key=jax.random.PRNGKey(0))
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    optimizer = make(weight_decay=0.0, noise_std=1.0)
    updates, _ = optimizer.update(zero_grads, optimizer.init(PARAMS), PARAMS, key=jax.random.PRNGKey(0))
    noise = optax.tree_utils.tree_random_like(jax.random.PRNGKey(0), PARAMS)
    for k in PARAMS:
        np.testing.assert_allclose(updates[k], -0.1 * noise[k] * 0.5, rtol=1e-6)


def test_vmapped_seeds_get_different_noise_and_sgd_is_required():
    optimizer = make()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = jax.vmap(lambda _: optimizer.init(PARAMS))(keys)
    updates, _ = jax.jit(jax.vmap(lambda k, s: optimizer.update(GRADS[0], s, PARAMS, key=k)))(keys, states)
    assert not np.allclose(updates['a'][0], updates['a'][1])
    with pytest.raises(ValueError, match='sgd'):
        make(optimizer='adam')


def test_config_variant_runs_through_the_engine(tmp_path):
    config = load_config('slowly_changing_regression.py', 'upgd')
    assert (config.learner.name, config.learner.step_size, config.learner.beta_utility) == ('upgd', 0.01, 0.9999)
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = 2, 2, 2
    config.problem.examples_per_task, config.metrics.probe_size = 200, 32
    metrics = engine.run(config, str(tmp_path), progress=False)
    assert np.all(np.isfinite(metrics['online_mse'])) and np.all(metrics['nonfinite_steps'] == 0)
