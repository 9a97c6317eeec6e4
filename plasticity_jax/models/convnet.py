"""The convolutional network of Continual ImageNet (Dohare et al., Nature 2024, Methods "Continual ImageNet").

Architecture (the paper's Methods and its released code): on (batch, 32, 32, 3) images, three convolutional layers,
each followed by a ReLU and a 2x2 max-pool with stride 2 — 32 filters of 5x5, 64 of 3x3, 128 of 3x3, all with VALID
padding and stride 1, so the maps go 32 -> 28 -> 14 -> 12 -> 6 -> 4 -> 2 — then the flattened 2 * 2 * 128 = 512
features feed two fully connected ReLU layers of 128 units and a linear head of `num_outputs` units (2 in the
paper: each task is a binary classification). Flattening is in flax's (H, W, C) order where PyTorch flattens
(C, H, W): a fixed permutation of the first dense layer's inputs, which changes nothing for an i.i.d. initialisation.

Initialisation is PyTorch's default for `nn.Conv2d` and `nn.Linear` (the paper's code builds default layers and
does not re-initialise them): every weight and bias is drawn from uniform(-1 / sqrt(fan_in), 1 / sqrt(fan_in)),
where fan_in is a unit's number of inputs (in_channels * kernel height * kernel width for a convolution). It is
`kaiming_uniform_` with a = sqrt(5), i.e. variance 1 / (3 fan_in), a third of He et al.'s ReLU variance.

`__call__(x)` returns `(outputs, hidden)`, `hidden` holding every hidden layer's ReLU output: the three
convolutional maps (batch, 28, 28, 32), (batch, 12, 12, 64), (batch, 4, 4, 128), taken BEFORE pooling (each
position of a channel is the unit's own activation; the paper's code records the pooled maps, which have the same
dead channels since a max-pool of a ReLU map is 0 exactly where the map is 0 on the whole window), then the two
dense layers (batch, 128).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from plasticity_jax.models.conv import conv_module
from plasticity_jax.models.initializers import FanInScaling
from plasticity_jax.models.units import UnitLayer, sequential_unit_layers

# (filters, kernel size) of the three convolutional layers, filters in multiples of `base_width` (32 in the paper),
# and the width of the two dense hidden layers (4 x `base_width` = 128 in the paper).
CONV_LAYERS = ((1, 5), (2, 3), (4, 3))
DENSE_WIDTH = 4
DENSE_DEPTH = 2


def torch_default_init(fan_in: int) -> dict[str, nn.initializers.Initializer]:
    """`kernel_init` and `bias_init` of PyTorch's default layer: both uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def bias_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    # FanInScaling computes fan_in itself (receptive field included for convolutions): scale 1/3 gives the uniform
    # bound sqrt(3 * scale / fan_in) = 1 / sqrt(fan_in).
    return {'kernel_init': FanInScaling(1.0 / 3.0, 'uniform'), 'bias_init': bias_init}


class ConvNet(nn.Module):
    """Continual ImageNet's network; params `conv_0..2`, `hidden_0..1`, `output`, each `{'kernel', 'bias'}`.

    A convolution's kernel is (height, width, in_channels, filters): the incoming weights of channel c of
    `conv_l` are `kernel[..., c]`. `conv_lowering`: how the convolutions are computed (`models.conv`).
    `base_width`: the first convolution's filters (32, the paper's network); the others have 2x and 4x as many and
    the dense layers 4x as many units (a smaller `base_width` is a proportionally narrower network, for CPU runs).
    """

    num_outputs: int
    conv_lowering: str = 'auto'
    base_width: int = 32

    def unit_layers(self) -> tuple[UnitLayer, ...]:
        """The channels of `conv_0..2` and the units of `hidden_0..1`, each read by the next layer (`hidden_0`
        reads `conv_2`'s channels at the 2 x 2 pooled positions); activations `hidden[0..4]`, the convolutions'
        before pooling."""
        names = [f'conv_{l}' for l in range(len(CONV_LAYERS))] + [f'hidden_{l}' for l in range(DENSE_DEPTH)]
        return sequential_unit_layers([(name,) for name in names] + [('output',)])

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        if x.ndim == 3:  # (batch, height, width) grayscale images (MNIST): one channel
            x = x[..., None]
        hidden = []
        conv = conv_module(self.conv_lowering)
        for layer, (multiple, size) in enumerate(CONV_LAYERS):
            x = nn.relu(conv(multiple * self.base_width, (size, size), padding='VALID', name=f'conv_{layer}',
                                **torch_default_init(size * size * x.shape[-1]))(x))
            hidden.append(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for layer in range(DENSE_DEPTH):
            x = nn.relu(nn.Dense(DENSE_WIDTH * self.base_width, name=f'hidden_{layer}',
                                 **torch_default_init(x.shape[-1]))(x))
            hidden.append(x)
        outputs = nn.Dense(self.num_outputs, name='output', **torch_default_init(x.shape[-1]))(x)
        return outputs, tuple(hidden)
