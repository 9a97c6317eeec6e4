"""Tidy tables and summaries, on hand-made runs with numbers checked by hand."""

import math

import ml_collections
import numpy as np
import pandas as pd
import pytest

from plasticity_jax.analysis import tables
from plasticity_jax.results import Run


def make_run(workdir='x', metrics=None, spectra=None, sweep=None, **config):
    base = {'learner': {'name': 'backprop', 'step_size': 0.01}, 'problem': {'examples_per_task': 100},
            'curvature': {'kind': 'hessian', 'epsilons': (1e-4, 1e-3, 1e-2), 'grid': (0.0, 2.0, 3)}}
    base.update(config)
    return Run(workdir=workdir, config=ml_collections.ConfigDict(base), metrics=metrics or {}, spectra=spectra or {},
               sweep=sweep or {})


# online_accuracy[seed, task]: 3 seeds, 4 tasks.
ACCURACY = np.array([[0.1, 0.2, 0.3, 0.4],
                     [0.2, 0.4, 0.6, 0.8],
                     [0.3, 0.3, 0.3, 0.3]])
# dead_fraction[seed, task, layer]: 2 layers.
DEAD = np.stack([ACCURACY, 2 * ACCURACY], axis=-1)


def simple_run(workdir='runs/bp'):
    return make_run(workdir, {'online_accuracy': ACCURACY, 'dead_fraction': DEAD,
                              'weight_magnitude': ACCURACY + 1})


def test_metrics_table_is_tidy_with_layers_reduced():
    table = tables.metrics_table(simple_run(), ['online_accuracy', 'dead_fraction'])
    assert list(table.columns) == ['label', 'seed', 'task', 'online_accuracy', 'dead_fraction']
    assert len(table) == 12 and set(table['label']) == {'bp'}
    row = table[(table.seed == 1) & (table.task == 2)].iloc[0]
    assert row['online_accuracy'] == pytest.approx(0.6)
    assert row['dead_fraction'] == pytest.approx((0.6 + 1.2) / 2)  # mean over the 2 layers
    last = tables.metrics_table(simple_run(), 'dead_fraction', layer='last')
    np.testing.assert_allclose(last['dead_fraction'], (2 * ACCURACY).reshape(-1))


def test_metrics_table_keeps_layer_axis_and_refuses_mixing():
    table = tables.metrics_table(simple_run(), ['dead_fraction'], layer=None)
    assert list(table.columns) == ['label', 'seed', 'task', 'layer', 'dead_fraction'] and len(table) == 24
    assert table[(table.seed == 0) & (table.task == 3) & (table.layer == 1)]['dead_fraction'].item() == \
        pytest.approx(0.8)
    with pytest.raises(ValueError, match='layer=None'):
        tables.metrics_table(simple_run(), ['dead_fraction', 'online_accuracy'], layer=None)


def test_metrics_table_default_names_skip_curvature_and_labels_several_runs():
    run = simple_run()
    run.metrics['hessian_trace'] = np.zeros((3, 4, 2))
    table = tables.metrics_table({'a': run, 'b': simple_run('runs/other')}, params=['learner.step_size'])
    assert 'hessian_trace' not in table and {'online_accuracy', 'dead_fraction', 'weight_magnitude'} <= set(table)
    assert list(pd.unique(table['label'])) == ['a', 'b'] and (table['step_size'] == 0.01).all()
    labels = tables.metrics_table([run, simple_run('runs/other')], 'online_accuracy')['label']
    assert list(pd.unique(labels)) == ['bp', 'other']


def test_binned_summary_mean_and_standard_error_by_hand():
    table = tables.metrics_table(simple_run(), 'online_accuracy')
    summary = tables.binned_summary(table, 'online_accuracy', bins=2)
    assert list(summary['task_first']) == [0, 2] and list(summary['task_last']) == [1, 3]
    assert list(summary['task']) == [0.5, 2.5] and list(summary['n_seeds']) == [3, 3]
    # Bin 0: per-seed means 0.15, 0.3, 0.3 -> mean 0.25, standard error std(ddof=1) / sqrt(3).
    seeds = np.array([0.15, 0.3, 0.3])
    assert summary['mean'][0] == pytest.approx(0.25)
    assert summary['stderr'][0] == pytest.approx(math.sqrt(((seeds - 0.25) ** 2).sum() / 2) / math.sqrt(3))
    # Bin 1: per-seed means 0.35, 0.7, 0.3 -> mean 0.45.
    seeds = np.array([0.35, 0.7, 0.3])
    assert summary['mean'][1] == pytest.approx(0.45)
    assert summary['stderr'][1] == pytest.approx(seeds.std(ddof=1) / math.sqrt(3))


def test_binned_summary_uneven_bins_per_task_and_one_seed():
    assert list(tables.task_bins(range(5), 2)) == [0, 0, 0, 1, 1]
    assert list(tables.task_bins(range(3), None)) == [0, 1, 2]
    assert list(tables.task_bins(range(3), 10)) == [0, 1, 2]
    one_seed = make_run('s', {'online_mse': ACCURACY[:1]})
    summary = tables.binned_summary(tables.metrics_table(one_seed, 'online_mse'), 'online_mse', bins=None)
    np.testing.assert_allclose(summary['mean'], ACCURACY[0])
    assert summary['stderr'].isna().all() and (summary['n_seeds'] == 1).all()


def test_binned_summary_per_label_and_layer_ignores_nan_seeds():
    accuracy = ACCURACY.copy()
    accuracy[2, :2] = np.nan  # a seed that diverged in the first bin
    run = make_run('r', {'online_accuracy': accuracy})
    summary = tables.binned_summary(tables.metrics_table({'a': run, 'b': simple_run()}, 'online_accuracy'),
                                    'online_accuracy', bins=2)
    a = summary[summary.label == 'a']
    assert list(a['n_seeds']) == [2, 3] and a['mean'].iloc[0] == pytest.approx((0.15 + 0.3) / 2)
    layered = tables.binned_summary(tables.metrics_table(simple_run(), 'dead_fraction', layer=None),
                                    'dead_fraction', bins=1)
    assert list(layered['layer']) == [0, 1]
    np.testing.assert_allclose(layered['mean'], [ACCURACY.mean(), 2 * ACCURACY.mean()])


def test_a_seeds_bin_mean_is_over_its_tasks_with_a_value():
    """An RL interval in which no episode ended has no return (NaN): the seed's bin mean is over its other tasks,
    and a seed without a value in a whole bin is left out of it (`n_seeds`)."""
    returns = ACCURACY.copy()
    returns[0, 1] = np.nan  # seed 0: no episode ended in interval 1
    returns[1, 2:] = np.nan  # seed 1: none in intervals 2 and 3
    table = tables.metrics_table(make_run('r', {'episode_return': returns}), 'episode_return')
    summary = tables.binned_summary(table, 'episode_return', bins=2)
    assert list(summary['n_seeds']) == [3, 2]
    assert summary['mean'].iloc[0] == pytest.approx((0.1 + 0.3 + 0.3) / 3)  # seed 0 over task 0 alone
    assert summary['mean'].iloc[1] == pytest.approx((0.35 + 0.3) / 2)


def test_inputs_the_tables_cannot_honour_are_refused_by_name():
    with pytest.raises(ValueError, match=r"two runs are labelled 'plain' \(a/plain and b/plain\)"):
        tables.metrics_table([simple_run('a/plain'), simple_run('b/plain')])
    run = simple_run()
    run.metrics['hessian_trace'] = np.zeros((3, 4, 2))
    with pytest.raises(ValueError, match=r"\['hessian_trace'\] are not per-task metrics"):
        tables.metrics_table(run, ['online_accuracy', 'hessian_trace'])
    for bins in (0, -3, 2.5):
        with pytest.raises(ValueError, match=f'bins={bins}: give an integer >= 1'):
            tables.task_bins([0, 1, 2], bins)
    table = tables.metrics_table(simple_run(), 'online_accuracy')
    for tasks, message in ((0, 'give the last n tasks with 1 <= n <= 4'), (50, '1 <= n <= 4'),
                           ([7, 8], r'tasks \[7, 8\] are not in the runs')):
        with pytest.raises(ValueError, match=message):
            tables.seed_means(table, 'online_accuracy', tasks)
    with pytest.raises(ValueError, match=r'epsilon=0.05 was not measured: .* swept config.curvature.epsilons'):
        tables.curvature_table(curvature_run(), epsilon=0.05)
    with pytest.raises(ValueError, match="when='middle': give 'start' or 'end'"):
        tables.curvature_table(curvature_run(), when='middle')
    with pytest.raises(ValueError, match="no performance metric 'online_mse' beside the curvature measurements"):
        tables.rank_performance_fits(curvature_run(), 'online_mse')
    with pytest.raises(ValueError, match=r'tasks=\[\]: give task indices, or None'):
        tables.density_table(curvature_run(), tasks=[])
    with pytest.raises(KeyError, match=r"unknown config field 'learner.stepsize': config.learner has no field"):
        tables.sweep_summary(simple_run(), 'online_accuracy', 'learner.stepsize')
    with pytest.raises(ValueError, match=r"learner.name is not a number \('backprop'\)"):
        tables.sweep_summary(simple_run(), 'online_accuracy', 'learner.name')
    with pytest.raises(ValueError, match=r'the same shape, got \(2,\) and \(1,\)'):
        tables.linear_fit([1, 2], [3])
    with pytest.raises(TypeError, match='a run is a results.Run or its workdir path, not int'):
        tables.metrics_table(123)


def test_no_resolved_epsilon_is_nan_and_the_table_shows_the_largest_unresolved():
    run = curvature_run()
    run.metrics['hessian_epsilon_rank'][:, 0, 0, :] = np.nan  # no epsilon resolved at task 0
    assert math.isnan(tables.resolved_epsilon(run))
    table = tables.curvature_table(run)
    assert (table['epsilon'] == 1e-2).all() and table[table.task == 0]['epsilon_rank'].isna().all()


def sweep_run():
    # 2 points x 2 seeds x 3 tasks.
    accuracy = np.array([[[0.5, 0.6, 0.7], [0.7, 0.8, 0.9]],
                         [[0.2, 0.2, 0.2], [0.4, 0.4, 0.4]]])
    return make_run('runs/lr', {'online_accuracy': accuracy}, sweep={'learner.step_size': np.array([0.1, 0.01])})


def test_sweep_points_become_labelled_runs():
    pairs = tables.labelled_runs(sweep_run())
    assert [label for label, _ in pairs] == ['step_size=0.1', 'step_size=0.01']
    assert pairs[1][1].config.learner.step_size == pytest.approx(0.01)
    assert pairs[1][1].metrics['online_accuracy'].shape == (2, 3)
    both = tables.labelled_runs({'lr': sweep_run(), 'bp': simple_run()})
    assert [label for label, _ in both] == ['lr, step_size=0.1', 'lr, step_size=0.01', 'bp']
    named = tables.labelled_runs(sweep_run(), label='sgd')  # a label given is kept, not dropped
    assert [label for label, _ in named] == ['sgd, step_size=0.1', 'sgd, step_size=0.01']
    with pytest.raises(ValueError, match='runs given as a dict are labelled by its keys'):
        tables.labelled_runs({'lr': sweep_run()}, label=['other'])
    with pytest.raises(IndexError, match='point 5 of runs/lr: the sweep has 2 points'):
        sweep_run().point(5)


def test_sweep_summary_final_performance_vs_parameter():
    summary = tables.sweep_summary(sweep_run(), 'online_accuracy', 'learner.step_size')
    assert list(summary['step_size']) == [0.01, 0.1]  # sorted by the parameter
    # step 0.01: seed means 0.2, 0.4 -> 0.3 +- 0.1 / sqrt(2) * sqrt(2) = 0.1; step 0.1: 0.6, 0.8 -> 0.7 +- 0.1.
    np.testing.assert_allclose(summary['mean'], [0.3, 0.7])
    np.testing.assert_allclose(summary['stderr'], [0.1, 0.1])
    last = tables.sweep_summary(sweep_run(), 'online_accuracy', 'learner.step_size', tasks=1)
    np.testing.assert_allclose(last['mean'], [0.3, 0.8])


def curvature_run():
    # In-run metrics (seed, task, start/end, ...): measured at tasks 0 and 2 of 3; 2 seeds.
    nan = np.nan
    trace = np.full((2, 3, 2), nan)
    trace[:, [0, 2]] = 1.0
    rank = np.full((2, 3, 2, 3), nan)
    rank[:, 0, 0] = [[0.9, 0.8, 0.7], [0.8, 0.7, 0.6]]
    rank[:, 2, 0] = [[0.5, 0.4, 0.3], [0.4, 0.3, 0.2]]
    rank[:, [0, 2], 1] = 0.1
    density = np.full((2, 3, 2, 3), nan)
    density[:, [0, 2]] = [1.0, 2.0, 3.0]
    density[1, 2, 0] = [3.0, 4.0, 5.0]
    metrics = {'online_accuracy': np.array([[0.9, 0.8, 0.6], [0.85, 0.75, 0.5]]),
               'hessian_trace': trace, 'hessian_top_eigenvalue': trace * 2, 'hessian_epsilon_rank': rank,
               'hessian_epsilon_mass': rank / 2, 'hessian_density': density}
    return make_run('runs/curv', metrics)


def test_curvature_table_pairs_the_start_spectrum_with_the_task_performance():
    table = tables.curvature_table(curvature_run(), epsilon=1e-3)
    assert list(table['task']) == [0, 2, 0, 2] and list(table['seed']) == [0, 0, 1, 1]
    np.testing.assert_allclose(table['epsilon_rank'], [0.8, 0.4, 0.7, 0.3])
    np.testing.assert_allclose(table['online_accuracy'], [0.9, 0.6, 0.85, 0.5])
    assert (table['epsilon'] == 1e-3).all() and (table['top_eigenvalue'] == 2).all()
    end = tables.curvature_table(curvature_run(), epsilon=1e-2, when='end')
    np.testing.assert_allclose(end['epsilon_rank'], 0.1)


def test_default_epsilon_is_the_smallest_resolved_one_and_fits_cover_the_sweep():
    run = curvature_run()
    rank = run.metrics['hessian_epsilon_rank']
    rank[1, 2, 0, 0] = np.nan  # eps = 1e-4 unresolved in one measurement
    assert tables.resolved_epsilon(run) == 1e-3
    table = tables.curvature_table(run)
    assert (table['epsilon'] == 1e-3).all()
    exact = np.full((2, 3, 2, 3), np.nan)
    exact[:, [0, 2]] = 0.25
    run.metrics.update({'ggn_exact_epsilon_rank': exact, 'ggn_exact_trace': run.metrics['hessian_trace'],
                        'ggn_exact_top_eigenvalues': np.ones((2, 3, 2, 4))})
    ggn = tables.curvature_table(run, kind='ggn_exact')
    assert (ggn['kind'] == 'ggn_exact').all() and (ggn['epsilon'] == 1e-4).all()
    np.testing.assert_allclose(ggn['epsilon_rank'], 0.25)
    assert np.isnan(ggn['epsilon_mass']).all()
    fits = tables.rank_performance_fits({'a': run, 'b': curvature_run()})
    assert list(fits['epsilon'].unique()) == [1e-4, 1e-3, 1e-2] and set(fits['group']) == {'pooled', 'a', 'b'}
    first = fits[(fits['epsilon'] == 1e-4) & (fits['group'] == 'pooled')].iloc[0]
    assert first['n'] == 7 and first['n_unresolved'] == 1


def test_curvature_table_from_checkpoint_spectra():
    spectra = {'task': np.array([0, 3]), 'hessian_trace': np.ones((2, 2)), 'hessian_top_eigenvalue': np.ones((2, 2)),
               'hessian_epsilon_rank': np.full((2, 2, 3), 0.5), 'hessian_epsilon_mass': np.full((2, 2, 3), 0.4),
               'hessian_density': np.ones((2, 2, 3))}
    run = make_run('runs/ckpt', {'online_accuracy': np.array([[0.9, 0.8, 0.6], [0.85, 0.75, 0.5]])}, spectra)
    table = tables.curvature_table(run)
    assert list(table['task']) == [0, 3, 0, 3]
    np.testing.assert_allclose(table['online_accuracy'], [0.9, np.nan, 0.85, np.nan])  # task 3 was never run
    with pytest.raises(ValueError, match='no in-run'):
        tables.curvature_table(run, source='run')


def test_density_table_seed_mean_on_the_grid():
    density = tables.density_table(curvature_run(), tasks=[2])
    assert list(density['eigenvalue']) == [0.0, 1.0, 2.0] and (density['task'] == 2).all()
    assert (density['requested'] == 2).all()
    assert (tables.density_table(curvature_run(), tasks=[1])['requested'] == 1).all()
    np.testing.assert_allclose(density['density'], [2.0, 3.0, 4.0])
    np.testing.assert_allclose(density['stderr'], [1.0, 1.0, 1.0])  # std of (1, 3) is sqrt(2); / sqrt(2)
    assert tables.choose_tasks([0, 10, 20, 30], [9, 11, 29]) == [10, 30]
    assert tables.choose_tasks(range(0, 100, 10), max_tasks=3) == [0, 40, 90]


def test_linear_fit():
    fit = tables.linear_fit([0, 1, 2, 3], [1, 3, 5, 7])
    assert fit == pytest.approx({'slope': 2.0, 'intercept': 1.0, 'r2': 1.0, 'n': 4})
    fit = tables.linear_fit([0, 1, 2, np.nan], [0, 1, 0, 5])  # NaN pairs dropped; y = 1/3, r2 = 0
    assert fit['n'] == 3 and fit['slope'] == pytest.approx(0.0) and fit['r2'] == pytest.approx(0.0)


def test_binned_summary_bins_each_run_over_its_own_tasks():
    short = make_run('short', {'online_accuracy': ACCURACY[:, :2]})
    summary = tables.binned_summary(tables.metrics_table([simple_run(), short], 'online_accuracy'),
                                    'online_accuracy', bins=2)
    assert list(summary['label']) == ['bp', 'bp', 'short', 'short']
    assert list(summary['task_first']) == [0, 2, 0, 1] and list(summary['task_last']) == [1, 3, 0, 1]
    np.testing.assert_allclose(summary['mean'][2:], ACCURACY[:, :2].mean(axis=0))


def test_binned_summary_keeps_the_order_the_runs_were_given():
    table = tables.metrics_table({'zeta': simple_run(), 'alpha': simple_run('y')}, 'online_accuracy')
    summary = tables.binned_summary(table, 'online_accuracy', bins=2)
    assert list(summary['label']) == ['zeta', 'zeta', 'alpha', 'alpha'] and list(summary['bin']) == [0, 1, 0, 1]


def test_accuracy_change_per_task_is_the_mean_of_seed_slopes():
    tasks = np.arange(6)
    accuracy = np.stack([0.9 - 0.01 * tasks, 0.8 + 0.02 * tasks, 0.5 + 0.0 * tasks])  # slopes -0.01, 0.02, 0
    out = tables.accuracy_change_per_task(make_run(metrics={'test_accuracy': accuracy}))
    assert out['n_seeds'].tolist() == [3]
    np.testing.assert_allclose(out['mean'], [0.01 / 3], atol=1e-12)
    np.testing.assert_allclose(out['stderr'], [np.std([-0.01, 0.02, 0.0], ddof=1) / math.sqrt(3)], atol=1e-12)
