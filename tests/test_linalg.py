"""linalg: jnp.linalg's values, and never a batched LAPACK call (the in-run exact GGN hang, issue 13; the rank
metrics' SVD)."""

import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax import curvature, engine
from plasticity_jax.linalg import eigh, eigvalsh, svdvals
from tests.conftest import REPO_ROOT, load_config


def test_equal_to_jnp_linalg_under_jit_and_nested_vmap():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 6, 6))
    x = x + jnp.swapaxes(x, -1, -2)
    values, vectors = jnp.linalg.eigh(x)
    for fn in (eigh, jax.vmap(eigh), jax.jit(jax.vmap(jax.vmap(eigh)))):
        got = fn(x)
        np.testing.assert_array_equal(got[0], values)
        np.testing.assert_allclose(np.abs(got[1]), np.abs(vectors), atol=1e-12)  # columns up to sign
    np.testing.assert_array_equal(jax.vmap(eigvalsh)(x), jnp.linalg.eigvalsh(x))
    rectangular = x[..., :4]
    np.testing.assert_array_equal(jax.jit(jax.vmap(jax.vmap(svdvals)))(rectangular),
                                  jnp.linalg.svd(rectangular, compute_uv=False))


def lapack_operands(lowered_text: str, routine: str = 'syevd') -> list[str]:
    """The operand type of every LAPACK call of `routine` (`lapack_?syevd_ffi`, ...) in a lowered program."""
    return re.findall(rf'custom_call @lapack_\w*{routine}\w*\(.*?:\s*\((tensor<[^>]*>)', lowered_text)


def test_the_engine_program_of_several_seeds_calls_lapack_one_matrix_at_a_time(shared_data_dir):
    """The rank metrics at each task's start (one SVD per hidden layer and seed) and L2-ER's eigenvalues at every
    step, in the engine's program of 3 seeds: single-matrix LAPACK calls only (lowering only: no compilation)."""
    for learner, routine in (('backprop', 'gesdd'), ('l2_er', 'syevd')):
        config = load_config('permuted_mnist.py', learner)
        config.update_from_flattened_dict({'num_seeds': 3, 'model.width': 8, 'problem.examples_per_task': 4,
                                           'metrics.probe_size': 16, 'data_dir': shared_data_dir})
        train = engine.make_train(config)
        state = jax.eval_shape(jax.vmap(train.init), engine.seed_keys(config))
        program = jax.jit(jax.vmap(train.run_tasks, in_axes=(0, None, None, None)), static_argnums=3)
        calls = lapack_operands(program.lower(state, train.data, 0, 1).as_text(), routine)
        assert calls and all(t.count('x') == 2 for t in calls), (learner, calls)  # tensor<MxNxf32>: one matrix


def test_in_run_measurement_at_the_size_that_hung_calls_lapack_one_matrix_at_a_time():
    """2 seeds x (start, end of task) x the (50 * 10)-square dual Gram matrix: the (2, 500, 500) `eigvalsh` that
    deadlocked XLA's 2-thread CPU pool inside the engine's task scan. jaxlib 0.10 splits a batched call over that
    pool (see linalg.py), so the lowered in-run measurement must hold single-matrix LAPACK calls only; the same
    program with `jnp.linalg.eigvalsh` holds the batched call (the check can fail). Lowering only: no compilation.
    """
    model = nn.Sequential([nn.Dense(4), jnp.tanh, nn.Dense(10)])
    dataset = (jax.random.normal(jax.random.PRNGKey(1), (50, 3)), jnp.arange(50) % 10)  # N = 50, C = 10
    apply_fn = lambda p, x: model.apply({'params': p}, x)
    params = jax.vmap(lambda k: model.init(k, dataset[0][:1])['params'])(jax.random.split(jax.random.PRNGKey(0)))

    def measure(p, use_library):
        fn = curvature.gauss_newton.exact_ggn_spectrum
        if not use_library:
            fn = _with_jnp_eigvalsh(fn)
        at = [fn(apply_fn, 'cross_entropy', q, dataset)['ggn_exact_top_eigenvalues'] for q in (p, p)]
        summary = curvature.spectrum_summary(apply_fn, 'cross_entropy', p, dataset,
                                             jax.random.PRNGKey(0), num_draws=1, order=4)
        return jnp.stack(at), summary['hessian_epsilon_rank']

    ours = lapack_operands(jax.jit(jax.vmap(lambda p: measure(p, True))).lower(params).as_text())
    assert ours and all(t.count('x') == 2 for t in ours), ours  # tensor<NxNxf64>: one matrix per call
    assert 'tensor<500x500x' in ' '.join(ours)
    batched = lapack_operands(jax.jit(jax.vmap(lambda p: measure(p, False))).lower(params).as_text())
    assert 'tensor<2x500x500x' in ' '.join(batched)


def _with_jnp_eigvalsh(fn):
    """`fn` with gauss_newton's eigvalsh swapped for jnp.linalg's while it traces (the unprotected program)."""
    def wrapped(*args, **kwargs):
        module = curvature.gauss_newton
        saved, module.eigvalsh = module.eigvalsh, jnp.linalg.eigvalsh
        try:
            return fn(*args, **kwargs)
        finally:
            module.eigvalsh = saved
    return wrapped


@pytest.mark.slow
def test_in_run_exact_ggn_that_hung_finishes(tmp_path, shared_data_dir):
    """The Permuted MNIST run that hung every time on a 2-core CPU before linalg.py (2 seeds, 4 tasks of 200
    examples, 200 curvature probes, exact GGN of 50: (2, 500, 500) eigvalsh), pinned to 2 CPUs (XLA sizes its
    pool from the affinity), in a subprocess with a timeout so that a regression fails instead of hanging."""
    script = f"""
import os
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
from plasticity_jax import config as config_lib, engine
c = config_lib.load('configs/permuted_mnist.py:lr0.01', {{
    'num_seeds': 2, 'num_tasks': 4, 'tasks_per_chunk': 4, 'problem.examples_per_task': 200, 'model.width': 100,
    'data_dir': {shared_data_dir!r}}})
c.curvature.update({{'every_tasks': 1, 'probe_size': 200, 'chunk_size': 200, 'order': 32, 'draws': 1,
                    'exact_ggn_probe_size': 50}})
out = engine.run(c, {str(tmp_path)!r}, progress=False)
print('counts', out['ggn_exact_epsilon_count'][:, :, 0, -1].tolist())
"""
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'counts' in result.stdout
