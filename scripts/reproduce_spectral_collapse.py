"""Reproduction at CPU scale: the epsilon-rank at the start of a task vs how well the task is learned ("Spectral
Collapse Drives Loss of Plasticity in Deep Continual Learning", Prakash, He, Guo et al., arXiv 2509.22335; the
"empirical finding" and Figs. 2-3 of its poster), on Online Permuted MNIST with backprop, L2, L2-ER and continual
backprop.

For each learner this runs ONE program over the seeds (`configs/permuted_mnist.py:<learner>,lr0.01` with the sizes
below), in resumable workdirs `WORKDIR/<learner>`, measuring at the start (and end) of every task

* the Hessian spectrum by SLQ (`curvature.spectrum_summary`: order `--order`, `--draws` probe vectors, on
  `--probe_size` examples of the task), whose epsilon-ranks are NaN where eps is not resolved at that order, and
* the exact GGN spectrum of the first `--exact_ggn_probe_size` probe examples (`curvature.gauss_newton`: every
  eigenvalue, so the epsilon-rank is exact at every eps above float32 round-off),

then prints, for both, the R^2 of the task's online accuracy on the epsilon-rank at its start over the WHOLE epsilon
sweep (pooled over learners and per learner, with the number of points; no epsilon is picked after the fact), the
epsilon-rank at the first and last measured tasks per learner, and writes the figures (spectra of the first and last
tasks side by side; rank vs accuracy at the smallest resolved eps) to WORKDIR/figures.

    python scripts/reproduce_spectral_collapse.py --workdir=/tmp/collapse --data_dir=../shared/data

The measured outcome and its command are recorded in docs/curvature.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from plasticity_jax import analysis, curvature, engine, results  # noqa: E402
from plasticity_jax import config as config_lib  # noqa: E402

LEARNERS = ('backprop', 'l2', 'l2_er', 'cbp')


def run_learner(learner: str, args) -> results.Run:
    config = config_lib.load(os.path.join(REPO_ROOT, 'configs', f'permuted_mnist.py:{learner},lr0.01'))
    config.unlock()
    config.num_seeds = args.num_seeds
    config.num_tasks = args.num_tasks
    # Chunks of equal length: one compiled program (the largest divisor of num_tasks up to the config's chunk).
    config.tasks_per_chunk = max(k for k in range(1, min(config.tasks_per_chunk, args.num_tasks) + 1)
                                 if args.num_tasks % k == 0)
    config.problem.examples_per_task = args.examples_per_task
    config.model.width = args.width
    config.data_dir = args.data_dir
    config.curvature.update({'every_tasks': args.every_tasks, 'probe_size': args.probe_size,
                             'chunk_size': args.probe_size, 'order': args.order, 'draws': args.draws,
                             'exact_ggn_probe_size': args.exact_ggn_probe_size})
    workdir = os.path.join(args.workdir, learner)
    start = time.perf_counter()
    engine.run(config, workdir, progress=False)
    print(f'{learner}: {time.perf_counter() - start:.0f} s (0 if it had finished before)', flush=True)
    return results.load_run(workdir)


def summarize(runs: dict[str, results.Run], out: str) -> None:
    pd.set_option('display.width', 200)
    for kind in ('hessian', 'ggn_exact'):
        fits = analysis.rank_performance_fits(runs, 'online_accuracy', kind=kind)
        table = analysis.curvature_table(runs, kind=kind, all_epsilons=True)
        print(f'\n{kind}: R^2 of the online accuracy of task t on the epsilon-rank at the start of task t')
        print(fits.pivot_table(index='epsilon', columns='group', values=['r2', 'n'], sort=False).round(3)
              .to_string())
        first, last = table['task'].min(), table['task'].max()
        ends = table[table['task'].isin([first, last])].groupby(['epsilon', 'label', 'task'], sort=False)
        print(f'{kind}: epsilon-rank (mean over seeds) at the start of tasks {first} and {last}')
        print(ends['epsilon_rank'].mean().unstack(['label', 'task']).to_string(float_format='{:.3g}'.format))
        fig = analysis.plot_rank_vs_performance(runs, 'online_accuracy', kind=kind).figure
        print('written:', *analysis.save_figure(fig, os.path.join(out, f'{kind}_rank_vs_online_accuracy')))
    measured = analysis.curvature_table(runs)['task']
    fig = analysis.plot_spectra(runs, [int(measured.min()), int(measured.max())])
    print('written:', *analysis.save_figure(fig, os.path.join(out, 'hessian_spectra_first_last')))
    fig = plot_exact_ggn_spectra(runs)
    print('written:', *analysis.save_figure(fig, os.path.join(out, 'ggn_exact_spectra_first_last')))
    fig = plot_ranks_over_tasks(runs)
    print('written:', *analysis.save_figure(fig, os.path.join(out, 'epsilon_rank_over_tasks')))


def plot_exact_ggn_spectra(runs: dict[str, results.Run]):
    """Exact GGN eigenvalue histograms (seed mean of the counts per quarter-decade bin) at the start of the first
    and the last measured task, a panel per learner: the poster's Fig. 2 with every eigenvalue instead of a
    smoothed estimate."""
    edges = np.asarray(curvature.HISTOGRAM_EDGES)
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 3.0), layout='constrained', sharey=True,
                             squeeze=False)
    exact = analysis.curvature_table(runs, kind='ggn_exact')
    for ax, (label, run) in zip(axes[0], runs.items()):
        hist = np.asarray(run.metrics['ggn_exact_histogram'])[:, :, 0]  # (seed, task, bin): start of the task
        tasks = sorted(exact[exact['label'] == label]['task'].unique())
        for task, style in ((tasks[0], '-'), (tasks[-1], '--')):
            counts = hist[:, task].mean(0)
            ax.stairs(counts, edges, linestyle=style, label=f'start of task {task}')
            print(f'{label}: exact GGN eigenvalues per quarter-decade bin from {edges[0]:g}, seed mean, start of '
                  f'task {task}:', np.round(counts, 1).tolist())
        ax.set_xscale('log')
        ax.set_title(label)
        ax.set_xlabel('GGN eigenvalue')
        ax.grid(alpha=0.3)
        ax.legend(fontsize='x-small', frameon=False)
    axes[0][0].set_ylabel('eigenvalues per quarter decade')
    fig.suptitle('Exact GGN spectrum of the probe set (dual Gram matrix), mean over seeds')
    return fig


def plot_ranks_over_tasks(runs: dict[str, results.Run]):
    """Online accuracy per task and the epsilon-ranks at the start of the measured tasks (mean +- 1 s.e. over
    seeds): the Hessian's and the exact GGN's, each at its smallest eps resolved in every measurement (the
    analysis default, fixed before looking at the correlations)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), layout='constrained')
    for label, run in runs.items():
        accuracy = np.asarray(run.metrics['online_accuracy'], dtype=float)  # (seed, task)
        mean = accuracy.mean(0)
        axes[0].plot(np.arange(len(mean)), mean, label=label)
    axes[0].set_xlabel('task')
    axes[0].set_ylabel('online accuracy on the task')
    for ax, kind, name in ((axes[1], 'hessian', 'Hessian (SLQ, resolved)'), (axes[2], 'ggn_exact', 'exact GGN')):
        table = analysis.curvature_table(runs, kind=kind)
        eps = float(table['epsilon'].iloc[0])
        for label, part in table.groupby('label', sort=False):
            stats = part.groupby('task')['epsilon_rank'].agg(['mean', 'sem'])
            ax.errorbar(stats.index, stats['mean'], yerr=stats['sem'], marker='o', ms=3, capsize=2, label=label)
        ax.set_xlabel('start of task')
        ax.set_ylabel(f'{name} epsilon-rank / parameters\n(eps = {eps:g})')
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize='small', frameon=False)
    seeds = sorted({np.shape(run.metrics['online_accuracy'])[0] for run in runs.values()})
    fig.suptitle(f'Mean over {"/".join(map(str, seeds))} seeds per learner; error bars +-1 s.e. over the seeds whose '
                 'epsilon-rank is resolved at that task')
    return fig


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', required=True, help='parent of the runs (resumable)')
    parser.add_argument('--data_dir', default=None, help='folder with mnist/ IDX files (else TFDS)')
    parser.add_argument('--learners', default=','.join(LEARNERS), help=f'comma-separated, from {LEARNERS}')
    parser.add_argument('--num_seeds', type=int, default=3)
    parser.add_argument('--num_tasks', type=int, default=16)
    parser.add_argument('--examples_per_task', type=int, default=5000)
    parser.add_argument('--width', type=int, default=100)
    parser.add_argument('--probe_size', type=int, default=500)
    parser.add_argument('--every_tasks', type=int, default=1, help='measure at the start of every k-th task')
    parser.add_argument('--order', type=int, default=64)
    parser.add_argument('--draws', type=int, default=1)
    parser.add_argument('--exact_ggn_probe_size', type=int, default=100)
    parser.add_argument('--summarize_only', action='store_true', help='only read the finished runs')
    args = parser.parse_args()
    learners = args.learners.split(',')
    unknown = [name for name in learners if name not in LEARNERS]
    if unknown:
        parser.error(f'unknown learners {unknown}; valid: {LEARNERS}')
    if args.summarize_only:
        try:
            runs = {name: results.load_run(os.path.join(args.workdir, name)) for name in learners}
        except FileNotFoundError as error:
            parser.error(f'--summarize_only reads finished runs: {error} (run without --summarize_only first)')
    else:
        runs = {name: run_learner(name, args) for name in learners}
    summarize(runs, os.path.join(args.workdir, 'figures'))


if __name__ == '__main__':
    main()
