"""Step-size decay at fixed points of every task (multi-step schedules restarted at each task).

Dohare et al.'s class-incremental CIFAR-100 (Nature 2024, Methods) trains every increment for 200 epochs with the step
size multiplied by 0.2 at epochs 60, 120 and 160 (PyTorch's `MultiStepLR`, restarted when classes are added). Tasks
differ in length, so the milestones are given as fractions of the task: (0.3, 0.6, 0.8) of 200 epochs. The engine
passes each step's `task_progress` = step / (training steps of the task) to the optimizer as an extra argument.

`with_task_schedule` multiplies the learner's whole update by decay**(milestones passed) (`learners.make_learner`;
Shrink and Perturb schedules only its step, not its noise: `LearnerSpec.schedules_itself`), which equals scaling the
step size of SGD with momentum and weight decay coupled into the gradient as PyTorch's SGD does (PyTorch applies the
step size after the momentum buffer). It wraps the learner's optimizer and keeps that optimizer's state as its own
(the schedule needs none), so the routines that reset the optimizer state of replaced units (continual backprop,
ReDo: `optax.tree_utils.tree_map_params` with the learner's own optimizer) find the state they expect.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import ml_collections
import optax


def with_task_schedule(optimizer: optax.GradientTransformationExtraArgs, milestones: Sequence[float],
                       decay) -> optax.GradientTransformationExtraArgs:
    """`optimizer` (which accepts extra arguments) with its updates multiplied by decay**k, k = the number of
    milestones (fractions of the task) already reached; its state is `optimizer`'s."""
    milestones = jnp.asarray(tuple(milestones), jnp.float32)

    def update_fn(updates, state, params=None, *, task_progress, **extra_args):
        updates, state = optimizer.update(updates, state, params, task_progress=task_progress, **extra_args)
        scale = jnp.asarray(decay, jnp.float32) ** jnp.sum(task_progress >= milestones)
        return optax.tree.scale(scale, updates), state

    return optax.GradientTransformationExtraArgs(optimizer.init, update_fn)


def with_config_schedule(optimizer: optax.GradientTransformation,
                         config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """`optimizer` under the learner config's `step_size_milestones` and `step_size_decay` (`with_task_schedule`), or
    unchanged without milestones."""
    milestones = tuple(config.get('step_size_milestones', ()))
    if not milestones:
        return optimizer
    return with_task_schedule(optax.with_extra_args_support(optimizer), milestones, config.step_size_decay)
