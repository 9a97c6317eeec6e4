"""One small Slippery Ant for every test of a test run that needs one (tests/envs/test_ant.py compiles its rollout,
tests/rl/test_ppo.py traces PPO's run state around it).

Its `reset` and `step` are jitted, so JAX traces each once per test run for the same argument shapes: tracing MJX's
reset or step takes a CPU-second or more, and the PPO test's traces (`ppo.env_state_packing`, the run state's
`init`) reuse the ones of the Ant tests' program. Tests call them with raw `jax.random.PRNGKey` keys, as PPO does.
"""

import functools

import jax
import ml_collections

from plasticity_jax import envs

MAX_EPISODE_STEPS = 8
CHANGE_INTERVAL = 12
# Euler instead of the model's RK4: everything these tests check is the environment's code around the physics, and
# RK4's three extra evaluations of the dynamics nearly double the compile.
ENV_CONFIG = {'name': 'slippery_ant', 'max_episode_steps': MAX_EPISODE_STEPS,
              'friction_change_interval': CHANGE_INTERVAL, 'integrator': 'euler'}


@functools.cache
def slippery_ant() -> envs.Environment:
    """`envs.make_env(ENV_CONFIG)` with jitted `reset` and `step` (built once per process)."""
    env = envs.make_env(ml_collections.ConfigDict(ENV_CONFIG))
    return env._replace(reset=jax.jit(env.reset), step=jax.jit(env.step))
