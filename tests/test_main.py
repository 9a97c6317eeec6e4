"""The command line: config overrides, clear errors for unknown fields and variants."""

import re
import subprocess
import sys

import pytest

from plasticity_jax import main, sweeps
from tests.conftest import REPO_ROOT, load_config

SCR = '--config=configs/slowly_changing_regression.py'
# ml_collections loads the config file with importlib's deprecated `load_module` (its own code).
LOAD_MODULE_WARNING = 'ignore:the load_module\\(\\) method is deprecated:DeprecationWarning'


def run_main(*args):
    return subprocess.run([sys.executable, '-m', 'plasticity_jax.main', *args], cwd=REPO_ROOT,
                          capture_output=True, text=True)


def test_unknown_field_names_the_field_and_lists_the_valid_ones():
    message = main.unknown_override(['prog', SCR, '--config.model.widht=3'])
    assert "model.widht" in message
    for valid in ('activation', 'depth', 'width', 'init_distribution'):
        assert valid in message
    assert main.unknown_override(['prog', SCR, '--config.model.width=3']) is None
    assert 'num_seeds' in main.unknown_override(['prog', SCR, '--config.nope=1'])


def test_the_command_line_modules_import_together():
    """`plot` and `spectra` are libraries too (a notebook imports `make_figures` and `compute_spectra`): their flags
    are defined only when they run as programs, so importing them beside `main` defines no flag twice."""
    import plasticity_jax.plot
    import plasticity_jax.spectra

    assert callable(plasticity_jax.plot.make_figures) and callable(plasticity_jax.spectra.compute_spectra)


@pytest.mark.filterwarnings(LOAD_MODULE_WARNING)
def test_missing_data_is_one_line_naming_the_fix_and_writes_nothing(tmp_path, monkeypatch):
    """`main` end to end in this process (flags parsed by its own parser): the data source's error was a
    traceback."""
    from absl import flags

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv('PLASTICITY_JAX_DATA_DIR', str(tmp_path / 'no_data'))
    try:
        main.parse_flags(['prog', '--config=configs/permuted_mnist.py', f'--workdir={tmp_path / "run"}'])
        with pytest.raises(SystemExit) as exit_info:
            main.main(['prog'])
    finally:
        flags.FLAGS.unparse_flags()
    assert str(exit_info.value).startswith('error: Could not find the four MNIST IDX files')
    assert 'Fix: set data_dir' in str(exit_info.value)
    assert not (tmp_path / 'run').exists()


def test_cli_reports_an_unknown_field_in_one_line(tmp_path):
    result = run_main(SCR, f'--workdir={tmp_path}', '--config.learner.stepsize=0.1')
    assert result.returncode != 0
    assert "unknown config field 'learner.stepsize'" in result.stderr
    assert 'step_size' in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('sweep, program, message', [
    (['learner.stepsize=0.1,0.2'], None, "config.sweep names 'learner.stepsize'"),
    (['model.width=5,many'], None, "cannot read 'many' as int"),
    ([], 2, '--program=2: the sweep has 1 program(s)')])
def test_a_bad_sweep_is_a_value_error_naming_it(sweep, program, message):
    """What `main` does with --sweep and --program before it runs anything; a ValueError there is one line on the
    command line (`test_cli_refuses_a_bad_value_in_one_line_before_writing_anything`)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        sweeps.select(sweeps.programs(sweeps.with_sweep_flags(load_config('slowly_changing_regression.py'), sweep)),
                      program)


def test_cli_runs_overrides_and_variants_and_says_where_results_went(tmp_path):
    workdir = tmp_path / 'run'
    result = run_main(SCR + ':tanh,lr0.001', f'--workdir={workdir}', '--config.num_seeds=2', '--config.num_tasks=2',
                      '--config.problem.examples_per_task=200', '--config.metrics.probe_size=32')
    assert result.returncode == 0, result.stderr
    assert str(workdir) in result.stdout
    assert f'python -m plasticity_jax.plot --workdir={workdir}' in result.stdout
    info_lines = [line for line in result.stderr.splitlines() if re.match(r'I\d{4} ', line)]
    assert not info_lines, info_lines  # quiet by default: no orbax / absl INFO
    assert (workdir / 'tensorboard' / 'seed_1').is_dir()
    from plasticity_jax.results import load_run
    run = load_run(str(workdir))
    assert run.config.model.activation == 'tanh' and run.config.learner.step_size == 0.001
    assert run.metrics['online_mse'].shape == (2, 2)


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown config variant 'tahn'.*tanh"):
        load_config('slowly_changing_regression.py', 'tahn')


@pytest.mark.filterwarnings(LOAD_MODULE_WARNING)
@pytest.mark.parametrize('spec, message', [
    ('configs/slowly_changing_regression.py:cpb', "--config=configs/slowly_changing_regression.py:cpb: unknown config "
                                                  "variant 'cpb'; valid: ['adam', 'backprop', 'cbp',"),
    ('configs/nope.py', "--config=configs/nope.py: config file 'configs/nope.py' not found; tried configs/nope.py")])
def test_a_config_that_cannot_load_is_one_line_on_the_command_line(spec, message, monkeypatch, tmp_path):
    """`main`'s flag parsing (in this process: absl wraps the variant's error, and ml_collections defers the missing
    file's to the first use of the config; both gave tracebacks)."""
    from absl import flags

    monkeypatch.chdir(REPO_ROOT)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main.parse_flags(['prog', f'--config={spec}', f'--workdir={tmp_path}'])
    finally:
        flags.FLAGS.unparse_flags()
    assert str(exit_info.value).startswith(f'error: {message}')
    assert '\n' not in str(exit_info.value) and not list(tmp_path.iterdir())


@pytest.mark.parametrize('name', ['slowly_changing_regression.py', 'permuted_mnist.py'])
def test_every_variant_of_every_config_builds(name):
    """Each documented variant changes the field it names, and variants compose left to right."""
    base = load_config(name)
    assert load_config(name, 'lr0.001').learner.step_size == 0.001
    adam = load_config(name, 'adam,lr0.01')
    assert adam.learner.optimizer == 'adam' and adam.learner.step_size == 0.01
    assert base.learner.optimizer == 'sgd'


def test_permuted_mnist_variants_follow_the_dissertation():
    config = load_config('permuted_mnist.py')
    assert (config.model.width, config.model.depth, config.problem.batch_size, config.num_tasks,
            config.problem.examples_per_task, config.learner.step_size) == (2000, 3, 1, 800, 60_000, 0.003)
    switch = load_config('permuted_mnist.py', 'switch10k')
    assert switch.problem.examples_per_task * switch.num_tasks == 48_000_000
    assert load_config('permuted_mnist.py', 'width10000').model.width == 10_000


def test_cli_refuses_a_bad_value_in_one_line_before_writing_anything(tmp_path):
    result = run_main(SCR, f'--workdir={tmp_path / "run"}', '--config.num_seeds=-2', '--dry_run')
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'error: invalid config: config.num_seeds = -2 must be an integer >= 1' in result.stderr
    assert not (tmp_path / 'run').exists()
