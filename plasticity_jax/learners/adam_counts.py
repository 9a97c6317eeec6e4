"""Adam with a step count per parameter element, so that a re-initialised weight is bias-corrected afresh.

Adam's bias correction divides the moments by 1 - beta^t, with t the number of updates the moments have seen.
`optax.adam` keeps ONE count for the whole network. When continual backprop or ReDo zeroes the moments of a
re-initialised unit's weights, those moments restart from zero while the global count is large, so their bias
correction is 1 - beta^t instead of 1 - beta: the first update of a fresh weight is scaled by
(1 - b1) / sqrt(1 - b2) * sqrt(1 - b2^t) / (1 - b1^t), about 0.7 at t = 50 and about 3.2 once t >> 1 / (1 - b2)
(b1 = 0.9, b2 = 0.999). The papers' code (`lop/utils/AdamGnT.py`, Dohare et al.) therefore keeps
the step count per element and resets it with the moments; this module is Adam with such counts in optax form.

It is not AdamGnT's update. AdamGnT computes its bias correction with `bias_correction.sqrt().div_(bias_correction1)`
on a temporary and discards the result, so its step is lr * (1 - b2^t) * m / (sqrt(v) + eps) with per-element t:
no first-moment correction and the second moment's correction not square-rooted (its commented-out line shows the
intended lr * sqrt(1 - b2^t) / (1 - b1^t)). Over a long run (t >> 1 / (1 - b1)) the two differ only in a fresh
weight's first updates, which AdamGnT makes much smaller (lr * (1 - b1) * sqrt(1 - b2) at t = 1: lr * 0.001 for
b1 = b2 = 0.99, where Adam's first step is lr). We follow the intended Adam (our choice: the discarded
line is a bug, not a method); runs that must match the released numbers of Adam with continual backprop would need
AdamGnT's rule, which this package does not offer.

`adam_counts` computes exactly what `optax.adam` computes (eps outside the square root, `eps_root` inside) as long as
no count is reset: every element's count then equals the global count (tested).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByAdamCountsState(NamedTuple):
    """`count`, `mu` and `nu` all have the structure and shapes of the params (`count` is int32)."""

    count: Any
    mu: Any
    nu: Any


def _safe_increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the dtype's maximum (as `optax.safe_increment`)."""
    maximum = jnp.iinfo(count.dtype).max
    return jnp.where(count < maximum, count + 1, count)


def scale_by_adam_counts(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                         eps_root: float = 0.0) -> optax.GradientTransformation:
    """`optax.scale_by_adam` with per-element step counts: m_hat = m / (1 - b1^t_i), v_hat = v / (1 - b2^t_i)."""

    def init(params):
        # jax.tree.map (rather than reading shapes) keeps `optax.tree_utils.tree_map_params` working on this state.
        return ScaleByAdamCountsState(count=jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.int32), params),
                                      mu=jax.tree.map(jnp.zeros_like, params),
                                      nu=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, updates, state.mu)
        nu = jax.tree.map(lambda g, v: (1 - b2) * g**2 + b2 * v, updates, state.nu)
        count = jax.tree.map(_safe_increment, state.count)

        def scaled(m, v, t):
            # The same operations as optax's tree_bias_correction, element by element.
            m_hat = m / (1 - b1**t).astype(m.dtype)
            v_hat = v / (1 - b2**t).astype(v.dtype)
            return m_hat / (jnp.sqrt(v_hat + eps_root) + eps)

        return jax.tree.map(scaled, mu, nu, count), ScaleByAdamCountsState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def adam_counts(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                eps_root: float = 0.0) -> optax.GradientTransformation:
    """Adam (as `optax.adam`) whose bias correction uses a step count per parameter element."""
    return optax.chain(scale_by_adam_counts(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                       optax.scale_by_learning_rate(learning_rate))
