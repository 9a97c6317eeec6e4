"""Tidy pandas tables of one or more runs, and the summaries the figures plot.

Every function takes `runs`: a `results.Run`, a workdir path, a list of them, or a dict label -> run. A sweep run
(`config.sweep`) stands for one run per point, labelled by its coordinates (`step_size=0.01`). Labels default to the
base name of each run's workdir.

    table = metrics_table([run_a, run_b], ['online_accuracy', 'effective_rank'])   # label, seed, task, metrics
    summary = binned_summary(table, 'online_accuracy', bins=40)                     # mean +- standard error

Standard errors are over seeds: each seed's values are first averaged over the tasks of a bin (as in the
dissertation's figures: one point per bin of tasks), then the seeds' means give the mean and std(ddof=1)/sqrt(n).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from plasticity_jax import results, sweeps

# Metrics with a hidden-layer axis: (seed, task, layer); RL runs have them per network (`rl.ppo`: policy_*, value_*).
_LAYER_METRICS = ('dead_fraction', 'effective_rank', 'approximate_rank', 'stable_rank', 'feature_rank')
LAYER_METRICS = _LAYER_METRICS + tuple(f'{network}_{name}' for network in ('policy', 'value')
                                       for name in _LAYER_METRICS)
# The correlates of plasticity loss, in the order the dissertation shows them (Figs. 4.5-4.7) plus the stable rank.
CORRELATES = ('dead_fraction', 'weight_magnitude', 'effective_rank', 'stable_rank')
# Per-task performance metrics, in order of preference as "the" performance of a run.
PERFORMANCE = ('online_accuracy', 'test_accuracy', 'online_mse', 'episode_return')

RunLike = Any  # results.Run | str | os.PathLike
Runs = Any  # RunLike | Sequence[RunLike] | Mapping[str, RunLike]


def _load(run: RunLike) -> results.Run:
    if isinstance(run, results.Run):
        return run
    if not isinstance(run, (str, os.PathLike)):
        raise TypeError(f'a run is a results.Run or its workdir path, not {type(run).__name__}: {run!r:.80}')
    return results.load_run(os.fspath(run))


def default_label(run: results.Run) -> str:
    return os.path.basename(os.path.normpath(run.workdir)) or run.workdir


def _short(field: str) -> str:
    return field.rsplit('.', 1)[-1]


def labelled_runs(runs: Runs, label: str | Sequence[str] | Callable[[results.Run], str] | None = None
                  ) -> list[tuple[str, results.Run]]:
    """(label, run) pairs, one per run, sweeps expanded into their points (each a run without a sweep).

    `label`: None (dict keys, else workdir base names), one string (one run), a list (one per run) or a function of
    the run (a dict's keys are its labels: `label` must then be None). A sweep's points are labelled by their
    coordinates, prefixed by the run's label when several runs or a `label` are given.
    """
    if isinstance(runs, Mapping):
        if label is not None:
            raise ValueError('runs given as a dict are labelled by its keys: drop label=..., or pass a list of runs')
        pairs = [(str(name), _load(run)) for name, run in runs.items()]
    else:
        items = [runs] if not isinstance(runs, Iterable) or isinstance(runs, (results.Run, str, os.PathLike)) \
            else list(runs)
        loaded = [_load(run) for run in items]
        if label is None:
            names = [default_label(run) for run in loaded]
        elif isinstance(label, str):
            if len(loaded) != 1:
                raise ValueError(f'one label {label!r} for {len(loaded)} runs: pass a list or a function')
            names = [label]
        elif callable(label):
            names = [label(run) for run in loaded]
        else:
            names = list(label)
            if len(names) != len(loaded):
                raise ValueError(f'{len(names)} labels for {len(loaded)} runs')
        pairs = list(zip(names, loaded))
    out = []
    for name, run in pairs:
        if not run.sweep:
            out.append((name, run))
            continue
        num_points = len(next(iter(run.sweep.values())))
        for index in range(num_points):
            coords = ', '.join(f'{_short(f)}={sweeps.value_label(v[index])}' for f, v in run.sweep.items())
            out.append((coords if len(pairs) == 1 and label is None else f'{name}, {coords}', run.point(index)))
    seen: dict[str, str] = {}
    for name, run in out:  # runs under one label would be averaged together as if they were seeds of one run
        if name in seen:
            raise ValueError(f'two runs are labelled {name!r} ({seen[name]} and {run.workdir}): pass label=[...] '
                             'or a dict label -> run, or give the sweep distinct values')
        seen[name] = run.workdir
    return out


def config_value(run: results.Run, field: str):
    """`run.config` at a dotted field path, e.g. 'learner.step_size' (a KeyError names where the path breaks and
    the fields there)."""
    from plasticity_jax import config as config_lib

    parent, leaf = config_lib.field_parent(run.config, field)
    return parent[leaf]


def select_layer(values: np.ndarray, layer) -> np.ndarray:
    """(seed, task, layer) -> (seed, task) by `layer`: 'mean' over layers, 'last', or an index (a ValueError
    names the number of hidden layers if the index is out of range)."""
    if layer == 'mean':
        return values.mean(axis=-1)
    if layer == 'last':
        return values[..., -1]
    if isinstance(layer, (int, np.integer)):
        count = values.shape[-1]
        if not -count <= layer < count:
            raise ValueError(f'layer {layer} is out of range: the run has {count} hidden layer(s) (0 to {count - 1}, '
                             "or -1 for the last; 'mean' or 'last')")
        return values[..., layer]
    raise ValueError(f"layer must be 'mean', 'last', an index or None, not {layer!r}")


def _default_names(run: results.Run, layer) -> list[str]:
    """Metrics with axes (seed, task) (or (seed, task, layer)), the curvature metrics (extra axes) excluded."""
    names = []
    for name, values in run.metrics.items():
        if name in LAYER_METRICS:
            names.append(name)
        elif values.ndim == 2:
            names.append(name)
    if layer is None:
        names = [n for n in names if n in LAYER_METRICS]
    return names


def metrics_table(runs: Runs, names: str | Iterable[str] | None = None, *, label=None, layer='mean',
                  params: Iterable[str] = ()) -> pd.DataFrame:
    """A tidy table: one row per (label, seed, task), one column per metric (`names`; default every per-task one).

    Per-layer metrics (`LAYER_METRICS`) are reduced by `layer`: 'mean' over the hidden layers (the network's
    average, as in the dissertation's Fig. 4.7), 'last' (the last hidden layer, Fig. 4.9), or an index; with
    `layer=None` they keep their axis (a `layer` column), and every metric asked for must then be a per-layer one.
    `params` adds one column per config field (e.g. 'learner.step_size', named by its last part).
    """
    names = [names] if isinstance(names, str) else (None if names is None else list(names))
    params = list(params)
    frames = []
    for name, run in labelled_runs(runs, label):
        chosen = _default_names(run, layer) if names is None else names
        if layer is None and any(n not in LAYER_METRICS for n in chosen):
            raise ValueError(f'layer=None keeps the layer axis, so only per-layer metrics {LAYER_METRICS} can be '
                             f"asked for (got {chosen}); pass layer='mean', 'last' or an index to mix them")
        missing = [n for n in chosen if n not in run.metrics]
        if missing:
            raise KeyError(f'{name}: no metric {missing}; has {sorted(run.metrics)}')
        other = [n for n in chosen if n not in LAYER_METRICS and np.ndim(run.metrics[n]) != 2]
        if other:
            raise ValueError(f'{name}: {other} are not per-task metrics (axes seed, task): curvature metrics go '
                             'through curvature_table / density_table, the others through run.metrics')
        columns = {}
        for metric in chosen:
            values = np.asarray(run.metrics[metric], dtype=float)
            if metric in LAYER_METRICS and layer is not None:
                values = select_layer(values, layer)
            columns[metric] = values
        shape = next(iter(columns.values())).shape if columns else (0, 0)
        axes = ['seed', 'task', 'layer'][:len(shape)]
        index = pd.MultiIndex.from_product([range(n) for n in shape], names=axes)
        frame = pd.DataFrame({m: v.reshape(-1) for m, v in columns.items()}, index=index).reset_index()
        frame.insert(0, 'label', name)
        for field in params:
            frame[_short(field)] = config_value(run, field)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def task_bins(tasks: Sequence[int], bins: int | None) -> np.ndarray:
    """Bin index of each of the sorted unique `tasks`: `bins` contiguous groups of (nearly) equal size, earlier
    groups one task larger when they do not divide evenly; None (or more bins than tasks) gives one bin per task."""
    tasks = np.asarray(tasks)
    n = len(tasks)
    if bins is not None and (isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1):
        raise ValueError(f'bins={bins!r}: give an integer >= 1, or None for one point per task')
    bins = n if bins is None else min(int(bins), n)
    return np.concatenate([np.full(len(part), i) for i, part in enumerate(np.array_split(np.arange(n), bins))])


def binned_summary(table: pd.DataFrame, metric: str, bins: int | None = 40, *,
                   by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and standard error over seeds of `metric` per bin of tasks, for each group of `by` (default: the
    `label` and `layer` columns present). Each group's own tasks are split into `bins` bins (`task_bins`), so runs
    of different lengths get the same number of points.

    Columns: the `by` columns, `bin`, `task_first`, `task_last`, `task` (the mean task index of the bin), `mean`,
    `stderr` (std over seeds, ddof=1, / sqrt(n); NaN with one seed) and `n_seeds` (seeds with a finite value).
    A seed's mean in a bin is over its tasks with a value: an RL interval in which no episode ended has no return
    (NaN), and a diverged run is NaN from its divergence on, so it drops out of the bins after it (and of their
    `n_seeds`); the bin it diverged in holds its mean over the tasks before.
    """
    by = [c for c in ('label', 'layer') if c in table.columns] if by is None else list(by)
    frame = table[[*by, 'seed', 'task', metric]].copy()
    frame['bin'] = 0
    groups = [part.index for _, part in frame.groupby(by, sort=False)] if by else [frame.index]
    for index in groups:
        tasks = np.sort(frame.loc[index, 'task'].unique())
        frame.loc[index, 'bin'] = frame.loc[index, 'task'].map(dict(zip(tasks, task_bins(tasks, bins))))
    keys = [*by, 'bin']
    per_seed = frame.groupby([*keys, 'seed'], sort=True)[metric].mean().rename('value').reset_index()
    summary = per_seed.groupby(keys, sort=True)['value'].agg(
        mean='mean', std=lambda v: v.std(ddof=1), n_seeds='count').reset_index()
    summary['stderr'] = summary['std'] / np.sqrt(summary['n_seeds'])
    edges = frame.groupby(keys)['task'].agg(task_first='min', task_last='max', task='mean').reset_index()
    summary = summary.merge(edges, on=keys)
    # Groups in the order they first appear in `table` (the order the runs were given), bins in order.
    rank = {c: {v: i for i, v in enumerate(pd.unique(table[c]))} for c in by}
    order = np.lexsort([summary['bin'].to_numpy()] + [summary[c].map(rank[c]).to_numpy() for c in reversed(by)])
    summary = summary.iloc[order].reset_index(drop=True)
    return summary[[*keys, 'task_first', 'task_last', 'task', 'mean', 'stderr', 'n_seeds']]


def seed_means(table: pd.DataFrame, metric: str, tasks=None, *, by: Sequence[str] = ('label',)) -> pd.DataFrame:
    """Each seed's mean of `metric` over `tasks` (None: all; an int n >= 1: the last n; a slice or list of task
    indices, each one the run has), over the tasks with a value (see `binned_summary`)."""
    frame = table
    all_tasks = np.sort(table['task'].unique())
    if tasks is not None:
        if isinstance(tasks, (int, np.integer)):
            if not 1 <= tasks <= len(all_tasks):
                raise ValueError(f'tasks={tasks}: give the last n tasks with 1 <= n <= {len(all_tasks)} (the runs\' '
                                 'tasks), or None for all')
            chosen = all_tasks[-int(tasks):]
        elif isinstance(tasks, slice):
            chosen = all_tasks[tasks]
        else:
            chosen = np.asarray(list(tasks))
            absent = sorted(set(chosen.tolist()) - set(all_tasks.tolist()))
            if absent:
                raise ValueError(f'tasks {absent} are not in the runs (tasks {all_tasks[0]} to {all_tasks[-1]})')
        if len(chosen) == 0:
            raise ValueError(f'tasks={tasks!r} selects no task of the runs (tasks {all_tasks[0]} to {all_tasks[-1]})')
        frame = table[table['task'].isin(chosen)]
    return frame.groupby([*by, 'seed'], sort=False)[metric].mean().rename(metric).reset_index()


def sweep_summary(runs: Runs, metric: str, param: str, *, tasks=None, group: str | None = None,
                  label=None) -> pd.DataFrame:
    """Final performance vs a hyperparameter: per run (or sweep point), `metric` averaged over `tasks` (None: all
    tasks, as the dissertation's Fig. 4.10 ranks settings; an int n: the last n tasks) for each seed, then mean and
    standard error over seeds. Columns: label, the parameter (named by its last part), the `group` field (a line
    per value in `plot_sweep`) if given, mean, stderr, n_seeds; sorted by group and parameter."""
    params = [param] + ([group] if group else [])
    table = metrics_table(runs, [metric], label=label, params=params)
    column = table[_short(param)]
    if not pd.api.types.is_numeric_dtype(column) or column.dtype == bool:
        raise ValueError(f'{param} is not a number ({", ".join(sorted(map(repr, set(column))))}): a sweep summary puts '
                         'a numeric field on its axis; compare such runs with metrics_table / plot_metric')
    cols = ['label'] + [_short(p) for p in params]
    means = seed_means(table, metric, tasks, by=cols)
    out = means.groupby(cols, sort=False)[metric].agg(mean='mean', std=lambda v: v.std(ddof=1),
                                                        n_seeds='count').reset_index()
    out['stderr'] = out['std'] / np.sqrt(out['n_seeds'])
    out = out.drop(columns='std')
    return out.sort_values(([_short(group)] if group else []) + [_short(param)], kind='stable').reset_index(drop=True)


def accuracy_change_per_task(runs: Runs, metric: str = 'test_accuracy', *, label=None) -> pd.DataFrame:
    """The mean per-task accuracy change of "Neural Network Plasticity and Loss Sharpness" (Tables 1 and 2): the
    slope of the least-squares line through `metric` vs task, per seed; then mean and standard error over seeds (the
    mean of the seeds' slopes is the slope of the seed-averaged curve), each over the seed's tasks with a value.
    Columns: label, mean, stderr, n_seeds."""
    table = metrics_table(runs, [metric], label=label)
    slopes = (table.groupby(['label', 'seed'], sort=False)
              .apply(lambda rows: linear_fit(rows['task'], rows[metric])['slope'], include_groups=False)
              .rename('slope').reset_index())
    out = slopes.groupby('label', sort=False)['slope'].agg(mean='mean', std=lambda v: v.std(ddof=1),
                                                          n_seeds='count').reset_index()
    out['stderr'] = out['std'] / np.sqrt(out['n_seeds'])
    return out.drop(columns='std')


# ----------------------------------------------------------------------------------------------------------------
# Curvature: in-run `{kind}_*` metrics (seed, task, 2=start/end, ...) or checkpoint spectra (seed, checkpoint, ...).

WHEN = {'start': 0, 'end': 1}


def curvature_kind(run: results.Run) -> str:
    try:
        return run.config.curvature.kind or 'hessian'
    except (AttributeError, KeyError):
        return 'hessian'


def _curvature_source(run: results.Run, kind: str, source: str) -> str:
    in_run = f'{kind}_epsilon_rank' in run.metrics
    from_checkpoints = f'{kind}_epsilon_rank' in run.spectra
    if source == 'auto':
        source = 'spectra' if from_checkpoints else 'run'
    if source == 'run' and not in_run:
        if 'env' in run.config:
            raise ValueError(f'{run.workdir} is an RL run: RL runs have no curvature metrics')
        raise ValueError(f'{run.workdir} has no in-run {kind} metrics (set config.curvature.every_tasks'
                         + (' and config.curvature.exact_ggn_probe_size' if kind == EXACT_GGN else '') + ')')
    if source == 'spectra' and not from_checkpoints:
        raise ValueError(f'{run.workdir} has no {kind} spectra: run python -m plasticity_jax.spectra first')
    if source not in ('run', 'spectra'):
        raise ValueError(f"source must be 'auto', 'run' or 'spectra', not {source!r}")
    return source


# The exact GGN spectrum of the probe set (curvature.gauss_newton), logged beside the run's `curvature.kind`.
EXACT_GGN = 'ggn_exact'


def has_curvature(run: results.Run, kind: str | None = None) -> bool:
    kind = kind or curvature_kind(run)
    return f'{kind}_epsilon_rank' in run.metrics or f'{kind}_epsilon_rank' in run.spectra


def _curvature_arrays(run: results.Run, kind: str, source: str, when: str) -> tuple[np.ndarray, dict]:
    """(tasks, {metric: (seed, measurement, ...)}) of the measured tasks, from the run or its spectra."""
    def mine(name):  # 'ggn_exact_*' are not metrics of kind 'ggn'
        return name.startswith(kind + '_') and (kind == EXACT_GGN or not name.startswith(EXACT_GGN + '_'))

    if source == 'spectra':
        arrays = {n: np.asarray(v) for n, v in run.spectra.items() if mine(n)}
        return np.asarray(run.spectra['task']), arrays
    arrays = {n: np.asarray(v)[:, :, WHEN[when]] for n, v in run.metrics.items() if mine(n)}
    measured = np.isfinite(arrays[f'{kind}_trace']).any(axis=0)  # (task,)
    tasks = np.flatnonzero(measured)
    return tasks, {n: v[:, tasks] for n, v in arrays.items()}


def epsilon_index(run: results.Run, epsilon: float) -> tuple[int, float]:
    """Index into `config.curvature.epsilons` of `epsilon` (one of them, to float32 round-off), and that value."""
    epsilons = np.asarray(run.config.curvature.epsilons, dtype=float)
    matches = np.flatnonzero(np.isclose(epsilons, float(epsilon), rtol=1e-6, atol=0))
    if len(matches) == 0:
        raise ValueError(f'epsilon={epsilon!r} was not measured: {run.workdir} swept config.curvature.epsilons = '
                         f'{epsilons.tolist()}; pick one of them (or None: the smallest resolved one)')
    return int(matches[0]), float(epsilons[matches[0]])


def resolved_epsilon(runs: Runs, *, kind: str | None = None, when: str = 'start', source: str = 'auto',
                     label=None) -> float:
    """The smallest swept epsilon at which every measured epsilon-rank of every run is resolved (finite), the
    default of `curvature_table` and the plots; NaN if no swept epsilon is (those then show the largest swept
    epsilon, whose unresolved ranks are NaN).

    Lanczos/SLQ epsilon-ranks are NaN where eps is not resolved at the order used (`curvature.density`,
    "Resolution"); the exact GGN's only below its round-off resolution.
    """
    best = None
    for _, run in labelled_runs(runs, label):
        k = kind or curvature_kind(run)
        _, arrays = _curvature_arrays(run, k, _curvature_source(run, k, source), when)
        rank = arrays[f'{k}_epsilon_rank']  # (seed, measurement, E)
        measured = np.isfinite(arrays[f'{k}_trace'])
        ok = np.all(np.isfinite(rank) | ~measured[..., None], axis=(0, 1))
        epsilons = np.asarray(run.config.curvature.epsilons, dtype=float)
        if not ok.any():
            return float('nan')
        smallest = float(epsilons[np.flatnonzero(ok)[0]])
        best = smallest if best is None else max(best, smallest)
    return best


def performance_column(table: pd.DataFrame, metric: str | None) -> str:
    """`metric` if `table` (a `curvature_table`) has it, else a ValueError naming those it has; None: the first of
    `PERFORMANCE` with a value."""
    present = [m for m in PERFORMANCE if m in table.columns]
    if metric is None:
        metric = next((m for m in present if table[m].notna().any()), None)
        if metric is None:
            raise ValueError(f'the runs have no performance metric of {PERFORMANCE} on a measured task')
    elif metric not in present:
        raise ValueError(f'no performance metric {metric!r} beside the curvature measurements: the runs have {present}')
    return metric


def performance_metric(run: results.Run) -> str:
    for name in PERFORMANCE:
        if name in run.metrics:
            return name
    raise KeyError(f'{run.workdir} has none of {PERFORMANCE}')


def curvature_table(runs: Runs, *, epsilon: float | None = None, kind: str | None = None, when: str = 'start',
                    source: str = 'auto', label=None, all_epsilons: bool = False) -> pd.DataFrame:
    """One row per (label, seed, task) with a curvature measurement: the top eigenvalue, trace, epsilon-rank and
    epsilon-mass (at `epsilon`, one of the swept `curvature.epsilons`; default `resolved_epsilon`), and the run's
    performance metrics on that task. `all_epsilons`: one row per (label, seed, task, epsilon) over the whole sweep
    instead.

    `kind`: the run's `config.curvature.kind` (default; 'hessian': Lanczos/SLQ estimates, NaN where unresolved) or
    'ggn_exact' (the exact GGN spectrum, `config.curvature.exact_ggn_probe_size`; no epsilon-mass). `source`: 'run'
    (the in-run metrics, at the `when` = 'start' or 'end' of the task), 'spectra' (`run.spectra` from checkpoints:
    the start of task `task`), or 'auto' (spectra if present). A spectrum at the start of task t pairs with the
    performance on task t (NaN if task t was not run, e.g. the final checkpoint). Columns are named without the
    kind prefix: top_eigenvalue, trace, epsilon_rank, epsilon_mass; plus `epsilon` and `kind`.
    """
    if when not in WHEN:
        raise ValueError(f"when={when!r}: give 'start' or 'end' (of the task)")
    chosen = epsilon is None and not all_epsilons
    if chosen:
        epsilon = resolved_epsilon(runs, kind=kind, when=when, source=source, label=label)
    frames = []
    for name, run in labelled_runs(runs, label):
        k = kind or curvature_kind(run)
        src = _curvature_source(run, k, source)
        tasks, arrays = _curvature_arrays(run, k, src, when)
        epsilons = np.asarray(run.config.curvature.epsilons, dtype=float)
        if all_epsilons:
            indices = range(len(epsilons))
        elif np.isnan(epsilon):  # no swept epsilon resolved everywhere: the largest, its unresolved ranks NaN
            indices = [int(np.argmax(epsilons))]
        elif chosen and not np.isclose(epsilons, epsilon, rtol=1e-6, atol=0).any():
            raise ValueError(f'the runs swept different config.curvature.epsilons ({run.workdir}: {epsilons.tolist()}'
                             f' lacks {epsilon:g}, the smallest resolved in every run): pass epsilon= a value they '
                             'all swept')
        else:
            indices = [epsilon_index(run, epsilon)[0]]
        top = arrays[f'{k}_top_eigenvalues'][..., 0] if k == EXACT_GGN else arrays[f'{k}_top_eigenvalue']
        nan = np.full_like(top, np.nan)
        for index in indices:
            columns = {'top_eigenvalue': top, 'trace': arrays[f'{k}_trace'],
                       'epsilon_rank': arrays[f'{k}_epsilon_rank'][..., index],
                       'epsilon_mass': arrays[f'{k}_epsilon_mass'][..., index] if k != EXACT_GGN else nan}
            num_seeds = columns['trace'].shape[0]
            frame = pd.DataFrame({'label': name, 'kind': k, 'seed': np.repeat(np.arange(num_seeds), len(tasks)),
                                  'task': np.tile(tasks, num_seeds), 'epsilon': float(epsilons[index]),
                                  **{c: v.reshape(-1) for c, v in columns.items()}})
            for metric in PERFORMANCE:
                if metric in run.metrics:
                    values = np.asarray(run.metrics[metric], dtype=float)
                    padded = np.full((values.shape[0], max(values.shape[1], int(tasks.max(initial=0)) + 1)), np.nan)
                    padded[:, :values.shape[1]] = values
                    frame[metric] = padded[frame['seed'], frame['task']]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def rank_performance_fits(runs: Runs, metric: str | None = None, *, kind: str | None = None, when: str = 'start',
                          source: str = 'auto', label=None) -> pd.DataFrame:
    """R^2 of `metric` (default: the first of PERFORMANCE present) on the epsilon-rank at the start of the task,
    over the WHOLE epsilon sweep: one row per (epsilon, group) with group 'pooled' (every run's points) or a run's
    label, and columns slope, intercept, r2, n (finite pairs) and n_unresolved (points whose rank is NaN)."""
    table = curvature_table(runs, kind=kind, when=when, source=source, label=label, all_epsilons=True)
    metric = performance_column(table, metric)
    rows = []
    for eps, part in table.groupby('epsilon'):
        for group, sub in [('pooled', part), *part.groupby('label', sort=False)]:
            measured = sub[sub[metric].notna()]
            rows.append({'epsilon': eps, 'group': group, **linear_fit(measured['epsilon_rank'], measured[metric]),
                         'n_unresolved': int(measured['epsilon_rank'].isna().sum()), 'metric': metric})
    return pd.DataFrame(rows)


def density_table(runs: Runs, tasks: Sequence[int] | None = None, *, when: str = 'start', source: str = 'auto',
                  label=None, max_tasks: int = 6) -> pd.DataFrame:
    """The smoothed spectral density on the run's grid (`config.curvature.grid`), averaged over seeds: one row per
    (label, task, eigenvalue) with columns `density` (seed mean), `stderr` and `requested` (the task asked for;
    `task` is the measured task nearest it, which may differ: the plots say so). `tasks`: default up to
    `max_tasks` evenly spaced measured tasks."""
    if tasks is not None and len(tasks) == 0:
        raise ValueError('tasks=[]: give task indices, or None for up to max_tasks evenly spaced measured tasks')
    frames = []
    for name, run in labelled_runs(runs, label):
        kind = curvature_kind(run)
        src = _curvature_source(run, kind, source)
        measured, arrays = _curvature_arrays(run, kind, src, when)
        density = arrays[f'{kind}_density']  # (seed, measurement, P)
        low, high, points = run.config.curvature.grid
        grid = np.linspace(low, high, int(points))
        chosen = choose_tasks(measured, tasks, max_tasks)
        requested = {int(measured[np.argmin(np.abs(measured - t))]): int(t) for t in (tasks or [])[::-1]}
        for task in chosen:
            column = int(np.flatnonzero(measured == task)[0])
            values = density[:, column]
            n = np.isfinite(values).all(axis=-1).sum()
            frames.append(pd.DataFrame({
                'label': name, 'task': int(task), 'eigenvalue': grid, 'density': np.nanmean(values, axis=0),
                'stderr': np.nanstd(values, axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.nan, 'n_seeds': n,
                'requested': requested.get(int(task), int(task))}))
    return pd.concat(frames, ignore_index=True)


def choose_tasks(measured: Sequence[int], tasks: Sequence[int] | None = None, max_tasks: int = 6) -> list[int]:
    """The measured tasks nearest `tasks` (deduplicated, in order), or up to `max_tasks` evenly spaced ones."""
    measured = np.asarray(measured)
    if len(measured) == 0:
        return []
    if tasks is None:
        picks = measured[np.unique(np.linspace(0, len(measured) - 1, min(max_tasks, len(measured))).round()
                                   .astype(int))]
    else:
        picks = [measured[np.argmin(np.abs(measured - t))] for t in tasks]
    return list(dict.fromkeys(int(t) for t in picks))


def linear_fit(x, y) -> dict[str, float]:
    """Least-squares line y = slope * x + intercept over the finite pairs, with R^2 (the squared Pearson
    correlation) and n."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f'x and y of a linear fit need the same shape, got {x.shape} and {y.shape}')
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or np.ptp(x) == 0:
        return {'slope': np.nan, 'intercept': np.nan, 'r2': np.nan, 'n': int(len(x))}
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual ** 2) / total if total > 0 else np.nan
    return {'slope': float(slope), 'intercept': float(intercept), 'r2': float(r2), 'n': int(len(x))}
