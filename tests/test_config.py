"""`plasticity_jax.config.load`: a config from Python as `--config=FILE:variants --config.field=value` gives it."""

import os

import pytest

from plasticity_jax import config as config_lib
from tests.conftest import REPO_ROOT


def test_load_applies_variants_then_overrides_and_keeps_the_config_locked():
    config = config_lib.load(f'{REPO_ROOT}/configs/slowly_changing_regression.py:tanh,lr0.001',
                             {'num_seeds': 2, 'model.width': 7})
    assert config.model.activation == 'tanh' and config.learner.step_size == 0.001
    assert config.num_seeds == 2 and config.model.width == 7
    with pytest.raises(AttributeError):
        config.not_a_field = 1


def test_a_relative_path_falls_back_to_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as a notebook in notebooks/ would
    assert config_lib.load('configs/permuted_mnist.py').model.width == 2000
    with pytest.raises(FileNotFoundError, match=os.path.join('configs', 'nope.py')):
        config_lib.load('configs/nope.py')


def test_an_unknown_override_names_the_field_and_lists_the_valid_ones():
    with pytest.raises(KeyError, match=r"unknown config field 'model.widht'.*width"):
        config_lib.load(f'{REPO_ROOT}/configs/slowly_changing_regression.py', {'model.widht': 3})
