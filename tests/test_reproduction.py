"""The published patterns of loss of plasticity, reproduced on small settings; all marked slow (`-m slow`).

Slowly-Changing Regression runs at the papers' full size (1M examples, about 12 CPU-s for the ReLU network: mostly
running); the Permuted MNIST check is reduced (width 100, 10,000 examples per task). The default suite covers the
mechanisms these runs compose (the problems, the engine, the metrics) with small runs.
"""

import jax
import numpy as np
import pytest

from plasticity_jax import engine
from tests.conftest import load_config, xla_optimizations


def scr_run(variants, num_seeds=8):
    """All 100 tasks of Slowly-Changing Regression: the host loop's program (`engine.make_vmapped`) over every task
    at once, without checkpoints. Only this program, which runs 1M steps, is compiled with XLA's optimisations
    (15.6 CPU-s optimised, 38.6 s at LLVM -O0); the init program, which runs once, is not (5 CPU-s less)."""
    config = load_config('slowly_changing_regression.py', variants)
    config.num_seeds = num_seeds
    train = engine.make_train(config)
    initial = jax.jit(jax.vmap(train.init))(engine.seed_keys(config))
    with xla_optimizations():
        return jax.device_get(engine.make_vmapped(train)(initial, config.num_tasks)[1])


@pytest.mark.slow
def test_slowly_changing_regression_relu_loses_plasticity():
    """Dohare et al. (Nature 2024, Fig. 1): with SGD (step size 0.01) a ReLU network's error first falls, then rises
    over the 100 tasks, while dead units accumulate, until it is worse than a linear network's."""
    relu = scr_run('relu,lr0.01')
    early, late = relu['online_mse'][:, 1:11].mean(), relu['online_mse'][:, -10:].mean()
    assert late > 1.25 * early, (early, late)
    dead = relu['dead_fraction'][..., 0].mean(axis=0)
    assert dead[-10:].mean() > dead[:10].mean() + 0.2, dead


@pytest.mark.slow
def test_slowly_changing_regression_relu_ends_worse_than_linear():
    relu = scr_run('relu,lr0.01')
    linear = scr_run('identity,lr0.01')
    assert relu['online_mse'][:, -10:].mean() > linear['online_mse'][:, -10:].mean()
    assert np.all(linear['dead_fraction'] == 0)


@pytest.mark.slow
def test_slowly_changing_regression_tanh_loses_plasticity():
    tanh = scr_run('tanh,lr0.01')
    assert tanh['online_mse'][:, -10:].mean() > 1.5 * tanh['online_mse'][:, 1:11].mean()
    assert tanh['weight_magnitude'][:, -1].mean() > 2 * tanh['weight_magnitude'][:, 0].mean()


@pytest.mark.slow
def test_permuted_mnist_small_network_loses_plasticity(tmp_path, shared_data_dir):
    """Dissertation Figs. 4.2-4.7, reduced for a CPU: accuracy falls after its early peak while dead units and weight
    magnitude grow and the effective rank falls (width 100, step size 0.01, 10,000 examples per task)."""
    config = load_config('permuted_mnist.py', 'lr0.01')
    config.update({'num_seeds': 2, 'num_tasks': 40, 'tasks_per_chunk': 20, 'data_dir': shared_data_dir})
    config.problem.examples_per_task = 10_000
    config.model.width = 100
    m = engine.run(config, str(tmp_path), progress=False)
    accuracy = m['online_accuracy'].mean(axis=0)
    assert accuracy[:5].max() > accuracy[-5:].mean() + 0.02, accuracy
    assert m['dead_fraction'][:, -1].mean() > m['dead_fraction'][:, 0].mean() + 0.05
    assert m['weight_magnitude'][:, -1].mean() > 1.5 * m['weight_magnitude'][:, 0].mean()
    assert m['effective_rank'][:, -1].mean() < 0.8 * m['effective_rank'][:, 0].mean()
