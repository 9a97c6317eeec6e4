"""Pieces shared by the experiment configs in `configs/`: the common fields and named variants.

A run is fully described by one `ml_collections.ConfigDict`. Each file `configs/<experiment>.py` defines
`get_config(arg)`, built from `base_config()` and a dict of named variants; `arg` selects variants, several joined
by commas: `configs/slowly_changing_regression.py:tanh,adam`.
"""

from __future__ import annotations

from typing import Callable, Mapping

import ml_collections

Variant = Callable[[ml_collections.ConfigDict], None]


def base_config() -> ml_collections.ConfigDict:
    """Fields every experiment has; the experiment file fills `problem`, `model` and `learner`."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # Seed s of the run uses key fold_in(PRNGKey(seed), s).
    config.num_seeds = 4  # Independent runs, vmapped into one compiled program.
    config.num_tasks = 100
    config.tasks_per_chunk = 10  # Tasks per compiled call; metrics and a checkpoint are written after each.
    config.keep_checkpoints = 3
    config.data_dir = ''  # Folder with offline data (e.g. the MNIST IDX files); '' = $PLASTICITY_JAX_DATA_DIR.
    config.data_source = 'auto'  # 'auto' (offline files if a data dir is set, else TFDS), 'idx' or 'tfds'.

    config.metrics = ml_collections.ConfigDict()
    config.metrics.probe_size = 2000  # Examples of the new task on which the correlates are measured.
    config.metrics.saturation_epsilon = 0.01  # Dead-unit tolerance for saturating activations.
    config.metrics.approximate_rank_threshold = 0.99
    config.metrics.feature_rank_delta = 0.01  # Kumar et al. (2023).

    config.learner = ml_collections.ConfigDict()
    config.learner.name = 'backprop'
    config.learner.optimizer = 'sgd'
    config.learner.step_size = 0.003
    config.learner.momentum = 0.0
    config.learner.beta1 = 0.9
    config.learner.beta2 = 0.999
    config.learner.eps = 1e-8
    return config


def step_size_variants(step_sizes) -> dict[str, Variant]:
    """Variants `lr<step size>`, e.g. `lr0.01`."""
    return {f'lr{step_size}': (lambda c, s=step_size: setattr(c.learner, 'step_size', s)) for step_size in step_sizes}


def adam_variant(config: ml_collections.ConfigDict) -> None:
    config.learner.optimizer = 'adam'


def learner_variants() -> dict[str, Variant]:
    """One variant per registered learner (`cbp`, `l2`, ...): sets `learner.name` and adds its default fields."""
    from plasticity_jax.learners import LEARNERS

    def select(config, name):
        config.learner.name = name
        for field, value in LEARNERS[name].defaults.items():
            config.learner[field] = value

    return {name: (lambda c, n=name: select(c, n)) for name in LEARNERS}


def apply_variants(config: ml_collections.ConfigDict, arg: str | None,
                   variants: Mapping[str, Variant]) -> ml_collections.ConfigDict:
    """Applies the comma-separated variants named in `arg`, then locks the config against new fields."""
    for name in filter(None, (arg or '').split(',')):
        if name not in variants:
            raise ValueError(f'unknown config variant {name!r}; valid: {sorted(variants)}')
        variants[name](config)
    config.lock()
    return config
