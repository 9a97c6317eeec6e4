"""Policy collapse in the stationary Ant: PPO on Gym's Ant-v3 on MJX (Dohare et al., Nature 2024, Fig. 4a-b and
Methods; Dohare, Lan & Mahmood 2023, "Overcoming policy collapse in deep reinforcement learning").

50M steps per seed = 200 intervals ("tasks") of 122 updates of 2048 steps (249,856 steps, the papers' 250k bins),
5 seeds. `envs.ant` lists the differences from Gym's Ant-v3 (zero contact forces as in the papers' runs, MJX physics).

    python -m plasticity_jax.main --config=configs/ant.py:proper_adam --workdir=runs/ant_proper_adam
    python -m plasticity_jax.main --config=configs/ant.py:std,smoke --workdir=/tmp/smoke   # ~2 CPU-minutes

Variants (`plasticity_jax/rl/config.py`): std (default), proper_adam, l2, cbp (continual backprop + L2), redo, any
other learner of the zoo by name, and `smoke` (combinable).

Runtime: 50M steps x 5 seeds is an accelerator job (measured env steps/s in docs/rl.md).

Expected (Nature 2024, Fig. 4a): standard PPO's return rises, then collapses after tens of millions of steps;
proper Adam (beta1 = beta2 = 0.99) and L2 keep it higher; continual backprop + L2 keeps improving. Weight magnitude
grows and the policy's dead units and rank change alongside the collapse.
"""

from plasticity_jax import config as config_lib
from plasticity_jax.rl import config as rl_config


def get_config(arg=None):
    config = rl_config.rl_config({'name': 'ant', 'max_episode_steps': 1000, 'pad_contact_forces': True},
                                 num_tasks=200, updates_per_task=122, num_seeds=5)
    variants = {**rl_config.learner_variants(), 'smoke': rl_config.smoke}
    return config_lib.apply_variants(config, arg, variants)
