"""The environment interface shared by every reinforcement-learning problem (see RL_INTERFACE.md).

Environments are pure functions of ONE environment of ONE run: the PPO code vmaps them over parallel environments and
the engine over runs. Every piece of non-stationarity (e.g. Slippery Ant's friction and its schedule) lives in the
environment state, so a checkpoint of the state resumes bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np


class EnvStep(NamedTuple):
    state: Any                  # environment state after the step (already reset if the episode ended)
    observation: jax.Array      # (observation_size,) float32: next observation (the new episode's first if it ended)
    reward: jax.Array           # float32 scalar
    terminated: jax.Array       # bool scalar: the episode ended in a terminal state (no bootstrapping)
    truncated: jax.Array        # bool scalar: the episode hit its time limit
    final_observation: jax.Array  # the observation this step reached before any reset (for time-limit bootstrapping)
    info: dict[str, jax.Array]  # float32 scalars; every env returns the same keys each step, e.g. {'friction': f}


class Environment(NamedTuple):
    name: str
    observation_size: int
    action_size: int
    # (action_size,) control range; the env clips actions itself, its costs use the raw action
    action_low: np.ndarray
    action_high: np.ndarray
    max_episode_steps: int
    reset: Callable[[jax.Array], tuple[Any, jax.Array]]                 # key -> (state, observation)
    step: Callable[[Any, jax.Array, jax.Array], EnvStep]                 # (state, action, key) -> EnvStep, auto-resets
