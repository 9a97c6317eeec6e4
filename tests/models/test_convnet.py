"""The Continual ImageNet ConvNet: shapes, the paper's parameter count, the forward pass against NumPy, PyTorch's
default initialisation, the plasticity metrics of its hidden layers; make_model's dispatch."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_jax.metrics import representation_metrics
from plasticity_jax.models import ConvNet, ResNet18, make_model
from tests.models.numpy_reference import conv2d, max_pool_2x2, relu

LAYERS = ('conv_0', 'conv_1', 'conv_2', 'hidden_0', 'hidden_1', 'output')
_apply = jax.jit(ConvNet(num_outputs=2).apply)  # one program for the tests that run the network
PROBE = np.random.default_rng(1).standard_normal((16, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def params():
    variables = jax.jit(ConvNet(num_outputs=2).init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return jax.tree.map(np.asarray, variables['params'])


def test_shapes_and_parameter_names(params):
    assert sorted(params) == sorted(LAYERS)
    shapes = {name: (params[name]['kernel'].shape, params[name]['bias'].shape) for name in LAYERS}
    assert shapes == {'conv_0': ((5, 5, 3, 32), (32,)), 'conv_1': ((3, 3, 32, 64), (64,)),
                      'conv_2': ((3, 3, 64, 128), (128,)), 'hidden_0': ((512, 128), (128,)),
                      'hidden_1': ((128, 128), (128,)), 'output': ((128, 2), (2,))}
    outputs, hidden = jax.eval_shape(ConvNet(num_outputs=2).apply, {'params': params}, jnp.zeros((3, 32, 32, 3)))
    assert outputs.shape == (3, 2)
    assert isinstance(hidden, tuple)
    # Convolutional maps before pooling (32 -> 28, 14 -> 12, 6 -> 4), then the dense layers.
    assert [h.shape for h in hidden] == [(3, 28, 28, 32), (3, 12, 12, 64), (3, 4, 4, 128), (3, 128), (3, 128)]


def test_parameter_count_of_the_papers_network(params):
    # Weights + biases: conv 5*5*3*32 + 32 = 2,432; 3*3*32*64 + 64 = 18,496; 3*3*64*128 + 128 = 73,856;
    # dense 512*128 + 128 = 65,664; 128*128 + 128 = 16,512; head 128*2 + 2 = 258.
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 177_218


def test_forward_pass_against_numpy(params):
    x = PROBE
    outputs, hidden = _apply({'params': params}, x)
    want, h = [], x
    for name in ('conv_0', 'conv_1', 'conv_2'):
        h = relu(conv2d(h, params[name]['kernel'], params[name]['bias']))
        want.append(h)
        h = max_pool_2x2(h)
    h = h.reshape(len(x), -1)  # (H, W, C) order
    for name in ('hidden_0', 'hidden_1'):
        h = relu(h @ params[name]['kernel'] + params[name]['bias'])
        want.append(h)
    for got, expected in zip(hidden, want):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs, h @ params['output']['kernel'] + params['output']['bias'], rtol=1e-4, atol=1e-5)
    assert np.mean(want[0] > 0) > 0.2  # the ReLUs are not all off: the comparison covers real values


def test_pytorch_default_initialisation(params):
    # uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases; a convolution's fan_in counts its window.
    fan_ins = {'conv_0': 5 * 5 * 3, 'conv_1': 3 * 3 * 32, 'conv_2': 3 * 3 * 64, 'hidden_0': 512, 'hidden_1': 128,
               'output': 128}
    scaled_biases = []
    for name, fan_in in fan_ins.items():
        bound = 1.0 / math.sqrt(fan_in)
        kernel, bias = params[name]['kernel'], params[name]['bias']
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound, name
        assert np.abs(kernel).max() > 0.95 * bound, name  # fills the interval (>= 256 draws)
        scaled_biases.append(bias / bound)
    for name in ('conv_2', 'hidden_0'):  # 73,728 and 65,536 draws: std within 0.2% of bound / sqrt(3)
        bound = 1.0 / math.sqrt(fan_ins[name])
        assert params[name]['kernel'].std() == pytest.approx(bound / math.sqrt(3), rel=0.02), name
        assert abs(params[name]['kernel'].mean()) < 0.02 * bound, name
    scaled_biases = np.concatenate(scaled_biases)  # 482 draws of uniform(-1, 1): std 1/sqrt(3), 2% noise
    assert scaled_biases.std() == pytest.approx(1 / math.sqrt(3), rel=0.1)


def test_plasticity_metrics_of_its_hidden_layers(params):
    _, hidden = _apply({'params': params}, PROBE)
    metrics = jax.jit(representation_metrics, static_argnums=2)(hidden, params, 'relu')
    for name in ('dead_fraction', 'effective_rank', 'approximate_rank', 'stable_rank', 'feature_rank'):
        assert metrics[name].shape == (5,) and np.all(np.isfinite(metrics[name])), name
    assert np.all(np.asarray(metrics['effective_rank']) > 1.0)
    # Every conv and dense kernel counts, each entry once; biases do not.
    kernels = np.concatenate([params[name]['kernel'].ravel() for name in LAYERS])
    assert kernels.size == 177_218 - (32 + 64 + 128 + 128 + 128 + 2)
    assert float(metrics['weight_magnitude']) == pytest.approx(np.abs(kernels).mean(), rel=1e-5)


def test_make_model_builds_every_model_by_name():
    model = make_model(ml_collections.ConfigDict({'name': 'convnet'}), num_outputs=2)
    assert model == ConvNet(num_outputs=2)
    assert make_model(ml_collections.ConfigDict({'name': 'resnet18'}), 100) == ResNet18(num_outputs=100, base_width=64)
    assert make_model(ml_collections.ConfigDict({'name': 'resnet18', 'base_width': 8}), 5).base_width == 8
    narrow = make_model(ml_collections.ConfigDict({'name': 'convnet', 'base_width': 4}), 2)  # 4, 8, 16 and 16 units
    shapes = jax.eval_shape(narrow.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
    assert [shapes[name]['kernel'].shape for name in LAYERS] == [(5, 5, 1, 4), (3, 3, 4, 8), (3, 3, 8, 16), (16, 16),
                                                                 (16, 16), (16, 2)]
    with pytest.raises(ValueError, match=r"model.name 'vgg'; valid: \['convnet', 'mlp', 'resnet18'\]"):
        make_model(ml_collections.ConfigDict({'name': 'vgg'}), 2)
