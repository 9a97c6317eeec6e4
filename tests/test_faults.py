"""Fault injection through the command line: a second command on a running workdir, kill -9 at random moments
(also mid-save) followed by resumption, the spectra CLI on a run that is still going. The loops are slow (-m slow);
the default suite keeps a second command refused on a running workdir and one kill -9 mid-run, then resumed.
docs/durability.md lists what these show."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from plasticity_jax import engine, workdir
from plasticity_jax.results import load_run
from tests.conftest import REPO_ROOT, small_scr
from tests.test_engine import assert_same_metrics

ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu'}


def _main_command(path, **flags):
    args = [sys.executable, '-m', 'plasticity_jax.main', '--config=configs/slowly_changing_regression.py',
            f'--workdir={path}']
    return args + [f'--config.{name}={value}' for name, value in flags.items()]


def _start(path, **flags):
    return subprocess.Popen(_main_command(path, **flags), cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process, timeout=300):
    deadline = time.time() + timeout
    while not condition() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert condition(), 'the run ended (or timed out) before the awaited moment'


def test_a_second_command_is_refused_and_the_first_killed_mid_run_resumes_bit_identically(tmp_path):
    """A command in the middle of its run (a checkpoint after every task): a second command on its workdir is
    refused, naming the first's pid, and leaves the first running with its lock (paused meanwhile, SIGSTOP: it keeps
    its lock and uses no CPU). Then kill -9 the first and resume its workdir (`engine.run`, what the command runs):
    the metrics equal an uninterrupted run's. The command's compiled program is this process's, from the
    compilation cache."""
    flags = {'num_seeds': 2, 'num_tasks': 8, 'tasks_per_chunk': 1, 'problem.examples_per_task': 300,
             'metrics.probe_size': 64}
    killed, lock = tmp_path / 'killed', tmp_path / 'killed' / workdir.LOCK_FILE
    first = _start(killed, **flags)
    try:
        _wait_for(lambda: max(workdir.checkpoint_steps(str(killed / workdir.CHECKPOINT_DIR)), default=0) > 0, first)
        first.send_signal(signal.SIGSTOP)
        held = lock.read_text()
        second = subprocess.run(_main_command(killed, **flags), cwd=REPO_ROOT, env=ENV, capture_output=True,
                                text=True, timeout=300)
        assert second.returncode != 0 and 'Traceback' not in second.stderr, second.stderr[-2000:]
        assert f'error: {killed} is in use by pid {first.pid} on ' in second.stderr
        assert first.poll() is None and lock.read_text() == held  # still running, still holding its lock
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done_at_kill = max(workdir.checkpoint_steps(str(killed / workdir.CHECKPOINT_DIR)), default=0)
    assert 0 < done_at_kill < flags['num_tasks'], 'the kill should land in the middle of the run'

    config = small_scr(**flags)
    resumed = engine.run(config, str(killed), progress=False)  # the killed holder left no stale lock
    assert_same_metrics(engine.run(config, str(tmp_path / 'whole'), progress=False), resumed)
    assert_same_metrics(resumed, load_run(str(killed)).metrics)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    """Eight kills at random times (several land in a checkpoint save), a resume after each: the final metrics equal
    an uninterrupted run's, bit for bit."""
    flags = {'num_seeds': 3, 'num_tasks': 16, 'tasks_per_chunk': 1, 'problem.examples_per_task': 5_000,
             'metrics.probe_size': 64, 'keep_checkpoints': 2}
    subprocess.run(_main_command(tmp_path / 'whole', **flags), cwd=REPO_ROOT, env=ENV, check=True,
                   capture_output=True)
    killed, rng = tmp_path / 'killed', random.Random(0)
    for _ in range(8):
        process = _start(killed, **flags)
        before = max(workdir.checkpoint_steps(str(killed / workdir.CHECKPOINT_DIR)), default=-1)
        _wait_for(lambda: max(workdir.checkpoint_steps(str(killed / workdir.CHECKPOINT_DIR)), default=-1) > before
                  or process.poll() is not None, process)
        time.sleep(rng.uniform(0, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
    subprocess.run(_main_command(killed, **flags), cwd=REPO_ROOT, env=ENV, check=True, capture_output=True)
    assert_same_metrics(load_run(str(tmp_path / 'whole')).metrics, load_run(str(killed)).metrics)


@pytest.mark.slow
def test_spectra_of_a_running_run_read_only_finished_checkpoints(tmp_path):
    flags = {'num_seeds': 2, 'num_tasks': 40, 'tasks_per_chunk': 1, 'problem.examples_per_task': 2_000,
             'metrics.probe_size': 64, 'keep_checkpoints': 2, 'curvature.probe_size': 64}
    process = _start(tmp_path, **flags)
    try:
        _wait_for(lambda: len(workdir.checkpoint_steps(str(tmp_path / workdir.CHECKPOINT_DIR))) >= 2, process)
        for _ in range(3):
            result = subprocess.run([sys.executable, '-m', 'plasticity_jax.spectra', f'--workdir={tmp_path}',
                                     '--order=4', '--draws=1'], cwd=REPO_ROOT, env=ENV, capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            assert len(load_run(str(tmp_path)).spectra['task']) >= 1
    finally:
        assert process.wait(timeout=1200) == 0, process.stderr.read()[-3000:]
    assert load_run(str(tmp_path)).num_tasks_done == flags['num_tasks']
    assert engine.CHECKPOINT_DIR in os.listdir(tmp_path)
