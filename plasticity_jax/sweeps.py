"""Sweeps: a grid of hyperparameter points times seeds, expanded into ONE flat "runs" axis.

A config declares its sweep in `config.sweep`, a nested ConfigDict that mirrors the config and holds a tuple of
values per swept field, e.g. in `get_config`:

    config.sweep.learner.step_size = (0.01, 0.003, 0.001)

The grid is the Cartesian product of the swept fields (in sorted order of their dotted names). Run r of the flat axis
is point r // num_seeds with seed r % num_seeds, and seed s of every point uses the key of seed s of a run without a
sweep, so each point of a sweep reproduces running that point alone. Swept values are traced: they enter the
compiled program as arrays carried in each run's state (`RunState.hyperparams`), never as constants, so the whole
grid is one program. Only continuous fields of `learner` can be swept this way; structural choices (width,
activation, learner kind) change the program and need separate runs.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

TRACEABLE_SECTIONS = ('learner.',)


class Grid(NamedTuple):
    names: tuple[str, ...]  # dotted field names, e.g. 'learner.step_size'
    points: np.ndarray  # (num_points, len(names)) float64; one row per point, (1, 0) without a sweep

    @property
    def num_points(self) -> int:
        return len(self.points)

    def coordinates(self) -> dict[str, np.ndarray]:
        """Field name -> value at each point."""
        return {name: self.points[:, i] for i, name in enumerate(self.names)}


def _flatten(node: Any, prefix: str = '') -> dict[str, Any]:
    if isinstance(node, (ml_collections.ConfigDict, Mapping)):
        return {k: v for key in node for k, v in _flatten(node[key], f'{prefix}{key}.').items()}
    return {prefix[:-1]: node}


def _lookup(config: ml_collections.ConfigDict, name: str):
    node = config
    for field in name.split('.'):
        if not hasattr(node, 'keys') or field not in node:
            raise ValueError(f"config.sweep names '{name}', which is not a field of the config.")
        node = node[field]
    return node


def grid(config: ml_collections.ConfigDict) -> Grid:
    """The sweep's points; a run without `config.sweep` entries is a grid of one point."""
    swept = _flatten(config.get('sweep', {}))
    for name, values in swept.items():
        if not name.startswith(TRACEABLE_SECTIONS):
            raise ValueError(f"config.sweep.{name}: only continuous learner fields ({', '.join(TRACEABLE_SECTIONS)}*) "
                             'can be swept inside one program; structural fields need separate runs.')
        if not isinstance(_lookup(config, name), (int, float)) or isinstance(_lookup(config, name), bool):
            raise ValueError(f'config.sweep.{name}: only numeric fields can be swept, '
                             f'{name} is {_lookup(config, name)!r}.')
        if not isinstance(values, (tuple, list)) or not values:
            raise ValueError(f'config.sweep.{name} must be a non-empty tuple of values, got {values!r}.')
    names = tuple(sorted(swept))
    combinations = list(itertools.product(*(swept[n] for n in names)))  # [()] without a sweep: one point
    points = np.array(combinations, np.float64).reshape(len(combinations), len(names))
    return Grid(names=names, points=points)


def with_values(config: ml_collections.ConfigDict, values: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with the dotted fields in `values` replaced (the values may be traced arrays)."""
    copy = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    for name, value in values.items():
        *path, leaf = name.split('.')
        node = copy
        for field in path:
            node = node[field]
        node[leaf] = value
    return copy


def with_sweep_flags(config: ml_collections.ConfigDict, specs: list[str]) -> ml_collections.ConfigDict:
    """Adds `--sweep=learner.step_size=0.01,0.003` style sweeps to `config.sweep`, then checks the whole sweep."""
    for spec in specs:
        name, sep, values = spec.partition('=')
        if not sep or not values:
            raise ValueError(f'--sweep={spec}: expected FIELD=VALUE,VALUE,... e.g. learner.step_size=0.01,0.003')
        *path, leaf = name.split('.')
        with config.unlocked():
            node = config.sweep
            for field in path:
                if field not in node:
                    node[field] = ml_collections.ConfigDict()
                node = node[field]
            node[leaf] = tuple(float(v) for v in values.split(','))
    grid(config)
    return config


class Runs(NamedTuple):
    """The flat runs axis of a program: points x seeds, padded to a multiple of the device count."""

    grid: Grid
    num_seeds: int
    num_padded: int  # >= num_runs; the extra runs repeat the last run and are dropped from every result

    @property
    def num_runs(self) -> int:
        return self.grid.num_points * self.num_seeds

    def keys(self, base_seed: int) -> jax.Array:
        """Run r uses fold_in(PRNGKey(base_seed), r % num_seeds): every point sees the seeds of a run alone."""
        seeds = np.minimum(np.arange(self.num_padded), self.num_runs - 1) % self.num_seeds
        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(base_seed), jnp.asarray(seeds))

    def hyperparams(self) -> dict[str, np.ndarray]:
        """Field name -> (num_padded,) float32 value of each run."""
        point = np.minimum(np.arange(self.num_padded), self.num_runs - 1) // self.num_seeds
        return {name: self.grid.points[point, i].astype(np.float32) for i, name in enumerate(self.grid.names)}

    def unpad(self, tree):
        """Drops the padding runs from arrays with a leading runs axis."""
        return jax.tree.map(lambda a: a[:self.num_runs], tree)


def runs(config: ml_collections.ConfigDict, num_devices: int = 1) -> Runs:
    g = grid(config)
    total = g.num_points * config.num_seeds
    return Runs(grid=g, num_seeds=config.num_seeds, num_padded=-(-total // num_devices) * num_devices)


def split_runs_axis(array: np.ndarray, runs: Runs) -> np.ndarray:
    """(num_runs, ...) -> (num_points, num_seeds, ...)."""
    return array.reshape(runs.grid.num_points, runs.num_seeds, *array.shape[1:])
