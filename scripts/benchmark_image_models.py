"""Benchmark: training steps per second of the image problems' networks, with 1 and 8 vmapped seeds.

A benchmark script, not a timed test. Two programs of the engine (`engine.make_vmapped`), each on generated images
of the real shapes (no ImageNet or CIFAR-100 copy is needed):

* `convnet`: Continual ImageNet (configs/continual_imagenet.py): the ConvNet, batch 100, SGD with momentum, one pair
  of classes with 600 training images each (12 steps per epoch).
* `resnet18`: class-incremental CIFAR-100 (configs/incremental_cifar100.py): ResNet-18 with batch norm, batch 90,
  SGD with momentum and weight decay, on-device augmentation, the first increment (5 classes of 450 images: 25 steps
  per epoch). `--base_width` shrinks it for a quick CPU check (64 is the paper's network).

Each (model, seeds) point compiles two programs, one task of `--epochs` epochs and one of 1 epoch (the first calls).
Then `--repeats` rounds call every program of every point once, interleaved (round 1: all points, round 2: all
points, ...), so that a change in the machine's load reaches every point alike; each call's wall time and the
process's CPU time (all threads) are recorded with the 1-minute load average before and after each round. Steps
per second = seeds x (epochs - 1) x steps_per_epoch / (T(epochs) - T(1)) from the best (smallest) times, so the
per-task work (probe metrics, test evaluation) cancels; CPU seconds per step likewise from the CPU times.
`--train_per_class` shrinks the task (fewer steps per epoch, same step) for slow CPUs.

    python scripts/benchmark_image_models.py --models=convnet,resnet18 --seeds=1,8
    python scripts/benchmark_image_models.py --models=resnet18 --seeds=1 --base_width=16 --epochs=2 --repeats=1
    python scripts/benchmark_image_models.py --models=convnet --seeds=1 --conv_lowering=xla   # XLA's conv on a CPU
    python scripts/benchmark_image_models.py --models=convnet,resnet18 --seeds=1,8 --train_per_class=300,18 \
        --epochs=3 --repeats=2     # the CPU figures of BENCHMARKS.md

`--conv_lowering` (`models.conv`): 'auto' (patches x kernel on a CPU, XLA's convolution on accelerators), 'xla' or
'patches'.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import benchmark_permuted_mnist  # noqa: E402  (scripts/ is on sys.path when this script runs)

from plasticity_jax import engine, models  # noqa: E402
from plasticity_jax.config import load as load_config  # noqa: E402

MODELS = {  # model -> (config file, classes in the folder, training images per class)
    'convnet': ('continual_imagenet.py', 2, 600),
    'resnet18': ('incremental_cifar100.py', 5, 450),
}
TEST_PER_CLASS = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', default='convnet,resnet18')
    parser.add_argument('--seeds', default='1,8', type=lambda s: [int(v) for v in s.split(',')])
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--base_width', type=int, default=64, help="ResNet-18's first stage width")
    parser.add_argument('--conv_lowering', default='auto', choices=models.CONV_LOWERINGS,
                        help="how convolutions are computed (models.conv): 'auto' is patches on a CPU, XLA's elsewhere")
    parser.add_argument('--train_per_class', default='',
                        help='training images per class, one value per model in --models order (default: the '
                             "problem's, 600 and 450); fewer make each task's epoch shorter")
    parser.add_argument('--out', default='', help='write the results as JSON here')
    return parser.parse_args(argv)


def write_class_folder(directory: str, num_classes: int, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(num_classes):
        np.save(os.path.join(directory, f'{c}.npy'), rng.integers(0, 256, (per_class, 32, 32, 3), dtype=np.uint8))


def make_config(model: str, seeds: int, epochs: int, folder: str, args: argparse.Namespace, train_per_class: int):
    config_file, num_classes, _ = MODELS[model]
    config = load_config(os.path.join(REPO_ROOT, 'configs', config_file))
    config.unlock()
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = seeds, 1, 1
    config.data_dir = folder
    config.metrics.probe_size = 100
    p = config.problem
    p.dataset, p.num_classes, p.train_per_class, p.test_per_class = 'imagenet32', num_classes, train_per_class, \
        TEST_PER_CLASS
    if 'validation_per_class' in p:  # CIFAR-100's validation split: not part of a training step's cost
        p.validation_per_class, p.early_stopping = 0, False
    p.epochs = epochs
    if model == 'resnet18':
        config.model.base_width = args.base_width
    config.model.conv_lowering = args.conv_lowering
    return config


def timed_call(run, state) -> dict[str, float]:
    """One call of `run` to completion: wall seconds and this process's CPU seconds (every thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(run(state, 1))
    return {'wall_s': time.perf_counter() - wall, 'cpu_s': time.process_time() - cpu}


class Point:
    """The two compiled programs (epochs and 1 epoch) of one (model, seeds) point and its timed calls."""

    def __init__(self, model: str, seeds: int, folder: str, args: argparse.Namespace, train_per_class: int):
        self.model, self.seeds, self.args = model, seeds, args
        self.programs, self.first, self.calls = {}, {}, {args.epochs: [], 1: []}
        for epochs in (args.epochs, 1):
            config = make_config(model, seeds, epochs, folder, args, train_per_class)
            train = engine.make_train(config)
            self.steps_per_epoch = train.problem.steps_per_task // epochs
            state = jax.block_until_ready(jax.jit(jax.vmap(train.init))(engine.seed_keys(config)))
            self.programs[epochs] = (engine.make_vmapped(train), state)
            self.first[epochs] = timed_call(*self.programs[epochs])  # compiles

    def time_round(self) -> None:
        for epochs, (run, state) in self.programs.items():
            self.calls[epochs].append(timed_call(run, state))

    def result(self) -> dict:
        steps = (self.args.epochs - 1) * self.steps_per_epoch
        best = lambda epochs, kind: min(call[kind] for call in self.calls[epochs])
        seconds = best(self.args.epochs, 'wall_s') - best(1, 'wall_s')
        cpu_seconds = best(self.args.epochs, 'cpu_s') - best(1, 'cpu_s')
        return {'model': self.model, 'seeds': self.seeds,
                'base_width': self.args.base_width if self.model == 'resnet18' else None,
                'conv_lowering': self.args.conv_lowering, 'steps_per_epoch': self.steps_per_epoch,
                'timed_steps': steps, 'steps_per_s': steps / seconds, 'seed_steps_per_s': self.seeds * steps / seconds,
                'cpu_s_per_step': cpu_seconds / steps, 'cpu_s_per_seed_step': cpu_seconds / (steps * self.seeds),
                'first_calls': self.first, 'calls': self.calls}


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    info = benchmark_permuted_mnist.machine_info()
    print(json.dumps(info))
    models_ = args.models.split(',')
    per_class = ([int(v) for v in args.train_per_class.split(',')] if args.train_per_class
                 else [MODELS[model][2] for model in models_])
    if len(per_class) != len(models_):
        raise SystemExit(f'--train_per_class needs one value per model ({len(models_)}), got {args.train_per_class}')
    rounds = []
    with tempfile.TemporaryDirectory() as root:
        points = []
        for model, train_per_class in zip(models_, per_class):
            folder = os.path.join(root, model)
            os.makedirs(folder)
            write_class_folder(folder, MODELS[model][1], train_per_class + TEST_PER_CLASS)
            for seeds in args.seeds:
                points.append(Point(model, seeds, folder, args, train_per_class))
                print(f'{model} seeds={seeds}: compiled', flush=True)
        for index in range(args.repeats):  # interleaved: every point once per round
            load_before = os.getloadavg()[0]
            for point in points:
                point.time_round()
            rounds.append({'load_average_before': load_before, 'load_average_after': os.getloadavg()[0]})
            print(f'round {index}: load average {load_before:.1f} -> {rounds[-1]["load_average_after"]:.1f}',
                  flush=True)
    results = [point.result() for point in points]
    for result in results:
        print(f"{result['model']:9s} seeds={result['seeds']:3d}  {result['steps_per_s']:9.3f} steps/s  "
              f"{result['seed_steps_per_s']:9.3f} seed-steps/s  {result['cpu_s_per_seed_step']:8.3f} CPU s per "
              f"seed-step  (first call {result['first_calls'][args.epochs]['wall_s']:.1f} s)", flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'date': datetime.date.today().isoformat(), 'machine': info, 'rounds': rounds,
                       'load_average_at_end': os.getloadavg(), 'results': results}, f, indent=1)
    return results


if __name__ == '__main__':
    main()
