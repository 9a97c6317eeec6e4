"""NumPy references for the convolutional models' tests, written independently of flax (PyTorch's conventions)."""

import numpy as np


def conv2d(x, kernel, bias, stride=1, padding=0):
    """Cross-correlation as torch.nn.functional.conv2d, in NHWC: x (N, H, W, C), kernel (kh, kw, C, F), zero padding
    of `padding` on every side; output position i reads inputs stride * i - padding, ...."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    kh, kw = kernel.shape[:2]
    out_h, out_w = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    windows = (x[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride] @ np.asarray(kernel[i, j], np.float64)
               for i in range(kh) for j in range(kw))
    return sum(windows) + np.asarray(bias, np.float64)


def max_pool_2x2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def relu(z):
    return np.maximum(z, 0.0)
