"""ReDo: only dormant units are recycled, every F steps, by the shared mechanism; the engine through `redo`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plasticity_jax import engine, learners
from plasticity_jax.learners import AfterUpdateInputs, ForwardPass, reinit
from plasticity_jax.learners.redo import dormancy_scores, redo_after_update
from tests.conftest import load_config
from tests.learners import dense_reinit
from tests.learners.test_continual_backprop import forward_with
from tests.learners.test_reinit import (
    OUT,
    host_params,
    optimizer_config,
    optimizer_state_after_updates,
    tiny_network,
)


def test_registered_with_the_published_defaults():
    assert dict(learners.LEARNERS['redo'].defaults) == {'recycle_period': 1000, 'dormancy_threshold': 0.1}
    config = load_config('slowly_changing_regression.py', 'redo')
    assert config.learner.name == 'redo' and config.learner.recycle_period == 1000


def test_dormancy_scores_are_normalised_by_the_layer_mean():
    np.testing.assert_allclose(dormancy_scores(jnp.array([1.0, 3.0, 0.0, 0.0])), [1.0, 3.0, 0.0, 0.0], rtol=1e-6)
    silent = dormancy_scores(jnp.zeros(4))  # a silent layer: every unit dormant, no NaN
    np.testing.assert_array_equal(silent, 0.0)


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_only_dormant_units_are_recycled_once_per_period(optimizer):
    """F = 4, tau = 0.1. Window 1: mean |h| = [1, 2, 0.05, 1.5, 0] (scores 1.1, 2.2, 0.055, 1.65, 0): units 2 and
    4 are recycled at step 4, nothing before. Window 2: unit 0 alone is dormant (it was active in window 1, so
    the window restarted). Recycled units: fresh incoming weights, zero bias and outgoing weights, reset optimizer
    state; everything else untouched."""
    width = 5
    _, init_params, _ = tiny_network(depth=1, width=width)
    params = host_params(init_params, 0)
    params = reinit.with_param(params, 'hidden_0', 'bias', np.full(width, 0.25, np.float32))
    config = optimizer_config(optimizer, name='redo', recycle_period=4, dormancy_threshold=0.1)
    learner = learners.make_learner(config, init_params)

    opt_state = optimizer_state_after_updates(learner.optimizer, params)
    after = jax.jit(learner.after_update.update)
    fresh_weights = jax.jit(lambda params, units, key: reinit.fresh_incoming_weights(init_params, params, [units], key))
    state = jax.jit(learner.after_update.init)(params)

    def window(state, params, opt_state, means, first_key):
        for t, wiggle in enumerate([0.5, 1.5, 0.5, 1.5]):  # per-step values vary; their mean is `means`
            key = jax.random.PRNGKey(first_key + t)
            h = np.asarray(means, np.float32)[None, :] * np.float32(wiggle)
            new = jax.device_get(after(state, AfterUpdateInputs(params, opt_state, forward_with([h]), key)))
            if t < 3:  # not yet: params and optimizer state untouched
                jax.tree.map(np.testing.assert_array_equal, new[1:3], (params, opt_state))
            state, new_params, new_opt_state, _ = new
        return state, new_params, new_opt_state, key

    for means, recycled, first_key in (([1.0, 2.0, 0.05, 1.5, 0.0], [False, False, True, False, True], 100),
                                       ([0.01, 1.0, 1.0, 1.0, 1.0], [True, False, False, False, False], 200)):
        recycled = np.array(recycled)
        state, new_params, new_opt_state, key = window(state, params, opt_state, means, first_key)
        # The recycled units, in index order, take the fresh columns of places 0, 1, ...
        units = np.full(width, width, np.int32)  # the recycled units in index order, then 'no unit'
        units[:recycled.sum()] = np.flatnonzero(recycled)
        (fresh,) = fresh_weights(params, units, key)
        np.testing.assert_allclose(new_params['hidden_0']['kernel'][:, recycled], fresh[:, :recycled.sum()],
                                   rtol=1e-6)
        np.testing.assert_array_equal(new_params['hidden_0']['bias'],
                                      np.where(recycled, 0.0, params['hidden_0']['bias']))
        np.testing.assert_array_equal(new_params['output']['kernel'][recycled], 0.0)
        entries = dense_reinit.replaced_entries(params, [recycled])
        for name in params:
            for field in params[name]:
                keep = ~np.asarray(entries[name][field])
                np.testing.assert_array_equal(np.asarray(new_params[name][field])[keep],
                                              np.asarray(params[name][field])[keep])
        inner, old_inner = new_opt_state.inner_state[0], opt_state.inner_state[0]
        fields = ['trace'] if optimizer == 'sgd' else ['mu', 'nu', 'count']
        for tree, old_tree in zip([getattr(inner, f) for f in fields], [getattr(old_inner, f) for f in fields]):
            for name in params:
                for field in params[name]:
                    reset, new, old = (np.asarray(t[name][field]) for t in (entries, tree, old_tree))
                    assert np.all(old[reset] != 0) and np.all(new[reset] == 0)
                    np.testing.assert_array_equal(new[~reset], old[~reset])
        assert int(state.steps) == 0 and np.all(np.asarray(state.activity[0]) == 0)
        params, opt_state = new_params, new_opt_state
    assert int(state.num_recycled[0]) == 3


def test_end_to_end_through_the_engine():
    """`redo,adam` under the engine's jit(vmap) over seeds. With tau = 1 (units below the layer's mean activity are
    dormant) units are recycled at every period; a recycled unit's Adam counts restart, so at the end every count
    is the number of steps since some recycling step: a multiple of F below 600, or 600."""
    config = load_config('slowly_changing_regression.py', 'redo,adam')
    config.update({'num_seeds': 2, 'num_tasks': 2})
    config.problem.examples_per_task = 300
    config.metrics.probe_size = 64
    config.learner.update({'recycle_period': 50, 'dormancy_threshold': 1.0})
    train = engine.make_train(config)
    # The initial state eagerly: its small ops are compiled once for all the tests' SCR networks, not a program each.
    state, metrics = engine.make_vmapped(train)(jax.vmap(train.init)(engine.seed_keys(config)), 2)
    recycled = np.asarray(state.learner_state.num_recycled[0])
    assert np.all((recycled >= 12) & (recycled <= 4 * 12)), recycled  # 12 periods; 1 to 4 of 5 units below mean
    counts = np.asarray(state.opt_state.inner_state[0].count['hidden_0']['kernel'])
    assert counts.min() < 600 and np.all(counts % 50 == 0)
    np.testing.assert_array_equal(state.opt_state.inner_state[0].count['output']['bias'], 600)
    assert np.all(np.isfinite(metrics['online_mse']))


def test_dormant_channels_of_a_resnet_are_recycled_with_their_batch_norm():
    """ReDo on a small ResNet's declared channels (every block's conv_0): a channel silent at every position is
    recycled (fresh incoming kernel, batch norm reset), the active ones are untouched."""
    from tests.learners.test_reinit import IMAGE_NETWORKS, image_network_variables
    model, shape = IMAGE_NETWORKS['resnet']
    layers = model.unit_layers()
    optimizer = optax.with_extra_args_support(optax.sgd(0.1, momentum=0.9))
    after = redo_after_update(optimizer, lambda k: model.init(k, jnp.zeros(shape))['params'], recycle_period=1,
                              dormancy_threshold=0.1, layers=layers)
    variables = image_network_variables('resnet')
    _, hidden = jax.eval_shape(model.apply, variables, jnp.zeros(shape))
    block = layers[1]  # stage 1's block: 4 channels

    @jax.jit
    def recycle(variables):  # one compiled program instead of an eager op per parameter and statistic
        params = variables['params']
        model_state = {'batch_stats': jax.tree.map(lambda s: s + 0.5, variables['batch_stats'])}
        activations = [jnp.ones(h.shape) for h in hidden]
        activations[block.activation] = activations[block.activation].at[..., 1].set(0.0)
        forward = ForwardPass(outputs=jnp.zeros((shape[0], OUT)), hidden=tuple(activations), loss=jnp.zeros(()),
                              model_state=model_state)
        inputs = AfterUpdateInputs(params, optimizer.init(params), forward, jax.random.PRNGKey(1))
        return params, after.update(after.init(params), inputs)

    params, (state, new_params, _, new_model_state) = recycle(variables)
    assert [int(n) for n in state.num_recycled] == [0, 1, 0, 0]
    old, new = reinit.get_path(params, block.incoming), reinit.get_path(new_params, block.incoming)
    assert np.all(np.asarray(new['kernel'][..., 1]) != np.asarray(old['kernel'][..., 1]))
    np.testing.assert_array_equal(np.delete(np.asarray(new['kernel']), 1, -1),
                                  np.delete(np.asarray(old['kernel']), 1, -1))
    stats = reinit.get_path(new_model_state['batch_stats'], block.normalization)
    np.testing.assert_array_equal(stats['mean'], [0.5, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(stats['var'], [1.5, 1.0, 1.5, 1.5])
    assert np.all(np.asarray(reinit.get_path(new_params, block.outgoing[0])['kernel'][..., 1, :]) == 0)
