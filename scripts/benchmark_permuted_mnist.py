"""Benchmark: seed-steps per second of Online Permuted MNIST (batch size 1), JAX engine vs. a plain PyTorch loop.

A benchmark script, not a timed test. For every hidden width (default 100 and 2000) and number of seeds (default
1, 8 and 32) it runs the engine's compiled program (`engine.make_vmapped`, the `jax.jit(jax.vmap(run_tasks))` that
`engine.run` calls) and reports

* the compile time: the tracing, lowering and XLA compilation of the first call, summed from JAX's own
  compilation-duration events (`jax.monitoring`), and
* the steady-state throughput in seed-steps per second: seeds x SGD steps / second.

Beside it, a plain PyTorch training loop of the same network and update (784 -> 3 x width ReLU -> 10, Kaiming-normal
weights, zero biases, cross-entropy, plain SGD with step size 0.003, one example per step, permuted pixels), written
the way the papers' code is: a Python loop over steps of forward, loss, backward, `optimizer.step()`, one seed after
another. S seeds are S sequential loops, so its seed-steps per second do not depend on S: it is measured with one
seed, once with one intra-op thread and once with as many as the process may use (`--torch_threads`); the faster
is compared.

How the JAX figure is made steady-state. Every engine call runs whole tasks, and a task costs more than its SGD
steps: at its start a new pixel permutation and example order are drawn and the plasticity correlates are measured
on a probe set of the new task (a forward pass and one SVD per layer; `--probe_size`, 100 here instead of the
experiment's 2000), at its end the network is scored on the test images (`--test_images`; 1 by default, since
10,000 test images cost several seconds per seed at width 2000 on a CPU: once per 60,000-step task in a real run, but
more than the timed steps here). So each (width, seeds) point times two programs, a task of N steps and a task of
none, each `--repeats` times after its first (compiling) call, and reports seeds x N / (T(N) - T(0)) with the best
times (the medians go in `--out`); T(0), the per-task overhead, is reported too, and so is seeds x N / T(N) ("incl.
task work"), a lower bound that contention on a shared machine can only lower. (A test set smaller than the
problem's evaluation chunk is scored as one chunk of its own size: the script lowers `permuted_mnist.EVAL_CHUNK`.)

Steps per timed call: `--steps_small` (2000) for widths below 1000; for wider networks `--steps_large` (100), at
most `--large_seed_steps` (400) seed-steps per call, i.e. 100, 50 and 12 steps for 1, 8 and 32 seeds, so the default
benchmark stays within about 10 minutes on a 2-core CPU. `--examples_per_task=N` sets N for every point.

    pip install -e .[bench]          # torch, for the baseline
    python scripts/benchmark_permuted_mnist.py --data_dir=../shared/data
    python scripts/benchmark_permuted_mnist.py --widths=100 --seeds=1,8 --no-torch --out=/tmp/bench.json
    python scripts/benchmark_permuted_mnist.py --learner=cbp --no-torch      # another learner's cost
    python scripts/benchmark_permuted_mnist.py --no-torch \
        --compare_command='python /tmp/peer/run.py --width={width} --seeds={seeds} --steps={steps}'   # beside a peer

`--clock=cpu` times every call in CPU seconds of all the process's threads instead of wall seconds: on a machine
loaded by other work the wall time of a call depends on how often the scheduler lets every thread run (a call
whose threads wait for a descheduled sibling takes a whole time slice more), the CPU time much less; compare
like with like (the peer command gets `{clock}`).

Data: the MNIST IDX files in `--data_dir` (or $PLASTICITY_JAX_DATA_DIR; else downloaded). Figures from a
machine shared with other work are noisy: run it more than once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from plasticity_jax import config as config_lib  # noqa: E402
from plasticity_jax import engine, hlo  # noqa: E402
from plasticity_jax.problems import permuted_mnist  # noqa: E402

STEP_SIZE = 0.003
DEPTH = 3
INPUT_DIM = 28 * 28
NUM_CLASSES = 10


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(',') if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--widths', type=_int_list, default=[100, 2000], help='hidden widths (default 100,2000)')
    parser.add_argument('--seeds', type=_int_list, default=[1, 8, 32], help='numbers of seeds (default 1,8,32)')
    parser.add_argument('--examples_per_task', type=int, default=None,
                        help='SGD steps per timed call at every point (default: see --steps_small/--steps_large)')
    parser.add_argument('--steps_small', type=int, default=2000, help='steps per timed call, widths < 1000')
    parser.add_argument('--steps_large', type=int, default=100, help='steps per timed call, widths >= 1000')
    parser.add_argument('--large_seed_steps', type=int, default=400,
                        help='widths >= 1000: at most this many seed-steps per timed call (at least 10 steps)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls per program; the best is reported')
    parser.add_argument('--probe_size', type=int, default=100,
                        help='probe examples of the start-of-task SVD (default 100; the experiment uses 2000)')
    parser.add_argument('--test_images', type=int, default=1,
                        help='test images scored at the end of each task (default 1; the experiment scores 10,000)')
    parser.add_argument('--torch', action=argparse.BooleanOptionalAction, default=True,
                        help='also time the plain PyTorch loop (needs torch: pip install -e .[bench])')
    parser.add_argument('--torch_threads', type=_int_list, default=None,
                        help='torch.set_num_threads values to try (default: 1 and the usable cores)')
    parser.add_argument('--data_dir', default='', help='folder with the MNIST IDX files (default: '
                        '$PLASTICITY_JAX_DATA_DIR, else downloaded into the cache)')
    parser.add_argument('--learner', default='backprop',
                        help='learner of the JAX program (a `configs/permuted_mnist.py` learner variant, with its '
                        'defaults: cbp, redo, shrink_perturb, ...; default backprop). The PyTorch loop is backprop.')
    parser.add_argument('--step_unroll', type=int, default=1,
                        help='config.step_unroll: steps per iteration of the compiled step loop (default 1)')
    parser.add_argument('--compare_command', '--compare-command', default='',
                        help='a peer trainer\'s shell command, run before and after each JAX point (interleaved), '
                        'with {width}, {seeds} and {steps} filled in; it must print a line "seed-steps/s: X" with '
                        'its own steady-state figure (see `peer_seed_steps_per_s`)')
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                        help="what a call's time is: 'wall' (default) or 'cpu', the CPU seconds of every thread of "
                             'the process (steadier on a loaded machine; the peer command gets it as {clock})')
    parser.add_argument('--out', default='', help='optional JSON file for the raw figures')
    return parser.parse_args(argv)


def steps_for(width: int, seeds: int, args: argparse.Namespace) -> int:
    if args.examples_per_task is not None:
        return args.examples_per_task
    if width < 1000:
        return args.steps_small
    return max(10, min(args.steps_large, args.large_seed_steps // seeds))


def make_config(width: int, seeds: int, steps: int, args: argparse.Namespace):
    """configs/permuted_mnist.py (`--learner`, SGD 0.003, batch 1, depth 3, ReLU, Kaiming normal) at one point."""
    config = config_lib.load(os.path.join(REPO_ROOT, 'configs', 'permuted_mnist.py')
                             + (f':{args.learner}' if args.learner else ''))
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
    config.step_unroll = args.step_unroll
    return config


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


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
    try:
        with open('/proc/meminfo') as f:
            memory_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        memory_gib = None
    info = {'cpu': cpu, 'logical_cores': os.cpu_count(), 'usable_cores': usable_cores(), 'memory_gib': memory_gib,
            'load_average_at_start': os.getloadavg() if hasattr(os, 'getloadavg') else None,
            'python': platform.python_version(), 'platform': platform.platform(),
            'jax': jax.__version__, 'jaxlib': getattr(jax.lib, '__version__', None) or _version('jaxlib'),
            'jax_backend': jax.default_backend(), 'jax_devices': [str(d) for d in jax.devices()],
            'torch': _version('torch')}
    return info


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(package)
    except Exception:  # noqa: BLE001 - not installed
        return None


# ----------------------------------------------------------------------------------------------------------------
# JAX

# The clock of every timed call (`--clock`): wall seconds, or the CPU seconds of all the process's threads.
CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}

_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration', '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')
_compile_seconds = [0.0]


def _on_event_duration(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event_duration)


@contextlib.contextmanager
def _count_compile_seconds(result: dict):
    before = _compile_seconds[0]
    yield
    result['compile_s'] = _compile_seconds[0] - before


def _engine_program(width: int, seeds: int, steps: int, args: argparse.Namespace, compile_only: bool = False):
    """The engine's program for `seeds` seeds of one task of `steps` steps, as `engine.run` builds it, with its
    state; with `compile_only`, XLA's estimate of the bytes the program moves (`hlo.bytes_accessed`) instead."""
    config = make_config(width, seeds, steps, args)
    train = engine.make_train(config)
    test_x, test_y = train.data['test_x'], train.data['test_y']
    if args.test_images < test_x.shape[0]:
        if args.test_images < 1:
            raise ValueError('--test_images must be at least 1')
        train = train._replace(data={**train.data, 'test_x': test_x[:args.test_images],
                                     'test_y': test_y[:args.test_images]})
        # The evaluation pads the test set to whole chunks of EVAL_CHUNK images; a smaller chunk (read when the
        # program is traced, at its first call) keeps a small test set small.
        permuted_mnist.EVAL_CHUNK = min(permuted_mnist.EVAL_CHUNK, args.test_images)
    if compile_only:
        state = jax.eval_shape(jax.vmap(train.init), engine.seed_keys(config))
        program = jax.jit(jax.vmap(train.run_tasks, in_axes=(0, None, None, None)), static_argnums=3)
        return hlo.bytes_accessed(program.lower(state, train.data, 0, 1).compile()), state
    state = jax.block_until_ready(jax.jit(jax.vmap(train.init))(engine.seed_keys(config)))
    return engine.make_vmapped(train), state


def bytes_per_seed_step(width: int, seeds: int, args: argparse.Namespace) -> tuple[float, int]:
    """XLA's bytes accessed by one step of one seed in the step loop, and the minimum (`minimum_bytes_per_seed_step`).

    XLA's cost analysis (jaxlib 0.10) counts a loop's body once, whatever its trip count: the programs of 2 and 3
    steps then cost the same, and one step is the program of 2 steps minus that of none (a 1-step scan would be
    inlined and miss the loop's own costs). Where a backend multiplies by the trip count, one step is the program
    of 3 steps minus that of 2.
    """
    two, state = _engine_program(width, seeds, 2, args, compile_only=True)
    three, _ = _engine_program(width, seeds, 3, args, compile_only=True)
    if abs(three - two) > 1e-3 * two:
        step = three - two
    else:
        step = two - _engine_program(width, seeds, 0, args, compile_only=True)[0]
    return step / seeds, minimum_bytes_per_seed_step(state)


def minimum_bytes_per_seed_step(state) -> int:
    """What one SGD step of one seed must move at least: every float of the parameters and optimizer state read
    and written once (the activations of a batch-size-1 step and the example are a few KB on top)."""
    leaves = jax.tree.leaves((state.params, state.opt_state))
    seeds = state.task_index.shape[0]
    return 2 * sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in leaves
                   if jax.numpy.issubdtype(leaf.dtype, jax.numpy.floating)) // seeds


def _time_calls(run_chunk, state, repeats: int, clock) -> dict:
    """The first call (compilation + one task), then `repeats` timed calls, each continuing from the last state."""
    result = {}
    start = clock()
    with _count_compile_seconds(result):
        state, task_metrics = jax.block_until_ready(run_chunk(state, 1))
    result['first_call_s'] = clock() - start
    times = []
    for _ in range(repeats):
        start = clock()
        state, task_metrics = jax.block_until_ready(run_chunk(state, 1))
        times.append(clock() - start)
    result['call_s'] = times
    result['metrics'] = jax.device_get(task_metrics)
    return result


def bench_jax(width: int, seeds: int, args: argparse.Namespace) -> dict:
    steps = steps_for(width, seeds, args)
    # A task of `steps` SGD steps, and a task of none: the latter costs only the per-task work (new permutation and
    # example order, probe forward pass and SVDs, test evaluation), which the difference cancels.
    run_chunk, state = _engine_program(width, seeds, steps, args)
    task = _time_calls(run_chunk, state, args.repeats, CLOCKS[args.clock])
    del run_chunk, state
    run_empty, state = _engine_program(width, seeds, 0, args)
    empty = _time_calls(run_empty, state, args.repeats, CLOCKS[args.clock])
    step_bytes, minimum_bytes = bytes_per_seed_step(width, seeds, args)

    step_s = (min(task['call_s']) - min(empty['call_s'])) / steps
    step_s_median = (statistics.median(task['call_s']) - statistics.median(empty['call_s'])) / steps
    rate = lambda seconds: seeds / seconds if seconds > 0 else float('nan')
    return {'width': width, 'seeds': seeds, 'steps': steps,
            'compile_s': task['compile_s'], 'first_call_s': task['first_call_s'], 'call_s': task['call_s'],
            'empty_task_compile_s': empty['compile_s'], 'empty_task_call_s': empty['call_s'],
            'step_s': step_s, 'seed_steps_per_s': rate(step_s), 'seed_steps_per_s_median': rate(step_s_median),
            'task_overhead_s': min(empty['call_s']),
            'seed_steps_per_s_with_overhead': seeds * steps / min(task['call_s']),
            'online_accuracy_last_call': float(np.mean(task['metrics']['online_accuracy'])),
            'bytes_per_seed_step': step_bytes, 'minimum_bytes_per_seed_step': minimum_bytes,
            'bytes_ratio': step_bytes / minimum_bytes,
            'step_unroll': args.step_unroll}


# ----------------------------------------------------------------------------------------------------------------
# A peer's trainer (`--compare_command`)

_PEER_FIGURE = re.compile(r'seed-steps/s:\s*([0-9.eE+-]+)')


def peer_seed_steps_per_s(template: str, width: int, seeds: int, steps: int,
                          clock: str = 'wall') -> tuple[float, str]:
    """Runs a peer's command for one point: the seed-steps per second it reports, and '' (or NaN and the reason).

    The peer's code is never part of this repository: whoever has it writes a small wrapper that trains its network
    (784 -> 3 x width ReLU -> 10, SGD, batch 1) with `seeds` seeds for `steps` steps, times the steady state itself
    (compilation excluded) and prints `seed-steps/s: X`. `template` gets `{width}`, `{seeds}`, `{steps}` and `{clock}`
    ('wall' or 'cpu': the peer should time with the same clock). The last such line counts. A command that fails or
    prints none (a peer that runs out of memory at some point, say) gives NaN with the command, its exit status and
    the end of its output, and the benchmark goes on.
    """
    command = template.format(width=width, seeds=seeds, steps=steps, clock=clock)
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    figures = _PEER_FIGURE.findall(done.stdout)
    if done.returncode != 0 or not figures:
        tail = ' '.join((done.stdout + done.stderr)[-300:].split())
        return float('nan'), (f'{command!r} exited {done.returncode} and printed '
                               f'{"no" if not figures else "a"} "seed-steps/s: X" line; its output ends with: {tail}')
    return float(figures[-1]), ''


# ----------------------------------------------------------------------------------------------------------------
# PyTorch baseline


def bench_torch(width: int, steps: int, threads: int, args: argparse.Namespace, mnist) -> dict:
    """One seed of the plain PyTorch loop: the same network and update, `steps` steps per timed call."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    fan_in = INPUT_DIM
    for _ in range(DEPTH):
        linear = torch.nn.Linear(fan_in, width)
        torch.nn.init.kaiming_normal_(linear.weight, nonlinearity='relu')  # N(0, 2 / fan_in)
        torch.nn.init.zeros_(linear.bias)
        layers += [linear, torch.nn.ReLU()]
        fan_in = width
    output = torch.nn.Linear(fan_in, NUM_CLASSES)
    torch.nn.init.kaiming_normal_(output.weight, nonlinearity='linear')  # N(0, 1 / fan_in)
    torch.nn.init.zeros_(output.bias)
    net = torch.nn.Sequential(*layers, output)
    optimizer = torch.optim.SGD(net.parameters(), lr=STEP_SIZE)

    # One task: a new pixel permutation and example order applied to the whole training set at the task's start (as
    # the papers' code does; not timed), then one example per step.
    rng = np.random.default_rng(0)
    images = mnist.train_images.reshape(len(mnist.train_images), -1)
    order, pixels = rng.permutation(len(images)), rng.permutation(images.shape[1])
    x_task = torch.from_numpy(np.ascontiguousarray(images[order][:, pixels], dtype=np.float32) / 255.0)
    y_task = torch.from_numpy(mnist.train_labels[order].astype(np.int64))
    position = 0

    clock = CLOCKS[args.clock]

    def run(num_steps: int) -> tuple[float, float]:
        nonlocal position
        correct = torch.zeros((), dtype=torch.int64)
        start = clock()
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
        return clock() - start, correct.item() / num_steps

    run(min(steps, 50))  # warm-up
    times = [run(steps)[0] for _ in range(args.repeats)]
    return {'width': width, 'threads': torch.get_num_threads(), 'steps': steps, 'call_s': times,
            'seed_steps_per_s': steps / min(times), 'seed_steps_per_s_median': steps / statistics.median(times)}


# ----------------------------------------------------------------------------------------------------------------


def _fmt(value) -> str:
    if value is None or value != value:
        return 'n/a'
    return f'{value:,.0f}' if value >= 100 else f'{value:.3g}'


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print('torch is not installed (pip install -e .[bench]); skipping the PyTorch baseline.')
            args.torch = False
    threads = sorted(set(args.torch_threads or [1, usable_cores()]))

    info = machine_info()
    print('Machine:')
    for key, value in info.items():
        print(f'  {key}: {value}')
    print(f'Settings: learner {args.learner}, depth {DEPTH}, SGD {STEP_SIZE}, batch 1, probe_size {args.probe_size}, '
          f'test_images {args.test_images}, repeats {args.repeats}', flush=True)
    results = {'date': datetime.date.today().isoformat(), 'machine': info, 'args': vars(args), 'torch': [],
               'jax': []}

    best_torch = {}
    if args.torch:
        from plasticity_jax.data import load_mnist
        mnist = load_mnist(args.data_dir or None)
        for width in args.widths:
            for count in threads:
                measured = bench_torch(width, steps_for(width, 1, args), count, args, mnist)
                results['torch'].append(measured)
                if measured['seed_steps_per_s'] > best_torch.get(width, {}).get('seed_steps_per_s', 0):
                    best_torch[width] = measured
                print(f'torch width {width}, {measured["threads"]} thread(s): {measured["seed_steps_per_s"]:.1f} '
                      f'seed-steps/s (calls {", ".join(f"{t:.2f}" for t in measured["call_s"])} s of '
                      f'{measured["steps"]} steps)', flush=True)

    for width in args.widths:
        for seeds in args.seeds:
            peer = []
            if args.compare_command:  # before and after the JAX point: interleaved rounds, the better counts
                peer.append(peer_seed_steps_per_s(args.compare_command, width, seeds, steps_for(width, seeds, args),
                                                  args.clock))
            measured = bench_jax(width, seeds, args)
            if args.compare_command:
                peer.append(peer_seed_steps_per_s(args.compare_command, width, seeds, steps_for(width, seeds, args),
                                                  args.clock))
                figures = [figure for figure, _ in peer]
                measured['peer_seed_steps_per_s'] = max(figures) if not any(map(np.isnan, figures)) else float('nan')
                measured['peer_rounds'] = figures
                measured['peer_failures'] = [reason for _, reason in peer if reason]
            results['jax'].append(measured)
            print(f'jax width {width}, {seeds} seeds: compile {measured["compile_s"]:.1f} s, '
                  f'{measured["seed_steps_per_s"]:.1f} seed-steps/s '
                  f'(medians: {measured["seed_steps_per_s_median"]:.1f}); '
                  f'calls {", ".join(f"{t:.2f}" for t in measured["call_s"])} s of {measured["steps"]} steps, '
                  f'{", ".join(f"{t:.2f}" for t in measured["empty_task_call_s"])} s of none', flush=True)
            if args.compare_command:
                print(f'peer width {width}, {seeds} seeds: '
                      f'{", ".join(_fmt(v) for v in measured["peer_rounds"])} seed-steps/s'
                      + ''.join(f'\n  failed: {reason}' for reason in measured['peer_failures']), flush=True)

    print()
    print('| width | seeds | steps | JAX compile (s) | JAX seed-steps/s | JAX seed-steps/s incl. task work | '
          'JAX task work (s) | MB per seed-step (minimum, ratio) | PyTorch seed-steps/s (threads) | JAX / PyTorch |')
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for measured in results['jax']:
        baseline = best_torch.get(measured['width'])
        torch_cell = f'{_fmt(baseline["seed_steps_per_s"])} ({baseline["threads"]})' if baseline else 'n/a'
        speedup = measured['seed_steps_per_s'] / baseline['seed_steps_per_s'] if baseline else None
        print(f'| {measured["width"]} | {measured["seeds"]} | {measured["steps"]} | {measured["compile_s"]:.1f} | '
              f'{_fmt(measured["seed_steps_per_s"])} | {_fmt(measured["seed_steps_per_s_with_overhead"])} | '
              f'{measured["task_overhead_s"]:.2f} | {measured["bytes_per_seed_step"] / 1e6:.3g} '
              f'({measured["minimum_bytes_per_seed_step"] / 1e6:.3g}, {measured["bytes_ratio"]:.2f}x) | {torch_cell} | '
              f'{"n/a" if speedup is None or speedup != speedup else f"{speedup:.3g}x"} |')
    if args.compare_command:
        print('\n| width | seeds | JAX seed-steps/s | peer seed-steps/s (rounds) | JAX / peer |')
        print('| ---: | ---: | ---: | ---: | ---: |')
        for measured in results['jax']:
            peer = measured['peer_seed_steps_per_s']
            rounds = ', '.join(_fmt(v) for v in measured['peer_rounds'])
            ratio = measured['seed_steps_per_s'] / peer
            ratio = f'{ratio:.3g}x' if ratio == ratio else 'n/a'
            print(f'| {measured["width"]} | {measured["seeds"]} | {_fmt(measured["seed_steps_per_s"])} | '
                  f'{_fmt(peer)} ({rounds}) | {ratio} |')
    print('\nJAX seed-steps/s: seeds x steps / (T(steps) - T(0)), best calls; "incl. task work": seeds x steps / '
          'T(steps), with one task\'s start and end work in it; task work: T(0). MB per seed-step: XLA\'s bytes '
          'accessed (cost_analysis) of one iteration of the step loop (`bytes_per_seed_step`), per seed; minimum: '
          'parameters and optimizer state read and written once.')
    if args.torch:
        print('\nPyTorch: one seed (S seeds are S sequential loops, so seed-steps/s do not depend on S); the faster of '
              f'torch.set_num_threads({", ".join(map(str, threads))}).')

    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2, default=lambda o: o.tolist() if hasattr(o, 'tolist') else str(o))
        print(f'Raw figures written to {args.out}')
    return results


if __name__ == '__main__':
    main()
