"""L2 and L2 Init: the gradient term added before the optimizer, hyperparameters as state, the config variants."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_jax import engine, learners
from tests.conftest import load_config


def learner_config(name, **fields):
    config = ml_collections.ConfigDict({'name': name, 'optimizer': 'sgd', 'step_size': 0.1, 'momentum': 0.0,
                                        'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8})
    config.update(fields)
    return config


def update(learner, grads, state, params):
    return learner.optimizer.update(grads, state, params, key=jax.random.PRNGKey(0), grad_fn=None)


PARAMS = {'w': jnp.array([1.0, -2.0]), 'b': jnp.array([0.5])}
GRADS = {'w': jnp.array([0.3, 0.1]), 'b': jnp.array([-1.0])}


def test_l2_adds_weight_decay_times_params_to_the_gradient_before_sgd():
    """Dissertation eq. 2.6 with SGD: theta <- theta - alpha (g + weight_decay theta)."""
    learner = learners.make_learner(learner_config('l2', weight_decay=0.01), None)
    updates, state = update(learner, GRADS, learner.optimizer.init(PARAMS), PARAMS)
    for name in PARAMS:
        np.testing.assert_allclose(updates[name], -0.1 * (GRADS[name] + 0.01 * PARAMS[name]), rtol=1e-6)
    assert float(state[0].hyperparams['weight_decay']) == pytest.approx(0.01)


def test_l2_with_adam_is_coupled_the_decay_goes_through_adam():
    """Like torch.optim.Adam(weight_decay=...): Adam's first step is -lr * sign(g + wd theta), not AdamW's."""
    config = learner_config('l2', weight_decay=10.0, optimizer='adam', step_size=1e-3, eps=1e-12)
    learner = learners.make_learner(config, None)
    updates, _ = update(learner, GRADS, learner.optimizer.init(PARAMS), PARAMS)
    expected = -1e-3 * np.sign(np.asarray(GRADS['w']) + 10.0 * np.asarray(PARAMS['w']))
    np.testing.assert_allclose(updates['w'], expected, rtol=1e-5)


def test_l2_init_pulls_toward_the_params_at_init_not_toward_zero():
    learner = learners.make_learner(learner_config('l2_init', weight_decay=0.5), None)
    state = learner.optimizer.init(PARAMS)
    np.testing.assert_array_equal(state[0].inner_state.init_params['w'], PARAMS['w'])
    zero_grads = jax.tree.map(jnp.zeros_like, GRADS)
    updates, state = update(learner, zero_grads, state, PARAMS)  # at theta_0: no pull
    for name in PARAMS:
        np.testing.assert_array_equal(updates[name], 0.0)
    moved = jax.tree.map(lambda p: p + 2.0, PARAMS)
    updates, state = update(learner, GRADS, state, moved)
    for name in PARAMS:
        np.testing.assert_allclose(updates[name], -0.1 * (GRADS[name] + 0.5 * 2.0), rtol=1e-6)
    np.testing.assert_array_equal(state[0].inner_state.init_params['w'], PARAMS['w'])  # theta_0 never moves


def test_weight_decay_is_a_per_run_array_under_vmap():
    learner = learners.make_learner(learner_config('l2', weight_decay=0.0), None)
    state = learner.optimizer.init(PARAMS)
    decays = jnp.array([0.0, 1.0])
    states = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    states[0].hyperparams['weight_decay'] = decays
    updates, _ = jax.jit(jax.vmap(lambda s: update(learner, GRADS, s, PARAMS)))(states)
    np.testing.assert_allclose(updates['w'][0], -0.1 * GRADS['w'], rtol=1e-6)
    np.testing.assert_allclose(updates['w'][1], -0.1 * (GRADS['w'] + PARAMS['w']), rtol=1e-6)


def test_learner_defaults_apply_when_the_config_lacks_the_field():
    learner = learners.make_learner(learner_config('l2'), None)
    state = learner.optimizer.init(PARAMS)
    default = learners.LEARNERS['l2'].defaults['weight_decay']
    assert float(state[0].hyperparams['weight_decay']) == pytest.approx(default)


@pytest.mark.parametrize('name', ['l2', 'l2_init'])
def test_config_variant_runs_through_the_engine(name, tmp_path):
    config = load_config('slowly_changing_regression.py', name)
    assert config.learner.name == name and config.learner.weight_decay == 1e-4
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = 2, 2, 2
    config.problem.examples_per_task, config.metrics.probe_size = 200, 32
    metrics = engine.run(config, str(tmp_path), progress=False)
    assert np.all(np.isfinite(metrics['online_mse'])) and np.all(metrics['nonfinite_steps'] == 0)
