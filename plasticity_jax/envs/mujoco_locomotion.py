"""MuJoCo locomotion environments on MJX (MuJoCo XLA), written as pure functions of one environment.

One mechanism for every robot (Ant, Hopper, Walker2d): a `Robot` says what differs (its model file, frame skip,
reset noise, observation, reward and health test) and `make_locomotion_env` turns it into an `envs.base.Environment`
with Gym's -v3 semantics (Gym 0.23.1, the version the papers' code pins, `requirements.txt` at the repository root):

- one environment step is `frame_skip` physics steps with the action held (Gym's `do_simulation`); the action is
  clipped to the actuators' control range (MuJoCo clamps `ctrl` itself in Gym), the control cost uses the raw action;
- an episode terminates when the robot is unhealthy and is truncated at `max_episode_steps` (Gym's `TimeLimit`,
  1000); `step` then resets the environment with its `key` and returns the new episode's first observation
  (`final_observation` is the one the step reached);
- a reset draws the robot's reset noise around the model's initial configuration `qpos0` (Gym's `init_qpos`) and runs
  `mjx.forward`, as Gym's `set_state` runs `sim.forward()`, so positions read before the first step are current.

Non-stationary friction (Slippery Ant, Dohare et al. 2024, Methods "Slippery Ant"): with a `FrictionSchedule`, the
sliding friction of every geom is the traced per-environment value `state.friction`, written into the MJX model's
`geom_friction` at every step (`model.replace`, so under `vmap` each environment simulates its own friction). The
papers' code sets the friction of MuJoCo's default geom class, i.e. of every geom, floor included
(`lop/envs/slippery_ant.py`: `root[3][1]` of ant.xml is `<default><geom>`), and MuJoCo's contact friction is the
maximum over the two geoms, so the feet-floor contact friction is exactly f. The first friction is random too (the
papers read `frictions[seed][0]` from a file of log-uniform draws on [0.02, 2]). A change happens at the end of the
first episode (terminated or truncated, as Gym's `done`) after more than `change_interval` environment steps since the
last change (the papers: `step - previous_change_time > change_time` tested when `done`); the new friction is in force
from the next episode on. The k-th friction of an environment is drawn from `fold_in(friction_key, k)`, where
`friction_key` comes from the key of its first `reset`; so the friction sequence is a deterministic function of that
key and lives, with the change counters, in the state (a checkpoint resumes bit-identically).

`mujoco` and `mujoco.mjx` (the `rl` extra) are imported inside `make_locomotion_env` only.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.envs.base import Environment, EnvStep

ASSETS = os.path.join(os.path.dirname(__file__), 'assets')


class Robot(NamedTuple):
    """What distinguishes one locomotion task from another (the rest is `make_locomotion_env`)."""

    name: str
    xml_file: str               # file name under envs/assets
    frame_skip: int
    # (key, qpos0, nv) -> (qpos, qvel): the reset distribution around the model's initial configuration.
    reset_noise: Callable[[jax.Array, jax.Array, int], tuple[jax.Array, jax.Array]]
    observation_size: int
    # mjx.Data -> (observation_size,) observation.
    observe: Callable[[Any], jax.Array]
    # (data before, data after, raw action, dt) -> (reward, healthy, info): one environment step's reward terms.
    reward: Callable[[Any, Any, jax.Array, float], tuple[jax.Array, jax.Array, dict[str, jax.Array]]]


class FrictionSchedule(NamedTuple):
    """Slippery Ant's friction process: log-uniform draws on [low, high], changed at the first episode end after
    more than `change_interval` environment steps since the last change."""

    low: float
    high: float
    change_interval: int


class LocomotionState(NamedTuple):
    data: Any                       # mjx.Data of the current episode
    episode_step: jax.Array         # int32: environment steps taken in the current episode
    friction: jax.Array             # float32: sliding friction in force (NaN: the model's own per-geom frictions)
    friction_key: jax.Array         # key of this environment's friction sequence
    friction_changes: jax.Array     # int32: friction changes so far (index of the friction in force)
    steps_since_change: jax.Array   # int32: environment steps since the last friction change (or the first reset)


INTEGRATORS = {'euler': 'mjINT_EULER', 'rk4': 'mjINT_RK4', 'implicitfast': 'mjINT_IMPLICITFAST'}


def log_uniform(key: jax.Array, low: float, high: float) -> jax.Array:
    """One draw, log-uniform on [low, high]."""
    return jnp.exp(jax.random.uniform(key, (), jnp.float32, math.log(low), math.log(high)))


def make_locomotion_env(robot: Robot, max_episode_steps: int = 1000,
                        friction_schedule: FrictionSchedule | None = None, solver_iterations: int | None = None,
                        ls_iterations: int | None = None, integrator: str | None = None) -> Environment:
    """The `Environment` of `robot` on MJX; with `friction_schedule`, the friction of every geom follows it.

    `solver_iterations` / `ls_iterations` (None: the model's, MuJoCo's defaults 100 and 50) cap the constraint
    solver's iterations and line-search iterations per physics step. MJX runs the solver as a `while_loop` to the
    model's tolerance (1e-8) and, under `vmap`, until every environment of the batch has converged, and its line
    search as a scan whose iterations all execute under `vmap`; small caps (MuJoCo Playground's locomotion tasks use
    a few) trade some accuracy of the contact forces for much faster batched steps. The default keeps C MuJoCo's
    converged solution, as the papers' simulator.

    `integrator` (None: the model's, RK4 for Gym's Ant, Hopper and Walker2d; or one of `INTEGRATORS`) replaces the
    model's integrator. 'euler' evaluates the dynamics once per physics step where RK4 evaluates them four times: a
    cheaper step and a program that compiles in much less time (the tests use it), but a different simulation from
    the papers' (Gym's RK4).
    """
    import mujoco
    # MJX prints 'Failed to import warp' (twice) without its optional Warp backend, which is not used here.
    with contextlib.redirect_stdout(io.StringIO()):
        from mujoco import mjx

    if max_episode_steps < 1:
        raise ValueError(f'max_episode_steps must be >= 1, got {max_episode_steps}')
    if friction_schedule is not None:
        if not 0 < friction_schedule.low <= friction_schedule.high:
            raise ValueError(f'friction_range must satisfy 0 < low <= high, got '
                             f'({friction_schedule.low}, {friction_schedule.high})')
        if friction_schedule.change_interval < 1:
            raise ValueError(f'friction_change_interval must be >= 1, got {friction_schedule.change_interval}')
    mj_model = mujoco.MjModel.from_xml_path(os.path.join(ASSETS, robot.xml_file))
    if integrator is not None:
        if integrator not in INTEGRATORS:
            raise ValueError(f'integrator must be one of {list(INTEGRATORS)} or None, got {integrator!r}')
        mj_model.opt.integrator = getattr(mujoco.mjtIntegrator, INTEGRATORS[integrator])
    for field, value in (('iterations', solver_iterations), ('ls_iterations', ls_iterations)):
        if value is not None:
            if value < 1:
                raise ValueError(f'{"solver_iterations" if field == "iterations" else field} must be >= 1 or None, '
                                 f'got {value}')
            setattr(mj_model.opt, field, int(value))
    model = mjx.put_model(mj_model)
    template = mjx.make_data(model)
    qpos0 = jnp.asarray(mj_model.qpos0, jnp.float32)
    dt = float(mj_model.opt.timestep) * robot.frame_skip
    action_low = mj_model.actuator_ctrlrange[:, 0].astype(np.float32)
    action_high = mj_model.actuator_ctrlrange[:, 1].astype(np.float32)
    sliding = mj_model.geom_friction[:, 0]
    model_friction = float(sliding[0]) if np.all(sliding == sliding[0]) else float('nan')

    def physics_model(friction):
        if friction_schedule is None:
            return model
        return model.replace(geom_friction=model.geom_friction.at[:, 0].set(friction))

    def draw_friction(friction_key, index):
        return log_uniform(jax.random.fold_in(friction_key, index), friction_schedule.low, friction_schedule.high)

    def initial_data(friction, key):
        """A new episode's data and first observation. The observation is of the drawn configuration, as Gym's
        (its free-joint quaternion unnormalised); `mjx.forward` normalises quaternions in `qpos` (C MuJoCo does so
        at the first step's integration, so the simulated state is the same)."""
        qpos, qvel = robot.reset_noise(key, qpos0, mj_model.nv)
        drawn = template.replace(qpos=qpos, qvel=qvel)
        return mjx.forward(physics_model(friction), drawn), robot.observe(drawn)

    # Traced once for `reset` and every `step` of a program (the step's auto-reset), not once per use: tracing
    # MJX's forward pass takes about a CPU-second; XLA inlines the call, so the compiled program is unchanged.
    initial_data = jax.jit(initial_data)

    def reset(key):
        friction_key, noise_key = jax.random.split(key)
        if friction_schedule is None:
            friction = jnp.float32(model_friction)
        else:
            friction = draw_friction(friction_key, 0)
        data, observation = initial_data(friction, noise_key)
        zero = jnp.zeros((), jnp.int32)
        return LocomotionState(data, zero, friction, friction_key, zero, zero), observation

    def step(state: LocomotionState, action, key) -> EnvStep:
        action = jnp.asarray(action, jnp.float32)
        m = physics_model(state.friction)
        data = state.data.replace(ctrl=jnp.clip(action, action_low, action_high))
        data = jax.lax.fori_loop(0, robot.frame_skip, lambda _, d: mjx.step(m, d), data)
        reward, healthy, info = robot.reward(state.data, data, action, dt)
        final_observation = robot.observe(data)
        episode_step = state.episode_step + 1
        terminated = ~healthy
        truncated = (episode_step >= max_episode_steps) & ~terminated
        done = terminated | truncated
        steps_since_change = state.steps_since_change + 1
        friction, friction_changes = state.friction, state.friction_changes
        if friction_schedule is not None:
            change = done & (steps_since_change > friction_schedule.change_interval)
            friction_changes = friction_changes + change.astype(jnp.int32)
            friction = jnp.where(change, draw_friction(state.friction_key, friction_changes), friction)
            steps_since_change = jnp.where(change, 0, steps_since_change)
        fresh, first_observation = initial_data(friction, key)
        data = jax.tree_util.tree_map(lambda new, old: jnp.where(done, new, old), fresh, data)
        new_state = LocomotionState(data, jnp.where(done, 0, episode_step), friction, state.friction_key,
                                    friction_changes, steps_since_change)
        observation = jnp.where(done, first_observation, final_observation)
        info = {'friction': state.friction, **info}
        return EnvStep(new_state, observation, reward.astype(jnp.float32), terminated, truncated, final_observation,
                       {k: jnp.asarray(v, jnp.float32) for k, v in info.items()})

    return Environment(name=robot.name, observation_size=robot.observation_size, action_size=mj_model.nu,
                       action_low=action_low, action_high=action_high, max_episode_steps=max_episode_steps,
                       reset=reset, step=step)
