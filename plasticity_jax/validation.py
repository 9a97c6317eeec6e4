"""Every config value checked up front, before anything is compiled or written: ONE table of rules, a rule per
dotted config field, plus the few rules that tie fields together.

`check_config(config)` raises a `ConfigError` that lists every violation, each naming the full dotted field, its
value, what it must be, and the flag that fixes it. A field not in the config is not checked (configs differ in
their sections); a field the table does not know is left to the part that reads it. Swept values
(`config.sweep.<field>`) are checked by the rule of the field they sweep.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import ml_collections


class ConfigError(ValueError):
    """A config value that cannot run; the message names every bad field and its fix."""


class Rule(NamedTuple):
    holds: Callable[[Any], bool]
    requirement: str | Callable[[], str]  # what the value must be, completing "must be ..."

    def describe(self) -> str:
        return self.requirement() if callable(self.requirement) else self.requirement


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= low, f'an integer >= {low}')


def number(low: float | None = None, high: float | None = None, *, open_low=False, open_high=False) -> Rule:
    def holds(v):
        return (_is_number(v) and (low is None or (v > low if open_low else v >= low))
                and (high is None or (v < high if open_high else v <= high)))

    bounds = [f"{'>' if open_low else '>='} {low}" if low is not None else '',
              f"{'<' if open_high else '<='} {high}" if high is not None else '']
    return Rule(holds, 'a finite number ' + ' and '.join(b for b in bounds if b) if any(bounds) else 'a finite number')


def one_of(choices: Callable[[], Any]) -> Rule:
    """`choices` is called when checking, so that registries (learners, problems) are read as they are then."""
    return Rule(lambda v: v in tuple(choices()), lambda: f'one of {sorted(choices())}')


def fractions() -> Rule:
    return Rule(lambda v: isinstance(v, (tuple, list)) and all(_is_number(x) and 0 < x < 1 for x in v)
                and list(v) == sorted(v), 'an increasing tuple of fractions in (0, 1)')


def density_grid() -> Rule:
    return Rule(lambda v: isinstance(v, (tuple, list)) and len(v) == 3 and _is_number(v[0]) and _is_number(v[1])
                and v[0] < v[1] and _is_int(v[2]) and v[2] >= 2, 'a tuple (low, high, points) with low < high and '
                'an integer points >= 2')


def positive_numbers() -> Rule:
    return Rule(lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_number(x) and x > 0 for x in v),
                'a non-empty tuple of numbers > 0')


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.holds(v), lambda: f'None or {rule.describe()}')


def _engine():
    from plasticity_jax import engine
    return engine


def _resets():
    return _engine().RESETS


def _learners():
    from plasticity_jax.learners import LEARNERS
    return LEARNERS


def _problems():
    from plasticity_jax.problems import PROBLEMS
    return PROBLEMS


def _models():
    from plasticity_jax.models import MODEL_NAMES
    return (*MODEL_NAMES, 'actor_critic')  # the actor-critic of RL runs, built by `rl.ppo`


def _conv_lowerings():
    from plasticity_jax.models import CONV_LOWERINGS
    return CONV_LOWERINGS


def _activations():
    from plasticity_jax.models import ACTIVATIONS
    return ACTIVATIONS


def _environments():
    from plasticity_jax.envs import ENVIRONMENTS
    return ENVIRONMENTS


def _time_limits():
    from plasticity_jax.rl.ppo import TIME_LIMITS
    return TIME_LIMITS


def _integrators():
    from plasticity_jax.envs.mujoco_locomotion import INTEGRATORS
    return INTEGRATORS


# dotted field -> rule; choices come from the registries that own them.
RULES: dict[str, Rule] = {
    'seed': integer(0),
    'num_seeds': integer(1),
    'num_tasks': integer(1),
    'tasks_per_chunk': integer(1),
    'step_unroll': integer(1),
    'compute_dtype': one_of(lambda: _engine().COMPUTE_DTYPES),
    'keep_checkpoints': integer(1),
    'keep_checkpoints_every': integer(0),
    'data_source': one_of(lambda: ('auto', 'idx', 'tfds')),
    'reset_at_task_start': one_of(_resets),
    'metrics.probe_size': integer(1),
    'metrics.saturation_epsilon': number(0),
    'metrics.dead_max_active_share': number(0, 1, open_high=True),
    'metrics.approximate_rank_threshold': number(0, 1, open_low=True),
    'metrics.feature_rank_delta': number(0),
    'curvature.every_tasks': integer(0),
    'curvature.probe_size': integer(1),
    'curvature.chunk_size': integer(1),
    'curvature.kind': one_of(lambda: ('hessian', 'ggn', 'fisher')),
    'curvature.order': integer(1),
    'curvature.draws': integer(1),
    'curvature.epsilons': positive_numbers(),
    'curvature.grid': density_grid(),
    'curvature.sigma': number(0, open_low=True),
    'learner.name': one_of(_learners),
    'learner.optimizer': one_of(lambda: ('sgd', 'adam')),
    'learner.step_size': number(0),
    'learner.momentum': number(0, 1, open_high=True),
    'learner.beta1': number(0, 1, open_high=True),
    'learner.beta2': number(0, 1, open_high=True),
    'learner.eps': number(0),
    'learner.step_size_milestones': fractions(),
    'learner.step_size_decay': number(0, open_low=True),
    'learner.weight_decay': number(0),
    'learner.replacement_rate': number(0, 1),
    'learner.decay_rate': number(0, 1),
    'learner.maturity_threshold': integer(0),
    'learner.recycle_period': integer(1),
    'learner.dormancy_threshold': number(0),
    'learner.noise_std': number(0),
    'learner.rho': number(0),
    'learner.rank_batch_size': integer(0),  # 0: the training batch
    'model.name': one_of(_models),
    'model.width': integer(1),
    'model.depth': integer(0),
    'model.base_width': integer(1),
    'model.blocks_per_stage': integer(1),
    'model.activation': one_of(_activations),
    'model.init_distribution': one_of(lambda: ('normal', 'uniform')),
    'model.dropout_rate': number(0, 1, open_high=True),
    'model.normalization': one_of(lambda: ('none', 'layernorm', 'online_norm')),
    'model.online_norm_alpha_f': number(0, 1, open_low=True),
    'model.online_norm_alpha_b': number(0, 1, open_low=True),
    'model.conv_lowering': one_of(_conv_lowerings),
    'problem.name': one_of(_problems),
    'problem.examples_per_task': integer(1),
    'problem.batch_size': integer(1),
    'problem.num_bits': integer(1),
    'problem.num_flipping_bits': integer(0),
    'problem.num_target_units': integer(1),
    'problem.flip_mode': one_of(lambda: ('flip_one', 'redraw_all')),
    'problem.dataset': one_of(lambda: ('mnist', 'cifar10', 'cifar100', 'imagenet32')),
    'problem.schedule': one_of(lambda: ('all_pairs', 'consecutive_pairs', 'class_increments', 'warm_start')),
    'problem.epochs': integer(1),
    'problem.classes_per_increment': integer(1),
    'problem.train_per_class': integer(0),
    'problem.test_per_class': integer(0),
    'problem.num_classes': integer(0),
    'problem.raw_pixels': Rule(lambda v: isinstance(v, bool), 'True or False'),
    'problem.validation_per_class': integer(0),
    'problem.early_stopping': Rule(lambda v: isinstance(v, bool), 'True or False'),
    'env.name': one_of(_environments),
    'env.max_episode_steps': integer(1),
    'env.friction_change_interval': integer(1),
    'env.solver_iterations': optional(integer(1)),
    'env.ls_iterations': optional(integer(1)),
    'env.integrator': optional(one_of(_integrators)),
    'rl.updates_per_task': integer(1),
    'rl.steps_per_update': integer(1),
    'rl.num_envs': integer(1),
    'rl.epochs': integer(1),
    'rl.minibatch_size': integer(1),
    'rl.gamma': number(0, 1),
    'rl.gae_lambda': number(0, 1),
    'rl.clip': number(0, open_low=True),
    'rl.value_coefficient': number(0),
    'rl.time_limit': one_of(_time_limits),
}


class Agreement(NamedTuple):
    fields: tuple[str, ...]  # all must be present for the rule to apply
    holds: Callable[..., bool]  # of the fields' values, in order
    requirement: str


AGREEMENTS: tuple[Agreement, ...] = (
    Agreement(('problem.examples_per_task', 'problem.batch_size'), lambda n, b: n % b == 0,
              'problem.examples_per_task must be a multiple of problem.batch_size'),
    Agreement(('problem.num_flipping_bits', 'problem.num_bits'), lambda f, m: f <= m,
              'problem.num_flipping_bits must be <= problem.num_bits'),
    Agreement(('problem.early_stopping', 'problem.validation_per_class'), lambda e, v: not e or v > 0,
              'problem.early_stopping needs a validation split, problem.validation_per_class > 0'),
    # A sweep of a learner field the learner ignores would run the same run at every point.
    Agreement(('learner.optimizer', 'sweep.learner.momentum'), lambda optimizer, _: optimizer != 'adam',
              "learner.momentum is SGD's: with learner.optimizer = 'adam' a sweep of it changes nothing (sweep "
              'learner.beta1)'),
    Agreement(('learner.name', 'sweep.learner.momentum'), lambda name, _: name != 'upgd',
              'UPGD has no momentum: a sweep of learner.momentum with learner.name = upgd changes nothing'),
    *(Agreement(('learner.optimizer', f'sweep.learner.{name}'), lambda optimizer, _: optimizer == 'adam',
                f"learner.{name} is Adam's: with learner.optimizer = 'sgd' a sweep of it changes nothing")
      for name in ('beta1', 'beta2', 'eps')),
    Agreement(('learner.step_size_milestones', 'sweep.learner.step_size_decay'), lambda milestones, _: bool(milestones),
              'learner.step_size_decay acts at learner.step_size_milestones: without milestones a sweep of it changes '
              'nothing'),
    # RL runs (configs with an `env`, rl/ppo.py): a task is an interval of environment steps.
    Agreement(('rl.steps_per_update', 'rl.num_envs'), lambda steps, envs: steps % envs == 0,
              'rl.steps_per_update must be a multiple of rl.num_envs'),
    Agreement(('rl.steps_per_update', 'rl.minibatch_size'), lambda steps, size: steps % size == 0,
              'rl.steps_per_update must be a multiple of rl.minibatch_size'),
    Agreement(('env', 'model.name'), lambda _, name: name == 'actor_critic',
              "RL runs need model.name = 'actor_critic'"),
    Agreement(('env', 'curvature.every_tasks'), lambda _, every: every == 0,
              'in-run curvature is not available for RL runs: set curvature.every_tasks to 0'),
    Agreement(('env', 'reset_at_task_start'), lambda _, reset: reset == 'none',
              "RL runs need reset_at_task_start = 'none' (a task is an interval of steps)"),
    Agreement(('env', 'compute_dtype'), lambda _, dtype: dtype == 'float32', 'RL runs compute in float32'),
    Agreement(('env', 'step_unroll'), lambda _, unroll: unroll == 1, 'RL runs need step_unroll = 1'),
    Agreement(('env', 'learner.name', 'learner.rank_batch_size'), lambda _, name, size: name != 'l2_er' or size == 0,
              'RL runs draw no auxiliary batch: L2-ER computes its rank term on the PPO minibatch, set '
              'learner.rank_batch_size to 0'),
)


MISSING = object()  # what `lookup` returns for a field the config does not have


def lookup(config, name: str):
    """The value of the dotted field `name` of `config`, or `MISSING`."""
    node = config
    for field in name.split('.'):
        if not hasattr(node, 'keys') or field not in node:
            return MISSING
        node = node[field]
    return node



def violations(config: ml_collections.ConfigDict) -> list[str]:
    """One line per bad value: field, value, requirement, fix."""
    problems = []
    for name, rule in RULES.items():
        value = lookup(config, name)
        if value is not MISSING and not rule.holds(value):
            problems.append(f'config.{name} = {value!r} must be {rule.describe()}: set --config.{name}=... to such a '
                            'value.')
        swept = lookup(config, f'sweep.{name}')
        if swept is not MISSING and isinstance(swept, (tuple, list)):
            bad = [v for v in swept if not rule.holds(v)]
            if bad:
                problems.append(f'config.sweep.{name} has {bad!r}; every value must be {rule.describe()}: fix '
                                f'the --sweep={name}=... values.')
    from plasticity_jax import sweeps  # imports jax: only where a config is checked

    for name, values in sweeps.swept_values(config).items():
        shown = [sweeps.value_label(v) for v in values] if isinstance(values, (tuple, list)) else []
        repeated = sorted({s for s in shown if shown.count(s) > 1})
        if repeated:
            problems.append(f'config.sweep.{name} lists {", ".join(repeated)} more than once (as results label it): '
                            f'give each value once in --sweep={name}=...')
    if not problems:
        for agreement in AGREEMENTS:
            values = [lookup(config, name) for name in agreement.fields]
            if MISSING not in values and not agreement.holds(*values):
                now = ', '.join(f'config.{n} = {v!r}' for n, v in zip(agreement.fields, values)
                                if not hasattr(v, 'keys'))  # a section (`env`: an RL run) is named by the rule
                problems.append(f'{agreement.requirement} ({now}): change one of them.')
    return problems


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises `ConfigError` naming every bad field (see `violations`); nothing is written before this passes."""
    problems = violations(config)
    if problems:
        raise ConfigError(('invalid config: ' if len(problems) == 1 else 'invalid config:\n  ')
                          + '\n  '.join(problems))
