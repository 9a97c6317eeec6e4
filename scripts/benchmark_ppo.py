"""Benchmark: environment steps and PPO updates per second with 1, 8 and 32 seeds in one compiled program.

A benchmark script, not a timed test. For every number of seeds (`--seeds`, default 1,8,32) it builds the engine's
program of the config (`engine.make_train`, the `jax.jit(jax.vmap(run_tasks))` that `engine.run` drives) and runs
one interval ("task") of `--updates` PPO updates to compile it; then it times `--repeats` interleaved rounds, each
one interval of every seed count and, with `--torch`, `--updates` updates of the plain PyTorch PPO loop on
gymnasium's MuJoCo Ant (`scripts/ppo_torch_baseline.py`: one environment, the papers' way; the same networks and
update), and reports, from the best round's wall time,

* env steps/s: seeds x updates x steps_per_update / time (every seed's environment steps), and
* updates/s: seeds x updates / time (each update = rollout + GAE + epochs x minibatches of learner steps),

plus env steps per CPU-second (process CPU time, all threads: what a shared machine charges), the first (compiling)
call's wall and CPU time, and the load average at each round. The PyTorch loop runs one seed; S seeds are S such
loops, so its rate per seed does not depend on S. Each JAX interval also measures the correlates on its last
rollout (an SVD per hidden layer), once per `--updates` updates here, once per 49-122 updates in a real run.

    python scripts/benchmark_ppo.py --config=configs/slippery_ant.py                # the papers' settings, N = 1
    python scripts/benchmark_ppo.py --config=configs/slippery_ant.py:cbp --seeds=8
    python scripts/benchmark_ppo.py --config=configs/ant.py --config.rl.num_envs=16 --out=/tmp/ppo.json
    python scripts/benchmark_ppo.py --config=configs/pendulum.py:point_mass --seeds=1,8   # no MuJoCo
    python scripts/benchmark_ppo.py --config=configs/slippery_ant.py --seeds=1,8,32 --updates=1 --repeats=2 --torch

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
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Timed rounds after the compiling calls (each round: every seed count, '
                                'then the PyTorch loop).')
_TORCH = flags.DEFINE_bool('torch', False, 'Also time the plain PyTorch PPO loop on gymnasium Ant, interleaved '
                           '(scripts/ppo_torch_baseline.py; pip install -e .[bench]).')
_TORCH_THREADS = flags.DEFINE_integer('torch_threads', 1, 'torch.set_num_threads of the PyTorch loop.')
_OUT = flags.DEFINE_string('out', '', 'Write the figures as JSON here.')


class Timer:
    """Wall and process CPU time (all of the process's threads) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def loadavg() -> list[str] | None:
    return open('/proc/loadavg').read().split()[:3] if os.path.exists('/proc/loadavg') else None


def compile_program(config, num_seeds: int, updates: int):
    """The engine's program for `num_seeds` seeds and one interval of `updates` updates, compiled by its first call;
    returns (call, first call's Timer) where `call()` runs one more interval and returns its Timer."""
    config = config.copy_and_resolve_references()
    config.num_seeds = num_seeds
    config.rl.updates_per_task = updates
    train = engine.make_train(config)
    run_chunk = engine.make_vmapped(train)
    holder = {'state': jax.block_until_ready(jax.jit(jax.vmap(train.init))(engine.seed_keys(config)))}

    def call():
        with Timer() as timer:
            holder['state'], metrics = run_chunk(holder['state'], 1)
            jax.block_until_ready((holder['state'], metrics))
        holder['nonfinite_steps'] = int(np.sum(jax.device_get(metrics['nonfinite_steps'])))
        return timer

    first = call()
    return call, first, holder


def rates(steps: int, updates: int, timers: list[Timer]) -> dict:
    best = min(timers, key=lambda t: t.wall)
    return {'wall_s': [t.wall for t in timers], 'cpu_s': [t.cpu for t in timers],
            'env_steps_per_second': steps / best.wall, 'updates_per_second': updates / best.wall,
            'env_steps_per_cpu_second': steps / min(t.cpu for t in timers)}


def main(argv):
    del argv
    config = _CONFIG.value
    results = {'machine': {'platform': platform.platform(), 'devices': [str(d) for d in jax.devices()],
                           'cpus': os.cpu_count(), 'loadavg_start': loadavg()},
               'env': config.env.name, 'learner': config.learner.name, 'width': config.model.width, 'points': [],
               'rounds_loadavg': []}
    minibatches = config.rl.steps_per_update // config.rl.minibatch_size
    print(f"{config.env.name}, learner {config.learner.name}, {config.rl.steps_per_update} steps per update over "
          f"{config.rl.num_envs} env(s), {config.rl.epochs} epochs x {minibatches} minibatches, width "
          f"{config.model.width}, on {jax.devices()[0].platform}; load {loadavg()}", flush=True)
    programs = {}
    for seeds in map(int, _SEEDS.value):
        programs[seeds] = compile_program(config, seeds, _UPDATES.value)
        first = programs[seeds][1]
        print(f"{seeds:3d} seeds: compiled and ran one interval in {first.wall:.0f} s wall, {first.cpu:.0f} s CPU; "
              f"load {loadavg()}", flush=True)
    baseline = None
    if _TORCH.value:
        from ppo_torch_baseline import TorchPPO  # scripts/ppo_torch_baseline.py, beside this script
        baseline = TorchPPO(width=config.model.width, steps_per_update=config.rl.steps_per_update,
                            epochs=config.rl.epochs, minibatch_size=config.rl.minibatch_size,
                            step_size=config.learner.step_size, threads=_TORCH_THREADS.value)
        baseline.update()  # warm-up
    timers = {seeds: [] for seeds in programs}
    torch_timers = []
    for round_index in range(_REPEATS.value):  # interleaved: JAX 1, 8, 32 seeds, PyTorch, JAX 1, 8, 32, PyTorch, ...
        results['rounds_loadavg'].append(loadavg())
        for seeds, (call, _, _) in programs.items():
            timers[seeds].append(call())
        if baseline is not None:
            with Timer() as timer:
                for _ in range(_UPDATES.value):
                    baseline.update()
            torch_timers.append(timer)
        print(f"round {round_index + 1}: JAX " + ', '.join(f'{s} seeds {t[-1].wall:.1f} s' for s, t in
                                                            timers.items())
              + (f'; PyTorch {torch_timers[-1].wall:.1f} s' if torch_timers else '') + f'; load {loadavg()}',
              flush=True)
    for seeds, (_, first, holder) in programs.items():
        point = {'seeds': seeds, 'updates_per_call': _UPDATES.value, 'steps_per_update': config.rl.steps_per_update,
                 'num_envs': config.rl.num_envs, 'first_call_wall_s': first.wall, 'first_call_cpu_s': first.cpu,
                 'nonfinite_steps': holder['nonfinite_steps'],
                 **rates(seeds * _UPDATES.value * config.rl.steps_per_update, seeds * _UPDATES.value, timers[seeds])}
        results['points'].append(point)
        print(f"JAX {seeds:3d} seeds: {point['env_steps_per_second']:8.1f} env steps/s  "
              f"{point['updates_per_second']:7.4f} updates/s  {point['env_steps_per_cpu_second']:8.1f} env steps per "
              f"CPU-s  (first call {first.wall:.0f} s wall / {first.cpu:.0f} s CPU)")
    if torch_timers:
        results['torch'] = {'threads': _TORCH_THREADS.value, 'env': 'gymnasium Ant-v4 (C MuJoCo), 1 environment',
                            'updates_per_call': _UPDATES.value,
                            **rates(_UPDATES.value * config.rl.steps_per_update, _UPDATES.value, torch_timers)}
        point = results['torch']
        print(f"PyTorch 1 seed: {point['env_steps_per_second']:8.1f} env steps/s  "
              f"{point['updates_per_second']:7.4f} updates/s  {point['env_steps_per_cpu_second']:8.1f} env steps per "
              f"CPU-s  ({_TORCH_THREADS.value} thread(s); S seeds run as S such loops)")
    results['machine']['loadavg_end'] = loadavg()
    if _OUT.value:
        with open(_OUT.value, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    app.run(main)
