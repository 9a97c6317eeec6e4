"""Fully connected network that exposes the activations of every hidden layer.

Plasticity metrics (dead units, effective rank) and reinitialisation learners (continual backprop, ReDo) need to see
the hidden units, so `MLP.__call__` returns `(outputs, hidden)` where `hidden` is a tuple with one
`(batch, width)` array per hidden layer, after the activation.

Initialisation follows Kaiming (He et al., 2015) as used by Dohare et al.: weights drawn with variance
gain**2 / fan_in, biases zero. The gain is the one PyTorch's `calculate_gain` gives for the activation (the papers'
code uses it), and the output layer uses the linear gain 1. Dohare's dissertation (Sec. 2.1) describes the Kaiming
*normal* distribution, N(0, 2 / fan_in) for ReLU; the papers' released code draws Kaiming *uniform* with the same
variance. Both are available through `init_distribution`.
"""

from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'elu': nn.elu,
    'leaky_relu': nn.leaky_relu,  # negative slope 0.01, as torch.nn.LeakyReLU.
    'swish': nn.swish,
    'identity': lambda x: x,
}

# torch.nn.init.calculate_gain for each activation, as the papers' code initialises them (kaiming_uniform_ with the
# activation's name; swish and elu use the ReLU gain; leaky_relu is called with a=0, hence sqrt(2)).
KAIMING_GAIN: dict[str, float] = {
    'relu': math.sqrt(2.0),
    'tanh': 5.0 / 3.0,
    'sigmoid': 1.0,
    'elu': math.sqrt(2.0),
    'leaky_relu': math.sqrt(2.0),
    'swish': math.sqrt(2.0),
    'identity': 1.0,
}

INIT_DISTRIBUTIONS = ('normal', 'uniform')


def kaiming_init(gain: float, distribution: str) -> nn.initializers.Initializer:
    """Weights with variance gain**2 / fan_in (He et al., 2015), untruncated normal or uniform."""
    if distribution not in INIT_DISTRIBUTIONS:
        raise ValueError(f'init_distribution must be one of {INIT_DISTRIBUTIONS}, got {distribution!r}')
    return nn.initializers.variance_scaling(gain**2, 'fan_in', distribution)


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f'unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}')


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, then a linear layer with `num_outputs` units.

    Layers are named `hidden_0 ... hidden_{depth-1}` and `output`, so params are
    `{'hidden_0': {'kernel', 'bias'}, ..., 'output': {...}}`: the incoming weights of hidden layer l are
    `params[f'hidden_{l}']['kernel'][:, unit]` and its outgoing weights are the rows of the next layer's kernel.
    """

    width: int
    depth: int
    num_outputs: int
    activation: str = 'relu'
    init_distribution: str = 'normal'

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        check_activation(self.activation)
        act = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)
        hidden = []
        for layer in range(self.depth):
            x = nn.Dense(self.width, kernel_init=kaiming_init(KAIMING_GAIN[self.activation], self.init_distribution),
                         name=f'hidden_{layer}')(x)
            x = act(x)
            hidden.append(x)
        outputs = nn.Dense(self.num_outputs, kernel_init=kaiming_init(1.0, self.init_distribution), name='output')(x)
        return outputs, tuple(hidden)

