"""Slippery Ant: PPO on Ant whose ground friction changes every 2M steps (Dohare et al., Nature 2024, Fig. 4 and
Methods; dissertation Ch. 7; the spectral-collapse poster's Figure 1).

The friction is drawn log-uniformly from [0.02, 2.0] per seed (`envs.ant`, `envs.mujoco_locomotion`), and redrawn
at the first episode end after 2M steps since the last change; networks and optimizer state carry over. 20M steps
per seed = 200 intervals ("tasks") of 49 updates of 2048 steps (100,352 steps, the papers' 100k bins), 5 seeds.

    python -m plasticity_jax.main --config=configs/slippery_ant.py:cbp --workdir=runs/slippery_ant_cbp
    python -m plasticity_jax.main --config=configs/slippery_ant.py:cbp,smoke --workdir=/tmp/smoke   # ~2 CPU-minutes

Variants (`plasticity_jax/rl/config.py`): std (default), proper_adam, l2, cbp (continual backprop + L2), redo, any
other learner of the zoo by name, and `smoke` (combinable: 2 seeds, 3 x 2 updates of 256 steps, 50-step episodes,
a friction change after 200 steps). `--config.rl.num_envs=N` splits each update's 2048 steps over N parallel
environments (changes the data an update sees; for accelerators); `--config.rl.time_limit=bootstrap` bootstraps at
the 1000-step time limit instead of treating it as terminal.

Smoke: measured 2 min 9 s of CPU time, 9.5 min wall on the 2-core machine at load average ~30 (mostly compiling
MJX's Ant). Runtime: 20M steps x 5 seeds is an accelerator job (see BENCHMARKS.md / docs/rl.md for measured env
steps/s; with one environment per seed the rollout is sequential, so seeds, not steps, are what a GPU parallelises).

Expected (Nature 2024, Fig. 4c): standard PPO's return falls after the first friction changes and does not recover
(loss of plasticity); proper Adam and L2 hold it higher; continual backprop + L2 keeps adapting and its return stays
high over all 10 segments. Dead policy units and weight magnitude grow for standard PPO and stay low for cbp.
"""

from plasticity_jax import config as config_lib
from plasticity_jax.rl import config as rl_config


def get_config(arg=None):
    config = rl_config.rl_config({'name': 'slippery_ant', 'max_episode_steps': 1000, 'pad_contact_forces': True,
                                  'friction_change_interval': 2_000_000, 'friction_range': (0.02, 2.0)},
                                 num_tasks=200, updates_per_task=49, num_seeds=5)
    variants = {**rl_config.learner_variants(), 'smoke': rl_config.smoke}
    return config_lib.apply_variants(config, arg, variants)
