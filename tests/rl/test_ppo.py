"""PPO in the engine: GAE and the clipped objective against numpy, learning on the point mass with several seeds in
one program, a vmapped seed equal to that seed alone, and kill -9 then rerun giving bit-identical metrics."""

import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from plasticity_jax import engine, sweeps
from plasticity_jax.results import load_run
from plasticity_jax.rl import ppo
from tests.conftest import REPO_ROOT, load_config
from tests.test_engine import _finished_checkpoints, assert_same_metrics

# The tests' problem: the point mass with the `fast` PPO settings, 3 seeds, 3 intervals of 2 updates of 512 steps.
CONFIG_ARG = 'fast,point_mass'
FLAGS = {'num_seeds': 3, 'num_tasks': 3, 'tasks_per_chunk': 1, 'rl.updates_per_task': 2}


def small_config(arg=CONFIG_ARG):
    return sweeps.with_values(load_config('pendulum.py', arg), FLAGS)


def numpy_gae(rewards, values, last_value, terminated, truncated, final_values, gamma, lam):
    """The papers' recursion (lop/algos/rl/ppo.py, get_rets_advs) per environment, with the time-limit end either
    terminal (final_values None) or bootstrapped from the value of the observation reached."""
    T, N = rewards.shape
    advantages = np.zeros((T, N))
    for n in range(N):
        following = 0.0
        for t in reversed(range(T)):
            next_value = last_value[n] if t == T - 1 else values[t + 1, n]
            if terminated[t, n]:
                next_value = 0.0
            elif truncated[t, n]:
                next_value = 0.0 if final_values is None else final_values[t, n]
            ended = terminated[t, n] or truncated[t, n]
            delta = rewards[t, n] + gamma * next_value - values[t, n]
            following = delta + gamma * lam * (1 - ended) * following
            advantages[t, n] = following
    return advantages, advantages + values


@pytest.mark.parametrize('bootstrap', [False, True])
def test_gae_matches_the_papers_recursion(bootstrap):
    rng = np.random.default_rng(0)
    T, N = 40, 3
    rewards, values, final_values = (rng.normal(size=(T, N)).astype(np.float32) for _ in range(3))
    last_value = rng.normal(size=N).astype(np.float32)
    terminated = rng.random((T, N)) < 0.08
    truncated = (rng.random((T, N)) < 0.08) & ~terminated
    @jax.jit  # one program, not an eager program per operation
    def advantages_and_targets(rewards, values, last_value, terminated, truncated, final_values):
        following = ppo.following_values(values, last_value, terminated, truncated, final_values)
        return ppo.gae(rewards, values, following, terminated | truncated, 0.99, 0.95)

    advantages, targets = advantages_and_targets(rewards, values, last_value, terminated, truncated,
                                                 final_values if bootstrap else None)
    expected = numpy_gae(rewards, values, last_value, terminated, truncated, final_values if bootstrap else None,
                         0.99, 0.95)
    np.testing.assert_allclose(advantages, expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected[1], rtol=1e-5, atol=1e-5)


def test_advantages_are_normalised_with_the_unbiased_std():
    a = np.random.default_rng(1).normal(2.0, 3.0, size=64).astype(np.float32)
    normalize = jax.jit(ppo.normalize_advantages)
    np.testing.assert_allclose(normalize(a), (a - a.mean()) / a.std(ddof=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(normalize(np.full(8, 3.0, np.float32)), np.zeros(8))


def test_clipped_objective_matches_numpy():
    rng = np.random.default_rng(2)
    n, clip = 256, 0.2
    old_log_prob = rng.normal(size=n).astype(np.float32)
    log_prob = old_log_prob + rng.normal(0.0, 0.3, size=n).astype(np.float32)
    advantages, value, targets = (rng.normal(size=n).astype(np.float32) for _ in range(3))
    terms_and_grad = jax.jit(lambda *args: (ppo.ppo_loss_terms(*args, clip), jax.grad(
        lambda lp: ppo.ppo_loss_terms(lp, *args[1:], clip).policy_loss)(args[0])))
    terms, grad = terms_and_grad(log_prob, old_log_prob, advantages, value, targets)
    ratio = np.exp(log_prob.astype(np.float64) - old_log_prob)
    # torch form of the papers' code: max(-r A, -clip(r) A)
    policy_loss = np.mean(np.maximum(-ratio * advantages, -np.clip(ratio, 1 - clip, 1 + clip) * advantages))
    np.testing.assert_allclose(terms.policy_loss, policy_loss, rtol=1e-5)
    np.testing.assert_allclose(terms.value_loss, np.mean((targets - value) ** 2), rtol=1e-5)
    np.testing.assert_allclose(terms.approx_kl, np.mean(ratio - 1 - np.log(ratio)), rtol=1e-4)
    np.testing.assert_allclose(terms.clip_fraction, np.mean(np.abs(ratio - 1) > clip), rtol=1e-6)
    # The gradient flows through the unclipped side only where it is the smaller objective.
    active = np.where(advantages > 0, ratio < 1 + clip, ratio > 1 - clip)
    np.testing.assert_allclose(grad, np.where(active, -ratio * advantages / n, 0.0), rtol=1e-4, atol=1e-7)


def test_gaussian_log_prob_matches_numpy():
    rng = np.random.default_rng(3)
    action, mean = rng.normal(size=(2, 5, 3)).astype(np.float32)
    log_std = rng.normal(0, 0.3, size=3).astype(np.float32)
    std = np.exp(log_std)
    expected = np.sum(-0.5 * ((action - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(jax.jit(ppo.gaussian_log_prob)(action, mean, log_std), expected, rtol=1e-5)


@pytest.fixture(scope='module')
def whole_run(tmp_path_factory):
    """The tests' problem run uninterrupted through the engine's host loop (one program, every seed)."""
    workdir = tmp_path_factory.mktemp('ppo') / 'whole'
    engine.run(small_config(), str(workdir), progress=False)
    return load_run(str(workdir))


def test_ppo_improves_the_return_of_every_seed(whole_run):
    returns = whole_run.metrics['episode_return']  # (seed, task)
    assert returns.shape == (FLAGS['num_seeds'], FLAGS['num_tasks'])
    assert np.all(whole_run.metrics['episodes'] > 0)
    # A policy that ignores the position scores about -40 per 50-step episode; heading home, about -10.
    assert np.all(returns[:, 0] < -15), returns
    assert np.all(returns[:, -1] > returns[:, 0] + 8), returns
    for network in ('policy', 'value'):
        assert whole_run.metrics[f'{network}_effective_rank'].shape == (FLAGS['num_seeds'], FLAGS['num_tasks'], 2)
        assert np.all(whole_run.metrics[f'{network}_weight_change'] > 0)
    assert np.all(np.isfinite(whole_run.metrics['approx_kl'])) and np.all(whole_run.metrics['nonfinite_steps'] == 0)


def test_spectra_of_an_rl_run_are_refused_before_any_checkpoint_is_read(whole_run, capfd):
    from plasticity_jax import spectra

    with pytest.raises(ValueError, match=r'Hessian spectra \(plasticity_jax.spectra\) are not available for RL runs'):
        spectra.compute_spectra(whole_run.workdir)
    assert 'checkpoint' not in capfd.readouterr().err  # no progress bar before the refusal
    assert not os.path.exists(os.path.join(whole_run.workdir, spectra.SPECTRA_FILE))


def test_a_vmapped_seed_equals_that_seed_run_alone(whole_run):
    config = small_config()
    train = engine.make_train(config)
    seed = 2
    state = train.init(engine.seed_keys(config)[seed])
    _, alone = jax.jit(train.run_tasks, static_argnums=3)(state, train.data, jnp.int32(0), FLAGS['num_tasks'])
    alone = jax.device_get(alone)
    # Batched and unbatched matrix products round differently on a CPU, and a policy's rollouts amplify the
    # difference: equal up to float rounding, while another seed differs in every metric.
    np.testing.assert_array_equal(alone['episodes'], whole_run.metrics['episodes'][seed])
    for name, values in alone.items():
        # Approximate and feature ranks count singular values past a threshold: a rounding difference moves them by 1.
        atol = 1.0 if name.endswith(('approximate_rank', 'feature_rank')) else 1e-4
        np.testing.assert_allclose(values, whole_run.metrics[name][seed], rtol=1e-2, atol=atol, err_msg=name)
    assert not np.allclose(alone['episode_return'], whole_run.metrics['episode_return'][seed - 1], rtol=1e-2)


def test_each_point_of_a_step_size_sweep_equals_that_point_run_alone(whole_run, tmp_path):
    """The step size as the runs axis (points x seeds in one program): each point's metrics equal the point run
    alone, over the first interval; the first point is the tests' problem itself (`whole_run`)."""
    step_sizes = (small_config().learner.step_size, 3e-4)
    config, alone_config = small_config(), small_config()
    config.num_tasks = alone_config.num_tasks = 1
    config.sweep.learner = {'step_size': step_sizes}
    alone_config.learner.step_size = step_sizes[1]
    engine.run(config, str(tmp_path / 'sweep'), progress=False)
    engine.run(alone_config, str(tmp_path / 'alone'), progress=False)
    swept = load_run(str(tmp_path / 'sweep'))
    np.testing.assert_array_equal(swept.sweep['learner.step_size'], step_sizes)
    first_point_alone = {name: values[:, :1] for name, values in whole_run.metrics.items()}
    for point, metrics in enumerate((first_point_alone, load_run(str(tmp_path / 'alone')).metrics)):
        assert_same_metrics(metrics, {name: values[point] for name, values in swept.metrics.items()})
    assert not np.allclose(swept.metrics['policy_loss'][0], swept.metrics['policy_loss'][1])


def test_a_run_resumed_from_its_checkpoint_equals_the_uninterrupted_run(whole_run, tmp_path):
    """The RL run state (environments mid-episode, rollout keys, optimizer) survives a checkpoint: the uninterrupted
    run's workdir cut back to its checkpoint after the first interval (later checkpoints and metrics.npz deleted, as
    if the run had been killed there), run again to every interval, equals the uninterrupted run. (kill -9 in the
    middle of a command: the slow test below; the host loop it exercises is the supervised runs' one, killed in the
    default suite by tests/test_faults.py.)"""
    workdir = tmp_path / 'resumed'
    shutil.copytree(whole_run.workdir, workdir)
    checkpoints = workdir / engine.CHECKPOINT_DIR
    assert 1 in _finished_checkpoints(workdir)
    for step in _finished_checkpoints(workdir):
        if step > 1:
            shutil.rmtree(checkpoints / str(step))
    (workdir / engine.METRICS_FILE).unlink()
    engine.run(small_config(), str(workdir), progress=False)
    assert _finished_checkpoints(workdir)[-1] == FLAGS['num_tasks']
    assert_same_metrics(whole_run.metrics, load_run(str(workdir)).metrics)


@pytest.mark.slow
def test_killed_run_resumes_bit_identically(whole_run, tmp_path):
    """kill -9 after the first interval's checkpoint, start the same command again: the metrics equal the
    uninterrupted run's."""
    command = [sys.executable, '-m', 'plasticity_jax.main', f'--config=configs/pendulum.py:{CONFIG_ARG}',
               f'--workdir={tmp_path}'] + [f'--config.{name}={value}' for name, value in FLAGS.items()]
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900  # compiling takes minutes on a loaded 2-core machine
    while max(_finished_checkpoints(tmp_path), default=0) == 0 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_at_kill = max(_finished_checkpoints(tmp_path), default=0)
    assert 0 < done_at_kill < FLAGS['num_tasks'], 'the kill should land in the middle of the run'
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    assert_same_metrics(whole_run.metrics, load_run(str(tmp_path)).metrics)


def test_the_friction_schedule_is_in_the_checkpointed_run_state(tmp_path, monkeypatch):
    """Slippery Ant's friction, its key and the schedule's counters are leaves of the run state that checkpoints
    hold and are restored exactly (cheap: the state's structure is traced, MJX's step is never compiled, and the
    environment is tests/envs/test_ant.py's, whose jitted reset and step are traced once per test run; the run
    itself, killed and resumed, is the slow test of tests/rl/test_rl_configs.py)."""
    from plasticity_jax import envs
    from plasticity_jax import workdir as workdir_lib
    from tests.envs.shared_slippery_ant import ENV_CONFIG, slippery_ant

    config = load_config('slippery_ant.py', 'smoke')
    config.env = ENV_CONFIG
    build, ant = envs.make_env, slippery_ant()  # built before the patch (its first build calls envs.make_env)
    monkeypatch.setattr(envs, 'make_env', lambda c: ant if c.to_dict() == ENV_CONFIG else build(c))
    train = engine.make_train(config)
    assert train.problem.env is slippery_ant()
    shapes = jax.eval_shape(jax.vmap(train.init), engine.seed_keys(config))
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(0)
    state = jax.tree.unflatten(treedef, [rng.integers(0, 1000, leaf.shape).astype(leaf.dtype) for leaf in leaves])
    directory = str(tmp_path / 'checkpoints')
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True)) as manager:
        manager.save(1, args=workdir_lib.save_args(state, {}))
    restored = workdir_lib.restore_state(directory, 1, shapes)
    packing = ppo.env_state_packing(train.problem.env)
    schedule = jax.jit(lambda s: jax.vmap(packing.unpack)(s.problem_state.env_state))
    written, read = schedule(state), schedule(restored)
    for field in ('friction', 'friction_key', 'friction_changes', 'steps_since_change', 'episode_step'):
        assert np.ptp(getattr(written, field)) > 0, field  # distinct values per seed were written
        np.testing.assert_array_equal(getattr(read, field), getattr(written, field), err_msg=field)
