"""The RL configs: the papers' settings per variant, clear errors for inconsistent fields, and (slow) the Slippery
Ant smoke run through the engine with a friction change in every seed, killed (-9) and rerun bit-identically."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from plasticity_jax import config as config_lib
from plasticity_jax import engine, validation
from plasticity_jax.results import load_run
from tests.conftest import REPO_ROOT, load_config
from tests.test_engine import _finished_checkpoints, assert_same_metrics


@pytest.mark.parametrize('name', ['ant.py', 'slippery_ant.py'])
def test_the_papers_settings_are_the_defaults(name):
    config = load_config(name)
    assert (config.rl.steps_per_update, config.rl.num_envs, config.rl.epochs, config.rl.minibatch_size) == \
        (2048, 1, 10, 128)
    assert (config.rl.gamma, config.rl.gae_lambda, config.rl.clip, config.rl.value_coefficient) == \
        (0.99, 0.95, 0.2, 1.0)
    assert config.rl.time_limit == 'terminal'
    assert config.metrics.dead_max_active_share == 0.01  # lop/rl/plots/fig4b.py: active on <= 1% of the steps
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
    assert (redo.name, redo.dormancy_threshold, redo.recycle_period, redo.weight_decay) == ('redo', 0.1, 100, 1e-4)


def test_inconsistent_fields_are_refused_by_name():
    config = load_config('pendulum.py', 'point_mass')
    config.rl.minibatch_size = 100
    with pytest.raises(ValueError, match='rl.minibatch_size'):
        engine.make_train(config)
    config = load_config('pendulum.py', 'point_mass')
    config.rl.time_limit = 'sometimes'
    with pytest.raises(ValueError, match='rl.time_limit'):
        engine.make_train(config)
    # RL's l2_er variant computes its rank term on the PPO minibatch; a rank batch of its own is refused.
    assert load_config('pendulum.py', 'l2_er').learner.rank_batch_size == 0


@pytest.mark.parametrize('variant, field, value, message', [
    ('point_mass,l2_er', 'learner.rank_batch_size', 100, 'RL runs draw no auxiliary batch'),
    ('point_mass', 'reset_at_task_start', 'head', "RL runs need reset_at_task_start = 'none'"),
    ('point_mass', 'curvature.every_tasks', 1, 'in-run curvature is not available for RL runs'),
    ('point_mass', 'step_unroll', 2, 'RL runs need step_unroll = 1'),
    ('point_mass', 'rl.gamma', 1.5, 'config.rl.gamma = 1.5 must be a finite number >= 0 and <= 1'),
    ('point_mass', 'env.name', 'cheetah', "config.env.name = 'cheetah' must be one of"),
])
def test_what_rl_runs_cannot_do_is_refused_before_anything_is_built(variant, field, value, message):
    """By `validation` (the CLI's one line, before the workdir is touched; these came as tracebacks from PPO's
    builder, L2-ER's rank batch only when the run state was first traced)."""
    config = load_config('pendulum.py', variant)
    parent, leaf = config_lib.field_parent(config, field)
    parent[leaf] = value
    with pytest.raises(validation.ConfigError, match=re.escape(message)) as info:
        validation.check_config(config)
    assert field in str(info.value)


def test_the_mujoco_configs_take_the_solver_and_integrator_fields():
    """`--config.env.solver_iterations=4` etc. (docs/rl.md): fields of every MuJoCo config, None by default."""
    for name in ('ant.py', 'slippery_ant.py', 'hopper.py', 'walker2d.py'):
        env = load_config(name).env
        assert (env.solver_iterations, env.ls_iterations, env.integrator) == (None, None, None), name
    config = load_config('slippery_ant.py')
    config.env.solver_iterations, config.env.ls_iterations, config.env.integrator = 4, 8, 'euler'
    validation.check_config(config)
    config.env.integrator = 'rk5'
    with pytest.raises(validation.ConfigError, match=r"config.env.integrator = 'rk5' must be None or one of"):
        validation.check_config(config)


SMOKE = 'cbp,smoke'


@pytest.fixture(scope='module')
def slippery_ant_smoke(tmp_path_factory):
    """configs/slippery_ant.py:cbp,smoke run uninterrupted through the engine (a few CPU minutes, mostly compiling
    MJX); the slow tests' reference."""
    workdir = tmp_path_factory.mktemp('slippery_ant_smoke')
    engine.run(load_config('slippery_ant.py', SMOKE), str(workdir), progress=False)
    return load_run(str(workdir)).metrics


@pytest.mark.slow
def test_slippery_ant_smoke_changes_the_friction_in_every_seed(slippery_ant_smoke):
    metrics = slippery_ant_smoke
    friction = metrics['friction']  # (seed, task), in force at each interval's end
    assert np.all((friction >= 0.02) & (friction <= 2.0))
    assert np.all(np.ptp(friction, axis=1) > 0), friction
    assert not np.allclose(friction[0], friction[1])
    assert np.all(metrics['episodes'] > 0) and np.all(np.isfinite(metrics['episode_return']))
    assert np.all(metrics['nonfinite_steps'] == 0)


@pytest.mark.slow
def test_slippery_ant_smoke_killed_and_rerun_is_bit_identical(slippery_ant_smoke, tmp_path):
    """kill -9 after the first interval's checkpoint, the same command again: the metrics, the frictions in force
    included, equal the uninterrupted run's, and the friction keeps changing after the resume."""
    command = [sys.executable, '-m', 'plasticity_jax.main', f'--config=configs/slippery_ant.py:{SMOKE}',
               f'--workdir={tmp_path}']
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 3600  # compiling MJX's Ant takes minutes on a loaded 2-core machine
    while max(_finished_checkpoints(tmp_path), default=0) == 0 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_at_kill = max(_finished_checkpoints(tmp_path), default=0)
    assert 0 < done_at_kill < slippery_ant_smoke['friction'].shape[1], 'the kill should land in the middle of the run'
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    resumed = load_run(str(tmp_path)).metrics
    assert_same_metrics(slippery_ant_smoke, resumed)
    assert np.all(np.ptp(resumed['friction'][:, done_at_kill - 1:], axis=1) > 0)  # changes after the resume
