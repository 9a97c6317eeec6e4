"""Benchmark: seed-steps per second of Online Permuted MNIST (batch size 1), JAX engine vs. a plain PyTorch loop.

A benchmark script, not a timed test. For every hidden width (default 100 and 2000) and number of seeds (default
1, 8 and 32) it measures the engine's compiled program (`jax.jit(jax.vmap(run_tasks))`, the program
`engine.run` calls) and reports

* the compile time (`jax.jit(...).lower(...).compile()` of a one-task call), and
* the steady-state throughput in seed-steps per second (seeds x SGD steps / second).

Beside it, a plain PyTorch training loop of the same network and update (784 -> 3 x width ReLU -> 10, Kaiming-normal
weights, zero biases, cross-entropy, plain SGD with step size 0.003, one example per step, permuted pixels), written
the way the papers' code is: a Python loop over steps of forward, loss, backward, `optimizer.step()`, one seed after
another. S seeds are S sequential loops, so its seed-steps per second do not depend on S: it is measured with one seed.

How the JAX figure is made steady-state. Every engine call runs whole tasks, and a task costs more than its SGD
steps: at its start the plasticity correlates are measured on a probe set of the new task (a forward pass and an
SVD; `--probe_size`, default 100 here instead of the experiment's 2000) and at its end the network is scored on the
test images (10,000 forward passes per seed, `--test_images`). So each (width, seeds) point compiles two programs,
of `N` and `N / 4` steps per task (`N = --steps_100` or `--steps_2000`), times each `--repeats` times (after one
warm-up call) and takes the *difference* of the best times: (T(N) - T(N/4)) / (3N/4) is the time of one step
of all seeds, with the per-task overhead cancelled. That overhead (T(N) - N x step time) is reported too; in a real
run it is paid once per task of 60,000 steps.

    pip install -e .[bench]          # torch, for the baseline
    python scripts/benchmark_permuted_mnist.py --data_dir=../shared/data
    python scripts/benchmark_permuted_mnist.py --widths=100 --seeds=1,8 --no-torch --out=/tmp/bench.json

Data: the MNIST IDX files in `--data_dir` (or $PLASTICITY_JAX_DATA_DIR; else TensorFlow Datasets). Timings on a
machine shared with other work are noisy: the best of `--repeats` calls is reported, the median goes in `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from plasticity_jax import engine  # noqa: E402

STEP_SIZE = 0.003
DEPTH = 3


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(',') if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--widths', type=_int_list, default=[100, 2000], help='hidden widths (default 100,2000)')
    parser.add_argument('--seeds', type=_int_list, default=[1, 8, 32], help='numbers of seeds (default 1,8,32)')
    parser.add_argument('--examples_per_task', type=int, default=None,
                        help='SGD steps per timed call, for every width (overrides --steps_small/--steps_large)')
    parser.add_argument('--steps_small', type=int, default=2000,
                        help='SGD steps per timed call for widths < 1000 (default 2000)')
    parser.add_argument('--steps_large', type=int, default=200,
                        help='SGD steps per timed call for widths >= 1000 (default 200)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls per measurement; the best is reported')
    parser.add_argument('--probe_size', type=int, default=100,
                        help='probe examples for the start-of-task SVD (default 100; the experiment uses 2000)')
    parser.add_argument('--test_images', type=int, default=10_000,
                        help='test images scored at the end of every task (default all 10,000)')
    parser.add_argument('--torch', action=argparse.BooleanOptionalAction, default=True,
                        help='also time the plain PyTorch loop (needs torch: pip install -e .[bench])')
    parser.add_argument('--torch_threads', type=int, default=None,
                        help='torch.set_num_threads (default: the cores this process may use)')
    parser.add_argument('--data_dir', default='', help='folder with the MNIST IDX files (default: '
                        '$PLASTICITY_JAX_DATA_DIR, else TensorFlow Datasets)')
    parser.add_argument('--out', default='', help='optional JSON file for the raw figures')
    return parser.parse_args(argv)


def steps_for(width: int, args: argparse.Namespace) -> int:
    if args.examples_per_task is not None:
        return args.examples_per_task
    return args.steps_small if width < 1000 else args.steps_large


def load_config_module():
    path = os.path.join(REPO_ROOT, 'configs', 'permuted_mnist.py')
    spec = importlib.util.spec_from_file_location('configs_permuted_mnist', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_config(width: int, seeds: int, steps: int, args: argparse.Namespace):
    config = load_config_module().get_config()
    config.model.width = width
    config.model.depth = DEPTH
    config.learner.optimizer = 'sgd'
    config.learner.step_size = STEP_SIZE
    config.problem.batch_size = 1
    config.problem.examples_per_task = steps
    config.metrics.probe_size = args.probe_size
    config.num_seeds = seeds
    config.num_tasks = 1
    config.tasks_per_chunk = 1
    config.data_dir = args.data_dir
    return config


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    info = {'cpu': cpu, 'logical_cores': os.cpu_count(),
            'usable_cores': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
            'python': platform.python_version(), 'platform': platform.platform(),
            'jax': jax.__version__, 'jax_devices': [str(d) for d in jax.devices()],
            'jax_backend': jax.default_backend()}
    try:
        import torch
        info['torch'] = torch.__version__
    except ImportError:
        info['torch'] = None
    return info


# ----------------------------------------------------------------------------------------------------------------
# JAX


def _time_engine_call(width: int, seeds: int, steps: int, args: argparse.Namespace) -> dict:
    """Compiles the engine's vmapped one-task program and times `args.repeats` calls of it (after a warm-up)."""
    config = make_config(width, seeds, steps, args)
    train = engine.make_train(config)
    data = train.data
    if args.test_images < data['test_x'].shape[0]:
        data = {**data, 'test_x': data['test_x'][:args.test_images], 'test_y': data['test_y'][:args.test_images]}
    state = jax.block_until_ready(jax.jit(jax.vmap(train.init))(engine.seed_keys(config)))

    # The program `engine.make_vmapped` builds, lowered and compiled explicitly so compilation is timed alone.
    vmapped = jax.jit(jax.vmap(train.run_tasks, in_axes=(0, None, None)), static_argnums=2)
    start = time.perf_counter()
    compiled = vmapped.lower(state, data, 1).compile()
    compile_s = time.perf_counter() - start

    state, _ = jax.block_until_ready(compiled(state, data))  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        state, task_metrics = jax.block_until_ready(compiled(state, data))
        times.append(time.perf_counter() - start)
    accuracy = float(np.mean(jax.device_get(task_metrics['online_accuracy'])))
    return {'steps': steps, 'compile_s': compile_s, 'call_s': times, 'online_accuracy_last_call': accuracy}


def bench_jax(width: int, seeds: int, args: argparse.Namespace) -> dict:
    steps = steps_for(width, args)
    short_steps = max(1, steps // 4)
    long = _time_engine_call(width, seeds, steps, args)
    short = _time_engine_call(width, seeds, short_steps, args)
    step_s = (min(long['call_s']) - min(short['call_s'])) / (steps - short_steps)
    step_s_median = (statistics.median(long['call_s']) - statistics.median(short['call_s'])) / (steps - short_steps)
    overhead_s = min(long['call_s']) - steps * step_s
    result = {'width': width, 'seeds': seeds, 'steps_long': steps, 'steps_short': short_steps,
              'compile_s': long['compile_s'], 'compile_s_short': short['compile_s'],
              'call_s_long': long['call_s'], 'call_s_short': short['call_s'],
              'step_s': step_s, 'seed_steps_per_s': seeds / step_s if step_s > 0 else float('nan'),
              'seed_steps_per_s_median': seeds / step_s_median if step_s_median > 0 else float('nan'),
              'task_overhead_s': overhead_s,
              'seed_steps_per_s_end_to_end': seeds * steps / min(long['call_s']),
              'online_accuracy_last_call': long['online_accuracy_last_call']}
    return result


# ----------------------------------------------------------------------------------------------------------------
# PyTorch baseline


def bench_torch(width: int, steps: int, args: argparse.Namespace, mnist) -> dict:
    """One seed of the plain PyTorch loop: the same network and update, timed over `steps` steps per repeat."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    layers = []
    fan_in = 28 * 28
    for _ in range(DEPTH):
        linear = torch.nn.Linear(fan_in, width)
        torch.nn.init.kaiming_normal_(linear.weight, nonlinearity='relu')
        torch.nn.init.zeros_(linear.bias)
        layers += [linear, torch.nn.ReLU()]
        fan_in = width
    output = torch.nn.Linear(fan_in, 10)
    torch.nn.init.kaiming_normal_(output.weight, nonlinearity='linear')
    torch.nn.init.zeros_(output.bias)
    net = torch.nn.Sequential(*layers, output)
    optimizer = torch.optim.SGD(net.parameters(), lr=STEP_SIZE)

    # One task: a new pixel permutation and example order, applied to the whole training set at the task's start
    # (as the papers' code does; not timed), then one example per step.
    generator = np.random.default_rng(0)
    images = torch.from_numpy(mnist.train_images.reshape(len(mnist.train_images), -1).astype(np.float32) / 255.0)
    labels = torch.from_numpy(mnist.train_labels.astype(np.int64))
    order = torch.from_numpy(generator.permutation(len(images)))
    x_task = images[order][:, torch.from_numpy(generator.permutation(images.shape[1]))].contiguous()
    y_task = labels[order].contiguous()

    position = 0

    def run(num_steps: int) -> float:
        nonlocal position
        correct = torch.zeros((), dtype=torch.int64)
        start = time.perf_counter()
        for _ in range(num_steps):
            x = x_task[position:position + 1]
            y = y_task[position:position + 1]
            position = (position + 1) % len(x_task)
            outputs = net(x)
            loss = F.cross_entropy(outputs, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += (outputs.detach().argmax(dim=1) == y).sum()  # the online accuracy, as the engine keeps it
        return time.perf_counter() - start

    run(min(steps, 50))  # warm-up
    times = [run(steps) for _ in range(args.repeats)]
    return {'width': width, 'steps': steps, 'call_s': times, 'seed_steps_per_s': steps / min(times),
            'seed_steps_per_s_median': steps / statistics.median(times)}


# ----------------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or value != value:
        return 'n/a'
    return f'{value:.{digits}g}' if value < 10 ** digits else f'{value:,.0f}'


def main(argv=None) -> dict:
    args = parse_args(argv)
    info = machine_info()
    threads = None
    if args.torch:
        try:
            import torch
        except ImportError:
            print('torch is not installed (pip install -e .[bench]); skipping the PyTorch baseline.')
            args.torch = False
        else:
            threads = args.torch_threads or info['usable_cores']
            torch.set_num_threads(threads)
            info['torch_threads'] = torch.get_num_threads()

    print('Machine:')
    for key, value in info.items():
        print(f'  {key}: {value}')
    print(f'Settings: depth {DEPTH}, SGD {STEP_SIZE}, batch 1, probe_size {args.probe_size}, '
          f'test_images {args.test_images}, repeats {args.repeats}', flush=True)

    results = {'date': datetime.date.today().isoformat(), 'machine': info, 'args': vars(args).copy(),
               'jax': [], 'torch': []}

    torch_by_width = {}
    if args.torch:
        from plasticity_jax.data import load_mnist
        mnist = load_mnist(args.data_dir or None)
        for width in args.widths:
            measured = bench_torch(width, steps_for(width, args), args, mnist)
            torch_by_width[width] = measured
            results['torch'].append(measured)
            print(f'torch width {width}: {measured["seed_steps_per_s"]:.1f} seed-steps/s '
                  f'(calls {", ".join(f"{t:.2f}" for t in measured["call_s"])} s for {measured["steps"]} steps)',
                  flush=True)

    for width in args.widths:
        for seeds in args.seeds:
            measured = bench_jax(width, seeds, args)
            results['jax'].append(measured)
            print(f'jax width {width} seeds {seeds}: compile {measured["compile_s"]:.1f} s, '
                  f'{measured["seed_steps_per_s"]:.1f} seed-steps/s (median {measured["seed_steps_per_s_median"]:.1f}), '
                  f'per-task overhead {measured["task_overhead_s"]:.2f} s; calls '
                  f'{", ".join(f"{t:.2f}" for t in measured["call_s_long"])} s ({measured["steps_long"]} steps) / '
                  f'{", ".join(f"{t:.2f}" for t in measured["call_s_short"])} s ({measured["steps_short"]} steps)',
                  flush=True)

    print()
    print('| width | seeds | JAX compile (s) | JAX seed-steps/s | JAX per-task overhead (s) | '
          'PyTorch seed-steps/s | speed-up |')
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for measured in results['jax']:
        torch_rate = torch_by_width.get(measured['width'], {}).get('seed_steps_per_s')
        speedup = measured['seed_steps_per_s'] / torch_rate if torch_rate else None
        print(f'| {measured["width"]} | {measured["seeds"]} | {measured["compile_s"]:.1f} | '
              f'{_fmt(measured["seed_steps_per_s"])} | {measured["task_overhead_s"]:.2f} | '
              f'{_fmt(torch_rate)} | {"n/a" if speedup is None else f"{speedup:.2g}x"} |')
    if args.torch:
        print(f'\nPyTorch: one seed measured (S seeds run as S sequential loops, so its seed-steps/s do not depend '
              f'on S); torch.set_num_threads({threads}).')

    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
        print(f'Raw figures written to {args.out}')
    return results


if __name__ == '__main__':
    main()
