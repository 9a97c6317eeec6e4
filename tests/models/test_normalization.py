"""Online Normalization: the running statistics against numbers worked out by hand, training vs evaluation mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.models import OnlineNorm, online_norm_forward
from plasticity_jax.models.normalization import CONTROL_COLLECTION


def _train(module, variables, x):
    """Training mode: the statistics collection is mutable."""
    y, state = module.apply(variables, x, mutable=['online_norm'])
    return np.asarray(y), {**variables, **state}


def test_initial_statistics_and_init_does_not_update_them():
    module = OnlineNorm(alpha_f=0.9)
    variables = module.init(jax.random.key(0), jnp.array([[5.0, -3.0]]))  # init sees a non-zero example
    np.testing.assert_array_equal(variables['online_norm']['mean'], [0.0, 0.0])
    np.testing.assert_array_equal(variables['online_norm']['var'], [1.0, 1.0])
    np.testing.assert_array_equal(variables['params']['scale'], [1.0, 1.0])
    np.testing.assert_array_equal(variables['params']['bias'], [0.0, 0.0])


def test_two_unit_example_by_hand():
    """alpha_f = 0.9, eps = 0, statistics start at mean 0, var 1.

    step 1, x = (2, -1):  y = (2, -1) / sqrt(1) = (2, -1)
                          mean = 0.1 x = (0.2, -0.1);  var = 0.9 + 0.09 x^2 = (1.26, 0.99)
    step 2, x = (1, 1):   y = (1 - 0.2, 1 + 0.1) / sqrt(1.26, 0.99) = (0.8 / sqrt(1.26), 1.1 / sqrt(0.99))
                          mean = 0.9 (0.2, -0.1) + 0.1 (1, 1) = (0.28, 0.01)
                          var = 0.9 (1.26, 0.99) + 0.09 (0.8, 1.1)^2 = (1.1916, 0.9999)
    """
    module = OnlineNorm(alpha_f=0.9, epsilon=0.0)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 2)))

    y, variables = _train(module, variables, jnp.array([[2.0, -1.0]]))
    np.testing.assert_allclose(y, [[2.0, -1.0]], rtol=1e-6)
    np.testing.assert_allclose(variables['online_norm']['mean'], [0.2, -0.1], rtol=1e-6)
    np.testing.assert_allclose(variables['online_norm']['var'], [1.26, 0.99], rtol=1e-6)

    # Evaluation mode (no mutable collection): normalises with the running statistics and changes nothing.
    y_eval = module.apply(variables, jnp.array([[1.0, 1.0]]))
    np.testing.assert_allclose(y_eval, [[0.8 / np.sqrt(1.26), 1.1 / np.sqrt(0.99)]], rtol=1e-6)
    np.testing.assert_allclose(module.apply(variables, jnp.array([[1.0, 1.0]])), y_eval, rtol=0)

    y, after = _train(module, variables, jnp.array([[1.0, 1.0]]))
    np.testing.assert_allclose(y, [[0.8 / np.sqrt(1.26), 1.1 / np.sqrt(0.99)]], rtol=1e-6)
    np.testing.assert_allclose(after['online_norm']['mean'], [0.28, 0.01], rtol=1e-5)
    np.testing.assert_allclose(after['online_norm']['var'], [1.1916, 0.9999], rtol=1e-6)

    # A batch of rows is processed as consecutive time steps: the same two steps in one call.
    fresh = module.init(jax.random.key(0), jnp.zeros((1, 2)))
    y, both = _train(module, fresh, jnp.array([[2.0, -1.0], [1.0, 1.0]]))
    np.testing.assert_allclose(y, [[2.0, -1.0], [0.8 / np.sqrt(1.26), 1.1 / np.sqrt(0.99)]], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), both['online_norm'], after['online_norm'])


def test_epsilon_and_affine_transform():
    module = OnlineNorm(alpha_f=0.5, alpha_b=1.0)  # default eps 1e-5; forward only
    variables = module.init(jax.random.key(0), jnp.zeros((1, 2)))
    variables = {'params': {'scale': jnp.array([2.0, -1.0]), 'bias': jnp.array([0.5, 3.0])},
                 'online_norm': {'mean': jnp.array([1.0, 0.0]), 'var': jnp.array([4.0, 1e-5])}}
    x = jnp.array([[3.0, 1.0]])
    want = np.array([[2.0 * (3.0 - 1.0) / np.sqrt(4.0 + 1e-5) + 0.5, -1.0 * 1.0 / np.sqrt(2e-5) + 3.0]])
    np.testing.assert_allclose(module.apply(variables, x), want, rtol=1e-5)
    y, state = module.apply(variables, x, mutable=['online_norm'])
    np.testing.assert_allclose(y, want, rtol=1e-5)  # training mode normalises with the statistics BEFORE the update
    np.testing.assert_allclose(state['online_norm']['mean'], [2.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(state['online_norm']['var'], [2.0 + 0.25 * 4.0, 0.5e-5 + 0.25 * 1.0], rtol=1e-5)


def test_gradient_treats_the_statistics_as_constants():
    """dL/dx = scale * dL/dy / sqrt(var + eps) in training mode: the paper's backward pass with alpha_b = 1."""
    module = OnlineNorm(alpha_f=0.9, alpha_b=1.0, epsilon=0.0)
    variables = {'params': {'scale': jnp.array([3.0, 1.0]), 'bias': jnp.zeros(2)},
                 'online_norm': {'mean': jnp.array([0.5, -0.5]), 'var': jnp.array([4.0, 0.25])}}
    weights = jnp.array([[1.0, 2.0], [-1.0, 0.5]])

    def loss(x):
        y, _ = module.apply(variables, x, mutable=['online_norm'])
        return jnp.sum(weights * y)

    grad = jax.grad(loss)(jnp.array([[1.0, 2.0], [0.0, -1.0]]))
    # Row 2 is normalised with the statistics after row 1: mean 0.9 (0.5, -0.5) + 0.1 (1, 2) = (0.55, -0.25),
    # var 0.9 (4, 0.25) + 0.09 (0.5, 2.5)^2 = (3.6225, 0.7875). Row 1 gets no gradient through them.
    want = weights * np.array([[3.0 / 2.0, 1.0 / 0.5], [3.0 / np.sqrt(3.6225), 1.0 / np.sqrt(0.7875)]])
    np.testing.assert_allclose(grad, want, rtol=1e-6)


def test_statistics_track_a_stationary_stream():
    """Over a long stream of N(3, 2^2) values, the running mean and variance approach 3 and 4."""
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (20_000, 3))
    _, mean, var = jax.jit(online_norm_forward, static_argnums=(3,))(x, jnp.zeros(3), jnp.ones(3), 0.999)
    np.testing.assert_allclose(mean, 3.0, atol=0.25)  # EMA over ~1000 samples: std 2 / sqrt(2000) ~ 0.045
    np.testing.assert_allclose(var, 4.0, rtol=0.2)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match='alpha_f'):
        OnlineNorm(alpha_f=1.0).init(jax.random.key(0), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match='batch, features'):
        OnlineNorm().init(jax.random.key(0), jnp.zeros((1, 2, 2)))


def control_reference(y_grad, y, scales, u, v, alpha_b):
    """The control process of Chiley et al.'s Eqs. 11-12, one row after another, in numpy."""
    x_grad = np.empty_like(y_grad)
    for t in range(len(y_grad)):
        g_tilde = y_grad[t] - (1 - alpha_b) * v * y[t]
        v = v + g_tilde * y[t]
        x_grad[t] = g_tilde / scales[t] - (1 - alpha_b) * u
        u = u + x_grad[t]
    return x_grad, u, v


def test_backward_control_process_matches_the_papers_recursion():
    """The gradient w.r.t. x and the accumulators' change (the cotangent of `control`) vs the numpy recursion, over
    a batch of rows processed in order, starting from non-zero accumulators."""
    alpha_f, alpha_b = 0.9, 0.7
    key_x, key_w = jax.random.split(jax.random.key(3))
    x = jax.random.normal(key_x, (5, 3)) + 0.5
    weights = jax.random.normal(key_w, (5, 3))
    mean, var = jnp.array([0.1, -0.2, 0.0]), jnp.array([1.5, 0.5, 2.0])
    control = {'u': jnp.array([0.3, -0.1, 0.2]), 'v': jnp.array([-0.4, 0.2, 0.1])}

    def loss(x, control):
        y, _, _ = online_norm_forward(x, mean, var, alpha_f, 1e-5, control, alpha_b)
        return jnp.sum(weights * y**2)  # a non-linear loss: y' depends on y

    x_grad, change = jax.grad(loss, argnums=(0, 1))(x, control)
    y, _, _ = online_norm_forward(x, mean, var, alpha_f, 1e-5)
    scales = np.empty((5, 3))
    m, s2 = np.asarray(mean), np.asarray(var)
    for t, row in enumerate(np.asarray(x)):
        scales[t] = np.sqrt(s2 + 1e-5)
        s2, m = alpha_f * s2 + alpha_f * (1 - alpha_f) * (row - m) ** 2, alpha_f * m + (1 - alpha_f) * row
    want, u, v = control_reference(np.asarray(2 * weights * y), np.asarray(y), scales, np.asarray(control['u']),
                                   np.asarray(control['v']), alpha_b)
    np.testing.assert_allclose(x_grad, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(change['u'], u - control['u'], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(change['v'], v - control['v'], rtol=1e-5, atol=1e-6)
    # The control changes the gradient: without it (alpha_b = 1) the first row is the same, the others are not.
    plain = jax.grad(lambda x: jnp.sum(weights * online_norm_forward(x, mean, var, alpha_f, 1e-5)[0] ** 2))(x)
    assert not np.allclose(plain[1:], x_grad[1:], rtol=1e-3)


def test_control_process_keeps_the_gradient_free_of_its_mean_and_y_components_over_time():
    """What the control process is for (Chiley et al., Sec. 3): over a long stream, the back-propagated gradients
    sum to ~0 along 1 and along y per unit (as batch normalisation's gradient does over a batch), whereas without
    control an upstream gradient with a constant offset passes straight through."""
    n = 4000
    x = 2.0 + jax.random.normal(jax.random.key(0), (n, 2))
    offset = jnp.array([0.5, -0.3])  # the upstream gradient: a constant offset plus noise
    y_grad = offset + 0.1 * jax.random.normal(jax.random.key(1), (n, 2))

    def stream(alpha_b):
        def step(carry, inputs):
            mean, var, control = carry
            row, g = inputs
            (y, mean, var), vjp = jax.vjp(
                lambda r, c: online_norm_forward(r[None], mean, var, 0.99, 1e-5, c, alpha_b), row, control)
            x_grad, change = vjp((g[None], jnp.zeros(2), jnp.zeros(2)))
            return (mean, var, jax.tree.map(jnp.add, control, change)), x_grad[0]

        zeros = {'u': jnp.zeros(2), 'v': jnp.zeros(2)}
        return jax.lax.scan(step, (jnp.zeros(2), jnp.ones(2), zeros), (x, y_grad))[1]

    controlled, plain = np.asarray(stream(0.9)), np.asarray(stream(1.0))
    late = slice(n // 2, None)
    assert np.all(np.abs(controlled[late].mean(axis=0)) < 0.01)  # the mean component is removed
    assert np.all(np.abs(plain[late].mean(axis=0)) > 0.1)  # ... which the plain gradient keeps (offset / sigma)


def test_module_reads_the_control_collection_and_the_gradient_state_is_declared():
    from plasticity_jax import models

    module = OnlineNorm(alpha_f=0.9, alpha_b=0.5)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 2)))
    np.testing.assert_array_equal(variables[CONTROL_COLLECTION]['u'], [0.0, 0.0])
    np.testing.assert_array_equal(variables[CONTROL_COLLECTION]['v'], [0.0, 0.0])
    assert CONTROL_COLLECTION in models.GRADIENT_STATE_COLLECTIONS
    assert CONTROL_COLLECTION not in OnlineNorm(alpha_b=1.0).init(jax.random.key(0), jnp.zeros((1, 2)))

    x = jnp.array([[1.0, 2.0], [0.0, -1.0]])

    def loss(control):
        y, _ = module.apply({**variables, CONTROL_COLLECTION: control}, x, mutable=['online_norm'])
        return jnp.sum(y * jnp.array([1.0, -2.0]))

    change = jax.grad(loss)(variables[CONTROL_COLLECTION])
    assert np.any(np.asarray(change['u']) != 0) and np.any(np.asarray(change['v']) != 0)
    with pytest.raises(ValueError, match='alpha_b'):
        OnlineNorm(alpha_b=1.5).init(jax.random.key(0), jnp.zeros((1, 2)))
