"""Fully connected network that exposes the activations of every hidden layer.

Plasticity metrics (dead units, effective rank) and reinitialisation learners (continual backprop, ReDo) need to see
the hidden units, so `MLP.__call__` returns `(outputs, hidden)` where `hidden` is a tuple with one
`(batch, width)` array per hidden layer, after the activation.

Initialisation follows Kaiming (He et al., 2015) as used by Dohare et al.: weights drawn with variance
gain**2 / fan_in, biases zero. The gain is the one PyTorch's `calculate_gain` gives for the activation (the papers'
code uses it), and the output layer uses the linear gain 1. Dohare's dissertation (Sec. 2.1) describes the Kaiming
*normal* distribution, N(0, 2 / fan_in) for ReLU; the papers' released code draws Kaiming *uniform* with the same
variance. Both are available through `init_distribution`.

Optional pieces, off by default (Dohare's dissertation, Secs. 2.2 and 4.3, evaluates dropout and online
normalization on Online Permuted MNIST; layer normalization is not among its methods):

* `normalization`: 'layernorm' (Ba et al., 2016; flax `nn.LayerNorm`, eps 1e-5 as PyTorch, learnable scale and
  bias) or 'online_norm' (Chiley et al., 2019; `normalization.OnlineNorm` with decays `online_norm_alpha_f` and
  `online_norm_alpha_b`, running statistics in the collection 'online_norm', the backward pass's control
  accumulators in 'online_norm_control'), placed in every hidden layer between the dense layer and the activation:
  dense -> norm -> activation, as batch normalisation is placed by Ioffe & Szegedy (2015) and as Chiley et al.'s
  fully connected experiments place Online Normalization (the dissertation notes there is no consensus). The
  output layer is not normalised. The dense layers keep their bias, so every learner sees the same
  `{'kernel', 'bias'}` layers; the norms' parameters are under `norm_{l}` with leaves `scale` and `bias`.
* `dropout_rate` p: dropout (Hinton et al., 2012) on every hidden layer's output (after the activation, i.e. on
  the next layer's input; not on the network input): in training each hidden unit is zeroed with probability p and
  the kept ones are scaled by 1 / (1 - p) (flax `nn.Dropout`, "inverted" dropout; the dissertation's Eq. 2.11
  scales by (1 - p) at test time instead, the same network in expectation).

Training vs evaluation is decided from how the model is applied, never from a flag: dropout is active when a
'dropout' rng is given (`self.has_rng('dropout')`), and online normalisation updates its statistics when the
'online_norm' collection is mutable. The engine's training step passes both; its probe and evaluation pass neither.

The returned `hidden[l]` is hidden layer l's activation output, BEFORE dropout: the unit's feature, which in
evaluation mode (where the plasticity metrics are measured) is also what the next layer receives.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from plasticity_jax.models.initializers import FanInScaling, kaiming_init
from plasticity_jax.models.normalization import DEFAULT_ALPHA_B, DEFAULT_ALPHA_F, OnlineNorm
from plasticity_jax.models.units import UnitLayer, sequential_unit_layers

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

NORMALIZATIONS = ('none', 'layernorm', 'online_norm')
NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, and Chiley et al.'s code for Online Normalization.


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f'unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}')


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, then a linear layer with `num_outputs` units.

    Layers are named `hidden_0 ... hidden_{depth-1}` and `output`, so params are
    `{'hidden_0': {'kernel', 'bias'}, ..., 'output': {...}}`: the incoming weights of hidden layer l are
    `params[f'hidden_{l}']['kernel'][:, unit]` and its outgoing weights are the rows of the next layer's kernel.
    With a normalization, `params[f'norm_{l}']` holds its `scale` and `bias` (one per unit of hidden layer l).
    """

    width: int
    depth: int
    num_outputs: int
    activation: str = 'relu'
    init_distribution: str = 'normal'
    dropout_rate: float = 0.0
    normalization: str = 'none'
    online_norm_alpha_f: float = DEFAULT_ALPHA_F
    online_norm_alpha_b: float = DEFAULT_ALPHA_B
    # Variance scale of the hidden layers' kernels, variance init_scale / fan_in; None: Kaiming's gain**2 of the
    # activation. 1.0 is LeCun's initialisation (the actor-critic networks of the papers' PPO).
    init_scale: float | None = None

    def _check(self) -> None:
        check_activation(self.activation)
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f'unknown normalization {self.normalization!r}; valid: {list(NORMALIZATIONS)}')
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f'dropout_rate must be in [0, 1), got {self.dropout_rate}')

    def _normalize(self, x: jax.Array, layer: int) -> jax.Array:
        if self.normalization == 'layernorm':
            return nn.LayerNorm(epsilon=NORM_EPSILON, name=f'norm_{layer}')(x)
        if self.normalization == 'online_norm':
            return OnlineNorm(alpha_f=self.online_norm_alpha_f, alpha_b=self.online_norm_alpha_b, epsilon=NORM_EPSILON,
                              name=f'norm_{layer}')(x)
        return x

    def unit_layers(self) -> tuple[UnitLayer, ...]:
        """Hidden layer l's units: columns of `hidden_l`, read by the next layer; activations `hidden[l]`."""
        return sequential_unit_layers([(f'hidden_{l}',) for l in range(self.depth)] + [('output',)])

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        self._check()
        act = ACTIVATIONS[self.activation]
        train_dropout = self.dropout_rate > 0 and self.has_rng('dropout')
        x = x.reshape(x.shape[0], -1)
        scale = KAIMING_GAIN[self.activation] ** 2 if self.init_scale is None else self.init_scale
        hidden = []
        for layer in range(self.depth):
            x = nn.Dense(self.width, kernel_init=FanInScaling(scale, self.init_distribution), name=f'hidden_{layer}')(x)
            x = act(self._normalize(x, layer))
            hidden.append(x)
            if self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train_dropout, name=f'dropout_{layer}')(x)
        outputs = nn.Dense(self.num_outputs, kernel_init=kaiming_init(1.0, self.init_distribution), name='output')(x)
        return outputs, tuple(hidden)

