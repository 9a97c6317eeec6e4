"""Analysis of finished runs: tidy pandas tables (`tables`) and the standard matplotlib figures (`plots`).

    from plasticity_jax import analysis
    run = analysis.load_run('runs/pmnist')
    analysis.binned_summary(analysis.metrics_table(run, ['online_accuracy']), 'online_accuracy', bins=40)
    fig = analysis.plot_correlates(run, bins=40); analysis.save_figure(fig, 'figures/correlates')   # .png and .pdf

`python -m plasticity_jax.plot --workdir=DIR --out=DIR/figures` draws every standard figure of a workdir.
"""

from plasticity_jax.analysis.plots import (
                                           METRIC_LABELS,
                                           plot_binned,
                                           plot_correlates,
                                           plot_metric,
                                           plot_rank_vs_performance,
                                           plot_spectra,
                                           plot_sweep,
                                           save_figure,
)
from plasticity_jax.analysis.tables import (
                                           CORRELATES,
                                           LAYER_METRICS,
                                           PERFORMANCE,
                                           accuracy_change_per_task,
                                           binned_summary,
                                           choose_tasks,
                                           curvature_table,
                                           density_table,
                                           labelled_runs,
                                           linear_fit,
                                           metrics_table,
                                           rank_performance_fits,
                                           resolved_epsilon,
                                           seed_means,
                                           sweep_summary,
                                           task_bins,
)
from plasticity_jax.results import Run, load_run

__all__ = ['CORRELATES', 'LAYER_METRICS', 'METRIC_LABELS', 'PERFORMANCE', 'Run', 'accuracy_change_per_task',
           'binned_summary', 'choose_tasks',
           'curvature_table', 'density_table', 'labelled_runs', 'linear_fit', 'load_run', 'metrics_table',
           'plot_binned', 'plot_correlates', 'plot_metric', 'plot_rank_vs_performance', 'plot_spectra', 'plot_sweep',
           'rank_performance_fits', 'resolved_epsilon', 'save_figure', 'seed_means', 'sweep_summary', 'task_bins']
