"""Continual backprop: how many units are replaced and which, what a replaced unit looks like, that the output does
not change when units are replaced, the optimizer-state reset, jit/vmap, and the engine through the `cbp` variant."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plasticity_jax import engine, learners
from plasticity_jax.learners import AfterUpdateInputs, ForwardPass, reinit
from plasticity_jax.learners.continual_backprop import UnitStats, continual_backprop_after_update, default_chunk_size
from plasticity_jax.models import MLP
from plasticity_jax.results import load_run
from tests.conftest import load_config
from tests.learners import dense_reinit
from tests.learners.test_reinit import (
    IN,
    OUT,
    host_params,
    optimizer_config,
    optimizer_state_after_updates,
    tiny_network,
)


def cbp_config(optimizer='sgd', **fields):
    config = optimizer_config(optimizer, name='cbp', **learners.LEARNERS['cbp'].defaults)
    config.update(fields)
    return config


def forward_with(hidden):
    return ForwardPass(outputs=np.zeros((hidden[0].shape[0], OUT), np.float32), hidden=tuple(hidden),
                       loss=np.float32(0), model_state={})


def test_registered_with_the_published_defaults():
    spec = learners.LEARNERS['cbp']
    assert dict(spec.defaults) == {'replacement_rate': 1e-4, 'decay_rate': 0.99, 'maturity_threshold': 100,
                                   'utility': 'adaptable_contribution'}
    config = load_config('slowly_changing_regression.py', 'cbp')
    assert config.learner.name == 'cbp' and config.learner.replacement_rate == 1e-4
    with pytest.raises(ValueError, match='utility'):
        learners.make_learner(cbp_config(utility='weight'), init_params=None)


@functools.cache
def _replacement_counter(num_runs=3, steps=400, width=5, depth=2):
    """The compiled program behind `count_replacements`, shared by the tests (rate and maturity are its inputs)."""
    _, init_params, _ = tiny_network(depth=depth, width=width)
    optimizer = optax.with_extra_args_support(optax.sgd(0.1))

    def run(key, rate, maturity):
        after = continual_backprop_after_update(optimizer, init_params, replacement_rate=rate, decay_rate=0.99,
                                                maturity_threshold=maturity, utility='contribution')
        params = init_params(key)

        def step(carry, step_key):
            state, params, opt_state = carry
            activation_key, reinit_key = jax.random.split(step_key)
            hidden = [jnp.abs(jax.random.normal(k, (2, width))) for k in jax.random.split(activation_key, depth)]
            state, params, opt_state, _ = after.update(
                state, AfterUpdateInputs(params, opt_state, forward_with(hidden), reinit_key))
            return (state, params, opt_state), (jnp.stack([s.age for s in state]),
                                                jnp.stack([s.num_replaced for s in state]))

        carry = (after.init(params), params, optimizer.init(params))
        return jax.lax.scan(step, carry, jax.random.split(key, steps))[1]

    counter = jax.jit(jax.vmap(run, in_axes=(0, None, None)))
    return lambda rate, maturity: jax.device_get(counter(jax.random.split(jax.random.PRNGKey(0), num_runs),
                                                          jnp.float32(rate), jnp.int32(maturity)))


def count_replacements(rate, maturity):
    """Runs the routine alone (params are not trained) on random activations of 5 units in each of 2 layers, for 3
    runs at once under jit(vmap) for 400 steps; returns the per-step ages (runs, steps, layers, width) and cumulative
    counts (runs, steps, layers). The rate and maturity are traced inputs (one program for the tests), as in a sweep
    of the rate: the chunk is 1 unit, which a fixed rate below 0.2 also gets for 5 units (`default_chunk_size`), and a
    swept rate replaces exactly as a fixed one (`test_a_swept_rate_replaces_as_a_fixed_one_in_more_chunks`)."""
    assert default_chunk_size(rate, 5) == 1
    return _replacement_counter()(rate, maturity)


def test_replaces_rate_times_eligible_with_the_fractional_remainder_carried():
    """Every step: to_replace += rate * (units older than m); floor(to_replace) units are replaced, the rest carried;
    replaced units (age back to 0) were all mature. Checked exactly, step by step, for 3 runs vmapped at once."""
    rate, maturity = 0.125, 4  # 0.125: exact in float32, so the reference below is exact too
    ages, counts = count_replacements(rate, maturity)
    steps = ages.shape[1]
    for run in range(3):
        for layer in range(2):
            previous_age, to_replace, total = np.zeros(5, int), 0.0, 0
            for t in range(steps):
                eligible = previous_age + 1 > maturity
                to_replace += rate * eligible.sum()
                due = int(np.floor(to_replace))
                to_replace -= due
                replaced = ages[run, t, layer] == 0
                assert replaced.sum() == due, (run, layer, t)
                assert np.all(eligible[replaced]), 'an immature unit was replaced'
                np.testing.assert_array_equal(ages[run, t, layer][~replaced], previous_age[~replaced] + 1)
                total += due
                assert counts[run, t, layer] == total
                previous_age = ages[run, t, layer]
            assert total > 10


def test_the_long_run_count_is_rate_times_eligible_unit_steps():
    """A rate that is not a power of two: over 400 steps the replacements equal the sum of rate * eligible, to 1."""
    rate, maturity = 0.03, 10
    ages, counts = count_replacements(rate, maturity)
    previous = np.concatenate([np.zeros_like(ages[:, :1]), ages[:, :-1]], axis=1)
    expected = rate * (previous + 1 > maturity).sum(axis=(1, 3))  # (runs, layers)
    assert np.all(np.abs(counts[:, -1] - expected) < 1), (counts[:, -1], expected)
    assert np.all(counts[:, -1] > 5)


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_the_lowest_utility_mature_unit_is_replaced_and_fully_reset(optimizer):
    """Units' bias-corrected utilities are |h| = [5, 1, 3, 0.5, 4] (outgoing weights all 1); unit 3 has the lowest but
    is immature, so unit 1 is replaced: fresh incoming weights, zero bias, zero outgoing weights, age, utility and
    mean activation 0, and its weights' optimizer state (momentum, or Adam's moments and counts) zeroed."""
    eta, width = 0.99, 5
    _, init_params, _ = tiny_network(depth=1, width=width)
    params = host_params(init_params, 0)
    params = reinit.with_param(params, 'output', 'kernel', np.ones_like(params['output']['kernel']))
    params = reinit.with_param(params, 'hidden_0', 'bias', np.full(width, 0.25, np.float32))
    learner = learners.make_learner(cbp_config(optimizer, replacement_rate=0.01, utility='contribution'),
                                    init_params)

    opt_state = optimizer_state_after_updates(learner.optimizer, params)
    h = np.array([5.0, 1.0, 3.0, 0.5, 4.0], np.float32)
    age = np.array([200, 200, 200, 50, 200], np.int32)
    state = (UnitStats(utility=(h * (1 - eta ** age)).astype(np.float32), mean_activation=np.zeros(width, np.float32),
                       age=age, to_replace=np.float32(0.99), num_replaced=np.int32(0)),)
    key = jax.random.PRNGKey(7)
    inputs = AfterUpdateInputs(params=params, opt_state=opt_state, forward=forward_with([h[None, :]]), key=key)
    (new,), new_params, new_opt_state, _ = jax.device_get(jax.jit(learner.after_update.update)(state, inputs))

    replaced = np.array([False, True, False, False, False])
    np.testing.assert_array_equal(new.age, [201, 0, 201, 51, 201])
    assert new.utility[1] == 0 and new.mean_activation[1] == 0 and int(new.num_replaced) == 1
    assert np.all(np.asarray(new.utility)[~replaced] > 0)
    np.testing.assert_allclose(new.to_replace, 0.99 + 0.01 * 4 - 1, atol=1e-6)
    # One unit due: its incoming weights are the fresh column of place 0.
    (fresh,) = jax.jit(lambda p, k: reinit.fresh_incoming_weights(init_params, p, [jnp.array([1])], k))(params, key)
    np.testing.assert_allclose(new_params['hidden_0']['kernel'][:, 1], fresh[:, 0], rtol=1e-6)
    assert not np.allclose(new_params['hidden_0']['kernel'][:, 1], params['hidden_0']['kernel'][:, 1])
    np.testing.assert_array_equal(new_params['hidden_0']['bias'], [0.25, 0.0, 0.25, 0.25, 0.25])
    np.testing.assert_array_equal(new_params['output']['kernel'][1], 0.0)
    entries = dense_reinit.replaced_entries(params, [replaced])
    for name in params:  # everything else is exactly as it was
        for field in params[name]:
            keep = ~np.asarray(entries[name][field])
            np.testing.assert_array_equal(np.asarray(new_params[name][field])[keep],
                                          np.asarray(params[name][field])[keep])

    inner = new_opt_state.inner_state[0]
    trees = [inner.trace] if optimizer == 'sgd' else [inner.mu, inner.nu, inner.count]
    old_inner = opt_state.inner_state[0]
    old_trees = [old_inner.trace] if optimizer == 'sgd' else [old_inner.mu, old_inner.nu, old_inner.count]
    for tree, old_tree in zip(trees, old_trees):
        for name in params:
            for field in params[name]:
                reset = np.asarray(entries[name][field])
                assert np.all(np.asarray(tree[name][field])[reset] == 0)
                np.testing.assert_array_equal(np.asarray(tree[name][field])[~reset],
                                              np.asarray(old_tree[name][field])[~reset])
                assert np.all(np.asarray(old_tree[name][field]) != 0)


def test_replacing_units_does_not_change_the_output():
    """Two layers, each with one unit of constant activation (zero incoming weights, positive bias): with the
    mean-corrected utility these have the lowest utility and are replaced, and the transfer of their mean
    contribution to the next layer's bias leaves the network's output unchanged (it would change without it)."""
    width, maturity = 4, 20
    _, init_params, apply = tiny_network(depth=2, width=width)
    params = host_params(init_params, 0)
    for layer, unit, bias in (('hidden_0', 2, 0.7), ('hidden_1', 0, 0.3)):  # in place: host_params' own arrays
        params[layer]['kernel'][:, unit] = 0.0
        params[layer]['bias'][unit] = bias
    optimizer = optax.with_extra_args_support(optax.sgd(0.1))
    after = continual_backprop_after_update(optimizer, init_params, replacement_rate=0.25, decay_rate=0.99,
                                            maturity_threshold=maturity, utility='mean_corrected_contribution')
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((maturity + 1, 8, IN)).astype(np.float32)
    keys = jax.device_get(jax.random.split(jax.random.PRNGKey(2), maturity + 1))

    @jax.jit
    def step(state, params, x, key):
        _, hidden = apply(params, x)
        return after.update(state, AfterUpdateInputs(params, optimizer.init(params), forward_with(hidden), key))

    state = after.init(params)
    for t in range(maturity):  # nobody is mature yet: nothing changes
        state, new_params, _, _ = step(state, params, xs[t], keys[t])
        jax.tree.map(np.testing.assert_array_equal, new_params, params)
    state, new_params, _, _ = jax.device_get(step(state, params, xs[maturity], keys[maturity]))
    np.testing.assert_array_equal(state[0].age == 0, [False, False, True, False])
    np.testing.assert_array_equal(state[1].age == 0, [True, False, False, False])

    probe = rng.standard_normal((64, IN)).astype(np.float32)
    np.testing.assert_allclose(apply(new_params, probe)[0], apply(params, probe)[0], atol=1e-5)
    assert not np.allclose(new_params['output']['bias'], params['output']['bias'])  # the transfer happened
    without_transfer = dense_reinit.replace_units(params, jax.jit(init_params)(keys[maturity]),
                                                  [state[0].age == 0, state[1].age == 0])
    assert np.max(np.abs(apply(without_transfer, probe)[0] - apply(params, probe)[0])) > 1e-2


@pytest.mark.parametrize('variants', ['cbp', 'cbp,adam'])
def test_end_to_end_through_the_engine(variants):
    """The `cbp` config variant runs under the engine's jit(vmap) over seeds; units are replaced at the rate."""
    config = load_config('slowly_changing_regression.py', variants)
    config.update({'num_seeds': 2, 'num_tasks': 2})
    config.problem.examples_per_task = 300
    config.metrics.probe_size = 64
    config.learner.update({'replacement_rate': 0.01, 'maturity_threshold': 10})
    train = engine.make_train(config)
    # The initial state eagerly: its small ops are compiled once for all the tests' SCR networks, not a program each.
    state, metrics = engine.make_vmapped(train)(jax.vmap(train.init)(engine.seed_keys(config)), 2)
    (stats,) = state.learner_state
    # At most rate * 5 units * (600 - 10) steps = 29.5; replaced units are immature for 10 steps, so a bit fewer.
    assert np.all((np.asarray(stats.num_replaced) >= 25) & (np.asarray(stats.num_replaced) <= 29))
    assert np.all(np.isfinite(metrics['online_mse']))
    if variants == 'cbp,adam':
        # A unit's weights have been updated once per step since the unit was last (re)initialised: its age.
        counts = state.opt_state.inner_state[0].count
        age = np.asarray(stats.age)  # (seeds, width)
        assert age.min() < 600
        np.testing.assert_array_equal(counts['hidden_0']['kernel'], np.broadcast_to(age[:, None, :], (2, 20, 5)))
        np.testing.assert_array_equal(counts['hidden_0']['bias'], age)
        np.testing.assert_array_equal(counts['output']['kernel'], np.broadcast_to(age[:, :, None], (2, 5, 1)))
        np.testing.assert_array_equal(counts['output']['bias'], 600)


def scr(variants, num_seeds=8):
    config = load_config('slowly_changing_regression.py', variants)
    config.num_seeds = num_seeds
    train = engine.make_train(config)
    _, metrics = engine.make_vmapped(train)(jax.jit(jax.vmap(train.init))(engine.seed_keys(config)),
                                            config.num_tasks)
    return jax.device_get(metrics)


@pytest.mark.slow
def test_continual_backprop_keeps_plasticity_on_slowly_changing_regression():
    """Dohare et al. (2021, Fig. 3; Nature 2024): with SGD 0.01 and ReLU, backprop's error rises over the 100 tasks
    as units die; continual backprop's stays near its early level, with few dead units (full size, 8 seeds)."""
    backprop, cbp = scr('relu,lr0.01'), scr('relu,lr0.01,cbp')
    early = lambda m: m['online_mse'][:, 1:11].mean()
    late = lambda m: m['online_mse'][:, 50:].mean()
    assert late(backprop) > 1.2 * early(backprop), (early(backprop), late(backprop))
    assert late(cbp) < 1.2 * early(cbp), (early(cbp), late(cbp))
    assert late(cbp) < 0.7 * late(backprop), (late(cbp), late(backprop))
    assert cbp['dead_fraction'][:, 50:].mean() < 0.15 < 0.5 < backprop['dead_fraction'][:, 50:].mean()


def test_the_chunk_is_the_most_units_due_in_a_step():
    assert default_chunk_size(1e-4, 2000) == 1 and default_chunk_size(1e-4, 5) == 1
    assert default_chunk_size(1e-3, 2000) == 2 and default_chunk_size(0.25, 4) == 1
    assert default_chunk_size(0.3, 10) == 3 and default_chunk_size(1.0, 7) == 7 and default_chunk_size(0.0, 7) == 1
    assert jax.jit(lambda rate: jnp.asarray(default_chunk_size(rate, 2000)))(1e-4) == 1  # traced (swept): 1


def test_a_swept_rate_replaces_as_a_fixed_one_in_more_chunks():
    """With a traced replacement rate (a sweep) the chunk is 1 unit, so a step with 2 or 3 units due (rate 0.5, 5
    units) takes several iterations; the result is exactly that of the same rate fixed (one chunk of 3)."""
    width, steps = 5, 12
    _, init_params, _ = tiny_network(depth=2, width=width)
    optimizer = optax.with_extra_args_support(reinit.make_unit_reset_optimizer(optimizer_config('adam')))
    hidden = np.abs(np.random.default_rng(1).standard_normal((steps, 2, 3, width))).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(2), steps)

    def run(rate):
        after = continual_backprop_after_update(optimizer, init_params, replacement_rate=rate, decay_rate=0.9,
                                                maturity_threshold=2, utility='adaptable_contribution')
        params = init_params(jax.random.PRNGKey(0))
        opt_state = optimizer.update(jax.tree.map(jnp.ones_like, params), optimizer.init(params), params)[1]

        def step(carry, xs):
            state, params, opt_state = carry
            carry = after.update(state, AfterUpdateInputs(params, opt_state, forward_with(list(xs[0])), xs[1]))[:3]
            return carry, jnp.stack([s.num_replaced for s in carry[0]])

        return jax.lax.scan(step, (after.init(params), params, opt_state), (hidden, keys))

    fixed, swept = jax.jit(lambda: run(0.5))(), jax.jit(run)(jnp.float32(0.5))
    jax.tree.map(np.testing.assert_array_equal, swept, fixed)
    per_step = np.diff(np.asarray(fixed[1]), axis=0, prepend=0)  # (steps, layers)
    assert per_step.max() >= 2 and per_step.sum() >= 20  # steps of several chunks happened


def test_a_step_draws_fresh_weights_for_the_replaced_units_only():
    """No random draw in the routine's program is larger than a chunk of fresh columns (fan_in x chunk): the
    fresh network of the first implementation (fan_in x width per layer) is gone."""
    from tests.learners.test_reinit import random_draw_sizes
    width, fan_in = 300, 40
    model = MLP(width=width, depth=2, num_outputs=OUT)
    init_params = lambda k: model.init(k, jnp.zeros((1, fan_in)))['params']
    params = jax.eval_shape(init_params, jax.random.PRNGKey(0))
    optimizer = optax.with_extra_args_support(reinit.make_unit_reset_optimizer(optimizer_config('sgd')))
    after = continual_backprop_after_update(optimizer, init_params, **learners.LEARNERS['cbp'].defaults)
    inputs = AfterUpdateInputs(params, jax.eval_shape(optimizer.init, params),
                               forward_with([jax.ShapeDtypeStruct((1, width), jnp.float32)] * 2),
                               jax.ShapeDtypeStruct((4, 2), jnp.uint32))  # 4 runs' keys
    jaxpr = jax.make_jaxpr(jax.vmap(after.update, in_axes=(None, AfterUpdateInputs(None, None, None, 0))))(
        jax.eval_shape(after.init, params), inputs)
    sizes = random_draw_sizes(jaxpr.jaxpr)
    assert sizes and max(sizes) <= 4 * width  # chunk 1 at rate 1e-4: a column of at most `width` entries per run
    full = jax.make_jaxpr(init_params)(jax.random.PRNGKey(0))
    assert max(random_draw_sizes(full.jaxpr)) >= fan_in * width  # what a fresh network draws


def test_a_point_of_a_sweep_of_the_rate_equals_that_rate_alone(tmp_path):
    """`replacement_rate` is a continuous (traced) sweep field: one program whose second point equals running that
    rate alone (the points differ, so a point given the other's rate would fail; each rate alone is one more
    compiled program). Both tasks in one chunk: a swept value carried across chunks is the engine's,
    tests/test_sweeps.py."""
    def config(**fields):
        config = load_config('slowly_changing_regression.py', 'cbp')
        config.update({'num_seeds': 2, 'num_tasks': 2, 'tasks_per_chunk': 2})
        config.problem.examples_per_task = 200
        config.metrics.probe_size = 64
        config.learner.update({'maturity_threshold': 10, **fields})
        return config

    swept = config()
    swept.sweep.learner = {'replacement_rate': (0.01, 0.3)}
    engine.run(swept, str(tmp_path / 'sweep'), progress=False)
    run = load_run(str(tmp_path / 'sweep'))
    alone = engine.run(config(replacement_rate=0.3), str(tmp_path / 'alone'), progress=False)
    for name in alone:
        np.testing.assert_array_equal(run.metrics[name][1], alone[name], err_msg=name)
    assert not np.array_equal(run.metrics['online_mse'][0], run.metrics['online_mse'][1])


# ---------------------------------------------------------------------------------------------------------------
# Convolutional networks and ResNets (`models.UnitLayer`s declared by the models).

@pytest.mark.parametrize('name', ['convnet', 'resnet'])
def test_conv_units_are_replaced_at_the_rate_and_never_immature(name):
    """Continual backprop alone on a ConvNet's and a small ResNet's unit layers (channels averaged over
    positions), 2 runs under jit(vmap) from the same initial network, random activations: every layer replaces
    floor(sum of rate x eligible) units (the fractional carry), and every replaced unit was mature (age > maturity)
    when replaced."""
    from tests.learners.test_reinit import IMAGE_NETWORKS, image_network_variables
    model, shape = IMAGE_NETWORKS[name]
    init_params = lambda k: model.init(k, jnp.zeros(shape))['params']
    layers = model.unit_layers()
    rate, maturity, steps = 0.03, 6, 30
    optimizer = optax.with_extra_args_support(optax.sgd(0.1, momentum=0.9))
    after = continual_backprop_after_update(optimizer, init_params, replacement_rate=rate, decay_rate=0.9,
                                            maturity_threshold=maturity, utility='adaptable_contribution',
                                            layers=layers)
    variables = image_network_variables(name)
    _, hidden_shapes = jax.eval_shape(model.apply, variables, jnp.zeros(shape))

    def run(key, variables):
        params = variables['params']
        model_state = {name: value for name, value in variables.items() if name != 'params'}

        def step(carry, step_key):
            state, params, opt_state, model_state = carry
            keys = jax.random.split(step_key, len(hidden_shapes) + 1)
            hidden = [jax.nn.relu(jax.random.normal(k, (2, 3, 3, h.shape[-1]) if h.ndim == 4 else (2, h.shape[-1])))
                      for k, h in zip(keys[1:], hidden_shapes)]
            forward = ForwardPass(outputs=jnp.zeros((2, OUT)), hidden=tuple(hidden), loss=jnp.zeros(()),
                                  model_state=model_state)
            carry = after.update(state, AfterUpdateInputs(params, opt_state, forward, keys[0]))
            return carry, jnp.stack([jnp.pad(s.age, (0, 128 - s.age.shape[0])) for s in carry[0]])

        carry = (after.init(params), params, optimizer.init(params), model_state)
        return jax.lax.scan(step, carry, jax.random.split(key, steps))

    (states, *_), ages = jax.device_get(jax.jit(jax.vmap(run, in_axes=(0, None)))(
        jax.random.split(jax.random.PRNGKey(0), 2), variables))
    for l, layer in enumerate(layers):
        width = states[l].age.shape[-1]
        age = ages[:, :, l, :width]  # (runs, steps, width), after each step
        before = np.concatenate([np.zeros_like(age[:, :1]), age[:, :-1]], axis=1) + 1  # the age when tested
        replaced = age == 0
        assert np.all(before[replaced] > maturity)
        eligible = (before > maturity).sum(axis=2)  # (runs, steps)
        expected = np.floor(rate * eligible.sum(axis=1) + 1e-4)
        np.testing.assert_array_equal(replaced.sum(axis=(1, 2)), expected)
        np.testing.assert_array_equal(states[l].num_replaced, expected)
        assert expected.min() >= 1, layer


def resnet_cbp_config(shared_data_dir, num_tasks):
    """A small ResNet-18 with continual backprop (momentum, weight decay) on class-pair MNIST, 2 sweep points of the
    replacement rate in one program."""
    from plasticity_jax import config as config_lib
    config = load_config('pairwise_mnist.py', 'cbp')
    config.update({'num_seeds': 1, 'num_tasks': num_tasks, 'tasks_per_chunk': 1, 'data_dir': shared_data_dir})
    config.model = config_lib.image_model_config('resnet18', base_width=2)
    config.problem.update({'train_per_class': 20, 'batch_size': 8, 'epochs': 1})
    config.metrics.probe_size = 16
    config.learner.update({'momentum': 0.9, 'step_size': 0.01, 'maturity_threshold': 2, 'utility': 'contribution'})
    config.learner.weight_decay = 5e-4
    config.sweep.learner = {'replacement_rate': (0.05, 0.2)}
    return config


def _final_state(config, workdir):
    from plasticity_jax import sweeps
    from plasticity_jax import workdir as workdir_lib
    train = engine.make_train(config)
    runs = sweeps.runs(config, 1)
    abstract = jax.eval_shape(jax.vmap(train.init), runs.keys(config.seed), runs.hyperparams())
    directory = str(workdir / engine.CHECKPOINT_DIR)
    return workdir_lib.restore_state(directory, workdir_lib.checkpoint_steps(directory)[-1], abstract)


@pytest.mark.slow  # compiles the whole engine program of a ResNet-18: minutes of CPU
def test_resnet_cbp_through_the_engine_under_a_sweep(tmp_path, shared_data_dir):
    """Two tasks through the engine (jit(vmap) over 2 sweep points): channels are replaced, more at the higher
    rate, never more than rate x width x mature steps; the points differ."""
    config = resnet_cbp_config(shared_data_dir, 2)
    metrics = engine.run(config, str(tmp_path), progress=False)
    state = _final_state(config, tmp_path)
    counts = np.stack([np.asarray(s.num_replaced) for s in state.learner_state], axis=1)  # (points, layers)
    steps = 2 * 40 // 8  # two tasks of 40 images in batches of 8
    widths = np.array([2, 2, 4, 4, 8, 8, 16, 16])
    assert np.all(counts <= np.array([[0.05], [0.2]]) * widths * (steps - 2) + 1e-6)
    assert counts[0].sum() < counts[1].sum() and counts[1].sum() > 0
    assert np.all(np.isfinite(metrics['online_loss']))
    assert not np.array_equal(metrics['online_loss'][0], metrics['online_loss'][1])


@pytest.mark.slow
def test_resnet_cbp_resumes_bit_identically(tmp_path, shared_data_dir):
    """Run 1 task, then resume to 2 (batch norm statistics, learner state and momentum through a checkpoint): the
    metrics and the final state equal a run of 2 tasks at once. (A kill -9 resumes from the same checkpoint:
    tests/test_engine.py kills a run.)"""
    whole = engine.run(resnet_cbp_config(shared_data_dir, 2), str(tmp_path / 'whole'), progress=False)
    engine.run(resnet_cbp_config(shared_data_dir, 1), str(tmp_path / 'resumed'), progress=False)
    resumed = engine.run(resnet_cbp_config(shared_data_dir, 2), str(tmp_path / 'resumed'), progress=False)
    for name in whole:
        np.testing.assert_array_equal(whole[name], resumed[name], err_msg=name)
    config = resnet_cbp_config(shared_data_dir, 2)
    jax.tree.map(np.testing.assert_array_equal, _final_state(config, tmp_path / 'whole'),
                 _final_state(config, tmp_path / 'resumed'))
