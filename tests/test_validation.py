"""The config rules: every shipped config passes; each bad value is one error naming its dotted field and the fix,
raised before anything is written."""

import os

import pytest

from plasticity_jax import engine, sweeps, validation
from tests.conftest import REPO_ROOT, load_config


@pytest.mark.parametrize('name', sorted(p for p in os.listdir(REPO_ROOT / 'configs') if p.endswith('.py')))
def test_every_shipped_config_passes(name):
    validation.check_config(load_config(name))


@pytest.mark.parametrize('field, value, requirement', [
    ('num_seeds', 0, 'an integer >= 1'),
    ('num_seeds', -2, 'an integer >= 1'),
    ('num_tasks', 0, 'an integer >= 1'),
    ('problem.examples_per_task', -5, 'an integer >= 1'),
    ('problem.examples_per_task', 0, 'an integer >= 1'),
    ('model.width', 0, 'an integer >= 1'),
    ('model.width', -3, 'an integer >= 1'),
    ('model.activation', 'relux', "one of ['elu', 'identity'"),
    ('learner.name', 'bakprop', "one of ['backprop'"),
    ('learner.step_size', float('nan'), 'a finite number >= 0'),
    ('metrics.probe_size', 0, 'an integer >= 1'),
    ('keep_checkpoints', 0, 'an integer >= 1'),
    ('compute_dtype', 'float8', "one of ['bfloat16', 'float32']"),
])
def test_a_bad_value_names_its_dotted_field_and_the_fix(field, value, requirement):
    config = sweeps.with_values(load_config('slowly_changing_regression.py'), {field: value})
    with pytest.raises(validation.ConfigError) as error:
        validation.check_config(config)
    message = str(error.value)
    assert f'config.{field} = {value!r} must be {requirement}' in message
    assert f'--config.{field}=' in message


def test_every_violation_is_listed_at_once():
    config = load_config('slowly_changing_regression.py')
    config.num_seeds, config.model.width = 0, 0
    problems = validation.violations(config)
    assert len(problems) == 2 and 'config.num_seeds' in problems[0] and 'config.model.width' in problems[1]


def test_fields_that_must_agree():
    config = load_config('slowly_changing_regression.py')
    config.problem.batch_size = 3
    with pytest.raises(validation.ConfigError, match=r'problem.examples_per_task must be a multiple of '
                                                     r'problem.batch_size \(config.problem.examples_per_task = 10000'):
        validation.check_config(config)


def test_early_stopping_needs_a_validation_split():
    config = load_config('incremental_cifar100.py')
    config.problem.validation_per_class = 0
    with pytest.raises(validation.ConfigError, match=r'problem.early_stopping needs a validation split'):
        validation.check_config(config)
    config.problem.early_stopping = False
    validation.check_config(config)


def test_swept_values_are_checked_by_the_rule_of_their_field():
    config = load_config('slowly_changing_regression.py')
    config = sweeps.with_sweep_flags(config, ['learner.step_size=0.1,-1.0'])
    with pytest.raises(validation.ConfigError, match=r'config.sweep.learner.step_size has \[-1.0\]'):
        validation.check_config(config)


def test_a_bad_config_writes_nothing(tmp_path):
    config = load_config('slowly_changing_regression.py')
    config.num_tasks = 0
    with pytest.raises(validation.ConfigError, match='config.num_tasks'):
        engine.run(config, str(tmp_path / 'run'), progress=False)
    assert not (tmp_path / 'run').exists()
    sweep = sweeps.with_sweep_flags(load_config('slowly_changing_regression.py'), ['model.width=5,0'])
    with pytest.raises(validation.ConfigError, match='config.model.width = 0'):
        engine.run_programs(sweep, str(tmp_path / 'sweep'), progress=False)
    assert not (tmp_path / 'sweep').exists()
