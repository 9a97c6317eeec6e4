"""Benchmark: one SGD step of the Continual ImageNet ConvNet inside `lax.scan` vs as a jitted call from Python.

XLA's CPU backend runs convolutions inside a loop body far slower than outside one; `models.conv.PatchConv` (the
`conv_lowering='patches'` of the models, 'auto' on a CPU) computes them as a matrix product instead. This script
times the same step (ConvNet, batch `--batch` of 32x32x3 images, cross-entropy, SGD with momentum 0.9) both ways, for
each lowering, in alternating rounds (A B A B), and prints seconds per step (best round) and the load average.

    python scripts/benchmark_conv_in_scan.py --lowerings=xla,patches --steps=3 --rounds=2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plasticity_jax.models import ConvNet  # noqa: E402


def programs(lowering: str, batch: int, steps: int):
    model = ConvNet(num_outputs=2, conv_lowering=lowering)
    x = jax.random.normal(jax.random.PRNGKey(0), (steps, batch, 32, 32, 3))
    y = jnp.zeros((steps, batch), jnp.int32)
    params = model.init(jax.random.PRNGKey(1), x[0])['params']
    optimizer = optax.sgd(0.01, momentum=0.9)

    def step(carry, xy):
        params, state = carry

        def loss(params):
            outputs, _ = model.apply({'params': params}, xy[0])
            return optax.softmax_cross_entropy_with_integer_labels(outputs, xy[1]).mean()

        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    one = jax.jit(lambda carry, x, y: step(carry, (x, y))[0])
    scan = jax.jit(lambda carry, x, y: jax.lax.scan(step, carry, (x, y))[0])
    carry = (params, optimizer.init(params))

    def host_loop():
        c = carry
        for i in range(steps):
            c = one(c, x[i], y[i])
        return jax.block_until_ready(c)

    jax.block_until_ready(one(carry, x[0], y[0]))  # compile both
    jax.block_until_ready(scan(carry, x, y))
    return {'host loop': host_loop, 'lax.scan': lambda: jax.block_until_ready(scan(carry, x, y))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lowerings', default='xla,patches')
    parser.add_argument('--batch', type=int, default=100)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args(argv)
    print('load average at start:', open('/proc/loadavg').read().split()[:3], flush=True)
    runs = {lowering: programs(lowering, args.batch, args.steps) for lowering in args.lowerings.split(',')}
    times = {(lowering, how): [] for lowering, progs in runs.items() for how in progs}
    for _ in range(args.rounds):  # interleaved: every program once per round
        for lowering, progs in runs.items():
            for how, run in progs.items():
                start = time.perf_counter()
                run()
                times[lowering, how].append((time.perf_counter() - start) / args.steps)
    result = {f'{lowering} / {how}': min(values) for (lowering, how), values in times.items()}
    print(json.dumps({'seconds_per_step': result, 'batch': args.batch, 'steps': args.steps,
                      'load_average_at_end': open('/proc/loadavg').read().split()[:3],
                      'jax': jax.__version__, 'backend': jax.default_backend()}, indent=1))


if __name__ == '__main__':
    main()
