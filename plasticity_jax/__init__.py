"""plasticity_jax: loss of plasticity in deep continual learning, in JAX (see README.md)."""

import os

# jaxlib's CPU LAPACK kernels (the SVDs of the rank metrics, every eigendecomposition of `curvature`) call scipy's
# OpenBLAS, which by default starts a thread per core on top of XLA's own thread pool. On a CPU shared with other
# work those threads wait for each other's time slices: measured on a 2-core machine at a load average of 17, one
# 100 x 100 SVD took 336 ms instead of 0.4 ms, and the per-task work of an 8-seed Permuted MNIST run rose from about
# 1 s to 9 s (BENCHMARKS.md, "OpenBLAS threads"). XLA already spreads a batch of matrices over its pool, so OpenBLAS
# gets one thread unless the user sets OPENBLAS_NUM_THREADS. This takes effect only if OpenBLAS is not loaded yet,
# i.e. before the first LAPACK call of the process (jax loads it lazily): import plasticity_jax first, or export
# the variable.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
