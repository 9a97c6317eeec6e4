"""The GPU check: one prepared run of every benchmark that an accelerator answers, as one markdown report.

Run through `scripts/gpu_check.sh` (which installs the few missing packages from `.gpu/` and points the data at
it), on a machine with a GPU, in at most 8 minutes (the parts' limits add up to 470 s):

    bash scripts/gpu_check.sh /tmp/gpu_check        # writes /tmp/gpu_check/gpu_check.md and gpu_check.log

Parts (each a benchmark script run as its own process with its own time limit, so that one failing or slow part
leaves the others' figures; a part's tables are the markdown lines its script prints):

1. Online Permuted MNIST, width 2000, 1 / 8 / 32 seeds: seed-steps/s and XLA's bytes per seed-step, beside the
   bandwidth roofline (`--bandwidth`, bytes/s: the seed-steps/s that moving those bytes at full bandwidth allows).
2. Online Permuted MNIST, width 100, 32 / 256 seeds, with `step_unroll` 1 and 8 (a scan iteration's fixed cost
   on a GPU).
3. Curvature: 100 Lanczos iterations for 8 seeds of the 3 x 2000 MLP (about 10M parameters).
4. The ConvNet and ResNet-18 steps with 1 and 8 seeds.
5. PPO on MJX Slippery Ant: environment steps and updates per second with 1 / 8 / 32 seeds.
6. MJX Ant alone: environment steps per second with 1 / 32 / 1024 environments.

The report starts with the device, jax's version and `nvidia-smi`; the full output of every part is in the log.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (title, script, arguments, time limit in seconds)
PARTS = (
    ('Online Permuted MNIST, width 2000', 'scripts/benchmark_permuted_mnist.py',
     ['--widths=2000', '--seeds=1,8,32', '--no-torch', '--steps_large=400', '--large_seed_steps=6400',
      '--repeats=3', '--test_images=100'], 120),
    ('Online Permuted MNIST, width 100, step_unroll 1', 'scripts/benchmark_permuted_mnist.py',
     ['--widths=100', '--seeds=32,256', '--no-torch', '--steps_small=4000', '--repeats=3', '--test_images=100',
      '--step_unroll=1'], 55),
    ('Online Permuted MNIST, width 100, step_unroll 8', 'scripts/benchmark_permuted_mnist.py',
     ['--widths=100', '--seeds=32,256', '--no-torch', '--steps_small=4000', '--repeats=3', '--test_images=100',
      '--step_unroll=8'], 55),
    ('Curvature: Lanczos on the 3 x 2000 MLP', 'scripts/benchmark_curvature.py',
     ['--widths=2000', '--seeds=1,8', '--orders=100', '--examples=2000', '--no-torch', '--no-check',
      '--repeats=2'], 75),
    ('ConvNet and ResNet-18 steps', 'scripts/benchmark_image_models.py',
     ['--models=convnet,resnet18', '--seeds=1,8', '--epochs=1', '--repeats=2'], 60),
    ('PPO on MJX Slippery Ant (the papers\' settings, one environment per seed)', 'scripts/benchmark_ppo.py',
     ['--config=configs/slippery_ant.py', '--seeds=1,8,32', '--updates=2', '--repeats=2'], 60),
    ('MJX Ant environment steps', 'scripts/benchmark_envs.py',
     ['--env=ant', '--num_envs=1,32,1024', '--steps=200', '--rounds=2'], 45),
)


def _run(command: list[str], limit: float, log) -> tuple[int | None, str, float]:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=limit)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as stopped:
        code = None
        output = ''.join(part.decode() if isinstance(part, bytes) else (part or '')
                         for part in (stopped.stdout, stopped.stderr))
    seconds = time.perf_counter() - start
    log.write(f'\n===== {" ".join(command)} (exit {code}, {seconds:.0f} s)\n{output}\n')
    log.flush()
    return code, output, seconds


def _device_lines() -> list[str]:
    import jax

    lines = [f'- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC',
             f'- jax {jax.__version__}, backend {jax.default_backend()}, devices {[str(d) for d in jax.devices()]}',
             f'- python {sys.version.split()[0]}, load average {os.getloadavg()}']
    try:
        smi = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version,clocks.max.sm',
                              '--format=csv,noheader'], capture_output=True, text=True, timeout=30).stdout.strip()
        lines.append(f'- nvidia-smi: {smi}')
    except (OSError, subprocess.TimeoutExpired):
        lines.append('- nvidia-smi: not available')
    return lines


def _roofline_lines(output: str, bandwidth: float) -> list[str]:
    """Seed-steps/s at full bandwidth for each Permuted MNIST point of a part, from the JSON it wrote."""
    try:
        results = json.loads(output)
    except json.JSONDecodeError:
        return []
    lines = ['', f'Bandwidth roofline at {bandwidth / 1e12:.1f} TB/s:', '',
             '| width | seeds | MB per seed-step | roofline seed-steps/s | measured seed-steps/s | of roofline |',
             '| ---: | ---: | ---: | ---: | ---: | ---: |']
    for point in results.get('jax', []):
        step_bytes = point.get('bytes_per_seed_step', float('nan'))
        roofline = bandwidth / step_bytes if step_bytes and step_bytes > 0 else float('nan')
        measured = point.get('seed_steps_per_s', float('nan'))
        lines.append(f'| {point["width"]} | {point["seeds"]} | {step_bytes / 1e6:.3g} | {roofline:,.0f} | '
                     f'{measured:,.0f} | {measured / roofline:.0%} |')
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='folder for gpu_check.md and gpu_check.log')
    parser.add_argument('--bandwidth', type=float, default=4.3e12,
                        help='memory bandwidth in bytes/s for the roofline (default 4.3e12: a device-to-device copy '
                        'measured on an H200)')
    parser.add_argument('--parts', default='', help='comma-separated part numbers to run (default: all)')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    chosen = {int(p) for p in args.parts.split(',') if p.strip()} or set(range(1, len(PARTS) + 1))

    report = ['# GPU check', '', *_device_lines(), '']
    with open(os.path.join(args.out, 'gpu_check.log'), 'w') as log:
        for number, (title, script, arguments, limit) in enumerate(PARTS, start=1):
            if number not in chosen:
                continue
            report += [f'## {number}. {title}', '']
            if not os.path.exists(os.path.join(REPO_ROOT, script)):
                report += [f'not run: {script} does not exist in this checkout', '']
                continue
            # Only the Permuted MNIST parts keep their raw figures (the roofline reads them): at most 8 files come
            # back from the device tool.
            raw = os.path.join(args.out, f'part{number}.json')
            keep_raw = script.endswith('benchmark_permuted_mnist.py')
            command = [sys.executable, script, *arguments, *([f'--out={raw}'] if keep_raw else [])]
            code, output, seconds = _run(command, limit, log)
            report.append(f'`python {" ".join([script, *arguments])}`: '
                          + ('stopped at its time limit' if code is None else f'exit {code}') + f', {seconds:.0f} s')
            report += [''] + [line for line in output.splitlines() if line.startswith('|')]
            if code != 0:
                report += ['', 'Last lines of its output:', '', '```',
                           *output.strip().splitlines()[-12:], '```']
            if keep_raw and os.path.exists(raw):
                with open(raw) as f:
                    report += _roofline_lines(f.read(), args.bandwidth)
            report.append('')
            with open(os.path.join(args.out, 'gpu_check.md'), 'w') as f:
                f.write('\n'.join(report) + '\n')
    print('\n'.join(report))


if __name__ == '__main__':
    main()
