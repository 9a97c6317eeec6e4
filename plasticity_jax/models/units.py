"""Unit layers: what a model declares about its hidden units, so that learners can replace them (`learners.reinit`).

A unit is a hidden unit of a dense layer or an output channel of a convolution. A model lists its replaceable units
as `UnitLayer`s, by paths into its (nested) params, e.g. ('hidden_0',) for the MLP's first layer,
('stage_0_block_0', 'conv_0') for a ResNet block's first convolution, ('policy', 'hidden_1') for a layer of an
actor-critic's policy network:

- `incoming`: the module whose `kernel` holds the units' incoming weights on its LAST axis (a dense (fan_in, units)
  kernel, a convolution's (height, width, in_channels, units) kernel) and whose `bias`, if it has one, one entry
  per unit.
- `outgoing`: every module that reads the units, by its `kernel`'s second-to-last axis: a dense kernel's rows, a
  convolution's input channels. A dense layer fed by a flattened (..., positions, units) map reads unit u at rows
  p * units + u for every position p (flax flattens in (height, width, channel) order): its kernel has
  positions * units rows.
- `activation`: the index of the units' activations in the model's `hidden` tuple ((batch, units), or
  (batch, ..., units) maps for a convolution, whose positions are further examples of each channel).
- `normalization`: the batch norm right after `incoming`, whose per-unit `scale` and `bias` (params) and running
  `mean` and `var` (the 'batch_stats' collection) a replacement resets; None when there is none.

The model declares these (a `unit_layers()` method), never the learner guessing from names, so any network (MLP,
ConvNet, ResNet-18, two networks of an actor-critic) can be used by continual backprop and ReDo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

Path = tuple[str, ...]


class UnitLayer(NamedTuple):
    """One layer of replaceable hidden units (module docstring)."""

    incoming: Path
    outgoing: tuple[Path, ...]
    activation: int
    normalization: Path | None = None


def sequential_unit_layers(modules: Sequence[Path], first_activation: int = 0) -> tuple[UnitLayer, ...]:
    """The unit layers of a chain of layers `modules[0] -> modules[1] -> ... -> modules[-1]` (the last one, the
    output layer, has no replaceable units): layer l's units are read by layer l + 1 only, and their activations are
    `hidden[first_activation + l]`."""
    return tuple(UnitLayer(incoming=tuple(a), outgoing=(tuple(b),), activation=first_activation + l)
                 for l, (a, b) in enumerate(zip(modules[:-1], modules[1:])))
