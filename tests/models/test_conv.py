"""The convolution lowerings: patches x kernel computes XLA's convolution (values and gradients), in the models too."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.models import ConvNet, PatchConv
from plasticity_jax.models.conv import conv_module


@pytest.mark.parametrize('kernel,strides,padding', [((5, 5), 1, 'VALID'), ((3, 3), 2, 1), ((1, 1), 2, 0),
                                                    ((3, 3), 1, 'SAME'), ((3, 2), (2, 1), ((1, 0), (2, 1)))])
def test_patch_conv_equals_xla_conv_values_and_gradients(kernel, strides, padding):
    x = np.random.default_rng(0).standard_normal((2, 9, 8, 3)).astype(np.float32)
    xla = nn.Conv(4, kernel, strides=strides, padding=padding)
    patches = PatchConv(4, kernel, strides=strides, padding=padding)
    params = jax.jit(xla.init)(jax.random.PRNGKey(1), x)
    assert jax.eval_shape(patches.init, jax.random.PRNGKey(1), x) == jax.eval_shape(xla.init, jax.random.PRNGKey(1), x)
    loss = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

    @jax.jit
    def values_and_gradients(params, x):  # one program, not an eager op at a time
        return [(module.apply(params, x), jax.grad(loss(module), argnums=(0, 1))(params, x))
                for module in (patches, xla)]

    (got, got_grads), (want, want_grads) = values_and_gradients(params, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(got_grads, want_grads):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got, want)


def test_the_lowering_changes_neither_params_nor_outputs_of_the_convnet():
    """(The ResNet's strided, padded and 1x1 convolutions are the cases above.)"""
    assert conv_module('xla') is nn.Conv and conv_module('patches') is PatchConv
    assert conv_module('auto') is (PatchConv if jax.default_backend() == 'cpu' else nn.Conv)
    with pytest.raises(ValueError, match='conv_lowering'):
        conv_module('fft')
    x = np.random.default_rng(0).standard_normal((2, 28, 28)).astype(np.float32)  # grayscale: a channel axis is added
    models = {lowering: ConvNet(num_outputs=3, conv_lowering=lowering) for lowering in ('xla', 'patches')}
    variables = jax.jit(models['xla'].init)(jax.random.PRNGKey(1), x)
    jax.tree.map(np.testing.assert_array_equal, jax.jit(models['patches'].init)(jax.random.PRNGKey(1), x), variables)
    (want, want_hidden), (got, got_hidden) = (jax.jit(models[lowering].apply)(variables, x)
                                              for lowering in ('xla', 'patches'))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for a, b in zip(got_hidden, want_hidden):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
