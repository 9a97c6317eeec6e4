"""Sweeps: a grid of points x seeds as one program, sharded over devices, each point equal to running it alone;
structural fields as successive programs, each equal to running it alone."""

import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from plasticity_jax import engine, sweeps, validation, workdir
from plasticity_jax.analysis import tables
from plasticity_jax.learners import LEARNERS
from plasticity_jax.results import load_run, load_runs
from tests.conftest import REPO_ROOT, load_config, small_scr

STEP_SIZES = (0.03, 0.01, 0.003)


def lr_sweep(**overrides):
    config = small_scr(**{'num_tasks': 2, 'tasks_per_chunk': 1, **overrides})
    config.sweep.learner = {'step_size': STEP_SIZES}
    return config


@pytest.fixture(scope='module')
def lr_sweep_workdir(tmp_path_factory):
    """The workdir of `lr_sweep()` run once on one device, for the tests that read it or compare with it."""
    workdir = str(tmp_path_factory.mktemp('lr_sweep'))
    engine.run(lr_sweep(), workdir, progress=False)
    return workdir


@pytest.fixture(scope='module')
def lr_sweep_metrics(lr_sweep_workdir):
    """Its metrics, leading axes (run, task), as `engine.run` returns them."""
    return engine.load_npz(os.path.join(lr_sweep_workdir, engine.METRICS_FILE))


def test_grid_is_the_product_of_the_swept_fields_in_name_order():
    config = small_scr()
    config.sweep.learner = {'step_size': (0.1, 0.2), 'momentum': (0.0, 0.5, 0.9)}
    grid = sweeps.grid(config)
    assert grid.names == ('learner.momentum', 'learner.step_size')
    assert grid.points.tolist() == [[0.0, 0.1], [0.0, 0.2], [0.5, 0.1], [0.5, 0.2], [0.9, 0.1], [0.9, 0.2]]
    runs = sweeps.runs(config, num_devices=4)  # 6 points x 2 seeds = 12 runs
    assert (runs.num_runs, runs.num_padded) == (12, 12)
    assert sweeps.runs(config, num_devices=5).num_padded == 15
    np.testing.assert_array_equal(runs.hyperparams()['learner.momentum'][:4], [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(runs.hyperparams()['learner.step_size'][:4], np.float32([0.1, 0.1, 0.2, 0.2]))


@pytest.mark.parametrize('field, values, message', [('model', (5, 10), 'structural'), ('learner', (), 'non-empty')])
def test_bad_sweeps_are_refused_with_the_reason(field, values, message):
    config = small_scr()
    config.sweep[field] = {'width': values} if field == 'model' else {'step_size': values}
    with pytest.raises(ValueError, match=message):
        sweeps.grid(config)


def test_a_sweep_listing_a_value_twice_is_refused_before_it_runs_and_an_old_one_still_loads():
    """Two points that the results label alike (0.1 and 0.1000001 both print as 0.1) could not be told apart; a
    stored sweep from before the rule still loads (the rule is `validation`'s, checked before a run)."""
    from plasticity_jax import validation

    for values, shown in (((0.01, 0.1, 0.01), '0.01'), ((0.1, 0.1000001), '0.1')):
        config = small_scr()
        config.sweep.learner = {'step_size': values}
        with pytest.raises(validation.ConfigError, match=f'sweep.learner.step_size lists {shown} more than once'):
            validation.check_config(config)
        assert sweeps.runs(config).grid.num_points == len(values)


# The float learner fields a learner ignores (`validation.AGREEMENTS` refuses a sweep of them).
def _ignored_fields(learner):
    optimizer_ignores = ('momentum',) if learner.optimizer == 'adam' else ('beta1', 'beta2', 'eps')
    return (*optimizer_ignores, *(('momentum',) if learner.name == 'upgd' else ()))


@pytest.mark.parametrize('name', sorted(LEARNERS))
def test_every_float_field_a_learner_uses_sweeps_inside_one_program_and_the_others_are_refused(name):
    """`sweeps.is_continuous`: every float field of `learner` is a vmap axis, so each must reach the learner as a
    traced array. All the fields the learner uses swept at once (two values each) trace (`jax.eval_shape` of the
    runs' init and a task, no compile); a sweep of each field it ignores is refused before anything is built."""
    config = small_scr(name, num_tasks=1, **{'learner.step_size_milestones': (0.5,)})  # step_size_decay acts
    ignored = _ignored_fields(config.learner)
    floats = [field for field, value in config.learner.items() if isinstance(value, float)]
    config.sweep.learner = {field: (config.learner[field], config.learner[field] / 2 + 0.01)
                            for field in floats if field not in ignored}
    runs = sweeps.runs(config)
    assert runs.num_runs == 2 * 2 ** len(config.sweep.learner) >= 8, config.sweep.learner
    validation.check_config(config)
    train = engine.make_train(config)
    state = jax.eval_shape(jax.vmap(train.init), runs.keys(config.seed), runs.hyperparams())
    metrics = jax.eval_shape(lambda s: engine.make_vmapped(train)(s, 1), state)[1]
    assert metrics['online_mse'].shape == (runs.num_runs, 1)
    for field in (*ignored, 'step_size_decay'):  # the latter without milestones, as the learners' defaults
        refused = small_scr(name)
        refused.sweep.learner = {field: (0.5, 0.9)}
        with pytest.raises(validation.ConfigError, match=f'sweep.learner.{field} = '):
            engine.make_plan(refused)


def test_each_point_of_a_sweep_equals_running_it_alone(tmp_path, lr_sweep_workdir, lr_sweep_metrics):
    swept = lr_sweep_metrics
    run = load_run(lr_sweep_workdir)
    assert run.metrics['online_mse'].shape == (3, 2, 2)  # (point, seed, task)
    np.testing.assert_array_equal(run.sweep['learner.step_size'], STEP_SIZES)
    assert swept['online_mse'].shape == (6, 2)
    for point, step_size in enumerate(STEP_SIZES):
        alone = engine.run(small_scr(num_tasks=2, tasks_per_chunk=1, **{'learner.step_size': step_size}),
                           str(tmp_path / f'alone{point}'), progress=False)
        for name in alone:
            np.testing.assert_array_equal(run.metrics[name][point], alone[name], err_msg=f'{name} at {step_size}')
    assert len({float(run.metrics['online_mse'][p].sum()) for p in range(3)}) == 3  # the points really differ
    frame = run.dataframe('online_mse')
    assert len(frame) == 3 * 2 * 2 and set(frame['learner.step_size']) == set(STEP_SIZES)
    row = frame[(frame.point == 2) & (frame.seed == 1) & (frame.task == 0)]
    assert row['online_mse'].item() == run.metrics['online_mse'][2, 1, 0]
    np.testing.assert_array_equal(run.point(1).metrics['online_mse'], run.metrics['online_mse'][1])
    assert run.point(1).config.learner.step_size == STEP_SIZES[1]


def test_two_processes_of_four_devices_joined_by_jax_distributed_equal_one_device(tmp_path, lr_sweep_metrics):
    """Two CPU processes of four (fake) devices each run one sweep together through the CLI: 6 runs sharded over 8
    devices, padded to 8 and the padding dropped; every number equals one process on one device."""
    import socket

    with socket.socket() as s:
        s.bind(('localhost', 0))
        port = s.getsockname()[1]
    flags = ['--config=configs/slowly_changing_regression.py', f'--workdir={tmp_path / "two"}',
             '--config.num_seeds=2', '--config.num_tasks=2', '--config.tasks_per_chunk=1',
             '--config.problem.examples_per_task=300',
             '--config.metrics.probe_size=64', '--sweep=learner.step_size=0.03,0.01,0.003', '--distributed',
             f'--coordinator_address=localhost:{port}', '--num_processes=2']
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu',  # the test run's XLA flags too, so both sides compile alike
           'XLA_FLAGS': f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()}
    processes = [subprocess.Popen([sys.executable, '-m', 'plasticity_jax.main', *flags, f'--process_id={i}'],
                                  cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert 'Results are in' in outputs[0][0] and 'Results are in' not in outputs[1][0]

    state = os.path.join(tmp_path, 'two', engine.CHECKPOINT_DIR, '2', workdir.STATE_ITEM)
    with ocp.StandardCheckpointer() as checkpointer:
        key = checkpointer.metadata(state).item_metadata.tree['key']
    assert key.shape[0] == 8 and list(key.sharding.shape) == [8]  # 6 runs and 2 padding runs, one per device
    one = load_run(str(tmp_path / 'two'))
    assert one.metrics['online_mse'].shape == (3, 2, 2)  # (point, seed, task): the padding dropped
    for name, values in lr_sweep_metrics.items():
        np.testing.assert_array_equal(one.metrics[name].reshape(values.shape), values, err_msg=name)


def test_the_plan_of_a_sweep_counts_points_seeds_and_runs_per_device():
    """What --dry_run prints for each program (`engine.make_plan`, from shapes; the command line's dry run, which
    writes nothing, is `test_dry_run_lists_every_program_of_a_structural_sweep_and_writes_nothing`)."""
    config = sweeps.with_sweep_flags(load_config('slowly_changing_regression.py'), ['learner.step_size=0.01,0.001'])
    config.num_seeds = 3
    assert '2 point(s) x 3 seed(s) = 6 runs over 1 device(s), 6 runs per device' in engine.make_plan(config).describe()


def test_a_plan_that_does_not_fit_is_refused_with_a_split():
    config = small_scr(num_seeds=4)
    plan = engine.make_plan(config)
    # 111 float32 params: state is params + nothing else for SGD without momentum, plus keys and counters.
    assert plan.state_bytes_per_run >= 111 * 4 and plan.num_runs == 4
    engine.check_fits(plan._replace(device_bytes_limit=None))  # CPU: no limit reported, nothing to check
    tight = plan._replace(device_bytes_limit=plan.data_bytes + 2 * plan.state_bytes_per_run + 1)
    with pytest.raises(MemoryError, match='at most 2 runs'):
        engine.check_fits(tight)


WIDTHS = (3, 6)


def width_sweep(**overrides):
    """2 widths (structural: 2 programs) x 2 step sizes (continuous: one program each) x 2 seeds."""
    config = small_scr(**{'num_tasks': 2, 'tasks_per_chunk': 1, **overrides})
    config.sweep.model = {'width': WIDTHS}
    config.sweep.learner = {'step_size': STEP_SIZES[:2]}
    return config


def test_structural_fields_become_programs_declared_or_on_the_command_line():
    declared = sweeps.programs(width_sweep())
    assert [(p.index, p.name) for p in declared] == [(0, 'model.width=3'), (1, 'model.width=6')]
    assert [p.config.model.width for p in declared] == list(WIDTHS)
    assert all(sweeps.grid(p.config).names == ('learner.step_size',) for p in declared)
    assert declared[1].workdir('runs/w') == 'runs/w/model.width=6'
    flagged = sweeps.programs(sweeps.with_sweep_flags(small_scr(num_tasks=2, tasks_per_chunk=1),
                                                      ['model.width=3,6', 'learner.step_size=0.03,0.01']))
    assert [p.config.to_dict() for p in flagged] == [p.config.to_dict() for p in declared]

    learners = sweeps.programs(sweeps.with_sweep_flags(small_scr(), ['learner.name=backprop,cbp']))
    assert [p.name for p in learners] == ['learner.name=backprop', 'learner.name=cbp']
    cbp = learners[1].config.learner
    assert cbp.name == 'cbp' and all(cbp[field] == value for field, value in LEARNERS['cbp'].defaults.items())
    assert sweeps.select(learners, 1) == learners[1:]
    with pytest.raises(ValueError, match='2 program'):
        sweeps.select(learners, 2)
    unswept = sweeps.programs(small_scr())
    assert [p.name for p in unswept] == [''] and unswept[0].workdir('runs/w') == 'runs/w'


def test_each_program_of_a_structural_sweep_equals_running_it_alone_and_resume_skips_finished_ones(
        tmp_path, monkeypatch):
    parent = str(tmp_path / 'widths')
    first = engine.run_programs(width_sweep(), parent, only=0, progress=False)
    assert list(first) == ['model.width=3']
    with pytest.raises(FileNotFoundError, match='load_runs'):
        load_run(parent)
    assert list(load_runs(parent)) == ['model.width=3']  # the second program has not started

    built = []
    make_train = engine.make_train
    monkeypatch.setattr(engine, 'make_train', lambda config: built.append(config.model.width) or make_train(config))
    programs = engine.run_programs(width_sweep(), parent, progress=False)
    assert built == [6]  # the finished program is read back, not run again
    monkeypatch.undo()

    runs = load_runs(parent)
    assert list(runs) == list(programs) == ['model.width=3', 'model.width=6']
    for width, (name, run) in zip(WIDTHS, runs.items()):
        assert run.config.model.width == width and run.metrics['online_mse'].shape == (2, 2, 2)
        np.testing.assert_array_equal(run.sweep['learner.step_size'], STEP_SIZES[:2])
        alone_config = small_scr(num_tasks=2, tasks_per_chunk=1, **{'model.width': width})
        alone_config.sweep.learner = {'step_size': STEP_SIZES[:2]}
        alone = engine.run(alone_config, str(tmp_path / f'alone{width}'), progress=False)
        for metric, values in alone.items():
            np.testing.assert_array_equal(programs[name][metric], values, err_msg=f'{metric} of {name}')
    assert runs['model.width=6'].metrics['effective_rank'].max() > 3  # the programs really differ
    table = tables.metrics_table(runs, 'online_mse')
    assert list(table['label'].unique()) == [f'model.width={w}, step_size={s:g}' for w in WIDTHS
                                             for s in STEP_SIZES[:2]]


def test_dry_run_lists_every_program_of_a_structural_sweep_and_writes_nothing(tmp_path):
    workdir = tmp_path / 'never'
    result = subprocess.run([sys.executable, '-m', 'plasticity_jax.main',
                             '--config=configs/slowly_changing_regression.py', f'--workdir={workdir}',
                             '--sweep=model.width=5,50', '--sweep=learner.step_size=0.01,0.001', '--config.num_seeds=3',
                             '--dry_run'], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('2 programs, run one after another')
    assert 'program 0: model.width=5\n' in result.stdout and 'program 1: model.width=50\n' in result.stdout
    assert result.stdout.count('2 point(s) x 3 seed(s) = 6 runs over 1 device(s), 6 runs per device') == 2
    assert f'in {workdir}/model.width=50' in result.stdout
    assert not workdir.exists()


def _launch_two_processes(workdir, extra_flags):
    import socket

    with socket.socket() as s:
        s.bind(('localhost', 0))
        port = s.getsockname()[1]
    flags = ['--config=configs/slowly_changing_regression.py', f'--workdir={workdir}', '--distributed',
             f'--coordinator_address=localhost:{port}', '--num_processes=2', *extra_flags]
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    return [subprocess.Popen([sys.executable, '-m', 'plasticity_jax.main', *flags, f'--process_id={i}'],
                             cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(2)]


@pytest.mark.slow
def test_multi_host_run_killed_at_random_points_resumes_identically(tmp_path):
    """kill -9 one process of a two-process sweep at random moments (its peer goes down with it, as on a preempted
    pod), relaunch the same command each time: the final results equal an uninterrupted single-process run."""
    import random
    import time

    flags = ['--config.num_seeds=2', '--config.num_tasks=8', '--config.tasks_per_chunk=1',
             '--config.problem.examples_per_task=5000', '--config.metrics.probe_size=64',
             '--sweep=learner.step_size=0.03,0.01,0.003']
    workdir = tmp_path / 'preempted'
    rng = random.Random(0)
    for _ in range(3):
        processes = _launch_two_processes(workdir, flags)
        time.sleep(rng.uniform(4.0, 12.0))
        processes[rng.randrange(2)].kill()
        time.sleep(1.0)
        for p in processes:
            p.kill()
            p.wait()
    processes = _launch_two_processes(workdir, flags)
    assert [p.wait(timeout=600) for p in processes] == [0, 0]

    config = lr_sweep(num_tasks=8, **{'problem.examples_per_task': 5000})
    uninterrupted = engine.run(config, str(tmp_path / 'uninterrupted'), progress=False)
    resumed = load_run(str(workdir)).metrics
    for name, values in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name].reshape(values.shape), values, err_msg=name)
