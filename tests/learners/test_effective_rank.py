"""L2-ER: the feature effective rank term (values, gradients, batch size 1), the objective and alternating modes."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_jax import engine, learners
from plasticity_jax.learners import ForwardPass
from plasticity_jax.learners.effective_rank import feature_erank
from tests.conftest import load_config

_keys = jax.random.split(jax.random.PRNGKey(1), 6)
PARAMS = {'hidden_0': {'kernel': jax.random.normal(_keys[0], (3, 4)), 'bias': jnp.full((4,), 0.1)},
          'hidden_1': {'kernel': jax.random.normal(_keys[1], (4, 4)) / 2, 'bias': jnp.zeros((4,))},
          'output': {'kernel': jax.random.normal(_keys[2], (4, 2)), 'bias': jnp.zeros((2,))}}
X = jax.random.normal(_keys[3], (6, 3))
Y = jax.random.normal(_keys[4], (6, 2))


def loss_fn_for(x, y):
    def loss_fn(params):
        h0 = jnp.tanh(x @ params['hidden_0']['kernel'] + params['hidden_0']['bias'])
        h1 = jnp.tanh(h0 @ params['hidden_1']['kernel'] + params['hidden_1']['bias'])
        outputs = h1 @ params['output']['kernel'] + params['output']['bias']
        loss = jnp.mean((outputs - y) ** 2)
        return loss, ForwardPass(outputs=outputs, hidden=(h0, h1), loss=loss, model_state={})
    return loss_fn


LOSS_FN = loss_fn_for(X, Y)
# Compiled once for the tests that evaluate them (not an eager op at a time).
erank = jax.jit(feature_erank, static_argnums=1)
forward = jax.jit(lambda params: LOSS_FN(params)[1])


def numpy_erank(matrix):
    values = np.clip(np.linalg.eigvalsh(np.asarray(matrix, np.float64)), 0, None)
    p = values / values.sum()
    return np.exp(-np.sum(p * np.log(p + 1e-8)))


def second_moment(a):
    a = np.asarray(a, np.float64)
    return a.T @ a / a.shape[0]


@pytest.mark.parametrize('batch', [3, 6])  # 3 < width: through the Gram matrix; 6 > width: the covariance
def test_erank_of_the_summed_and_of_each_layers_second_moment(batch):
    hidden = jax.device_get(forward(PARAMS).hidden)
    hidden = tuple(h[:batch] for h in hidden)
    summed = numpy_erank(second_moment(hidden[0]) + second_moment(hidden[1]))
    assert float(erank(hidden, 'sum')) == pytest.approx(summed, rel=1e-4)
    per_layer = numpy_erank(second_moment(hidden[0])) + numpy_erank(second_moment(hidden[1]))
    assert float(erank(hidden, 'per_layer')) == pytest.approx(per_layer, rel=1e-4)
    assert 1.0 <= float(erank(hidden, 'sum')) <= 4.0


def test_gradient_matches_finite_differences_and_is_finite_at_repeated_eigenvalues():
    features = (np.asarray(jax.random.normal(_keys[5], (6, 4))),)
    erank_grad = jax.jit(jax.grad(lambda f: feature_erank((f,))))
    grad = erank_grad(features[0])
    direction = np.random.default_rng(9).standard_normal((6, 4)).astype(np.float32)
    h = 1e-3
    numeric = (erank((features[0] + h * direction,), 'sum') - erank((features[0] - h * direction,), 'sum')) / (2 * h)
    assert float(np.sum(grad * direction)) == pytest.approx(float(numeric), rel=1e-2, abs=1e-4)
    # Two dead units (zero columns) give two zero eigenvalues: the gradient stays finite.
    dead = features[0].copy()
    dead[:, :2] = 0.0
    assert np.all(np.isfinite(erank_grad(dead)))


def test_batch_size_one_has_erank_one_and_zero_gradient(caplog):
    one = (jnp.array([[0.5, 1.0, 0.0, 2.0]]),)
    assert float(erank(one, 'sum')) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda f: feature_erank((f,))))(one[0]), 0.0, atol=1e-6)
    learner = learners.make_learner(learner_config(), None)
    with caplog.at_level('WARNING'):  # said when the objective is built (traced)
        jax.jit(learner.objective(loss_fn_for(X[:1], Y[:1])))(PARAMS)
    assert 'a rank batch of 1 example' in caplog.text


def learner_config(**fields):
    config = ml_collections.ConfigDict({'name': 'l2_er', 'optimizer': 'sgd', 'step_size': 0.1, 'momentum': 0.0,
                                        'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8, 'weight_decay': 0.01,
                                        'erank_coef': 0.5, 'erank_layers': 'sum', 'l2_er_mode': 'objective'})
    config.update(fields)
    return config


def engine_like_step(learner):
    """What the engine does with the learner's hooks in one step (compiled)."""
    def one_step(state):
        objective = learner.objective(LOSS_FN)
        grad_fn = lambda p, _: jax.grad(objective, has_aux=True)(p)[0]
        return learner.optimizer.update(grad_fn(PARAMS, 0), state, PARAMS, key=jax.random.PRNGKey(0),
                                        grad_fn=grad_fn)
    return jax.jit(one_step)


@jax.jit
def task_grad(params):
    return jax.grad(lambda p: LOSS_FN(p)[0])(params)


@jax.jit
def rank_grad(params, coef=0.5):
    return jax.grad(lambda p: -coef * feature_erank(LOSS_FN(p)[1].hidden))(params)


def test_objective_mode_is_loss_minus_coef_erank_plus_weight_decay():
    learner = learners.make_learner(learner_config(), None)
    value, joint_forward = jax.jit(learner.objective(LOSS_FN))(PARAMS)
    loss = forward(PARAMS).loss
    assert float(value) == pytest.approx(float(loss) - 0.5 * float(erank(joint_forward.hidden, 'sum')), rel=1e-6)
    updates, _ = engine_like_step(learner)(jax.jit(learner.optimizer.init)(PARAMS))
    expected = jax.tree.map(lambda t, r, p: -0.1 * (t + r + 0.01 * p), *jax.device_get((task_grad(PARAMS),
                                                                                          rank_grad(PARAMS), PARAMS)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), updates, expected)
    assert float(jnp.abs(rank_grad(PARAMS)['hidden_0']['kernel']).max()) > 1e-3  # the rank term does act


def test_alternating_mode_follows_the_task_loss_then_the_rank_term():
    learner = learners.make_learner(learner_config(l2_er_mode='alternating'), None)
    state = jax.jit(learner.optimizer.init)(PARAMS)
    step = engine_like_step(learner)
    first, state = step(state)
    second, state = step(state)
    third, _ = step(state)
    task, rank, params = jax.device_get((task_grad(PARAMS), rank_grad(PARAMS), PARAMS))
    expected_task = jax.tree.map(lambda t, p: -0.1 * (t + 0.01 * p), task, params)
    expected_rank = jax.tree.map(lambda r, p: -0.1 * (r + 0.01 * p), rank, params)
    for got, want in ((first, expected_task), (second, expected_rank), (third, expected_task)):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)
    # Outside the optimizer's own grad_fn calls the objective is the joint one (what the engine logs).
    value, _ = jax.jit(learner.objective(LOSS_FN))(PARAMS)
    assert float(value) < float(forward(PARAMS).loss)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match='l2_er_mode'):
        learners.make_learner(learner_config(l2_er_mode='both'), None)
    with pytest.raises(ValueError, match='erank_layers'):
        learners.make_learner(learner_config(erank_layers='mean'), None)
    with pytest.raises(ValueError, match='equal widths'):
        feature_erank((jnp.ones((2, 3)), jnp.ones((2, 4))), 'sum')


def test_config_variant_runs_through_the_engine_with_minibatches(tmp_path):
    """One engine run (compile time): alternating mode exercises both the joint objective (what the engine
    differentiates and logs) and the optimizer's switched grad_fn calls inside lax.scan and vmap."""
    config = load_config('slowly_changing_regression.py', 'l2_er')
    assert (config.learner.name, config.learner.l2_er_mode, config.learner.weight_decay) == ('l2_er', 'objective', 1e-3)
    config.learner.l2_er_mode = 'alternating'
    config.num_seeds, config.num_tasks, config.tasks_per_chunk = 2, 2, 2
    config.problem.examples_per_task, config.problem.batch_size, config.metrics.probe_size = 200, 4, 32
    metrics = engine.run(config, str(tmp_path), progress=False)
    assert np.all(np.isfinite(metrics['online_mse'])) and np.all(metrics['nonfinite_steps'] == 0)


def test_rank_term_uses_the_auxiliary_batch_when_the_loss_function_has_one():
    aux_x = jax.random.normal(jax.random.PRNGKey(7), (5, 3))

    def with_auxiliary(params):
        loss, forward = LOSS_FN(params)
        return loss, forward._replace(auxiliary_hidden=loss_fn_for(aux_x, Y[:5])(params)[1].hidden)

    config = ml_collections.ConfigDict({'name': 'l2_er', 'optimizer': 'sgd', 'step_size': 0.1, 'momentum': 0.0})
    learner = learners.make_learner(config, None)
    assert learner.auxiliary_batch_size == 100  # the authors' er_batch
    penalised, _ = jax.jit(learner.objective(with_auxiliary))(PARAMS)
    aux_hidden = jax.jit(lambda params: loss_fn_for(aux_x, Y[:5])(params)[1].hidden)(PARAMS)
    want = float(forward(PARAMS).loss) - 0.01 * float(erank(aux_hidden, 'sum'))
    assert float(penalised) == pytest.approx(want, rel=1e-5)
    config.rank_batch_size = 0
    assert learners.make_learner(config, None).auxiliary_batch_size == 0
    config.rank_batch_size = -1
    with pytest.raises(ValueError, match='rank_batch_size'):
        learners.make_learner(config, None)


def test_with_a_rank_batch_l2_er_differs_from_l2_in_a_batch_size_one_stream():
    """Slowly-Changing Regression trains with batch size 1: without a rank batch L2-ER is exactly L2 (the rank of
    one example's a a^T is 1), with the default rank batch of 100 examples its rank term moves the params."""
    def final_params(**learner_fields):
        config = load_config('slowly_changing_regression.py', 'l2_er')
        config.num_seeds, config.num_tasks, config.problem.examples_per_task = 1, 1, 50
        config.learner.update(learner_fields)
        train = engine.make_train(config)
        # The initial state eagerly: its small ops are compiled once for all the SCR networks, not a program each.
        state, _ = engine.make_vmapped(train)(jax.vmap(train.init)(engine.seed_keys(config)), 1)
        return jax.flatten_util.ravel_pytree(state.params)[0]

    with_rank_batch = final_params()
    on_the_training_batch = final_params(rank_batch_size=0)
    plain_l2 = final_params(rank_batch_size=0, erank_coef=0.0)
    np.testing.assert_allclose(on_the_training_batch, plain_l2, rtol=1e-6, atol=1e-7)
    assert not np.allclose(with_rank_batch, plain_l2, rtol=1e-4, atol=1e-6)
