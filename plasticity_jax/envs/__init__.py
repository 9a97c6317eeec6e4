"""Environments of the reinforcement-learning problems (`envs.base`): `make_env(env_config)` builds the one named by
`env_config.name`; the config's other fields are that environment's options."""

from __future__ import annotations

import ml_collections

from plasticity_jax.envs.base import Environment, EnvStep
from plasticity_jax.envs.pendulum import make_pendulum
from plasticity_jax.envs.point_mass import make_point_mass

# name -> constructor taking the env config's other fields as keyword arguments.
ENVIRONMENTS = {
    'pendulum': make_pendulum,  # Gymnasium's Pendulum-v1 (pure JAX)
    'point_mass': make_point_mass,  # reach the origin of the plane: the tests' environment
}


def make_env(env_config: ml_collections.ConfigDict) -> Environment:
    fields = dict(env_config)
    name = fields.pop('name')
    if name not in ENVIRONMENTS:
        raise ValueError(f'unknown env.name {name!r}; valid: {sorted(ENVIRONMENTS)}')
    return ENVIRONMENTS[name](**fields)


__all__ = ['ENVIRONMENTS', 'Environment', 'EnvStep', 'make_env']
