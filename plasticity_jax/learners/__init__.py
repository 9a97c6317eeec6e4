"""Learners: an optax optimizer plus optional objective and after-update hooks (see `learners.base`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import ml_collections

from plasticity_jax.learners.adam_presets import PROPER_ADAM_DEFAULTS, make_proper_adam
from plasticity_jax.learners.backprop import make_backprop, make_optimizer
from plasticity_jax.learners.base import (
    AfterUpdate,
    AfterUpdateInputs,
    ForwardPass,
    Learner,
    LossFn,
    identity_after_update,
    make_learner_with,
)
from plasticity_jax.learners.continual_backprop import DEFAULTS as CBP_DEFAULTS
from plasticity_jax.learners.continual_backprop import make_continual_backprop
from plasticity_jax.learners.effective_rank import DEFAULTS as L2_ER_DEFAULTS
from plasticity_jax.learners.effective_rank import make_l2_er
from plasticity_jax.learners.redo import DEFAULTS as REDO_DEFAULTS
from plasticity_jax.learners.redo import make_redo
from plasticity_jax.learners.schedule import with_config_schedule
from plasticity_jax.learners.sharpness import GNP_DEFAULTS, SAM_DEFAULTS, make_gnp, make_sam
from plasticity_jax.learners.shrink_perturb import DEFAULTS as SHRINK_PERTURB_DEFAULTS
from plasticity_jax.learners.shrink_perturb import make_shrink_perturb
from plasticity_jax.learners.spectral import DEFAULTS as SPECTRAL_DEFAULTS
from plasticity_jax.learners.spectral import make_spectral_reg
from plasticity_jax.learners.upgd import DEFAULTS as UPGD_DEFAULTS
from plasticity_jax.learners.upgd import make_upgd
from plasticity_jax.learners.weight_decay import L2_DEFAULTS, L2_INIT_DEFAULTS, make_l2, make_l2_init


class LearnerSpec(NamedTuple):
    """`make(learner_config, init_params) -> Learner`; `init_params(key)` draws fresh parameters from the model's
    initialisation distribution, for learners that re-initialise units. `defaults` are the learner's own
    hyperparameters with the published values: the config variant named after the learner adds them to
    `config.learner` (next to the optimizer fields every learner has)."""

    make: Callable[..., Learner]
    defaults: Mapping[str, Any] = {}
    # Learners that replace hidden units take the model's unit layers too: make(config, init_params, unit_layers).
    replaces_units: bool = False
    # Learners whose update has a part the step size does not scale apply `config.step_size_milestones` themselves
    # (Shrink and Perturb's noise); for the others `make_learner` scales their whole update.
    schedules_itself: bool = False


LEARNERS: dict[str, LearnerSpec] = {
    'backprop': LearnerSpec(make_backprop),
    'cbp': LearnerSpec(make_continual_backprop, CBP_DEFAULTS, True),  # continual backprop (Dohare et al., 2024)
    'redo': LearnerSpec(make_redo, REDO_DEFAULTS, True),  # recycling dormant neurons (Sokar et al., 2023)
    'l2': LearnerSpec(make_l2, L2_DEFAULTS),  # L2 regularisation (Dohare dissertation eq. 2.6)
    'l2_init': LearnerSpec(make_l2_init, L2_INIT_DEFAULTS),  # L2 toward the initial params (Kumar et al., 2023)
    'shrink_perturb': LearnerSpec(make_shrink_perturb, SHRINK_PERTURB_DEFAULTS,  # Ash & Adams (2020); eq. 2.7
                                  schedules_itself=True),
    'proper_adam': LearnerSpec(make_proper_adam, PROPER_ADAM_DEFAULTS),  # Adam with beta1 = beta2 = 0.99
    'sam': LearnerSpec(make_sam, SAM_DEFAULTS),  # sharpness-aware minimisation (Foret et al., 2021)
    'gnp': LearnerSpec(make_gnp, GNP_DEFAULTS),  # gradient norm penalty (Zhao et al., 2022)
    'l2_er': LearnerSpec(make_l2_er, L2_ER_DEFAULTS),  # L2 + feature effective rank (He, Guo, Prakash et al., 2025)
    'spectral_reg': LearnerSpec(make_spectral_reg, SPECTRAL_DEFAULTS),  # Lewandowski et al. (2025)
    'upgd': LearnerSpec(make_upgd, UPGD_DEFAULTS),  # utility-based perturbed GD (Elsayed & Mahmood, 2024)
}


def make_learner(config: ml_collections.ConfigDict, init_params, unit_layers=None) -> Learner:
    """Builds the learner named by `config.name` (`config` is the run config's `learner` section), with the step
    size decayed within every task when `config.step_size_milestones` is set (`learners.schedule`). `unit_layers`:
    the model's replaceable units (`models.UnitLayer`s, e.g. `model.unit_layers()`), for the learners that replace
    units (continual backprop, ReDo); None: the params must be a bare MLP's."""
    if config.name not in LEARNERS:
        raise ValueError(f'unknown learner.name {config.name!r}; valid: {sorted(LEARNERS)}')
    spec = LEARNERS[config.name]
    learner = spec.make(config, init_params, unit_layers) if spec.replaces_units else spec.make(config, init_params)
    if not spec.schedules_itself:
        learner = learner._replace(optimizer=with_config_schedule(learner.optimizer, config))
    return learner


__all__ = ['AfterUpdate', 'AfterUpdateInputs', 'ForwardPass', 'LEARNERS', 'Learner', 'LearnerSpec', 'LossFn',
           'identity_after_update', 'make_learner', 'make_learner_with', 'make_optimizer']
