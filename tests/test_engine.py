"""The engine: determinism, seed independence, resume after a kill, and the learner extension points."""

import dataclasses
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from plasticity_jax import engine, learners, models
from plasticity_jax.learners import AfterUpdate
from plasticity_jax.results import load_run
from tests.conftest import REPO_ROOT, USERS_CODEGEN, load_config, small_scr


def initial_state(train, config):
    """Every run's initial state (`train.init` of each seed's key)."""
    return jax.jit(jax.vmap(train.init))(engine.seed_keys(config))


def assert_same_metrics(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope='module')
def small_scr_in_two_runs(tmp_path_factory):
    """`small_scr()` started afresh for 2 tasks, then extended to 4 in the same workdir: (metrics after the first
    command, metrics after the second)."""
    workdir = str(tmp_path_factory.mktemp('small_scr_extended'))
    first = engine.run(small_scr(num_tasks=2), workdir, progress=False)
    return first, engine.run(small_scr(num_tasks=4), workdir, progress=False)


def test_run_writes_every_metric_with_seed_and_task_axes(small_scr_run):
    run = load_run(str(small_scr_run.workdir))
    assert (run.config.num_seeds, run.config.problem.examples_per_task) == (2, 300)  # the run's config, not defaults
    width = run.config.model.width
    m = run.metrics
    assert_same_metrics(m, small_scr_run.metrics)
    for name in ('online_mse', 'online_loss', 'nonfinite_steps', 'weight_magnitude'):
        assert m[name].shape == (2, 4), name
    for name in ('dead_fraction', 'effective_rank', 'approximate_rank', 'stable_rank', 'feature_rank'):
        assert m[name].shape == (2, 4, 1), name
    assert np.all(m['online_mse'] > 0) and np.all(np.isfinite(m['online_mse']))
    assert np.all((m['dead_fraction'] >= 0) & (m['dead_fraction'] <= 1))
    assert np.all(m['effective_rank'] <= width) and np.all(m['effective_rank'] >= 1)
    assert run.num_tasks_done == 4 and run.diverged_seeds.size == 0


def test_same_seed_gives_identical_results_and_seeds_differ(tmp_path, small_scr_run, small_scr_in_two_runs):
    """A fresh run of the same config (the first command of `small_scr_in_two_runs`, 2 tasks) repeats the
    fixture's run bit for bit; the seeds of a run differ, and so does another base seed."""
    first, second = small_scr_run.metrics, small_scr_in_two_runs[0]
    assert_same_metrics({name: values[:, :2] for name, values in first.items()}, second)
    assert not np.array_equal(first['online_mse'][0], first['online_mse'][1])
    other_base_seed = engine.run(small_scr(seed=1, num_tasks=2), str(tmp_path / 'c'), progress=False)
    assert not np.array_equal(first['online_mse'][:, :2], other_base_seed['online_mse'])


@pytest.fixture(scope='module')
def three_seeds():
    """`small_scr(num_seeds=3, num_tasks=2)` as one in-process program (`engine.make_vmapped`): (config, its
    initial state, the program, the clean run's metrics)."""
    config = small_scr(num_seeds=3, num_tasks=2)
    train = engine.make_train(config)
    run_chunk = engine.make_vmapped(train)
    initial = initial_state(train, config)
    return config, initial, run_chunk, jax.device_get(run_chunk(initial, 2)[1])


def test_seed_results_do_not_depend_on_how_many_seeds_run(small_scr_run, three_seeds):
    two = small_scr_run.metrics  # 2 seeds, run by engine.run
    three = three_seeds[-1]
    np.testing.assert_allclose(two['online_mse'][:, :2], three['online_mse'][:2], rtol=1e-6)


def test_extending_a_finished_run_equals_running_it_whole(small_scr_run, small_scr_in_two_runs):
    assert_same_metrics(small_scr_run.metrics, small_scr_in_two_runs[1])


def test_resuming_with_a_different_config_is_refused(tmp_path, small_scr_run):
    shutil.copytree(small_scr_run.workdir, tmp_path / 'run')
    with pytest.raises(ValueError, match='learner'):
        engine.run(small_scr(**{'learner.step_size': 0.5}), str(tmp_path / 'run'), progress=False)


def _finished_checkpoints(workdir):
    directory = pathlib.Path(workdir) / engine.CHECKPOINT_DIR
    return sorted(int(p.name) for p in directory.glob('*') if p.name.isdigit()) if directory.exists() else []


def test_nonfinite_seed_does_not_touch_other_seeds(three_seeds):
    config, clean, run_chunk, clean_metrics = three_seeds

    def poison_seed_1(p):
        p = np.array(p)
        p[1] = np.nan
        return p

    poisoned = clean._replace(params=jax.tree.map(poison_seed_1, clean.params))
    _, poisoned_metrics = run_chunk(poisoned, 2)
    assert np.all(np.asarray(poisoned_metrics['nonfinite_steps'][1]) == config.problem.examples_per_task)
    for name in clean_metrics:
        np.testing.assert_array_equal(clean_metrics[name][0::2], poisoned_metrics[name][0::2], err_msg=name)


def test_nonfinite_losses_are_reported_per_seed(tmp_path, caplog):
    """A step size large enough to diverge: every seed is reported on the console and in the results."""
    config = small_scr(num_tasks=2, **{'learner.step_size': 1e6, 'model.activation': 'identity'})
    with caplog.at_level('WARNING'):
        engine.run(config, str(tmp_path), progress=False)
    run = load_run(str(tmp_path))
    assert list(run.diverged_seeds) == [0, 1]
    assert 'seed 0:' in caplog.text and 'seed 1:' in caplog.text


# -------------------------------------------------------------------------------------------------------------
# The learner extension points, exercised through a learner the engine has never seen.

def _hooked_learner(config, init_params):
    """A learner unknown to the engine: it moves only `hidden_0`'s bias towards 1 (through its objective), counts
    steps and zeroes the output bias (through its after-update routine), and checks the optimizer's extra args."""

    def objective(loss_fn):
        def pull_bias_to_one(params):
            loss, forward = loss_fn(params)
            return 0.0 * loss + jnp.sum((params['hidden_0']['bias'] - 1.0) ** 2), forward
        return pull_bias_to_one

    def update(updates, state, params=None, *, key, grad_fn, task_progress):
        del key, task_progress  # Required: the engine must pass them.
        mismatch = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), grad_fn(params, 0), updates)
        return jax.tree.map(lambda g: -0.01 * g, updates), jnp.maximum(state, jax.tree.reduce(jnp.maximum, mismatch))

    def after_update(state, inputs):
        output = {**inputs.params['output'], 'bias': jnp.zeros_like(inputs.params['output']['bias'])}
        return (state + inputs.forward.hidden[0].shape[0], {**inputs.params, 'output': output}, inputs.opt_state,
                inputs.forward.model_state)

    return learners.Learner(
        optimizer=optax.GradientTransformationExtraArgs(lambda params: jnp.zeros(()), update),
        objective=objective,
        after_update=AfterUpdate(init=lambda params: jnp.zeros((), jnp.int32), update=after_update))


def test_engine_runs_a_new_learner_through_its_hooks(monkeypatch):
    monkeypatch.setitem(learners.LEARNERS, 'hooked', learners.LearnerSpec(_hooked_learner))
    config = small_scr(num_tasks=2, **{'learner.name': 'hooked'})
    train = engine.make_train(config)
    initial = initial_state(train, config)
    final, _ = engine.make_vmapped(train)(initial, 2)
    steps = 2 * config.problem.examples_per_task
    np.testing.assert_array_equal(final.learner_state, [steps, steps])  # after_update ran once per step
    assert np.all(np.asarray(final.params['output']['bias']) == 0)  # ... and its params were kept
    assert np.all(np.asarray(final.opt_state) < 1e-6)  # grad_fn is the gradient the optimizer received
    # Only the objective's term was differentiated: hidden_0's bias reached 1, its kernel never moved.
    np.testing.assert_allclose(final.params['hidden_0']['bias'], 1.0, atol=1e-4)
    np.testing.assert_array_equal(final.params['hidden_0']['kernel'], initial.params['hidden_0']['kernel'])


def test_in_run_hessian_spectrum_matches_the_dense_hessian_at_the_start_of_a_task(curvature_run):
    config, workdir, m = curvature_run
    top = np.asarray(m['hessian_top_eigenvalue'])
    assert top.shape == (2, 3, 2)  # (seed, task, start/end)
    assert np.all(np.isnan(top[:, 1])) and np.all(np.isfinite(top[:, [0, 2]]))
    assert m['hessian_density'].shape[:3] == (2, 3, 2)
    assert m['hessian_epsilon_rank'].shape == (2, 3, 2, len(config.curvature.epsilons))

    # Seed 0, task 0, start: rebuild the probe set the engine used and diagonalise the Hessian densely.
    train = engine.make_train(config)

    @jax.jit
    def dense_hessian(key):
        state = train.init(key)
        keys = engine.task_keys(state.key, 0)
        problem_state = train.problem.start_task(train.data, state.problem_state, 0, keys.start)
        probe = dataclasses.replace(train.problem, batch_size=config.curvature.probe_size)
        x, y = probe.batch(train.data, problem_state, jnp.zeros((), jnp.int32), keys.curvature)
        flat, unravel = jax.flatten_util.ravel_pytree(state.params)
        model = models.make_model(config.model, 1)
        loss = lambda f: jnp.mean((model.apply({'params': unravel(f)}, x)[0] - y) ** 2)
        return jax.hessian(loss)(flat)

    eigenvalues = np.linalg.eigvalsh(np.asarray(dense_hessian(engine.seed_keys(config)[0]), np.float64))
    np.testing.assert_allclose(top[0, 0, 0], eigenvalues[-1], rtol=1e-3)
    trace = np.asarray(m['hessian_trace'])[0, 0, 0]
    assert abs(trace - eigenvalues.sum()) < 5 * np.asarray(m['hessian_trace_stderr'])[0, 0, 0] + 1e-3


def test_spectra_from_checkpoints_equal_the_in_run_measurement(curvature_run):
    """`python -m plasticity_jax.spectra` on the checkpoints gives the in-run "start of task" numbers exactly."""
    _, workdir, in_run = curvature_run
    result = subprocess.run([sys.executable, '-m', 'plasticity_jax.spectra', f'--workdir={workdir}', '--tasks=0,2'],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    spectra = load_run(str(workdir)).spectra
    np.testing.assert_array_equal(spectra['task'], [0, 2])
    for name in ('hessian_top_eigenvalue', 'hessian_trace', 'hessian_epsilon_rank', 'hessian_density',
                 'ggn_exact_trace', 'ggn_exact_epsilon_count'):
        np.testing.assert_allclose(spectra[name], in_run[name][:, [0, 2], 0], rtol=1e-5, atol=1e-7, err_msg=name)
    # The GGN's eigenvalues to float32 round-off of the largest: those below it (its null space, ~1e-7 here) are
    # round-off whose value depends on how XLA orders each program's sums.
    top = in_run['ggn_exact_top_eigenvalues'][:, [0, 2], 0]
    np.testing.assert_allclose(spectra['ggn_exact_top_eigenvalues'], top, rtol=1e-5, atol=1e-6 * np.abs(top).max())
    assert (spectra['ggn_exact_epsilon_count'] <= 12).all()  # at most N C = 12 nonzero eigenvalues


def test_spectra_refuse_bad_tasks_and_settings_before_any_work(tmp_path, curvature_run):
    from plasticity_jax import spectra

    with pytest.raises(ValueError, match=re.escape("--tasks=0,x: ['x'] are not task indices; give numbers such as")):
        spectra.compute_spectra(str(tmp_path / 'not_a_run'), tasks=['0', 'x'])
    _, workdir, _ = curvature_run
    with pytest.raises(ValueError, match=re.escape("['ordr'] are not curvature settings; valid: ")):
        spectra.compute_spectra(str(workdir), ordr=4)


# ----------------------------------------------------------------------------------------------------------------
# Tasks of unequal length, hidden outputs and resets at the start of a task, on a tiny generated dataset.

TINY_TRAIN_COUNTS = (5, 9, 3, 6)


def _tiny_dataset_tasks(config):
    from plasticity_jax.problems import dataset_tasks

    rng = np.random.default_rng(0)
    train_y = np.repeat(np.arange(4), config.problem.train_counts)
    test_y = np.repeat(np.arange(4), 2)
    data = dataset_tasks.make_data(rng.integers(0, 256, (len(train_y), 2, 2, 1)), train_y,
                                   rng.integers(0, 256, (len(test_y), 2, 2, 1)), test_y, num_classes=4)
    problem = dataset_tasks.DatasetTasks.create(data, schedule=config.problem.schedule, epochs=2, batch_size=2,
                                                probe_size=4, classes_per_increment=1)
    return problem, data


def tiny_tasks(monkeypatch, schedule, train_counts=TINY_TRAIN_COUNTS, **overrides):
    from plasticity_jax import problems

    monkeypatch.setitem(problems.PROBLEMS, 'tiny', _tiny_dataset_tasks)
    config = small_scr(**{'model.width': 5, 'learner.step_size': 0.1, **overrides})
    config.problem = ml_collections.ConfigDict({'name': 'tiny', 'schedule': schedule, 'train_counts': train_counts})
    return config


def _counting_learner(config, init_params):
    """Plain SGD whose after-update routine counts the steps it ran."""
    learner = learners.make_learner(ml_collections.ConfigDict({**config, 'name': 'backprop'}), init_params)
    count = AfterUpdate(init=lambda params: jnp.zeros((), jnp.int32),
                        update=lambda state, inputs: (state + 1, inputs.params, inputs.opt_state,
                                                      inputs.forward.model_state))
    return learner._replace(after_update=count)


@pytest.mark.parametrize('train_counts', [TINY_TRAIN_COUNTS, (4, 4, 4, 4)])
def test_steps_past_the_task_length_leave_the_run_unchanged(monkeypatch, train_counts):
    monkeypatch.setitem(learners.LEARNERS, 'counting', learners.LearnerSpec(_counting_learner))
    config = tiny_tasks(monkeypatch, 'all_pairs', train_counts, **{'learner.name': 'counting'})
    train = engine.make_train(config)
    assert train.problem.steps_per_task == 2 * -(-(9 + 6 if train_counts == TINY_TRAIN_COUNTS else 8) // 2)
    state = initial_state(train, config)
    active_steps = jax.jit(jax.vmap(lambda s: train.problem.active_steps(train.data, train.problem.start_task(
        train.data, s.problem_state, s.task_index, engine.task_keys(s.key, s.task_index).start), s.task_index)))
    run = engine.make_vmapped(train)
    for _ in range(3):
        expected = active_steps(state)
        before = np.asarray(state.learner_state)
        state, metrics = run(state, 1)
        np.testing.assert_array_equal(np.asarray(state.learner_state) - before, expected)
        assert np.all(np.isfinite(metrics['online_accuracy'])) and np.all(metrics['online_accuracy'] <= 1)


def test_unseen_classes_get_no_gradient(monkeypatch):
    config = tiny_tasks(monkeypatch, 'class_increments')
    train = engine.make_train(config)
    state = initial_state(train, config)
    final, _ = jax.device_get(engine.make_vmapped(train)(state, 2))  # the first two classes of each seed's order
    state = jax.device_get(state)
    for run in range(config.num_seeds):
        seen = final.problem_state['class_order'][run, :2]
        moved = np.any(final.params['output']['kernel'][run] != state.params['output']['kernel'][run], axis=0)
        np.testing.assert_array_equal(moved, np.isin(np.arange(4), seen))


def _tiny_validated_tasks(config):
    """Class increments of 2 of 4 classes, each with 4 training, 2 test and 3 validation images of 2x2 random pixels
    (equal classes: the validation period depends on the task index alone, a real branch under vmap)."""
    from plasticity_jax.problems import dataset_tasks

    rng = np.random.default_rng(1)
    split = lambda per_class: (rng.integers(0, 256, (4 * per_class, 2, 2, 1)), np.repeat(np.arange(4), per_class))
    data = dataset_tasks.make_data(*split(4), *split(2), num_classes=4, validation=split(3))
    problem = dataset_tasks.DatasetTasks.create(data, schedule='class_increments', epochs=config.problem.epochs,
                                                batch_size=2, probe_size=4, classes_per_increment=2,
                                                early_stopping=config.problem.early_stopping)
    return problem, data


def _validated_train(monkeypatch, early_stopping, epochs=6):
    from plasticity_jax import problems

    monkeypatch.setitem(problems.PROBLEMS, 'tiny_validated', _tiny_validated_tasks)
    config = small_scr(**{'model.width': 5, 'learner.step_size': 0.5, 'num_seeds': 4})
    config.problem = ml_collections.ConfigDict({'name': 'tiny_validated', 'epochs': epochs,
                                                'early_stopping': early_stopping})
    return engine.make_train(config), config


def test_early_stopping_carries_the_best_validation_network_of_each_task(monkeypatch):
    """Scored after every epoch inside the program, per seed: the network carried on is the first one of the task's
    best validation accuracy, i.e. the network of a task stopped after that epoch."""
    train, config = _validated_train(monkeypatch, True)
    state = initial_state(train, config)
    selected, metrics = jax.device_get(engine.make_vmapped(train)(state, 1))
    epoch, accuracy = metrics['validation_epoch'][:, 0], metrics['validation_accuracy'][:, 0]
    assert np.all((epoch >= 0) & (epoch <= 5)) and epoch.min() < epoch.max(), epoch
    model = models.make_model(config.model, train.problem.num_outputs)
    validate = jax.jit(jax.vmap(lambda s: train.problem.validate(train.data, s.problem_state, lambda x: (
        train.problem.task_outputs(s.problem_state, model.apply({'params': s.params, **s.model_state}, x)[0])))))
    np.testing.assert_array_equal(validate(selected), accuracy)

    stopped_train, _ = _validated_train(monkeypatch, False, epochs=int(epoch.min()) + 1)
    stopped, stopped_metrics = jax.device_get(engine.make_vmapped(stopped_train)(state, 1))
    first = epoch == epoch.min()
    np.testing.assert_array_equal(stopped_metrics['validation_epoch'][first, 0], epoch[first])
    np.testing.assert_array_equal(stopped_metrics['validation_accuracy'][first, 0], accuracy[first])
    assert np.all(stopped_metrics['validation_accuracy'][~first, 0] < accuracy[~first])  # strictly better later
    for seed in np.flatnonzero(first):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[seed], b[seed], rtol=1e-6, atol=1e-7),
                     selected.params, stopped.params)


@pytest.mark.slow  # a third compiled program; the selection lives within a task, so this holds by construction
def test_early_stopping_survives_a_chunk_boundary(monkeypatch):
    """Two tasks at once equal one and then one, as across a checkpoint: the next task starts from the selected
    network held in the RunState."""
    train, config = _validated_train(monkeypatch, True)
    state = initial_state(train, config)
    run = engine.make_vmapped(train)
    first, _ = run(state, 1)
    twice, second = run(first, 1)
    at_once, both = run(state, 2)
    jax.tree.map(np.testing.assert_array_equal, twice, at_once)
    for name in second:
        np.testing.assert_array_equal(second[name][:, 0], both[name][:, 1], err_msg=name)


def test_head_reset_zeroes_the_output_layer_at_every_task_start(monkeypatch):
    config = tiny_tasks(monkeypatch, 'consecutive_pairs', reset_at_task_start='head', **{'learner.step_size': 0.0})
    train = engine.make_train(config)
    state = initial_state(train, config)
    final, _ = engine.make_vmapped(train)(state, 2)
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(final.params['output']))
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(state.params['output']))
    np.testing.assert_array_equal(final.params['hidden_0']['kernel'], state.params['hidden_0']['kernel'])


def test_network_reset_makes_a_task_independent_of_the_past(monkeypatch):
    config = tiny_tasks(monkeypatch, 'warm_start', reset_at_task_start='network')
    train = engine.make_train(config)
    run = engine.make_vmapped(train)
    after_first, _ = run(initial_state(train, config), 1)
    _, second = run(after_first, 1)
    scrambled = after_first._replace(params=jax.tree.map(lambda p: 3.0 * np.asarray(p) + 1.0, after_first.params))
    _, second_from_scrambled = run(scrambled, 1)
    assert_same_metrics(second, second_from_scrambled)
    config.reset_at_task_start = 'none'
    _, warm = engine.make_vmapped(engine.make_train(config))(scrambled, 1)
    assert not np.array_equal(warm['test_accuracy'], second['test_accuracy']) or not np.array_equal(
        warm['online_loss'], second['online_loss'])


def test_unknown_reset_is_refused():
    with pytest.raises(ValueError, match="unknown reset_at_task_start 'all'.*'network'"):
        engine.make_train(small_scr(reset_at_task_start='all'))


def test_online_norm_control_state_advances_with_the_backward_pass():
    """Online Normalization's control accumulator e^(1) (`u`) is the sum of the gradients the backward pass sent
    below the norm (Eq. 12b). With plain SGD the dense layer's bias under the norm moves by -step size times that
    same sum, so after a task bias_end - bias_start = -lr u_end exactly (u starts at 0): the engine advanced the
    state with each step's backward pass, once per step."""
    config = small_scr(num_tasks=1, **{'model.normalization': 'online_norm', 'model.online_norm_alpha_b': 0.5,
                                       'problem.examples_per_task': 200})
    assert config.learner.optimizer == 'sgd' and config.learner.name == 'backprop'
    train = engine.make_train(config)
    initial = initial_state(train, config)
    final, _ = engine.make_vmapped(train)(initial, 1)
    control = final.model_state['online_norm_control']['norm_0']
    assert np.count_nonzero(control['u']) > control['u'].size // 2 and np.count_nonzero(control['v']) > 0
    moved = np.asarray(final.params['hidden_0']['bias'] - initial.params['hidden_0']['bias'])
    np.testing.assert_allclose(moved, -config.learner.step_size * np.asarray(control['u']), rtol=1e-4, atol=1e-7)
    # alpha_b = 1 (no control process): no accumulators, and other params than with the control.
    config.model.online_norm_alpha_b = 1.0
    plain = engine.make_train(config)
    plain_final, _ = engine.make_vmapped(plain)(initial_state(plain, config), 1)
    assert 'online_norm_control' not in plain_final.model_state
    assert not np.allclose(plain_final.params['hidden_0']['kernel'], final.params['hidden_0']['kernel'])


def test_exact_gradient_norm_penalty_with_online_norm_control_is_refused():
    config = small_scr(**{'model.normalization': 'online_norm', 'learner.name': 'gnp'})
    with pytest.raises(ValueError, match="gnp_mode='finite_difference' or model.online_norm_alpha_b=1.0"):
        engine.make_train(config)


@pytest.mark.parametrize('learner', [None, 'cbp,adam'])
def test_step_loop_copies_no_weight_sized_buffer(learner, shared_data_dir):
    """The backward pass's reads of W are ordered before its in-place update (`apply_updates_after_backward`):
    no loop body of the compiled Permuted MNIST program copies a weight-sized float buffer (width 512, where the
    hidden-to-hidden weights dominate a batch-size-1 step; compiled, not run), and nothing calls back to the host.
    Plain SGD; and continual backprop with Adam in one program: its unit replacement, and Adam's moments and
    per-weight step counts (`learners.adam_counts`, reset for replaced units)."""
    from plasticity_jax import hlo

    width = 512
    config = load_config('permuted_mnist.py', learner)
    config.update({'num_seeds': 2, 'num_tasks': 1, 'data_dir': shared_data_dir})
    config.model.width = width
    config.problem.examples_per_task = 8
    config.metrics.probe_size = 8
    train = engine.make_train(config)
    state = jax.eval_shape(jax.vmap(train.init), engine.seed_keys(config))
    program = jax.jit(jax.vmap(train.run_tasks, in_axes=(0, None, None, None)), static_argnums=3)
    # XLA:CPU's default code generator (the suite's processes use the older one, tests/conftest.py): its fusion
    # decisions are those users get.
    text = program.lower(state, train.data, 0, 1).compile(compiler_options=USERS_CODEGEN).as_text()
    assert hlo.loop_bodies(text), 'the program has no loop: the test no longer looks at the step loop'
    assert hlo.loop_body_copies(text, min_elements=width * width // 2) == {}
    assert 'callback' not in text.lower(), 'a host callback in the program forces a host round-trip'


def test_ordered_update_equals_optax_apply_updates_bit_for_bit():
    params = {'w': jnp.array([[1.0, -0.0], [2.0, 3.0]]), 'b': jnp.array([0.0, 1.0])}
    updates = {'w': jnp.array([[-0.0, -0.0], [jnp.inf, -3.0]]), 'b': jnp.array([jnp.nan, 0.5])}
    for grads in (updates, jax.tree.map(lambda u: jnp.full_like(u, jnp.nan), updates)):
        ordered = engine.apply_updates_after_backward(params, updates, grads)
        expected = optax.apply_updates(params, updates)
        for name in params:
            np.testing.assert_array_equal(np.asarray(ordered[name]).view(np.uint32),
                                          np.asarray(expected[name]).view(np.uint32))


def _two_tasks_in_one_program(compiler_options=None, **overrides):
    """(final state, metrics) of `small_scr` with width 6 over 2 tasks, as one program compiled with
    `compiler_options`, on the host."""
    config = small_scr(**{'model.width': 6, 'num_tasks': 2, **overrides})
    train = engine.make_train(config)
    program = jax.jit(jax.vmap(train.run_tasks, in_axes=(0, None, None, None)), static_argnums=3)
    state = initial_state(train, config)
    compiled = program.lower(state, train.data, 0, 2).compile(compiler_options=compiler_options)
    return jax.device_get(compiled(state, train.data, 0))


@pytest.fixture(scope='module')
def float32_two_tasks():
    """`_two_tasks_in_one_program` with XLA:CPU's default code generator, as users run it (the suite's processes
    use the older one, tests/conftest.py): the reference of the unrolled and the bfloat16 runs."""
    return _two_tasks_in_one_program(USERS_CODEGEN)


def test_unrolled_step_loop_gives_the_same_run(float32_two_tasks):
    """`step_unroll` leaves the parameters bit-identical; XLA may fuse the metrics' running sums across unrolled
    steps, so those agree to float rounding. (With XLA:CPU's default code generator, as users run it; the suite's
    older one rounds the unrolled body's products differently.)"""
    rolled_state, rolled_metrics = float32_two_tasks
    unrolled_state, unrolled_metrics = _two_tasks_in_one_program(USERS_CODEGEN, step_unroll=4)
    np.testing.assert_array_equal(*(jax.flatten_util.ravel_pytree(state.params)[0]
                                    for state in (rolled_state, unrolled_state)))
    assert rolled_metrics.keys() == unrolled_metrics.keys()
    for name in rolled_metrics:
        np.testing.assert_allclose(unrolled_metrics[name], rolled_metrics[name], rtol=1e-6, err_msg=name)


def test_bfloat16_training_pass_keeps_float32_parameters_and_tracks_the_float32_run(float32_two_tasks):
    _, metrics32 = float32_two_tasks
    state16, metrics16 = _two_tasks_in_one_program(compute_dtype='bfloat16')
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state16.params))
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state16.opt_state)
               if np.issubdtype(leaf.dtype, np.floating))
    loss32, loss16 = metrics32['online_loss'], metrics16['online_loss']
    assert not np.array_equal(loss32, loss16)  # the pass really ran in bfloat16 ...
    np.testing.assert_allclose(loss16, loss32, rtol=0.05)  # ... and learned the same thing to bfloat16's precision


def test_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match='compute_dtype'):
        engine.make_train(small_scr(compute_dtype='float8'))


def test_a_plan_larger_than_the_hosts_memory_is_refused_before_anything_is_written(tmp_path):
    config = small_scr(**{'model.width': 200_000, 'model.depth': 3})
    plan = engine.make_plan(config)
    assert plan.device_bytes_limit == engine.host_memory_bytes() // len(jax.local_devices())
    assert "(the host's memory)" in plan.describe()
    with pytest.raises(MemoryError, match='This does not fit'):
        engine.check_fits(plan)
    with pytest.raises(MemoryError):
        engine.run(config, str(tmp_path / 'run'), progress=False)
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('name', ['permuted_mnist.py', 'pairwise_mnist.py', 'incremental_cifar100.py',
                                  'continual_imagenet.py'])
def test_a_plan_needs_no_data(name):
    """--dry_run plans from the datasets' published shapes: no data directory is read."""
    config = load_config(name)
    config.data_dir = '/nonexistent'
    plan = engine.make_plan(config)
    assert plan.data_bytes > 0 and plan.state_bytes_per_run > 0 and plan.examples_per_task > 0
