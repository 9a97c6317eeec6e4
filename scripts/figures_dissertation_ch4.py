"""The headline figures of Dohare's dissertation, Chapter 4 (Online Permuted MNIST), from runs of this codebase.

    python scripts/figures_dissertation_ch4.py --scale=full --out=figures/ch4     # accelerator: the published setup
    python scripts/figures_dissertation_ch4.py --scale=cpu --out=figures/ch4_cpu  # 2-core CPU, ~35 min (measured below)
    python scripts/figures_dissertation_ch4.py --scale=smoke --out=/tmp/ch4       # a check that it all works (below)

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
                             0.003) and Adam (step size 1e-4); hyperparameters: the learners' defaults, but the
                             weight decay of L2 and Shrink and Perturb at `--scale=cpu` (1e-3, see below)
  fig4_9_methods_correlates  their dead units (% of all hidden units), average weight magnitude and effective rank
                             of the last hidden layer

An experiment that repeats another (width 100, switches every 2,000 examples and backprop in Fig. 4.8 are all the
step-size sweep's 0.003 point at `--scale=cpu`) runs once and is reused.

Scales (`SCALES`): `full` is the dissertation's setup (30 seeds, 800 tasks of 60,000 examples, 3 x 2000 units;
days of accelerator time for all runs); `cpu` keeps every figure's comparison with smaller widths, fewer examples
and seeds (3 seeds, 30 tasks of 2,000 examples, width 100, widths 25/100/400, switches every 500/2,000/6,000 of
60,000 examples, weight decay 1e-3 for L2 and Shrink and Perturb); `smoke` is a few tasks of a few hundred
examples, to check the pipeline: 104 s of CPU time, 12 minutes of wall-clock time on the 2-core machine at load
average 21-32 (measured 2026-12-01; compiling the 10 experiments' programs is most of it).
MNIST: `--data_dir` (default $PLASTICITY_JAX_DATA_DIR) with the four IDX files, else downloaded into the cache.

Why weight decay 1e-3 at `--scale=cpu`: the learners' default, 1e-4 (the dissertation's released configs), pulls the
weights in over about 1 / (step size x weight decay) = 3.3M updates, and a cpu-scale run has 60,000. With it (first
cpu run, 2026-11-21) L2 and Shrink and Perturb were indistinguishable from backprop: weight magnitude 0.056 -> 0.064
(backprop 0.065), last two tasks 74.4 / 74.7% (+- 0.5) vs 73.5 +- 0.5%. 1e-3 (the top of the released L2 sweep
{1e-3, 1e-4, 1e-5}) acts over 333k updates; a sweep at this scale gave weight magnitude flat at 0.056 for 1e-3,
falling to 0.047 for 3e-3 and 0.026 for 1e-2, with the same accuracy (76.0-76.6% over the last 3 tasks) and an
effective rank falling faster the larger the decay (36.8 / 32.8 / 19.4 over the last 3 tasks, mean over layers).

Measured at --scale=cpu (2026-11-21): `--out=/tmp/ch4_cpu --data_dir=../shared/data`, 2 cores shared with other
jobs (load average 4-7). Run times: step-size sweep 176 s, width 25 29 s, width 400 391 s, switches every 500 393 s
(120 tasks; per-task metrics dominate), every 6,000 99 s, L2 185 s, Shrink and Perturb 377 s (noise every step),
Dropout 113 s, Online Norm 99 s, Adam 118 s: 33 min in all (39 min before width 100 / switch 2,000 / backprop were
reused from the sweep). Accuracy quoted as the mean over 3 seeds of the 15 bins of 2 tasks (first bin -> best bin ->
last bin, +- s.e. of the last):
  Fig. 4.2   step size 0.01: 72.7% -> 75.5% (tasks 3-4) -> 69.8 +- 0.2%; 0.003: 68.8 -> 76.5 (tasks 7-8) -> 73.5
             +- 0.5; 0.001: 51.0 -> 71.5 (tasks 15-16) -> 70.4 +- 0.7. The published pattern: a rise over the first
             tasks, then a steady fall, fastest for 0.01 (-5.7 points from its peak); 0.001 is still near its peak.
             Fig. 4.2b: mean over all tasks 69.1 / 74.8 / 72.1% for 0.001 / 0.003 / 0.01 (0.003 best, as published).
             Accuracies are lower than the dissertation's ~93% because a task has 2,000 examples, not 60,000.
  Fig. 4.3   width 25: 58.2 -> 73.7 (tasks 5-6) -> 66.1 +- 0.3; 100: peak 76.5 -> 73.5; 400: 72.6 -> 78.4 -> 77.9
             +- 0.5. Smaller networks lose plasticity faster; width 400 shows no decline in 60,000 examples.
  Fig. 4.4   switches every 500: 50.7 -> 58.7 (tasks 9-16) -> 55.2 +- 0.5; 2,000: 76.5 -> 73.5; 6,000 (10 tasks):
             78.6 -> 84.7 (task 3) -> 82.9 +- 0.5. Faster switching, larger and earlier drop, as published.
  Figs 4.5-4.7 (first -> last bin, 0.01 / 0.003 / 0.001): dead units 0.8 -> 12.2% / 1.2 -> 4.9% / 0.6 -> 4.3%
             (0.001 peaks at 5.7% in tasks 7-8); weight magnitude 0.056 -> 0.084 / 0.056 -> 0.065 / 0.056 -> 0.058;
             effective rank (mean of 3 layers) 55.4 -> 29.7 / 52.7 -> 33.7 / 54.7 -> 35.7. Dead units and weight
             magnitude up, effective rank down, as published; clearest for 0.01 (for 0.003 / 0.001 dead units
             stay at 3-6% after the first tasks).
  Fig. 4.8   peak -> last bin: Backprop 76.5 -> 73.5 +- 0.5; L2 76.7 -> 74.9 +- 0.1; Shrink and Perturb 76.4 ->
             74.9 +- 0.7; Dropout 70.0 -> 64.5 +- 0.9; Online Norm 66.1 (first) -> 70.7 (tasks 19-20) -> 70.2 +- 0.5;
             Adam 75.1 (tasks 3-4) -> 71.8 +- 1.1. L2 and S&P end above backprop and Dropout / Adam lose the most,
             as published, but at this scale the L2 / S&P advantage is small (1.4 points, only in the last ~4 tasks)
             and all three still decline a little. Online Norm (these runs: forward pass only, i.e. alpha_b = 1,
             before its backward control process existed) starts lower and rises (published: better early, worse
             late). Rerun with the control process (alpha_b 0.99, the default now; same scale, 3 seeds; the
             backprop run alongside it): first bin 70.8 vs backprop 68.8, peak 77.0 (tasks 5-6) vs 76.5, last bin
             75.0 vs 73.5; effective rank 57 -> 61 vs 57 -> 35, dead units 0.0 vs 5.0% at the end: better early, as
             published; 60,000 examples are too few to see its later fall.
  Fig. 4.9   weight magnitude: L2 and S&P flat at 0.056 (backprop 0.065, Dropout 0.065, Adam 0.061, Online Norm
             0.071); dead units at the end 4.7-5.6% for all but Online Norm (0.1%) and Adam (3.6%); effective rank of
             the last hidden layer 44.5 -> 32.7 (backprop), -> 29.3 (L2), -> 28.7 (S&P), -> 36.3 (Dropout), -> 26.7
             (Adam), Online Norm 42 -> 43.9. As published, L2 / S&P stop the weight growth but not the fall of the
             effective rank (theirs is lower than backprop's).
  Longer runs widen the Fig. 4.8 gap: backprop vs L2 (weight decay 1e-3) at this scale but 60 tasks (one sweep over
  weight decay {0, 1e-3}, 207 s; 15 bins of 4 tasks): backprop 76.4 (tasks 5-8) -> 71.9 +- 0.3%, L2 76.4 -> 74.5 +-
  0.1%; weight magnitude 0.056 -> 0.071 vs 0.056 -> 0.054; dead units 2.3 -> 10.6% vs 2.3 -> 8.0%. Running all six
  methods for 60 tasks would add about 15 min, beyond this scale's budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from plasticity_jax.config import load as load_config  # noqa: E402
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
    # Fig. 4.8: weight_decay of L2 and Shrink and Perturb (None: the learners' default, 1e-4). Their pull on the
    # weights acts over about 1 / (step size x weight_decay) updates, 3.3M at 1e-4, far beyond a short run.
    regularizer_weight_decay: float | None = None


SCALES = {
    'full': Scale(seeds=30, num_tasks=800, examples_per_task=60_000, width=2000, widths=(100, 1000, 10_000),
                  width_tasks=150, switches=(10_000, 100_000, 1_000_000), switch_total=48_000_000, probe_size=2000,
                  bins=80, tasks_per_chunk=10),
    'cpu': Scale(seeds=3, num_tasks=30, examples_per_task=2000, width=100, widths=(25, 100, 400), width_tasks=30,
                 switches=(500, 2000, 6000), switch_total=60_000, probe_size=500, bins=15, tasks_per_chunk=10,
                 regularizer_weight_decay=1e-3),
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
    runs.update({method_run(scale, v): (v, method_overrides(scale, v)) for v in METHODS.values()})
    return runs


def method_overrides(scale: Scale, variants: str) -> dict:
    regularized = {'l2', 'shrink_perturb'} & set(variants.split(','))
    if regularized and scale.regularizer_weight_decay is not None:
        return {'learner.weight_decay': scale.regularizer_weight_decay}
    return {}


def method_run(scale: Scale, variants: str) -> str:
    """The run name of a Fig. 4.8 method, e.g. 'method_lr0.003_l2' (with '_wd0.001' where the scale overrides
    the weight decay, so that runs of the learners' defaults are never mistaken for these)."""
    name = f'method_{variants.replace(",", "_")}'
    overrides = method_overrides(scale, variants)
    return name + (f'_wd{overrides["learner.weight_decay"]:g}' if overrides else '')


def method_label(scale: Scale, label: str, variants: str) -> str:
    overrides = method_overrides(scale, variants)
    return label + (f' (weight decay {overrides["learner.weight_decay"]:g})' if overrides else '')


# Figure -> the runs it needs (by name prefix).
FIGURES = {'4.2': ['step_sizes'], '4.3': ['width'], '4.4': ['switch'], '4.5': ['step_sizes'],
           '4.6': ['step_sizes'], '4.7': ['step_sizes'], '4.8': ['method'], '4.9': ['method']}


def make_config(scale: Scale, variants: str, overrides: dict, data_dir: str):
    config = load_config(f'{CONFIG}:{variants}')
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


def _experiment_keys(config) -> list[str]:
    """What identifies the experiment(s) `config` runs: one key per sweep point (the config with the point's values
    and no sweep), or one key without a sweep. Equal keys are the same computation (same seeds, same data)."""
    flat = {}

    def flatten(node, prefix):
        for name, value in node.items():
            if hasattr(value, 'items'):
                flatten(value, f'{prefix}{name}.')
            else:
                flat[f'{prefix}{name}'] = tuple(value)

    flatten(config.sweep, '')
    base = json.loads(config.to_json_best_effort())
    base.pop('sweep', None)
    points = [{}] if not flat else [{f: v[i] for f, v in flat.items()} for i in range(len(next(iter(flat.values()))))]
    keys = []
    for values in points:
        point = json.loads(json.dumps(base))
        for field, value in values.items():
            *path, leaf = field.split('.')
            node = point
            for part in path:
                node = node[part]
            node[leaf] = value
        keys.append(json.dumps(point, sort_keys=True))
    return keys


def run_all(scale: Scale, runs_dir: str, data_dir: str, names) -> dict:
    """Runs (or reuses) each named experiment. One that repeats an experiment already run here (e.g. width 100 at
    step size 0.003 is also a point of the step-size sweep) is taken from that run instead of being run again."""
    out, done = {}, {}  # done: experiment key -> (Run, where it came from)
    for name in names:
        variants, overrides = experiments(scale)[name]
        config = make_config(scale, variants, overrides, data_dir)
        keys = _experiment_keys(config)
        if not config.sweep and keys[0] in done:
            out[name], source = done[keys[0]]
            print(f'{name}: the same experiment as {source}, reused', flush=True)
            continue
        workdir = os.path.join(runs_dir, name)
        earlier = (os.path.exists(os.path.join(workdir, engine.METRICS_FILE))
                   and load_run(workdir).num_tasks_done >= config.num_tasks)
        start = time.perf_counter()
        engine.run(config, workdir, progress=True)  # refuses a workdir that holds a different experiment
        print(f'{name}: {config.num_seeds} seeds x {config.num_tasks} tasks of '
              f'{config.problem.examples_per_task} examples, width {config.model.width}: '
              + ('finished earlier, reused' if earlier else f'{time.perf_counter() - start:.0f} s'), flush=True)
        out[name] = load_run(workdir)
        if out[name].sweep:
            for index, key in enumerate(keys):
                done.setdefault(key, (out[name].point(index), f'{name} (sweep point {index})'))
        else:
            done.setdefault(keys[0], (out[name], name))
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

    if 'step_sizes' in runs:  # the sweep's points, labelled 'step size 0.01', ...
        sweep = runs['step_sizes']
        steps = {f'step size {value:g}': sweep.point(index)
                 for index, value in enumerate(sweep.sweep['learner.step_size'])}
    if '4.2' in figures:
        ax = plots.plot_metric(steps, 'online_accuracy', bins)
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
            ax = plots.plot_metric(steps, metric, bins)
            save(title(ax, f'Fig. {number}: backprop, step sizes'), f'fig{number.replace(".", "_")}_{name}')
    methods = {method_label(scale, label, v): runs[method_run(scale, v)] for label, v in METHODS.items()
               if method_run(scale, v) in runs}
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
