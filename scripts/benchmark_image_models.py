"""Benchmark: training steps per second of the image problems' networks, with 1 and 8 vmapped seeds.

A benchmark script, not a timed test. Two programs of the engine (`engine.make_vmapped`), each on generated images
of the real shapes (no ImageNet or CIFAR-100 copy is needed):

* `convnet`: Continual ImageNet (configs/continual_imagenet.py): the ConvNet, batch 100, SGD with momentum, one pair
  of classes with 600 training images each (12 steps per epoch).
* `resnet18`: class-incremental CIFAR-100 (configs/incremental_cifar100.py): ResNet-18 with batch norm, batch 90,
  SGD with momentum and weight decay, on-device augmentation, the first increment (5 classes of 450 images: 25 steps
  per epoch). `--base_width` shrinks it for a quick CPU check (64 is the paper's network).

Each program runs one task of `--epochs` epochs and one task of 1 epoch, each `--repeats` times after its first
(compiling) call; steps per second = seeds x (epochs - 1) x steps_per_epoch / (T(epochs) - T(1)) with the best times,
so the per-task work (probe metrics, test evaluation) cancels.

    python scripts/benchmark_image_models.py --models=convnet,resnet18 --seeds=1,8
    python scripts/benchmark_image_models.py --models=resnet18 --seeds=1 --base_width=16 --epochs=2 --repeats=1
    python scripts/benchmark_image_models.py --models=convnet --seeds=1 --conv_lowering=xla   # XLA's conv on a CPU

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
    parser.add_argument('--out', default='', help='write the results as JSON here')
    return parser.parse_args(argv)


def write_class_folder(directory: str, num_classes: int, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(num_classes):
        np.save(os.path.join(directory, f'{c}.npy'), rng.integers(0, 256, (per_class, 32, 32, 3), dtype=np.uint8))


def make_config(model: str, seeds: int, epochs: int, folder: str, args: argparse.Namespace):
    config_file, num_classes, train_per_class = MODELS[model]
    config = load_config(os.path.join(REPO_ROOT, 'configs', config_file))
    config.unlock()
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = seeds, 1, 1
    config.data_dir = folder
    config.metrics.probe_size = 100
    p = config.problem
    p.dataset, p.num_classes, p.train_per_class, p.test_per_class = 'imagenet32', num_classes, train_per_class, \
        TEST_PER_CLASS
    p.epochs = epochs
    if model == 'resnet18':
        config.model.base_width = args.base_width
    config.model.conv_lowering = args.conv_lowering
    return config


def bench(model: str, seeds: int, folder: str, args: argparse.Namespace) -> dict:
    times, steps_per_epoch = {}, None
    for epochs in (args.epochs, 1):
        config = make_config(model, seeds, epochs, folder, args)
        train = engine.make_train(config)
        steps_per_epoch = train.problem.steps_per_task // epochs
        run = engine.make_vmapped(train)
        state = jax.block_until_ready(jax.jit(jax.vmap(train.init))(engine.seed_keys(config)))
        start = time.perf_counter()
        jax.block_until_ready(run(state, 1))
        first = time.perf_counter() - start
        calls = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(run(state, 1))
            calls.append(time.perf_counter() - start)
        times[epochs] = {'first_call_s': first, 'call_s': calls}
    steps = (args.epochs - 1) * steps_per_epoch
    seconds = min(times[args.epochs]['call_s']) - min(times[1]['call_s'])
    return {'model': model, 'seeds': seeds, 'base_width': args.base_width if model == 'resnet18' else None,
            'conv_lowering': args.conv_lowering,
            'timed_steps': steps, 'steps_per_s': steps / seconds, 'seed_steps_per_s': seeds * steps / seconds,
            'calls': times}


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    info = benchmark_permuted_mnist.machine_info()
    print(json.dumps(info))
    results = []
    for model in args.models.split(','):
        _, num_classes, train_per_class = MODELS[model]
        with tempfile.TemporaryDirectory() as folder:
            write_class_folder(folder, num_classes, train_per_class + TEST_PER_CLASS)
            for seeds in args.seeds:
                result = bench(model, seeds, folder, args)
                results.append(result)
                print(f"{model:9s} seeds={seeds:3d}  {result['steps_per_s']:9.2f} steps/s  "
                      f"{result['seed_steps_per_s']:9.2f} seed-steps/s  (first call "
                      f"{result['calls'][args.epochs]['first_call_s']:.1f} s)", flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'date': datetime.date.today().isoformat(), 'machine': info, 'results': results}, f, indent=1)
    return results


if __name__ == '__main__':
    main()
