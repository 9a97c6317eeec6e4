"""The notebooks in notebooks/ run top to bottom (nbclient, a fresh python3 kernel of this interpreter, in a
temporary folder, MNIST from the shared offline data) and produce their figures; they are stored without outputs.

Each takes a minute or two on a 2-core CPU with the small settings of its first code cell.
"""

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

NOTEBOOKS = {
    '01_quickstart.ipynb': ['figures/quickstart_mse.png', 'figures/quickstart_correlates.png',
                            'runs/01_quickstart/metrics.npz'],
    '02_compare_learners.ipynb': ['figures/compare_accuracy.png', 'figures/compare_correlates.png',
                                  'runs/02_compare_learners/backprop/metrics.npz'],
    '03_hessian_spectra.ipynb': ['figures/spectra.png', 'figures/rank_vs_mse.png',
                                 'runs/03_hessian_spectra/spectra.npz'],
}


@pytest.fixture(scope='session')
def python3_kernel():
    """The python3 kernelspec, installed into this environment (sys.prefix) if a fresh venv lacks it."""
    from jupyter_client.kernelspec import KernelSpecManager

    if 'python3' not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, '-m', 'ipykernel', 'install', '--sys-prefix'], check=True)
    return 'python3'


def test_every_notebook_is_listed_and_stored_without_outputs():
    assert sorted(p.name for p in (REPO_ROOT / 'notebooks').glob('*.ipynb')) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        notebook = nbformat.read(REPO_ROOT / 'notebooks' / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == 'code':
                assert cell.outputs == [] and cell.execution_count is None, f'{name}: clear the outputs'


@pytest.mark.parametrize('name', sorted(NOTEBOOKS))
def test_notebook_runs_and_writes_its_figures(name, tmp_path, monkeypatch, shared_data_dir, python3_kernel):
    monkeypatch.setenv('PLASTICITY_JAX_DATA_DIR', shared_data_dir)  # the kernel inherits the environment
    monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    # The package, also when it is not pip-installed (running from a checkout).
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get('PYTHONPATH')])))
    notebook = nbformat.read(REPO_ROOT / 'notebooks' / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name=python3_kernel,
                                     resources={'metadata': {'path': str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    print(f'{name}: {time.perf_counter() - start:.0f} s')
    errors = [out for cell in notebook.cells if cell.cell_type == 'code' for out in cell.outputs
              if out.output_type == 'error']
    assert not errors
    for path in NOTEBOOKS[name]:
        assert (tmp_path / path).is_file() and os.path.getsize(tmp_path / path) > 0, path
