"""Curvature-vector products averaged exactly over a dataset.

All products are of the *mean* training loss over a dataset of N examples,

    L(theta) = (1/N) sum_i l(f(theta, x_i), y_i),

with `f = apply_fn` the model and `l` a per-example loss. The three curvature matrices are

* Hessian          H = (1/N) sum_i d^2 l_i / d theta^2                              (exact second derivative)
* GGN              G = (1/N) sum_i J_i^T H_out,i J_i,  J_i = d f(theta, x_i) / d theta,
                   H_out,i = d^2 l / d f^2 at f(theta, x_i)      (Schraudolph 2002; Martens 2020, Sec. 8)
* empirical Fisher F = (1/N) sum_i g_i g_i^T,  g_i = d l_i / d theta with the *observed* labels
                   (Kunstner, Balles & Hennig 2019 discuss how it differs from the true Fisher/GGN)

and the products are computed without forming the matrices:

* `H v` by forward-over-reverse: the JVP of the gradient, `jax.jvp(jax.grad(L), (theta,), (v,))`
  (Pearlmutter 1994; the JAX autodiff cookbook recommends this order).
* `G v` as `J^T (H_out (J v))`: one linearisation of the network (`jax.linearize`, which gives `J v`), the output
  Hessian applied by forward-over-reverse on the *outputs* (no C x C matrix is formed, so any twice-differentiable
  per-example loss works), and `J^T` by transposing the linearisation (`jax.linear_transpose`), so the network is run
  forward once.
* `F v` as `sum_i g_i (g_i . v)`: the per-example directional derivatives `g_i . v` are one JVP of the vector of
  per-example losses, and `sum_i c_i g_i` is the transpose of that JVP, so per-example gradients are never stored.

Dataset averaging. A dataset is a pair `(inputs, targets)` of arrays (or pytrees of arrays) whose leading axis is the
example axis. `dataset_average` runs `lax.scan` over ceil(N / chunk_size) chunks of exactly `chunk_size` examples;
when N is not a multiple of `chunk_size` the last chunk is shifted back to end at example N instead of being padded
(so no padded copy of the dataset is ever made), and a per-example weight mask zeroes the examples it shares with
the previous chunk. The per-chunk *weighted sums* are added and divided by N. Every example is counted exactly
once, none is dropped, and the result equals the full-batch product up to floating-point summation order, whatever
`chunk_size` is. Memory is that of one chunk (of one product; a linearised operator keeps more, see below);
compile time does not depend on the number of chunks.

Linearising once for many products (`flat_matvec(..., linearize=True)`, the default for Lanczos, SLQ and the trace):
Lanczos applies the same operator `order` times at fixed parameters, so the work that does not depend on the vector
is done once by `jax.linearize` (for the Hessian, of the dataset-mean gradient, whose linear part is `v -> H v`):
every chunk's forward and backward pass runs once and each product replays only the tangent half of
forward-over-reverse (for dense layers about 2/3 of the matrix products of a recomputed one; measured 1.8 s instead
of 2.7 s per product for the 9.6M-parameter MLP on 2,000 examples on a 2-core CPU). Memory: the residuals of all N
examples stay alive with the returned operator (see `flat_matvec`); `linearize=False` recomputes them per product.

Everything here is for ONE run and pure: the engine may `jax.vmap` any of these functions over a leading seed axis of
`params` (and of `dataset`, if each seed has its own data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

Params = Any
Dataset = tuple[Any, Any]  # (inputs, targets), each with a leading example axis
ApplyFn = Callable[[Params, Any], jax.Array]  # apply_fn(params, inputs) -> outputs (batch, num_outputs)
LossFn = Callable[[jax.Array, Any], jax.Array]  # loss(outputs (batch, C), targets (batch, ...)) -> (batch,)
Matvec = Callable[[jax.Array], jax.Array]


# ------------------------------------------------------------------------------------------------------------ losses

def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels: `l = logsumexp(z) - z_y`, shape (batch,).

    Its output Hessian is `diag(p) - p p^T` with `p = softmax(z)` (positive semi-definite, rank C - 1).
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example squared error averaged over output units: `l = (1/C) sum_c (f_c - y_c)^2`, shape (batch,).

    No factor 1/2 (as `torch.nn.MSELoss`), so the output Hessian is `(2/C) I`. Targets of shape (batch,) are taken
    as one output per example (for predictions of shape (batch, 1)).
    """
    targets = jnp.reshape(targets, predictions.shape).astype(predictions.dtype)
    err = (predictions - targets).reshape(predictions.shape[0], -1)
    return jnp.mean(err**2, axis=-1)


LOSSES: dict[str, LossFn] = {
    'cross_entropy': softmax_cross_entropy,
    'mse': mean_squared_error,
}


def get_loss(loss: str | LossFn) -> LossFn:
    """The per-example loss named `loss` ('cross_entropy' or 'mse'), or `loss` itself if it is a callable."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f'unknown loss {loss!r}; valid: {sorted(LOSSES)} or a callable')
    return LOSSES[loss]


def is_cross_entropy(loss: str | LossFn) -> bool:
    return loss == 'cross_entropy' or loss is softmax_cross_entropy


# ------------------------------------------------------------------------------------------------ dataset averaging

def num_examples(dataset: Any) -> int:
    """The (static) size of the leading example axis shared by every leaf of `dataset`."""
    sizes = {leaf.shape[0] for leaf in jax.tree_util.tree_leaves(dataset)}
    if len(sizes) != 1:
        raise ValueError(f'every leaf of the dataset needs the same leading (example) axis, got sizes {sorted(sizes)}')
    return sizes.pop()


def chunk_bounds(n: int, chunk_size: int | None) -> tuple[int, int]:
    """`(chunk_size, num_chunks)` actually used for `n` examples (`None` or >= n: one chunk of all n)."""
    if chunk_size is None or chunk_size >= n:
        return n, 1
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be positive, got {chunk_size}')
    return chunk_size, -(-n // chunk_size)


def get_chunk(dataset: Any, index: jax.Array, chunk_size: int) -> tuple[Any, jax.Array]:
    """Chunk `index` of `dataset` and its example weights, for `n = num_examples(dataset) >= chunk_size`.

    Chunk c covers examples `[start, start + chunk_size)` with `start = min(c * chunk_size, n - chunk_size)`: the
    last chunk, when N is not a multiple of `chunk_size`, is shifted back so that it ends at example N (no padded
    copy of the dataset is made), and the examples it shares with the previous chunk get weight 0. Weights are 1
    for every example the chunk counts, so over all chunks every example is counted exactly once.
    """
    n = num_examples(dataset)
    start = jnp.minimum(index * chunk_size, n - chunk_size)
    chunk = jax.tree_util.tree_map(lambda leaf: jax.lax.dynamic_slice_in_dim(leaf, start, chunk_size, 0), dataset)
    weights = (start + jnp.arange(chunk_size)) >= index * chunk_size
    return chunk, weights


def dataset_average(chunk_sum: Callable[[Any, jax.Array], Any], dataset: Any, chunk_size: int | None = None) -> Any:
    """Exact mean over all N examples of a per-example quantity computed chunk by chunk.

    `chunk_sum(chunk, weights)` must return the *weighted sum* over the chunk's examples (`chunk` has the
    dataset's structure with leading axis `chunk_size`; `weights` is a (chunk_size,) boolean mask, 0 for examples
    the chunk must not count, see `get_chunk`). The result is `(1/N) sum_chunks chunk_sum(chunk, weights)`,
    accumulated by `lax.scan` over chunk indices, so no example is dropped or counted twice and compile time does
    not grow with the number of chunks.
    """
    n = num_examples(dataset)
    chunk_size, num_chunks = chunk_bounds(n, chunk_size)
    if num_chunks == 1:
        total = chunk_sum(dataset, jnp.ones((n,), bool))
    else:
        shapes = jax.eval_shape(lambda i: chunk_sum(*get_chunk(dataset, i, chunk_size)), jnp.int32(0))
        init = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def body(acc, index):
            return jax.tree_util.tree_map(jnp.add, acc, chunk_sum(*get_chunk(dataset, index, chunk_size))), None

        total, _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
    return jax.tree_util.tree_map(lambda t: t / jnp.asarray(n, t.dtype), total)


# ------------------------------------------------------------------------------------------ products on one chunk

def _weighted(weights: jax.Array, values: jax.Array) -> jax.Array:
    return weights.astype(values.dtype) * values


def _per_example_losses(apply_fn: ApplyFn, loss_fn: LossFn, inputs: Any, targets: Any) -> Callable[[Params], jax.Array]:
    return lambda p: loss_fn(apply_fn(p, inputs), targets)


def hvp(f: Callable[[Params], jax.Array], params: Params, v: Params) -> Params:
    """Hessian-vector product of a scalar function by forward-over-reverse: `jvp(grad(f))(params; v)`."""
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def batch_hessian_vector_product(apply_fn: ApplyFn, loss: str | LossFn, params: Params, inputs: Any, targets: Any,
                                 weights: jax.Array, v: Params) -> Params:
    """`sum_i w_i (d^2 l_i / d theta^2) v` over one chunk (a weighted SUM, not a mean)."""
    losses = _per_example_losses(apply_fn, get_loss(loss), inputs, targets)
    return hvp(lambda p: jnp.sum(_weighted(weights, losses(p))), params, v)


def batch_ggn_vector_product(apply_fn: ApplyFn, loss: str | LossFn, params: Params, inputs: Any, targets: Any,
                             weights: jax.Array, v: Params) -> Params:
    """`sum_i w_i J_i^T H_out,i J_i v` over one chunk (a weighted SUM)."""
    loss_fn = get_loss(loss)
    outputs, jvp_fn = jax.linearize(lambda p: apply_fn(p, inputs), params)
    jv = jvp_fn(v)
    # The weighted loss sum is separable over examples, so its Hessian w.r.t. the outputs is block diagonal with
    # blocks w_i H_out,i; forward-over-reverse applies it to J v without forming it.
    h_jv = hvp(lambda o: jnp.sum(_weighted(weights, loss_fn(o, targets))), outputs, jv)
    (ggn_v,) = jax.linear_transpose(jvp_fn, params)(h_jv)
    return ggn_v


def batch_fisher_vector_product(apply_fn: ApplyFn, loss: str | LossFn, params: Params, inputs: Any, targets: Any,
                                weights: jax.Array, v: Params) -> Params:
    """`sum_i w_i g_i (g_i . v)` over one chunk (a weighted SUM), `g_i` the gradient of example i's loss."""
    losses, jvp_fn = jax.linearize(_per_example_losses(apply_fn, get_loss(loss), inputs, targets), params)
    gv = jvp_fn(v)  # (batch,): g_i . v
    (fisher_v,) = jax.linear_transpose(jvp_fn, params)(_weighted(weights, gv))
    return fisher_v


BATCH_PRODUCTS = {
    'hessian': batch_hessian_vector_product,
    'ggn': batch_ggn_vector_product,
    'fisher': batch_fisher_vector_product,
}
CURVATURES = tuple(BATCH_PRODUCTS)


# --------------------------------------------------------------------------------------- products over a dataset

def curvature_vector_product(curvature: str, apply_fn: ApplyFn, loss: str | LossFn, params: Params,
                             dataset: Dataset, v: Params, *, chunk_size: int | None = None) -> Params:
    """`C v` for C in {'hessian', 'ggn', 'fisher'} of the mean loss over ALL examples of `dataset`.

    `dataset = (inputs, targets)`; examples are processed `chunk_size` at a time (None: all at once) and the
    per-chunk weighted sums are added and divided by N (see `dataset_average`). `v` has the structure of `params`.
    """
    if curvature not in BATCH_PRODUCTS:
        raise ValueError(f'unknown curvature {curvature!r}; valid: {list(CURVATURES)}')
    product = BATCH_PRODUCTS[curvature]

    def chunk_sum(chunk, weights):
        inputs, targets = chunk
        return product(apply_fn, loss, params, inputs, targets, weights, v)

    return dataset_average(chunk_sum, dataset, chunk_size)


def hessian_vector_product(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, v: Params, *,
                           chunk_size: int | None = None) -> Params:
    """Hessian of the dataset-mean loss times `v` (forward-over-reverse, exact average over chunks)."""
    return curvature_vector_product('hessian', apply_fn, loss, params, dataset, v, chunk_size=chunk_size)


def ggn_vector_product(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, v: Params, *,
                       chunk_size: int | None = None) -> Params:
    """Generalized Gauss-Newton `(1/N) sum_i J_i^T H_out,i J_i` of the dataset-mean loss times `v`."""
    return curvature_vector_product('ggn', apply_fn, loss, params, dataset, v, chunk_size=chunk_size)


def fisher_vector_product(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, v: Params, *,
                          chunk_size: int | None = None) -> Params:
    """Empirical Fisher `(1/N) sum_i g_i g_i^T` (observed labels) times `v`."""
    return curvature_vector_product('fisher', apply_fn, loss, params, dataset, v, chunk_size=chunk_size)


def _linearized_product(curvature: str, apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset,
                        chunk_size: int | None) -> Callable[[Params], Params]:
    """`v -> C v` over the dataset with everything that does not depend on `v` computed once, by `jax.linearize`.

    Hessian: `jax.linearize` of the dataset-mean gradient `theta -> (1/N) sum_chunks grad(chunk loss sum)` at
    `params`. Its linear part is `v -> H v`: the tangent (JVP) half of forward-over-reverse, while the forward and
    backward passes of every chunk ran once, here, and left their residuals (activations, output gradients, ...).
    GGN and Fisher: `jax.linearize` of the product itself as a function of `v` (it is linear in `v`): the work
    that does not depend on `v` (the network's forward pass and its linearisation, the output Hessians) is done
    once, and the returned linear function replays only the `v`-dependent part (`jax.linearize` also evaluates the
    product once at v = 0, which is discarded).

    The chunk loop (`lax.scan` in `dataset_average`) is linearised as a whole: JAX splits it into a loop that runs
    now and stores each chunk's residuals (stacked over chunks, loop-invariant ones hoisted) and a loop over the
    chunks that the linear function runs, so the exact chunk-weighted average is kept.
    """
    if curvature == 'hessian':
        loss_fn = get_loss(loss)

        def mean_gradient(p):
            def chunk_sum(chunk, weights):
                inputs, targets = chunk
                return jax.grad(lambda q: jnp.sum(_weighted(weights, loss_fn(apply_fn(q, inputs), targets))))(p)
            return dataset_average(chunk_sum, dataset, chunk_size)

        return jax.linearize(mean_gradient, params)[1]
    product = lambda v: curvature_vector_product(curvature, apply_fn, loss, params, dataset, v, chunk_size=chunk_size)
    return jax.linearize(product, jax.tree_util.tree_map(jnp.zeros_like, params))[1]


def flat_matvec(curvature: str, apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, *,
                chunk_size: int | None = None, linearize: bool = True) -> tuple[Matvec, int]:
    """The curvature operator on flat vectors, for Lanczos: returns `(matvec, dim)`.

    `matvec(u)` takes a vector of `dim = number of parameters` entries in any float dtype (Lanczos may keep its basis
    in float64), computes the product in the parameters' own dtype and returns it in `u`'s dtype. Parameters are
    flattened with `jax.flatten_util.ravel_pytree` (leaf order of `jax.tree_util`).

    Linearisation (`linearize=True`, the default): the work that does not depend on `u` is done once, when
    `flat_matvec` is called, by `jax.linearize` (see `_linearized_product`); for the Hessian that is the forward and
    backward pass of every chunk, so each product costs only the tangent half of forward-over-reverse (about 2/3 of
    a recomputed product for dense layers), which pays off from the second product on. The price is memory: the
    residuals of ALL N examples are kept while the matvec is alive (for an MLP a few (N, width) arrays per layer:
    182 MiB for the Hessian of the 784-2000-2000-2000-10 MLP on 2,000 float32 examples, half of an order-10 Lanczos
    basis of its 9.6M parameters; for convolutional networks, whose activations are large, it can be much more), so
    `chunk_size` then bounds only the working memory of one product. `linearize=False` recomputes the forward and
    backward pass of each chunk inside every product instead, so memory is that of one chunk.

    Under `jax.jit`, call `flat_matvec` INSIDE the jitted function with `params` and `dataset` as arguments of the
    jitted function, as `summary.spectrum_summary` does. Do not `jax.jit` the returned `matvec` itself, nor a
    function that closes over concrete `params`/`dataset`: closed-over arrays become compile-time constants, and
    XLA constant-folds the network through them (minutes for a 10M-parameter MLP), and with `linearize=True` called
    outside `jit` the residuals are concrete arrays, which would be embedded the same way.
    """
    if curvature not in BATCH_PRODUCTS:
        raise ValueError(f'unknown curvature {curvature!r}; valid: {list(CURVATURES)}')
    flat, unravel = ravel_pytree(params)
    if linearize:
        product = _linearized_product(curvature, apply_fn, loss, params, dataset, chunk_size)
    else:
        product = lambda v: curvature_vector_product(curvature, apply_fn, loss, params, dataset, v,
                                                     chunk_size=chunk_size)

    def matvec(u: jax.Array) -> jax.Array:
        return ravel_pytree(product(unravel(u.astype(flat.dtype))))[0].astype(u.dtype)

    return matvec, flat.size
