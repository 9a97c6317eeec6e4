"""Pendulum-v1 (Gymnasium's classic-control pendulum swing-up) in pure JAX: the cheap environment of the RL tests.

Dynamics, reward and episode length are Gymnasium's `PendulumEnv` (g = 10, m = l = 1, dt = 0.05, max speed 8, max
torque 2): theta'' = 3 g / (2 l) sin(theta) + 3 / (m l^2) u, semi-implicit Euler, reward
-(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2) with the clipped torque u (as Gymnasium computes it),
observation (cos theta, sin theta, theta_dot), start theta ~ U(-pi, pi), theta_dot ~ U(-1, 1), 200 steps per
episode and never a terminal state (every episode ends by the time limit). A random policy scores about -1200 per
episode; a good one about -150.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.envs.base import Environment, EnvStep

GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
DT = 0.05
MAX_SPEED = 8.0
MAX_TORQUE = 2.0


class PendulumState(NamedTuple):
    theta: jax.Array
    theta_dot: jax.Array
    steps: jax.Array  # int32: steps taken in the current episode


def _observation(state: PendulumState) -> jax.Array:
    return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]).astype(jnp.float32)


def _angle_normalize(x: jax.Array) -> jax.Array:
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


def make_pendulum(max_episode_steps: int = 200) -> Environment:
    def reset(key):
        high = jnp.array([jnp.pi, 1.0])
        theta, theta_dot = jax.random.uniform(key, (2,), minval=-high, maxval=high)
        state = PendulumState(theta=theta, theta_dot=theta_dot, steps=jnp.zeros((), jnp.int32))
        return state, _observation(state)

    def step(state: PendulumState, action: jax.Array, key: jax.Array) -> EnvStep:
        u = jnp.clip(action[0], -MAX_TORQUE, MAX_TORQUE)
        cost = _angle_normalize(state.theta) ** 2 + 0.1 * state.theta_dot ** 2 + 0.001 * u ** 2
        theta_dot = state.theta_dot + (3 * GRAVITY / (2 * LENGTH) * jnp.sin(state.theta)
                                       + 3.0 / (MASS * LENGTH ** 2) * u) * DT
        theta_dot = jnp.clip(theta_dot, -MAX_SPEED, MAX_SPEED)
        reached = PendulumState(theta=state.theta + theta_dot * DT, theta_dot=theta_dot, steps=state.steps + 1)
        truncated = reached.steps >= max_episode_steps
        fresh_state, fresh_observation = reset(key)
        next_state = jax.tree.map(lambda new, old: jnp.where(truncated, new, old), fresh_state, reached)
        final_observation = _observation(reached)
        return EnvStep(state=next_state, observation=jnp.where(truncated, fresh_observation, final_observation),
                       reward=(-cost).astype(jnp.float32), terminated=jnp.zeros((), bool), truncated=truncated,
                       final_observation=final_observation, info={})

    return Environment(name='pendulum', observation_size=3, action_size=1,
                       action_low=np.array([-MAX_TORQUE], np.float32), action_high=np.array([MAX_TORQUE], np.float32),
                       max_episode_steps=max_episode_steps, reset=reset, step=step)
