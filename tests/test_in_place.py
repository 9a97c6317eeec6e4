"""`in_place.false_after`: always False (NaN and infinities included), so a select on it returns the new value bit
for bit; that it removes the copies is asserted on the compiled loops that use it (tests/test_engine.py,
tests/curvature/test_curvature_lanczos.py)."""

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax import in_place


def test_false_after_is_false_for_every_float_and_the_select_keeps_the_new_value():
    reads = (jnp.array([jnp.inf, 1.0]), jnp.float32(jnp.nan), jnp.array([[-jnp.inf]]), jnp.array([3.0], jnp.bfloat16))
    new, old = jnp.arange(4.0), jnp.zeros(4)
    for values in (reads, reads[:1], reads[1:2]):
        assert not bool(in_place.false_after(*values))
        np.testing.assert_array_equal(jax.jit(lambda *r: jnp.where(in_place.false_after(*r), old, new))(*values), new)
