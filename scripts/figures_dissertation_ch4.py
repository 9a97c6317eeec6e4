"""The headline figures of Dohare's dissertation, Chapter 4 (Online Permuted MNIST), from runs of this codebase.

    python scripts/figures_dissertation_ch4.py --scale=full --out=figures/ch4     # accelerator: the published setup
    python scripts/figures_dissertation_ch4.py --scale=cpu --out=figures/ch4_cpu  # 2-core CPU (estimated 15-30 min)
    python scripts/figures_dissertation_ch4.py --scale=smoke --out=/tmp/ch4       # a check that it all works, ~3 min

Runs the experiments (or resumes / reuses the ones already in `--runs`, default OUT/runs/SCALE) with
`engine.run` and the variants of `configs/permuted_mnist.py`, then draws with `plasticity_jax.analysis` (PNG and PDF,
mean over seeds with +-1 standard error shaded, tasks averaged in bins):

  fig4_2_step_sizes          online accuracy vs task, SGD step sizes 0.01 / 0.003 / 0.001 (one sweep program)
  fig4_2b_step_size_sweep    the same runs: accuracy averaged over all tasks vs step size
  fig4_3_widths              widths 100 / 1,000 / 10,000 (150 tasks; step size 0.003 for every width: the
                             dissertation only says "good step sizes for each network")
  fig4_4_switch_intervals    a new permutation every 10k / 100k / 1M examples, 48M examples in all, vs examples seen
  fig4_5_dead_units          dead units (% of all hidden units) of the Fig. 4.2 runs
  fig4_6_weight_magnitude    average weight magnitude of the Fig. 4.2 runs
  fig4_7_effective_rank      effective rank (mean over the three hidden layers) of the Fig. 4.2 runs
  fig4_8_methods             backprop, L2, Shrink and Perturb, Dropout (p = 0.1), Online Normalization (step size
                             0.003) and Adam (step size 1e-4); hyperparameters: the learners' defaults
  fig4_9_methods_correlates  their dead units, weight magnitude and effective rank of the last hidden layer

Scales (`SCALES`): `full` is the dissertation's setup (30 seeds, 800 tasks of 60,000 examples, 3 x 2000 units;
days of accelerator time for all runs); `cpu` keeps every figure's comparison with smaller widths, fewer examples
and seeds (3 seeds, 30 tasks of 2,000 examples, width 100, widths 25/100/400, switches every 500/2,000/6,000 of
60,000 examples); `smoke` is a few tasks of a few hundred examples, to check the pipeline.
MNIST: `--data_dir` (default $PLASTICITY_JAX_DATA_DIR) with the four IDX files, else TensorFlow Datasets.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import matplotlib  # noqa: E402

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402

from plasticity_jax import engine  # noqa: E402
from plasticity_jax.analysis import plots  # noqa: E402
from plasticity_jax.main import _load_config_file  # noqa: E402
from plasticity_jax.results import load_run  # noqa: E402

CONFIG = os.path.join(REPO_ROOT, 'configs', 'permuted_mnist.py')


@dataclasses.dataclass(frozen=True)
class Scale:
    seeds: int
    num_tasks: int  # Figs. 4.2 and 4.5-4.9
    examples_per_task: int
    width: int
    widths: tuple[int, int, int]  # Fig. 4.3
    width_tasks: int
    switches: tuple[int, int, int]  # Fig. 4.4: examples per task ...
    switch_total: int  # ... and examples in all
    probe_size: int
    bins: int
    tasks_per_chunk: int


SCALES = {
    'full': Scale(seeds=30, num_tasks=800, examples_per_task=60_000, width=2000, widths=(100, 1000, 10_000),
                  width_tasks=150, switches=(10_000, 100_000, 1_000_000), switch_total=48_000_000, probe_size=2000,
                  bins=80, tasks_per_chunk=10),
    'cpu': Scale(seeds=3, num_tasks=30, examples_per_task=2000, width=100, widths=(25, 100, 400), width_tasks=30,
                 switches=(500, 2000, 6000), switch_total=60_000, probe_size=500, bins=15, tasks_per_chunk=10),
    'smoke': Scale(seeds=2, num_tasks=4, examples_per_task=200, width=16, widths=(8, 16, 32), width_tasks=4,
                   switches=(100, 200, 400), switch_total=800, probe_size=100, bins=4, tasks_per_chunk=4),
}

# Fig. 4.8's methods: label -> config variants (all at step size 0.003 but Adam, whose variant sets 1e-4).
METHODS = {'Backprop': 'lr0.003', 'L2': 'lr0.003,l2', 'Shrink and Perturb': 'lr0.003,shrink_perturb',
           'Dropout (p = 0.1)': 'lr0.003,dropout', 'Online Norm': 'lr0.003,online_norm', 'Adam': 'adam'}


def experiments(scale: Scale) -> dict[str, tuple[str, dict]]:
    """Run name -> (config variants, overrides of the scale's defaults)."""
    runs = {'step_sizes': ('sweep_lr', {})}
    runs.update({f'width{w}': ('lr0.003', {'model.width': w, 'num_tasks': scale.width_tasks}) for w in scale.widths})
    runs.update({f'switch{s}': ('lr0.003', {'problem.examples_per_task': s, 'num_tasks': scale.switch_total // s})
                 for s in scale.switches})
    runs.update({f'method_{v.replace(",", "_")}': (v, {}) for v in METHODS.values()})
    return runs


# Figure -> the runs it needs (by name prefix).
FIGURES = {'4.2': ['step_sizes'], '4.3': ['width'], '4.4': ['switch'], '4.5': ['step_sizes'],
           '4.6': ['step_sizes'], '4.7': ['step_sizes'], '4.8': ['method'], '4.9': ['method']}


def make_config(scale: Scale, variants: str, overrides: dict, data_dir: str):
    config = _load_config_file(f'{CONFIG}:{variants}')
    config.unlock()
    config.num_seeds = scale.seeds
    config.num_tasks = scale.num_tasks
    config.tasks_per_chunk = scale.tasks_per_chunk
    config.problem.examples_per_task = scale.examples_per_task
    config.model.width = scale.width
    config.metrics.probe_size = scale.probe_size
    config.data_dir = data_dir
    for name, value in overrides.items():
        node = config
        *path, leaf = name.split('.')
        for field in path:
            node = node[field]
        node[leaf] = value
    config.tasks_per_chunk = min(config.tasks_per_chunk, config.num_tasks)
    return config


def run_all(scale: Scale, runs_dir: str, data_dir: str, names) -> dict:
    out = {}
    for name in names:
        variants, overrides = experiments(scale)[name]
        config = make_config(scale, variants, overrides, data_dir)
        workdir = os.path.join(runs_dir, name)
        start = time.perf_counter()
        engine.run(config, workdir, progress=True)
        print(f'{name}: {config.num_seeds} seeds x {config.num_tasks} tasks of '
              f'{config.problem.examples_per_task} examples, width {config.model.width}: '
              f'{time.perf_counter() - start:.0f} s', flush=True)
        out[name] = load_run(workdir)
    return out


def draw(scale: Scale, runs: dict, out: str, figures) -> list[str]:
    written = []
    bins = scale.bins

    def save(fig, name):
        written.extend(plots.save_figure(fig, os.path.join(out, name)))
        plt.close(fig)

    def title(ax, text):
        ax.set_title(text, fontsize='medium')
        return ax.figure

    if '4.2' in figures:
        ax = plots.plot_metric(runs['step_sizes'], 'online_accuracy', bins)
        save(title(ax, 'Fig. 4.2: backprop, step sizes'), 'fig4_2_step_sizes')
        ax = plots.plot_sweep(runs['step_sizes'], 'online_accuracy', 'learner.step_size')
        save(title(ax, 'Fig. 4.2 runs: accuracy vs step size'), 'fig4_2b_step_size_sweep')
    if '4.3' in figures:
        widths = {f'width {w}': runs[f'width{w}'] for w in scale.widths}
        ax = plots.plot_metric(widths, 'online_accuracy', min(bins, scale.width_tasks))
        save(title(ax, 'Fig. 4.3: network width (step size 0.003)'), 'fig4_3_widths')
    if '4.4' in figures:
        switches = {f'switch every {s:,} examples': runs[f'switch{s}'] for s in scale.switches}
        ax = plots.plot_metric(switches, 'online_accuracy', bins, x='examples')
        save(title(ax, 'Fig. 4.4: task-switch interval'), 'fig4_4_switch_intervals')
    for number, metric, name in (('4.5', 'dead_fraction', 'dead_units'), ('4.6', 'weight_magnitude',
                                 'weight_magnitude'), ('4.7', 'effective_rank', 'effective_rank')):
        if number in figures:
            ax = plots.plot_metric(runs['step_sizes'], metric, bins)
            save(title(ax, f'Fig. {number}: backprop, step sizes'), f'fig{number.replace(".", "_")}_{name}')
    methods = {label: runs[f'method_{v.replace(",", "_")}'] for label, v in METHODS.items()}
    if '4.8' in figures:
        ax = plots.plot_metric(methods, 'online_accuracy', bins)
        save(title(ax, 'Fig. 4.8: existing methods'), 'fig4_8_methods')
    if '4.9' in figures:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout='constrained')
        colors = plots._colors(list(methods))
        for ax, metric, layer in zip(axes, ('dead_fraction', 'weight_magnitude', 'effective_rank'),
                                     ('mean', 'mean', 'last')):
            plots.plot_metric(methods, metric, bins, ax=ax, layer=layer, colors=colors)
            ax.get_legend().remove()
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc='outside lower center', ncols=len(labels), frameon=False, fontsize='small')
        fig.suptitle('Fig. 4.9: correlates of plasticity loss, existing methods')
        save(fig, 'fig4_9_methods_correlates')
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--scale', choices=sorted(SCALES), default='cpu')
    parser.add_argument('--out', required=True, help='Folder of the figures.')
    parser.add_argument('--runs', default=None, help='Folder of the runs (default OUT/runs/SCALE); reused.')
    parser.add_argument('--figures', default=','.join(FIGURES), help='Comma-separated, e.g. 4.2,4.5')
    parser.add_argument('--data_dir', default=os.environ.get('PLASTICITY_JAX_DATA_DIR', ''))
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    figures = args.figures.split(',')
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        parser.error(f'unknown figures {unknown}; valid: {list(FIGURES)}')
    needed = [name for name in experiments(scale)
              if any(name.startswith(prefix) for fig in figures for prefix in FIGURES[fig])]
    runs = run_all(scale, args.runs or os.path.join(args.out, 'runs', args.scale), args.data_dir, needed)
    for path in draw(scale, runs, args.out, figures):
        print(path)


if __name__ == '__main__':
    main()
