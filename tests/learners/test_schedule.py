import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plasticity_jax import learners
from plasticity_jax.config import base_config
from plasticity_jax.learners.schedule import with_task_schedule


@pytest.mark.parametrize('progress, scale', [(0.0, 1.0), (0.299, 1.0), (0.3, 0.2), (0.7, 0.04), (0.8, 0.008),
                                             (0.99, 0.008)])
def test_updates_are_scaled_by_the_milestones_passed(progress, scale):
    transform = with_task_schedule(optax.with_extra_args_support(optax.identity()), (0.3, 0.6, 0.8), 0.2)
    updates = {'w': jnp.array([1.0, -2.0])}
    scaled, _ = transform.update(updates, transform.init(updates), task_progress=jnp.float32(progress))
    np.testing.assert_allclose(scaled['w'], scale * np.array([1.0, -2.0]), rtol=1e-6)


def test_sgd_with_milestones_steps_like_a_multistep_schedule_restarted_every_task():
    config = base_config().learner
    config.step_size, config.step_size_milestones, config.step_size_decay = 0.1, (0.5,), 0.2
    optimizer = learners.make_learner(config, init_params=None).optimizer
    params = {'w': jnp.zeros(())}
    state = optimizer.init(params)
    steps = []
    for progress in (0.0, 0.25, 0.5, 0.75, 0.0):  # four steps of one task, then the next task's first
        update, state = optimizer.update({'w': jnp.ones(())}, state, params, key=None, grad_fn=None,
                                         task_progress=jnp.float32(progress))
        steps.append(float(update['w']))
    np.testing.assert_allclose(steps, [-0.1, -0.1, -0.02, -0.02, -0.1], rtol=1e-6)

