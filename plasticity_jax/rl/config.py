"""Pieces shared by the RL experiment configs (`configs/ant.py`, `configs/slippery_ant.py`, `configs/pendulum.py`):
the papers' PPO settings as defaults and the learner variants of their PPO experiments.

Defaults (Dohare et al., Nature 2024, Methods; their code `lop/rl/cfg`, `lop/algos/rl/ppo.py`): separate policy and
value networks of 2 x 256 ReLU units, LeCun-uniform initialisation, zero biases (`models.ActorCritic`); one
environment per run, 2048 steps per update, 10 epochs x 16 minibatches of 128, clip 0.2, value coefficient 1, gamma
0.99, GAE lambda 0.95; one Adam over both networks, step size 1e-4, eps 1e-8, betas (0.9, 0.999) ('std').

Variants of the learner (the papers' PPO experiments):
  std          Adam (0.9, 0.999): standard PPO (the default)
  proper_adam  Adam with beta1 = beta2 = 0.99
  l2           proper Adam + coupled L2, weight decay 1e-3 (torch Adam's `weight_decay`)
  cbp          continual backprop + L2: proper Adam, weight decay 1e-4, replacement rate 1e-4, maturity threshold
               10,000, utility 'contribution', decay 0.99, on both networks after every minibatch step; the
               optimizer state of replaced weights is NOT reset (the papers' PPO code; `--config.learner.
               reset_optimizer_state=True` resets it, with per-element Adam step counts)
  redo         ReDo on both networks: dormancy threshold 0.1, every 100 minibatch steps, proper Adam, weight decay
               1e-4 (lop/rl/cfg/ant/redo.yml), optimizer state not reset (as cbp)
and every other learner of the zoo under its own name (e.g. `shrink_perturb`), with the experiment's Adam; `l2_er`
computes its rank term on each PPO minibatch (`rank_batch_size=0`: RL runs draw no auxiliary batch; our choice, the
L2-ER authors did not run PPO) and `upgd` replaces Adam by its own optimizer.

`num_envs` parallel environments per run share the 2048 steps of an update (2048 / num_envs each): N = 1 is the
papers' protocol; larger N is what an accelerator needs, and changes the data each update sees (shorter, parallel
trajectories, more episode starts per update).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from plasticity_jax import config as config_lib

MUJOCO_ENVIRONMENTS = ('ant', 'slippery_ant', 'hopper', 'walker2d')


def rl_config(env: dict, *, num_tasks: int, updates_per_task: int, num_seeds: int) -> ml_collections.ConfigDict:
    config = config_lib.base_config()
    config.num_seeds = num_seeds
    config.num_tasks = num_tasks  # intervals of `rl.updates_per_task` updates
    config.env = ml_collections.ConfigDict(env)
    if env['name'] in MUJOCO_ENVIRONMENTS:  # MJX's solver and integrator (`envs`); None: the model's own
        config.env.solver_iterations = config_dict.placeholder(int)
        config.env.ls_iterations = config_dict.placeholder(int)
        config.env.integrator = config_dict.placeholder(str)

    config.rl = ml_collections.ConfigDict()
    config.rl.updates_per_task = updates_per_task  # a task (interval) = updates_per_task * steps_per_update steps
    config.rl.steps_per_update = 2048
    config.rl.num_envs = 1  # parallel environments per run, steps_per_update / num_envs steps each
    config.rl.epochs = 10
    config.rl.minibatch_size = 128  # 2048 / 128 = 16 minibatches per epoch
    config.rl.gamma = 0.99
    config.rl.gae_lambda = 0.95
    config.rl.clip = 0.2
    config.rl.value_coefficient = 1.0
    config.rl.time_limit = 'terminal'  # or 'bootstrap' (gamma V(final observation) at a time-limit end)

    config.model = ml_collections.ConfigDict({'name': 'actor_critic', 'width': 256, 'depth': 2, 'activation': 'relu'})
    # The papers' PPO figure counts a unit dead when active on at most 1% of the steps (lop/rl/plots/fig4b.py).
    config.metrics.dead_max_active_share = 0.01

    config.learner.optimizer = 'adam'
    config.learner.step_size = 1e-4
    config.learner.beta1 = 0.9
    config.learner.beta2 = 0.999
    config.learner.eps = 1e-8
    config.tasks_per_chunk = 1
    return config


def smoke(config: ml_collections.ConfigDict) -> None:
    """`smoke`: about 2 CPU-minutes (most of it compiling MJX), combinable with every variant: 2 seeds, 3 intervals
    of 2 updates of 256 steps (2 epochs x 4 minibatches of 64), 64 units, 50-step episodes and, for Slippery Ant, a
    friction change at the first episode end after 200 steps (at least one change per seed)."""
    config.num_seeds = 2
    config.num_tasks = 3
    config.rl.updates_per_task = 2
    config.rl.steps_per_update = 256
    config.rl.minibatch_size = 64
    config.rl.epochs = 2
    config.rl.num_envs = 1
    config.model.width = 64
    config.env.max_episode_steps = 50
    if 'friction_change_interval' in config.env:
        config.env.friction_change_interval = 200


def _learner(name: str, **fields):
    def apply(config):
        config.learner.name = name
        config.learner.beta1 = config.learner.beta2 = 0.99
        for field, value in fields.items():
            config.learner[field] = value
    return apply


def learner_variants() -> dict[str, config_lib.Variant]:
    """The zoo's learner variants, with the papers' PPO settings for `std`, `proper_adam`, `l2`, `cbp`, `redo`."""
    return {**config_lib.learner_variants(),
            'std': lambda config: None,
            'proper_adam': _learner('proper_adam', optimizer='adam'),
            'l2': _learner('l2', weight_decay=1e-3),
            'cbp': _learner('cbp', weight_decay=1e-4, replacement_rate=1e-4, maturity_threshold=10_000,
                            utility='contribution', decay_rate=0.99, reset_optimizer_state=False),
            'redo': _learner('redo', weight_decay=1e-4, dormancy_threshold=0.1, recycle_period=100,
                             reset_optimizer_state=False),
            'l2_er': config_lib.learner_with('l2_er', {'rank_batch_size': 0})}
