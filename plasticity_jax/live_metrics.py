"""Live metrics: every task's scalar metrics as TensorBoard event files while a run runs.

`engine.run` hands each chunk's metrics to `LiveMetrics.write`, which writes, per sweep point, one TensorBoard run
per seed and one for the seed mean, with the task index as the step:

    WORKDIR/tensorboard/seed_0/ ... seed_<n-1>/, mean/                       (no sweep)
    WORKDIR/tensorboard/step_size=0.01/seed_0/ ..., step_size=0.01/mean/    (a sweep: one folder per point)

so `tensorboard --logdir=WORKDIR` (or the parent of several workdirs) shows every seed and the mean of every point
while a 30-seed sweep runs. A metric with one value per task is one tag (`online_accuracy`); one with a value per
hidden layer (or any one more axis) is one tag per index (`dead_fraction/0`); metrics with more axes (Hessian
densities) are left to `metrics.npz`, which stays the source of truth. A value that is not finite (a quantity
not measured at that task, an epsilon-rank the method cannot resolve, the loss of a diverged seed, and so the mean
over seeds that include it) is left out of the event files, a gap in the curve; `metrics.npz` keeps it, and
`nonfinite_steps` counts a diverged seed's steps. The seed mean of each chunk's last task is
also logged at INFO (on the console with `--verbosity=0`).

The event files are written with `tensorboardX`, not CLU's `metric_writers`: CLU's TensorBoard writer goes through
`tf.summary` and so needs TensorFlow (600 MB), which this package does not otherwise need; tensorboardX writes the
same event files with numpy and protobuf only. Viewing them needs `pip install tensorboard`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from plasticity_jax import sweeps

DIRECTORY = 'tensorboard'


class LiveMetrics:
    """TensorBoard writers for one program's runs (points x seeds); a context manager that closes them."""

    def __init__(self, workdir: str, runs: sweeps.Runs, first_task: int = 0, enabled: bool = True):
        """`first_task`: the task the run starts (or resumes) at; events of later tasks left by an interrupted
        attempt are dropped (TensorBoard's purge step), so a resumed run's curves have no duplicates."""
        self._runs = runs
        self._writers: dict[str, Any] = {}  # tensorboardX.SummaryWriter, imported only when enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        names = runs.grid.names
        for point, values in enumerate(runs.grid.points):
            label = ','.join(f'{name.rsplit(".", 1)[-1]}={value:g}' for name, value in zip(names, values))
            folder = os.path.join(workdir, DIRECTORY, label)
            for who in [*(f'seed_{seed}' for seed in range(runs.num_seeds)), 'mean']:
                self._writers[f'{point}/{who}'] = SummaryWriter(os.path.join(folder, who), purge_step=first_task,
                                                                flush_secs=30)

    def write(self, chunk_metrics: Mapping[str, np.ndarray], first_task: int) -> None:
        """Writes a chunk's metrics, each with leading axes (run, task) (runs = points x seeds, unpadded)."""
        if not self._writers:
            return
        num_seeds = self._runs.num_seeds
        for name, values in chunk_metrics.items():
            if values.ndim > 3:
                continue
            by_point = np.asarray(values, np.float64).reshape(-1, num_seeds, *values.shape[1:])
            tags = [name] if values.ndim == 2 else [f'{name}/{i}' for i in range(values.shape[2])]
            for point, seeds in enumerate(by_point):
                series = {**{f'seed_{s}': seeds[s] for s in range(num_seeds)}, 'mean': seeds.mean(axis=0)}
                for who, per_task in series.items():
                    writer = self._writers[f'{point}/{who}']
                    for task, row in enumerate(per_task.reshape(per_task.shape[0], -1)):
                        for tag, value in zip(tags, row):
                            if np.isfinite(value):
                                writer.add_scalar(tag, value, first_task + task)
        for writer in self._writers.values():
            writer.flush()
        last = {name: float(np.mean(values[:, -1])) for name, values in chunk_metrics.items() if values.ndim == 2}
        logging.info('task %d, mean over runs: %s', first_task + chunk_metrics['nonfinite_steps'].shape[1] - 1,
                     ', '.join(f'{name} {value:.4g}' for name, value in sorted(last.items())))

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def __enter__(self) -> LiveMetrics:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
