"""The zoo's learners on PPO's two networks: continual backprop (the RL variant `cbp`) replaces the expected number
of units of both networks, never an immature one, and leaves Adam's state alone by default."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax import learners
from plasticity_jax.learners import AfterUpdateInputs, ForwardPass
from plasticity_jax.models import ActorCritic
from tests.conftest import load_config

WIDTH, OBS, ACTIONS, MATURITY, STEPS = 8, 5, 2, 3, 12
RATE = 1.0 / WIDTH  # one unit due per step of a fully mature layer


def cbp_learner(**fields):
    config = load_config('pendulum.py', 'cbp').learner
    config.maturity_threshold = MATURITY
    config.replacement_rate = RATE
    for name, value in fields.items():
        config[name] = value
    model = ActorCritic(action_size=ACTIONS, width=WIDTH)
    init_params = lambda key: model.init(key, jnp.zeros((1, OBS)))['params']
    return learners.make_learner(config, init_params, model.unit_layers()), init_params


def expected_counts(steps):
    """The fractional-carry rule in plain Python: units older than the maturity threshold are eligible, rate *
    eligible accumulates, its integer part is replaced (those units' age restarts at 0)."""
    ages, carry, total = [0] * WIDTH, 0.0, 0
    for _ in range(steps):
        ages = [a + 1 for a in ages]
        eligible = [i for i, a in enumerate(ages) if a > MATURITY]
        carry += RATE * len(eligible)
        now = min(int(np.floor(carry)), len(eligible))
        carry -= now
        for i in eligible[:now]:
            ages[i] = 0
        total += now
    return total


@pytest.fixture(scope='module')
def replay():
    """STEPS after-update calls of continual backprop on the actor-critic, with random activations (numpy, made on
    the host: two compiled programs per learner, its starting point and its after-update step)."""
    rng = np.random.default_rng(0)
    hidden_per_step = [tuple(np.maximum(rng.normal(size=(16, WIDTH)), 0).astype(np.float32) for _ in range(4))
                       for _ in range(STEPS)]

    def run(reset_optimizer_state):
        learner, init_params = cbp_learner(reset_optimizer_state=reset_optimizer_state)

        @jax.jit
        def start(key):
            """Params, an optimizer state with nonzero moments everywhere, as after some training, and the
            learner's state."""
            params = init_params(key)
            grads = jax.tree.map(jnp.ones_like, params)
            opt_state = learner.optimizer.init(params)
            _, opt_state = learner.optimizer.update(grads, opt_state, params)
            return params, opt_state, learner.after_update.init(params)

        @jax.jit
        def update(state, params, opt_state, hidden, step):
            forward = ForwardPass(outputs=None, hidden=hidden, loss=jnp.zeros(()), model_state={})
            return learner.after_update.update(state, AfterUpdateInputs(
                params=params, opt_state=opt_state, forward=forward, key=jax.random.PRNGKey(step)))

        params, opt_state, state = start(jax.random.PRNGKey(0))
        history = []
        for step, hidden in enumerate(hidden_per_step):
            new_state, new_params, new_opt_state, _ = update(state, params, opt_state, hidden, step)
            history.append((state, new_state, params, new_params, opt_state, new_opt_state))
            state, params, opt_state = new_state, new_params, new_opt_state
        return history

    return {reset: run(reset) for reset in (False, True)}


def test_continual_backprop_replaces_the_expected_number_on_both_networks(replay):
    final_state = replay[False][-1][1]
    assert len(final_state) == 4  # policy hidden_0, hidden_1, value hidden_0, hidden_1
    for layer in final_state:
        assert int(layer.num_replaced) == expected_counts(STEPS) > 0


def test_continual_backprop_never_replaces_an_immature_unit(replay):
    for before, after, *_ in replay[False]:
        for old, new in zip(before, after):
            replaced = np.asarray(new.age) == 0
            assert np.all(np.asarray(old.age)[replaced] + 1 > MATURITY)


def test_replaced_units_are_fresh_in_both_networks(replay):
    before, after, params, new_params, *_ = replay[False][-1]
    replaced_any = False
    for l, (network, layer) in enumerate([('policy', 0), ('policy', 1), ('value', 0), ('value', 1)]):
        replaced = np.asarray(after[l].age) == 0
        following = f'hidden_{layer + 1}' if layer == 0 else 'output'
        rows = np.asarray(new_params[network][following]['kernel'])[replaced]
        if layer == 0:  # where the next layer's unit was replaced too, its fresh incoming weight wins
            rows = rows[:, np.asarray(after[l + 1].age) != 0]
        np.testing.assert_array_equal(rows, 0.0)
        np.testing.assert_array_equal(np.asarray(new_params[network][f'hidden_{layer}']['bias'])[replaced], 0.0)
        replaced_any |= replaced.any()
    assert replaced_any


def test_adam_state_is_left_alone_by_default_and_reset_on_request(replay):
    for *_, opt_state, new_opt_state in replay[False]:
        jax.tree.map(np.testing.assert_array_equal, opt_state, new_opt_state)
    # With the reset, the moments of a replaced unit's incoming weights are zeroed.
    _, after, _, _, _, new_opt_state = next(step for step in replay[True] if int(step[1][0].num_replaced) > 0)
    replaced = np.asarray(after[0].age) == 0
    moments = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(new_opt_state)
               if "'policy'" in jax.tree_util.keystr(path) and "'hidden_0'" in jax.tree_util.keystr(path)
               and leaf.shape == (OBS, WIDTH)]
    assert moments and all(np.all(np.asarray(m)[:, replaced] == 0) for m in moments)


@pytest.fixture(scope='module')
def params_and_inputs():
    model = ActorCritic(action_size=ACTIONS, width=WIDTH)
    make = jax.jit(lambda key: (model.init(key, jnp.zeros((1, OBS)))['params'],
                                jax.random.normal(jax.random.fold_in(key, 1), (16, OBS))))
    return make(jax.random.PRNGKey(0))


@pytest.mark.parametrize('name', sorted(set(learners.LEARNERS) - {'l2_er'}))
def test_every_learner_steps_on_the_two_networks(name, params_and_inputs):
    """One learner step of each of the zoo's learners on PPO's params {'policy', 'value', 'log_std'}: finite, and
    the params move. (L2-ER asks for an auxiliary batch, which RL runs refuse.) One compiled program per learner:
    its state's initialisation and the step."""
    config = load_config('pendulum.py', name).learner
    if name == 'upgd':  # UPGD is its own optimizer, on top of SGD (learners.upgd)
        config.optimizer = 'sgd'
    model = ActorCritic(action_size=ACTIONS, width=WIDTH)
    init_params = lambda key: model.init(key, jnp.zeros((1, OBS)))['params']
    learner = learners.make_learner(config, init_params, model.unit_layers())
    params, x = params_and_inputs

    def loss_fn(p):
        outputs, hidden = model.apply({'params': p}, x)
        loss = jnp.mean(outputs['mean'] ** 2) + jnp.mean((outputs['value'] - 1.0) ** 2) + jnp.sum(outputs['log_std'])
        return loss, ForwardPass(outputs=outputs, hidden=hidden, loss=loss, model_state={})

    @jax.jit
    def step(params):
        opt_state, learner_state = learner.optimizer.init(params), learner.after_update.init(params)
        objective = learner.objective(loss_fn)
        (_, forward), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = learner.optimizer.update(
            grads, opt_state, params, key=jax.random.PRNGKey(2),
            grad_fn=lambda p, _: jax.grad(objective, has_aux=True)(p)[0], task_progress=0.0)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        learner_state, params, opt_state, _ = learner.after_update.update(
            learner_state, AfterUpdateInputs(params=params, opt_state=opt_state, forward=forward,
                                             key=jax.random.PRNGKey(3)))
        return params

    new_params = step(params)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(new_params))
    assert not np.allclose(new_params['policy']['hidden_0']['kernel'], params['policy']['hidden_0']['kernel'])
    assert not np.allclose(new_params['log_std'], params['log_std'])
