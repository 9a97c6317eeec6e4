"""Shared test settings: the offline data of ../shared/data, small configs."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data_dir() -> str:
    """The offline MNIST copy that tests and CI use (see ../shared/data/README.md)."""
    if not (SHARED_DATA / 'mnist').is_dir():
        raise FileNotFoundError(f'tests need the offline MNIST files in {SHARED_DATA / "mnist"} '
                                '(a checkout with ../shared beside it).')
    return str(SHARED_DATA)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-data caches go to a per-session temporary folder, never to ~/.cache."""
    monkeypatch.setenv('PLASTICITY_JAX_CACHE_DIR', str(tmp_path_factory.getbasetemp() / 'cache'))
