"""Updating a loop-carried buffer in place: ordering the write after every read of the old value.

In a loop body (a `lax.scan` or `lax.fori_loop`) XLA writes a carried buffer's new value into the old one's memory
only if every read of the old value is scheduled before the write. A read whose result the write does not depend on
(the backward pass's `W^T delta` next to the update of W; Lanczos's `alpha = q_j . w` next to the write of row
j + 1 of the basis) is not ordered, and XLA's copy insertion then keeps the old value alive by copying the whole
buffer at every iteration. `lax.optimization_barrier` does not order them: XLA's CPU pipeline removes it before
copy insertion. What does is making the written value depend on the read's result without changing it:

    jnp.where(false_after(read), old, new)      # exactly `new`, computed after `read`

`x > inf` is false for every float, NaN included, and XLA does not fold it away, so the select always takes `new`,
bit for bit. Used by `engine.apply_updates_after_backward` and `curvature.lanczos`; tests/test_engine.py and
tests/curvature/test_curvature_lanczos.py assert that their compiled loops copy no such buffer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def false_after(*values: jax.Array) -> jax.Array:
    """A scalar boolean False that XLA computes from the first entry of each of `values`, hence after them."""
    return jnp.any(jnp.stack([jnp.ravel(value)[0] > jnp.inf for value in values]))
