"""A point mass that must reach the origin of the plane: the tests' environment, which PPO's Gaussian policy learns
within a few thousand steps.

The position p starts uniform in [-1, 1]^2; the action a in R^2 is clipped to [-1, 1]^2 and moves the mass by
0.1 * clip(a), p staying in [-2, 2]^2; the reward is -||p'|| - 0.01 ||a||^2 (the control cost on the raw action, as
MuJoCo's Ant). Episodes end by the time limit only (50 steps by default). A policy that ignores the position scores
about -40 per episode, one that heads for the origin about -10.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.envs.base import Environment, EnvStep

STEP = 0.1
BOUND = 2.0
CONTROL_COST = 0.01


class PointMassState(NamedTuple):
    position: jax.Array  # (2,)
    steps: jax.Array  # int32: steps taken in the current episode


def make_point_mass(max_episode_steps: int = 50) -> Environment:
    def reset(key):
        position = jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0)
        return PointMassState(position=position, steps=jnp.zeros((), jnp.int32)), position

    def step(state: PointMassState, action: jax.Array, key: jax.Array) -> EnvStep:
        position = jnp.clip(state.position + STEP * jnp.clip(action, -1.0, 1.0), -BOUND, BOUND)
        reward = -jnp.linalg.norm(position) - CONTROL_COST * jnp.sum(action ** 2)
        steps = state.steps + 1
        truncated = steps >= max_episode_steps
        fresh_state, fresh_observation = reset(key)
        reached = PointMassState(position=position, steps=steps)
        next_state = jax.tree.map(lambda new, old: jnp.where(truncated, new, old), fresh_state, reached)
        return EnvStep(state=next_state, observation=jnp.where(truncated, fresh_observation, position),
                       reward=reward.astype(jnp.float32), terminated=jnp.zeros((), bool), truncated=truncated,
                       final_observation=position, info={})

    return Environment(name='point_mass', observation_size=2, action_size=2, action_low=-np.ones(2, np.float32),
                       action_high=np.ones(2, np.float32), max_episode_steps=max_episode_steps, reset=reset,
                       step=step)
