"""CIFAR-100 augmentation: each transform alone, the random draws, and the whole batch under jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from plasticity_jax.problems import augment as aug

INTERPOLATIONS = ['nearest', 'bilinear']
# One compiled program per shape and interpolation, shared by the tests (no eager op at a time).
ROTATE = jax.jit(aug.rotate, static_argnums=2)
AUGMENT = jax.jit(aug.augment, static_argnames='interpolation')


def _images(batch=None, size=32, seed=0):
    shape = (size, size, 3) if batch is None else (batch, size, size, 3)
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_normalize_uses_the_papers_constants():
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    got = aug.normalize(images)
    want = (images / 255.0 - np.array([0.5071, 0.4865, 0.4409])) / np.array([0.2673, 0.2564, 0.2762])
    assert got.dtype == jnp.float32 and got.shape == images.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(aug.normalize(images, mean=(0.0,) * 3, std=(1.0,) * 3), images / 255.0, rtol=1e-6)


@pytest.mark.parametrize('flip', [False, True])
def test_hflip_reverses_width_only_when_asked(flip):
    image = _images()
    got = jax.jit(aug.hflip)(image, jnp.asarray(flip))
    np.testing.assert_array_equal(got, image[:, ::-1] if flip else image)


def test_pad_crop_is_a_window_of_the_reflect_padded_image():
    image = _images()
    padded = np.pad(np.asarray(image), ((4, 4), (4, 4), (0, 0)), mode='reflect')
    crop = jax.jit(aug.pad_crop)
    for top in range(9):
        for left in range(9):
            np.testing.assert_array_equal(crop(image, top, left), padded[top:top + 32, left:left + 32])
    np.testing.assert_array_equal(crop(image, 4, 4), image)  # the centre window is the image itself
    shifted = crop(image, 0, 0)  # shifted down and right by 4, the borders mirrored without repeating the edge
    np.testing.assert_array_equal(shifted[4:, 4:], image[:28, :28])
    np.testing.assert_array_equal(shifted[:4, 4:], image[4:0:-1, :28])
    np.testing.assert_array_equal(shifted[4:, :4], image[:28, 4:0:-1])


@pytest.mark.parametrize('interpolation', INTERPOLATIONS)
def test_rotation_by_zero_is_identity_and_by_90_is_rot90(interpolation):
    image = _images()
    np.testing.assert_allclose(ROTATE(image, 0.0, interpolation), image, atol=1e-5)
    # np.rot90 turns counter-clockwise as displayed (row 0 on top), as torchvision's positive angles do
    np.testing.assert_allclose(ROTATE(image, 90.0, interpolation), np.rot90(image), atol=1e-4)
    np.testing.assert_allclose(ROTATE(image, 180.0, interpolation), image[::-1, ::-1], atol=1e-4)


def test_rotation_turns_a_point_right_of_the_centre_to_above_it():
    image = np.zeros((33, 33, 1), np.float32)  # odd size: the centre (16, 16) is a pixel
    image[16, 26, 0] = 1.0
    rotated = np.asarray(ROTATE(image, 90.0, 'nearest'))  # nearest, rotate's default
    assert rotated[6, 16, 0] == 1.0 and rotated.sum() == 1.0


@pytest.mark.parametrize('interpolation, order', [('nearest', 0), ('bilinear', 1)])
def test_rotation_matches_scipy_at_15_degrees(interpolation, order):
    image = _images()
    want = scipy.ndimage.rotate(np.asarray(image), 15.0, reshape=False, order=order, mode='grid-constant', cval=0.0)
    np.testing.assert_allclose(ROTATE(image, 15.0, interpolation), want, atol=1e-5)


def test_rotation_fills_corners_with_zero():
    rotated = np.asarray(ROTATE(np.ones((32, 32, 3), np.float32), 15.0, 'nearest'))  # nearest, rotate's default
    assert np.all(rotated[0, 0] == 0) and np.all(rotated[-1, -1] == 0) and np.all(rotated[8:24, 8:24] == 1)
    assert set(np.unique(rotated)) == {0.0, 1.0}  # nearest neighbour: no blending with the fill


def test_sample_params_follow_the_papers_distributions():
    params = jax.jit(jax.vmap(aug.sample_params))(jax.random.split(jax.random.key(0), 4000))
    assert abs(float(params.flip.mean()) - 0.5) < 0.05
    assert set(np.unique(params.top)) == set(np.unique(params.left)) == set(range(9))
    degrees = np.asarray(params.degrees)
    assert degrees.min() >= 0.0 and degrees.max() <= 15.0 and degrees.min() < 0.1 and degrees.max() > 14.9
    assert abs(degrees.mean() - 7.5) < 0.3


@pytest.mark.parametrize('interpolation', INTERPOLATIONS)
def test_augment_is_flip_then_crop_then_rotate_with_one_draw_per_example(interpolation):
    images, key = _images(batch=4), jax.random.key(1)
    got = AUGMENT(key, images, interpolation=interpolation)
    assert got.shape == images.shape and got.dtype == jnp.float32

    @jax.jit
    def by_hand(k, image):
        p = aug.sample_params(k)
        return aug.rotate(aug.pad_crop(aug.hflip(image, p.flip), p.top, p.left), p.degrees, interpolation)

    for k, image, out in zip(jax.random.split(key, 4), images, got):
        np.testing.assert_allclose(out, by_hand(k, image), atol=1e-5)


def test_augment_keys_and_examples_get_their_own_draws():
    images = jnp.broadcast_to(_images(), (8, 32, 32, 3))  # eight copies of one image
    first = AUGMENT(jax.random.key(0), images)
    np.testing.assert_array_equal(AUGMENT(jax.random.key(0), images), first)
    assert not np.allclose(AUGMENT(jax.random.key(1), images), first)
    assert len({np.asarray(x).tobytes() for x in first}) == 8


def test_augment_vmaps_over_runs():
    images = _images(batch=4)  # the shape of test_augment_is_flip_then_crop_..., whose program is reused
    keys = jax.random.split(jax.random.key(2), 5)
    batched = jax.jit(jax.vmap(AUGMENT, in_axes=(0, None)))(keys, images)
    assert batched.shape == (5, 4, 32, 32, 3)
    for k, out in zip(keys, batched):
        np.testing.assert_allclose(out, AUGMENT(k, images, interpolation='nearest'), atol=1e-6)  # the default


def test_augment_refuses_unknown_interpolation():
    with pytest.raises(ValueError, match="'nearest', 'bilinear'"):
        aug.augment(jax.random.key(0), _images(batch=1), interpolation='bicubic')
