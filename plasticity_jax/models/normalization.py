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

Backward pass (the paper's Eqs. 11-12, its "control process" with decay alpha_b). Batch normalisation's gradient
has no component along y and along 1 (over the batch); Online Normalization removes those components from the
back-propagated gradient with two running error accumulators per unit, e^(y) and e^(1) (zero at the start), carried
from one backward pass to the next, processing the rows of a batch in order (y'_t: gradient w.r.t. y_t):

    x~'_t   = y'_t - (1 - alpha_b) e^(y)_{t-1} y_t        e^(y)_t = e^(y)_{t-1} + x~'_t y_t
    x'_t    = x~'_t / sqrt(sigma^2_{t-1} + eps) - (1 - alpha_b) e^(1)_{t-1}        e^(1)_t = e^(1)_{t-1} + x'_t

(alpha_b = 1 switches it off: x'_t is then the plain gradient with the statistics held constant.) This is the
reference code's `control_norm_backward` for one feature per unit (fully connected layers), with the sigma of the
row's own forward normalisation as in the paper.

How it runs in JAX. The normalisation of a batch is a `jax.custom_vjp` (`controlled_normalize`) whose backward rule
runs the recursion above with a `lax.scan` over the rows. The accumulators live in the model collection
`'online_norm_control'` (`{'u': e^(1), 'v': e^(y)}` per layer) and enter the custom VJP as an argument; its backward
rule returns, as that argument's cotangent, the change of the accumulators over the batch. The engine treats the
collections listed in `GRADIENT_STATE_COLLECTIONS` this way: it differentiates the step's objective w.r.t. them as
well as the params and adds the cotangent to them (`engine.make_train`). So the accumulators advance once per
training step, with the gradient of the step's objective, as in the reference code's one backward pass per step.
(Learner transforms that re-evaluate the gradient at other params, SAM's ascent step, use the accumulators of the
step without advancing them; forward-mode differentiation through the custom VJP, the exact gradient norm penalty,
is refused with a clear error: see `learners.LEARNERS['gnp']`.)

The statistics (and everything computed from them) are constants for differentiation, as in the reference code.
In training mode (the `'online_norm'` collection is mutable: the engine's training step passes
`mutable=list(model_state)`) the statistics are updated; in evaluation mode (applied without `mutable`, as the
engine's probe and test evaluation do) they are read-only, so evaluation normalises with the current running
statistics and changes nothing. `model.init` never updates them. The affine gamma/beta are in `'params'` (leaves
`scale` and `bias`, no `kernel`, so they do not count in the weight-magnitude metric) and come after the
normalisation: the control process acts on the gradient w.r.t. the normalised y, before the affine transform.

Defaults: alpha_f = 0.999 and alpha_b = 0.99, those of the paper's reference code (`OnlineNorm1d`).
NOT implemented: the optional "error checking mechanisms" of the paper's code after the affine transform
(activation clamping to [-5, 5] or layer scaling).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

COLLECTION = 'online_norm'
CONTROL_COLLECTION = 'online_norm_control'
# Model collections whose new value the backward pass computes (see the module docstring; read by the engine).
GRADIENT_STATE_COLLECTIONS = (CONTROL_COLLECTION,)
DEFAULT_ALPHA_F = 0.999  # Chiley et al.'s reference code (OnlineNorm1d default alpha_fwd).
DEFAULT_ALPHA_B = 0.99  # ... and its default alpha_bkw.
DEFAULT_EPSILON = 1e-5


def online_norm_statistics(x: jax.Array, mean: jax.Array, var: jax.Array, alpha_f: float,
                           epsilon: float = DEFAULT_EPSILON) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The forward recursion over the rows of `x` (batch, features), as constants for differentiation.

    Returns `(centers, scales, mean, var)`: row t is normalised as (x_t - centers_t) / scales_t with the statistics
    after rows 0..t-1 (scales_t = sqrt(sigma^2_{t-1} + eps)); `mean` and `var` are those after the last row."""

    def step(stats, row):
        m, v = stats
        delta = row - m
        new_stats = (m + (1.0 - alpha_f) * delta, alpha_f * v + alpha_f * (1.0 - alpha_f) * delta**2)
        return new_stats, (m, jnp.sqrt(v + epsilon))

    x, mean, var = jax.lax.stop_gradient((x, mean, var))
    (mean, var), (centers, scales) = jax.lax.scan(step, (mean, var), x)
    return centers, scales, mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def controlled_normalize(x: jax.Array, centers: jax.Array, scales: jax.Array, control: dict, alpha_b: float):
    """(x - centers) / scales, whose backward pass is the control process (module docstring) with accumulators
    `control = {'u': e^(1), 'v': e^(y)}`; the cotangent returned for `control` is their change over the batch."""
    del control
    return (x - centers) / scales


def _controlled_normalize_fwd(x, centers, scales, control, alpha_b):
    y = (x - centers) / scales
    return y, (y, centers, scales, control)


def _controlled_normalize_bwd(alpha_b, residuals, y_grad):
    y, centers, scales, control = residuals
    leak = 1.0 - alpha_b

    def row(accumulators, inputs):
        u, v = accumulators
        g, y_t, scale_t = inputs
        g_tilde = g - leak * v * y_t  # Eq. 11a
        x_grad = g_tilde / scale_t - leak * u  # Eq. 12a
        return (u + x_grad, v + g_tilde * y_t), x_grad  # Eqs. 12b, 11b

    (u, v), x_grad = jax.lax.scan(row, (control['u'], control['v']), (y_grad, y, scales))
    change = {'u': u - control['u'], 'v': v - control['v']}
    return x_grad, jnp.zeros_like(centers), jnp.zeros_like(scales), change


controlled_normalize.defvjp(_controlled_normalize_fwd, _controlled_normalize_bwd)


def online_norm_forward(x: jax.Array, mean: jax.Array, var: jax.Array, alpha_f: float,
                        epsilon: float = DEFAULT_EPSILON, control: dict | None = None,
                        alpha_b: float = 1.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Normalises the rows of `x` (batch, features) one after another and updates the running statistics.

    Returns `(y, mean, var)`: `y[i]` uses the statistics after rows 0..i-1; the returned statistics are those after
    the last row. With `control` (`{'u', 'v'}`, one per feature) and alpha_b < 1 the backward pass is the control
    process; otherwise the gradient treats the statistics as constants (alpha_b = 1).
    """
    centers, scales, mean, var = online_norm_statistics(x, mean, var, alpha_f, epsilon)
    if control is None or alpha_b == 1.0:
        return (x - centers) / scales, mean, var
    return controlled_normalize(x, centers, scales, control, alpha_b), mean, var


class OnlineNorm(nn.Module):
    """Online Normalization of a (batch, features) input, per feature; see the module docstring.

    Training vs evaluation is decided by whether the `'online_norm'` collection is mutable in this `apply`.
    """

    alpha_f: float = DEFAULT_ALPHA_F
    alpha_b: float = DEFAULT_ALPHA_B
    epsilon: float = DEFAULT_EPSILON
    use_scale: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f'OnlineNorm expects (batch, features) inputs, got shape {x.shape}')
        if not 0.0 <= self.alpha_f < 1.0:
            raise ValueError(f'OnlineNorm alpha_f must be in [0, 1), got {self.alpha_f}')
        if not 0.0 <= self.alpha_b <= 1.0:
            raise ValueError(f'OnlineNorm alpha_b must be in [0, 1] (1: no control process), got {self.alpha_b}')
        features = x.shape[-1]
        mean = self.variable(COLLECTION, 'mean', jnp.zeros, (features,), jnp.float32)
        var = self.variable(COLLECTION, 'var', jnp.ones, (features,), jnp.float32)
        control = None
        if self.alpha_b < 1.0:
            control = {name: self.variable(CONTROL_COLLECTION, name, jnp.zeros, (features,), jnp.float32).value
                       for name in ('u', 'v')}
        if self.is_mutable_collection(COLLECTION) and not self.is_initializing():
            y, mean.value, var.value = online_norm_forward(x.astype(jnp.float32), mean.value, var.value,
                                                           self.alpha_f, self.epsilon, control, self.alpha_b)
        else:
            y = (x - mean.value) / jnp.sqrt(var.value + self.epsilon)
        if self.use_scale:
            y = y * self.param('scale', nn.initializers.ones, (features,), jnp.float32)
        if self.use_bias:
            y = y + self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
        return y.astype(x.dtype)
