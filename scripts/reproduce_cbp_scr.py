"""Reproduction: continual backprop keeps plasticity on Slowly-Changing Regression, where backprop loses it.

Dohare et al. (Nature 2024, Extended Data; Dohare, Sutton & Mahmood 2021, Fig. 3): on Slowly-Changing Regression
(5 ReLU units, SGD with step size 0.01, 100 tasks of 10,000 examples) backprop's online error first falls, then rises
over the tasks as units die, while continual backprop's stays low. This script runs the papers' full-size problem
(`configs/slowly_changing_regression.py`, every seed in one compiled program) for each learner named in `--runs` and
prints the mean online MSE per bin of tasks (mean over seeds, and its standard error), plus the dead-unit fraction.

    python scripts/reproduce_cbp_scr.py                                  # backprop vs cbp, 8 seeds, ~1-2 min
    python scripts/reproduce_cbp_scr.py --num_seeds=30 --runs=backprop,cbp,cbp_contribution,cbp_mt10

Runs (`RUNS`): config variants of `configs/slowly_changing_regression.py` plus learner fields.
  backprop          relu,lr0.01
  cbp               relu,lr0.01,cbp: the `cbp` learner's defaults (adaptable_contribution, eta 0.99, m 100, 1e-4)
  cbp_contribution  cbp with the Nature paper's contribution utility
  cbp_mt10          cbp with maturity threshold 10: what the papers' SCR code runs (`expr.py` reads `mt`, default
                    10; the `maturity_threshold: 100` of `cfg/sgd/cbp/relu.json` is never read)
  cbp_rate1e-3      cbp with replacement rate 1e-3 (one value of the SCR config's sweep, 1e-6 ... 1e-2)
  redo              relu,lr0.01,redo (tau 0.1, every 1000 updates)

Measured (2 shared CPU cores, `--num_seeds=30`, 64 s for backprop and 207 s for cbp under heavy load; 8 seeds take
about 20 s and 30-60 s): mean online MSE per 10 tasks

  backprop  0.97 1.05 1.10 1.18 1.24 1.28 1.36 1.36 1.61 1.50   (dead units 0.30 -> 0.73)
  cbp       0.72 0.63 0.63 0.65 0.66 0.62 0.61 0.66 0.79 0.72   (dead units ~0.05; 495 units replaced per run)

Backprop's error rises by half over the 100 tasks; continual backprop's stays at its early level (the bump in tasks
80-99 is in backprop's curve too: those tasks are harder for these seeds), i.e. 0.74 of backprop's error in the
first bin and 0.48 in the last. The other runs (8 seeds) behave like `cbp`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from plasticity_jax import engine  # noqa: E402
from plasticity_jax.config import load as load_config  # noqa: E402

CONFIG = os.path.join(REPO_ROOT, 'configs', 'slowly_changing_regression.py')

RUNS = {
    'backprop': ('relu,lr0.01', {}),
    'cbp': ('relu,lr0.01,cbp', {}),
    'cbp_contribution': ('relu,lr0.01,cbp', {'utility': 'contribution'}),
    'cbp_mt10': ('relu,lr0.01,cbp', {'maturity_threshold': 10}),
    'cbp_rate1e-3': ('relu,lr0.01,cbp', {'replacement_rate': 1e-3}),
    'redo': ('relu,lr0.01,redo', {}),
}


def run(name: str, num_seeds: int, num_tasks: int, examples_per_task: int, seed: int):
    variants, learner_fields = RUNS[name]
    config = load_config(f'{CONFIG}:{variants}')
    config.unlock()
    config.update({'num_seeds': num_seeds, 'num_tasks': num_tasks, 'seed': seed})
    config.problem.examples_per_task = examples_per_task
    config.learner.update(learner_fields)
    train = engine.make_train(config)
    state = jax.jit(jax.vmap(train.init))(engine.seed_keys(config))
    start = time.perf_counter()
    state, metrics = engine.make_vmapped(train)(state, num_tasks)
    metrics = jax.device_get(metrics)
    elapsed = time.perf_counter() - start
    replaced = None
    if hasattr(state.learner_state, 'num_recycled'):
        replaced = np.asarray(state.learner_state.num_recycled[0])
    elif isinstance(state.learner_state, tuple) and state.learner_state:
        replaced = np.asarray(state.learner_state[0].num_replaced)
    return metrics, elapsed, replaced


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', default='backprop,cbp', help=f'comma-separated, from {sorted(RUNS)}')
    parser.add_argument('--num_seeds', type=int, default=8)
    parser.add_argument('--num_tasks', type=int, default=100)
    parser.add_argument('--examples_per_task', type=int, default=10_000)
    parser.add_argument('--bin', type=int, default=10, help='tasks per bin')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    names = args.runs.split(',')
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f'unknown runs {unknown}; valid: {sorted(RUNS)}')
    bins = range(0, args.num_tasks, args.bin)
    print(f'Slowly-Changing Regression, {args.num_seeds} seeds, {args.num_tasks} tasks x {args.examples_per_task} '
          f'examples; mean online MSE per bin of {args.bin} tasks (+- standard error over seeds)')
    results = {}
    for name in names:
        metrics, elapsed, replaced = run(name, args.num_seeds, args.num_tasks, args.examples_per_task, args.seed)
        mse = metrics['online_mse']  # (seeds, tasks)
        per_bin = np.stack([mse[:, b:b + args.bin].mean(axis=1) for b in bins], axis=1)  # (seeds, bins)
        dead = metrics['dead_fraction'][..., 0]
        results[name] = per_bin
        extra = f', units replaced per seed {replaced.mean():.0f}' if replaced is not None else ''
        print(f'\n{name} ({RUNS[name][0]}{", " + str(RUNS[name][1]) if RUNS[name][1] else ""}): '
              f'{elapsed:.1f} s{extra}')
        print('  tasks  ' + ' '.join(f'{b:>4d}-{min(b + args.bin, args.num_tasks) - 1:<4d}' for b in bins))
        print('  MSE    ' + ' '.join(f'{m:9.4f}' for m in per_bin.mean(axis=0)))
        print('  +-     ' + ' '.join(f'{s:9.4f}' for s in per_bin.std(axis=0, ddof=1) / np.sqrt(args.num_seeds)))
        print('  dead   ' + ' '.join(f'{dead[:, b:b + args.bin].mean():9.3f}' for b in bins))
    print('\nsecond bin (early) vs last bin (late), and vs backprop on the same seeds and tasks:')
    for name, per_bin in results.items():
        early, late = per_bin[:, 1].mean(), per_bin[:, -1].mean()
        line = f'  {name:18s} early {early:.4f}  late {late:.4f}  late / early {late / early:.2f}'
        if 'backprop' in results and name != 'backprop':
            ratio = per_bin.mean(axis=0) / results['backprop'].mean(axis=0)
            line += '  / backprop per bin: ' + ' '.join(f'{r:.2f}' for r in ratio)
        print(line)


if __name__ == '__main__':
    main()
