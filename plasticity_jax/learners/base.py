"""The learner interface: what the engine needs from a learning algorithm.

A learner is three pure pieces, each written for ONE run (the engine vmaps them over seeds and hyperparameters):

1. `optimizer`: an `optax.GradientTransformationExtraArgs`. Each step the engine calls
   `optimizer.update(grads, opt_state, params, key=..., grad_fn=..., task_progress=...)`:
   `key` is a fresh PRNG key of this run and step (for noise-injecting transforms such as Shrink and Perturb), and
   `grad_fn(params, i)` returns the gradient of this step's objective at `params` (as `optax.contrib.sam` expects),
   and `task_progress` is the share of the task's training steps done before this one (for schedules restarted at
   every task, `learners.schedule`).
   Transforms that need neither ignore them (`optax.with_extra_args_support`).
2. `objective`: maps the step's loss function to the function that is differentiated, for regularisers that are
   extra loss terms (L2-ER's feature rank term, gradient norm penalty). A loss function is
   `loss_fn(params) -> (loss, ForwardPass)`; the default objective returns it unchanged.
3. `after_update`: a routine run after the optimizer's update that may rewrite params, optimizer state and the
   model's other collections (batch norm statistics) given the step's hidden activations (continual backprop, ReDo),
   with its own state in the run state.

A learner may also ask for an auxiliary batch (`auxiliary_batch_size`): examples of the current task drawn at every
step besides the training batch, whose hidden activations the loss function computes too (L2-ER computes its rank
term on such a batch, as its authors' code does in batch-size-1 streams).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

Params = Any
OptState = Any


class ForwardPass(NamedTuple):
    """What one forward pass of the model on the step's batch produced."""

    outputs: jax.Array  # (batch, num_outputs)
    hidden: tuple[jax.Array, ...]  # one (batch, width) array per hidden layer, after the activation
    loss: jax.Array  # the problem's loss, before any learner term
    model_state: Any  # the model's non-parameter collections after this pass (e.g. normalisation statistics)
    # The hidden activations on the step's auxiliary batch (`Learner.auxiliary_batch_size` examples of the current
    # task, evaluation mode, differentiable w.r.t. the params); None when the learner asks for none.
    auxiliary_hidden: tuple[jax.Array, ...] | None = None


LossFn = Callable[[Params], tuple[jax.Array, ForwardPass]]


class AfterUpdateInputs(NamedTuple):
    """Everything an after-update routine may look at, for one run and one step."""

    params: Params  # after the optimizer's update
    opt_state: OptState
    forward: ForwardPass  # the forward pass of this step (before the update)
    key: jax.Array  # fresh PRNG key for this routine


class AfterUpdate(NamedTuple):
    """`init(params) -> state`; `update(state, inputs) -> (state, params, opt_state, model_state)`, where the
    model state is the model's non-parameter collections after the step (`inputs.forward.model_state` unless the
    routine rewrites them, as unit replacement resets a replaced channel's batch norm statistics)."""

    init: Callable[[Params], Any]
    update: Callable[[Any, AfterUpdateInputs], tuple[Any, Params, OptState, Any]]


def identity_after_update() -> AfterUpdate:
    """The after-update routine of learners that have none: keeps params, optimizer and model state as they are."""
    return AfterUpdate(init=lambda params: (),
                       update=lambda state, inputs: (state, inputs.params, inputs.opt_state,
                                                     inputs.forward.model_state))


def identity_objective(loss_fn: LossFn) -> LossFn:
    return loss_fn


class Learner(NamedTuple):
    optimizer: optax.GradientTransformationExtraArgs
    objective: Callable[[LossFn], LossFn] = identity_objective
    after_update: AfterUpdate = identity_after_update()
    # > 0: at every step the engine also draws this many inputs of the current task (`Problem.sample_inputs`) and
    # gives their hidden activations to the objective (`ForwardPass.auxiliary_hidden`; L2-ER's rank batch).
    auxiliary_batch_size: int = 0


def make_learner_with(optimizer: optax.GradientTransformation, **hooks) -> Learner:
    """A `Learner` whose optimizer accepts (and may ignore) the engine's extra arguments."""
    return Learner(optimizer=optax.with_extra_args_support(optimizer), **hooks)


def is_swept(value: Any) -> bool:
    """Whether a learner field holds a swept value: an array with this run's value (`sweeps`: every float field of
    `learner` can be swept inside one program), not a Python number fixed at trace time."""
    return not isinstance(value, (bool, int, float, str, tuple, list, type(None)))
