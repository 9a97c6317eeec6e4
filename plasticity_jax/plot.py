"""Every standard figure of a workdir: `python -m plasticity_jax.plot --workdir=DIR [--out=DIR/figures]`.

DIR is one run (it holds config.json), a sweep over structural fields (its programs) or a folder of runs (each
subfolder holding config.json): `results.load_runs`. Several runs are compared on shared axes, labelled by program or
folder name, sweeps over continuous fields expanded into their points. Writes PNG and PDF of:

  performance_<metric>   online accuracy / test accuracy / online squared error vs task, mean +- 1 s.e. over seeds
  correlates             dead units, weight magnitude, effective rank, stable rank vs task (RL runs:
                         policy_correlates and value_correlates, one per network)
  sweep_<field>_<metric> performance averaged over all tasks vs each swept (or, across runs, varied) numeric field,
                         a line per value of the other one when two vary (e.g. width x step size)
  hessian_spectra        Hessian eigenvalue density at chosen tasks on a log axis (runs with curvature metrics)
  rank_vs_<metric>       Hessian epsilon-rank at a task's start vs performance on it, linear fit and R^2
  ggn_exact_rank_vs_<metric>  the same with the exact GGN epsilon-rank (curvature.exact_ggn_probe_size > 0)
"""

from __future__ import annotations

import os
import sys

import matplotlib
import matplotlib.pyplot as plt
from absl import app, flags

from plasticity_jax import logs, results
from plasticity_jax.analysis import plots, tables
from plasticity_jax.results import Run, load_runs
from plasticity_jax.workdir import WorkdirError


def define_flags() -> None:
    """The command line's flags: defined when this module runs as a program, not on import (a notebook imports
    `make_figures` beside the other command lines' modules, whose flags share names)."""
    flags.DEFINE_string('workdir', None, 'A run directory, a structural sweep\'s directory or a folder of run '
                        'directories.')
    flags.DEFINE_string('out', None, 'Where the figures go (default: WORKDIR/figures).')
    flags.DEFINE_integer('bins', 40, 'Points per curve: tasks are averaged in this many bins (0: every task).')
    flags.DEFINE_string('layer', 'mean', "Per-layer correlates: 'mean' over hidden layers, 'last', or an index.")
    flags.DEFINE_list('tasks', [], 'Tasks whose Hessian spectra to draw (default: up to 6 evenly spaced).')
    flags.DEFINE_float('epsilon', None, 'Epsilon of the epsilon-rank (default: the smallest swept value that is '
                       'resolved in every measurement).')
    flags.mark_flags_as_required(['workdir'])


def find_runs(workdir: str) -> dict[str, Run]:
    """label -> run (`results.load_runs`); runs without metrics yet are left out; none with metrics is an error."""
    runs = load_runs(workdir)
    with_metrics = {name: run for name, run in runs.items() if run.metrics}
    if not with_metrics:
        raise FileNotFoundError(f'{workdir} holds no metrics yet (no run in it has finished a chunk of tasks, '
                                f'{", ".join(sorted(runs))}): plot it once its first chunk is done.')
    waiting = sorted(set(runs) - set(with_metrics))
    if waiting:
        print(f'left out, no metrics yet (no chunk of tasks finished): {", ".join(waiting)}')
    return with_metrics


def _flat(config, prefix='') -> dict:
    out = {}
    for key, value in config.items():
        if key == 'sweep':
            continue
        if hasattr(value, 'items'):
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


HYPERPARAMETER_SECTIONS = ('learner', 'model', 'problem')


def varied_fields(runs: dict[str, Run]) -> list[str]:
    """Swept fields, and numeric learner / model / problem fields whose value differs between the runs."""
    fields = []
    for run in runs.values():
        fields += [f for f in run.sweep if f not in fields]
    if len(runs) > 1:
        flat = [_flat(run.config) for run in runs.values()]
        for field in flat[0]:
            values = [f.get(field) for f in flat]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            hyperparameter = field.split('.')[0] in HYPERPARAMETER_SECTIONS
            if hyperparameter and numeric and len(set(values)) > 1 and field not in fields:
                fields.append(field)
    return fields


def make_figures(workdir: str, out: str | None = None, *, bins: int | None = 40, layer='mean', tasks=None,
                 epsilon: float | None = None) -> list[str]:
    """Draws and saves every standard figure of `workdir`; returns the paths written (PNG and PDF)."""
    out = out or os.path.join(workdir, 'figures')
    runs = find_runs(workdir)
    # Arguments the runs cannot honour are refused before any figure is written.
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f'--out={out} is a file, not a folder: choose another --out')
    tasks = None if tasks is None else results.parse_tasks([str(t) for t in tasks])
    for run in runs.values():
        for metric in set(run.metrics) & set(tables.LAYER_METRICS):
            tables.select_layer(run.metrics[metric], layer)
        if epsilon is not None and tables.has_curvature(run):
            tables.epsilon_index(run, epsilon)
    written = []

    def save(fig, name):
        written.extend(plots.save_figure(fig, os.path.join(out, name)))
        plt.close(fig)

    common = set.intersection(*(set(run.metrics) for run in runs.values()))
    performance = [m for m in tables.PERFORMANCE if m in common]
    if not performance:
        print(f'the runs of {workdir} share no performance metric of {tables.PERFORMANCE} (e.g. supervised and RL '
              'runs): no performance figure; plot them one by one')
    for metric in performance:
        save(plots.plot_metric(runs, metric, bins, layer=layer).figure, f'performance_{metric}')
    if any(m in common for m in tables.CORRELATES):
        save(plots.plot_correlates(runs, bins, layer=layer), 'correlates')
    for network in ('policy', 'value'):  # RL runs: the correlates of each network (`rl.ppo`)
        network_correlates = [f'{network}_{m}' for m in tables.CORRELATES]
        if all(m in common for m in network_correlates):
            save(plots.plot_correlates(runs, bins, metrics=network_correlates, layer=layer), f'{network}_correlates')
    fields = [f for f in varied_fields(runs) if all(_has_field(run, f) for run in runs.values())]
    for field in fields:
        others = [f for f in fields if f != field]
        group = others[0] if len(others) == 1 else None  # e.g. width on the x axis, a line per step size
        for metric in performance:
            save(plots.plot_sweep(runs, metric, field, group=group).figure, f'sweep_{tables._short(field)}_{metric}')
    curved = {name: run for name, run in runs.items() if tables.has_curvature(run)}
    if curved:
        save(plots.plot_spectra(curved, tasks), 'hessian_spectra')
        table = tables.curvature_table(curved, epsilon=epsilon)
        for metric in [m for m in tables.PERFORMANCE if m in table and table[m].notna().any()]:
            save(plots.plot_rank_vs_performance(curved, metric, epsilon=epsilon).figure, f'rank_vs_{metric}')
            exact = {name: run for name, run in curved.items() if tables.has_curvature(run, tables.EXACT_GGN)}
            if exact:
                save(plots.plot_rank_vs_performance(exact, metric, epsilon=epsilon, kind=tables.EXACT_GGN).figure,
                     f'ggn_exact_rank_vs_{metric}')
    return written


def _has_field(run: Run, field: str) -> bool:
    try:
        tables.config_value(run, field)
        return True
    except (KeyError, AttributeError):
        return False


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logs.quiet_unless_verbosity_given()
    f = flags.FLAGS
    try:
        layer, tasks = plots.parse_layer_and_tasks(f.layer, f.tasks)
        written = make_figures(f.workdir, f.out, bins=f.bins or None, layer=layer, tasks=tasks, epsilon=f.epsilon)
    except (ValueError, FileNotFoundError, WorkdirError) as error:
        sys.exit(f'error: {error}')
    for path in written:
        print(path)


if __name__ == '__main__':
    matplotlib.use('Agg')  # files only (not on import: a notebook keeps its inline backend)
    define_flags()
    app.run(main)
