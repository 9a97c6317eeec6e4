"""Shared test settings: the offline data of ../shared/data, small configs."""

import contextlib
import gc
import json
import os
import pathlib
import resource
import shutil
import tempfile
import time
from typing import NamedTuple

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


_OWN_XLA_CACHE = pytest.StashKey[str]()
# Compiler options for a test that inspects a compiled program: XLA:CPU's default code generator, which users get
# (the suite's processes run with the older one, see `pytest_configure`).
USERS_CODEGEN = {'xla_cpu_use_fusion_emitters': True}


def pytest_configure(config):
    """Cheaper compilation for every test, subprocess and notebook kernel (they inherit the environment):

    - XLA's backend optimisations off (`jax_disable_most_optimizations`: LLVM at level 0, no expensive LLVM passes;
      XLA's HLO passes, fusion and buffer assignment still run, so HLO-level tests see the program users get). Most
      tests compile far more than they run: measured on the whole default suite, 16.0 CPU-min instead of 25.4. The
      few tests that run long programs compile them inside `xla_optimizations()`. A test whose result depends on
      how XLA rounds is a wrong test under either setting (it cannot tell rounding noise from the method).
      $JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs the suite with the optimisations.
    - XLA:CPU's older elemental IR emitter instead of its MLIR fusion emitters (`--xla_cpu_use_fusion_emitters=false`
      in $XLA_FLAGS, unless $XLA_FLAGS names the flag): XLA's HLO passes run, with slightly different fusion
      decisions, and the emitter that compiles faster generates the LLVM IR; a ResNet training program's compilation
      takes 6 instead of 11 CPU-s. XLA reads the flag once per process; a test that inspects a compiled program
      compiles it with `USERS_CODEGEN`, the default users get.
    - One LLVM module per compiled program (`--xla_cpu_parallel_codegen_split_count=1`, unless $XLA_FLAGS names the
      flag): XLA:CPU otherwise splits a program's LLVM module into parts compiled on a thread pool, each part with its
      own target machine, which saves wall-clock time on many cores and costs CPU time. Measured on 2 cores, the
      same programs compiled side by side with and without it (one process each, at the same time, so both see the
      machine's same load): 14% less compile CPU on six small engine programs, 6% on the Ant rollout, 4-7% less CPU
      on tests/test_engine.py with tests/learners/test_continual_backprop.py.
    - One XLA compilation cache for the whole test run, so the many identical small programs the tests build are
      compiled once. A fresh folder per run, unless $JAX_COMPILATION_CACHE_DIR is already set.
    """
    os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
    for flag, value in (('xla_cpu_use_fusion_emitters', 'false'), ('xla_cpu_parallel_codegen_split_count', '1')):
        if flag not in os.environ.get('XLA_FLAGS', ''):
            os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} --{flag}={value}".strip()
    if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
        config.stash[_OWN_XLA_CACHE] = os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(
            prefix='plasticity_jax_test_xla_cache_')
        os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
        os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
    import jax.monitoring  # after the cache settings above: jax reads them at import

    jax.monitoring.register_event_duration_secs_listener(_count_compilation)


def pytest_collection_finish(session):
    """Python's cyclic garbage collector less often: its full collections rescan a heap that JAX's trace, lowering
    and executable caches keep growing through the run. Measured with a `gc.callbacks` timer on tests/learners and
    tests/test_engine.py: 6.0 CPU-s of collection with the default thresholds (700, 10, 10), 1.5 with the objects
    alive after collection frozen (`gc.freeze`) and a first-generation threshold of 10,000; 17 CPU-s on the whole
    default suite with the defaults."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def pytest_unconfigure(config):
    if _OWN_XLA_CACHE in config.stash:
        shutil.rmtree(config.stash[_OWN_XLA_CACHE], ignore_errors=True)


@contextlib.contextmanager
def xla_optimizations():
    """Programs compiled inside compile with XLA's backend optimisations (for a test's one long-running program; this
    process only, not its subprocesses)."""
    import jax

    before = jax.config.values['jax_disable_most_optimizations']
    jax.config.update('jax_disable_most_optimizations', False)
    try:
        yield
    finally:
        jax.config.update('jax_disable_most_optimizations', before)


@pytest.fixture(scope='session')
def shared_data_dir() -> str:
    """The offline MNIST IDX files the tests use: $PLASTICITY_JAX_DATA_DIR, else ../shared/data beside the repo."""
    data_dir = os.environ.get('PLASTICITY_JAX_DATA_DIR') or str(SHARED_DATA)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f'tests need the four MNIST IDX files in {data_dir} (or its mnist/ folder): set '
                                'PLASTICITY_JAX_DATA_DIR, or check the repository out with ../shared beside it.')
    return data_dir


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-data caches go to a per-session temporary folder, never to ~/.cache."""
    monkeypatch.setenv('PLASTICITY_JAX_CACHE_DIR', str(tmp_path_factory.getbasetemp() / 'cache'))


def load_config(name: str, arg: str | None = None):
    """`get_config(arg)` of configs/<name>, unlocked so that tests can shrink it."""
    from plasticity_jax import config as config_lib

    config = config_lib.load(str(REPO_ROOT / 'configs' / name) + (f':{arg}' if arg else ''))
    config.unlock()
    return config


# CPU seconds per test (this process's threads plus finished child processes), to keep the default suite within its
# CPU budget on a shared machine where wall-clock durations (--durations) mostly measure the load; and the XLA
# compilations of each test in this process (count, seconds), which is where most of the suite's time goes.
_CPU_SECONDS: dict[str, float] = {}
_COMPILATIONS: dict[str, list[float]] = {}
_CURRENT_TEST = ['']


def _count_compilation(event: str, duration: float, **kwargs) -> None:
    if event == '/jax/core/compile/backend_compile_duration':
        count_and_seconds = _COMPILATIONS.setdefault(_CURRENT_TEST[0], [0, 0.0])
        count_and_seconds[0] += 1
        count_and_seconds[1] += duration


def _cpu_now() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _CURRENT_TEST[0] = item.nodeid
    start = _cpu_now()
    yield
    _CPU_SECONDS[item.nodeid] = _cpu_now() - start


def pytest_terminal_summary(terminalreporter):
    """The CPU time of the run and its slowest tests; with $PLASTICITY_JAX_TEST_PROFILE=file.json, every test's CPU
    seconds and compilations written there (to find the tests to shrink or to share programs between)."""
    if not _CPU_SECONDS:
        return
    terminalreporter.write_sep('=', f'CPU time: {sum(_CPU_SECONDS.values()) / 60:.1f} min in all; slowest 15 tests '
                                    '(CPU s, XLA compilations, their wall-clock s)')
    for nodeid, seconds in sorted(_CPU_SECONDS.items(), key=lambda item: -item[1])[:15]:
        count, compile_seconds = _COMPILATIONS.get(nodeid, (0, 0.0))
        terminalreporter.write_line(f'{seconds:8.1f} s {count:5d} {compile_seconds:8.1f} s  {nodeid}')
    if os.environ.get('PLASTICITY_JAX_TEST_PROFILE'):
        with open(os.environ['PLASTICITY_JAX_TEST_PROFILE'], 'w') as f:
            json.dump({nodeid: {'cpu_seconds': seconds, 'compilations': _COMPILATIONS.get(nodeid, [0, 0.0])[0],
                                'compile_seconds': _COMPILATIONS.get(nodeid, [0, 0.0])[1]}
                       for nodeid, seconds in _CPU_SECONDS.items()}, f, indent=1)


def small_scr(variants: str | None = None, **overrides):
    """A small Slowly-Changing Regression config (2 seeds, 4 tasks of 300 examples, 2 per chunk): most engine tests'
    run; the config file's `variants` (e.g. 'dropout'), then `overrides` as `sweeps.with_values` takes them."""
    from plasticity_jax import sweeps

    config = load_config('slowly_changing_regression.py', variants)
    config.num_seeds = 2
    config.num_tasks = 4
    config.tasks_per_chunk = 2
    config.problem.examples_per_task = 300
    config.metrics.probe_size = 64
    return sweeps.with_values(config, overrides)


class FinishedRun(NamedTuple):
    workdir: pathlib.Path
    metrics: dict


@pytest.fixture(scope='session')
def small_scr_run(tmp_path_factory) -> FinishedRun:
    """`small_scr()` run once per test run through `engine.run`, for the tests that read its workdir (copy it before
    changing it) or compare other ways of running it with it (tests/test_engine.py, tests/test_workdir.py)."""
    from plasticity_jax import engine

    workdir = tmp_path_factory.mktemp('small_scr') / 'run'
    return FinishedRun(workdir, engine.run(small_scr(), str(workdir), progress=False))


@pytest.fixture(scope='session')
def curvature_run(tmp_path_factory):
    """A run with the in-run Hessian spectrum every 2 tasks (tasks 0 and 2 of 3) and the exact GGN spectrum of 12
    probe examples, a checkpoint after every task, those after tasks 0 and 2 kept: (config, workdir, metrics). Run
    once per test run: tests/test_engine.py checks its numbers, tests/analysis/test_plots.py draws it."""
    from plasticity_jax import engine

    config = small_scr(num_seeds=2, num_tasks=3, tasks_per_chunk=1, keep_checkpoints=1, keep_checkpoints_every=2)
    config.curvature.update({'every_tasks': 2, 'probe_size': 40, 'chunk_size': 20, 'order': 200, 'draws': 2,
                             'exact_ggn_probe_size': 12})
    workdir = tmp_path_factory.mktemp('curvature') / 'run'
    return config, workdir, engine.run(config, str(workdir), progress=False)
