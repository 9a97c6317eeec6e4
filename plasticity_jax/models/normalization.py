"""Online Normalization (Chiley et al., "Online Normalization for Training Neural Networks", NeurIPS 2019).

The online variant of batch normalisation that Dohare's dissertation (Sec. 4.3) uses on Online Permuted MNIST,
where the batch size is 1 and batch statistics do not exist. Each unit is normalised with exponentially decaying
running estimates of its mean and variance, updated after every sample (the paper's Eqs. 5-7, with the
fully-connected case mu(x_t) = x_t, sigma^2(x_t) = 0 since a unit's output is one scalar per sample):

    y_t         = (x_t - mu_{t-1}) / sqrt(sigma^2_{t-1} + eps)
    mu_t        = alpha_f mu_{t-1} + (1 - alpha_f) x_t
    sigma^2_t   = alpha_f sigma^2_{t-1} + alpha_f (1 - alpha_f) (x_t - mu_{t-1})^2

then the learnable per-unit affine transform gamma * y + beta (gamma = 1, beta = 0 at initialisation). A sample
is normalised with the statistics of the samples BEFORE it, and only then are the statistics updated. The rows of
a batch are processed one after another, as the paper's reference code does (a batch of B rows is B time steps).
Initial statistics: mu = 0, sigma^2 = 1; eps = 1e-5 (the paper's code).

What is implemented and what is not:

* Implemented: the forward pass above, with the statistics in the flax collection `'online_norm'`
  (`{'mean', 'var'}` per layer). In training mode (the collection is mutable: the engine's training step passes
  `mutable=list(model_state)`) the statistics are updated; in evaluation mode (applied without `mutable`, as the
  engine's probe and test evaluation do) they are read-only, so evaluation normalises with the current running
  statistics and changes nothing. `model.init` never updates them. The affine gamma/beta are in `'params'`
  (leaves `scale` and `bias`, no `kernel`, so they do not count in the weight-magnitude metric).
* NOT implemented: the paper's backward pass, the "control process" with decay alpha_b (Eqs. 8-11). There the
  gradient w.r.t. the normalised output is corrected with two running error accumulators carried across steps,
  x~'_t = y'_t - (1 - alpha_b) e^(y)_{t-1} y_t and x'_t = x~'_t / sigma_{t-1} - (1 - alpha_b) e^(1)_{t-1}, so
  that the back-propagated gradient has (in the running average) no component along y and along 1, as the
  gradient of true batch normalisation has. The accumulators are updated with y'_t, which exists only in the
  backward pass; the engine differentiates the loss w.r.t. `params` only and carries the other collections as
  forward-pass outputs, so there is no channel to persist them from one step to the next. Here the statistics
  are constants in the backward pass (stop-gradient), so the gradient is dL/dx_t = gamma * dL/dout_t /
  sqrt(sigma^2_{t-1} + eps): exactly the paper's algorithm with alpha_b = 1 (the control process switched off).
  Adding it needs an engine hook: a custom_vjp whose backward returns the updated accumulators as the cotangent
  of accumulator inputs held in their own collection, and an engine that differentiates w.r.t. that collection
  and stores the result as the next step's state.
* NOT implemented: the optional "error checking mechanisms" of the paper's code after the affine transform
  (activation clamping to [-5, 5] or layer scaling).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

COLLECTION = 'online_norm'
DEFAULT_ALPHA_F = 0.999  # Chiley et al.'s reference code (OnlineNorm1d default alpha_fwd).
DEFAULT_EPSILON = 1e-5


def online_norm_forward(x: jax.Array, mean: jax.Array, var: jax.Array, alpha_f: float,
                        epsilon: float = DEFAULT_EPSILON) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Normalises the rows of `x` (batch, features) one after another and updates the running statistics.

    Returns `(y, mean, var)`: `y[i]` uses the statistics after rows 0..i-1; the returned statistics are those after
    the last row. The statistics are not differentiated through (see the module docstring).
    """

    def step(stats, row):
        m, v = stats
        y = (row - m) / jnp.sqrt(v + epsilon)
        row = jax.lax.stop_gradient(row)
        delta = row - m
        return (m + (1.0 - alpha_f) * delta, alpha_f * v + alpha_f * (1.0 - alpha_f) * delta**2), y

    stats = (jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var))
    (mean, var), y = jax.lax.scan(step, stats, x)
    return y, mean, var


class OnlineNorm(nn.Module):
    """Online Normalization of a (batch, features) input, per feature; see the module docstring.

    Training vs evaluation is decided by whether the `'online_norm'` collection is mutable in this `apply`.
    """

    alpha_f: float = DEFAULT_ALPHA_F
    epsilon: float = DEFAULT_EPSILON
    use_scale: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f'OnlineNorm expects (batch, features) inputs, got shape {x.shape}')
        if not 0.0 <= self.alpha_f < 1.0:
            raise ValueError(f'OnlineNorm alpha_f must be in [0, 1), got {self.alpha_f}')
        features = x.shape[-1]
        mean = self.variable(COLLECTION, 'mean', jnp.zeros, (features,), jnp.float32)
        var = self.variable(COLLECTION, 'var', jnp.ones, (features,), jnp.float32)
        if self.is_mutable_collection(COLLECTION) and not self.is_initializing():
            y, mean.value, var.value = online_norm_forward(x.astype(jnp.float32), mean.value, var.value,
                                                           self.alpha_f, self.epsilon)
        else:
            y = (x - mean.value) / jnp.sqrt(var.value + self.epsilon)
        if self.use_scale:
            y = y * self.param('scale', nn.initializers.ones, (features,), jnp.float32)
        if self.use_bias:
            y = y + self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
        return y.astype(x.dtype)
