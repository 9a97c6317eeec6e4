"""Shared test settings: the offline data of ../shared/data, small configs."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


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
