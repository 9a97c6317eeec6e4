"""The standard figures: what is drawn equals the tables, files are written, and the CLI draws a real run."""

import os
import re
import subprocess
import sys

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from plasticity_jax import engine  # noqa: E402
from plasticity_jax.analysis import plots, tables  # noqa: E402
from tests.analysis.test_tables import ACCURACY, curvature_run, make_run, simple_run, sweep_run  # noqa: E402
from tests.conftest import REPO_ROOT, load_config  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')


def runs():
    return {'backprop': simple_run('runs/bp'),
            'l2': make_run('runs/l2', {'online_accuracy': ACCURACY[::-1] / 2, 'dead_fraction': np.zeros((3, 4, 2)),
                                       'weight_magnitude': np.ones((3, 4))})}


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_plot_metric_draws_the_binned_mean_with_error_bands_and_a_legend():
    ax = plots.plot_metric(runs(), 'online_accuracy', bins=2)
    summary = tables.binned_summary(tables.metrics_table(runs(), 'online_accuracy'), 'online_accuracy', bins=2)
    assert [line.get_label() for line in ax.get_lines()] == ['backprop', 'l2']
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ['backprop', 'l2']
    for line, label in zip(ax.get_lines(), ['backprop', 'l2']):
        part = summary[summary.label == label]
        np.testing.assert_allclose(line.get_ydata(), part['mean'] * 100)  # accuracy in percent
        np.testing.assert_allclose(line.get_xdata(), part['task'] + 1)  # task numbers from 1
    assert len(bands(ax)) == 2
    # The band of backprop spans mean +- standard error.
    vertices = bands(ax)[0].get_paths()[0].vertices
    part = summary[summary.label == 'backprop']
    assert vertices[:, 1].max() == pytest.approx(((part['mean'] + part['stderr']) * 100).max())
    assert ax.get_xlabel() == 'Task number\nmean $\\pm$ 1 s.e. over 3 seeds'
    assert ax.get_ylabel() == 'Online accuracy (%)'
    # Every band lies beneath every line: a later run's band never hides an earlier run's curve.
    assert max(band.get_zorder() for band in bands(ax)) < min(line.get_zorder() for line in ax.get_lines())
    many = {f'method {i}': simple_run(f'runs/{i}') for i in range(6)}
    alphas = [band.get_alpha() for band in bands(plots.plot_metric(many, 'online_accuracy', bins=2))]
    assert alphas == pytest.approx([0.1] * 6)  # six overlapping bands: lighter than one band's 0.2


def test_plot_metric_puts_a_long_legend_outside_the_axes():
    many = {f'method {i}': make_run(f'runs/{i}', {'online_accuracy': ACCURACY * (1 - i / 10)}) for i in range(6)}
    for legend, outside in (('auto', True), ('inside', False), ('outside', True)):
        ax = plots.plot_metric(many, 'online_accuracy', bins=2, legend=legend)
        ax.figure.canvas.draw()
        box, axes_box = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert (box.x0 >= axes_box.x1) == outside, legend
        assert len(ax.get_legend().get_texts()) == 6
    ax = plots.plot_metric(dict(list(many.items())[:3]), 'online_accuracy', bins=2)  # few lines: inside
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().x1 <= ax.get_window_extent().x1
    assert plots.plot_metric(many, 'online_accuracy', bins=2, legend=None).get_legend() is None
    with pytest.raises(ValueError, match='legend'):
        plots.plot_metric(many, 'online_accuracy', bins=2, legend='left')


def test_plot_metric_against_examples_and_save_figure(tmp_path):
    ax = plots.plot_metric(simple_run(), 'weight_magnitude', bins=None, x='examples')
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), np.arange(1, 5) * 100 / 1e3)  # thousands of examples
    assert ax.get_legend() is None  # one run: no legend
    paths = plots.save_figure(ax.figure, str(tmp_path / 'sub' / 'weights'))
    assert paths == [str(tmp_path / 'sub' / 'weights.png'), str(tmp_path / 'sub' / 'weights.pdf')]
    with open(paths[0], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(paths[1], 'rb') as f:
        assert f.read(5) == b'%PDF-'
    assert all(os.path.getsize(p) > 1000 for p in paths)


def test_plot_correlates_one_panel_per_available_correlate():
    fig = plots.plot_correlates(runs(), bins=2)  # no effective / stable rank in these runs: skipped
    assert [ax.get_ylabel() for ax in fig.axes] == ['Dead units (%)', 'Average weight magnitude']
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ['backprop', 'l2']
    dead = fig.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(dead, [ACCURACY[:, :2].mean() * 150, ACCURACY[:, 2:].mean() * 150])
    assert all(len(bands(ax)) == 2 for ax in fig.axes)


def test_plot_sweep_final_performance_vs_step_size():
    ax = plots.plot_sweep(sweep_run(), 'online_accuracy', 'learner.step_size')
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [0.01, 0.1])
    np.testing.assert_allclose(line.get_ydata(), [30.0, 70.0])
    assert ax.get_xscale() == 'log' and ax.get_xlabel().startswith('step size\nmean $\\pm$ 1 s.e. over ')
    ax.figure.canvas.draw()  # log ticks: exactly the swept values, plainly labelled, no minor labels
    assert [t.get_text() for t in ax.get_xticklabels()] == ['0.01', '0.1']
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))


def test_plot_spectra_log_density_grid_of_runs_by_tasks():
    fig = plots.plot_spectra({'bp': curvature_run(), 'other': curvature_run()}, tasks=[0, 2])
    assert len(fig.axes) == 4 and all(ax.get_yscale() == 'log' for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes[:2]] == ['start of task 0', 'start of task 2']  # the CLI's numbering
    assert fig.axes[0].get_ylabel() == 'eigenvalue density'  # the quantity, not the run's label
    asked = plots.plot_spectra(curvature_run(), tasks=[1])  # task 1 was not measured: say which one is shown
    assert asked.axes[0].get_title() == 'start of task 0 (asked: 1)'
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [2.0, 3.0, 4.0])


def test_plot_rank_vs_performance_fit_and_r2():
    ax = plots.plot_rank_vs_performance(curvature_run(), epsilon=1e-3)
    table = tables.curvature_table(curvature_run(), epsilon=1e-3)
    expected = tables.linear_fit(table['epsilon_rank'], table['online_accuracy'] * 100)
    assert ax.linear_fit == pytest.approx(expected)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == 'curv' and labels[1] == f"linear fit, $R^2$ = {expected['r2']:.2f} (n = 4)"
    assert ax.get_xlabel().startswith('Hessian $\\epsilon$-rank / parameters at the start of task')
    assert ax.get_ylabel() == 'Online accuracy (%) on that task'
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], table['epsilon_rank'])


def test_plot_cli_draws_every_figure_of_a_real_run(tmp_path, curvature_run):
    _, workdir, _ = curvature_run  # tests/conftest.py: metrics, Hessian and exact GGN spectra
    out = tmp_path / 'figures'
    result = subprocess.run([sys.executable, '-m', 'plasticity_jax.plot', f'--workdir={workdir}',
                             f'--out={out}', '--bins=2'], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {'performance_online_mse', 'correlates', 'hessian_spectra', 'rank_vs_online_mse',
             'ggn_exact_rank_vs_online_mse'}
    assert {f'{out}/{n}.{e}' for n in names for e in ('png', 'pdf')} <= set(result.stdout.split())
    assert all(os.path.getsize(out / f'{n}.png') > 1000 for n in names)


def test_an_out_of_range_layer_is_refused_before_any_figure_is_written(tmp_path, curvature_run):
    """`--layer=5` on a one-hidden-layer run drew the performance figures, then failed with an IndexError."""
    from plasticity_jax import plot  # importable beside the other command lines: its flags are defined only in main

    _, workdir, _ = curvature_run
    with pytest.raises(ValueError, match=r'layer 5 is out of range: the run has 1 hidden layer\(s\) \(0 to 0, or -1'):
        plot.make_figures(str(workdir), str(tmp_path / 'figures'), layer=5)
    assert not (tmp_path / 'figures').exists()
    per_layer = np.arange(6).reshape(1, 2, 3)  # (seed, task, layer)
    np.testing.assert_array_equal(tables.select_layer(per_layer, -3), tables.select_layer(per_layer, 0))
    np.testing.assert_array_equal(tables.select_layer(per_layer, 'last'), [[2, 5]])


def test_plot_arguments_the_runs_cannot_honour_are_refused_by_name(tmp_path, curvature_run):
    from plasticity_jax import plot

    _, workdir, _ = curvature_run
    with pytest.raises(ValueError, match=r'epsilon=0.05 was not measured'):  # was snapped to the nearest one
        plot.make_figures(str(workdir), str(tmp_path / 'figures'), epsilon=0.05)
    with pytest.raises(ValueError, match=re.escape("--tasks=0,x: ['x'] are not task indices")):
        plot.make_figures(str(workdir), str(tmp_path / 'figures'), tasks=[0, 'x'])
    assert not (tmp_path / 'figures').exists()
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(ValueError, match='a_file is a file, not a folder'):
        plot.make_figures(str(workdir), str(tmp_path / 'a_file'))
    with pytest.raises(KeyError, match=re.escape("the runs lack ['dead_fractoin']")):
        plots.plot_correlates(simple_run(), metrics=['dead_fraction', 'dead_fractoin'])
    with pytest.raises(ValueError, match="legend must be 'auto', 'inside', 'outside' or None, not 'outsde'"):
        plots.plot_metric(simple_run(), 'online_accuracy', legend='outsde')
    rl = make_run('runs/rl', {'episode_return': ACCURACY}, env={'name': 'point_mass'})
    with pytest.raises(ValueError, match="x='examples' counts a supervised problem's examples"):
        plots.plot_metric(rl, 'episode_return', x='examples')


def test_plot_sweep_marks_a_diverged_point_instead_of_dropping_it():
    run = sweep_run()
    run.metrics['online_accuracy'][1] = np.nan  # every seed of step size 0.01 diverged
    ax = plots.plot_sweep(run, 'online_accuracy', 'learner.step_size')
    marks = [line for line in ax.get_lines() if line.get_label() == 'diverged (non-finite)']
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [0.01]
    assert 'diverged (non-finite)' in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_errors_name_the_problem(tmp_path):
    from plasticity_jax import results

    with pytest.raises(FileNotFoundError, match='missing does not exist'):
        results.load_runs(str(tmp_path / 'missing'))
    run = tmp_path / 'started'
    run.mkdir()
    (run / engine.CONFIG_FILE).write_text(load_config('slowly_changing_regression.py').to_json())
    result = subprocess.run([sys.executable, '-m', 'plasticity_jax.plot', f'--workdir={run}'],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    assert 'error: ' in result.stderr and 'holds no metrics yet' in result.stderr
    assert not (run / 'figures').exists()
    # The flags' own checks, before any file is read; `main` reports their ValueError as the line above.
    with pytest.raises(ValueError, match=re.escape("--tasks=0,abc: ['abc'] are not task indices")):
        plots.parse_layer_and_tasks('mean', ['0', 'abc'])
    with pytest.raises(ValueError, match="--layer=first: give 'mean', 'last' or a layer index"):
        plots.parse_layer_and_tasks('first', [])
    assert plots.parse_layer_and_tasks('-1', ['0', '50']) == (-1, [0, 50])
    assert plots.parse_layer_and_tasks('last', []) == ('last', None)
