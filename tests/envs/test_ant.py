"""Ant and Slippery Ant on MJX (plasticity_jax/envs/ant.py, envs/mujoco_locomotion.py).

One compiled program serves every test of the rollout: a jitted vmap over 3 Slippery Ant environments (the one of
tests/envs/shared_slippery_ant.py, whose traced `reset` and `step` tests/rl/test_ppo.py reuses) of a scan of `STEPS`
steps, called twice (the environments in two orders, picked inside the program; the inputs are made by one
more small program, not by eager operations on the ~100 leaves of MJX's state). MJX's step takes a minute or more
to compile on a small CPU, so nothing else here compiles it; the other environments are checked by tracing
(`jax.eval_shape`). The rollout uses the Euler integrator (`integrator='euler'`, also in the C MuJoCo reference):
everything these tests check is the environment's code around the physics, and RK4's three extra evaluations of the
dynamics nearly double the compile (20 instead of 35 CPU-s here). The papers' RK4 Ant runs in the slow Slippery Ant
tests of tests/rl/test_rl_configs.py.
"""

import jax
import jax.numpy as jnp
import ml_collections
import mujoco
import numpy as np
import pytest

from plasticity_jax.envs import ant, make_env
from plasticity_jax.envs.mujoco_locomotion import ASSETS, log_uniform
from tests.envs.shared_slippery_ant import CHANGE_INTERVAL, MAX_EPISODE_STEPS, slippery_ant

STEPS = 20  # past the first friction change (the episode end at step 16, CHANGE_INTERVAL 12)
FRICTIONS = (0.05, 1.5)   # forced on environments 0 and 1, which start from the same state with the same actions


@pytest.fixture(scope='module')
def env():
    """3 Slippery Ant environments with the Euler integrator, shared with tests/rl/test_ppo.py (its jitted
    `reset` and `step` are traced once per test run)."""
    return slippery_ant()


def _rollout(env):
    """The shared program: the environments `order` of the inputs under vmap, each a scan of `STEPS` steps."""
    def run(state, actions, keys):
        def body(state, inputs):
            out = env.step(state, *inputs)
            return out.state, (out.observation, out.final_observation, out.reward, out.terminated, out.truncated,
                               out.info, out.state.episode_step)
        return jax.lax.scan(body, state, (actions, keys))

    def rollout(states, actions, keys, order):
        return jax.vmap(run)(jax.tree_util.tree_map(lambda x: x[order], states), actions[order], keys[order])
    return jax.jit(rollout)


@pytest.fixture(scope='module')
def runs(env):
    """Inputs and outputs of the shared program, for the environment orders (0, 1, 2) and (1, 0, 2); environments 0
    and 1 start from the same state with the same actions and keys, at the frictions `FRICTIONS`. The two starts come
    from the jitted `reset` of one environment, called twice (a vmapped reset compiles in twice the CPU time)."""
    reset_keys = jax.random.split(jax.random.PRNGKey(3), 2)

    @jax.jit
    def inputs(starts):
        order = jnp.asarray([0, 0, 1])
        (states, first_obs) = jax.tree_util.tree_map(lambda *x: jnp.stack(x)[order], *starts)
        states = states._replace(friction=states.friction.at[:2].set(jnp.asarray(FRICTIONS)))
        actions = 0.5 * jax.random.uniform(jax.random.PRNGKey(4), (2, STEPS, env.action_size), minval=-1.0,
                                           maxval=1.0)
        keys = jax.random.split(jax.random.PRNGKey(5), 2 * STEPS).reshape(2, STEPS, -1)
        return states, first_obs, actions[order], keys[order]

    states, first_obs, actions, keys = inputs([env.reset(key) for key in reset_keys])
    rollout = _rollout(env)
    out = rollout(states, actions, keys, jnp.arange(3))
    out_swapped = rollout(states, actions, keys, jnp.asarray([1, 0, 2]))
    return {'states': states, 'first_obs': first_obs, 'actions': actions, 'keys': keys,
            'out': jax.device_get(out), 'out_swapped': jax.device_get(out_swapped), 'reset_keys': reset_keys,
            'reset': env.reset}


def test_shapes_and_dtypes(env, runs):
    assert (env.observation_size, env.action_size, env.max_episode_steps) == (111, 8, MAX_EPISODE_STEPS)
    np.testing.assert_array_equal(env.action_low, -np.ones(8, np.float32))
    np.testing.assert_array_equal(env.action_high, np.ones(8, np.float32))
    _, (obs, final_obs, reward, terminated, truncated, info, _) = runs['out']
    assert obs.shape == final_obs.shape == (3, STEPS, 111) and obs.dtype == np.float32
    assert reward.shape == (3, STEPS) and reward.dtype == np.float32
    assert terminated.dtype == truncated.dtype == np.bool_
    assert set(info) == {'friction', 'x_velocity', 'ctrl_cost'}
    assert all(v.dtype == np.float32 and v.shape == (3, STEPS) for v in info.values())
    np.testing.assert_array_equal(obs[..., 27:], 0.0)   # Ant-v3's contact forces, zero as under mujoco-py 2.x


def test_stationary_ant_without_contact_forces_traces():
    """Stationary Ant and the 27-entry observation, by tracing only (no compile), with the model's RK4 integrator
    (the one environment of the default suite traced with it)."""
    obs_size = 27
    env = make_env(ml_collections.ConfigDict({'name': 'ant', 'pad_contact_forces': False}))
    state, obs = jax.eval_shape(env.reset, jax.random.key(0))
    out = jax.eval_shape(env.step, state, jnp.zeros(8), jax.random.key(1))
    assert env.observation_size == obs_size and obs.shape == out.observation.shape == (obs_size,)
    assert env.max_episode_steps == 1000 and set(out.info) == {'friction', 'x_velocity', 'ctrl_cost'}


def test_reward_and_observation_match_c_mujoco(runs):
    """The first steps (before the legs touch the floor) against MuJoCo's C simulator in float64 with Gym's
    Ant-v3 reward; after contact MJX's constraint solver and float32 make chaotic trajectories drift apart."""
    model = mujoco.MjModel.from_xml_path(f'{ASSETS}/ant.xml')
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER  # as the rollout's environment
    model.geom_friction[:, 0] = FRICTIONS[0]
    data = mujoco.MjData(model)
    # Gym's start: the drawn qpos (quaternion unnormalised) and qvel, which the first observation holds.
    first_obs = np.asarray(runs['first_obs'][0], np.float64)
    data.qpos[:2] = np.asarray(runs['states'].data.qpos[0, :2])
    data.qpos[2:], data.qvel[:] = first_obs[:13], first_obs[13:27]
    mujoco.mj_forward(model, data)
    np.testing.assert_allclose(data.qpos[3:7] / np.linalg.norm(data.qpos[3:7]), runs['states'].data.qpos[0, 3:7],
                               atol=1e-6)
    _, (obs, _, reward, terminated, truncated, info, _) = runs['out']
    for t in range(3):
        action = np.asarray(runs['actions'][0, t], np.float64)
        x_before = data.xpos[1, 0]
        data.ctrl[:] = action      # MuJoCo clamps ctrl to the control range, as in Gym
        for _ in range(5):
            mujoco.mj_step(model, data)
        x_velocity = (data.xpos[1, 0] - x_before) / 0.05
        expected = 1.0 + x_velocity - 0.5 * np.sum(action ** 2)
        assert not (terminated[0, t] or truncated[0, t])
        np.testing.assert_allclose(info['x_velocity'][0, t], x_velocity, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(info['ctrl_cost'][0, t], 0.5 * np.sum(action ** 2), rtol=1e-5)
        np.testing.assert_allclose(reward[0, t], expected, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(obs[0, t, :27], np.concatenate([data.qpos[2:], data.qvel]), atol=1e-3)


def test_friction_is_per_environment_under_vmap(runs):
    """Two frictions in one batch: each environment equals itself at another batch position, and the frictions give
    different trajectories from the same start and actions."""
    _, out = runs['out']
    _, swapped = runs['out_swapped']
    for a, b in ((0, 1), (1, 0), (2, 2)):
        for x, y in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(swapped)):
            np.testing.assert_array_equal(x[a], y[b])
    obs, friction = out[0], out[5]['friction']
    np.testing.assert_allclose(friction[:2, 0], FRICTIONS)
    assert np.abs(obs[0] - obs[1]).max() > 1e-2


_draw_friction = jax.jit(lambda key, index: log_uniform(jax.random.fold_in(key, index), 0.02, 2.0))


def _replay_schedule(done, friction_key, first_friction):
    """The friction each step should run with: a change at the first episode end after more than CHANGE_INTERVAL
    steps since the last change, the k-th friction drawn from fold_in(friction_key, k)."""
    frictions, changes, since = [], 0, 0
    current = first_friction
    for t in range(len(done)):
        frictions.append(current)
        since += 1
        if done[t] and since > CHANGE_INTERVAL:
            changes, since = changes + 1, 0
            current = float(_draw_friction(friction_key, changes))
    return np.asarray(frictions, np.float32), changes


def test_friction_schedule_changes_at_episode_ends_after_the_interval(env, runs):
    _, (_, _, _, terminated, truncated, info, _) = runs['out']
    done = terminated | truncated
    states = runs['states']
    for i in range(3):
        first = float(states.friction[i])
        expected, changes = _replay_schedule(done[i], states.friction_key[i], first)
        assert changes >= 1
        np.testing.assert_allclose(info['friction'][i], expected, rtol=1e-6)
        assert np.all((info['friction'][i] >= 0.02) & (info['friction'][i] <= 2.0))
    # The first friction is drawn too, deterministically from the reset key.
    again, _ = runs['reset'](runs['reset_keys'][1])
    assert float(again.friction) == first
    np.testing.assert_allclose(first, _draw_friction(again.friction_key, 0))


def test_auto_reset_and_time_limit(runs):
    _, (obs, final_obs, _, terminated, truncated, _, episode_step) = runs['out']
    done = terminated | truncated
    assert truncated.any() and not (terminated & truncated).any()
    qpos0 = jnp.asarray(mujoco.MjModel.from_xml_path(f'{ASSETS}/ant.xml').qpos0, jnp.float32)
    reset_noise = jax.jit(ant._reset_noise, static_argnums=2)
    for i in range(3):
        length = 0
        for t in range(STEPS):
            length += 1
            assert truncated[i, t] == (length == MAX_EPISODE_STEPS and not terminated[i, t])
            if done[i, t]:
                qpos, qvel = reset_noise(runs['keys'][i, t], qpos0, 14)
                np.testing.assert_allclose(obs[i, t, :27], np.concatenate([qpos[2:], qvel]), atol=1e-6)
                assert episode_step[i, t] == 0
                length = 0
            else:
                np.testing.assert_array_equal(obs[i, t], final_obs[i, t])
                assert episode_step[i, t] == length


def test_make_env_rejects_unknown_names_and_bad_options():
    with pytest.raises(ValueError, match='unknown env.name'):
        make_env(ml_collections.ConfigDict({'name': 'antt'}))
    with pytest.raises(ValueError, match='friction_range'):
        make_env(ml_collections.ConfigDict({'name': 'slippery_ant', 'friction_range': (0.0, 2.0)}))
    with pytest.raises(ValueError, match='solver_iterations'):
        make_env(ml_collections.ConfigDict({'name': 'ant', 'solver_iterations': 0}))
    with pytest.raises(ValueError, match='integrator'):
        make_env(ml_collections.ConfigDict({'name': 'ant', 'integrator': 'rk5'}))
