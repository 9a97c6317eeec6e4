"""Ant (Gym's Ant-v3, as the papers' code ran it) and Slippery Ant on MJX.

Dohare et al. (Nature 2024, Methods "Reinforcement learning"; dissertation Ch. 7) run PPO on Gym 0.23.1's `Ant-v3`
with free-mujoco-py 2.1.6 (their `requirements.txt`, `lop/rl/cfg/ant/*.yml`) and on `SlipperyAnt-v3`, Ant-v3 with the
friction of its default geom class replaced (`lop/envs/slippery_ant.py`). This module is that task on MuJoCo MJX,
on Gym 0.23.1's own model file (`assets/ant.xml`, unchanged):

- frame skip 5 of the model's 0.01 s RK4 steps (dt = 0.05 s); 8 actuators, control range [-1, 1], gear 150;
- reward = healthy_reward (1) + forward_reward - ctrl_cost - contact_cost, with forward_reward the torso body's x
  displacement over the step / dt (Gym's `get_body_com("torso")`, i.e. `xpos` of the torso body, read after the
  step's last physics step as in Gym), ctrl_cost = 0.5 * sum(action^2) on the raw (unclipped) action;
- healthy: every qpos/qvel entry finite and 0.2 <= torso z <= 1.0; an unhealthy step terminates (healthy_reward is
  paid on it too, as Gym's `terminate_when_unhealthy=True` does);
- reset: qpos0 (torso at z = 0.75, legs at 0, identity orientation) + U(-0.1, 0.1) on every qpos entry (the
  quaternion included, unnormalised, as Gym does), qvel = 0.1 * N(0, 1);
- observation: qpos[2:] (13), qvel (14), then Ant-v3's 84 clipped external contact forces `cfrc_ext` (14 bodies x 6).

Differences from Gym's Ant-v3 (also in docs/rl.md):

1. Contact forces. Under mujoco-py >= 2.0 (the papers ran 2.1) `cfrc_ext` is never computed and reads 0 (Gym
   0.23.1's Ant-v3 docstring: "using a Mujoco-Py version > 2.0 results in the contact forces always being 0"), so in
   the papers' runs the last 84 observation entries were 0 and the contact cost was 0. Here the contact cost is 0 and
   the 84 entries are zeros (`pad_contact_forces=True`, the default: 111 entries, so a LeCun-initialised first layer
   has the papers' fan-in) or left out (`pad_contact_forces=False`: 27 entries, Gymnasium Ant-v4's default).
2. Physics. MJX is MuJoCo's JAX port in float32 (Gym: C MuJoCo 2.1 in float64) with its own constraint solver loop
   (fixed iteration counts, no early stop). Trajectories agree with C MuJoCo to ~1e-5 before the first contact and
   then diverge as any two chaotic simulations do (tests/envs/test_ant.py compares the first steps). The collision
   set is the model's: every body geom (torso sphere, 12 leg capsules) collides with the floor only (default
   `conaffinity=0`), contact margin 0.01, as in Gym.
3. Randomness comes from JAX keys (`reset`'s and `step`'s), not Gym's numpy generator.

Slippery Ant: as above with the friction of every geom following `mujoco_locomotion.FrictionSchedule` (see there:
log-uniform on `friction_range` = (0.02, 2.0), the first friction drawn too, a change at the first episode end after
more than `friction_change_interval` = 2,000,000 steps since the last change). info['friction'] is the friction the
step was simulated with. Stationary Ant reports its model friction, 1.0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from plasticity_jax.envs.mujoco_locomotion import FrictionSchedule, Robot, make_locomotion_env

TORSO = 1                  # body index of the torso in assets/ant.xml (0 is the world)
NUM_CONTACT_FORCES = 14 * 6  # Ant-v3's cfrc_ext block: 14 bodies x (torque, force)
CTRL_COST_WEIGHT = 0.5
HEALTHY_REWARD = 1.0
HEALTHY_Z_RANGE = (0.2, 1.0)
RESET_NOISE_SCALE = 0.1


def _reset_noise(key, qpos0, nv):
    pos_key, vel_key = jax.random.split(key)
    qpos = qpos0 + jax.random.uniform(pos_key, qpos0.shape, jnp.float32, -RESET_NOISE_SCALE, RESET_NOISE_SCALE)
    qvel = RESET_NOISE_SCALE * jax.random.normal(vel_key, (nv,), jnp.float32)
    return qpos, qvel


def _reward(before, after, action, dt):
    x_velocity = (after.xpos[TORSO, 0] - before.xpos[TORSO, 0]) / dt
    ctrl_cost = CTRL_COST_WEIGHT * jnp.sum(jnp.square(action))
    z = after.qpos[2]
    healthy = (jnp.all(jnp.isfinite(after.qpos)) & jnp.all(jnp.isfinite(after.qvel))
               & (z >= HEALTHY_Z_RANGE[0]) & (z <= HEALTHY_Z_RANGE[1]))
    reward = HEALTHY_REWARD + x_velocity - ctrl_cost
    return reward, healthy, {'x_velocity': x_velocity, 'ctrl_cost': ctrl_cost}


def ant_robot(pad_contact_forces: bool = True) -> Robot:
    """Gym's Ant-v3 (see the module docstring for the differences)."""
    padding = NUM_CONTACT_FORCES if pad_contact_forces else 0

    def observe(data):
        return jnp.concatenate([data.qpos[2:], data.qvel, jnp.zeros((padding,), data.qpos.dtype)])

    return Robot(name='ant', xml_file='ant.xml', frame_skip=5, reset_noise=_reset_noise,
                 observation_size=13 + 14 + padding, observe=observe, reward=_reward)


def make_ant(max_episode_steps: int = 1000, pad_contact_forces: bool = True, **solver):
    """Stationary Ant (Gym Ant-v3), friction 1 everywhere. `solver`: see `make_locomotion_env`."""
    return make_locomotion_env(ant_robot(pad_contact_forces), max_episode_steps, **solver)


def make_slippery_ant(max_episode_steps: int = 1000, pad_contact_forces: bool = True,
                      friction_change_interval: int = 2_000_000, friction_range=(0.02, 2.0), **solver):
    """Slippery Ant: Ant whose friction is redrawn at the first episode end after `friction_change_interval`."""
    low, high = friction_range
    env = make_locomotion_env(ant_robot(pad_contact_forces), max_episode_steps,
                              FrictionSchedule(float(low), float(high), int(friction_change_interval)), **solver)
    return env._replace(name='slippery_ant')
