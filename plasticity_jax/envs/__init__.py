"""Reinforcement-learning environments: pure `reset` / `step` functions of one environment (see `envs.base`).

`make_env(env_config)` dispatches on `env_config.name`; the remaining fields are that environment's options:

- 'ant': `max_episode_steps` (1000), `pad_contact_forces` (True: Ant-v3's 111-entry observation).
- 'slippery_ant': as 'ant', plus `friction_change_interval` (2_000_000 environment steps) and `friction_range`
  ((0.02, 2.0), log-uniform).
- 'hopper', 'walker2d': `max_episode_steps` (1000).
- every MuJoCo environment: `solver_iterations` and `ls_iterations` (None: the model's 100 and 50; small values
  make batched steps much faster at some cost in contact accuracy, see `mujoco_locomotion.make_locomotion_env`);
  `integrator` (None: the model's RK4; 'euler' steps and compiles much faster, a different simulation).
- 'pendulum' (Gymnasium's Pendulum-v1), 'point_mass' (the tests' problem): `max_episode_steps` (200, 50); pure JAX.

The MuJoCo environments need the `rl` extra (`mujoco`, `mujoco-mjx`), imported only when one is built.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from plasticity_jax.envs.base import Environment, EnvStep
from plasticity_jax.envs.pendulum import make_pendulum
from plasticity_jax.envs.point_mass import make_point_mass


def _solver(c: ml_collections.ConfigDict) -> dict:
    return {'solver_iterations': c.get('solver_iterations', None), 'ls_iterations': c.get('ls_iterations', None),
            'integrator': c.get('integrator', None)}


def _ant(c: ml_collections.ConfigDict) -> Environment:
    from plasticity_jax.envs.ant import make_ant
    return make_ant(c.get('max_episode_steps', 1000), c.get('pad_contact_forces', True), **_solver(c))


def _slippery_ant(c: ml_collections.ConfigDict) -> Environment:
    from plasticity_jax.envs.ant import make_slippery_ant
    return make_slippery_ant(c.get('max_episode_steps', 1000), c.get('pad_contact_forces', True),
                             c.get('friction_change_interval', 2_000_000), tuple(c.get('friction_range', (0.02, 2.0))),
                             **_solver(c))


def _hopper(c: ml_collections.ConfigDict) -> Environment:
    from plasticity_jax.envs.planar_walkers import make_hopper
    return make_hopper(c.get('max_episode_steps', 1000), **_solver(c))


def _walker2d(c: ml_collections.ConfigDict) -> Environment:
    from plasticity_jax.envs.planar_walkers import make_walker2d
    return make_walker2d(c.get('max_episode_steps', 1000), **_solver(c))


ENVIRONMENTS: dict[str, Callable[[ml_collections.ConfigDict], Environment]] = {
    'ant': _ant,
    'slippery_ant': _slippery_ant,
    'hopper': _hopper,
    'walker2d': _walker2d,
    'pendulum': lambda c: make_pendulum(c.get('max_episode_steps', 200)),
    'point_mass': lambda c: make_point_mass(c.get('max_episode_steps', 50)),
}


def make_env(env_config: ml_collections.ConfigDict) -> Environment:
    """The environment named by `env_config.name`, built with the rest of `env_config` as its options."""
    name = env_config.name
    if name not in ENVIRONMENTS:
        raise ValueError(f'unknown env.name {name!r}; valid: {sorted(ENVIRONMENTS)}')
    return ENVIRONMENTS[name](env_config)


__all__ = ['ENVIRONMENTS', 'EnvStep', 'Environment', 'make_env']
