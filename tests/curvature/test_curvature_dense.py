"""The exact dense curvature path (`curvature.dense`) against `jax.hessian`."""

import jax
import numpy as np

from plasticity_jax.curvature import DEFAULT_EPSILONS, exact_spectrum

EPS = np.asarray(DEFAULT_EPSILONS)


def test_dense_hessian_path_equals_jax_hessian(classifier):
    c = classifier
    out = jax.device_get(jax.jit(lambda p: exact_spectrum(c.apply_fn, c.loss, p, c.dataset, chunk_size=5,
                                                          batch_size=8))(c.params))
    lam = np.linalg.eigvalsh(c.hessian)
    np.testing.assert_allclose(out['hessian_dense_eigenvalues'], lam, atol=1e-13 * np.abs(lam).max())
    count = (np.abs(lam)[None, :] > EPS[:, None]).sum(axis=1)
    np.testing.assert_array_equal(out['hessian_dense_epsilon_count'], count)
    np.testing.assert_allclose(out['hessian_dense_trace'], np.trace(c.hessian), rtol=1e-12)
