"""Kernel initialisers that declare what `learners.reinit` needs to draw one unit's incoming weights alone.

`FanInScaling(scale, distribution)` draws i.i.d. entries with variance scale / fan_in, fan_in being the number of
inputs of a unit (`jax.nn.initializers.variance_scaling` in 'fan_in' mode, which it calls). Since a column's
distribution depends on fan_in only, a replaced unit's fresh incoming weights can be drawn as a (fan_in, 1) kernel
with exactly the distribution of a column of the full (fan_in, width) kernel. The class states that property (it is
a frozen dataclass: hashable, as flax module fields must be); any other initialiser makes `learners.reinit` fall
back to drawing a full fresh network, the same distribution at the old cost.

Kaiming (He et al., 2015) is `kaiming_init(gain, distribution)` = `FanInScaling(gain**2, distribution)`; PyTorch's
default layer initialisation, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), is `FanInScaling(1/3, 'uniform')`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

INIT_DISTRIBUTIONS = ('normal', 'uniform')


@dataclasses.dataclass(frozen=True)
class FanInScaling:
    """Entries i.i.d. with variance `scale / fan_in`: untruncated normal or uniform on
    [-sqrt(3 scale / fan_in), sqrt(3 scale / fan_in)]."""

    scale: float
    distribution: str

    def __post_init__(self):
        if self.distribution not in INIT_DISTRIBUTIONS:
            raise ValueError(f'init_distribution must be one of {INIT_DISTRIBUTIONS}, got {self.distribution!r}')

    def __call__(self, key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.nn.initializers.variance_scaling(self.scale, 'fan_in', self.distribution)(key, shape, dtype)


def kaiming_init(gain: float, distribution: str) -> FanInScaling:
    """Weights with variance gain**2 / fan_in (He et al., 2015), untruncated normal or uniform."""
    return FanInScaling(gain**2, distribution)
