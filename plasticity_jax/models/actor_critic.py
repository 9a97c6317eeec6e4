"""The actor-critic of the papers' PPO (Dohare et al., Nature 2024, Methods "Policy collapse"; their released code
`lop/algos/rl`): two separate MLPs, a Gaussian policy and a value function.

- policy: observation -> `depth` hidden layers of `width` units -> action mean (no tanh squashing: the environment
  clips the action to its control range);
- value: observation -> `depth` hidden layers of `width` units -> scalar;
- a state-independent log standard deviation per action dimension, initialised to 0.

Every layer (hidden and output) has LeCun-uniform kernels, U(+-sqrt(3 / fan_in)), and zero biases, as the papers'
code. Params are `{'policy': MLP params, 'value': MLP params, 'log_std': (action_size,)}`.

`__call__(observations)` returns `(outputs, hidden)` like every model: `outputs` is a dict with the policy's `mean`
(batch, action_size), `log_std` (action_size,) and the `value` (batch,); `hidden` is the policy's hidden activations
followed by the value network's. `unit_layers()` declares both networks' hidden layers to the unit-replacing
learners (('policy', 'hidden_0'), ..., ('value', 'hidden_0'), ...), so continual backprop and ReDo act on both.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from plasticity_jax.models.mlp import MLP
from plasticity_jax.models.units import UnitLayer, sequential_unit_layers

LECUN_SCALE = 1.0  # variance 1 / fan_in
NETWORKS = ('policy', 'value')


class ActorCritic(nn.Module):
    action_size: int
    width: int = 256
    depth: int = 2
    activation: str = 'relu'

    def unit_layers(self) -> tuple[UnitLayer, ...]:
        return tuple(layer for n, network in enumerate(NETWORKS) for layer in sequential_unit_layers(
            [(network, f'hidden_{l}') for l in range(self.depth)] + [(network, 'output')],
            first_activation=n * self.depth))

    @nn.compact
    def __call__(self, observations: jax.Array) -> tuple[dict[str, jax.Array], tuple[jax.Array, ...]]:
        def mlp(outputs, name):
            return MLP(width=self.width, depth=self.depth, num_outputs=outputs, activation=self.activation,
                       init_distribution='uniform', init_scale=LECUN_SCALE, name=name)

        mean, policy_hidden = mlp(self.action_size, 'policy')(observations)
        value, value_hidden = mlp(1, 'value')(observations)
        log_std = self.param('log_std', nn.initializers.zeros, (self.action_size,), jnp.float32)
        return {'mean': mean, 'log_std': log_std, 'value': value[:, 0]}, (*policy_hidden, *value_hidden)
