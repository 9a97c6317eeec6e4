"""On-device data augmentation for CIFAR-100, as in Dohare et al.'s class-incremental CIFAR-100 experiment
("Loss of plasticity in deep continual learning", Nature 2024).

Facts from the paper's public code: `IncrementalCIFARExperiment.get_data` in
`lop/incremental_cifar/incremental_cifar_experiment.py` of github.com/shibhansh/loss-of-plasticity, whose transforms
are thin wrappers of torchvision's in mlproj_manager (github.com/JFernando4/Research_Project_Manager,
`util/data_preprocessing_and_transformations`). Each training image goes through, in this order:

1. `CifarDataSet(image_normalization='max')`: pixels / 255; then `Normalize` per channel, (x - mean) / std with
   mean (0.5071, 0.4865, 0.4409) and std (0.2673, 0.2564, 0.2762): `normalize` here.
2. `RandomHorizontalFlip(p=0.5)`: `hflip`.
3. `RandomCrop(size=32, padding=4, padding_mode='reflect')`: each side padded by 4 pixels mirrored about the edge
   pixel (numpy's and torchvision's 'reflect': the edge is not repeated), then the 32x32 window whose top-left
   corner is uniform in {0, ..., 8}^2: `pad_crop`.
4. `RandomRotator(degrees=(0, 15))`, i.e. torchvision's `RandomRotation((0, 15))` with its defaults: an angle
   uniform in [0, 15] degrees, counter-clockwise as displayed (row 0 on top), about the image centre
   ((H - 1) / 2, (W - 1) / 2 in pixel indices), same output size, NEAREST-neighbour interpolation, fill 0:
   `rotate`. `augment` uses nearest by default for that reason; `interpolation='bilinear'` gives bilinear.

Steps 2-4 act on normalised images, so the rotation's fill 0 is the mean colour, not black; `augment` likewise
expects the output of `normalize`. The paper's code augments the test set too (`get_data(train=False)` appends the
same transforms; only its validation set is left unaugmented); whether to do so is the problem's choice.

Every function is pure jax, jittable and vmappable; `augment` draws its own flip, crop and angle for each example.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.ndimage import map_coordinates

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
FLIP_PROBABILITY = 0.5
PADDING = 4
MAX_DEGREES = 15.0
INTERPOLATIONS = {'nearest': 0, 'bilinear': 1}  # map_coordinates' spline order


class AugmentParams(NamedTuple):
    """One example's random draw: flip or not, the crop's top-left corner in the padded image, the angle."""

    flip: jax.Array
    top: jax.Array
    left: jax.Array
    degrees: jax.Array


def normalize(images, mean=CIFAR100_MEAN, std=CIFAR100_STD) -> jax.Array:
    """uint8 images (..., C) in [0, 255] -> float32 (images / 255 - mean) / std, per channel."""
    scaled = jnp.asarray(images, jnp.float32) / 255.0
    return (scaled - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def sample_params(key: jax.Array) -> AugmentParams:
    """Draws one example's flip (p = 0.5), crop corner (uniform in {0..8}^2) and angle (uniform in [0, 15])."""
    flip_key, crop_key, angle_key = jax.random.split(key, 3)
    top, left = jax.random.randint(crop_key, (2,), 0, 2 * PADDING + 1)
    return AugmentParams(flip=jax.random.bernoulli(flip_key, FLIP_PROBABILITY), top=top, left=left,
                         degrees=jax.random.uniform(angle_key, (), minval=0.0, maxval=MAX_DEGREES))


def hflip(image: jax.Array, flip: jax.Array) -> jax.Array:
    """The image (H, W, C) with its width reversed where ``flip`` is true."""
    return jnp.where(flip, image[:, ::-1], image)


def pad_crop(image: jax.Array, top: jax.Array, left: jax.Array) -> jax.Array:
    """The (H, W) window at (top, left) of the image (H, W, C) reflect-padded by ``PADDING`` on each side."""
    padded = jnp.pad(image, ((PADDING, PADDING), (PADDING, PADDING), (0, 0)), mode='reflect')
    return lax.dynamic_slice(padded, (top, left, 0), image.shape)


def rotate(image: jax.Array, degrees: jax.Array, interpolation: str = 'nearest') -> jax.Array:
    """The image (H, W, C) rotated counter-clockwise (as displayed) by ``degrees`` about its centre, same size,
    points from outside the image filled with 0.

    Output pixel (row, col), at offset (y, x) from the centre, takes the input at offset
    (y', x') = (sin t * x + cos t * y, cos t * x - sin t * y): the inverse rotation in image coordinates.
    """
    height, width = image.shape[:2]
    t = jnp.deg2rad(degrees)
    y, x = jnp.meshgrid(jnp.arange(height) - (height - 1) / 2, jnp.arange(width) - (width - 1) / 2, indexing='ij')
    rows = jnp.sin(t) * x + jnp.cos(t) * y + (height - 1) / 2
    cols = jnp.cos(t) * x - jnp.sin(t) * y + (width - 1) / 2
    sample = functools.partial(map_coordinates, coordinates=[rows, cols], order=INTERPOLATIONS[interpolation],
                               mode='constant', cval=0.0)
    return jax.vmap(sample, in_axes=2, out_axes=2)(image)


def augment(key: jax.Array, images: jax.Array, *, interpolation: str = 'nearest') -> jax.Array:
    """Flip, pad-crop and rotate each image of a batch (B, H, W, C) of normalised float32 images, with one
    independent draw (`sample_params`) per example from ``key``."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f'interpolation must be one of {tuple(INTERPOLATIONS)}, got {interpolation!r}')

    def one(example_key, image):
        p = sample_params(example_key)
        return rotate(pad_crop(hflip(image, p.flip), p.top, p.left), p.degrees, interpolation)

    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)
