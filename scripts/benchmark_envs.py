"""Benchmark: MJX environment steps per second with 1, 8 and 32 environments in one compiled program.

The program is what a PPO rollout runs: `jax.jit` of a `lax.scan` over `--steps` environment steps of
`jax.vmap(env.step)` over N environments, with uniform random actions in the control range drawn inside the
program (auto-resets included: their reset is computed at every step, as in a rollout). Each size is compiled first
(its wall and CPU time are reported), then the sizes are timed in interleaved rounds (1, 8, 32, 1, 8, 32, ...) so that
load changes on a shared machine hit every size alike; the figure is N x steps / time of a call (median and best
over `--rounds`). The load average is printed before and after.

    nice -n 10 python scripts/benchmark_envs.py --env=ant --num_envs=1,8,32 --steps=200 --rounds=3
    python scripts/benchmark_envs.py --env=slippery_ant --num_envs=1,8,32,128,512,2048 --steps=1000   # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(',') if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--env', default='ant', help="environment name of envs.make_env (default 'ant')")
    parser.add_argument('--num_envs', type=_int_list, default=[1, 8, 32], help='environments per program')
    parser.add_argument('--steps', type=int, default=200, help='environment steps per timed call (default 200)')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved timing rounds (default 3)')
    parser.add_argument('--solver_iterations', type=int, default=None,
                        help="constraint solver iterations per physics step (default: the model's, 100)")
    parser.add_argument('--ls_iterations', type=int, default=None,
                        help="line-search iterations per solver iteration (default: the model's, 50)")
    parser.add_argument('--out', default='', help='optional JSON file for the raw figures')
    return parser.parse_args(argv)


def make_rollout(env, num_envs: int, steps: int):
    """jit(key -> final observations): reset N environments, then `steps` vmapped steps with random actions."""
    import jax
    import jax.numpy as jnp

    low, high = jnp.asarray(env.action_low), jnp.asarray(env.action_high)

    def rollout(key):
        reset_key, run_key = jax.random.split(key)
        states, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))

        def body(carry, step_key):
            states, _ = carry
            action_key, env_key = jax.random.split(step_key)
            actions = jax.random.uniform(action_key, (num_envs, env.action_size), jnp.float32, low, high)
            out = jax.vmap(env.step)(states, actions, jax.random.split(env_key, num_envs))
            return (out.state, out.observation), out.reward

        (_, obs), rewards = jax.lax.scan(body, (states, obs), jax.random.split(run_key, steps))
        return obs, rewards.sum()

    return jax.jit(rollout)


def main(argv=None) -> None:
    args = parse_args(argv)
    import jax
    import ml_collections

    from plasticity_jax.envs import make_env

    env = make_env(ml_collections.ConfigDict({'name': args.env, 'solver_iterations': args.solver_iterations,
                                              'ls_iterations': args.ls_iterations}))
    print(f'env={args.env} solver_iterations={args.solver_iterations} ls_iterations={args.ls_iterations} '
          f'backend={jax.default_backend()} devices={jax.devices()}', flush=True)
    print(f'loadavg before: {open("/proc/loadavg").read().strip()}', flush=True)
    programs, compile_s, compile_cpu_s = {}, {}, {}
    for n in args.num_envs:
        fn = make_rollout(env, n, args.steps)
        start, start_cpu = time.perf_counter(), time.process_time()
        compiled = fn.lower(jax.random.key(0)).compile()
        compile_s[n] = time.perf_counter() - start
        compile_cpu_s[n] = time.process_time() - start_cpu
        jax.block_until_ready(compiled(jax.random.key(0)))     # first call: allocation, not timed
        programs[n] = compiled
        print(f'N={n}: compiled in {compile_s[n]:.1f} s ({compile_cpu_s[n]:.1f} s of CPU)', flush=True)
    times = {n: [] for n in args.num_envs}
    for r in range(args.rounds):
        for n in args.num_envs:
            start = time.perf_counter()
            jax.block_until_ready(programs[n](jax.random.key(r + 1)))
            times[n].append(time.perf_counter() - start)
    results = []
    for n in args.num_envs:
        rates = [n * args.steps / t for t in times[n]]
        results.append({'num_envs': n, 'compile_s': compile_s[n], 'compile_cpu_s': compile_cpu_s[n],
                        'steps_per_s_median': statistics.median(rates),
                        'steps_per_s_best': max(rates), 'call_s': times[n]})
        print(f'N={n:5d}: {statistics.median(rates):10.1f} env steps/s (median; best {max(rates):.1f}); '
              f'compile {compile_s[n]:.1f} s', flush=True)
    print(f'loadavg after: {open("/proc/loadavg").read().strip()}', flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'env': args.env, 'steps': args.steps, 'solver_iterations': args.solver_iterations,
                   'ls_iterations': args.ls_iterations, 'backend': jax.default_backend(),
                       'results': results}, f, indent=1)


if __name__ == '__main__':
    main()
