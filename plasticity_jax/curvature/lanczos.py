"""Lanczos tridiagonalisation with full reorthogonalisation, as one `lax.fori_loop`.

Given a symmetric operator A (available only through `matvec`) and a start vector v0, `order` = m steps of Lanczos
build an orthonormal basis Q = [q_1 ... q_m] of the Krylov space K_m(A, v0) and the symmetric tridiagonal
T = Q^T A Q with diagonal alpha and off-diagonal beta (Lanczos 1950; Golub & Van Loan, Matrix Computations, 4th ed.,
Alg. 10.1.1 and Sec. 10.3.1). The eigenvalues of T (Ritz values) approximate the extreme eigenvalues of A first;
with the squared first components of T's eigenvectors as weights they form the Gauss quadrature rule of the spectral
measure of A seen from v0, which stochastic Lanczos quadrature (`density.py`) averages over random v0.

Implementation choices:

* Full reorthogonalisation: every new vector is orthogonalised against the whole basis by classical Gram-Schmidt
  applied twice ("twice is enough": Parlett 1998, Sec. 6.9; Giraud, Langou, Rozloznik & van den Eshof 2005): two
  passes give orthogonality to working precision as long as the vector is not numerically in the span of the
  basis, which the breakdown test below rules out (its tolerance eps**0.75 is far above eps). Without it, finite
  precision makes the basis lose orthogonality once a Ritz value converges and copies ("ghosts") of converged
  eigenvalues appear, which would corrupt the SLQ weights and hence the epsilon-rank. The basis is a preallocated
  (order, dim) array whose rows after the current step are zero, so projecting on all of it needs no dynamic
  shapes. Each pass is two matrix-vector products that stream the whole basis, zero rows included: on a CPU,
  reading only the rows in use (a loop over blocks of rows with a dynamic trip count, which keeps the compile time
  independent of the order) measured 1.3 to 4 times slower at 9.6M parameters than streaming the whole basis,
  even with half the rows unused, because XLA materialises each dynamically sliced block in a new buffer before
  the products.
* In-place basis: the loop carries the (order, dim) basis and writes one row per step. XLA updates it in place only
  if every read of the old basis is ordered before the write. `q_j . w` (for alpha) feeds nothing that is written,
  and with it unordered XLA's copy insertion copied the whole basis twice per step (768 MB at order 10 and 9.6M
  float32 parameters; an unmasked write alone kept both copies). The write (`step`) is an unmasked
  `dynamic_update_slice` whose value depends on alpha through `in_place.false_after`, which removes both copies (a
  test checks the compiled loop) and leaves every result bit for bit the same; the engine orders its weight
  updates the same way (`engine.apply_updates_after_backward`).
* The projection back, `Q^T c`, is written as `basis.T @ c` rather than `c @ basis`: the same dot with the (dim,)
  result as a column, for which XLA:CPU's dot is faster (39 instead of 62 ms for a 10 x 9.6M float32 basis on the
  2-core benchmark CPU), with bitwise the same result. With both changes one step's Lanczos bookkeeping at order
  10 and 9.6M parameters (measured with a diagonal `matvec`, one seed under `vmap`) took 0.11-0.14 s instead of
  0.18-0.30 s on that CPU (interleaved runs, load 2.8-3.1).
* One `lax.fori_loop` over the steps: the loop body is traced once, so the jaxpr and the compile time do not grow with
  `order` (a test checks the equation count of order 10 vs 30).
* Precision: the basis and the tridiagonal are kept in float64 when `jax_enable_x64` is on and in float32 otherwise
  (`default_dtype`); `matvec` receives vectors in that dtype (the model's products cast to the parameters' dtype
  internally, see `products.flat_matvec`).
* Breakdown: if the residual after reorthogonalisation has norm beta_j <= tol * ||A||_est (an invariant subspace has
  been found, e.g. when A has repeated eigenvalues, or the Krylov space is exhausted at order = dim), the
  off-diagonal is set to exactly 0 and the iteration restarts from a new direction orthogonalised against the basis
  (Parlett, Sec. 13.2): the coordinate vector e_i least represented in the basis (smallest ||Q e_i||, kept as a
  running per-coordinate sum of q_k**2 rather than recomputed from the basis at every step), which is
  deterministic, needs no random numbers, and is guaranteed to have a part of norm >= sqrt(1 - k/dim) outside the
  span of the k vectors so far. It is computed only on a breakdown (`lax.cond`; under `vmap` over seeds a custom
  batching rule computes every run's restart vector only in the steps where some run broke down, where a plain
  `lax.cond` would run both branches at every step), with one exact projection pass.
  T is then block diagonal: the extra blocks hold further eigenvalues of A (so with order = dim all eigenvalues are
  found), while their eigenvectors have zero first component and so carry zero SLQ weight, leaving the quadrature
  rule of v0 exact. No division by a vanishing beta ever happens, so no NaN.

Why not a library: matfree (Kraemer et al.) provides Lanczos tridiagonalisation with full reorthogonalisation and
SLQ, but this ~100-line loop gives control over exactly what the issue asks for (float64 basis against a float32
operator, breakdown restarts that keep the SLQ weights exact, the residual norms for convergence checks, and
per-seed `vmap`), is checked to 1e-8 against dense `eigh` by the tests, and avoids a dependency whose API has changed
between releases. Memory is O(order * dim) for the basis (order=100 and 1e6 float64 parameters: 0.8 GB per run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from plasticity_jax import in_place
from plasticity_jax.linalg import eigh

Matvec = Callable[[jax.Array], jax.Array]


def default_dtype() -> jnp.dtype:
    """float64 when `jax_enable_x64` is on (also inside a `jax.enable_x64(True)` context), float32 otherwise."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


class LanczosResult(NamedTuple):
    """m steps of Lanczos: A Q^T ~= Q^T T, with T tridiagonal(alphas, betas)."""

    alphas: jax.Array  # (order,) diagonal of T
    betas: jax.Array  # (order - 1,) off-diagonal of T; exactly 0 after a breakdown restart
    residual_norm: jax.Array  # () norm of the residual after the last step (0 if it broke down)
    basis: jax.Array  # (order, dim) orthonormal Lanczos vectors, as rows
    breakdowns: jax.Array  # (order,) bool: step j's residual was below tolerance (a restart followed)


def _orthogonalize(basis: jax.Array, w: jax.Array, passes: int) -> jax.Array:
    """`passes` passes of classical Gram-Schmidt of `w` (dim,) against every row of `basis` (unused rows are zero).

    Each pass is two matrix-vector products that stream the basis once each: `w - Q^T (Q w)` (`Q^T c` as
    `basis.T @ c`: see the module docstring).
    """
    for _ in range(passes):
        w = w - basis.T @ (basis @ w)
    return w


def _restart_vector(basis: jax.Array, weight: jax.Array) -> jax.Array:
    """The coordinate vector e_i least represented in the basis, minus its projection on the basis.

    `weight` holds sum_k q_k**2 per coordinate, i.e. ||Q e_i||^2. The projection coefficients Q e_i are column i of
    the basis, read exactly (no rounding), so the pass costs one stream of the basis. One pass suffices: a second
    one is needed only for vectors close to the span, and e_i is far from it (its part outside has norm
    >= sqrt(1 - k/dim) for k basis vectors), so the result is orthogonal to the basis to O(k eps / sqrt(1 - k/dim))
    relative to its norm, as the twice-orthogonalised residual is.
    """
    dim = weight.shape[0]
    # The first index of the minimum, as `argmin` (whose variadic reduction was 4x slower on XLA's CPU backend).
    i = jnp.minimum(jnp.min(jnp.where(weight == jnp.min(weight), jnp.arange(dim), dim)), dim - 1)
    return (-(basis.T @ basis[:, i])).at[i].add(1)


@jax.custom_batching.custom_vmap
def _next_vector(broke: jax.Array, w: jax.Array, basis: jax.Array, weight: jax.Array) -> jax.Array:
    """The unnormalised next Lanczos vector: the residual `w`, or on a breakdown (`broke`) the restart vector."""
    return jax.lax.cond(broke, _restart_vector, lambda basis, weight: w, basis, weight)


@_next_vector.def_vmap
def _next_vector_batched(axis_size, in_batched, broke, w, basis, weight):
    """Under `vmap` (runs or seeds): the restart vectors only in the steps where some run broke down.

    `lax.cond` on a batched predicate runs both branches and selects, i.e. it would stream every run's basis for a
    restart vector at every step (about 40-50 ms per run-step at 9.6M parameters on the benchmark CPU, ~4% of an
    8-seed Hessian iteration). Here the condition is whether ANY run broke (a scalar); each run then takes its own
    restart vector or residual, as the select would: bit for bit the same results.
    """
    broke_batched, w_batched, basis_batched, weight_batched = in_batched
    broke = broke if broke_batched else jnp.broadcast_to(broke, (axis_size,))
    w = w if w_batched else jnp.broadcast_to(w, (axis_size, *w.shape))

    def restarted(broke, w, basis, weight):
        restart = jax.vmap(_restart_vector, in_axes=(0 if basis_batched else None, 0 if weight_batched else None),
                           axis_size=axis_size)(basis, weight)
        return jnp.where(broke[:, None], restart, w)

    return jax.lax.cond(jnp.any(broke), restarted, lambda broke, w, basis, weight: w, broke, w, basis, weight), True


def lanczos(matvec: Matvec, v0: jax.Array, order: int, *, dtype=None, reorth_passes: int = 2,
            breakdown_tol: float | None = None) -> LanczosResult:
    """`order` steps of Lanczos with full reorthogonalisation on the symmetric operator `matvec`, from `v0`.

    Args:
      matvec: `u -> A u` on vectors of shape (dim,) (symmetric A).
      v0: start vector (dim,), nonzero; it is normalised.
      order: number of steps m (static), 1 <= m <= dim.
      dtype: dtype of the basis and of T; default `default_dtype()` (float64 with x64 on, else float32).
      reorth_passes: classical Gram-Schmidt passes per step against the whole basis (2 = "twice is enough").
      breakdown_tol: relative tolerance on beta_j / ||A||_est under which the step counts as a breakdown;
        default eps**0.75 of `dtype` (1.8e-12 in float64, 6.4e-6 in float32). ||A||_est is the largest ||A q_j||
        seen so far, a lower bound of the spectral norm.

    Returns:
      A `LanczosResult`. The Ritz values are the eigenvalues of `tridiagonal(alphas, betas)`.
    """
    dtype = jnp.dtype(dtype) if dtype is not None else default_dtype()
    (dim,) = v0.shape
    if not 1 <= order <= dim:
        raise ValueError(f'order must be in [1, dim={dim}], got {order}')
    if reorth_passes < 1:
        raise ValueError(f'reorth_passes must be positive, got {reorth_passes}')
    if breakdown_tol is None:
        breakdown_tol = float(jnp.finfo(dtype).eps) ** 0.75
    tiny = jnp.finfo(dtype).tiny

    v0 = v0.astype(dtype)
    q0 = v0 / jnp.maximum(jnp.linalg.norm(v0), tiny)
    basis = jnp.zeros((order, dim), dtype).at[0].set(q0)
    alphas = jnp.zeros((order,), dtype)
    betas = jnp.zeros((order,), dtype)
    breakdowns = jnp.zeros((order,), bool)

    def step(j, carry):
        basis, alphas, betas, breakdowns, weight, scale = carry
        q = basis[j]
        w = matvec(q).astype(dtype)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        alpha = jnp.dot(q, w)
        w = _orthogonalize(basis, w, reorth_passes)  # removes alpha q_j, beta q_{j-1} and all round-off components
        beta = jnp.linalg.norm(w)
        broke = beta <= breakdown_tol * scale
        # On breakdown continue from the restart vector (with beta = 0, T splits into blocks); under `vmap` it is
        # computed only in steps where some run broke down (`_next_vector_batched`).
        nxt = _next_vector(broke, w, basis, weight)
        nxt = nxt / jnp.maximum(jnp.linalg.norm(nxt), tiny)
        # Store q_{j+1} in place (see "In-place basis" above): after the last step the last row is written back
        # unchanged, and the write waits for alpha, the one read of the basis that `nxt` does not depend on.
        row = jnp.minimum(j + 1, order - 1)
        keep = (j + 1 >= order) | in_place.false_after(alpha)
        basis = jax.lax.dynamic_update_index_in_dim(basis, jnp.where(keep, basis[row], nxt), row, 0)
        alphas = alphas.at[j].set(alpha)
        betas = betas.at[j].set(jnp.where(broke, 0, beta))
        breakdowns = breakdowns.at[j].set(broke)
        return basis, alphas, betas, breakdowns, weight + nxt**2, scale

    carry = (basis, alphas, betas, breakdowns, q0**2, jnp.zeros((), dtype))
    basis, alphas, betas, breakdowns, _, _ = jax.lax.fori_loop(0, order, step, carry)
    return LanczosResult(alphas=alphas, betas=betas[:-1], residual_norm=betas[-1], basis=basis,
                         breakdowns=breakdowns)


def tridiagonal(alphas: jax.Array, betas: jax.Array) -> jax.Array:
    """The dense symmetric tridiagonal matrix with diagonal `alphas` (m,) and off-diagonal `betas` (m-1,)."""
    return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def ritz_decomposition(result: LanczosResult) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition of T: Ritz values (order,) ascending and T's eigenvectors (order, order) as columns."""
    return eigh(tridiagonal(result.alphas, result.betas))


def ritz_values(result: LanczosResult) -> jax.Array:
    """Ritz values (eigenvalues of T), ascending."""
    return ritz_decomposition(result)[0]


def ritz_residual_norms(result: LanczosResult) -> tuple[jax.Array, jax.Array]:
    """Ritz values (ascending) and their residual norms ||A y - theta y|| = |beta_m| |s_{m,i}| (Paige 1971).

    `y = Q^T s` is the Ritz vector; for symmetric A each Ritz value lies within its residual norm of an eigenvalue.
    This is the residual of the Lanczos relation, which ignores round-off: once a Ritz value has converged it can be
    0 (the last component of s underflows), while the attainable accuracy is about eps(dtype) * ||A|| (and that of
    the operator, e.g. a float32 Hessian-vector product under a float64 basis).
    """
    values, vectors = ritz_decomposition(result)
    return values, jnp.abs(result.residual_norm) * jnp.abs(vectors[-1, :])


def ritz_vectors(result: LanczosResult, vectors: jax.Array) -> jax.Array:
    """Ritz vectors `Q^T s` (dim, k) for eigenvectors `s` (order, k) of T."""
    return result.basis.T @ vectors


def top_k(result: LanczosResult, k: int) -> jax.Array:
    """The k largest Ritz values, in descending order."""
    return ritz_values(result)[::-1][:k]


def bottom_k(result: LanczosResult, k: int) -> jax.Array:
    """The k smallest Ritz values, in ascending order."""
    return ritz_values(result)[:k]
