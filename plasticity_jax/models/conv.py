"""Two lowerings of the same 2-D convolution: XLA's convolution, or patches times a matrix (for CPUs, inside loops).

On the CPU, XLA runs a convolution inside a loop body (the engine's `lax.scan` over steps) many times slower than the
same convolution outside a loop: measured on the ConvNet's SGD step (batch 100, 32x32x3), 0.56 s per step as a jitted
function called from Python, 7.1 s per step inside `lax.scan` (BENCHMARKS.md, "Image models"; jax 0.10.2; the
XLA flags `xla_cpu_use_thunk_runtime=false` and `xla_cpu_use_xnnpack=true` do not change it). Matrix products do not
suffer from it, so `PatchConv` computes the convolution as one: the k_h x k_w shifted (strided) views of the padded
input are concatenated along the channels, (batch, out_h, out_w, k_h k_w in_channels), and multiplied by the kernel
reshaped to (k_h k_w in_channels, features). Inside `lax.scan` this runs the ConvNet's step at about the speed of the
jitted step outside a loop. It costs k_h x k_w times the input's memory per convolution (the patches), which the
CPU-sized runs afford.

`PatchConv` is a `flax.linen.Conv` (same fields, parameters `kernel` (k_h, k_w, in, features) and `bias`, same
initialisers, so a model's params do not depend on the lowering and `learners.reinit` finds its initialiser); it
computes the same function, to float32 rounding (the order of the sums differs). Supported: 2-D, padding 'VALID',
'SAME', an int or ((top, bottom), (left, right)), any strides; no dilation or feature groups (the models use none).

`conv_lowering` of a model: 'xla' (`nn.Conv`), 'patches' (`PatchConv`), or 'auto' (the default): patches on the CPU
backend, XLA's convolution elsewhere (GPUs and TPUs run convolutions in loops with the same kernels as outside).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_LOWERINGS = ('auto', 'xla', 'patches')


def _pairs(padding, kernel_size: tuple[int, int], strides: tuple[int, int], in_size: tuple[int, int]):
    """((top, bottom), (left, right)) for flax's padding conventions ('VALID', 'SAME', int, pairs)."""
    if padding == 'VALID':
        return ((0, 0), (0, 0))
    if padding == 'SAME':
        pads = []
        for size, k, s in zip(in_size, kernel_size, strides):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


class PatchConv(nn.Conv):
    """`nn.Conv` computed as patches x reshaped kernel (module docstring)."""

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel_size = tuple(self.kernel_size)
        strides = (1, 1) if self.strides is None else (
            (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides))
        if len(kernel_size) != 2 or inputs.ndim != 4:
            raise ValueError(f'PatchConv is 2-D on (batch, height, width, channels) inputs; got kernel {kernel_size} '
                             f'and inputs of shape {inputs.shape}')
        if self.feature_group_count != 1 or self.input_dilation not in (None, 1) or \
                self.kernel_dilation not in (None, 1):
            raise ValueError('PatchConv supports no feature groups and no dilation')
        in_channels = inputs.shape[-1]
        kernel = self.param('kernel', self.kernel_init, (*kernel_size, in_channels, self.features), self.param_dtype)
        (top, bottom), (left, right) = _pairs(self.padding, kernel_size, strides, inputs.shape[1:3])
        x = jnp.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)))
        (kh, kw), (sh, sw) = kernel_size, strides
        out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
        patches = jnp.concatenate([x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
                                   for i in range(kh) for j in range(kw)], axis=-1)  # (i, j, channel) order
        y = patches @ kernel.reshape(kh * kw * in_channels, self.features).astype(patches.dtype)
        if self.use_bias:
            y = y + self.param('bias', self.bias_init, (self.features,), self.param_dtype)
        return y


def conv_module(lowering: str) -> type[nn.Conv]:
    """The convolution module of a lowering name ('auto': patches on the CPU backend, XLA's convolution elsewhere)."""
    if lowering not in CONV_LOWERINGS:
        raise ValueError(f'unknown conv_lowering {lowering!r}; valid: {list(CONV_LOWERINGS)}')
    if lowering == 'auto':
        lowering = 'patches' if jax.default_backend() == 'cpu' else 'xla'
    return PatchConv if lowering == 'patches' else nn.Conv
