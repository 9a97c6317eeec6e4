"""The standard figures of one or more runs (matplotlib). Each function draws on `ax` (a new figure if None) and
returns the Axes, or a Figure for multi-panel plots; `save_figure(fig, path)` writes `path.png` and `path.pdf`.

    ax = plot_metric({'backprop': run_a, 'l2': run_b}, 'online_accuracy', bins=40)   # mean +- 1 s.e. over seeds
    fig = plot_correlates(runs, bins=40)                      # dead units, weight magnitude, effective/stable rank
    ax = plot_sweep(run, 'online_accuracy', 'learner.step_size')          # final performance vs hyperparameter
    fig = plot_spectra(runs, tasks=[0, 50, 100])              # Hessian density on a log axis at chosen tasks
    ax = plot_rank_vs_performance(runs)                       # epsilon-rank vs accuracy, linear fit and R^2

Lines are the mean over seeds of the per-bin averages, shaded bands +-1 standard error (`tables.binned_summary`);
each such figure says so under its x axis ("mean +- 1 s.e. over N seeds"). Bands are drawn beneath every line, and
lighter the more there are, so that overlapping bands never hide a curve. Accuracies and the dead-unit fraction are
drawn in percent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from plasticity_jax import results
from plasticity_jax.analysis import tables

# metric -> (axis label, factor applied to the values).
METRIC_LABELS = {
    'online_accuracy': ('Online accuracy (%)', 100.0),
    'test_accuracy': ('Test accuracy (%)', 100.0),
    'online_mse': ('Online squared error', 1.0),
    'episode_return': ('Mean episodic return', 1.0),
    'online_loss': ('Online loss', 1.0),
    'dead_fraction': ('Dead units (%)', 100.0),
    'weight_magnitude': ('Average weight magnitude', 1.0),
    'effective_rank': ('Effective rank', 1.0),
    'approximate_rank': ('Approximate rank', 1.0),
    'stable_rank': ('Stable rank', 1.0),
    'feature_rank': ('Feature rank', 1.0),
    'nonfinite_steps': ('Non-finite steps', 1.0),
}


def parse_layer_and_tasks(layer: str, tasks: list[str]) -> tuple[str | int, list[int] | None]:
    """The text of `python -m plasticity_jax.plot`'s --layer and --tasks flags as `plot_metric`'s `layer` and
    `plot_spectra`'s `tasks`; a ValueError names the bad flag and the fix."""
    index = layer.lstrip('-').isdigit()
    if not index and layer not in ('mean', 'last'):
        raise ValueError(f"--layer={layer}: give 'mean', 'last' or a layer index such as 0 or -1.")
    return (int(layer) if index else layer), results.parse_tasks(tasks)


def metric_label(metric: str) -> tuple[str, float]:
    return METRIC_LABELS.get(metric, (metric.replace('_', ' ').capitalize(), 1.0))


def save_figure(fig, path: str, dpi: int = 150) -> list[str]:
    """Writes `path.png` and `path.pdf` (folders created); returns both paths."""
    path = os.fspath(path)
    for ext in ('.png', '.pdf'):
        if path.endswith(ext):
            path = path[:-len(ext)]
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    paths = [f'{path}.png', f'{path}.pdf']
    fig.savefig(paths[0], dpi=dpi, bbox_inches='tight')
    fig.savefig(paths[1], bbox_inches='tight')
    return paths


def _axes(ax, figsize=(5.0, 3.6)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout='constrained')
    return ax


def _colors(labels: Sequence[str]) -> dict[str, str]:
    cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
    if len(labels) > len(cycle):
        cmap = plt.get_cmap('tab20')
        return {label: cmap(i % 20) for i, label in enumerate(labels)}
    return {label: cycle[i] for i, label in enumerate(labels)}


def _legend(ax, **kwargs):
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        ax.legend(frameon=False, fontsize='small', **kwargs)


# Bands beneath lines: a later run's band must not cover an earlier run's line.
BAND_ZORDER, LINE_ZORDER = 1.0, 2.5


def seeds_caption(n_seeds) -> str:
    """'mean +- 1 s.e. over 5 seeds' (or '3-5 seeds' when the runs differ): what a figure's lines and bands are."""
    n = np.unique(np.asarray(n_seeds, int))
    count = f'{n.min()}' if len(n) == 1 else f'{n.min()}-{n.max()}'
    return f'mean $\\pm$ 1 s.e. over {count} seed{"s" if n.max() != 1 else ""}'


def _plain_log_ticks(axis, values) -> None:
    """Log-scale ticks at the plotted values, labelled plainly ('100', '0.003'), without crowded minor labels."""
    axis.set_ticks(sorted(set(values)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
    axis.set_minor_formatter(NullFormatter())


def plot_binned(summary, ax=None, *, scale: float = 1.0, x: dict | None = None, colors: dict | None = None,
                label_column: str = 'label'):
    """Draws a `tables.binned_summary`: per label a line of the mean at the bin's task number (task index + 1, or
    `x[label] * (task + 1)` to plot against examples seen) and a band of +-1 standard error."""
    ax = _axes(ax)
    labels = list(dict.fromkeys(summary[label_column])) if label_column in summary else [None]
    colors = colors or _colors(labels)
    alpha = min(0.2, 0.6 / len(labels))  # many overlapping bands stay light enough to see the others through
    for label in labels:
        part = summary if label is None else summary[summary[label_column] == label]
        position = part['task'].to_numpy() + 1.0
        if x is not None:
            position = position * x[label]
        mean = part['mean'].to_numpy() * scale
        stderr = np.nan_to_num(part['stderr'].to_numpy() * scale)
        color = colors.get(label) if label is not None else None
        (line,) = ax.plot(position, mean, color=color, lw=1.5, label=label, zorder=LINE_ZORDER)
        ax.fill_between(position, mean - stderr, mean + stderr, color=line.get_color(), alpha=alpha, lw=0,
                        zorder=BAND_ZORDER)
    return ax


def plot_metric(runs, metric: str, bins: int | None = 40, *, ax=None, label=None, layer='mean',
                x: str = 'task', title: str | None = None, ylabel: str | None = None, colors: dict | None = None,
                legend: str | None = 'auto'):
    """`metric` vs task: the mean over seeds per bin of tasks, +-1 standard error shaded, one line per run (or
    sweep point) with a legend when there are several. `x='examples'` plots against examples seen (millions, or
    thousands below a million), for runs with different task lengths (Fig. 4.4). Per-layer metrics are reduced by
    `layer`. `legend`: 'inside' (matplotlib's best place), 'outside' (right of the axes, clear of the curves),
    'auto' (outside from 5 lines on, where an inside legend covers curves) or None."""
    created = ax is None
    if legend not in ('auto', 'inside', 'outside', None):
        raise ValueError(f"legend must be 'auto', 'inside', 'outside' or None, not {legend!r}")
    pairs = tables.labelled_runs(runs, label)
    table = tables.metrics_table(dict(pairs), [metric], layer=layer)
    summary = tables.binned_summary(table, metric, bins)
    name, scale = metric_label(metric)
    per_example, unit = None, ''
    if x == 'examples':
        if any('env' in run.config for _, run in pairs):
            raise ValueError("x='examples' counts a supervised problem's examples; for RL runs plot against the task "
                             "(an interval of environment steps, x='task')")
        per_task = {lbl: tables.config_value(run, 'problem.examples_per_task') for lbl, run in pairs}
        most = max(per_task[lbl] * (table[table.label == lbl]['task'].max() + 1) for lbl in per_task)
        divisor, unit = (1e6, 'millions') if most >= 1e6 else (1e3, 'thousands')
        per_example = {lbl: n / divisor for lbl, n in per_task.items()}
    elif x != 'task':
        raise ValueError(f"x must be 'task' or 'examples', not {x!r}")
    ax = plot_binned(summary, ax, scale=scale, x=per_example, colors=colors)
    ax.set_xlabel((f'Examples seen ({unit})' if x == 'examples' else 'Task number') + '\n'
                  + seeds_caption(summary.groupby('label')['n_seeds'].max() if 'label' in summary
                                  else summary['n_seeds'].max()))
    if x == 'task':
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if layer == 'last' and metric in tables.LAYER_METRICS:
        name += ' (last hidden layer)'
    ax.set_ylabel(ylabel or name)
    if title:
        ax.set_title(title)
    if len(pairs) > 1 and legend:
        if legend == 'outside' or (legend == 'auto' and len(pairs) > 4):
            _legend(ax, loc='upper left', bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
            if created:  # widen the figure by the legend, so that the axes keep their size
                fig = ax.figure
                width = ax.get_legend().get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
                fig.set_figwidth(fig.get_figwidth() + width + 0.1)
        else:
            _legend(ax)
    ax.grid(alpha=0.3)
    return ax


def plot_correlates(runs, bins: int | None = 40, *, metrics: Sequence[str] | None = None, label=None,
                    layer='mean', title: str | None = None):
    """One panel per correlate of plasticity loss, each vs task with +-1 standard error: `metrics` (each one the
    runs must have), or by default those of `tables.CORRELATES` (dead units, weight magnitude, effective rank,
    stable rank) the runs have. Returns the Figure."""
    pairs = tables.labelled_runs(runs, label)
    wanted = tables.CORRELATES if metrics is None else tuple(metrics)
    available = [m for m in wanted if all(m in run.metrics for _, run in pairs)]
    if not available:
        raise KeyError(f'the runs have none of {list(wanted)}')
    if metrics is not None and len(available) < len(wanted):
        raise KeyError(f'the runs lack {[m for m in wanted if m not in available]} (of {list(wanted)})')
    fig, axes = plt.subplots(1, len(available), figsize=(3.6 * len(available), 3.2), layout='constrained',
                             squeeze=False)
    colors = _colors([lbl for lbl, _ in pairs])
    for ax, metric in zip(axes[0], available):
        plot_metric(dict(pairs), metric, bins, ax=ax, layer=layer, colors=colors)
        if ax.get_legend():
            ax.get_legend().remove()
    if len(pairs) > 1:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc='outside lower center', ncols=min(len(labels), 6), frameon=False,
                   fontsize='small')
    if title:
        fig.suptitle(title)
    return fig


def plot_sweep(runs, metric: str, param: str, *, tasks=None, group: str | None = None, ax=None, label=None,
               logx: bool | None = None, title: str | None = None):
    """Performance vs a hyperparameter: per run / sweep point, `metric` averaged over `tasks` (None: all tasks; n:
    the last n), mean +- 1 standard error over seeds as error bars; a line per value of the `group` field."""
    summary = tables.sweep_summary(runs, metric, param, tasks=tasks, group=group, label=label)
    ax = _axes(ax)
    name, scale = metric_label(metric)
    column = tables._short(param)
    groups = [(None, summary)] if not group else list(summary.groupby(tables._short(group), sort=False))
    diverged_label = 'diverged (non-finite)'
    for value, part in groups:
        line = ax.errorbar(part[column].to_numpy(float), part['mean'].to_numpy() * scale,
                           yerr=np.nan_to_num(part['stderr'].to_numpy() * scale), marker='o',
                           capsize=3, label=None if value is None else f'{tables._short(group)}={value}')
        # A point whose mean is not finite (a diverged run) is marked with an x at the top edge, not left out.
        diverged = ~np.isfinite(part['mean'].to_numpy(float))
        if diverged.any():
            ax.plot(part[column].to_numpy(float)[diverged], np.full(diverged.sum(), 0.97), 'x', markersize=9,
                    color=line.lines[0].get_color(), transform=ax.get_xaxis_transform(), clip_on=False,
                    label=diverged_label)
            diverged_label = None
    values = summary[column].to_numpy(dtype=float)
    if logx is None:
        logx = bool(np.all(values > 0) and values.max() / values.min() >= 10)
    if logx:
        ax.set_xscale('log')
        _plain_log_ticks(ax.xaxis, values)
    ax.set_xlabel(column.replace('_', ' ') + '\n' + seeds_caption(summary['n_seeds']))
    what = 'all tasks' if tasks is None else (f'last {tasks} tasks' if isinstance(tasks, int) else 'chosen tasks')
    ax.set_ylabel(f'{name}\n(mean over {what})')
    if group or diverged_label is None:
        _legend(ax)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def plot_spectra(runs, tasks: Sequence[int] | None = None, *, when: str = 'start', source: str = 'auto',
                 label=None, floor: float = 1e-7, max_tasks: int = 6, xlim: tuple[float, float] | None = None):
    """Smoothed Hessian eigenvalue density (seed mean, `config.curvature.kind`) on a log-scaled density axis: a row
    per run, a column per chosen task, as the spectral-collapse poster's Fig. 2 (spectra at the start of chosen
    tasks). Tasks are numbered as the CLI and the tables number them ("start of task t" is after t tasks); when the
    nearest measured task differs from the one asked for, the panel title says so. Densities below `floor` are
    clipped to it. Returns the Figure."""
    density = tables.density_table(runs, tasks, when=when, source=source, label=label, max_tasks=max_tasks)
    labels = list(dict.fromkeys(density['label']))
    columns = sorted(density['task'].unique())
    fig, axes = plt.subplots(len(labels), len(columns), figsize=(2.6 * len(columns) + 0.6, 2.2 * len(labels) + 0.6),
                             layout='constrained', squeeze=False, sharex=True, sharey=True)
    colors = _colors(labels)
    for row, lbl in enumerate(labels):
        for col, task in enumerate(columns):
            ax = axes[row][col]
            part = density[(density['label'] == lbl) & (density['task'] == task)]
            if part.empty:
                ax.set_axis_off()
                continue
            ax.plot(part['eigenvalue'], np.maximum(part['density'], floor), color=colors[lbl], lw=1.2, label=lbl)
            ax.set_yscale('log')
            ax.set_ylim(bottom=floor)
            ax.grid(alpha=0.3)
            asked = int(part['requested'].iloc[0])
            title = f'{when} of task {task}' + (f' (asked: {asked})' if asked != task else '')
            ax.set_title(title if row == 0 or asked != task else '', fontsize='medium')
            if col == 0:
                ax.set_ylabel('eigenvalue density', fontsize='small')
                ax.legend(loc='upper right', fontsize='x-small', frameon=False)
            if row == len(labels) - 1:
                ax.set_xlabel('eigenvalue')
            if xlim:
                ax.set_xlim(*xlim)
    fig.suptitle('Hessian eigenvalue density (SLQ, Gaussian-smoothed)')
    return fig


KIND_NAMES = {'hessian': 'Hessian', 'ggn': 'GGN', 'fisher': 'empirical Fisher', tables.EXACT_GGN: 'exact GGN'}


def plot_rank_vs_performance(runs, metric: str | None = None, *, epsilon: float | None = None,
                             kind: str | None = None, when: str = 'start', source: str = 'auto', label=None,
                             ax=None, title: str | None = None):
    """Normalised epsilon-rank at the start of task t (the run's `config.curvature.kind`, or `kind`='ggn_exact')
    vs the performance on task t, a point per (seed, measured task), coloured by run, with the least-squares line
    over all points (dotted) and its R^2 and number of points, as the spectral-collapse poster's Fig. 3 (left).
    `epsilon` default: `tables.resolved_epsilon` (the smallest swept eps resolved in every measurement). Returns
    the Axes; the fit is in `ax.linear_fit`."""
    table = tables.curvature_table(runs, epsilon=epsilon, kind=kind, when=when, source=source, label=label)
    metric = tables.performance_column(table, metric)
    unresolved = int((np.isfinite(table[metric]) & ~np.isfinite(table['epsilon_rank'])).sum())
    table = table[np.isfinite(table[metric]) & np.isfinite(table['epsilon_rank'])]
    ax = _axes(ax)
    name, scale = metric_label(metric)
    labels = list(dict.fromkeys(table['label']))
    colors = _colors(labels)
    for lbl in labels:
        part = table[table['label'] == lbl]
        ax.scatter(part['epsilon_rank'], part[metric] * scale, s=14, alpha=0.7, color=colors[lbl], label=lbl)
    fit = tables.linear_fit(table['epsilon_rank'], table[metric] * scale)
    if np.isfinite(fit['slope']):
        xs = np.linspace(table['epsilon_rank'].min(), table['epsilon_rank'].max(), 50)
        ax.plot(xs, fit['slope'] * xs + fit['intercept'], ':', color='black', lw=1.5,
                label=f"linear fit, $R^2$ = {fit['r2']:.2f} (n = {fit['n']})")
    epsilon_value = float(table['epsilon'].iloc[0]) if len(table) else float('nan')
    kinds = sorted(set(table['kind'])) if len(table) else [kind or 'hessian']
    what = ', '.join(KIND_NAMES.get(k, k) for k in kinds)
    ax.set_xlabel(f'{what} $\\epsilon$-rank / parameters at the start of task ($\\epsilon$ = {epsilon_value:g})'
                  + (f'\n{unresolved} unresolved measurements left out' if unresolved else ''))
    ax.set_ylabel(f'{name} on that task')
    if title:
        ax.set_title(title)
    _legend(ax)
    ax.grid(alpha=0.3)
    ax.linear_fit = fit
    return ax
