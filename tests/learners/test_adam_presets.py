"""proper_adam: the variant makes the learner Adam with beta1 = beta2 = 0.99."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax import engine, learners
from tests.conftest import load_config


def test_variant_sets_adam_with_equal_betas_and_keeps_the_step_size():
    plain = load_config('permuted_mnist.py', 'adam')
    config = load_config('permuted_mnist.py', 'adam,proper_adam')
    assert (config.learner.name, config.learner.optimizer) == ('proper_adam', 'adam')
    assert config.learner.beta1 == config.learner.beta2 == 0.99
    assert config.learner.step_size == plain.learner.step_size


def test_update_follows_adam_with_the_preset_betas():
    config = load_config('slowly_changing_regression.py', 'proper_adam').learner
    learner = learners.make_learner(config, None)
    g = np.array([0.3, -2.0], np.float32)
    state = learner.optimizer.init({'w': jnp.zeros(2)})
    assert float(state.hyperparams['b1']) == pytest.approx(0.99)
    assert float(state.hyperparams['b2']) == pytest.approx(0.99)
    m = v = 0.0
    for t in (1, 2, 3):
        updates, state = learner.optimizer.update({'w': jnp.asarray(g * t)}, state, {'w': jnp.zeros(2)},
                                                  key=jax.random.PRNGKey(0), grad_fn=None)
        m = 0.99 * m + 0.01 * g * t
        v = 0.99 * v + 0.01 * (g * t) ** 2
        expected = -config.step_size * (m / (1 - 0.99**t)) / (np.sqrt(v / (1 - 0.99**t)) + config.eps)
        np.testing.assert_allclose(updates['w'], expected, rtol=1e-5)


def test_refuses_to_run_as_sgd():
    config = load_config('slowly_changing_regression.py', 'proper_adam').learner
    config.optimizer = 'sgd'
    with pytest.raises(ValueError, match='Adam'):
        learners.make_learner(config, None)


def test_config_variant_runs_through_the_engine(tmp_path):
    config = load_config('slowly_changing_regression.py', 'adam,proper_adam')
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = 2, 2, 2
    config.problem.examples_per_task, config.metrics.probe_size = 200, 32
    metrics = engine.run(config, str(tmp_path), progress=False)
    assert np.all(np.isfinite(metrics['online_mse'])) and np.all(metrics['nonfinite_steps'] == 0)
