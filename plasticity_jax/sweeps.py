"""Sweeps: a grid of hyperparameter points times seeds as ONE flat "runs" axis, and structural choices as programs.

A config declares its sweep in `config.sweep`, a nested ConfigDict that mirrors the config and holds a tuple of
values per swept field, e.g. in `get_config`:

    config.sweep.learner.step_size = (0.01, 0.003, 0.001)
    config.sweep.model.width = (100, 1000)

Two kinds of swept field:

* continuous: a float field of `learner` (step size, decay rate, noise scale, replacement rate, regularisation
  strength). Its values are traced: they enter the compiled program as arrays carried in each run's state
  (`RunState.hyperparams`), never as constants, so the whole grid of continuous values is one program. The grid is
  the Cartesian product of the continuous fields (in sorted order of their dotted names). Run r of the flat axis is
  point r // num_seeds with seed r % num_seeds, and seed s of every point uses the key of seed s of a run without a
  sweep, so each point of a sweep reproduces running that point alone. Every learner takes each of its float fields
  as a traced value (tests/test_sweeps.py sweeps them all for every learner); a sweep of a float field the learner
  ignores (SGD's momentum under Adam, Adam's constants under SGD, `step_size_decay` without milestones) would make
  every point the same run and is refused by `validation`.
* structural: every other field (`model.width`, `model.activation`, `learner.name`, integer fields, `problem.*`
  sizes, ...). Such a value changes shapes or the program itself, so each combination of structural values is a
  program of its own (`programs`), with the continuous grid inside it; `engine.run_programs` runs them one after
  another, each in `workdir/<field>=<value>[,<field>=<value>]`. A `learner.name` program for a learner other than
  the config's own gets that learner's config variant (`config.learner_variants`: the name and the learner's
  default fields, which replace the config's values of those fields); the config's own learner keeps the config's
  values. The other structural values are set after it.
"""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from plasticity_jax import config as config_lib

CONTINUOUS_SECTION = 'learner.'


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


def _nest(flat: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """{'learner.step_size': v} -> ConfigDict(learner=ConfigDict(step_size=v)): the inverse of `_flatten`."""
    nested = ml_collections.ConfigDict()
    for name, value in flat.items():
        *path, leaf = name.split('.')
        node = nested
        for field in path:
            if field not in node:
                node[field] = ml_collections.ConfigDict()
            node = node[field]
        node[leaf] = value
    return nested


def _lookup(config: ml_collections.ConfigDict, name: str):
    node, path = config, ['config']
    for field in name.split('.'):
        if not hasattr(node, 'keys') or field not in node:
            valid = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(none: it is a value)'
            raise ValueError(f"config.sweep names '{name}', which is not a field of the config: {'.'.join(path)} has "
                             f'no field {field!r}. Valid: {valid}')
        node, path = node[field], [*path, field]
    return node


def is_continuous(config: ml_collections.ConfigDict, name: str) -> bool:
    """Whether the swept field `name` can vary inside one program: a float field of `learner`."""
    return name.startswith(CONTINUOUS_SECTION) and isinstance(_lookup(config, name), float)


def swept_values(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Dotted field name -> its values as `config.sweep` holds them (unchecked)."""
    return _flatten(config.get('sweep', {}))


def value_label(value) -> str:
    """How results label a swept value (`analysis`: numbers with :g): two values shown alike cannot be told apart."""
    return f'{float(value):g}' if isinstance(value, numbers.Real) and not isinstance(value, bool) else repr(value)


def _swept(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Dotted field name -> its values, checked: every swept field exists and has a non-empty tuple of values."""
    swept = swept_values(config)
    for name, values in swept.items():
        _lookup(config, name)
        if not isinstance(values, (tuple, list)) or not values:
            raise ValueError(f'config.sweep.{name} must be a non-empty tuple of values, got {values!r}.')
    return swept


def grid(config: ml_collections.ConfigDict) -> Grid:
    """The points of a program's sweep, every field continuous; a config without a sweep is a grid of one point."""
    swept = _swept(config)
    for name in swept:
        if not is_continuous(config, name):
            raise ValueError(f'config.sweep.{name} is structural (only float learner fields vary inside one '
                             'program): run the sweep with engine.run_programs or plasticity_jax.main, which make '
                             'one program per structural value.')
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


class Program(NamedTuple):
    """One compiled program of a sweep: one combination of the structural values."""

    index: int  # its place in the sweep's programs (`--program=index` runs it alone)
    name: str  # '<field>=<value>[,<field>=<value>]' in field-name order, e.g. 'model.width=100'; '' if none swept
    config: ml_collections.ConfigDict  # the structural values set; `sweep` holds the continuous fields only

    def workdir(self, parent: str) -> str:
        """Where the program's results go: `parent/<name>`, or `parent` itself when nothing structural is swept."""
        return os.path.join(parent, self.name) if self.name else parent


def _with_learner(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """`config` with learner `name`: unchanged for its own learner, else with the learner's config variant."""
    if name == config.learner.name:
        return config
    variants = config_lib.learner_variants()
    if name not in variants:
        raise ValueError(f'config.sweep.learner.name: unknown learner {name!r}; valid: {sorted(variants)}')
    copy = with_values(config, {})
    variants[name](copy)
    return copy


def programs(config: ml_collections.ConfigDict) -> list[Program]:
    """The sweep's programs: the Cartesian product of its structural fields (in sorted order of their dotted names),
    each with the continuous grid inside; one program named '' when no structural field is swept."""
    swept = _swept(config)
    structural = sorted(name for name in swept if not is_continuous(config, name))
    continuous = {name: values for name, values in swept.items() if name not in structural}
    out = []
    for index, values in enumerate(itertools.product(*(swept[name] for name in structural))):
        chosen = dict(zip(structural, values))
        program = config
        if 'learner.name' in chosen:
            program = _with_learner(program, chosen['learner.name'])
        program = with_values(program, {**chosen, 'sweep': _nest(continuous)})
        grid(program)
        out.append(Program(index=index, name=','.join(f'{name}={value}' for name, value in chosen.items()),
                           config=program))
    return out


def select(programs: list[Program], only: int | None) -> list[Program]:
    """Every program, or program `only` alone (`--program=only`: one program per host or job)."""
    if only is None:
        return programs
    if not 0 <= only < len(programs):
        raise ValueError(f'--program={only}: the sweep has {len(programs)} program(s), numbered 0 to '
                         f'{len(programs) - 1}.')
    return [programs[only]]


def _parse(config: ml_collections.ConfigDict, name: str, text: str):
    """A command-line value, as the type of the config field it sweeps."""
    current = _lookup(config, name)
    try:
        if isinstance(current, bool):
            return {'true': True, 'false': False}[text.lower()]
        if isinstance(current, (int, float, str)):
            return type(current)(text)
    except (KeyError, ValueError):
        raise ValueError(f'--sweep={name}=...: cannot read {text!r} as {type(current).__name__}, the type of {name} '
                         f'(now {current!r}).') from None
    raise ValueError(f'--sweep={name}=...: {name} is {current!r}; only number, string and bool fields can be swept '
                     'on the command line (declare the others in config.sweep).')


def with_sweep_flags(config: ml_collections.ConfigDict, specs: list[str]) -> ml_collections.ConfigDict:
    """Adds `--sweep=learner.step_size=0.01,0.003` style sweeps to `config.sweep` (values parsed as the field's
    type, e.g. `--sweep=model.width=100,1000` as ints), then checks the whole sweep."""
    swept = swept_values(config)
    for spec in specs:
        name, sep, values = spec.partition('=')
        if not sep or not values:
            raise ValueError(f'--sweep={spec}: expected FIELD=VALUE,VALUE,... e.g. learner.step_size=0.01,0.003')
        swept[name] = tuple(_parse(config, name, value) for value in values.split(','))
    with config.unlocked():
        config.sweep = _nest(swept)
    programs(config)
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
