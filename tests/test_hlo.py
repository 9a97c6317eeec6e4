"""Reading compiled programs: loop bodies, copies, bytes accessed."""

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax import hlo


def _compiled_scan(copy_inside: bool):
    """A scan whose body reads a (64, 64) carry in a matvec and then overwrites it (a copy unless ordered)."""
    def body(w, x):
        y = w.T @ x
        new = w - 0.1 * jnp.outer(x, y)
        return (new if copy_inside else new + 0.0 * y.sum()), y

    return jax.jit(lambda w, xs: jax.lax.scan(body, w, xs)).lower(
        jnp.zeros((64, 64)), jnp.zeros((5, 64))).compile()


def test_loop_bodies_and_copies_are_found_in_a_scan():
    text = _compiled_scan(copy_inside=True).as_text()
    bodies = hlo.loop_bodies(text)
    assert bodies and all(name in hlo.computations(text) for name in bodies)
    assert hlo.instruction_count(text, bodies[0]) > 0
    lines = ['%copy.1 = f32[64,64]{1,0} copy(%p)', '%copy.2 = u32[64,64]{1,0} copy(%q)', '%c = f32[8]{0} copy(%r)']
    assert hlo.copies(lines, 64 * 64) == lines[:1]
    assert hlo.copies(lines, 64 * 64, dtypes=('u32',)) == lines[1:2]
    assert hlo.copies(lines, 8) == [lines[0], lines[2]]


def test_bytes_accessed_grows_with_the_data():
    small = jax.jit(lambda a: a * 2).lower(jnp.zeros(1000)).compile()
    large = jax.jit(lambda a: a * 2).lower(jnp.zeros(100_000)).compile()
    assert np.isfinite(hlo.bytes_accessed(small))
    assert hlo.bytes_accessed(large) > 50 * hlo.bytes_accessed(small)
