"""Tests of scripts/ (each script loaded as a module by `load_script`)."""

import importlib.util
import types

from tests.conftest import REPO_ROOT


def load_script(name: str) -> types.ModuleType:
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / 'scripts' / f'{name}.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
