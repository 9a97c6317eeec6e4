"""The shared unit-replacement mechanism and the Adam with per-element step counts."""

import functools

import flax
import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_jax.learners import adam_counts, reinit
from plasticity_jax.learners.backprop import make_optimizer
from plasticity_jax.models import MLP, ConvNet, ResNet18, UnitLayer
from plasticity_jax.models.mlp import KAIMING_GAIN
from tests.learners import dense_reinit

IN, WIDTH, OUT = 3, 4, 2


@functools.cache
def tiny_network(depth=2, width=WIDTH, activation='relu'):
    """A small MLP, its `init_params(key)` and jitted `apply(params, x) -> (outputs, hidden)`; cached, so that the
    tests share their traced and compiled programs."""
    model = MLP(width=width, depth=depth, num_outputs=OUT, activation=activation)

    def init_params(key):
        return model.init(key, jnp.zeros((1, IN)))['params']

    return model, init_params, jax.jit(lambda params, x: model.apply({'params': params}, x))


def host_params(init_params, seed):
    """`init_params(PRNGKey(seed))` as (writable) NumPy arrays, from one compiled program (not an eager op per
    layer)."""
    return jax.tree.map(np.array, jax.jit(init_params)(jax.random.PRNGKey(seed)))


def host_random_tree(seed, like):
    """Standard normal NumPy leaves shaped like `like`'s (for references computed on the host)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: rng.standard_normal(np.shape(leaf)).astype(np.float32), like)


def optimizer_config(optimizer, **fields):
    config = ml_collections.ConfigDict({'optimizer': optimizer, 'step_size': 0.1, 'momentum': 0.9, 'beta1': 0.9,
                                        'beta2': 0.999, 'eps': 1e-8})
    config.update(fields)
    return config


def random_tree(key, like):
    """Standard normal leaves shaped like `like`'s, from ONE draw split by leaf (one random-bits computation in a
    compiled program instead of one per leaf: a ResNet's perturbation compiled in a third of the time)."""
    leaves, treedef = jax.tree.flatten(like)
    sizes = [int(np.prod(jnp.shape(leaf))) for leaf in leaves]
    pieces = jnp.split(jax.random.normal(key, (sum(sizes),)), np.cumsum(sizes)[:-1])
    return jax.tree.unflatten(treedef, [piece.reshape(jnp.shape(leaf)) for piece, leaf in zip(pieces, leaves)])


def optimizer_state_after_updates(optimizer, params, steps=3):
    """The state of `optimizer` after `steps` updates with random gradients at `params` (nonzero everywhere), as
    NumPy arrays from one compiled program."""
    @jax.jit
    def updated(params):
        opt_state = optimizer.init(params)
        for step in range(steps):
            _, opt_state = optimizer.update(random_tree(jax.random.PRNGKey(step), params), opt_state, params)
        return opt_state
    return jax.device_get(updated(params))


MASKS = (np.array([True, False, False, True]), np.array([False, True, False, False]))


def test_mlp_unit_layers_pairs_each_hidden_layer_with_the_next():
    model, init_params, _ = tiny_network(depth=3)
    expected = (UnitLayer(('hidden_0',), (('hidden_1',),), 0), UnitLayer(('hidden_1',), (('hidden_2',),), 1),
                UnitLayer(('hidden_2',), (('output',),), 2))
    assert reinit.mlp_unit_layers(jax.eval_shape(init_params, jax.random.PRNGKey(0))) == expected
    assert model.unit_layers() == expected  # what the model declares
    with pytest.raises(ValueError, match='hidden_0'):
        reinit.mlp_unit_layers({'hidden_1': {}, 'output': {}})
    with pytest.raises(ValueError, match=r"MLP's params.*\['conv_0'\]"):
        reinit.mlp_unit_layers({'conv_0': {}, 'hidden_0': {}, 'output': {}})


def test_replace_units_rewrites_exactly_the_replaced_units_weights():
    _, init_params, _ = tiny_network()
    params, fresh = host_params(init_params, 0), host_params(init_params, 1)
    params = jax.tree.map(lambda p: p + 0.5, params)  # nonzero biases, so that zeroing them shows
    new = dense_reinit.replace_units(params, fresh, MASKS)

    expected = jax.tree.map(np.array, params)
    for layer, mask in zip(reinit.mlp_unit_layers(params), MASKS):
        (incoming,), ((outgoing,),) = layer.incoming, layer.outgoing
        expected[incoming]['kernel'][:, mask] = np.asarray(fresh[incoming]['kernel'])[:, mask]
        expected[incoming]['bias'][mask] = 0.0
        expected[outgoing]['kernel'][mask, :] = 0.0
    jax.tree.map(np.testing.assert_array_equal, new, expected)
    # Where a replaced unit of layer 0 meets one of layer 1, the later unit's fresh incoming weight wins.
    np.testing.assert_array_equal(new['hidden_1']['kernel'][0, 1], fresh['hidden_1']['kernel'][0, 1])
    assert new['hidden_1']['kernel'][0, 1] != 0
    np.testing.assert_array_equal(new['output']['bias'], params['output']['bias'])


def test_new_units_do_not_change_the_output():
    """After replacement the output does not depend on the fresh weights: it is the output of the old network with
    the replaced units' outgoing weights removed, whatever was drawn; a dead unit's replacement changes nothing."""
    _, init_params, apply = tiny_network(depth=1)
    params = host_params(init_params, 0)
    x = np.random.default_rng(1).standard_normal((16, IN)).astype(np.float32)
    mask = np.array([False, True, False, False])
    outputs = [apply(dense_reinit.replace_units(params, host_params(init_params, k), [mask]), x)[0]
               for k in (2, 3)]
    ablated = reinit.with_param(params, 'output', 'kernel', params['output']['kernel'] * ~mask[:, None])
    np.testing.assert_allclose(outputs[0], apply(ablated, x)[0], rtol=1e-6)
    np.testing.assert_allclose(outputs[1], apply(ablated, x)[0], rtol=1e-6)

    dead = reinit.with_param(params, 'hidden_0', 'bias', np.where(mask, -100.0, params['hidden_0']['bias']))
    assert np.all(apply(dead, x)[1][0][:, 1] == 0)
    replaced = dense_reinit.replace_units(dead, host_params(init_params, 4), [mask])
    np.testing.assert_allclose(apply(replaced, x)[0], apply(dead, x)[0], rtol=1e-6)


@pytest.mark.parametrize('make,num_trees', [
    (lambda: make_optimizer(optimizer_config('sgd')), 1),  # inject_hyperparams(sgd with momentum): a TraceState
    (lambda: make_optimizer(optimizer_config('adam')), 2),  # optax.adam: mu, nu and ONE scalar count
    (lambda: reinit.make_unit_reset_optimizer(optimizer_config('adam')), 3),  # mu, nu, per-element counts
    (lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-4), optax.adam(1e-3)), 2),
], ids=['sgd_momentum', 'optax_adam', 'adam_counts', 'chain'])
def test_reset_optimizer_state_zeroes_exactly_the_replaced_entries(make, num_trees):
    optimizer = optax.with_extra_args_support(make())
    _, init_params, _ = tiny_network()
    params = host_params(init_params, 0)
    state = optimizer_state_after_updates(optimizer, params)  # nonzero state everywhere
    entries = dense_reinit.replaced_entries(params, MASKS)
    # hidden_0: 2 columns of 3, 2 biases; hidden_1: 2 rows + 1 column of 4x4 (2 shared), 1 bias; output: 1 row of 2.
    assert int(sum(np.sum(e) for e in jax.tree.leaves(entries))) == 2 * 3 + 2 + (2 * 4 + 4 - 2) + 1 + 2
    new_state = dense_reinit.reset_optimizer_state(optimizer, state, entries)

    params_like = jax.tree.structure(params)
    is_params_tree = lambda node: not isinstance(node, jax.Array) and jax.tree.structure(node) == params_like
    trees = 0
    for old, new in zip(jax.tree.leaves(state, is_leaf=is_params_tree),
                        jax.tree.leaves(new_state, is_leaf=is_params_tree)):
        if not is_params_tree(old):
            np.testing.assert_array_equal(old, new)  # scalar counts, hyperparameters: untouched
            continue
        trees += 1
        for o, n, e in zip(jax.tree.leaves(old), jax.tree.leaves(new), jax.tree.leaves(entries)):
            o, n, e = np.asarray(o), np.asarray(n), np.asarray(e)
            assert np.all(o[e] != 0)  # there was something to reset ...
            np.testing.assert_array_equal(n[e], 0)  # ... it is reset ...
            np.testing.assert_array_equal(n[~e], o[~e])  # ... and nothing else moved
    assert trees == num_trees


def test_reset_optimizer_state_reaches_every_params_shaped_leaf():
    """The trees found are: SGD's momentum; optax.adam's mu and nu; adam_counts' count, mu and nu."""
    _, init_params, _ = tiny_network()
    params = jax.eval_shape(init_params, jax.random.PRNGKey(0))
    marker = jax.tree.map(lambda p: np.ones(p.shape, bool), params)
    for optimizer, expected in ((make_optimizer(optimizer_config('sgd')), 1),
                                (make_optimizer(optimizer_config('adam')), 2),
                                (reinit.make_unit_reset_optimizer(optimizer_config('adam')), 3)):
        count = []
        optax.tree_utils.tree_map_params(optimizer, lambda leaf, m: count.append(1) or leaf,
                                         jax.eval_shape(optimizer.init, params), marker)
        assert len(count) == expected * len(jax.tree.leaves(params))


def test_adam_counts_equals_optax_adam_without_resets():
    _, init_params, _ = tiny_network()
    params = host_params(init_params, 0)
    config = optimizer_config('adam', step_size=0.003, beta1=0.8, beta2=0.99, eps=1e-6)
    ours, reference = reinit.make_unit_reset_optimizer(config), make_optimizer(config)
    ours_state, reference_state = jax.jit(ours.init)(params), jax.jit(reference.init)(params)
    ours_update, reference_update = jax.jit(ours.update), jax.jit(reference.update)
    for step in range(20):
        grads = host_random_tree(step, params)
        ours_updates, ours_state = ours_update(grads, ours_state, params)
        reference_updates, reference_state = reference_update(grads, reference_state, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12), ours_updates,
                     reference_updates)
    jax.tree.map(lambda c: np.testing.assert_array_equal(c, 20), ours_state.inner_state[0].count)
    # The plain (not injected) transformation too.
    plain, plain_ref = adam_counts.adam_counts(1e-3), optax.adam(1e-3)
    first_update = jax.jit(lambda grads: (plain.update(grads, plain.init(params))[0],
                                          plain_ref.update(grads, plain_ref.init(params))[0]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), *first_update(host_random_tree(99, params)))


@pytest.mark.parametrize('steps_before', [50, 20_000])
def test_a_reset_element_is_bias_corrected_from_step_one(steps_before):
    """After a reset, the first update of a reset element is Adam's first-step update lr * g / (|g| + eps). With
    optax.adam's single count t the zeroed moments are corrected by 1 - b^t instead of 1 - b: the update is scaled
    by (1 - b1) / sqrt(1 - b2) * sqrt(1 - b2^t) / (1 - b1^t), ~0.71 at t = 51 and ~3.2 for t >> 1000."""
    params = {'w': jnp.zeros(2)}
    ours, single = adam_counts.adam_counts(0.1), optax.adam(0.1)
    grads = {'w': jnp.array([1.0, -2.0])}
    ours_update, single_update = jax.jit(ours.update), jax.jit(single.update)
    ours_state, single_state = jax.jit(ours.init)(params), jax.jit(single.init)(params)
    for _ in range(50):
        _, ours_state = ours_update(grads, ours_state)
        _, single_state = single_update(grads, single_state)
    if steps_before > 50:  # a long history, without running it
        ours_state = (ours_state[0]._replace(count={'w': jnp.full(2, steps_before, jnp.int32)}), ours_state[1])
        single_state = (single_state[0]._replace(count=jnp.asarray(steps_before, jnp.int32)), single_state[1])
    entries = {'w': np.array([True, False])}
    ours_state = dense_reinit.reset_optimizer_state(ours, ours_state, entries)
    single_state = dense_reinit.reset_optimizer_state(single, single_state, entries)
    np.testing.assert_array_equal(ours_state[0].count['w'], [0, steps_before])
    new_grads = {'w': jnp.array([3.0, -2.0])}
    ours_updates, _ = ours_update(new_grads, ours_state)
    single_updates, _ = single_update(new_grads, single_state)
    np.testing.assert_allclose(ours_updates['w'][0], -0.1 * 3.0 / (3.0 + 1e-8), rtol=1e-5)
    t = steps_before + 1
    scale = 0.1 / np.sqrt(0.001) * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    np.testing.assert_allclose(single_updates['w'][0], scale * ours_updates['w'][0], rtol=1e-3)
    assert abs(scale - 1) > 0.25
    np.testing.assert_allclose(ours_updates['w'][1], single_updates['w'][1], rtol=1e-5)  # untouched element


def test_the_first_k_of_lowest_scores_order_are_the_k_lowest_eligible_units():
    scores = jnp.array([0.5, 0.1, 0.3, 0.05, 0.2, 0.3])
    eligible = jnp.array([True, True, True, False, True, True])
    select = jax.jit(lambda s, e, k: reinit.first_units_mask(reinit.lowest_scores_order(s, e), k))
    np.testing.assert_array_equal(select(scores, eligible, 0), [False] * 6)
    np.testing.assert_array_equal(select(scores, eligible, 1), [False, True, False, False, False, False])
    np.testing.assert_array_equal(select(scores, eligible, 3), [False, True, True, False, True, False])  # tie: lower
    np.testing.assert_array_equal(select(scores, eligible, 10), np.asarray(eligible))  # never an ineligible one


def test_reinitialize_units_under_jit_and_vmap_over_runs():
    """Each run replaces its own units with its own fresh draw; shapes never depend on how many."""
    _, init_params, _ = tiny_network()
    optimizer = optax.with_extra_args_support(reinit.make_unit_reset_optimizer(optimizer_config('adam')))

    @jax.jit
    def setup(key):  # one trained-a-little run: params, and an optimizer state with nonzero entries
        params = init_params(key)
        return params, optimizer.update(random_tree(key, params), optimizer.init(params), params)[1]

    params, state = jax.device_get(jax.vmap(setup)(jax.random.split(jax.random.PRNGKey(0), 3)))
    masks = (np.array([[True, False, False, False], [False, False, False, False], [True, True, True, True]]),
             np.array([[False, False, False, True], [False, False, False, False], [False, False, False, False]]))
    reinit_keys = jax.device_get(jax.random.split(jax.random.PRNGKey(1), 3))

    def one(params, state, masks, key):
        return reinit.reinitialize_units(params, state, optimizer, masks, key, init_params)

    batched = jax.device_get(jax.jit(jax.vmap(one))(params, state, masks, reinit_keys))
    single = jax.jit(one)
    for run in range(3):
        alone = single(*jax.tree.map(lambda a: a[run], (params, state, masks, reinit_keys)))
        jax.tree.map(lambda b, s: np.testing.assert_allclose(b[run], s, rtol=1e-6), batched, alone)
    new_params, new_state, _ = batched
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda a: a[1], new_params),
                 jax.tree.map(lambda a: a[1], params))  # run 1 replaced nothing
    # Run 2 replaced all of layer 0: its incoming weights are the fresh columns of places 0 to 3.
    run2 = jax.tree.map(lambda a: a[2], params)
    fresh = jax.jit(lambda p, key: reinit.fresh_incoming_weights(init_params, p, [jnp.arange(4), jnp.full(1, 4)],
                                                                 key))(run2, reinit_keys[2])
    np.testing.assert_allclose(new_params['hidden_0']['kernel'][2], fresh[0], rtol=1e-6)
    assert np.all(np.asarray(new_state.inner_state[0].count['hidden_0']['kernel'][2]) == 0)


# ---------------------------------------------------------------------------------------------------------------
# The sparse replacement the learners run: unit lists, fresh blocks from the layers' initialisers, `any_run`, the loop.

def test_any_run_is_the_or_over_the_vmapped_runs_and_keeps_control_flow_real():
    assert bool(reinit.any_run(jnp.asarray(True))) and not bool(reinit.any_run(jnp.asarray(False)))
    preds = jnp.array([[False, False, False], [False, True, False]])
    np.testing.assert_array_equal(jax.vmap(reinit.any_run)(preds[1]), [True] * 3)
    np.testing.assert_array_equal(jax.vmap(reinit.any_run)(preds[0]), [False] * 3)
    np.testing.assert_array_equal(jax.jit(jax.vmap(jax.vmap(reinit.any_run)))(preds), [[True] * 3] * 2)  # nested

    def branch(x):  # a cond on any_run: under vmap still a cond, with an unbatched predicate
        return jax.lax.cond(reinit.any_run(x > 0), lambda: x + 1.0, lambda: x - 1.0)

    jaxpr = jax.make_jaxpr(jax.vmap(jax.vmap(branch)))(jnp.zeros((2, 3)))
    assert [e.primitive.name for e in jaxpr.eqns].count('cond') == 1
    assert 'select_n' not in str(jaxpr)
    np.testing.assert_array_equal(jax.vmap(branch)(jnp.array([-1.0, 2.0])), [0.0, 3.0])  # one run's pred: both add
    np.testing.assert_array_equal(jax.vmap(branch)(jnp.array([-1.0, -2.0])), [-2.0, -3.0])


def test_kernel_initializers_are_found_for_the_layers_that_declare_fan_in_scaling():
    for distribution in ('normal', 'uniform'):
        model = MLP(width=WIDTH, depth=2, num_outputs=OUT, init_distribution=distribution)
        inits = reinit.kernel_initializers(lambda k: model.init(k, jnp.zeros((1, IN)))['params'],
                                           jax.random.PRNGKey(0))
        assert sorted(inits) == [('hidden_0',), ('hidden_1',), ('output',)]
    # Xavier (fan_avg) depends on the number of columns: not used; nor is an undeclared initialiser, even one that
    # would qualify, nor anything that is not flax.
    for init in (nn.initializers.xavier_normal(), nn.initializers.lecun_normal()):
        dense = nn.Dense(4, kernel_init=init)
        assert reinit.kernel_initializers(lambda k: {'d': dense.init(k, jnp.zeros((1, 3)))['params']},
                                          jax.random.PRNGKey(0)) == {}
    assert reinit.kernel_initializers(lambda k: {'w': jax.random.normal(k, (3, 4))}, jax.random.PRNGKey(0)) == {}


def ks_statistic(a, b):
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.concatenate([a, b])
    return np.max(np.abs(np.searchsorted(a, grid, 'right') / a.size - np.searchsorted(b, grid, 'right') / b.size))


@pytest.mark.parametrize('distribution,activation', [('normal', 'relu'), ('uniform', 'tanh')])
def test_fresh_columns_have_the_distribution_of_the_full_kernels_columns(distribution, activation):
    """k fresh columns drawn as a (fan_in, k) block by the layer's initialiser vs. columns of full fresh networks:
    the same distribution (two-sample Kolmogorov-Smirnov at 1e-3, std within 2%, same range for uniform)."""
    model = MLP(width=64, depth=2, num_outputs=OUT, activation=activation, init_distribution=distribution)
    init_params = lambda k: model.init(k, jnp.zeros((1, 30)))['params']
    params = jax.eval_shape(init_params, jax.random.PRNGKey(0))
    units = [jnp.array([3, 64, 10]), jnp.array([0, 1, 2])]  # 64: no unit (its column is drawn all the same)
    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    blocks = jax.jit(jax.vmap(lambda k: reinit.fresh_incoming_weights(init_params, params, units, k)))(keys)
    full = jax.jit(jax.vmap(init_params))(keys[:100])
    for layer, (name, fan_in) in enumerate((('hidden_0', 30), ('hidden_1', 64))):
        fresh, reference = np.asarray(blocks[layer]), np.asarray(full[name]['kernel'])
        assert fresh.shape == (400, fan_in, 3)
        n, m = fresh.size, reference.size
        assert ks_statistic(fresh, reference) < 1.95 * np.sqrt((n + m) / (n * m))
        np.testing.assert_allclose(fresh.std(), reference.std(), rtol=0.02)
        np.testing.assert_allclose(fresh.std(), KAIMING_GAIN[activation] / np.sqrt(fan_in), rtol=0.02)
        if distribution == 'uniform':
            assert np.abs(fresh).max() <= np.sqrt(3) * KAIMING_GAIN[activation] / np.sqrt(fan_in) * (1 + 1e-6)
    assert not np.allclose(blocks[0][0], blocks[0][1])  # different keys, different draws


def test_fresh_columns_fall_back_to_a_full_draw_for_an_unknown_initialiser():
    def init_params(key):  # not a flax model
        k0, k1 = jax.random.split(key)
        return {'hidden_0': {'kernel': jax.random.normal(k0, (IN, WIDTH)), 'bias': jnp.zeros(WIDTH)},
                'output': {'kernel': jax.random.normal(k1, (WIDTH, OUT)), 'bias': jnp.zeros(OUT)}}

    key = jax.random.PRNGKey(3)
    params = init_params(jax.random.PRNGKey(0))
    (fresh,) = reinit.fresh_incoming_weights(init_params, params, [jnp.array([2, WIDTH, 0])], key)
    full = init_params(key)['hidden_0']['kernel']
    np.testing.assert_array_equal(fresh[:, 0], full[:, 2])
    np.testing.assert_array_equal(fresh[:, 2], full[:, 0])
    np.testing.assert_array_equal(fresh[:, 1], 0.0)


def with_columns(like, columns, units):
    """A tree shaped like the params whose hidden kernels hold `columns[l][:, j]` at column `units[l][j]` (NumPy;
    units >= the width: no unit)."""
    tree = jax.tree.map(np.zeros_like, like)
    for layer, cols, idx in zip(reinit.mlp_unit_layers(like), columns, units):
        (incoming,) = layer.incoming
        kernel = tree[incoming]['kernel']
        kernel[:, idx[idx < kernel.shape[1]]] = cols[:, idx < kernel.shape[1]]
    return tree


@pytest.mark.parametrize('make', [lambda: make_optimizer(optimizer_config('sgd')),
                                  lambda: reinit.make_unit_reset_optimizer(optimizer_config('adam'))],
                         ids=['sgd_momentum', 'adam_counts'])
def test_the_sparse_rewrite_equals_the_dense_definition(make):
    """`replace_units_at` / `reset_optimizer_state_at` on unit lists (with 'no unit' fillers) give exactly what
    `replace_units` / `reset_optimizer_state(replaced_entries)` give for the same units as masks."""
    optimizer = optax.with_extra_args_support(make())
    _, init_params, _ = tiny_network(depth=2)
    params = jax.tree.map(lambda p: p + 0.5, host_params(init_params, 0))

    @jax.jit
    def two_updates(params):  # nonzero state everywhere
        state = optimizer.init(params)
        for step in range(2):
            state = optimizer.update(random_tree(jax.random.PRNGKey(step), params), state, params)[1]
        return state

    state = jax.device_get(two_updates(params))
    units = [np.array([3, WIDTH, 0], np.int32), np.array([WIDTH, 1, WIDTH], np.int32)]  # MASKS as lists
    rng = np.random.default_rng(5)
    columns = [rng.standard_normal((IN, 3)).astype(np.float32), rng.standard_normal((WIDTH, 3)).astype(np.float32)]
    replace_units_at = jax.jit(reinit.replace_units_at)
    sparse = replace_units_at(params, columns, units)
    dense = dense_reinit.replace_units(params, with_columns(params, columns, units), MASKS)
    jax.tree.map(np.testing.assert_array_equal, sparse, dense)
    sparse_state = jax.jit(lambda s, u: reinit.reset_optimizer_state_at(optimizer, s, params, u))(state, units)
    dense_state = dense_reinit.reset_optimizer_state(optimizer, state, dense_reinit.replaced_entries(params, MASKS))
    jax.tree.map(np.testing.assert_array_equal, sparse_state, dense_state)
    nothing = [np.full(3, WIDTH, np.int32), np.full(3, WIDTH, np.int32)]  # only fillers: nothing changes
    jax.tree.map(np.testing.assert_array_equal, replace_units_at(params, columns, nothing), params)


IN_ORDER_WIDTH = 6


@pytest.fixture(scope='module')
def in_order_problem():
    """3 runs of a width-6 network with nonzero params and Adam state, the units each replaces in order, and the
    optimizer; and what `reinitialize_units_in_order` gives run 0 in one chunk per layer (`chunk_sizes=None`)."""
    _, init_params, _ = tiny_network(depth=2, width=IN_ORDER_WIDTH)
    optimizer = optax.with_extra_args_support(reinit.make_unit_reset_optimizer(optimizer_config('adam')))

    @jax.jit
    def setup(keys):
        params = jax.tree.map(lambda p: p + 0.5, jax.vmap(init_params)(keys))
        state = jax.vmap(lambda p: optimizer.update(jax.tree.map(jnp.ones_like, p), optimizer.init(p), p)[1])(params)
        return params, state

    params, state = jax.device_get(setup(jax.random.split(jax.random.PRNGKey(0), 3)))
    # Run 0: layer 0 units 5, 1, 3 (1 is also replaced in layer 1, in its first chunk); run 1: nothing; run 2: 1 unit.
    orders = (np.array([[5, 1, 3, 0, 2, 4], [0, 1, 2, 3, 4, 5], [2, 6, 6, 6, 6, 6]], np.int32),
              np.array([[1, 4, 0, 2, 3, 5], [0, 1, 2, 3, 4, 5], [6, 6, 6, 6, 6, 6]], np.int32))
    counts = (np.array([3, 0, 1], np.int32), np.array([2, 0, 0], np.int32))
    keys = jax.device_get(jax.random.split(jax.random.PRNGKey(1), 3))
    runs = (params, state, orders, counts, keys)
    unchunked = jax.device_get(jax.jit(lambda *run: reinit.reinitialize_units_in_order(
        *run[:2], optimizer, *run[2:], init_params, chunk_sizes=None))(*jax.tree.map(lambda a: a[0], runs)))
    return init_params, optimizer, runs, unchunked


@pytest.mark.parametrize('chunk_sizes', [(1, 1), (2, 3)])
def test_units_are_replaced_in_order_chunk_by_chunk_all_of_them(chunk_sizes, in_order_problem):
    """`reinitialize_units_in_order` replaces `orders[l][:counts[l]]`, however many chunks it takes: the result is
    `replace_units` of all those units with some fresh columns, including where a unit of layer 0 meets a unit of
    layer 1 replaced in an earlier chunk (the later layer's fresh weight wins), and equals the result in one chunk;
    3 runs vmapped, each as alone."""
    width = IN_ORDER_WIDTH
    init_params, optimizer, runs, unchunked = in_order_problem
    params, state = runs[:2]

    def one(params, state, orders, counts, key):
        return reinit.reinitialize_units_in_order(params, state, optimizer, orders, counts, key, init_params,
                                                  chunk_sizes=chunk_sizes)

    batched = jax.device_get(jax.jit(jax.vmap(one))(*runs))
    for run in range(3):
        alone = jax.jit(one)(*jax.tree.map(lambda a: a[run], runs))
        jax.tree.map(lambda b, a: np.testing.assert_allclose(b[run], a, rtol=1e-6), batched, alone)
    # The chunks do not matter: one chunk of the layer's width gives the same result, fresh weights included.
    jax.tree.map(lambda b, a: np.testing.assert_array_equal(b[0], a), batched, unchunked)
    new_params, new_state, _, masks = jax.tree.map(lambda a: a[0], batched)
    old_params, old_state = jax.tree.map(lambda a: a[0], (params, state))
    expected_masks = [np.isin(np.arange(width), [5, 1, 3]), np.isin(np.arange(width), [1, 4])]
    jax.tree.map(np.testing.assert_array_equal, masks, tuple(expected_masks))
    dense = dense_reinit.replace_units(old_params, new_params, expected_masks)
    jax.tree.map(np.testing.assert_array_equal, new_params, dense)
    assert np.all(np.asarray(new_params['hidden_1']['kernel'])[np.ix_(expected_masks[0], expected_masks[1])] != 0)
    for layer, mask in zip(('hidden_0', 'hidden_1'), expected_masks):  # fresh columns: new, and all different
        columns = np.asarray(new_params[layer]['kernel'])[:, mask]
        assert not np.any(columns == np.asarray(old_params[layer]['kernel'])[:, mask])
        assert len(np.unique(columns[0])) == mask.sum()
    entries = dense_reinit.replaced_entries(old_params, expected_masks)
    jax.tree.map(np.testing.assert_array_equal, new_state,
                 dense_reinit.reset_optimizer_state(optimizer, old_state, entries))
    # Run 1 replaced nothing.
    jax.tree.map(lambda b, p: np.testing.assert_array_equal(b[1], p[1]), batched[:2], (params, state))


def random_draw_sizes(jaxpr) -> list[int]:
    """The sizes of the random bits drawn anywhere in a (closed) jaxpr, sub-jaxprs (cond, while, pjit) included."""
    sizes = []
    for eqn in jaxpr.eqns:
        if 'threefry' in eqn.primitive.name or 'random_bits' in eqn.primitive.name:
            sizes += [int(np.prod(v.aval.shape)) for v in eqn.outvars]
        for value in eqn.params.values():
            for sub in (value if isinstance(value, (tuple, list)) else (value,)):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    sizes += random_draw_sizes(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    sizes += random_draw_sizes(sub)
    return sizes


# ---------------------------------------------------------------------------------------------------------------
# Convolutional networks and ResNets: the same mechanism on channels, flattening and batch norm.

IMAGE_NETWORKS = {  # name -> (model, input shape): small widths and images
    'convnet': (ConvNet(num_outputs=OUT), (6, 28, 28, 1)),  # MNIST's shape: 2 x 2 ... 1 x 1 maps at conv_2
    # ResNet18's blocks with one per stage (every block type: identity and projection shortcuts): half the compile
    'resnet': (ResNet18(num_outputs=OUT, base_width=2, blocks_per_stage=1), (6, 8, 8, 3)),
}


@functools.cache
def image_network_variables(name):
    """`IMAGE_NETWORKS[name]`'s variables initialised with PRNGKey(0), as NumPy arrays: one compiled init program
    per network for all the tests (a ResNet's init takes seconds of CPU to compile)."""
    model, shape = IMAGE_NETWORKS[name]
    return jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros(shape)))


def _unit_entries(params, layers, masks):
    """Bool trees shaped like the params: per leaf, the entries a replacement of these units rewrites (incoming
    kernel and bias, batch norm scale and bias), and the outgoing entries it zeroes, built densely."""
    rewritten = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
    zeroed = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
    for layer, mask in zip(layers, masks):
        mask = np.asarray(mask)
        incoming = reinit.get_path(rewritten, layer.incoming)
        incoming['kernel'][..., mask] = True
        incoming['bias'][mask] = True
        if layer.normalization is not None:
            for field in ('scale', 'bias'):
                reinit.get_path(rewritten, layer.normalization)[field][mask] = True
        for module in layer.outgoing:
            kernel = reinit.get_path(zeroed, module)['kernel']
            view = kernel.reshape(*kernel.shape[:-2], -1, mask.size, kernel.shape[-1])  # a view: writes go through
            view[..., mask, :] = True
    return rewritten, zeroed


@pytest.fixture(scope='module', params=list(IMAGE_NETWORKS))
def replaced_image_network(request):
    """A ConvNet and a small ResNet with perturbed params and statistics, about a third of the units of every
    unit layer replaced at once (jit), with SGD momentum everywhere nonzero."""
    model, shape = IMAGE_NETWORKS[request.param]
    init_params = lambda k: model.init(k, jnp.zeros(shape))['params']

    @jax.jit
    def perturbed(variables, key):  # one compiled program instead of an eager op per leaf
        params = jax.tree.map(lambda p, r: p + 0.1 * r, variables['params'],
                              random_tree(jax.random.fold_in(key, 1), variables['params']))
        model_state = {name: jax.tree.map(lambda s, r: s + 0.1 * jnp.abs(r), value,
                                          random_tree(jax.random.fold_in(key, 2), value))
                       for name, value in variables.items() if name != 'params'}
        return params, model_state

    params, model_state = perturbed(image_network_variables(request.param), jax.random.PRNGKey(0))
    layers = model.unit_layers()
    rng = np.random.default_rng(3)
    masks = [np.concatenate([[True, False], rng.random(reinit.layer_width(params, layer) - 2) < 0.35])
             for layer in layers]
    optimizer = optax.with_extra_args_support(make_optimizer(optimizer_config('sgd')))
    opt_state = jax.jit(lambda p: optimizer.update(random_tree(jax.random.PRNGKey(4), p), optimizer.init(p), p)[1])(
        params)
    new = jax.jit(lambda p, s, m, key: reinit.reinitialize_units(p, s, optimizer, masks, key, init_params, layers,
                                                                 model_state=m))(
        params, opt_state, model_state, jax.random.PRNGKey(5))
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    return model, layers, masks, jax.device_get((params, opt_state, model_state)), jax.device_get(new), x


def test_replaced_channels_leave_the_output_as_with_their_outgoing_weights_zeroed(replaced_image_network):
    """In evaluation mode and in training mode (batch norm on the batch's statistics, running statistics updated),
    the replaced network computes what the old one computes with the replaced units' outgoing weights zeroed,
    whatever was drawn; and it differs from the old network (something was replaced)."""
    model, layers, masks, (params, _, model_state), (new_params, _, new_model_state), x = replaced_image_network
    _, zeroed = _unit_entries(params, layers, masks)
    ablated = jax.tree.map(lambda p, z: np.where(z, np.float32(0), p), params, zeroed)
    apply = jax.jit(lambda p, s: model.apply({'params': p, **s}, x)[0])
    np.testing.assert_allclose(apply(new_params, new_model_state), apply(ablated, model_state), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(apply(new_params, new_model_state) - apply(params, model_state))) > 1e-3
    if model_state:  # training mode
        train = jax.jit(lambda p, s: model.apply({'params': p, **s}, x, mutable=list(s))[0][0])
        np.testing.assert_allclose(train(new_params, new_model_state), train(ablated, model_state), rtol=1e-5,
                                   atol=1e-5)


def test_replaced_channels_weights_statistics_and_momentum(replaced_image_network):
    """Incoming kernels of replaced channels are fresh, biases 0, batch norm scale 1, bias 0, running mean 0 and
    variance 1, outgoing weights 0 (where no fresh incoming weight of a replaced reader is written); every other
    entry is as it was; the momentum is zero exactly at the rewritten and zeroed entries."""
    model, layers, masks, (params, opt_state, model_state), (new_params, new_opt_state, new_state), _ = \
        replaced_image_network
    rewritten, zeroed = _unit_entries(params, layers, masks)
    for layer, mask in zip(layers, masks):
        mask = np.asarray(mask)
        old, new = reinit.get_path(params, layer.incoming), reinit.get_path(new_params, layer.incoming)
        assert np.all(np.asarray(new['kernel'])[..., mask] != np.asarray(old['kernel'])[..., mask])
        assert np.all(np.asarray(new['bias'])[mask] == 0)
        if layer.normalization is not None:
            norm = reinit.get_path(new_params, layer.normalization)
            assert np.all(np.asarray(norm['scale'])[mask] == 1) and np.all(np.asarray(norm['bias'])[mask] == 0)
            stats = reinit.get_path(new_state['batch_stats'], layer.normalization)
            assert np.all(np.asarray(stats['mean'])[mask] == 0) and np.all(np.asarray(stats['var'])[mask] == 1)
    # Outgoing entries are 0 unless a replaced reader's fresh incoming weight was written there.
    only_zeroed = jax.tree.map(lambda z, r: z & ~r, zeroed, rewritten)
    jax.tree.map(lambda p, z: np.testing.assert_array_equal(np.asarray(p)[z], 0), new_params, only_zeroed)
    untouched = jax.tree.map(lambda r, z: ~(r | z), rewritten, zeroed)
    jax.tree.map(lambda n, o, u: np.testing.assert_array_equal(np.asarray(n)[u], np.asarray(o)[u]),
                 new_params, params, untouched)
    if model_state:  # the other running statistics are untouched
        old_flat = flax.traverse_util.flatten_dict(model_state['batch_stats'])
        new_flat = flax.traverse_util.flatten_dict(new_state['batch_stats'])
        norms = {layer.normalization: np.asarray(mask) for layer, mask in zip(layers, masks)}
        for path, value in old_flat.items():
            keep = ~norms.get(path[:-1], np.zeros(value.shape, bool))
            np.testing.assert_array_equal(np.asarray(new_flat[path])[keep], np.asarray(value)[keep])
    momentum = optax.tree_utils.tree_get(opt_state, 'trace')
    new_momentum = optax.tree_utils.tree_get(new_opt_state, 'trace')
    reset = jax.tree.map(lambda r, z: r | z, rewritten, zeroed)
    jax.tree.map(lambda n, r: np.testing.assert_array_equal(np.asarray(n)[r], 0), new_momentum, reset)
    jax.tree.map(lambda n, o, r: np.testing.assert_array_equal(np.asarray(n)[~r], np.asarray(o)[~r]),
                 new_momentum, momentum, reset)
    assert all(np.all(np.asarray(m) != 0) for m in jax.tree.leaves(momentum))


def test_conv_fresh_weights_come_from_the_layers_initialisers():
    """A channel's fresh incoming weights: the layer's own initialiser with the receptive field in fan_in (the
    ConvNet's PyTorch-default uniform bound 1/sqrt(fan_in), the ResNet's Kaiming normal std sqrt(2/fan_in))."""
    for name, index, bound_or_std in (('convnet', 1, lambda fan_in: 1 / np.sqrt(fan_in)),
                                      ('resnet', -1, lambda fan_in: np.sqrt(2 / fan_in))):  # -1: 1,152 weights
        model, shape = IMAGE_NETWORKS[name]
        init_params = lambda k: model.init(k, jnp.zeros(shape))['params']
        params = jax.eval_shape(init_params, jax.random.PRNGKey(0))
        layers = model.unit_layers()
        inits = reinit.kernel_initializers(init_params, jax.random.PRNGKey(0))
        assert {layer.incoming for layer in layers} <= set(inits)
        layer = layers[index]
        kernel = reinit.get_path(params, layer.incoming)['kernel']
        units = [jnp.arange(reinit.layer_width(params, l)) for l in layers]
        blocks = jax.jit(lambda k: reinit.fresh_incoming_weights(init_params, params, units, k, layers))(
            jax.random.PRNGKey(1))
        block = np.asarray(blocks[index])
        assert block.shape == kernel.shape
        fan_in = int(np.prod(kernel.shape[:-1]))
        if name == 'convnet':
            assert np.abs(block).max() <= bound_or_std(fan_in) and np.abs(block).max() > 0.9 * bound_or_std(fan_in)
        else:
            np.testing.assert_allclose(block.std(), bound_or_std(fan_in), rtol=0.1)
