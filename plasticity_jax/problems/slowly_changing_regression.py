"""Slowly-Changing Regression, formerly the Bit-Flipping problem (Dohare et al., Nature 2024, Methods; Dohare,
Sutton & Mahmood, "Continual backprop", 2021, Sec. 3).

Inputs are m = 20 bits plus a constant bias bit. The first f = 15 are slowly-changing "flipping" bits that stay fixed
within a task of T examples; the other m - f = 5 are drawn i.i.d. uniform {0, 1} for every example. The target is a
fixed random network with n = 100 linear threshold units (LTUs): every weight, including the bias bit's, is +-1 with
equal probability, and unit i outputs 1 when its weighted input exceeds

    theta_i = (m + 1) * beta - S_i,  S_i = number of -1 weights of unit i  (beta = 0.7),

i.e. when more than a fraction beta of its m + 1 inputs agree with its weights. The output is the sum of the LTU
outputs weighted by +-1. Each run draws its own target network (the papers' code does too).

Choices where the description leaves room (all are config fields):
- Task switches (`flip_mode`): 'flip_one' flips one uniformly chosen flipping bit every T examples, as the papers
  describe; 'redraw_all' redraws all 15 flipping bits every T examples, which the papers' data-generation code does
  unless its `flip_one` option is set. The first task's flipping bits are uniform random in both modes.
- The papers' code also gives the target's output unit a +-1 bias and computes S_i with the bias weight's sign
  reversed; we follow the paper's equations (no output bias, S_i counts every -1 weight). A constant output
  offset would be learned by the learner's output bias and does not change the problem's difficulty.
- The learner receives the 20 bits; the constant bias bit is its layers' bias terms.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from plasticity_jax.problems.base import Problem

FLIP_MODES = ('flip_one', 'redraw_all')


@dataclasses.dataclass(frozen=True)
class SlowlyChangingRegression(Problem):
    num_flipping_bits: int = 15
    num_target_units: int = 100
    beta: float = 0.7
    flip_mode: str = 'flip_one'

    @property
    def num_bits(self) -> int:
        return self.input_shape[0]

    def __post_init__(self):
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f'problem.flip_mode must be one of {FLIP_MODES}, got {self.flip_mode!r}')
        if not 0 < self.num_flipping_bits <= self.num_bits:
            raise ValueError(f'problem.num_flipping_bits must be in [1, {self.num_bits}], '
                             f'got {self.num_flipping_bits}')

    def _random_bits(self, key, shape):
        return jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32)

    def _signs(self, key, shape):
        return 2.0 * self._random_bits(key, shape) - 1.0

    def init(self, data, key):
        """Draws this run's target network and the first task's flipping bits."""
        del data
        weights_key, out_key, bits_key = jax.random.split(key, 3)
        weights = self._signs(weights_key, (self.num_bits + 1, self.num_target_units))  # last row: bias bit
        num_negative = jnp.sum(weights < 0, axis=0)
        return {
            'target_weights': weights,
            'target_thresholds': (self.num_bits + 1) * self.beta - num_negative,
            'target_output_weights': self._signs(out_key, (self.num_target_units,)),
            'flipping_bits': self._random_bits(bits_key, (self.num_flipping_bits,)),
        }

    def start_task(self, data, state, task_index, key):
        """Task 0 keeps the initial bits; every later task flips one bit or redraws them all (`flip_mode`)."""
        bits = state['flipping_bits']
        if self.flip_mode == 'flip_one':
            flip = jax.nn.one_hot(jax.random.randint(key, (), 0, self.num_flipping_bits), self.num_flipping_bits)
            new_bits = jnp.abs(bits - flip)
        else:
            new_bits = self._random_bits(key, bits.shape)
        return {**state, 'flipping_bits': jnp.where(task_index == 0, bits, new_bits)}

    def target(self, state, x):
        """The LTU network's output for inputs x of shape (batch, m)."""
        with_bias = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
        features = (with_bias @ state['target_weights'] > state['target_thresholds']).astype(jnp.float32)
        return (features @ state['target_output_weights'])[:, None]

    def _inputs(self, state, key, count):
        random_bits = self._random_bits(key, (count, self.num_bits - self.num_flipping_bits))
        flipping = jnp.broadcast_to(state['flipping_bits'], (count, self.num_flipping_bits))
        return jnp.concatenate([flipping, random_bits], axis=1)

    def batch(self, data, state, step, key):
        del data, step
        x = self._inputs(state, key, self.batch_size)
        return x, self.target(state, x)

    def probe(self, data, state, key):
        return self.sample_inputs(data, state, key, self.probe_size)

    def sample_inputs(self, data, state, key, size):
        del data
        return self._inputs(state, key, size)
