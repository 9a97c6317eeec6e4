"""The RL configs: the papers' settings per variant, clear errors for inconsistent fields, and (slow) the Slippery
Ant smoke run through the engine with a friction change in every seed."""

import jax
import numpy as np
import pytest

from plasticity_jax import engine
from plasticity_jax.results import load_run
from tests.conftest import load_config


@pytest.mark.parametrize('name', ['ant.py', 'slippery_ant.py'])
def test_the_papers_settings_are_the_defaults(name):
    config = load_config(name)
    assert (config.rl.steps_per_update, config.rl.num_envs, config.rl.epochs, config.rl.minibatch_size) == \
        (2048, 1, 10, 128)
    assert (config.rl.gamma, config.rl.gae_lambda, config.rl.clip, config.rl.value_coefficient) == \
        (0.99, 0.95, 0.2, 1.0)
    assert config.rl.time_limit == 'terminal'
    assert (config.model.width, config.model.depth) == (256, 2)
    assert (config.learner.name, config.learner.optimizer, config.learner.step_size, config.learner.eps,
            config.learner.beta1, config.learner.beta2) == ('backprop', 'adam', 1e-4, 1e-8, 0.9, 0.999)
    steps = config.num_tasks * config.rl.updates_per_task * config.rl.steps_per_update
    assert steps == pytest.approx(50e6 if name == 'ant.py' else 20e6, rel=0.01)
    cbp = load_config(name, 'cbp').learner
    assert (cbp.name, cbp.beta1, cbp.beta2, cbp.weight_decay, cbp.replacement_rate, cbp.maturity_threshold,
            cbp.utility, cbp.decay_rate, cbp.reset_optimizer_state) == \
        ('cbp', 0.99, 0.99, 1e-4, 1e-4, 10_000, 'contribution', 0.99, False)
    l2 = load_config(name, 'l2').learner
    assert (l2.name, l2.beta1, l2.beta2, l2.weight_decay) == ('l2', 0.99, 0.99, 1e-3)
    assert load_config(name, 'proper_adam').learner.beta1 == 0.99
    redo = load_config(name, 'redo').learner
    assert (redo.name, redo.dormancy_threshold, redo.recycle_period) == ('redo', 0.1, 100)


def test_inconsistent_fields_are_refused_by_name():
    config = load_config('pendulum.py', 'point_mass')
    config.rl.minibatch_size = 100
    with pytest.raises(ValueError, match='rl.minibatch_size'):
        engine.make_train(config)
    config = load_config('pendulum.py', 'point_mass')
    config.rl.time_limit = 'sometimes'
    with pytest.raises(ValueError, match='rl.time_limit'):
        engine.make_train(config)
    train = engine.make_train(load_config('pendulum.py', 'point_mass,l2_er'))
    with pytest.raises(ValueError, match='auxiliary batch'):
        jax.eval_shape(train.init, jax.random.PRNGKey(0))


@pytest.mark.slow
def test_slippery_ant_smoke_changes_the_friction_in_every_seed(tmp_path):
    """configs/slippery_ant.py:cbp,smoke through the engine (a few CPU minutes, mostly compiling MJX)."""
    engine.run(load_config('slippery_ant.py', 'cbp,smoke'), str(tmp_path), progress=False)
    metrics = load_run(str(tmp_path)).metrics
    friction = metrics['friction']  # (seed, task), in force at each interval's end
    assert np.all((friction >= 0.02) & (friction <= 2.0))
    assert np.all(np.ptp(friction, axis=1) > 0), friction
    assert not np.allclose(friction[0], friction[1])
    assert np.all(metrics['episodes'] > 0) and np.all(np.isfinite(metrics['episode_return']))
    assert np.all(metrics['nonfinite_steps'] == 0)
