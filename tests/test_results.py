"""Reading runs back: a Run prints as one short line."""

import ml_collections
import numpy as np

from plasticity_jax.results import Run


def test_run_repr_is_one_short_line_naming_shape_sweep_and_metrics():
    config = ml_collections.ConfigDict({'learner': {'name': 'cbp'}})
    metrics = {'online_accuracy': np.zeros((2, 30, 800)), 'nonfinite_steps': np.zeros((2, 30, 800)),
               'dead_fraction': np.zeros((2, 30, 800, 3))}
    run = Run(workdir='runs/pmnist', config=config, metrics=metrics, spectra={},
              sweep={'learner.step_size': np.array([0.01, 0.001])})
    text = repr(run)
    assert text == ("Run('runs/pmnist', cbp, 2 points x 30 seeds x 800 tasks, learner.step_size=(0.01, 0.001), "
                    "metrics: dead_fraction, nonfinite_steps, online_accuracy)")
    assert repr(run.point(1)).startswith("Run('runs/pmnist', cbp, 30 seeds x 800 tasks, metrics:")
