"""Slowly-Changing Regression: the target network against the paper's equations, task switches, batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.problems import Problem, SlowlyChangingRegression, make_problem
from tests.conftest import load_config

M, F, N, BETA = 20, 15, 100, 0.7

# The problem's functions as compiled programs, the problem (a frozen dataclass) static: tests with equal problems
# share one program each, and no test pays for eager ops one small program at a time.
init, start_task, target, batch, probe = (jax.jit(f, static_argnums=0) for f in (
    SlowlyChangingRegression.init, SlowlyChangingRegression.start_task, SlowlyChangingRegression.target,
    SlowlyChangingRegression.batch, SlowlyChangingRegression.probe))


def _problem(flip_mode='flip_one', batch_size=1, probe_size=50, **kwargs):
    return SlowlyChangingRegression(kind='regression', input_shape=(M,), num_outputs=1, examples_per_task=10_000,
                                    batch_size=batch_size, probe_size=probe_size, num_flipping_bits=F,
                                    num_target_units=N, beta=BETA, flip_mode=flip_mode, **kwargs)


def _np(state):
    return {k: np.asarray(v) for k, v in state.items()}


def _hand_target(state, x):
    """The paper's target, with explicit loops: unit i fires iff sum_j w_ji [x, 1]_j > (m+1) beta - S_i."""
    w = np.asarray(state['target_weights'])
    v = np.asarray(state['target_output_weights'])
    m = w.shape[0] - 1
    out = np.zeros((x.shape[0], 1))
    for b, row in enumerate(np.asarray(x)):
        inputs = list(row) + [1.0]
        for i in range(w.shape[1]):
            s_i = sum(1 for j in range(m + 1) if w[j, i] == -1)
            drive = sum(w[j, i] * inputs[j] for j in range(m + 1))
            if drive > (m + 1) * BETA - s_i:
                out[b, 0] += v[i]
    return out


def _agreement_target(state, x):
    """Same target, the paper's reading: a unit fires iff more than beta (m+1) of its inputs agree with its
    weights (input 1 where the weight is +1, input 0 where it is -1)."""
    w = np.asarray(state['target_weights'])
    v = np.asarray(state['target_output_weights'])
    inputs = np.concatenate([np.asarray(x), np.ones((x.shape[0], 1))], axis=1)
    agree = ((inputs[:, :, None] == 1) & (w[None] == 1)) | ((inputs[:, :, None] == 0) & (w[None] == -1))
    fires = agree.sum(axis=1) > BETA * w.shape[0]
    return (fires * v).sum(axis=1, keepdims=True)


# ----------------------------------------------------------------- the target network


def test_init_shapes_and_weights_are_plus_minus_one():
    state = _np(init(_problem(), {}, jax.random.key(0)))
    assert state['target_weights'].shape == (M + 1, N)
    assert state['target_output_weights'].shape == (N,)
    assert state['flipping_bits'].shape == (F,)
    assert set(np.unique(state['target_weights'])) == {-1.0, 1.0}
    assert set(np.unique(state['target_output_weights'])) == {-1.0, 1.0}
    assert set(np.unique(state['flipping_bits'])) <= {0.0, 1.0}
    # Equal probability of +1 and -1 (2100 weights: 4.6 standard deviations of tolerance).
    assert abs(np.mean(state['target_weights'] == 1) - 0.5) < 0.05


def test_thresholds_are_m_plus_one_beta_minus_negative_count_including_bias_row():
    state = _np(init(_problem(), {}, jax.random.key(1)))
    w = state['target_weights']
    for i in range(N):
        s_i = int(np.sum(w[:, i] == -1))  # all 21 rows, the bias row included
        assert state['target_thresholds'][i] == pytest.approx((M + 1) * BETA - s_i, abs=1e-5)
    # The bias row matters: some unit has a -1 bias weight, so excluding it would change that threshold.
    assert np.any(w[M] == -1)


def test_target_matches_hand_computation_on_random_inputs():
    problem = _problem()
    state = init(problem, {}, jax.random.key(2))
    x = np.random.default_rng(3).integers(0, 2, (40, M)).astype(np.float32)
    y = np.asarray(target(problem, state, x))
    assert y.shape == (40, 1)
    np.testing.assert_allclose(y, _hand_target(state, x), atol=1e-5)
    np.testing.assert_allclose(y, _agreement_target(state, x), atol=1e-5)
    assert np.any(y != 0)  # some units fired, so the comparison is not vacuous


def test_target_fires_on_agreeing_input_and_not_on_its_complement():
    problem = _problem()
    state = init(problem, {}, jax.random.key(4))
    w = np.asarray(state['target_weights'])
    v = np.asarray(state['target_output_weights'])
    unit = 7
    agreeing = (w[:M, unit] == 1).astype(np.float32)[None]  # >= 20 of 21 inputs agree: fires
    complement = 1.0 - agreeing  # <= 1 of 21 agrees: silent
    # Each target is the sum over the units that fire; unit 7 must be among them for `agreeing` only.
    with_bias = np.concatenate([agreeing, [[1.0]]], axis=1)
    assert (with_bias @ w)[0, unit] > np.asarray(state['target_thresholds'])[unit]
    np.testing.assert_allclose(target(problem, state, agreeing), _hand_target(state, agreeing), atol=1e-5)
    np.testing.assert_allclose(target(problem, state, complement), _hand_target(state, complement), atol=1e-5)
    # Remove unit 7's output weight: the agreeing input's target changes by exactly v_7.
    zeroed = {**state, 'target_output_weights': np.where(np.arange(N) == unit, 0.0, v).astype(np.float32)}
    diff = np.asarray(target(problem, state, agreeing)) - np.asarray(target(problem, zeroed, agreeing))
    assert float(diff[0, 0]) == v[unit]
    diff = np.asarray(target(problem, state, complement)) - np.asarray(target(problem, zeroed, complement))
    assert float(diff[0, 0]) == 0.0


def test_target_on_a_hand_built_two_bit_network():
    # Rows x0, x1, bias; unit 0 weights (+1, -1, +1): S = 1, threshold 3 * 0.7 - 1 = 1.1.
    # Unit 1 weights (-1, -1, -1): S = 3, threshold -0.9, fires only when the drive -x0 - x1 - 1 > -0.9: never.
    # Unit 2 weights (+1, +1, -1): S = 1, threshold 1.1, fires on drive x0 + x1 - 1 > 1.1: never (max 1).
    problem = SlowlyChangingRegression(kind='regression', input_shape=(2,), num_outputs=1, examples_per_task=10,
                                       batch_size=1, probe_size=1, num_flipping_bits=1, num_target_units=3,
                                       beta=BETA)
    w = np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0], [1.0, -1.0, -1.0]], np.float32)
    state = {'target_weights': w, 'target_thresholds': (3 * BETA - np.sum(w < 0, axis=0)).astype(np.float32),
             'target_output_weights': np.array([-1.0, 1.0, 1.0], np.float32), 'flipping_bits': np.zeros(1, np.float32)}
    np.testing.assert_allclose(state['target_thresholds'], [1.1, -0.9, 1.1], atol=1e-6)
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], np.float32)
    # Unit 0's drive: x0 - x1 + 1 = 1, 0, 2, 1 -> fires only on (1, 0), contributing its output weight -1.
    np.testing.assert_allclose(target(problem, state, x), [[0.0], [0.0], [-1.0], [0.0]])


def test_same_key_same_network_different_keys_different_networks():
    problem = _problem()
    a, a2, b = (_np(init(problem, {}, jax.random.key(k))) for k in (5, 5, 6))
    for name in a:
        np.testing.assert_array_equal(a[name], a2[name])
    assert not np.array_equal(a['target_weights'], b['target_weights'])
    assert not np.array_equal(a['target_output_weights'], b['target_output_weights'])


# ----------------------------------------------------------------- task switches


def _bits_over_tasks(problem, num_tasks, key=None):
    """Flipping bits of tasks 0..num_tasks-1 (as the engine calls start_task), plus the initial bits."""
    init_key, tasks_key = jax.random.split(jax.random.key(7) if key is None else key)
    state = init(problem, {}, init_key)

    def step(state, task_index):
        state = problem.start_task({}, state, task_index, jax.random.fold_in(tasks_key, task_index))
        return state, state['flipping_bits']

    _, bits = jax.jit(lambda s: jax.lax.scan(step, s, jnp.arange(num_tasks)))(state)
    return np.asarray(state['flipping_bits']), np.asarray(bits)


@pytest.fixture(scope='module')
def flip_one_bits():
    """`_bits_over_tasks` of 300 flip_one tasks, computed once for the tests that read it."""
    return _bits_over_tasks(_problem('flip_one'), 300)


@pytest.fixture(scope='module')
def redraw_all_bits():
    """`_bits_over_tasks` of 200 redraw_all tasks, computed once for the tests that read it."""
    return _bits_over_tasks(_problem('redraw_all'), 200)


def test_task_zero_keeps_the_initial_bits_in_both_modes(flip_one_bits, redraw_all_bits):
    for initial, bits in (flip_one_bits, redraw_all_bits):
        np.testing.assert_array_equal(bits[0], initial)
        assert not np.array_equal(bits[1], bits[0])  # task 1 does switch (redraw_all: 2**-15 chance of equal)


def test_flip_one_changes_exactly_one_bit_per_switch(flip_one_bits):
    initial, bits = flip_one_bits
    changes = np.abs(np.diff(bits, axis=0))
    np.testing.assert_array_equal(changes.sum(axis=1), np.ones(299))
    # The flipped bit is chosen uniformly: over 299 switches every one of the 15 bits gets flipped.
    assert set(np.argmax(changes, axis=1)) == set(range(F))
    assert set(np.unique(bits)) <= {0.0, 1.0}


def test_flip_one_start_task_ignores_bits_only_at_task_zero():
    problem = _problem('flip_one')
    state = init(problem, {}, jax.random.key(8))
    key = jax.random.key(9)
    same = start_task(problem, {}, state, jnp.int32(0), key)
    flipped = start_task(problem, {}, state, jnp.int32(5), key)
    np.testing.assert_array_equal(same['flipping_bits'], state['flipping_bits'])
    assert int(np.sum(np.abs(np.asarray(flipped['flipping_bits']) - np.asarray(state['flipping_bits'])))) == 1
    # The target network is never touched by a task switch.
    for name in ('target_weights', 'target_thresholds', 'target_output_weights'):
        np.testing.assert_array_equal(flipped[name], state[name])


def test_redraw_all_redraws_the_bits(redraw_all_bits):
    initial, bits = redraw_all_bits
    changed = np.abs(np.diff(bits, axis=0)).sum(axis=1)
    assert np.max(changed) > 1  # not a single flip
    assert np.mean(changed > 1) > 0.9  # redrawing 15 bits changes more than one almost always
    # Independent uniform redraws: on average half the bits change, half are ones.
    assert abs(np.mean(changed) - F / 2) < 1.0
    assert abs(np.mean(bits) - 0.5) < 0.05
    assert set(np.unique(bits)) <= {0.0, 1.0}


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match='flip_mode'):
        _problem('flip_two')
    with pytest.raises(ValueError, match='num_flipping_bits'):
        SlowlyChangingRegression(kind='regression', input_shape=(M,), num_outputs=1, examples_per_task=10, batch_size=1,
                                 probe_size=1, num_flipping_bits=M + 1)
    with pytest.raises(ValueError, match='num_flipping_bits'):
        SlowlyChangingRegression(kind='regression', input_shape=(M,), num_outputs=1, examples_per_task=10, batch_size=1,
                                 probe_size=1, num_flipping_bits=0)


# ----------------------------------------------------------------- batches and probes


def test_batch_inputs_hold_the_task_bits_and_random_bits_and_y_is_the_target():
    problem = _problem(batch_size=1000)
    state = start_task(problem, {}, init(problem, {}, jax.random.key(10)), jnp.int32(3), jax.random.key(11))
    x, y = batch(problem, {}, state, jnp.int32(0), jax.random.key(12))
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == (1000, M) and y.shape == (1000, 1)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :F], np.broadcast_to(np.asarray(state['flipping_bits']), (1000, F)))
    random_bits = x[:, F:]
    assert set(np.unique(random_bits)) == {0.0, 1.0}
    assert abs(random_bits.mean() - 0.5) < 0.03  # 5000 fair bits: std 0.007
    # All 32 patterns of the 5 random bits appear among 1000 examples.
    assert len({tuple(row) for row in random_bits}) == 2 ** (M - F)
    np.testing.assert_allclose(y, np.asarray(target(problem, state, jnp.asarray(x))), atol=1e-6)
    np.testing.assert_allclose(y[:30], _hand_target(state, x[:30]), atol=1e-5)


def test_batch_size_one_random_bits_vary_across_step_keys():
    problem = _problem(batch_size=1)
    state = init(problem, {}, jax.random.key(13))
    steps = np.arange(400, dtype=np.int32)
    keys = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(None, 0)))(jax.random.key(14), steps)  # as the engine does
    x, y = jax.jit(jax.vmap(lambda s, k: problem.batch({}, state, s, k)))(steps, keys)
    x, y = np.asarray(x)[:, 0], np.asarray(y)[:, 0]
    np.testing.assert_array_equal(x[:, :F], np.broadcast_to(np.asarray(state['flipping_bits']), (400, F)))
    assert len({tuple(row) for row in x[:, F:]}) > 25  # of 32 possible patterns
    assert abs(x[:, F:].mean() - 0.5) < 0.05
    np.testing.assert_allclose(y, np.asarray(target(problem, state, jnp.asarray(x))), atol=1e-6)
    # The targets vary with the random bits (otherwise the problem would be trivial).
    assert len(np.unique(y)) > 1
    # Same key, same batch.
    a = batch(problem, {}, state, jnp.int32(0), keys[3])
    b = batch(problem, {}, state, jnp.int32(0), keys[3])
    np.testing.assert_array_equal(a[0], b[0])


def test_probe_holds_the_task_bits():
    problem = _problem(probe_size=64)
    state = init(problem, {}, jax.random.key(15))
    inputs = np.asarray(probe(problem, {}, state, jax.random.key(16)))
    assert inputs.shape == (64, M)
    np.testing.assert_array_equal(inputs[:, :F], np.broadcast_to(np.asarray(state['flipping_bits']), (64, F)))
    assert set(np.unique(inputs[:, F:])) == {0.0, 1.0}


def test_jit_vmap_over_keys_equals_per_key_calls():
    problem = _problem(batch_size=8)

    def run(key):
        init_key, task_key, batch_key = jax.random.split(key, 3)
        state = problem.init({}, init_key)
        state = problem.start_task({}, state, jnp.int32(1), task_key)
        x, y = problem.batch({}, state, jnp.int32(0), batch_key)
        return state, x, y

    keys = jax.random.split(jax.random.key(17), 3)
    states, xs, ys = jax.device_get(jax.jit(jax.vmap(run))(keys))  # numpy: indexing below compiles nothing
    assert xs.shape == (3, 8, M) and ys.shape == (3, 8, 1)
    run_one = jax.jit(run)  # one key at a time (compiled once, much faster than eager op-by-op calls)
    for i in range(3):
        state, x, y = run_one(keys[i])
        for name in state:
            np.testing.assert_array_equal(states[name][i], state[name])
        np.testing.assert_array_equal(xs[i], x)
        np.testing.assert_allclose(ys[i], y, atol=1e-6)
    assert not np.array_equal(states['target_weights'][0], states['target_weights'][1])


# ----------------------------------------------------------------- base Problem (regression) and config


def test_regression_loss_and_online_metric_are_mean_squared_error():
    problem = _problem()
    outputs = np.array([[1.0], [3.0], [-2.0]], np.float32)
    targets = np.array([[0.0], [1.0], [-2.0]], np.float32)
    assert float(jax.jit(problem.loss)(outputs, targets)) == pytest.approx((1 + 4 + 0) / 3)
    assert float(jax.jit(problem.online_metric)(outputs, targets)) == pytest.approx((1 + 4 + 0) / 3)
    assert problem.online_metric_name == 'online_mse'
    assert isinstance(problem, Problem)


def test_make_problem_from_the_config():
    config = load_config('slowly_changing_regression.py')
    problem, data = make_problem(config)
    assert isinstance(problem, SlowlyChangingRegression)
    assert (problem.num_bits, problem.num_outputs, problem.kind) == (M, 1, 'regression')
    assert (problem.num_flipping_bits, problem.num_target_units, problem.beta) == (F, N, BETA)
    assert (problem.flip_mode, problem.examples_per_task, problem.batch_size) == ('flip_one', 10_000, 1)
    assert problem.steps_per_task == 10_000
    assert problem.probe_size == config.metrics.probe_size
    assert data == {}
    assert make_problem(load_config('slowly_changing_regression.py', 'redraw_all'))[0].flip_mode == 'redraw_all'
    config.problem.batch_size = 3  # 10,000 is not a multiple of 3
    with pytest.raises(ValueError, match='multiple'):
        make_problem(config)
