"""PPO on Pendulum-v1 (`envs.pendulum`, pure JAX) or the point mass (`envs.point_mass`, variant `point_mass`): cheap
continuous-control problems for a CPU.

    python -m plasticity_jax.main --config=configs/pendulum.py --workdir=runs/pendulum

The papers' PPO settings (`plasticity_jax/rl/config.py`) on Gymnasium's pendulum (200-step episodes, which end only
by the time limit, treated as terminal by default), 4 seeds, 50 intervals of 10 updates (1M steps per seed).
Variants: the learner variants of `rl.config` (std, proper_adam, l2, cbp, redo, ...) and
  fast        8 environments x 64 steps per update, 4 epochs x 4 minibatches of 128, 64 units per layer, step size
              1e-3
  point_mass  the point mass instead of the pendulum (50-step episodes): with `fast`, the tests' problem, whose
              return rises within a few updates
  smoke   3 intervals of 2 updates (combine with fast: `configs/pendulum.py:fast,smoke`)
"""

from plasticity_jax import config as config_lib
from plasticity_jax.rl import config as rl_config


def _fast(config):
    config.rl.steps_per_update = 512
    config.rl.num_envs = 8
    config.rl.epochs = 4
    config.rl.minibatch_size = 128
    config.model.width = 64
    config.learner.step_size = 1e-3


def _smoke(config):
    config.num_tasks = 3
    config.rl.updates_per_task = 2


def get_config(arg=None):
    config = rl_config.rl_config({'name': 'pendulum', 'max_episode_steps': 200}, num_tasks=50, updates_per_task=10,
                                 num_seeds=4)
    variants = {**rl_config.learner_variants(), 'fast': _fast, 'smoke': _smoke,
                'point_mass': lambda c: setattr(c, 'env', {'name': 'point_mass', 'max_episode_steps': 50})}
    return config_lib.apply_variants(config, arg, variants)
