"""The modified ResNet-18 of class-incremental CIFAR-100 (Dohare et al., Nature 2024, Methods).

Architecture: ResNet-18 (He et al., 2016) adapted to 32x32 images as in the paper's code (a modified torchvision
ResNet): the stem is a 3x3 convolution with stride 1 (no 7x7 stride-2 convolution, no max-pool), then 4 stages of 2
BasicBlocks with `base_width` * (1, 2, 4, 8) channels (64, 128, 256, 512 by default), the first block of stages 2-4
halving the resolution with stride 2 and projecting its shortcut with a 1x1 stride-2 convolution + batch norm; then
a global average pool and a linear head named `output`. A BasicBlock is
relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)). Every convolution is followed by batch normalisation and
has a bias, as in the paper's code (redundant under the batch norm, but a parameter that learners see); 3x3
convolutions pad by 1 on each side as PyTorch does, so a stride-2 convolution samples positions 0, 2, 4, ...

Batch normalisation is flax `nn.BatchNorm` with PyTorch's defaults: epsilon 1e-5 and flax momentum 0.9 (torch's
momentum 0.1): running = 0.9 running + 0.1 batch statistic, starting from mean 0 and variance 1. One difference:
the running variance is updated with the biased batch variance, where PyTorch uses the unbiased one (a factor
n / (n - 1), n = batch * height * width per channel). Training vs evaluation is decided from how the model is
applied, never from a flag: when the 'batch_stats' collection is mutable (`mutable=['batch_stats']`, as the
engine's training step applies it), batch norm uses the batch's statistics and updates the running averages;
otherwise (evaluation, probes) it uses the running averages. The statistics are over the batch of ONE run: under
`jax.vmap` over seeds each seed normalises with, and updates, its own statistics.

Initialisation is that of the paper's code (`kaiming_init_resnet_module`, applied after building the network):
convolution kernels Kaiming normal N(0, 2 / fan_in) (fan_in = in_channels * kernel height * kernel width), the
head's kernel N(0, 1 / fan_in) (linear gain), every bias 0, batch-norm scale 1 and bias 0. (torchvision's own
ResNet init differs: fan_out convolutions, PyTorch's default head.)

`__call__(x)` returns `(outputs, hidden)`, `hidden` holding the post-ReLU output of each of the 4 stages (that of
its last block): (batch, H, W, base_width), (batch, H/2, W/2, 2 base_width), (batch, H/4, W/4, 4 base_width),
(batch, H/8, W/8, 8 base_width); then the inner activation relu(norm_0(conv_0(x))) of each of the 8 blocks
(4 x `blocks_per_stage`), in order (the units continual backprop and ReDo replace, `unit_layers`).

Replaceable units (`unit_layers`): the channels of every block's first convolution `conv_0`, with its batch norm
`norm_0`, read only by the block's `conv_1`. Zeroing a channel's weights in `conv_1` removes it from the network
whatever its batch-norm output, so a replacement leaves the output as with the old channel's outgoing weights zeroed,
in training and in evaluation mode. The papers' ResNet code (`lop/algos/res_gnt.py`) also replaces the channels of
the stem and of every block's `conv_1`: those feed the residual stream, which carries them through the identity
shortcuts (and the projection shortcuts, which that code leaves alone) however the next convolution's weights are
zeroed, so a replacement there changes the output at once; they are not declared here.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax

from plasticity_jax.models.conv import conv_module
from plasticity_jax.models.initializers import kaiming_init
from plasticity_jax.models.units import UnitLayer

NUM_STAGES = 4
BATCH_NORM_MOMENTUM = 0.9  # flax convention: torch.nn.BatchNorm2d's momentum 0.1.
BATCH_NORM_EPSILON = 1e-5


def _conv(channels: int, size: int, stride: int, name: str, lowering: str) -> nn.Conv:
    return conv_module(lowering)(channels, (size, size), strides=stride, padding=size // 2,
                                 kernel_init=kaiming_init(math.sqrt(2.0), 'normal'), name=name)


def _batch_norm(module: nn.Module, name: str) -> nn.BatchNorm:
    """Batch statistics (and running-average updates) when 'batch_stats' is mutable, running averages otherwise."""
    return nn.BatchNorm(use_running_average=not module.is_mutable_collection('batch_stats'),
                        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=name)


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch norm layers and a shortcut; params `conv_0`, `norm_0`, `conv_1`, `norm_1`, and
    `shortcut_conv`, `shortcut_norm` when the block changes the resolution or the number of channels."""

    channels: int
    stride: int = 1
    conv_lowering: str = 'auto'

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(the block's output, its inner activation relu(norm_0(conv_0(x))))."""
        conv_0 = _conv(self.channels, 3, self.stride, 'conv_0', self.conv_lowering)
        inner = nn.relu(_batch_norm(self, 'norm_0')(conv_0(x)))
        residual = _batch_norm(self, 'norm_1')(_conv(self.channels, 3, 1, 'conv_1', self.conv_lowering)(inner))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.channels:
            shortcut = _batch_norm(self, 'shortcut_norm')(_conv(self.channels, 1, self.stride, 'shortcut_conv',
                                                                  self.conv_lowering)(x))
        return nn.relu(residual + shortcut), inner


class ResNet18(nn.Module):
    """Params `stem_conv`, `stem_norm`, `stage_{s}_block_{b}` (s < 4, b < blocks_per_stage; see `BasicBlock`),
    `output`; the 'batch_stats' collection mirrors every `*norm*` entry with the running `mean` and `var`.

    `blocks_per_stage` is 2 (ResNet-18, the paper's network). 1 gives the 10-layer network of the same kind (every
    block type still present: stage 1's identity shortcut, stages 2-4's projections), which compiles in about half
    the time: the tests of mechanisms that do not depend on the depth use it."""

    num_outputs: int
    base_width: int = 64
    conv_lowering: str = 'auto'  # how the convolutions are computed (`models.conv`)
    blocks_per_stage: int = 2

    def unit_layers(self) -> tuple[UnitLayer, ...]:
        """Every block's `conv_0` channels with their `norm_0`, read by the block's `conv_1` (module docstring);
        activations `hidden[4:]`."""
        blocks = [f'stage_{s}_block_{b}' for s in range(NUM_STAGES) for b in range(self.blocks_per_stage)]
        return tuple(UnitLayer(incoming=(block, 'conv_0'), outgoing=((block, 'conv_1'),), activation=NUM_STAGES + i,
                               normalization=(block, 'norm_0')) for i, block in enumerate(blocks))

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        if x.ndim == 3:  # (batch, height, width) grayscale images (MNIST): one channel
            x = x[..., None]
        x = nn.relu(_batch_norm(self, 'stem_norm')(_conv(self.base_width, 3, 1, 'stem_conv', self.conv_lowering)(x)))
        stages, inner = [], []
        for stage in range(NUM_STAGES):
            for block in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x, block_inner = BasicBlock(self.base_width * 2**stage, stride, self.conv_lowering,
                                            name=f'stage_{stage}_block_{block}')(x)
                inner.append(block_inner)
            stages.append(x)
        features = x.mean(axis=(1, 2))  # global average pool
        outputs = nn.Dense(self.num_outputs, kernel_init=kaiming_init(1.0, 'normal'), name='output')(features)
        return outputs, (*stages, *inner)
