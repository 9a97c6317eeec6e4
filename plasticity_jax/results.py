"""Reading finished (or running) experiments back: `load_run(workdir)` for one run (one program), `load_runs(workdir)`
for the programs of a sweep over structural fields (or any folder of runs)."""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np

from plasticity_jax import engine, sweeps
from plasticity_jax.workdir import WorkdirError

SPECTRA_FILE = 'spectra.npz'


@dataclasses.dataclass(frozen=True, repr=False)
class Run:
    """A run's resolved config and its metrics: name -> array with leading axes (seed, task), or (point, seed, task)
    for a sweep (`config.sweep`), whose coordinates are in `sweep` (field name -> value at each point).

    Per-layer correlates (`dead_fraction`, `effective_rank`, `approximate_rank`, `stable_rank`, `feature_rank`) have
    one more axis, the hidden layer.
    """

    workdir: str
    config: ml_collections.ConfigDict
    metrics: dict[str, np.ndarray]
    # From `python -m plasticity_jax.spectra`: metric -> (seed, checkpoint, ...), and 'task' -> (checkpoint,).
    spectra: dict[str, np.ndarray]
    sweep: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: where, how much, which metrics (the arrays themselves are in `metrics`)."""
        names = ('points', 'seeds', 'tasks') if self.sweep else ('seeds', 'tasks')
        shape = self.metrics['nonfinite_steps'].shape if self.metrics else ()
        axes = ' x '.join(f'{n} {name}' for n, name in zip(shape, names))
        sweep = ''.join(f', {name}={tuple(np.round(v, 6).tolist())}' for name, v in self.sweep.items())
        spectra = f', spectra: {len(self.spectra.get("task", []))} checkpoints' if self.spectra else ''
        return (f"Run('{self.workdir}', {self.config.learner.name}, {axes or 'no tasks yet'}{sweep}, "
                f"metrics: {', '.join(sorted(self.metrics))}{spectra})")

    def point(self, index: int) -> Run:
        """Point `index` of a sweep as a run of its own (metrics with leading axes (seed, task))."""
        if not self.sweep:
            raise ValueError(f'{self.workdir} is not a sweep.')
        count = len(next(iter(self.sweep.values())))
        if not -count <= index < count:
            raise IndexError(f'point {index} of {self.workdir}: the sweep has {count} points (0 to {count - 1})')
        values = {name: float(v[index]) for name, v in self.sweep.items()}
        return Run(workdir=self.workdir, config=sweeps.with_values(self.config, values),
                   metrics={name: m[index] for name, m in self.metrics.items()},
                   spectra={name: m if name == 'task' else m[index] for name, m in self.spectra.items()})

    def dataframe(self, metric: str):
        """A tidy pandas DataFrame of one metric: a row per (point coordinates,) seed, task (, layer)."""
        import pandas as pd

        values = self.metrics[metric]
        lead = list(self.sweep) and ['point']
        axes = [*lead, 'seed', 'task', 'layer'][:values.ndim]
        index = pd.MultiIndex.from_product([range(n) for n in values.shape], names=axes)
        frame = pd.DataFrame({metric: values.reshape(-1)}, index=index).reset_index()
        for name, coordinate in self.sweep.items():
            frame[name] = coordinate[frame['point']]
        return frame

    @property
    def num_tasks_done(self) -> int:
        return self.metrics['nonfinite_steps'].shape[-1] if self.metrics else 0

    @property
    def diverged_seeds(self) -> np.ndarray:
        """Indices of the seeds (for a sweep: (point, seed) pairs) that met a non-finite loss."""
        if not self.metrics:
            return np.array([], int)
        counts = self.metrics['nonfinite_steps'].sum(axis=-1)
        return np.argwhere(counts) if self.sweep else np.flatnonzero(counts)


def parse_tasks(texts: list[str]) -> list[int] | None:
    """The text of a `--tasks=0,50,99` flag (`plot`, `spectra`) as task indices (None if empty); a ValueError names
    the flag and the fix."""
    bad = [t for t in texts if not str(t).strip().isdigit()]
    if bad:
        raise ValueError(f'--tasks={",".join(map(str, texts))}: {bad} are not task indices; give numbers such as '
                         '--tasks=0,50,99.')
    return [int(t) for t in texts] or None


def _read_config(path: str) -> ml_collections.ConfigDict:
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except ValueError as error:
        raise WorkdirError(f'cannot read {path} ({error}): it is not a config this package wrote.') from None


def load_run(workdir: str) -> Run:
    """The run (one program) in `workdir`: metrics with leading axes (seed, task), or (point, seed, task) for a
    sweep over continuous fields."""
    if not isinstance(workdir, (str, os.PathLike)):
        raise TypeError(f'load_run takes a run\'s workdir path, not a {type(workdir).__name__}')
    workdir = os.fspath(workdir)
    config_path = os.path.join(workdir, engine.CONFIG_FILE)
    if not os.path.exists(config_path):
        if os.path.exists(os.path.join(workdir, engine.SWEEP_CONFIG_FILE)):
            raise FileNotFoundError(f'{workdir} holds a sweep over structural fields, one run per program: load them '
                                    f"with load_runs('{workdir}').")
        raise FileNotFoundError(f'{workdir} is not a run directory: {config_path} does not exist.')
    config = _read_config(config_path)
    metrics = engine.load_npz(os.path.join(workdir, engine.METRICS_FILE))
    spectra = engine.load_npz(os.path.join(workdir, SPECTRA_FILE))
    runs = sweeps.runs(config)
    if not runs.grid.names:
        return Run(workdir=workdir, config=config, metrics=metrics, spectra=spectra)
    split = lambda arrays: {n: a if n == 'task' else sweeps.split_runs_axis(a, runs) for n, a in arrays.items()}
    return Run(workdir=workdir, config=config, metrics=split(metrics), spectra=split(spectra),
               sweep=runs.grid.coordinates())


def load_runs(workdir: str) -> dict[str, Run]:
    """Every run in `workdir`, by label, for `plasticity_jax.analysis` (which takes such a dict):

    * a sweep over structural fields (`engine.run_programs`): its programs by name (e.g. 'model.width=100'), in the
      sweep's order, those not started yet left out;
    * one run: itself, by its folder's name;
    * else every subfolder that is a run, by name, sorted (a subfolder holding a structural sweep is left out, with
      a line saying so: load it on its own).
    """
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f'{workdir} does not exist' if not os.path.exists(workdir) else
                                f'{workdir} is a file, not a run directory')
    sweep_config = os.path.join(workdir, engine.SWEEP_CONFIG_FILE)
    if os.path.exists(sweep_config):
        names = [program.name for program in sweeps.programs(_read_config(sweep_config))]
    elif os.path.exists(os.path.join(workdir, engine.CONFIG_FILE)):
        return {os.path.basename(os.path.normpath(workdir)): load_run(workdir)}
    else:
        names = sorted(os.listdir(workdir))
        for name in names:
            if os.path.exists(os.path.join(workdir, name, engine.SWEEP_CONFIG_FILE)):
                print(f'{os.path.join(workdir, name)} is a sweep over structural fields, left out: load it on its '
                      f"own (load_runs('{os.path.join(workdir, name)}')).")
    runs = {name: load_run(os.path.join(workdir, name)) for name in names
            if os.path.exists(os.path.join(workdir, name, engine.CONFIG_FILE))}
    if not runs:
        raise FileNotFoundError(f'{workdir} holds no runs: neither it nor a folder in it has {engine.CONFIG_FILE}.')
    return runs
