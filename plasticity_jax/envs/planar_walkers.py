"""Hopper and Walker2d (Gym's Hopper-v3 and Walker2d-v3, Gym 0.23.1 as the papers' code pins it) on MJX.

The papers' code runs PPO on both (`lop/rl/cfg/hopper/*.yml`, `lop/rl/cfg/walker/*.yml`). Both robots move in the
x-z plane (root joints: x slide, z slide, y hinge) and share Gym's -v3 definitions:

- frame skip 4 of the model's 0.002 s RK4 steps (dt = 0.008 s); actuator control range [-1, 1];
- reward = healthy_reward (1) + (qpos[0] after - qpos[0] before) / dt - 1e-3 * sum(action^2) (raw action);
- observation: qpos[1:] then clip(qvel, -10, 10) (Hopper 11 entries, Walker2d 17);
- reset: qpos0 + U(-5e-3, 5e-3) on every qpos entry, qvel = U(-5e-3, 5e-3);
- healthy (with z = qpos[1], angle = qpos[2], strict inequalities as in Gym):
  Hopper: every entry of (qpos, qvel)[2:] in (-100, 100), z > 0.7, angle in (-0.2, 0.2);
  Walker2d: 0.8 < z < 2.0, angle in (-1, 1).

Model files: Gym 0.23.1's hopper.xml / walker2d.xml use global coordinates, which MuJoCo >= 2.3.3 no longer loads;
`assets/` holds Gymnasium's conversions of the same models to local coordinates (see the files' headers).
Differences from Gym: MJX's float32 physics and its constraint solver (see `envs.ant`), and JAX keys for the reset
noise. info['friction'] is NaN: these models' geoms have different frictions and none is varied.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from plasticity_jax.envs.mujoco_locomotion import Robot, make_locomotion_env

CTRL_COST_WEIGHT = 1e-3
HEALTHY_REWARD = 1.0
RESET_NOISE_SCALE = 5e-3


def _reset_noise(key, qpos0, nv):
    pos_key, vel_key = jax.random.split(key)
    qpos = qpos0 + jax.random.uniform(pos_key, qpos0.shape, jnp.float32, -RESET_NOISE_SCALE, RESET_NOISE_SCALE)
    qvel = jax.random.uniform(vel_key, (nv,), jnp.float32, -RESET_NOISE_SCALE, RESET_NOISE_SCALE)
    return qpos, qvel


def _observe(data):
    return jnp.concatenate([data.qpos[1:], jnp.clip(data.qvel, -10.0, 10.0)])


def _hopper_healthy(data):
    z, angle = data.qpos[1], data.qpos[2]
    state = jnp.concatenate([data.qpos, data.qvel])[2:]
    return jnp.all((state > -100.0) & (state < 100.0)) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)


def _walker2d_healthy(data):
    z, angle = data.qpos[1], data.qpos[2]
    return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


def _planar_robot(name: str, nq: int, healthy) -> Robot:
    def reward(before, after, action, dt):
        x_velocity = (after.qpos[0] - before.qpos[0]) / dt
        ctrl_cost = CTRL_COST_WEIGHT * jnp.sum(jnp.square(action))
        return HEALTHY_REWARD + x_velocity - ctrl_cost, healthy(after), {'x_velocity': x_velocity,
                                                                          'ctrl_cost': ctrl_cost}

    return Robot(name=name, xml_file=f'{name}.xml', frame_skip=4, reset_noise=_reset_noise,
                 observation_size=2 * nq - 1, observe=_observe, reward=reward)


def make_hopper(max_episode_steps: int = 1000, **solver):
    """Gym's Hopper-v3 on MJX. `solver`: see `make_locomotion_env`."""
    return make_locomotion_env(_planar_robot('hopper', 6, _hopper_healthy), max_episode_steps, **solver)


def make_walker2d(max_episode_steps: int = 1000, **solver):
    """Gym's Walker2d-v3 on MJX. `solver`: see `make_locomotion_env`."""
    return make_locomotion_env(_planar_robot('walker2d', 9, _walker2d_healthy), max_episode_steps, **solver)
