"""Hopper and Walker2d on MJX (plasticity_jax/envs/planar_walkers.py).

The default suite only traces them (shapes, no compile: an MJX step takes minutes to compile on a loaded 2-core CPU);
the comparison with MuJoCo's C simulator compiles and is marked slow.
"""

import jax
import jax.numpy as jnp
import ml_collections
import mujoco
import numpy as np
import pytest

from plasticity_jax.envs import make_env
from plasticity_jax.envs.mujoco_locomotion import ASSETS

SIZES = {'hopper': (11, 3, 4, 6), 'walker2d': (17, 6, 4, 9)}   # observation, action, frame skip, nq


@pytest.mark.parametrize('name', sorted(SIZES))
def test_shapes_by_tracing(name):
    """Traced with the Euler integrator, whose step traces in less time than the model's RK4 (the shapes are the
    same; RK4 is traced by tests/envs/test_ant.py's stationary Ant and compiled by the slow test below)."""
    env = make_env(ml_collections.ConfigDict({'name': name, 'integrator': 'euler'}))
    obs_size, action_size, _, _ = SIZES[name]
    assert (env.observation_size, env.action_size, env.max_episode_steps) == (obs_size, action_size, 1000)
    state, obs = jax.eval_shape(env.reset, jax.random.key(0))
    out = jax.eval_shape(env.step, state, jnp.zeros(action_size), jax.random.key(1))
    assert obs.shape == out.observation.shape == out.final_observation.shape == (obs_size,)
    assert out.reward.dtype == jnp.float32 and out.terminated.dtype == out.truncated.dtype == jnp.bool_
    assert set(out.info) == {'friction', 'x_velocity', 'ctrl_cost'}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(SIZES))
def test_first_steps_match_c_mujoco(name):
    """Gym's -v3 reward and observation from MuJoCo's C simulator (float64) for the first steps."""
    _, action_size, frame_skip, _ = SIZES[name]
    env = make_env(ml_collections.ConfigDict({'name': name}))
    state, first_obs = jax.jit(env.reset)(jax.random.key(0))
    actions = jax.random.uniform(jax.random.key(1), (5, action_size), minval=-1.0, maxval=1.0)

    def body(state, inputs):
        out = env.step(state, *inputs)
        return out.state, (out.observation, out.reward, out.info['x_velocity'])
    _, (obs, reward, x_velocity) = jax.jit(lambda s: jax.lax.scan(body, s, (actions, jax.random.split(
        jax.random.key(2), 5))))(state)

    model = mujoco.MjModel.from_xml_path(f'{ASSETS}/{name}.xml')
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = np.asarray(state.data.qpos), np.asarray(state.data.qvel)
    mujoco.mj_forward(model, data)
    np.testing.assert_allclose(first_obs, np.concatenate([data.qpos[1:], np.clip(data.qvel, -10, 10)]), atol=1e-6)
    dt = model.opt.timestep * frame_skip
    for t in range(5):
        action = np.asarray(actions[t], np.float64)
        x_before = data.qpos[0]
        data.ctrl[:] = action
        for _ in range(frame_skip):
            mujoco.mj_step(model, data)
        velocity = (data.qpos[0] - x_before) / dt
        np.testing.assert_allclose(x_velocity[t], velocity, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(reward[t], 1.0 + velocity - 1e-3 * np.sum(action ** 2), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(obs[t], np.concatenate([data.qpos[1:], np.clip(data.qvel, -10, 10)]), atol=1e-3)
