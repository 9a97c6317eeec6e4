"""A run directory's guarantees: metrics rebuilt from checkpoints and checked against them, a damaged checkpoint
moved aside, a second process locked out, config changes named by field, nothing written by a failed start.

One finished run (tests/conftest.py's `small_scr_run`, shared with tests/test_engine.py) is copied by every test that
damages a workdir."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from plasticity_jax import engine, results, validation, workdir
from tests.conftest import REPO_ROOT, small_scr
from tests.test_engine import assert_same_metrics

NUM_TASKS = 4  # chunks of 2: checkpoints after 0, 2 and 4 tasks


@pytest.fixture
def finished(small_scr_run):
    """(workdir, metrics) of the finished `small_scr()` run of tests/conftest.py; copy it before changing it."""
    return small_scr_run


@pytest.fixture
def copy(finished, tmp_path):
    path = tmp_path / 'run'
    shutil.copytree(finished[0], path)
    return path


def test_every_checkpoint_holds_the_metrics_so_far(finished):
    path, metrics = finished
    directory = str(path / workdir.CHECKPOINT_DIR)
    assert workdir.checkpoint_steps(directory) == [0, 2, 4]
    assert workdir.restore_history(directory, 0) == {}
    for step in (2, 4):
        assert_same_metrics(workdir.restore_history(directory, step), {n: v[:, :step] for n, v in metrics.items()})


def test_deleted_metrics_are_rebuilt_from_the_checkpoint(finished, copy, caplog):
    (copy / workdir.METRICS_FILE).unlink()
    assert_same_metrics(engine.run(small_scr(), str(copy), progress=False), finished[1])  # reads no state: no compile
    assert_same_metrics(results.load_run(str(copy)).metrics, finished[1])
    assert 'metrics.npz is missing: rebuilding it' in caplog.text


def test_metrics_that_disagree_with_the_checkpoints_are_refused(copy):
    metrics = workdir.load_npz(str(copy / workdir.METRICS_FILE))
    metrics['online_mse'] = metrics['online_mse'] + 1.0  # e.g. copied from another run
    workdir.save_metrics(str(copy), metrics)
    with pytest.raises(workdir.WorkdirError, match=r'metrics.npz disagrees with the checkpoint after task 4 '
                                                   r"\(metrics \['online_mse'\]\).*Move it aside"):
        engine.run(small_scr(), str(copy), progress=False)
    np.testing.assert_array_equal(workdir.load_npz(str(copy / workdir.METRICS_FILE))['online_mse'],
                                  metrics['online_mse'])  # nothing was overwritten


def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_resumed(finished, copy, caplog):
    """Also: metrics.npz deleted, so they are rebuilt from the previous checkpoint's, and the run extended by a
    task: its first tasks stay aligned with the original run's."""
    (copy / workdir.CHECKPOINT_DIR / '4' / workdir.STATE_ITEM / '_METADATA').write_text('')
    (copy / workdir.METRICS_FILE).unlink()
    resumed = engine.run(small_scr(num_tasks=NUM_TASKS + 1), str(copy), progress=False)
    assert_same_metrics({n: v[:, :NUM_TASKS] for n, v in resumed.items()}, finished[1])
    assert (copy / workdir.DAMAGED_DIR / '4' / workdir.STATE_ITEM).is_dir()  # kept, not deleted
    assert f'checkpoint {copy / workdir.CHECKPOINT_DIR / "4"} cannot be read' in caplog.text
    assert 'falling back to the previous checkpoint' in caplog.text
    assert workdir.checkpoint_steps(str(copy / workdir.CHECKPOINT_DIR))[-1] == NUM_TASKS + 1


def test_truncated_array_files_count_as_damage(copy):
    for path in (copy / workdir.CHECKPOINT_DIR / '4' / workdir.STATE_ITEM / 'ocdbt.process_0' / 'd').iterdir():
        path.write_bytes(path.read_bytes()[:10])
    restored = workdir.restore_latest(str(copy), None, writer=True)
    assert restored.step == 2 and workdir.num_tasks_in(restored.history) == 2
    assert (copy / workdir.DAMAGED_DIR / '4').is_dir()
    assert workdir.checkpoint_steps(str(copy / workdir.CHECKPOINT_DIR)) == [0, 2]


def test_shrinking_a_finished_run_is_refused_and_changes_nothing(copy):
    before = (copy / workdir.CONFIG_FILE).read_text()
    with pytest.raises(workdir.WorkdirError, match=r'already holds 4 tasks, more than config.num_tasks = 2'):
        engine.run(small_scr(num_tasks=2), str(copy), progress=False)
    assert (copy / workdir.CONFIG_FILE).read_text() == before


def test_config_changes_are_named_by_field_and_harmless_ones_allowed(finished, copy):
    with pytest.raises(workdir.WorkdirError, match=r'learner.step_size: 0.01 there, 0.5 now'):
        engine.run(small_scr(**{'learner.step_size': 0.5}), str(copy), progress=False)
    moved = small_scr(tasks_per_chunk=1, keep_checkpoints=5, data_dir='/elsewhere')
    assert_same_metrics(engine.run(moved, str(copy), progress=False), finished[1])
    assert json.loads((copy / workdir.CONFIG_FILE).read_text())['data_dir'] == '/elsewhere'


def test_a_failed_start_writes_no_config(tmp_path):
    # Valid field by field, refused when the program is built (a combination the engine does not support).
    config = small_scr(**{'model.normalization': 'online_norm'})
    config.learner.update({'name': 'gnp', 'gnp_coef': 0.04, 'gnp_r': 0.05, 'gnp_mode': 'exact'})
    with pytest.raises(ValueError, match='gnp_mode'):
        engine.run(config, str(tmp_path / 'run'), progress=False)
    assert not (tmp_path / 'run').exists()  # a failed start leaves no trace


def test_a_second_process_is_locked_out_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    with workdir.Lock(str(tmp_path)):
        with pytest.raises(workdir.WorkdirError, match=rf'{tmp_path} is in use by pid \d+ on '):
            workdir.Lock(str(tmp_path)).__enter__()
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time; from plasticity_jax import workdir; '
         f'lock = workdir.Lock({str(tmp_path)!r}).__enter__(); print("held", flush=True); time.sleep(600)'],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(workdir.WorkdirError, match=f'pid {holder.pid}'):
            workdir.Lock(str(tmp_path)).__enter__()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    with workdir.Lock(str(tmp_path)):
        pass


def test_the_run_refuses_a_workdir_another_process_holds(tmp_path):
    with workdir.Lock(str(tmp_path)):
        with pytest.raises(workdir.WorkdirError, match='is in use by'):
            engine.run(small_scr(), str(tmp_path), progress=False)


def test_a_run_written_before_a_field_was_added_resumes_under_the_value_the_code_then_used(tmp_path):
    """`workdir.FIELDS_ADDED_LATER`: Slippery Ant's config gained `env.solver_iterations` / `ls_iterations` /
    `integrator` (None: the model's, what the code used without them)."""
    from plasticity_jax import config as config_lib

    config = config_lib.load('configs/slippery_ant.py')
    older = config_lib.load('configs/slippery_ant.py')
    with older.unlocked():
        for field in ('solver_iterations', 'ls_iterations', 'integrator'):
            del older.env[field]
    workdir.write_config(str(tmp_path), older)
    workdir.check_same_experiment(str(tmp_path), config)
    config.env.solver_iterations = 4
    with pytest.raises(workdir.WorkdirError, match='env.solver_iterations: None there, 4 now'):
        workdir.check_same_experiment(str(tmp_path), config)


def test_a_workdir_that_is_a_file_is_refused_by_name(tmp_path):
    (tmp_path / 'run').write_text('notes')
    with pytest.raises(workdir.WorkdirError, match='run is a file, not a directory: choose another --workdir'):
        engine.run(small_scr(), str(tmp_path / 'run'), progress=False)
    assert (tmp_path / 'run').read_text() == 'notes'


def test_an_unreadable_metrics_file_names_the_file(copy):
    (copy / workdir.METRICS_FILE).write_bytes(b'not a zip file')
    with pytest.raises(workdir.WorkdirError, match=r'cannot read .*metrics.npz .*move it aside'):
        engine.run(small_scr(), str(copy), progress=False)


def test_config_validation_runs_before_the_lock_and_the_workdir(tmp_path):
    with pytest.raises(validation.ConfigError):
        engine.run(small_scr(num_seeds=0), str(tmp_path / 'new'), progress=False)
    assert not (tmp_path / 'new').exists()
