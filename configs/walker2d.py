"""PPO on the stationary Walker2d (Walker2d-v3 on MJX, `envs.planar_walkers`): the papers' other policy-collapse
environment (Dohare et al., Nature 2024, Extended Data; their configs `lop/rl/cfg/walker/*.yml`: 1e8 steps, the Ant
settings).

100M steps per seed = 400 intervals ("tasks") of 122 updates of 2048 steps (249,856 steps), 5 seeds.

    python -m plasticity_jax.main --config=configs/walker2d.py:std --workdir=runs/walker2d_std
    python -m plasticity_jax.main --config=configs/walker2d.py:cbp,smoke --workdir=/tmp/smoke   # CPU smoke (minutes)

Variants (`plasticity_jax/rl/config.py`): std (default), proper_adam, l2, cbp, redo, the zoo's other learners, smoke.
Runtime: an accelerator job (env steps/s: docs/rl.md). Expected: as Ant, standard PPO's return degrades late in the
run while L2 and continual backprop + L2 hold it (the papers show it for Ant; Hopper and Walker2d are in their code).
"""

from plasticity_jax import config as config_lib
from plasticity_jax.rl import config as rl_config


def get_config(arg=None):
    config = rl_config.rl_config({'name': 'walker2d', 'max_episode_steps': 1000}, num_tasks=400, updates_per_task=122,
                                 num_seeds=5)
    variants = {**rl_config.learner_variants(), 'smoke': rl_config.smoke}
    return config_lib.apply_variants(config, arg, variants)
