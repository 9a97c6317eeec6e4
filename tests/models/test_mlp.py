"""The MLP: shapes, hidden activations recomputed by hand, Kaiming initialisation statistics."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_jax.models import ACTIVATIONS, KAIMING_GAIN, MLP, kaiming_init, make_model
from tests.conftest import load_config


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# Reference activations in numpy, written independently of the library's table.
NUMPY_ACTIVATIONS = {
    'relu': lambda z: np.maximum(z, 0.0),
    'tanh': np.tanh,
    'sigmoid': _sigmoid,
    'elu': lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    'leaky_relu': lambda z: np.where(z > 0, z, 0.01 * z),
    'swish': lambda z: z * _sigmoid(z),
    'identity': lambda z: z,
}


def test_every_activation_has_a_reference_and_a_gain():
    assert set(ACTIVATIONS) == set(NUMPY_ACTIVATIONS) == set(KAIMING_GAIN)
    # torch.nn.init.calculate_gain values.
    assert KAIMING_GAIN['relu'] == pytest.approx(math.sqrt(2.0))
    assert KAIMING_GAIN['tanh'] == pytest.approx(5.0 / 3.0)
    assert KAIMING_GAIN['sigmoid'] == KAIMING_GAIN['identity'] == 1.0


def test_shapes_and_parameter_names_depth_3_width_7():
    model = MLP(width=7, depth=3, num_outputs=2)
    x = jnp.ones((5, 4))
    params = model.init(jax.random.key(0), x)['params']
    assert sorted(params) == ['hidden_0', 'hidden_1', 'hidden_2', 'output']
    assert params['hidden_0']['kernel'].shape == (4, 7)
    assert params['hidden_1']['kernel'].shape == (7, 7)
    assert params['hidden_2']['kernel'].shape == (7, 7)
    assert params['output']['kernel'].shape == (7, 2)
    assert all(params[name]['bias'].shape == (params[name]['kernel'].shape[1],) for name in params)
    outputs, hidden = model.apply({'params': params}, x)
    assert outputs.shape == (5, 2)
    assert isinstance(hidden, tuple) and len(hidden) == 3
    assert all(h.shape == (5, 7) for h in hidden)


def test_image_inputs_are_flattened():
    model = MLP(width=3, depth=1, num_outputs=2)
    images = jax.random.uniform(jax.random.key(1), (4, 2, 3))
    params = model.init(jax.random.key(0), images)['params']
    assert params['hidden_0']['kernel'].shape == (6, 3)
    np.testing.assert_allclose(model.apply({'params': params}, images)[0],
                               model.apply({'params': params}, images.reshape(4, 6))[0], rtol=1e-6)


@pytest.mark.parametrize('activation', sorted(ACTIVATIONS))
def test_forward_pass_matches_a_hand_computation(activation):
    model = MLP(width=7, depth=3, num_outputs=2, activation=activation)
    x = jax.random.normal(jax.random.key(2), (5, 4))
    params = model.init(jax.random.key(3), x)['params']
    # Non-zero biases, so that the test sees them used.
    params = {name: {'kernel': layer['kernel'],
                     'bias': 0.5 * jax.random.normal(jax.random.fold_in(jax.random.key(4), i), layer['bias'].shape)}
              for i, (name, layer) in enumerate(params.items())}
    outputs, hidden = model.apply({'params': params}, x)

    act = NUMPY_ACTIVATIONS[activation]
    h = np.asarray(x, np.float64)
    for layer in range(3):
        p = params[f'hidden_{layer}']
        h = act(h @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'], np.float64))
        np.testing.assert_allclose(np.asarray(hidden[layer]), h, rtol=1e-4, atol=1e-5)
    want = h @ np.asarray(params['output']['kernel'], np.float64) + np.asarray(params['output']['bias'], np.float64)
    np.testing.assert_allclose(np.asarray(outputs), want, rtol=1e-4, atol=1e-5)  # no activation on the output
    if activation == 'relu':
        assert np.any(np.asarray(hidden[0]) == 0) and np.any(np.asarray(hidden[0]) > 0)


def test_unknown_activation_or_distribution_raises():
    with pytest.raises(ValueError, match='unknown activation'):
        MLP(width=3, depth=1, num_outputs=1, activation='gelu').init(jax.random.key(0), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match='init_distribution'):
        MLP(width=3, depth=1, num_outputs=1, init_distribution='truncated_normal').init(jax.random.key(0),
                                                                                         jnp.ones((1, 2)))
    with pytest.raises(ValueError, match='init_distribution'):
        kaiming_init(1.0, 'orthogonal')


# ----------------------------------------------------------------- Kaiming initialisation

FAN_IN, WIDTH, OUTPUTS = 784, 2000, 10


@pytest.fixture(scope='module', params=[(a, d) for a in ('relu', 'tanh') for d in ('normal', 'uniform')],
                ids=lambda p: f'{p[0]}-{p[1]}')
def wide(request):
    activation, distribution = request.param
    model = MLP(width=WIDTH, depth=1, num_outputs=OUTPUTS, activation=activation, init_distribution=distribution)
    params = jax.jit(model.init)(jax.random.key(5), jnp.zeros((1, FAN_IN)))['params']
    return activation, distribution, jax.tree.map(np.asarray, params)


def test_kaiming_std_of_hidden_and_output_kernels(wide):
    activation, _, params = wide
    gain = KAIMING_GAIN[activation]
    for name, fan_in, layer_gain in (('hidden_0', FAN_IN, gain), ('output', WIDTH, 1.0)):
        kernel = params[name]['kernel']
        want = layer_gain * math.sqrt(1.0 / fan_in)
        assert kernel.std() == pytest.approx(want, rel=0.03), name  # output: 20,000 draws, 0.5% noise
        assert abs(kernel.mean()) < 0.05 * want, name


def test_kaiming_biases_are_zero(wide):
    _, _, params = wide
    for name, layer in params.items():
        np.testing.assert_array_equal(layer['bias'], 0.0, err_msg=name)


def test_kaiming_distribution_shape(wide):
    activation, distribution, params = wide
    for name, fan_in, layer_gain in (('hidden_0', FAN_IN, KAIMING_GAIN[activation]), ('output', WIDTH, 1.0)):
        kernel = params[name]['kernel']
        bound = layer_gain * math.sqrt(3.0 / fan_in)
        std = layer_gain * math.sqrt(1.0 / fan_in)
        if distribution == 'uniform':
            assert np.abs(kernel).max() <= bound * (1 + 1e-6), name
            assert np.abs(kernel).max() > 0.99 * bound, name  # fills the interval
            # Uniform on [-bound, bound]: half the draws within bound / 2 of zero (a normal: 61%).
            assert np.mean(np.abs(kernel) < bound / 2) == pytest.approx(0.5, abs=0.02), name
        else:
            # Untruncated normal: about 4.55% beyond 2 std (a truncated normal at 2 std has none), and some
            # beyond the uniform bound sqrt(3) std (8.3%).
            assert np.mean(np.abs(kernel) > 2 * std) == pytest.approx(0.0455, abs=0.01), name
            assert np.abs(kernel).max() > bound, name


def test_different_seeds_give_different_parameters():
    model = MLP(width=5, depth=1, num_outputs=1)
    a = model.init(jax.random.key(0), jnp.ones((1, 3)))['params']
    b = model.init(jax.random.key(1), jnp.ones((1, 3)))['params']
    a2 = model.init(jax.random.key(0), jnp.ones((1, 3)))['params']
    assert not np.array_equal(a['hidden_0']['kernel'], b['hidden_0']['kernel'])
    np.testing.assert_array_equal(a['hidden_0']['kernel'], a2['hidden_0']['kernel'])


# ----------------------------------------------------------------- make_model and the configs


def test_make_model_from_the_configs():
    config = load_config('slowly_changing_regression.py')
    model = make_model(config.model, num_outputs=1)
    assert (model.width, model.depth, model.activation, model.init_distribution) == (5, 1, 'relu', 'uniform')
    params = model.init(jax.random.key(0), jnp.zeros((1, 20)))['params']
    assert params['hidden_0']['kernel'].shape == (20, 5) and params['output']['kernel'].shape == (5, 1)
    assert make_model(load_config('slowly_changing_regression.py', 'tanh').model, 1).activation == 'tanh'

    model = make_model(load_config('permuted_mnist.py').model, num_outputs=10)
    assert (model.width, model.depth, model.activation, model.init_distribution) == (2000, 3, 'relu', 'normal')

    bad = ml_collections.ConfigDict({'name': 'cnn', 'width': 1, 'depth': 1, 'activation': 'relu',
                                     'init_distribution': 'normal'})
    with pytest.raises(ValueError, match='model.name'):
        make_model(bad, 1)
