"""Backprop's optimizers: the update equations of the dissertation (Sec. 2.1), hyperparameters as state."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_jax import learners, sweeps


def learner_config(**fields):
    config = ml_collections.ConfigDict({'name': 'backprop', 'optimizer': 'sgd', 'step_size': 0.1, 'momentum': 0.0,
                                        'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8})
    config.update(fields)
    return config


def one_update(config, grads, params, steps=1):
    learner = learners.make_learner(config, init_params=None)
    state = learner.optimizer.init(params)
    for _ in range(steps):
        updates, state = learner.optimizer.update(grads, state, params, key=jax.random.PRNGKey(0), grad_fn=None)
    return updates, state


def test_sgd_update_is_minus_step_size_times_gradient():
    params = {'w': jnp.array([1.0, -2.0])}
    grads = {'w': jnp.array([0.5, 3.0])}
    updates, state = one_update(learner_config(step_size=0.01), grads, params)
    np.testing.assert_allclose(updates['w'], [-0.005, -0.03], rtol=1e-6)
    assert float(state.hyperparams['learning_rate']) == pytest.approx(0.01)  # a traced value, not a constant


def test_adam_matches_the_bias_corrected_equations():
    """m_t = b1 m + (1-b1) g, v_t = b2 v + (1-b2) g^2, update = -lr m_hat / (sqrt(v_hat) + eps) (eps outside)."""
    g = np.array([0.3, -2.0], np.float32)
    config = learner_config(optimizer='adam', step_size=0.001, beta1=0.9, beta2=0.99, eps=1e-3)
    updates, _ = one_update(config, {'w': jnp.asarray(g)}, {'w': jnp.zeros(2)}, steps=2)
    m = v = 0.0
    for t in (1, 2):
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g**2
        expected = -0.001 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-3)
    np.testing.assert_allclose(updates['w'], expected, rtol=1e-5)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown learner.name 'bp'.*backprop"):
        learners.make_learner(learner_config(name='bp'), init_params=None)
    with pytest.raises(ValueError, match=r"unknown learner.optimizer 'rmsprop'.*adam"):
        learners.make_learner(learner_config(optimizer='rmsprop'), init_params=None)


def test_a_swept_momentum_is_the_fixed_one_at_each_point():
    """`learner.momentum` swept (a traced value per run, as `sweeps` passes it): at 0.9 the fixed momentum's updates;
    at 0 plain SGD's (a fixed 0 keeps no momentum buffer; a swept one keeps it and adds 0 times it)."""
    grads, params = {'w': jnp.array([0.5, -3.0])}, {'w': jnp.zeros(2)}

    @jax.jit
    def swept(momenta):
        def run(momentum):  # as the engine builds a swept run's learner
            return one_update(sweeps.with_values(learner_config(), {'momentum': momentum}), grads, params, steps=3)[0]
        return jax.vmap(run)(momenta)

    updates = swept(jnp.array([0.0, 0.9]))
    for point, momentum in enumerate((0.0, 0.9)):
        fixed, state = one_update(learner_config(momentum=momentum), grads, params, steps=3)
        np.testing.assert_allclose(updates['w'][point], fixed['w'], rtol=1e-6)
        assert ('momentum' in state.hyperparams) == (momentum != 0.0)
    np.testing.assert_allclose(updates['w'][1], -0.1 * (1 + 0.9 + 0.81) * grads['w'], rtol=1e-6)
