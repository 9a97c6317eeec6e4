"""Benchmark: environment steps and PPO updates per second with 1, 8 and 32 seeds in one compiled program.

A benchmark script, not a timed test. For every number of seeds (`--seeds`, default 1,8,32) it builds the engine's
program of the config (`engine.make_train`, the `jax.jit(jax.vmap(run_tasks))` that `engine.run` drives), runs one
interval ("task") of `--updates` PPO updates to compile, then times `--repeats` further calls and reports, with the
best time,

* env steps/s: seeds x updates x steps_per_update / time (every seed's environment steps), and
* updates/s: seeds x updates / time (each update = rollout + GAE + epochs x minibatches of learner steps),

plus the compile time (the first call minus a timed call). Each interval also measures the correlates on its last
rollout (an SVD per hidden layer), once per `--updates` updates here, once per 49-122 updates in a real run.

    python scripts/benchmark_ppo.py --config=configs/slippery_ant.py                # the papers' settings, N = 1
    python scripts/benchmark_ppo.py --config=configs/slippery_ant.py:cbp --seeds=8
    python scripts/benchmark_ppo.py --config=configs/ant.py --config.rl.num_envs=16 --out=/tmp/ppo.json
    python scripts/benchmark_ppo.py --config=configs/pendulum.py:point_mass --seeds=1,8   # no MuJoCo

`--config.<field>=value` overrides any config field (e.g. `--config.rl.steps_per_update=512`). With one environment
per seed (the papers' protocol) the rollout is 2048 sequential physics steps per update, so an accelerator gains from
more seeds (or `rl.num_envs`), not from a faster single step. Figures on a machine shared with other work are noisy.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from plasticity_jax import engine  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', os.path.join(REPO_ROOT, 'configs', 'slippery_ant.py'),
                                          'RL config: configs/<experiment>.py[:variants].', lock_config=False)
_SEEDS = flags.DEFINE_list('seeds', ['1', '8', '32'], 'Numbers of seeds in one program.')
_UPDATES = flags.DEFINE_integer('updates', 2, 'PPO updates per timed call (one interval).')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Timed calls after the compiling one.')
_OUT = flags.DEFINE_string('out', '', 'Write the figures as JSON here.')


def measure(config, num_seeds: int, updates: int, repeats: int) -> dict:
    config = config.copy_and_resolve_references()
    config.num_seeds = num_seeds
    config.rl.updates_per_task = updates
    train = engine.make_train(config)
    init = jax.jit(jax.vmap(train.init))
    run_chunk = engine.make_vmapped(train)
    state = jax.block_until_ready(init(engine.seed_keys(config)))
    start = time.perf_counter()
    state, metrics = run_chunk(state, 1)
    jax.block_until_ready((state, metrics))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = run_chunk(state, 1)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    best = min(times)
    steps = num_seeds * updates * config.rl.steps_per_update
    return {'seeds': num_seeds, 'updates_per_call': updates, 'steps_per_update': config.rl.steps_per_update,
            'num_envs': config.rl.num_envs, 'seconds': times, 'compile_seconds': first - best,
            'env_steps_per_second': steps / best, 'updates_per_second': num_seeds * updates / best,
            'nonfinite_steps': int(np.sum(jax.device_get(metrics['nonfinite_steps'])))}


def main(argv):
    del argv
    config = _CONFIG.value
    results = {'machine': {'platform': platform.platform(), 'devices': [str(d) for d in jax.devices()],
                           'loadavg': open('/proc/loadavg').read().split()[:3] if os.path.exists('/proc/loadavg')
                           else None},
               'env': config.env.name, 'learner': config.learner.name, 'width': config.model.width, 'points': []}
    minibatches = config.rl.steps_per_update // config.rl.minibatch_size
    print(f"{config.env.name}, learner {config.learner.name}, {config.rl.steps_per_update} steps per update over "
          f"{config.rl.num_envs} env(s), {config.rl.epochs} epochs x {minibatches} minibatches, width "
          f"{config.model.width}, on {jax.devices()[0].platform}; load {results['machine']['loadavg']}")
    for seeds in map(int, _SEEDS.value):
        point = measure(config, seeds, _UPDATES.value, _REPEATS.value)
        results['points'].append(point)
        print(f"{seeds:3d} seeds: {point['env_steps_per_second']:10.0f} env steps/s  "
              f"{point['updates_per_second']:8.3f} updates/s  (compile {point['compile_seconds']:.0f} s, calls "
              f"{[f'{t:.1f}' for t in point['seconds']]} s)", flush=True)
    if _OUT.value:
        with open(_OUT.value, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    app.run(main)
