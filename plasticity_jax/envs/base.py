"""The environment interface of the reinforcement-learning problems.

An environment is a pair of pure functions written for ONE environment of ONE run: the PPO code vmaps them over its
parallel environments and the engine over runs (seeds, sweep points). Actions are continuous float32 (a Gaussian
policy); the environment clips them to its control range itself, and its costs use the raw action.

Every piece of non-stationarity lives in the environment state (e.g. Slippery Ant's current friction and the steps
since its last change), so a checkpoint of the state resumes bit-identically; physical parameters such as the
friction are traced per-run values, never Python constants baked into the program.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np


class EnvStep(NamedTuple):
    state: Any  # environment state after the step (already reset if the episode ended)
    observation: jax.Array  # (observation_size,) float32: next observation (the new episode's first if it ended)
    reward: jax.Array  # float32 scalar
    terminated: jax.Array  # bool scalar: the episode ended in a terminal state (no bootstrapping)
    truncated: jax.Array  # bool scalar: the episode hit its time limit
    final_observation: jax.Array  # the observation this step reached before any reset (for time-limit bootstrapping)
    info: dict[str, jax.Array]  # float32 scalars; every env returns the same keys each step, e.g. {'friction': f}


class Environment(NamedTuple):
    name: str
    observation_size: int
    action_size: int
    action_low: np.ndarray  # (action_size,) control range; the env clips actions itself, its costs use the raw action
    action_high: np.ndarray
    max_episode_steps: int
    reset: Callable[[jax.Array], tuple[Any, jax.Array]]  # key -> (state, observation)
    step: Callable[[Any, jax.Array, jax.Array], EnvStep]  # (state, action, key) -> EnvStep, auto-resets
