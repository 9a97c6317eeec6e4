"""Kronecker-factored GGN (K-FAC) per dense layer, its eigenvalues and epsilon-rank.

For a dense layer z = W^T a + b (flax `nn.Dense`, kernel W of shape (d_in, d_out)), write its parameters as the
(d_in + 1, d_out) matrix [W; b^T] flattened row-major (kernel rows first, the bias as the last row; no bias row when
`use_bias=False`). The per-example gradient of that block is vec(a~ g^T) = a~ (x) g with a~ = [a; 1], so the
layer's GGN block (1/N) sum_i sum_c (a~_i (x) g_{i,c})(a~_i (x) g_{i,c})^T is approximated by (Martens & Grosse
2015, "K-FAC"; the spectral-collapse paper's Eq. 1)

    A (x) G,   A = (1/N) sum_i a~_i a~_i^T,   G = (1/N) sum_i sum_c g_{i,c} g_{i,c}^T,

where g_{i,c} = J_{z,i}^T L_i[:, c] back-propagates the columns of a square root L_i L_i^T = H_out,i of the loss
Hessian w.r.t. the network outputs to the layer's pre-activations z. The eigenvalues of A (x) G are the products
lambda_A * lambda_G of the factors' eigenvalues, so its epsilon-rank needs two small eigendecompositions only.

`mode='exact'` uses all C columns of L_i = V sqrt(Lambda) from the eigendecomposition of H_out,i (for softmax
cross-entropy this gives the same G as the per-class form sum_c p_c (p - e_c)(p - e_c)^T, since G depends on
L L^T only). `mode='sampled'` back-propagates `num_samples` random vectors with covariance H_out,i per example (the
"Monte Carlo" K-FAC): for cross-entropy the gradient of the loss at a label drawn from the model's predictive
softmax, otherwise L_i z with z ~ N(0, I). Its expectation is the exact G.

Layers are found without touching the model code: `flax.linen.intercept_methods` wraps every `nn.Dense.__call__`
run inside `apply_fn`, records its input a and adds a zero perturbation to its output z, and the vjp w.r.t. that
perturbation is dL/dz. Layers are keyed by their module path joined with '/' (e.g. 'hidden_0', 'output'), the same
path as their parameters. Only 2-D inputs (batch, features) are supported, and a module called more than once per
forward pass (shared weights) is rejected. For models that are not flax, `factors_from_samples` computes the same
sums from activations and pre-activation gradients obtained some other way.

Why not kfac-jax: kfac-jax estimates curvature blocks by tagging layers in a traced graph for its optimizer, with
exponential moving averages across steps; here we need the exact dataset mean of A and G at fixed parameters for a
diagnostic, averaged over chunks like the other products, which takes ~100 lines with the interceptor.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from plasticity_jax.curvature.density import DEFAULT_EPSILONS
from plasticity_jax.curvature.products import (
    ApplyFn,
    Dataset,
    LossFn,
    Params,
    dataset_average,
    get_loss,
    is_cross_entropy,
)
from plasticity_jax.linalg import eigh, eigvalsh

KFAC_MODES = ('exact', 'sampled')


class KroneckerFactors(NamedTuple):
    """The two Kronecker factors of one dense layer's GGN block."""

    A: jax.Array  # (d_in [+ 1], d_in [+ 1]): E[a~ a~^T], bias column last
    G: jax.Array  # (d_out, d_out): E[sum_c g_c g_c^T]


# --------------------------------------------------------------------------------------------------- layer tapping

def tapped_apply(apply_fn: ApplyFn, params: Params, inputs: Any, perturbations: dict[str, jax.Array] | None = None,
                 use_bias: dict[str, bool] | None = None
                 ) -> tuple[jax.Array, dict[str, jax.Array], dict[str, jax.Array]]:
    """Runs `apply_fn(params, inputs)` and taps every flax `nn.Dense` layer called inside it.

    Returns `(outputs, layer_inputs, layer_outputs)`, dicts keyed by the module path ('hidden_0', ...). When
    `perturbations` is given, `perturbations[name]` is added to that layer's output (pre-activation), so the
    gradient w.r.t. it is dL/dz. `use_bias`, if given, is filled with each layer's `use_bias` (static).
    """
    layer_inputs: dict[str, jax.Array] = {}
    layer_outputs: dict[str, jax.Array] = {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != '__call__' or not isinstance(module, nn.Dense):
            return next_fun(*args, **kwargs)
        name = '/'.join(module.path)
        if name in layer_inputs:
            raise ValueError(f'dense layer {name!r} is called more than once per forward pass; '
                             'Kronecker factors of shared layers are not supported')
        x = args[0] if args else kwargs['inputs']
        if x.ndim != 2:
            raise ValueError(f'dense layer {name!r} got inputs of shape {x.shape}; only (batch, features) is supported')
        out = next_fun(*args, **kwargs)
        if perturbations is not None:
            out = out + perturbations[name].astype(out.dtype)
        layer_inputs[name] = x
        layer_outputs[name] = out
        if use_bias is not None:
            use_bias[name] = bool(module.use_bias)
        return out

    with nn.intercept_methods(interceptor):
        outputs = apply_fn(params, inputs)
    if not layer_inputs:
        raise ValueError('apply_fn called no flax.linen.Dense layer; nothing to factor')
    return outputs, layer_inputs, layer_outputs


def _with_bias(a: jax.Array, use_bias: bool) -> jax.Array:
    return jnp.concatenate([a, jnp.ones_like(a[:, :1])], axis=1) if use_bias else a


def factors_from_samples(activations: jax.Array, output_grads: jax.Array, weights: jax.Array,
                         use_bias: bool = True) -> KroneckerFactors:
    """Weighted SUMS (not means) of one layer's factor samples over a chunk.

    Args:
      activations: (batch, d_in) layer inputs a_i.
      output_grads: (S, batch, d_out) back-propagated vectors g_{i,s} (S columns of L_i, or S samples).
      weights: (batch,) example weights (0 for examples not to count).
      use_bias: append the constant 1 to a_i (the bias row of the layer's parameter matrix).

    Returns:
      `KroneckerFactors(A=sum_i w_i a~_i a~_i^T, G=sum_i w_i sum_s g_{i,s} g_{i,s}^T)`; divide by N for the mean.
    """
    a = _with_bias(activations, use_bias)
    w = weights.astype(a.dtype)
    return KroneckerFactors(A=a.T @ (w[:, None] * a),
                            G=jnp.einsum('sbi,sbj,b->ij', output_grads, output_grads, w.astype(output_grads.dtype)))


def output_hessian_sqrt(loss_fn: LossFn, outputs: jax.Array, targets: Any) -> jax.Array:
    """(batch, C, C): L_i = V_i sqrt(max(Lambda_i, 0)) with V_i Lambda_i V_i^T = d^2 l_i / d f_i^2."""

    def single(o, t):
        return loss_fn(o[None], jax.tree_util.tree_map(lambda x: x[None], t))[0]

    h = jax.vmap(jax.hessian(single))(outputs, targets)
    lam, vec = eigh(h)
    return vec * jnp.sqrt(jnp.maximum(lam, 0))[:, None, :]


# ---------------------------------------------------------------------------------------------------- the factors

def kronecker_factors(apply_fn: ApplyFn, loss: str | LossFn, params: Params, dataset: Dataset, *,
                      chunk_size: int | None = None, mode: str = 'exact', key: jax.Array | None = None,
                      num_samples: int = 1) -> dict[str, KroneckerFactors]:
    """Exact dataset means of the K-FAC factors A and G of every dense layer, keyed by layer path.

    Args:
      apply_fn, loss, params, dataset, chunk_size: as for the curvature products (`products.py`); the means are
        over ALL examples, chunk by chunk.
      mode: 'exact' (back-propagate all C columns of sqrt(H_out)) or 'sampled' (`num_samples` draws per example
        from the model's predictive distribution; needs `key`). Sampled draws are made per example (the key is
        split over the example axis), so the result does not depend on `chunk_size`.
    """
    if mode not in KFAC_MODES:
        raise ValueError(f'mode must be one of {KFAC_MODES}, got {mode!r}')
    loss_fn = get_loss(loss)
    inputs, targets = dataset
    n = jax.tree_util.tree_leaves(inputs)[0].shape[0]

    if mode == 'sampled':
        if key is None:
            raise ValueError("mode='sampled' needs a PRNG key")
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        data = (inputs, targets, jax.random.key_data(jax.random.split(key, n)))
    else:
        data = (inputs, targets, jnp.zeros((n,), jnp.uint8))

    use_bias: dict[str, bool] = {}
    _, _, out_shapes = jax.eval_shape(
        lambda x: tapped_apply(apply_fn, params, x, use_bias=use_bias),
        jax.tree_util.tree_map(lambda leaf: leaf[:1], inputs))

    def chunk_sum(chunk, weights):
        x, y, keys = chunk
        b = weights.shape[0]
        zeros = {name: jnp.zeros((b,) + s.shape[1:], s.dtype) for name, s in out_shapes.items()}

        def forward(pert):
            outputs, acts, _ = tapped_apply(apply_fn, params, x, pert)
            return outputs, acts

        outputs, vjp_fn, acts = jax.vjp(forward, zeros, has_aux=True)
        if mode == 'exact':
            sqrt_h = output_hessian_sqrt(loss_fn, outputs, y)  # (b, C, C)
            cotangents = jnp.moveaxis(sqrt_h, 2, 0)  # (C, b, C): column c of every L_i
            scale = 1.0
        else:
            keys = jax.vmap(jax.random.wrap_key_data)(keys)
            cotangents = jax.vmap(lambda k, o, t: _sampled_cotangents(loss, loss_fn, k, o, t, num_samples))(
                keys, outputs, y)  # (b, S, C)
            cotangents = jnp.moveaxis(cotangents, 1, 0)
            scale = 1.0 / num_samples
        (grads,) = jax.vmap(vjp_fn)(cotangents.astype(outputs.dtype))  # {name: (S, b, d_out)}
        factors = {}
        for name in out_shapes:
            f = factors_from_samples(acts[name], grads[name], weights, use_bias[name])
            factors[name] = KroneckerFactors(A=f.A, G=f.G * scale)
        return factors

    return dataset_average(chunk_sum, data, chunk_size)


def _sampled_cotangents(loss: str | LossFn, loss_fn: LossFn, key: jax.Array, output: jax.Array, target: Any,
                        num_samples: int) -> jax.Array:
    """(S, C) vectors with E[g g^T] = H_out for one example: dl/df at sampled labels (cross-entropy) or L z."""
    if is_cross_entropy(loss):
        labels = jax.random.categorical(key, output, shape=(num_samples,))
        return jax.nn.softmax(output)[None, :] - jax.nn.one_hot(labels, output.shape[-1], dtype=output.dtype)
    sqrt_h = output_hessian_sqrt(loss_fn, output[None], jax.tree_util.tree_map(lambda x: x[None], target))[0]
    z = jax.random.normal(key, (num_samples, output.shape[-1]), output.dtype)
    return z @ sqrt_h.T


# ----------------------------------------------------------------------------------------- eigenvalues and ranks

def factor_eigenvalues(factors: dict[str, KroneckerFactors]) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Per layer, the ascending eigenvalues of A and of G."""
    return {name: (eigvalsh(f.A), eigvalsh(f.G)) for name, f in factors.items()}


def kronecker_product_eigenvalues(eig_a: jax.Array, eig_g: jax.Array) -> jax.Array:
    """Eigenvalues of A (x) G: all products lambda_A,i * lambda_G,j, flattened in (i, j) row-major order (unsorted)."""
    return (eig_a[:, None] * eig_g[None, :]).reshape(-1)


class KroneckerRank(NamedTuple):
    """Epsilon-ranks of the Kronecker-factored GGN over an epsilon sweep."""

    per_layer: dict[str, jax.Array]  # name -> (E,): #{|lambda_A lambda_G| > eps} / (layer's number of parameters)
    total: jax.Array  # (E,): the block-diagonal K-FAC over all dense layers, normalised by their parameter count
    counts: dict[str, jax.Array]  # name -> (E,): the unnormalised counts


def kronecker_epsilon_rank(factors: dict[str, KroneckerFactors], epsilons=DEFAULT_EPSILONS) -> KroneckerRank:
    """Epsilon-rank of each layer's A (x) G and of their block-diagonal concatenation, for each eps.

    A trend indicator, not an estimate of the GGN's epsilon-rank: A (x) G is not the layer's GGN block, and its rank
    can be far larger (rank(A) rank(G) against at most N C for the exact block of N examples; about twice the exact
    count at small eps on a 784-8-8-10 MLP with 500 examples, as measured in issue 13). The exact GGN spectrum is
    `gauss_newton.exact_ggn_spectrum`.
    """
    per_layer, counts = {}, {}
    total_count, total_size = 0, 0
    for name, (eig_a, eig_g) in factor_eigenvalues(factors).items():
        lam = jnp.abs(kronecker_product_eigenvalues(eig_a, eig_g))
        eps = jnp.asarray(epsilons, lam.dtype)
        count = jnp.sum(lam[None, :] > eps[:, None], axis=-1)
        counts[name] = count
        per_layer[name] = count / lam.size
        total_count = total_count + count
        total_size += lam.size
    return KroneckerRank(per_layer=per_layer, total=total_count / total_size, counts=counts)
