"""The MLP: shapes, hidden activations recomputed by hand, Kaiming initialisation statistics."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_jax.models import ACTIVATIONS, KAIMING_GAIN, MLP, kaiming_init, make_model
from tests.conftest import load_config, small_scr


def _jit(model):
    """`model.init` and `model.apply` as compiled programs (one each, not an eager op at a time); `mutable` static."""
    return jax.jit(model.init), jax.jit(model.apply, static_argnames='mutable')


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# Reference activations in numpy, written independently of the library's table.
NUMPY_ACTIVATIONS = {
    'relu': lambda z: np.maximum(z, 0.0),
    'tanh': np.tanh,
    'sigmoid': _sigmoid,
    'elu': lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    'leaky_relu': lambda z: np.where(z > 0, z, 0.01 * z),
    'swish': lambda z: z * _sigmoid(z),
    'identity': lambda z: z,
}


def test_every_activation_has_a_reference_and_a_gain():
    assert set(ACTIVATIONS) == set(NUMPY_ACTIVATIONS) == set(KAIMING_GAIN)
    # torch.nn.init.calculate_gain values.
    assert KAIMING_GAIN['relu'] == pytest.approx(math.sqrt(2.0))
    assert KAIMING_GAIN['tanh'] == pytest.approx(5.0 / 3.0)
    assert KAIMING_GAIN['sigmoid'] == KAIMING_GAIN['identity'] == 1.0


def test_shapes_and_parameter_names_depth_3_width_7():
    model = MLP(width=7, depth=3, num_outputs=2)
    x = jnp.ones((5, 4))
    params = jax.eval_shape(model.init, jax.random.key(0), x)['params']  # shapes, nothing computed
    assert sorted(params) == ['hidden_0', 'hidden_1', 'hidden_2', 'output']
    assert params['hidden_0']['kernel'].shape == (4, 7)
    assert params['hidden_1']['kernel'].shape == (7, 7)
    assert params['hidden_2']['kernel'].shape == (7, 7)
    assert params['output']['kernel'].shape == (7, 2)
    assert all(params[name]['bias'].shape == (params[name]['kernel'].shape[1],) for name in params)
    outputs, hidden = jax.eval_shape(model.apply, {'params': params}, x)
    assert outputs.shape == (5, 2)
    assert isinstance(hidden, tuple) and len(hidden) == 3
    assert all(h.shape == (5, 7) for h in hidden)


def test_image_inputs_are_flattened():
    model = MLP(width=3, depth=1, num_outputs=2)
    init, apply = _jit(model)
    images = np.random.default_rng(1).uniform(size=(4, 2, 3)).astype(np.float32)
    params = init(jax.random.key(0), images)['params']
    assert params['hidden_0']['kernel'].shape == (6, 3)
    np.testing.assert_allclose(apply({'params': params}, images)[0],
                               apply({'params': params}, images.reshape(4, 6))[0], rtol=1e-6)


@pytest.mark.parametrize('activation', sorted(ACTIVATIONS))
def test_forward_pass_matches_a_hand_computation(activation):
    # Eager: the ops are shared by the activations' tests (a compiled init and apply would be two programs each).
    model = MLP(width=7, depth=3, num_outputs=2, activation=activation)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    params = model.init(jax.random.key(3), x)['params']
    # Non-zero biases, so that the test sees them used.
    params = {name: {'kernel': layer['kernel'], 'bias': 0.5 * rng.standard_normal(layer['bias'].shape, np.float32)}
              for name, layer in params.items()}
    outputs, hidden = model.apply({'params': params}, x)

    act = NUMPY_ACTIVATIONS[activation]
    h = np.asarray(x, np.float64)
    for layer in range(3):
        p = params[f'hidden_{layer}']
        h = act(h @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'], np.float64))
        np.testing.assert_allclose(np.asarray(hidden[layer]), h, rtol=1e-4, atol=1e-5)
    want = h @ np.asarray(params['output']['kernel'], np.float64) + np.asarray(params['output']['bias'], np.float64)
    np.testing.assert_allclose(np.asarray(outputs), want, rtol=1e-4, atol=1e-5)  # no activation on the output
    if activation == 'relu':
        assert np.any(np.asarray(hidden[0]) == 0) and np.any(np.asarray(hidden[0]) > 0)


def test_unknown_activation_or_distribution_raises():
    with pytest.raises(ValueError, match='unknown activation'):
        MLP(width=3, depth=1, num_outputs=1, activation='gelu').init(jax.random.key(0), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match='init_distribution'):
        MLP(width=3, depth=1, num_outputs=1, init_distribution='truncated_normal').init(jax.random.key(0),
                                                                                         jnp.ones((1, 2)))
    with pytest.raises(ValueError, match='init_distribution'):
        kaiming_init(1.0, 'orthogonal')


# ----------------------------------------------------------------- Kaiming initialisation

FAN_IN, WIDTH, OUTPUTS = 784, 2000, 10


@pytest.fixture(scope='module', params=[(a, d) for a in ('relu', 'tanh') for d in ('normal', 'uniform')],
                ids=lambda p: f'{p[0]}-{p[1]}')
def wide(request):
    activation, distribution = request.param
    model = MLP(width=WIDTH, depth=1, num_outputs=OUTPUTS, activation=activation, init_distribution=distribution)
    params = jax.jit(model.init)(jax.random.key(5), jnp.zeros((1, FAN_IN)))['params']
    return activation, distribution, jax.tree.map(np.asarray, params)


def test_kaiming_std_of_hidden_and_output_kernels(wide):
    activation, _, params = wide
    gain = KAIMING_GAIN[activation]
    for name, fan_in, layer_gain in (('hidden_0', FAN_IN, gain), ('output', WIDTH, 1.0)):
        kernel = params[name]['kernel']
        want = layer_gain * math.sqrt(1.0 / fan_in)
        assert kernel.std() == pytest.approx(want, rel=0.03), name  # output: 20,000 draws, 0.5% noise
        assert abs(kernel.mean()) < 0.05 * want, name


def test_kaiming_biases_are_zero(wide):
    _, _, params = wide
    for name, layer in params.items():
        np.testing.assert_array_equal(layer['bias'], 0.0, err_msg=name)


def test_kaiming_distribution_shape(wide):
    activation, distribution, params = wide
    for name, fan_in, layer_gain in (('hidden_0', FAN_IN, KAIMING_GAIN[activation]), ('output', WIDTH, 1.0)):
        kernel = params[name]['kernel']
        bound = layer_gain * math.sqrt(3.0 / fan_in)
        std = layer_gain * math.sqrt(1.0 / fan_in)
        if distribution == 'uniform':
            assert np.abs(kernel).max() <= bound * (1 + 1e-6), name
            assert np.abs(kernel).max() > 0.99 * bound, name  # fills the interval
            # Uniform on [-bound, bound]: half the draws within bound / 2 of zero (a normal: 61%).
            assert np.mean(np.abs(kernel) < bound / 2) == pytest.approx(0.5, abs=0.02), name
        else:
            # Untruncated normal: about 4.55% beyond 2 std (a truncated normal at 2 std has none), and some
            # beyond the uniform bound sqrt(3) std (8.3%).
            assert np.mean(np.abs(kernel) > 2 * std) == pytest.approx(0.0455, abs=0.01), name
            assert np.abs(kernel).max() > bound, name


def test_different_seeds_give_different_parameters():
    model = MLP(width=5, depth=1, num_outputs=1)
    init, _ = _jit(model)
    x = np.ones((1, 3), np.float32)
    a, b, a2 = (init(jax.random.key(seed), x)['params'] for seed in (0, 1, 0))
    assert not np.array_equal(a['hidden_0']['kernel'], b['hidden_0']['kernel'])
    np.testing.assert_array_equal(a['hidden_0']['kernel'], a2['hidden_0']['kernel'])


# ----------------------------------------------------------------- make_model and the configs


def test_make_model_from_the_configs():
    config = load_config('slowly_changing_regression.py')
    model = make_model(config.model, num_outputs=1)
    assert (model.width, model.depth, model.activation, model.init_distribution) == (5, 1, 'relu', 'uniform')
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 20)))['params']
    assert params['hidden_0']['kernel'].shape == (20, 5) and params['output']['kernel'].shape == (5, 1)
    assert make_model(load_config('slowly_changing_regression.py', 'tanh').model, 1).activation == 'tanh'

    model = make_model(load_config('permuted_mnist.py').model, num_outputs=10)
    assert (model.width, model.depth, model.activation, model.init_distribution) == (2000, 3, 'relu', 'normal')

    bad = ml_collections.ConfigDict({'name': 'cnn', 'width': 1, 'depth': 1, 'activation': 'relu',
                                     'init_distribution': 'normal'})
    with pytest.raises(ValueError, match='model.name'):
        make_model(bad, 1)


def test_model_fields_of_the_configs_and_their_variants():
    for name in ('slowly_changing_regression.py', 'permuted_mnist.py'):
        model = make_model(load_config(name).model, num_outputs=1)
        assert (model.dropout_rate, model.normalization) == (0.0, 'none')
        model = make_model(load_config(name, 'dropout').model, num_outputs=1)
        assert (model.dropout_rate, model.normalization) == (0.1, 'none')  # dissertation Sec. 4.3, Fig. 4.8
        assert make_model(load_config(name, 'layernorm').model, num_outputs=1).normalization == 'layernorm'
        model = make_model(load_config(name, 'online_norm,dropout').model, num_outputs=1)
        assert (model.normalization, model.online_norm_alpha_f, model.online_norm_alpha_b, model.dropout_rate) == (
            'online_norm', 0.999, 0.99, 0.1)
    # A model section written before these fields existed still builds, with both off.
    old = ml_collections.ConfigDict({'name': 'mlp', 'width': 3, 'depth': 1, 'activation': 'relu',
                                     'init_distribution': 'normal'})
    assert (make_model(old, 1).dropout_rate, make_model(old, 1).normalization) == (0.0, 'none')


def test_unknown_normalization_or_bad_dropout_rate_raises():
    with pytest.raises(ValueError, match='normalization'):
        MLP(width=3, depth=1, num_outputs=1, normalization='batchnorm').init(jax.random.key(0), jnp.ones((1, 2)))
    for rate in (-0.1, 1.0):
        with pytest.raises(ValueError, match='dropout_rate'):
            MLP(width=3, depth=1, num_outputs=1, dropout_rate=rate).init(jax.random.key(0), jnp.ones((1, 2)))


# ----------------------------------------------------------------- dropout


def _identity_readout(model, x):
    """Params with an identity output layer, so that the outputs are what the output layer receives."""
    params = jax.jit(model.init)(jax.random.key(0), x)['params']
    params = {**params, 'output': {'kernel': np.eye(model.width, dtype=np.float32),
                                   'bias': np.zeros(model.width, np.float32)}}
    return {'params': params}


def test_dropout_zeroes_a_fraction_p_in_training_and_scales_the_rest():
    p, width = 0.3, 1000
    model = MLP(width=width, depth=1, num_outputs=width, activation='identity', dropout_rate=p)
    _, apply = _jit(model)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    variables = _identity_readout(model, x)

    received, hidden = apply(variables, x, rngs={'dropout': jax.random.key(2)})
    received, hidden = np.asarray(received), np.asarray(hidden[0])
    assert np.all(hidden != 0)  # identity units: any zero below comes from dropout
    dropped = received == 0
    assert dropped.mean() == pytest.approx(p, abs=0.03)  # 4,000 draws: std 0.007
    np.testing.assert_allclose(received[~dropped], hidden[~dropped] / (1 - p), rtol=1e-5)

    # Another key, another mask; the same key, the same mask.
    other = np.asarray(apply(variables, x, rngs={'dropout': jax.random.key(3)})[0])
    assert np.mean((other == 0) != dropped) > 0.2
    np.testing.assert_array_equal(apply(variables, x, rngs={'dropout': jax.random.key(2)})[0], received)

    # Evaluation (no 'dropout' rng): nothing dropped, nothing scaled; the returned hidden layer is the same
    # (it is the activation before dropout).
    received_eval, hidden_eval = apply(variables, x)
    np.testing.assert_array_equal(received_eval, hidden)
    np.testing.assert_array_equal(hidden_eval[0], hidden)


def test_dropout_acts_on_every_hidden_layer_but_not_on_the_input():
    p, width = 0.5, 400
    model = MLP(width=width, depth=2, num_outputs=width, activation='identity', dropout_rate=p)
    _, apply = _jit(model)
    x = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)
    variables = _identity_readout(model, x)
    received, hidden = apply(variables, x, rngs={'dropout': jax.random.key(4)})
    # Layer 0 sees all 3 inputs: its pre-activations are in the 3-dim span of x, so a (8, width) matrix of rank 3.
    assert np.linalg.matrix_rank(np.asarray(hidden[0]), tol=1e-4) == 3
    assert np.mean(np.asarray(received) == 0) == pytest.approx(p, abs=0.03)  # the last hidden layer's dropout
    # Layer 1 received a dropped-out layer 0: different from its input without dropout.
    assert not np.allclose(hidden[1], apply(variables, x)[1][1], atol=1e-3)


def test_zero_dropout_rate_ignores_the_rng():
    model = MLP(width=5, depth=2, num_outputs=2)
    init, apply = _jit(model)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    variables = init(jax.random.key(0), x)
    np.testing.assert_array_equal(apply(variables, x, rngs={'dropout': jax.random.key(2)})[0], apply(variables, x)[0])


# ----------------------------------------------------------------- normalization in the MLP


def test_layernorm_before_the_activation():
    model = MLP(width=6, depth=2, num_outputs=2, activation='identity', normalization='layernorm')
    init, apply = _jit(model)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    variables = init(jax.random.key(0), x)
    assert set(variables) == {'params'}
    assert sorted(variables['params']) == ['hidden_0', 'hidden_1', 'norm_0', 'norm_1', 'output']
    _, hidden = apply(variables, x)
    for h in hidden:  # scale 1, bias 0 at initialisation: the normalised pre-activations themselves
        np.testing.assert_allclose(np.asarray(h).mean(axis=1), 0.0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(h).var(axis=1), 1.0, rtol=0.01)  # var / (var + eps) < 1

    # With a learned affine transform and tanh, against numpy: tanh(scale * (z - mean) / sqrt(var + 1e-5) + bias).
    params = dict(variables['params'])
    params['norm_0'] = {'scale': np.linspace(0.5, 2.0, 6, dtype=np.float32),
                        'bias': np.linspace(-1.0, 1.0, 6, dtype=np.float32)}
    model = model.clone(activation='tanh')
    _, hidden = _jit(model)[1]({'params': params}, x)
    z = np.asarray(x) @ np.asarray(params['hidden_0']['kernel']) + np.asarray(params['hidden_0']['bias'])
    normed = (z - z.mean(axis=1, keepdims=True)) / np.sqrt(z.var(axis=1, keepdims=True) + 1e-5)
    want = np.tanh(normed * np.asarray(params['norm_0']['scale']) + np.asarray(params['norm_0']['bias']))
    np.testing.assert_allclose(hidden[0], want, rtol=1e-4, atol=1e-5)


def test_online_norm_in_the_mlp_training_and_evaluation_modes():
    model = MLP(width=3, depth=2, num_outputs=1, normalization='online_norm', online_norm_alpha_f=0.9)
    init, apply = _jit(model)
    x = jax.random.normal(jax.random.key(1), (1, 4))
    variables = init(jax.random.key(0), x)
    assert sorted(variables['online_norm']) == ['norm_0', 'norm_1']
    assert sorted(variables['params']) == ['hidden_0', 'hidden_1', 'norm_0', 'norm_1', 'output']

    # Training mode, as the engine applies it: statistics of both layers move, by the decay 0.9, from (0, 1).
    (_, hidden), state = apply(variables, x, rngs={'dropout': jax.random.key(2)}, mutable=('online_norm',))
    kernel, bias = np.asarray(variables['params']['hidden_0']['kernel']), variables['params']['hidden_0']['bias']
    z0 = np.asarray(x) @ kernel + np.asarray(bias)
    np.testing.assert_allclose(hidden[0], np.maximum(z0 / np.sqrt(1 + 1e-5), 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state['online_norm']['norm_0']['mean'], 0.1 * z0[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state['online_norm']['norm_0']['var'], 0.9 + 0.09 * z0[0] ** 2, rtol=1e-5)
    assert not np.allclose(state['online_norm']['norm_1']['mean'], 0)

    # Evaluation mode (no mutable collection): uses the stored statistics, returns no new state.
    updated = {**variables, **state}
    outputs, hidden = apply(updated, x)
    mean, var = (np.asarray(state['online_norm']['norm_0'][k]) for k in ('mean', 'var'))
    np.testing.assert_allclose(hidden[0], np.maximum((z0 - mean) / np.sqrt(var + 1e-5), 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(apply(updated, x)[0], outputs)


# ----------------------------------------------------------------- the variants through the engine


@pytest.mark.parametrize('variant', ['dropout', 'layernorm', 'online_norm'])
def test_model_variants_run_through_the_engine(variant, small_scr_run):
    """`small_scr()` with the variant, its first two tasks one at a time; the plain network's run is the session's
    `small_scr_run` (tests/conftest.py)."""
    from plasticity_jax import engine

    config = small_scr(variant)
    train = engine.make_train(config)
    run_chunk = engine.make_vmapped(train)
    # The initial state eagerly: its small ops are compiled once for all the variants, not a program each.
    initial = jax.vmap(train.init)(engine.seed_keys(config))
    after_one, first = run_chunk(initial, 1)
    after_two, second = run_chunk(after_one, 1)
    for name, values in {**first, **second}.items():
        assert np.all(np.isfinite(np.asarray(values))), name
    assert np.all(np.asarray(second['nonfinite_steps']) == 0)

    # Task 0's probe runs in evaluation mode on the initial network: with dropout, exactly the plain network's.
    if variant == 'dropout':
        plain_first = {name: values[:, :1] for name, values in small_scr_run.metrics.items()}
        for name in ('effective_rank', 'dead_fraction', 'weight_magnitude'):
            np.testing.assert_array_equal(first[name], plain_first[name], err_msg=name)
        assert not np.array_equal(first['online_mse'], plain_first['online_mse'])  # training did drop units

    if variant == 'online_norm':
        states = [jax.tree.map(np.asarray, s.model_state['online_norm']['norm_0'])
                  for s in (initial, after_one, after_two)]
        np.testing.assert_array_equal(states[0]['mean'], 0.0)
        for before, after in zip(states, states[1:]):
            for seed in range(2):  # every seed's statistics move in every task
                assert not np.allclose(before['mean'][seed], after['mean'][seed])
                assert not np.allclose(before['var'][seed], after['var'][seed])
        for stat in ('mean', 'var'):  # each seed has its own statistics
            assert not np.allclose(states[2][stat][0], states[2][stat][1])
    else:
        assert initial.model_state == {} and after_two.model_state == {}
