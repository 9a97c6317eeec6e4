"""Reading finished (or running) experiments back: `load_run(workdir)`."""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np

from plasticity_jax import engine

SPECTRA_FILE = 'spectra.npz'


@dataclasses.dataclass(frozen=True)
class Run:
    """A run's resolved config and its metrics: name -> array with leading axes (seed, task).

    Per-layer correlates (`dead_fraction`, `effective_rank`, `approximate_rank`, `stable_rank`, `feature_rank`) have a
    third axis, the hidden layer.
    """

    workdir: str
    config: ml_collections.ConfigDict
    metrics: dict[str, np.ndarray]
    # From `python -m plasticity_jax.spectra`: metric -> (seed, checkpoint, ...), and 'task' -> (checkpoint,).
    spectra: dict[str, np.ndarray]

    @property
    def num_tasks_done(self) -> int:
        return next(iter(self.metrics.values())).shape[1] if self.metrics else 0

    @property
    def diverged_seeds(self) -> np.ndarray:
        """Indices of the seeds that met a non-finite loss."""
        return np.flatnonzero(self.metrics['nonfinite_steps'].sum(axis=1)) if self.metrics else np.array([], int)


def load_run(workdir: str) -> Run:
    config_path = os.path.join(workdir, engine.CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f'{workdir} is not a run directory: {config_path} does not exist.')
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    return Run(workdir=workdir, config=config, metrics=engine.load_npz(os.path.join(workdir, engine.METRICS_FILE)),
               spectra=engine.load_npz(os.path.join(workdir, SPECTRA_FILE)))
