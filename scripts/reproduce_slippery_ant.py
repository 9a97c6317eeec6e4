"""Reproduction: loss of plasticity in Slippery Ant, standard PPO vs continual backprop + L2, per friction segment.

Dohare et al. (Nature 2024, Fig. 4c; the spectral-collapse poster's Figure 1): on Ant whose friction is redrawn every
2M steps, standard PPO's return falls after the first changes and does not recover, while PPO with continual
backprop + L2 keeps adapting. This script runs `configs/slippery_ant.py` once per learner (`--runs`, each a resumable
program in `--workdir/<run>`, every seed in one compiled program), at a reduced scale set by its flags, and prints
per friction segment (mean over seeds): the mean episodic return, the friction, and at the segment's end the policy's
dead-unit fraction, weight magnitude and the approximate rank of its last hidden layer.

    python scripts/reproduce_slippery_ant.py --workdir=runs/repro_sa            # the reduced CPU setting below
    python scripts/reproduce_slippery_ant.py --workdir=runs/repro_sa_full --full  # the papers' scale (accelerator)

Reduced setting (defaults): 2 seeds, width 64, 512 steps per update (4 epochs x 4 minibatches of 128; flags
`--steps_per_update`, `--epochs`), friction change every 4,096 steps, intervals of 2 updates
(`--updates_per_interval`), 50-step episodes (`--episode_steps`), MuJoCo's solver as in the
model (`--solver_iterations`, `--ls_iterations` cap it), `--intervals` intervals per run; the learners'
hyperparameters are the papers' except continual backprop's maturity threshold (`--maturity`, 10,000 in the papers:
with a few thousand minibatch steps in all, no unit would ever mature) and the step size (`--step_size`).
The measured outcome on a 2-core shared CPU is recorded, with its command, in docs/rl.md.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from plasticity_jax import config as config_lib  # noqa: E402
from plasticity_jax import engine, sweeps  # noqa: E402
from plasticity_jax.results import load_run  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', None, 'Parent folder of the runs (resumable).')
_RUNS = flags.DEFINE_list('runs', ['std', 'cbp'], 'Learner variants of configs/slippery_ant.py.')
_FULL = flags.DEFINE_bool('full', False, "The papers' scale: the config as it is (ignores the reduction flags).")
_SEEDS = flags.DEFINE_integer('num_seeds', 2, 'Seeds per run.')
_INTERVALS = flags.DEFINE_integer('intervals', 12, 'Intervals (tasks) of `updates_per_interval` updates per seed.')
_UPDATES_PER_INTERVAL = flags.DEFINE_integer('updates_per_interval', 2, 'PPO updates per interval (task).')
_STEPS_PER_UPDATE = flags.DEFINE_integer('steps_per_update', 512, 'Environment steps per update (papers: 2048).')
_EPOCHS = flags.DEFINE_integer('epochs', 4, 'Epochs per update over minibatches of 128 (papers: 10).')
_CHANGE = flags.DEFINE_integer('friction_change_interval', 4096, 'Steps between friction changes.')
_WIDTH = flags.DEFINE_integer('width', 64, 'Hidden units per layer.')
_MATURITY = flags.DEFINE_integer('maturity', 100, "Continual backprop's maturity threshold (papers: 10,000).")
_STEP_SIZE = flags.DEFINE_float('step_size', 1e-4, 'Adam step size (papers: 1e-4).')
_EPISODE_STEPS = flags.DEFINE_integer('episode_steps', 50, 'Steps per episode at most (papers: 1000).')
_SOLVER_ITERATIONS = flags.DEFINE_integer('solver_iterations', None,
                                          "MuJoCo's constraint solver iterations (None: the model's 100).")
_LS_ITERATIONS = flags.DEFINE_integer('ls_iterations', None, "MuJoCo's line-search iterations (None: the model's 50).")


def make_config(run: str):
    config = config_lib.load(os.path.join(REPO_ROOT, 'configs', f'slippery_ant.py:{run}'))
    if _FULL.value:
        return config
    fields = {'num_seeds': _SEEDS.value, 'num_tasks': _INTERVALS.value, 'tasks_per_chunk': 2,
              'rl.updates_per_task': _UPDATES_PER_INTERVAL.value, 'rl.steps_per_update': _STEPS_PER_UPDATE.value,
              'rl.epochs': _EPOCHS.value, 'rl.minibatch_size': 128,
              'model.width': _WIDTH.value, 'env.max_episode_steps': _EPISODE_STEPS.value,
              'env.friction_change_interval': _CHANGE.value, 'learner.step_size': _STEP_SIZE.value}
    for name, flag in (('solver_iterations', _SOLVER_ITERATIONS), ('ls_iterations', _LS_ITERATIONS)):
        if flag.value is not None:
            fields[f'env.{name}'] = flag.value
    if 'maturity_threshold' in config.learner:
        fields['learner.maturity_threshold'] = _MATURITY.value
    return sweeps.with_values(config, fields)


def segments(metrics: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Per friction segment (intervals between changes of the friction in force, counted per seed; segment k of
    every seed), the seeds' mean of: return over the segment's intervals, friction, and the correlates at its end."""
    friction = metrics['friction']  # (seed, task)
    rows = {}
    for seed in range(friction.shape[0]):
        boundaries = np.flatnonzero(np.diff(friction[seed]) != 0) + 1
        for k, tasks in enumerate(np.split(np.arange(friction.shape[1]), boundaries)):
            returns = metrics['episode_return'][seed, tasks]
            rows.setdefault(k, []).append({
                'intervals': len(tasks), 'return': float(np.nanmean(returns)) if np.isfinite(returns).any()
                else float('nan'), 'friction': float(friction[seed, tasks[-1]]),
                'dead_policy_units': float(np.mean(metrics['policy_dead_fraction'][seed, tasks[-1]])),
                'policy_weight_magnitude': float(metrics['policy_weight_magnitude'][seed, tasks[-1]]),
                'policy_last_layer_approximate_rank': float(metrics['policy_approximate_rank'][seed, tasks[-1], -1]),
                'policy_weight_change': float(np.mean(metrics['policy_weight_change'][seed, tasks]))})
    complete = [k for k in sorted(rows) if len(rows[k]) == friction.shape[0]]  # segments every seed reached
    return [{name: float(np.mean([r[name] for r in rows[k]])) for name in rows[k][0]} for k in complete]


def main(argv):
    del argv
    for run in _RUNS.value:
        workdir = os.path.join(_WORKDIR.value, run)
        start = time.time()
        engine.run(make_config(run), workdir)
        elapsed = time.time() - start
        table = segments(load_run(workdir).metrics)
        with open(os.path.join(workdir, 'summary.json'), 'w') as f:  # per run: one process per learner is common
            json.dump({'seconds_this_call': elapsed, 'segments': table}, f, indent=2)
        print(f'\n{run} ({elapsed:.0f} s this call): per friction segment, mean over seeds')
        print(' seg  intervals  friction    return   dead_pol  |W|_pol  rank_last  sum|dW|')
        for k, row in enumerate(table):
            print(f"{k:4d} {row['intervals']:10.1f} {row['friction']:9.3f} {row['return']:9.1f} "
                  f"{row['dead_policy_units']:10.3f} {row['policy_weight_magnitude']:8.4f} "
                  f"{row['policy_last_layer_approximate_rank']:10.1f} {row['policy_weight_change']:8.2f}")


if __name__ == '__main__':
    flags.mark_flag_as_required('workdir')
    app.run(main)
