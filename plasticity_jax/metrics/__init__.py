"""Metrics for studying loss of plasticity."""

from plasticity_jax.metrics.representation import (
    ACTIVATIONS,
    approximate_rank,
    dead_fraction,
    effective_rank,
    feature_rank,
    representation_metrics,
    singular_values,
    stable_rank,
    unit_features,
    weight_magnitude,
)

__all__ = [
    "ACTIVATIONS",
    "approximate_rank",
    "dead_fraction",
    "effective_rank",
    "feature_rank",
    "representation_metrics",
    "singular_values",
    "stable_rank",
    "unit_features",
    "weight_magnitude",
]
