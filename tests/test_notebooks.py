"""The notebooks in notebooks/ run top to bottom (nbclient, a fresh python3 kernel of this interpreter, in a
temporary folder, MNIST from the shared offline data) and produce their figures; they are stored without outputs.

The default suite runs each notebook with tiny settings (`SMOKE_SETTINGS`, a cell inserted after the notebook's own
settings cell; one learner in each comparison): every cell runs, in seconds. The three smoke runs share one kernel
(starting a kernel and importing jax, matplotlib and the package costs about 4 CPU-s each time): before each
notebook the kernel's namespace is cleared (`%reset -f`, so a notebook that forgets an import still fails) and its
working directory is set to the test's folder. The notebooks' own settings, which take minutes and show the
phenomenon, run under `-m slow`, each in a fresh kernel as a user runs it.
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
                            'runs/01_quickstart/backprop/metrics.npz', 'runs/01_quickstart/cbp/metrics.npz'],
    '02_compare_learners.ipynb': ['figures/compare_accuracy.png', 'figures/compare_correlates.png',
                                  'runs/02_compare_learners/l2/metrics.npz',
                                  'runs/02_compare_learners/cbp/metrics.npz'],
    '03_hessian_spectra.ipynb': ['figures/spectra.png', 'figures/rank_vs_mse.png',
                                 'runs/03_hessian_spectra/spectra.npz'],
}


# Run after each notebook's first code cell (its settings) in the default suite: tiny runs, and one learner in each
# comparison (each learner is one more compiled program; the notebooks' loops and figures are the same for one).
SMOKE_SETTINGS = {
    '01_quickstart.ipynb': "SEEDS, TASKS, EXAMPLES_PER_TASK, BINS = 2, 4, 200, 2\nLEARNERS = ['backprop']",
    # L2 exercises LEARNER_FIELDS.
    '02_compare_learners.ipynb': "SEEDS, TASKS, EXAMPLES_PER_TASK, WIDTH, PROBE_SIZE, BINS = 2, 2, 100, 16, 32, 2\n"
                                 "LEARNERS = ['l2']",
    '03_hessian_spectra.ipynb': 'SEEDS, TASKS, EXAMPLES_PER_TASK, CHECKPOINT_EVERY, ORDER, DRAWS, EXACT_GGN_PROBES = '
                                 '2, 4, 200, 2, 8, 1, 16',
}
# The outputs of the learners the smoke settings leave out.
NOT_IN_SMOKE = {'runs/01_quickstart/cbp/metrics.npz', 'runs/02_compare_learners/cbp/metrics.npz'}


@pytest.fixture(scope='session')
def python3_kernel():
    """The python3 kernelspec, installed into this environment (sys.prefix) if a fresh venv lacks it."""
    from jupyter_client.kernelspec import KernelSpecManager

    if 'python3' not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, '-m', 'ipykernel', 'install', '--sys-prefix'], check=True)
    return 'python3'


def _kernel_environment(monkeypatch, shared_data_dir):
    """What a notebook's kernel inherits: the offline data, the inline backend, the package from this checkout."""
    monkeypatch.setenv('PLASTICITY_JAX_DATA_DIR', shared_data_dir)
    monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get('PYTHONPATH')])))


@pytest.fixture(scope='module')
def shared_kernel(python3_kernel, shared_data_dir):
    """One running kernel for the smoke runs: `[manager]`, filled by the first notebook's client, shut down at the
    end of the module."""
    manager: list = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        _kernel_environment(monkeypatch, shared_data_dir)
        yield manager
    if manager:
        nbclient.util.run_sync(manager[0].shutdown_kernel)(now=True)


def test_every_notebook_is_listed_and_stored_without_outputs():
    assert sorted(p.name for p in (REPO_ROOT / 'notebooks').glob('*.ipynb')) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        notebook = nbformat.read(REPO_ROOT / 'notebooks' / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == 'code':
                assert cell.outputs == [] and cell.execution_count is None, f'{name}: clear the outputs'
                # Configs through the public `plasticity_jax.config.load`, not a copied importlib helper.
                assert 'importlib' not in cell.source and 'def get_config' not in cell.source, name


def execute(name, tmp_path, kernel, smoke, manager=None):
    """Run notebook `name` in `tmp_path`: in a fresh kernel, or in the running kernel `manager[0]` (started and
    stored there if `manager` is an empty list)."""
    notebook = nbformat.read(REPO_ROOT / 'notebooks' / name, as_version=4)
    if smoke:
        settings = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == 'code')
        notebook.cells.insert(settings + 1, nbformat.v4.new_code_cell(SMOKE_SETTINGS[name]))
    if manager:  # the running kernel: a clean namespace, this test's folder
        notebook.cells.insert(0, nbformat.v4.new_code_cell(f'%reset -f\nimport os\nos.chdir({str(tmp_path)!r})'))
    client = nbclient.NotebookClient(notebook, timeout=1800, kernel_name=kernel, km=manager[0] if manager else None,
                                     resources={'metadata': {'path': str(tmp_path)}})
    start = time.perf_counter()
    try:  # raises CellExecutionError, with the cell and its traceback, if any cell fails
        client.execute(cleanup_kc=manager is None)
    finally:
        if manager is not None:
            if not manager and client.km is not None:
                manager.append(client.km)
            if client.kc is not None:
                client.kc.stop_channels()
    print(f'{name}: {time.perf_counter() - start:.0f} s')
    errors = [out for cell in notebook.cells if cell.cell_type == 'code' for out in cell.outputs
              if out.output_type == 'error']
    assert not errors
    for path in NOTEBOOKS[name]:
        if smoke and path in NOT_IN_SMOKE:
            assert not (tmp_path / path).exists(), f'{path}: the smoke settings did not apply'
            continue
        assert (tmp_path / path).is_file() and os.path.getsize(tmp_path / path) > 0, path


@pytest.mark.parametrize('name', sorted(NOTEBOOKS))
def test_notebook_runs_and_writes_its_figures(name, tmp_path, python3_kernel, shared_kernel):
    execute(name, tmp_path, python3_kernel, smoke=True, manager=shared_kernel)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(NOTEBOOKS))
def test_notebook_at_its_own_settings(name, tmp_path, monkeypatch, shared_data_dir, python3_kernel):
    """As a user runs it: minutes, with the settings that show loss of plasticity (times in docs/results.md)."""
    _kernel_environment(monkeypatch, shared_data_dir)
    execute(name, tmp_path, python3_kernel, smoke=False)
