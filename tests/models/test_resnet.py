"""The modified ResNet-18: shapes, parameter count, blocks against NumPy, the paper's initialisation, batch norm in
training and evaluation mode and inside vmapped seeds."""

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.models import ResNet18
from tests.models.numpy_reference import conv2d, relu

WIDTH, OUTPUTS = 16, 100  # wide enough for initialisation statistics, small enough to be fast
MODEL = ResNet18(num_outputs=OUTPUTS, base_width=WIDTH)
BLOCKS = [f'stage_{s}_block_{b}' for s in range(4) for b in range(2)]


@pytest.fixture(scope='module')
def variables():
    """The parameters do not depend on the image size: initialised on small images, applied to any."""
    return jax.jit(MODEL.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


def _train_step_forward(variables, x):
    """Training mode as the engine applies it: every non-'params' collection mutable."""
    model_state = {name: value for name, value in variables.items() if name != 'params'}
    return MODEL.apply(variables, x, rngs={'dropout': jax.random.key(9)}, mutable=list(model_state))


_train = jax.jit(_train_step_forward)
_evaluate = jax.jit(MODEL.apply)  # no mutable collection


def _images(seed, shape=(6, 16, 16, 3)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_shapes_and_parameter_names(variables):
    params = variables['params']
    assert sorted(params) == sorted(['stem_conv', 'stem_norm', 'output', *BLOCKS])
    assert sorted(variables) == ['batch_stats', 'params']
    for stage in range(4):
        channels = WIDTH * 2**stage
        first, second = params[f'stage_{stage}_block_0'], params[f'stage_{stage}_block_1']
        assert first['conv_1']['kernel'].shape == (3, 3, channels, channels)
        assert sorted(second) == ['conv_0', 'conv_1', 'norm_0', 'norm_1']
        if stage == 0:
            assert 'shortcut_conv' not in first
        else:  # a 1x1 projection from the previous stage's channels
            assert first['shortcut_conv']['kernel'].shape == (1, 1, channels // 2, channels)
            assert first['shortcut_norm']['scale'].shape == (channels,)
    # The running statistics mirror every batch norm.
    norms = {path[:-1] for path in flax.traverse_util.flatten_dict(params) if 'norm' in path[-2]}
    assert {path[:-1] for path in flax.traverse_util.flatten_dict(variables['batch_stats'])} == norms
    assert len(norms) == 1 + 8 * 2 + 3

    outputs, hidden = jax.eval_shape(MODEL.apply, variables, jnp.zeros((5, 32, 32, 3)))  # the shapes, not run
    assert outputs.shape == (5, OUTPUTS)
    assert isinstance(hidden, tuple)
    stages = [(5, 32, 32, 16), (5, 16, 16, 32), (5, 8, 8, 64), (5, 4, 4, 128)]
    assert [h.shape for h in hidden] == stages + [shape for shape in stages for _ in range(2)]  # + blocks' inner


def test_parameter_count_at_full_width():
    shapes = jax.eval_shape(ResNet18(num_outputs=100).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    # torchvision's ResNet-18 with a 3x3 stem and 100 classes has 11,220,132 parameters; the paper's convolutions
    # add a bias each: 64 (stem) + 4 * 64 + (4 * 128 + 128) + (4 * 256 + 256) + (4 * 512 + 512) = 4,800.
    assert sum(leaf.size for leaf in jax.tree.leaves(shapes['params'])) == 11_220_132 + 4_800
    # Running mean and variance of every batch-norm channel: 2 * (64 + 4*64 + 5*128 + 5*256 + 5*512).
    assert sum(leaf.size for leaf in jax.tree.leaves(shapes['batch_stats'])) == 2 * 4_800


def test_initialisation_of_the_papers_code(variables):
    params = jax.tree.map(np.asarray, variables['params'])
    # Kaiming normal with fan_in (window included): a 3x3 128 -> 128 kernel has 147,456 draws of N(0, 2 / 1152).
    kernel = params['stage_3_block_1']['conv_1']['kernel']
    std = math.sqrt(2.0 / (3 * 3 * 128))
    assert kernel.std() == pytest.approx(std, rel=0.01)
    assert np.mean(np.abs(kernel) > 2 * std) == pytest.approx(0.0455, abs=0.003)  # untruncated normal
    # A 1x1 shortcut has fan_in 16 (fan_out would be 32): std 0.354, not 0.25; 512 draws, 3% noise.
    assert params['stage_1_block_0']['shortcut_conv']['kernel'].std() == pytest.approx(math.sqrt(2 / 16), rel=0.15)
    # The head: N(0, 1 / fan_in), 12,800 draws.
    assert params['output']['kernel'].std() == pytest.approx(1 / math.sqrt(128), rel=0.03)
    for path, leaf in flax.traverse_util.flatten_dict(params).items():
        if path[-1] == 'bias':  # convolutions, batch norms and head
            np.testing.assert_array_equal(leaf, 0.0, err_msg=str(path))
        if path[-1] == 'scale':
            np.testing.assert_array_equal(leaf, 1.0, err_msg=str(path))


def _numpy_batch_norm(z, norm):
    """Training mode: the batch's statistics over examples and positions (biased variance, epsilon 1e-5)."""
    return (z - z.mean((0, 1, 2))) / np.sqrt(z.var((0, 1, 2)) + 1e-5) * norm['scale'] + norm['bias']


def _numpy_block(x, p, stride):
    residual = relu(_numpy_batch_norm(conv2d(x, p['conv_0']['kernel'], p['conv_0']['bias'], stride, 1), p['norm_0']))
    residual = _numpy_batch_norm(conv2d(residual, p['conv_1']['kernel'], p['conv_1']['bias'], 1, 1), p['norm_1'])
    shortcut = x
    if 'shortcut_conv' in p:
        shortcut = _numpy_batch_norm(conv2d(x, p['shortcut_conv']['kernel'], p['shortcut_conv']['bias'], stride),
                                     p['shortcut_norm'])
    return relu(residual + shortcut)


def test_training_mode_against_numpy(variables):
    x = _images(1)
    # Move every parameter off its initial value, so that conv biases and batch-norm scales and biases matter.
    rng = np.random.default_rng(2)
    params = jax.tree.map(lambda p: (p + 0.3 * rng.standard_normal(p.shape)).astype(np.float32),
                          jax.device_get(variables['params']))
    (outputs, hidden), state = _train({**variables, 'params': params}, x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(x, np.float64)

    stem = conv2d(x, p['stem_conv']['kernel'], p['stem_conv']['bias'], 1, 1)
    h = relu(_numpy_batch_norm(stem, p['stem_norm']))
    want = []
    for stage in range(4):
        for block in range(2):
            h = _numpy_block(h, p[f'stage_{stage}_block_{block}'], 2 if stage > 0 and block == 0 else 1)
        want.append(h)
    for got, expected in zip(hidden, want):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(outputs, want[-1].mean((1, 2)) @ p['output']['kernel'] + p['output']['bias'],
                               rtol=1e-3, atol=1e-4)

    # Running averages from mean 0, var 1 with momentum 0.9: the stem's, and a stride-2 shortcut's, which
    # samples the even positions 0, 2, 4, ... of stage 0's output (as PyTorch's 1x1 stride-2 convolution).
    shortcut = conv2d(want[0][:, ::2, ::2], p['stage_1_block_0']['shortcut_conv']['kernel'],
                      p['stage_1_block_0']['shortcut_conv']['bias'])
    for z, stats in ((stem, state['batch_stats']['stem_norm']),
                     (shortcut, state['batch_stats']['stage_1_block_0']['shortcut_norm'])):
        np.testing.assert_allclose(stats['mean'], 0.1 * z.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * z.var((0, 1, 2)), rtol=1e-4)


def test_training_mode_updates_every_running_average_and_evaluation_mode_none(variables):
    _, state = _train(variables, _images(1))
    assert sorted(state) == ['batch_stats']
    before = flax.traverse_util.flatten_dict(variables['batch_stats'])
    after = flax.traverse_util.flatten_dict(state['batch_stats'])
    for path in before:
        assert not np.allclose(before[path], after[path]), path
    # Evaluation mode: no mutable collection; updating an immutable collection would raise.
    outputs, hidden = _evaluate(variables, _images(1))
    assert outputs.shape == (6, OUTPUTS) and len(hidden) == 12


def test_evaluation_mode_uses_the_running_averages(variables):
    x = _images(1)
    (train_outputs, _), state = _train(variables, x)

    # Fresh statistics (mean 0, var 1) and zero biases: every batch norm multiplies by 1 / sqrt(1 + 1e-5), so the
    # evaluation network is positively homogeneous, f(2x) = 2 f(x); training normalises, f(2x) = f(x).
    eval_outputs = _evaluate(variables, x)[0]
    np.testing.assert_allclose(_evaluate(variables, 2 * x)[0], 2 * eval_outputs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_train(variables, 2 * x)[0][0], train_outputs, rtol=1e-3, atol=1e-4)
    assert not np.allclose(eval_outputs, train_outputs, rtol=0.1)

    # Each example is scored alone in evaluation; in training it is normalised with the rest of its batch (a batch
    # of the same size, so that no other program is compiled, with the first example kept and the others new).
    other_batch = np.concatenate([x[:1], _images(7)[1:]])
    np.testing.assert_allclose(_evaluate(variables, other_batch)[0][:1], eval_outputs[:1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(_train(variables, other_batch)[0][0][:1], train_outputs[:1], rtol=1e-2)

    # Running averages equal to this batch's statistics make evaluation reproduce training on the batch. One
    # training step from (0, 1) stored 0.1 * mean and 0.9 + 0.1 * var: invert it.
    batch_statistics = jax.tree_util.tree_map_with_path(
        lambda path, v: v / 0.1 if path[-1].key == 'mean' else (v - 0.9) / 0.1,
        jax.device_get(state['batch_stats']))
    np.testing.assert_allclose(_evaluate({**variables, 'batch_stats': batch_statistics}, x)[0], train_outputs,
                               rtol=1e-3, atol=1e-4)


def test_batch_norm_inside_vmapped_seeds_keeps_each_seeds_statistics(variables):
    # Two seeds with the same network and different inputs: any difference in their statistics comes from the data.
    seeds = jax.tree.map(lambda a: np.stack([a, a]), variables)
    x = np.stack([_images(4), 3.0 * _images(5) + 1.0])  # (seed, batch, 16, 16, 3)
    train_seeds = jax.jit(jax.vmap(_train_step_forward))
    (outputs, _), state = jax.device_get(train_seeds(seeds, x))
    stats = [flax.traverse_util.flatten_dict(jax.tree.map(lambda a, s=seed: a[s], state['batch_stats']))
             for seed in range(2)]
    for seed in range(2):  # each seed's statistics are those of running it alone
        (outputs_alone, _), state_alone = _train(variables, x[seed])
        for path, value in flax.traverse_util.flatten_dict(state_alone['batch_stats']).items():
            np.testing.assert_allclose(stats[seed][path], value, rtol=1e-5, atol=1e-6, err_msg=str(path))
        np.testing.assert_allclose(outputs[seed], outputs_alone, rtol=1e-4, atol=1e-5)
    for path in stats[0]:
        assert not np.allclose(stats[0][path], stats[1][path]), path

    # Seed 0's statistics do not depend on seed 1's inputs.
    other = jax.device_get(train_seeds(seeds, x * np.array([1.0, -2.0], np.float32)[:, None, None, None, None]))[1]
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(other)):
        np.testing.assert_array_equal(a[0], b[0])
        assert not np.allclose(a[1], b[1])
