"""Problems: streams of tasks generated on the device (see `problems.base`)."""

from __future__ import annotations

from typing import Any, Callable

import ml_collections

from plasticity_jax.problems.base import Problem
from plasticity_jax.problems.permuted_mnist import PermutedMNIST
from plasticity_jax.problems.slowly_changing_regression import SlowlyChangingRegression


def _permuted_mnist(config: ml_collections.ConfigDict) -> tuple[Problem, Any]:
    from plasticity_jax.data import load_mnist

    mnist = load_mnist(config.data_dir or None, source=config.data_source)
    problem = PermutedMNIST(kind='classification', input_dim=28 * 28, num_outputs=10,
                            examples_per_task=config.problem.examples_per_task,
                            batch_size=config.problem.batch_size, probe_size=config.metrics.probe_size)
    return problem, PermutedMNIST.make_data(*mnist)


def _slowly_changing_regression(config: ml_collections.ConfigDict) -> tuple[Problem, Any]:
    p = config.problem
    problem = SlowlyChangingRegression(kind='regression', input_dim=p.num_bits, num_outputs=1,
                                       examples_per_task=p.examples_per_task, batch_size=p.batch_size,
                                       probe_size=config.metrics.probe_size, num_flipping_bits=p.num_flipping_bits,
                                       num_target_units=p.num_target_units, beta=p.beta, flip_mode=p.flip_mode)
    return problem, {}


# name -> factory(run_config) -> (problem, data on the device)
PROBLEMS: dict[str, Callable[[ml_collections.ConfigDict], tuple[Problem, Any]]] = {
    'permuted_mnist': _permuted_mnist,
    'slowly_changing_regression': _slowly_changing_regression,
}


def make_problem(config: ml_collections.ConfigDict) -> tuple[Problem, Any]:
    """Builds the problem named by `config.problem.name` and uploads its data to the device, once."""
    if config.problem.name not in PROBLEMS:
        raise ValueError(f'unknown problem.name {config.problem.name!r}; valid: {sorted(PROBLEMS)}')
    problem, data = PROBLEMS[config.problem.name](config)
    if problem.examples_per_task % problem.batch_size:
        raise ValueError(f'problem.examples_per_task ({problem.examples_per_task}) must be a multiple of '
                         f'problem.batch_size ({problem.batch_size}).')
    return problem, data


__all__ = ['PROBLEMS', 'PermutedMNIST', 'Problem', 'SlowlyChangingRegression', 'make_problem']
