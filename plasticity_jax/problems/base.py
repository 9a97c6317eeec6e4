"""The problem interface: a stream of tasks, generated on the device from keys.

A problem never knows about learners. It holds its dataset in `data` (a pytree of device arrays, uploaded once and
passed to every method explicitly, so the compiled program takes it as an argument instead of baking it in as a
constant) and describes ONE run's stream with pure functions of a `state` (this run's current task: a pixel
permutation, the target network's bits, ...) and PRNG keys:

    state = problem.init(data, key)                           # once per run
    state = problem.start_task(data, state, task_index, key)  # at every task switch, including task 0
    x, y = problem.batch(data, state, step, key)              # the examples of step `step` of the task
    x = problem.probe(data, state, key)                       # probe inputs for the plasticity metrics
    metrics = problem.evaluate(data, state, predict)          # end-of-task evaluation, e.g. test accuracy

`predict(x) -> outputs` is the trained network; `loss` and `online_metric` score a step's outputs before the update.

Two optional hooks serve problems whose tasks differ in size or in the classes they use:

    n = problem.active_steps(data, state, task)               # steps that train in this task (<= steps_per_task)
    outputs = problem.task_outputs(state, outputs)            # the network's outputs as this task scores them

and two serve problems with a validation split, scored during the task (the engine keeps the network of the best
score, and carries it into the next task when `problem.early_stopping` is set):

    period = problem.validation_period(data, state, task)     # steps between two scores; 0 (static): no split
    accuracy = problem.validate(data, state, predict)         # the accuracy on the task's validation split

A task runs `steps_per_task` steps (a static length, so every task is one compiled scan); steps from `n` on leave
the run unchanged. `task` is the task index as an unbatched scalar: when `n` depends only on it, skipped steps cost
nothing under `jax.vmap`; when it depends on a run's own state they are computed and discarded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

Predict = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Problem:
    """Shapes and sizes shared by every problem; subclasses implement the stream."""

    kind: str  # 'classification' or 'regression'
    input_shape: tuple[int, ...]  # one example's shape, e.g. (784,) or (32, 32, 3)
    num_outputs: int
    examples_per_task: int
    batch_size: int
    probe_size: int

    # Whether the network the engine carries into the next task is the task's best on the validation split rather
    # than the last one (a problem with a validation split may declare it a field).
    early_stopping = False

    @property
    def steps_per_task(self) -> int:
        return self.examples_per_task // self.batch_size

    @property
    def online_metric_name(self) -> str:
        return 'online_accuracy' if self.kind == 'classification' else 'online_mse'

    def loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Mean cross-entropy (classification, integer labels) or mean squared error (regression)."""
        if self.kind == 'classification':
            return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()
        return jnp.mean((outputs - targets) ** 2)

    def online_metric(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Per-step score of the prediction made before the update: accuracy or squared error."""
        if self.kind == 'classification':
            return jnp.mean(jnp.argmax(outputs, axis=-1) == targets)
        return jnp.mean((outputs - targets) ** 2)

    # The stream: implemented by each problem.
    def init(self, data: Any, key: jax.Array) -> Any:
        raise NotImplementedError

    def start_task(self, data: Any, state: Any, task_index: jax.Array, key: jax.Array) -> Any:
        raise NotImplementedError

    def batch(self, data: Any, state: Any, step: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def probe(self, data: Any, state: Any, key: jax.Array) -> jax.Array:
        raise NotImplementedError

    def sample_inputs(self, data: Any, state: Any, key: jax.Array, size: int) -> jax.Array:
        """`size` inputs of the current task drawn uniformly at random (with replacement) with `key`: the extra
        batch a learner may ask for at every step (`learners.Learner.auxiliary_batch_size`)."""
        raise NotImplementedError

    def evaluate(self, data: Any, state: Any, predict: Predict) -> dict[str, jax.Array]:
        return {}

    def active_steps(self, data: Any, state: Any, task: jax.Array) -> int | jax.Array:
        """How many of the task's `steps_per_task` steps train; every one by default."""
        del data, state, task
        return self.steps_per_task

    def validation_period(self, data: Any, state: Any, task: jax.Array) -> int | jax.Array:
        """The validation split is scored after steps `period - 1`, `2 period - 1`, ... of the task (up to its
        `active_steps`); the static int 0 (the default): the problem has no validation split."""
        del data, state, task
        return 0

    def validate(self, data: Any, state: Any, predict: Predict) -> jax.Array:
        """The accuracy of `predict` on the task's validation split (a scalar)."""
        raise NotImplementedError

    def task_outputs(self, state: Any, outputs: jax.Array) -> jax.Array:
        """The outputs this task's loss, metrics and evaluation see: all of them by default (a class-incremental
        problem hides the classes not seen yet)."""
        del state
        return outputs
