"""Matrix decompositions that cannot deadlock XLA's CPU thread pool: one LAPACK call per matrix under `vmap`.

`eigh`, `eigvalsh` and `svdvals` are `jnp.linalg.eigh`, `jnp.linalg.eigvalsh` and `jnp.linalg.svd(...,
compute_uv=False)` of ONE matrix (or of each matrix of a stack), with a `vmap` rule
(`jax.custom_batching.custom_vmap`) that loops over the batch (`lax.map`) instead of handing LAPACK a batch of
matrices. Values are those of `jnp.linalg` exactly. Every decomposition of the package goes through here: the
curvature modules (Lanczos' tridiagonal, output-Hessian square roots, K-FAC factors, the dual Gram matrix, the dense
reference), the rank metrics' singular values (`metrics.representation`) and L2-ER's eigenvalues
(`learners.effective_rank`), all of which run under `vmap` over seeds inside the engine's compiled loops.

Why. jaxlib 0.10's CPU LAPACK kernels (`lapack_ssyevd_ffi`, `lapack_sgesdd_ffi`, ...) split a BATCH of matrices
(what `vmap` over seeds makes of `jnp.linalg.eigvalsh`) over XLA's intra-op thread pool and then block the worker that
runs the kernel until the pieces are done (`jax::ParallelBatchMap` -> `absl::BlockingCounter::Wait`,
jaxlib/cpu/lapack_kernels.cc). Inside a compiled loop, where XLA's thunk executor itself runs on that pool, two such
batched calls at once on a 2-thread pool (2 cores: the start- and end-of-task spectra of the engine's in-run
measurement run concurrently) leave no free worker for the pieces both wait for: the program hangs forever with every
thread in a futex wait. Observed deterministically with the in-run exact GGN (issue 13: Permuted MNIST, 2 seeds,
`exact_ggn_probe_size=50`, i.e. a (2, 500, 500) `eigvalsh`; gdb: both `tf_XLAEigen` workers in `ParallelBatchMap`
under `lapack_ssyevd_ffi` under `WhileThunk`, the main thread in `BlockUntilReadyWithCancel`), and with the rank
metrics' batched SVD on several fake CPU devices (BENCHMARKS.md, "a jaxlib deadlock"). jax-ml/jax#39292 and #39383
describe `ParallelBatchMap`'s fan-out of batched `eigh` over the XLA pool (there: OpenBLAS oversubscription on many
cores). A single matrix is not split, so looping over the batch keeps every LAPACK call on the thread that runs it.

Cost: the matrices of a batch are decomposed one after the other rather than in parallel, which on a CPU shared with
the rest of the program (other seeds' products, other thunks) costs little (BENCHMARKS.md, "per-task work"); on a
GPU the loop runs one solver call per matrix (a few per task).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def _one_matrix_at_a_time(decompose: Callable) -> Callable:
    """`decompose` of a (..., n, n) array as a loop of single-matrix calls, also under any number of `vmap`s."""

    @jax.custom_batching.custom_vmap
    def apply(matrix):
        if matrix.ndim == 2:
            return decompose(matrix)
        return jax.lax.map(apply, matrix)

    @apply.def_vmap
    def _rule(axis_size, in_batched, matrix):
        del axis_size
        out = jax.lax.map(apply, matrix) if in_batched[0] else apply(matrix)
        return out, jax.tree.map(lambda _: in_batched[0], out)

    return apply


eigh = _one_matrix_at_a_time(jnp.linalg.eigh)
eigh.__doc__ = '`jnp.linalg.eigh` (eigenvalues ascending, eigenvectors as columns), one LAPACK call per matrix.'
eigvalsh = _one_matrix_at_a_time(jnp.linalg.eigvalsh)
eigvalsh.__doc__ = '`jnp.linalg.eigvalsh` (ascending), one LAPACK call per matrix.'
svdvals = _one_matrix_at_a_time(lambda matrix: jnp.linalg.svd(matrix, compute_uv=False))
svdvals.__doc__ = '`jnp.linalg.svd(..., compute_uv=False)` (descending), one LAPACK call per matrix.'
