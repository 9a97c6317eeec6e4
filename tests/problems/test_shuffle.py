import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.problems.shuffle import permute


@pytest.mark.parametrize('size', [1, 2, 3, 7, 64, 1000, 12_345])
def test_permute_is_a_bijection_of_range(size):
    values = np.asarray(jax.jit(permute)(jax.random.key(3), size, jnp.arange(size)))
    np.testing.assert_array_equal(np.sort(values), np.arange(size))


def test_permute_depends_on_the_key_only_and_evaluates_positions_independently():
    @jax.jit  # one program, not an eager op at a time
    def draws(positions, some_positions):
        return (permute(jax.random.key(0), 500, positions), permute(jax.random.key(0), 500, some_positions),
                permute(jax.random.key(1), 500, positions))

    full, some, other = jax.device_get(draws(np.arange(500), np.array([[7, 3], [499, 0]])))
    np.testing.assert_array_equal(some, full[np.array([[7, 3], [499, 0]])])
    assert np.mean(other == full) < 0.05


def test_permute_with_a_traced_size_under_vmap():
    sizes = np.array([5, 9, 16])
    values = jax.jit(jax.vmap(lambda n: permute(jax.random.key(2), n, jnp.arange(16) % n)))(sizes)  # one program
    for n, row in zip([5, 9, 16], np.asarray(values)):
        np.testing.assert_array_equal(np.sort(row[:n]), np.arange(n))


def test_every_order_of_three_is_drawn_about_equally_often():
    draw = jax.jit(jax.vmap(lambda k: permute(k, 3, jnp.arange(3))))
    orders = collections.Counter(map(tuple, np.asarray(draw(jax.random.split(jax.random.key(0), 6000))).tolist()))
    assert len(orders) == 6
    assert all(850 < count < 1150 for count in orders.values()), orders
