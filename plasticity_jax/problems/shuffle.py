"""Random permutations of `range(size)` evaluated one position at a time, with no table in memory.

Problems that train for several epochs per task reshuffle the task's examples every epoch (as a PyTorch
`DataLoader(shuffle=True)` does in the papers' code). Storing one order per epoch would put epochs x examples
integers into every run's state; instead `permute(key, size, positions)` evaluates the permutation drawn by `key` at
the positions needed by the current step.

The permutation is a keyed Feistel network on the smallest domain [0, 4**h) that holds `size`, restricted to
[0, size) by cycle walking (Black & Rogaway, "Ciphers with arbitrary finite domains", CT-RSA 2002): a value that
lands outside [0, size) is encrypted again until it lands inside, which is a bijection of [0, size) because the
Feistel network is a bijection of the larger domain. The domain is less than 4 * size, so a position needs fewer than
4 rounds of walking on average. Four Feistel rounds with a 32-bit mixing function as round function give orders that
are, for training purposes, indistinguishable from uniformly random ones (Luby & Rackoff, 1988). `size` may be a
traced value (e.g. the number of examples in a task that depends on the run's random class order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NUM_ROUNDS = 4


def _mix32(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash with good avalanche (the "lowbias32" constants of C. Wellons' hash prospector)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _feistel(value: jax.Array, half_bits: jax.Array, round_keys: jax.Array) -> jax.Array:
    mask = (jnp.uint32(1) << half_bits) - jnp.uint32(1)
    left, right = value >> half_bits, value & mask
    for round_key in round_keys:
        left, right = right, left ^ (_mix32(right ^ round_key) & mask)
    return (left << half_bits) | right


def permute(key: jax.Array, size: jax.Array | int, positions: jax.Array) -> jax.Array:
    """`perm[positions]` for the random permutation `perm` of range(size) determined by `key`.

    positions: int array with entries in [0, size) (any shape); returns int32 of the same shape.
    """
    size = jnp.asarray(size, jnp.uint32)
    bits = jnp.uint32(32) - jax.lax.clz(jnp.maximum(size, 1) - jnp.uint32(1))  # ceil(log2(size))
    half_bits = (bits + 1) // 2
    round_keys = jax.random.bits(key, (NUM_ROUNDS,), jnp.uint32)

    def walk(value):
        encrypt = lambda v: _feistel(v, half_bits, round_keys)
        return jax.lax.while_loop(lambda v: v >= size, encrypt, encrypt(value))

    flat = jnp.asarray(positions, jnp.uint32).reshape(-1)
    return jax.vmap(walk)(flat).reshape(jnp.shape(positions)).astype(jnp.int32)
