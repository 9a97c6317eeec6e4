"""Benchmark: seed-steps per second of ONE compiled program as the runs grow, and as the devices grow.

The program is the engine's (`engine.make_sharded`, what `engine.run` calls): every run of the experiment in one
`jax.jit(jax.vmap(run_tasks))`, the flat runs axis sharded over a 1-D mesh of all devices. The experiment is
Slowly-Changing Regression (`configs/slowly_changing_regression.py`: 20 input bits, 5 hidden ReLU units, batch size 1,
SGD), whose step is tiny, so the curves show what one program buys: the per-step cost of the program (the scan
iteration, its random keys, the dispatch of small kernels) is shared by every run in it.

Two curves, each point measured in a fresh subprocess (the device count must be set before jax is imported):

* runs: 1, 2, 4, ..., 256 runs (seeds) on one device (`--runs`);
* devices: `--device_runs` runs (16) over 1, 2, 4 and 8 devices (`--devices`); on a CPU these are fake devices,
  `XLA_FLAGS=--xla_force_host_platform_device_count=N`, which share the machine's cores.

Each point compiles a task of `--steps` steps (10,000, a task of the experiment; the first call), then times
`--repeats` calls of that task and reports runs x steps / time (seed-steps per second; the best call, and the
median). A call includes the task's start work: the plasticity correlates on a probe set of 64 examples.

With jaxlib 0.10.2, fake CPU devices at least as many as the cores can deadlock: each device's batched SVD (the
rank metrics at a task's start) runs on a thread of XLA's intra-op pool, fans its batch out into that same pool and
waits; when every pool thread is such a waiter, nothing runs (seen on 2 cores with 2 devices x 32 runs). Small
batches per device (the default 16 runs) did not hang here; a point that runs past `--timeout` is reported as hung.

    nice -n 10 python scripts/benchmark_scaling.py --out=scaling.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(',') if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=_int_list, default=[2**k for k in range(9)],
                        help='numbers of runs on one device (default 1,2,4,...,256)')
    parser.add_argument('--devices', type=_int_list, default=[1, 2, 4, 8], help='device counts (default 1,2,4,8)')
    parser.add_argument('--device_runs', type=int, default=16, help='runs of the device curve (default 16)')
    parser.add_argument('--steps', type=int, default=10_000,
                        help='steps per timed call (default 10,000: one task of the experiment)')
    parser.add_argument('--repeats', type=int, default=5, help='timed calls per point (default 5)')
    parser.add_argument('--timeout', type=float, default=300, help='seconds before a subprocess counts as hung')
    parser.add_argument('--out', default='', help='optional JSON file for the raw figures')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)  # measure here, print JSON
    return parser.parse_args(argv)


def measure(num_runs: int, args: argparse.Namespace) -> dict:
    """Times the engine's sharded program for `num_runs` runs of one task over every device of this process."""
    import jax
    import numpy as np

    from plasticity_jax import engine, sweeps
    from plasticity_jax.config import load as load_config

    config = load_config(os.path.join(REPO_ROOT, 'configs', 'slowly_changing_regression.py'))
    config.unlock()
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = num_runs, 1, 1
    config.problem.examples_per_task = args.steps
    config.metrics.probe_size = 64
    devices = jax.devices()
    runs = sweeps.runs(config, len(devices))
    init, run_chunk = engine.make_sharded(engine.make_train(config), jax.sharding.Mesh(np.array(devices), ('runs',)))
    state = jax.block_until_ready(init(runs.keys(config.seed), runs.hyperparams()))
    call = lambda: jax.block_until_ready(run_chunk(state, np.int32(0), 1))
    start = time.perf_counter()
    call()
    first_call_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    seed_steps = num_runs * args.steps
    return {'runs': num_runs, 'devices': len(devices), 'runs_per_device': runs.num_padded // len(devices),
            'steps': args.steps, 'first_call_s': first_call_s, 'call_s': times,
            'seed_steps_per_s': seed_steps / min(times),
            'seed_steps_per_s_median': seed_steps / statistics.median(times)}


def in_subprocess(num_devices: int, runs: list[int], args: argparse.Namespace) -> list[dict]:
    """`measure` for each of `runs` in a fresh process with `num_devices` (fake, on a CPU) devices; a process that
    runs past `args.timeout` gives rows marked hung."""
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={num_devices}'}
    command = [sys.executable, os.path.abspath(__file__), '--worker', f'--runs={",".join(map(str, runs))}',
               f'--steps={args.steps}', f'--repeats={args.repeats}']
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        return [{'runs': n, 'devices': num_devices, 'hung': True} for n in runs]
    if result.returncode:
        raise RuntimeError(f'{" ".join(command)} failed:\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.splitlines()[-1])


def _table(rows: list[dict]) -> str:
    lines = ['| runs | devices | runs per device | first call (s) | best call (s) | seed-steps/s (best) | '
             'seed-steps/s (median) | steps/s per run |', '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in rows:
        if r.get('hung'):
            lines.append(f'| {r["runs"]} | {r["devices"]} | hung: no result within --timeout | | | | | |')
            continue
        lines.append(f'| {r["runs"]} | {r["devices"]} | {r["runs_per_device"]} | {r["first_call_s"]:.1f} | '
                     f'{min(r["call_s"]):.3f} | {r["seed_steps_per_s"]:,.0f} | {r["seed_steps_per_s_median"]:,.0f} | '
                     f'{r["seed_steps_per_s"] / r["runs"]:,.0f} |')
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps([measure(n, args) for n in args.runs]))
        return {}
    sys.path.insert(0, os.path.join(REPO_ROOT, 'scripts'))
    import benchmark_permuted_mnist

    info = benchmark_permuted_mnist.machine_info()
    print('Machine:')
    for key, value in info.items():
        print(f'  {key}: {value}')
    print(f'Slowly-Changing Regression, {args.steps} steps per call, best of {args.repeats} calls', flush=True)
    start = time.perf_counter()
    by_runs = in_subprocess(1, args.runs, args)
    print(f'\nRuns on one device:\n{_table(by_runs)}', flush=True)
    by_devices = [row for n in args.devices for row in in_subprocess(n, [args.device_runs], args)]
    print(f'\n{args.device_runs} runs over N devices:\n{_table(by_devices)}')
    print(f'\nTotal {time.perf_counter() - start:.0f} s')
    results = {'date': datetime.date.today().isoformat(), 'machine': info, 'args': vars(args), 'runs': by_runs,
               'devices': by_devices}
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
        print(f'Raw figures written to {args.out}')
    return results


if __name__ == '__main__':
    main()
