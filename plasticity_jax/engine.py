"""The engine: one compiled program runs every seed of a continual-learning experiment.

`make_train(config)` builds the pure pieces for ONE run (purejaxrl style):

    train = make_train(config)
    state = train.init(key)                                     # RunState of one run
    state, metrics = train.run_tasks(state, train.data, n)      # n tasks: lax.scan over tasks, lax.scan over steps

and `run(config, workdir)` drives `jax.jit(jax.vmap(run_tasks))` over all seeds, chunk by chunk: after each chunk it
writes the metrics, saves an orbax checkpoint of the whole `RunState` and updates the progress bar. Starting the same
command again resumes from the latest checkpoint and gives bit-identical results (every key is derived from the
run's key and the task and step indices, never from how the run was chunked).

`run` is one compiled program; `run_programs(config, workdir)` runs a sweep over structural fields (width,
activation, learner, ...; see `sweeps`) as one such program per combination of their values, one after another.

One step of a task (everything inside `lax.scan`, no host round-trip):

    x, y = problem.batch(...)                                   # drawn on the device
    x_aux = problem.sample_inputs(...)                          # only if the learner asks (L2-ER's rank batch)
    loss, grads = value_and_grad(learner.objective(loss_fn))    # forward pass also yields the hidden activations
                                                                # (and the change of backward-pass state, if any)
    updates, opt_state = optimizer.update(grads, opt_state, params, key=..., grad_fn=...)
    params = apply_updates_after_backward(params, updates, grads)   # optax.apply_updates, with no weight copies
    learner_state, params, opt_state, model_state = after_update(...)   # e.g. continual backprop's unit replacement

At the start of each task the plasticity correlates are measured on a probe set of the new task; at its end the
problem may evaluate the network (test accuracy). A problem with a validation split (`Problem.validation_period`)
is scored on it during the task and the best network kept; with `problem.early_stopping` that network, not the last,
is evaluated and carried into the next task (class-incremental CIFAR-100's early stopping). Seeds never interact: a
non-finite loss in one seed is counted in its own `nonfinite_steps` metric and reported on the console, and cannot
reach another seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from tqdm.auto import tqdm

from plasticity_jax import curvature, in_place, learners, live_metrics, metrics, models, problems, sweeps, validation
from plasticity_jax import workdir as workdir_lib
from plasticity_jax.learners import AfterUpdateInputs, ForwardPass

# The workdir's files (`plasticity_jax.workdir`), under the names the rest of the package reads them by.
from plasticity_jax.workdir import (  # noqa: F401
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    SWEEP_CONFIG_FILE,
    atomic_write,
    load_npz,
    save_metrics,
)

# fold_in index of a step's key for the learner's auxiliary batch (apart from the step's four split keys).
AUXILIARY_BATCH_STREAM = 4


class RunState(NamedTuple):
    """Everything one run needs to continue: this is what a checkpoint holds."""

    params: Any
    model_state: Any  # the model's other flax collections (e.g. running normalisation statistics); often {}
    opt_state: Any
    learner_state: Any
    problem_state: Any
    key: jax.Array  # task keys are fold_in(key, task_index), step keys fold_in(task's key, step)
    task_index: jax.Array  # int32 scalar: the next task to run
    hyperparams: dict[str, jax.Array]  # this run's values of the swept config fields (`sweeps`); often {}


class Train(NamedTuple):
    """The pure functions of one run, plus the problem's data they take as an argument.

    `run_tasks(state, data, first_task, num_tasks)`: `first_task` is the index of the chunk's first task as an
    unbatched scalar (equal to `state.task_index`), so that schedules such as "measure the Hessian every K tasks"
    stay real branches (`lax.cond`) when the engine vmaps over runs instead of computing both sides.
    """

    init: Callable[[jax.Array], RunState]
    run_tasks: Callable[[RunState, Any, jax.Array, int], tuple[RunState, dict[str, jax.Array]]]
    # The Hessian spectrum at the start of the state's next task (`config.curvature`): what the in-run measurement
    # logs as "start", computed here for states restored from checkpoints (`plasticity_jax.spectra`).
    spectrum_at_task_start: Callable[[RunState, Any], dict[str, jax.Array]]
    data: Any
    problem: problems.Problem


class TaskKeys(NamedTuple):
    start: jax.Array  # the problem's task switch
    probe: jax.Array  # the correlates' probe set
    steps: jax.Array  # step keys are fold_in(steps, step)
    curvature: jax.Array  # the curvature probe set and SLQ's random vectors
    reset: jax.Array  # fresh parameters when the network is reset at the task's start


def task_keys(key: jax.Array, task_index: jax.Array) -> TaskKeys:
    return TaskKeys(*jax.random.split(jax.random.fold_in(key, task_index), len(TaskKeys._fields)))


# What happens to the network at the start of every task (`config.reset_at_task_start`):
# 'none'; 'head': the output layer's weights and bias are set to zero (Dohare et al.'s Continual ImageNet; the
# optimizer state is kept, as in the papers' code); 'network': parameters, model statistics, optimizer and learner
# state start afresh (the "from scratch" baseline of class-incremental CIFAR-100 and of warm-starting).
RESETS = ('none', 'head', 'network')
# The training pass's dtype (`config.compute_dtype`; parameters, optimizer state and metrics stay float32).
COMPUTE_DTYPES = ('float32', 'bfloat16')


def make_train(config: ml_collections.ConfigDict, *, shapes_only: bool = False) -> Train:
    """`shapes_only`: the problem's data as shapes alone (`problems.make_problem`), for planning."""
    if 'env' in config:  # Reinforcement learning: the same host loop runs PPO's program (`rl.ppo`; no data).
        from plasticity_jax.rl import ppo
        return ppo.make_train(config)
    problem, data = problems.make_problem(config, shapes_only=shapes_only)
    model = models.make_model(config.model, problem.num_outputs)
    example_input = jnp.zeros((1, *problem.input_shape), jnp.float32)

    def init_variables(key):
        variables = dict(model.init(key, example_input))
        return variables.pop('params'), variables

    def init_params(key):
        return init_variables(key)[0]

    if config.get('compute_dtype', 'float32') not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute_dtype {config.compute_dtype!r}; valid: {list(COMPUTE_DTYPES)}")
    compute_dtype = jnp.dtype(config.get('compute_dtype', 'float32'))

    def to_compute_dtype(tree):
        """Floating-point leaves in the training pass's compute dtype (`config.compute_dtype`)."""
        if compute_dtype == jnp.float32:
            return tree
        return jax.tree.map(lambda a: a.astype(compute_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    def predict(params, model_state, x):
        """Evaluation mode: no dropout randomness, no update of the model's statistics."""
        return model.apply({'params': params, **model_state}, x)

    if (config.model.get('normalization') == 'online_norm' and config.model.get('online_norm_alpha_b', 1.0) < 1.0
            and config.learner.name == 'gnp' and config.learner.get('gnp_mode', 'exact') == 'exact'):
        raise ValueError('the exact gradient norm penalty differentiates the gradient in forward mode, which Online '
                         "Normalization's backward control process (a custom VJP) does not support: set "
                         "learner.gnp_mode='finite_difference' or model.online_norm_alpha_b=1.0 (no control)")
    reset = config.get('reset_at_task_start', 'none')
    if reset not in RESETS:
        raise ValueError(f'unknown reset_at_task_start {reset!r}; valid: {list(RESETS)}')

    def reset_at_task_start(state: RunState, learner: learners.Learner, key: jax.Array) -> RunState:
        if reset == 'head':
            zero_head = jax.tree.map(jnp.zeros_like, state.params['output'])
            return state._replace(params={**state.params, 'output': zero_head})
        if reset == 'network':
            params, model_state = init_variables(key)
            return state._replace(params=params, model_state=model_state, opt_state=learner.optimizer.init(params),
                                  learner_state=learner.after_update.init(params))
        return state

    def learner_for(hyperparams) -> learners.Learner:
        """The learner of one run: swept fields take this run's (traced) values."""
        return learners.make_learner(sweeps.with_values(config, hyperparams).learner, init_params,
                                     model.unit_layers())

    def init(key: jax.Array, hyperparams: dict[str, jax.Array] | None = None) -> RunState:
        hyperparams = hyperparams or {}
        learner = learner_for(hyperparams)
        params_key, problem_key, tasks_key = jax.random.split(key, 3)
        params, model_state = init_variables(params_key)
        return RunState(params=params, model_state=model_state, opt_state=learner.optimizer.init(params),
                        learner_state=learner.after_update.init(params),
                        problem_state=problem.init(data, problem_key), key=tasks_key,
                        task_index=jnp.zeros((), jnp.int32), hyperparams=hyperparams)

    def train_step(learner, data, problem_state, active_steps, carry, step_and_key):
        params, model_state, opt_state, learner_state, totals = carry
        step, key = step_and_key
        batch_key, model_key, optimizer_key, after_key = jax.random.split(key, 4)
        x, y = problem.batch(data, problem_state, step, batch_key)

        # Collections the backward pass updates (`models.GRADIENT_STATE_COLLECTIONS`: Online Normalization's control
        # accumulators) are a second differentiated argument; their cotangent is their change in this step.
        gradient_state = {name: model_state[name] for name in models.GRADIENT_STATE_COLLECTIONS if name in model_state}
        forward_state = {name: value for name, value in model_state.items() if name not in gradient_state}

        auxiliary_x = None
        if learner.auxiliary_batch_size:
            auxiliary_x = problem.sample_inputs(data, problem_state, jax.random.fold_in(key, AUXILIARY_BATCH_STREAM),
                                                learner.auxiliary_batch_size)

        def loss_fn(params, gradient_state):
            # Training mode: models draw dropout masks from the 'dropout' rng and update their other collections.
            # With `compute_dtype` bfloat16 the pass runs on bfloat16 copies of the float32 parameters (the
            # gradient flows back through the cast to the float32 "master" parameters) and the loss in float32.
            variables = {'params': to_compute_dtype(params), **forward_state, **gradient_state}
            (outputs, hidden), new_forward_state = model.apply(
                variables, to_compute_dtype(x), rngs={'dropout': model_key}, mutable=list(forward_state))
            outputs = problem.task_outputs(problem_state, outputs.astype(jnp.float32))
            loss = problem.loss(outputs, y)
            # The auxiliary batch in evaluation mode: it leaves the model's statistics alone.
            auxiliary_hidden = None if auxiliary_x is None else model.apply(variables, auxiliary_x)[1]
            return loss, ForwardPass(outputs=outputs, hidden=hidden, loss=loss,
                                     model_state={**new_forward_state, **gradient_state},
                                     auxiliary_hidden=auxiliary_hidden)

        def objective(params, gradient_state):
            return learner.objective(lambda p: loss_fn(p, gradient_state))(params)

        (_, forward), (grads, gradient_state_change) = jax.value_and_grad(
            objective, argnums=(0, 1), has_aux=True)(params, gradient_state)
        forward = forward._replace(model_state={
            **forward.model_state, **jax.tree.map(jnp.add, gradient_state, gradient_state_change)})
        updates, opt_state = learner.optimizer.update(
            grads, opt_state, params, key=optimizer_key,
            grad_fn=lambda p, _: jax.grad(objective, has_aux=True)(p, gradient_state)[0],
            task_progress=step / active_steps)
        params = apply_updates_after_backward(params, updates, grads)
        learner_state, params, opt_state, model_state = learner.after_update.update(
            learner_state, AfterUpdateInputs(params=params, opt_state=opt_state, forward=forward, key=after_key))
        totals = {'online_metric': totals['online_metric'] + problem.online_metric(forward.outputs, y),
                  'online_loss': totals['online_loss'] + forward.loss,
                  'nonfinite_steps': totals['nonfinite_steps'] + (~jnp.isfinite(forward.loss)).astype(jnp.int32)}
        return params, model_state, opt_state, learner_state, totals

    def keep_if_better(data, problem_state, params, model_state, best, epoch):
        """`best` (the network of the task's best validation accuracy so far) replaced by this one, per run, if it
        scores higher (strictly, as the papers' CIFAR-100 code)."""
        accuracy = problem.validate(
            data, problem_state, lambda x: problem.task_outputs(problem_state, predict(params, model_state, x)[0]))
        candidate = {'params': params, 'model_state': model_state, 'accuracy': accuracy, 'epoch': epoch}
        better = accuracy > best['accuracy']
        return jax.tree.map(lambda new, old: jnp.where(better, new, old), candidate, best)

    def train_steps(learner, data, problem_state, active_steps, carry, steps, step_keys, period=0, best=None):
        """The task's steps; those from `active_steps` on leave `carry` unchanged (`Problem.active_steps`). With a
        validation `period` (`Problem.validation_period`), after every `period` steps the network is scored on the
        validation split and kept in `best` if it beats it; returns (carry, best)."""
        def step_fn(carry_and_best, xs):
            carry, best = carry_and_best
            if isinstance(active_steps, int) and active_steps == problem.steps_per_task:
                carry = train_step(learner, data, problem_state, active_steps, carry, xs)
            else:
                carry = jax.lax.cond(xs[0] < active_steps,
                                     lambda c: train_step(learner, data, problem_state, active_steps, c, xs),
                                     lambda c: c, carry)
            if best is not None:  # a real branch when `period` and `active_steps` do not depend on the run's state
                step = xs[0]
                best = jax.lax.cond(((step + 1) % period == 0) & (step < active_steps),
                                    lambda b: keep_if_better(data, problem_state, carry[0], carry[1], b,
                                                             (step + 1) // period - 1),
                                    lambda b: b, best)
            return (carry, best), None

        return jax.lax.scan(step_fn, (carry, best), (steps, step_keys), unroll=config.get('step_unroll', 1))[0]

    spectrum = make_spectrum(config, problem, predict)

    def run_task(data, state: RunState, task: jax.Array) -> tuple[RunState, dict[str, jax.Array]]:
        learner = learner_for(state.hyperparams)
        keys = task_keys(state.key, state.task_index)
        problem_state = problem.start_task(data, state.problem_state, state.task_index, keys.start)
        state = reset_at_task_start(state, learner, keys.reset)

        # Correlates of plasticity loss, on a probe set of the new task, before training on it.
        _, probe_hidden = predict(state.params, state.model_state, problem.probe(data, problem_state, keys.probe))
        start_metrics = metrics.representation_metrics(
            probe_hidden, state.params, config.model.activation,
            saturation_epsilon=config.metrics.saturation_epsilon,
            approximate_rank_threshold=config.metrics.approximate_rank_threshold,
            feature_rank_delta=config.metrics.feature_rank_delta,
            dead_max_active_share=config.metrics.get('dead_max_active_share', 0.0))

        steps = jnp.arange(problem.steps_per_task, dtype=jnp.int32)
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(keys.steps, steps)
        active_steps = problem.active_steps(data, problem_state, task)
        zero = jnp.zeros((), jnp.float32)
        totals = {'online_metric': zero, 'online_loss': zero, 'nonfinite_steps': jnp.zeros((), jnp.int32)}
        # The task's best network on the validation split, if the problem has one: it lives within the task
        # (checkpoints fall between tasks), starting from none (accuracy -1), as the papers' code resets it per task.
        period = problem.validation_period(data, problem_state, task)
        best = None
        if not (isinstance(period, int) and period == 0):
            best = {'params': state.params, 'model_state': state.model_state,
                    'accuracy': jnp.full((), -1.0, jnp.float32), 'epoch': jnp.full((), -1, jnp.int32)}
        (params, model_state, opt_state, learner_state, totals), best = train_steps(
            learner, data, problem_state, active_steps,
            (state.params, state.model_state, state.opt_state, state.learner_state, totals), steps, step_keys,
            period, best)
        validation_metrics = {}
        if best is not None:
            validation_metrics = {'validation_accuracy': best['accuracy'], 'validation_epoch': best['epoch']}
            if problem.early_stopping:  # the best network goes on; optimizer and learner state are the last ones
                params, model_state = best['params'], best['model_state']

        end_metrics = problem.evaluate(
            data, problem_state, lambda x: problem.task_outputs(problem_state, predict(params, model_state, x)[0]))
        task_metrics = {problem.online_metric_name: totals['online_metric'] / active_steps,
                        'online_loss': totals['online_loss'] / active_steps,
                        'nonfinite_steps': totals['nonfinite_steps'], **start_metrics, **end_metrics,
                        **validation_metrics}
        if config.curvature.every_tasks:
            # At the start and the end of every `every_tasks`-th task; NaN (-1 for counts) in the other tasks.
            def start_and_end(_):
                at = [spectrum(p, s, data, problem_state, keys.curvature)
                      for p, s in ((state.params, state.model_state), (params, model_state))]
                return jax.tree.map(lambda a, b: jnp.stack([a, b]), *at)

            shapes = jax.eval_shape(start_and_end, None)
            task_metrics.update(jax.lax.cond(task % config.curvature.every_tasks == 0, start_and_end,
                                             lambda _: jax.tree.map(_not_measured, shapes), None))
        new_state = state._replace(params=params, model_state=model_state, opt_state=opt_state,
                                   learner_state=learner_state, problem_state=problem_state,
                                   task_index=state.task_index + 1)

        return new_state, task_metrics

    def run_tasks(state: RunState, data, first_task: jax.Array, num_tasks: int):
        tasks = first_task + jnp.arange(num_tasks, dtype=jnp.int32)
        return jax.lax.scan(lambda s, task: run_task(data, s, task), state, tasks)

    def spectrum_at_task_start(state: RunState, data):
        keys = task_keys(state.key, state.task_index)
        problem_state = problem.start_task(data, state.problem_state, state.task_index, keys.start)
        state = reset_at_task_start(state, learner_for(state.hyperparams), keys.reset)
        return spectrum(state.params, state.model_state, data, problem_state, keys.curvature)

    return Train(init=init, run_tasks=run_tasks, spectrum_at_task_start=spectrum_at_task_start, data=data,
                 problem=problem)


def apply_updates_after_backward(params, updates, grads):
    """`optax.apply_updates(params, updates)`, ordered after the whole backward pass, so XLA updates weights in place.

    In a step loop the parameters are loop-carried buffers. The backward pass reads a weight matrix W (the product
    W^T delta that carries the gradient to the layer below) and the update writes W - lr * dW; both only need delta,
    so nothing orders the read before the write, and XLA's copy insertion keeps the old W alive by copying the whole
    matrix at every step (two 16 MB copies per step for the 3 x 2000 MLP: a third of the step's memory traffic).
    Here every new parameter is a select on `in_place.false_after` of the gradient of every vector-shaped parameter
    (the biases; of every parameter if there are none): a layer's bias gradient is its backward signal delta, and
    the earliest layer's delta needs every later layer's backward product W^T delta, so each write now follows every
    read and no copy is needed, and the result is exactly `optax.apply_updates(params, updates)`, bit for bit. XLA
    fuses the predicate into every update and evaluates it per element; from the bias gradients it is a few
    operations per element (from the kernel gradients, which are outer products, it would cost more than the copies
    it saves for small networks). tests/test_engine.py compiles the Permuted MNIST program and asserts that no
    weight-sized buffer is copied inside the step loop.
    """
    new_params = optax.apply_updates(params, updates)
    leaves = jax.tree.leaves(grads)
    never = in_place.false_after(*([g for g in leaves if g.ndim <= 1] or leaves))
    return jax.tree.map(lambda new, old: jnp.where(never, old, new), new_params, params)


def _not_measured(shape: jax.ShapeDtypeStruct) -> jax.Array:
    return jnp.full(shape.shape, jnp.nan if jnp.issubdtype(shape.dtype, jnp.floating) else -1, shape.dtype)


def make_spectrum(config: ml_collections.ConfigDict, problem: problems.Problem, predict):
    """`spectrum(params, model_state, data, problem_state, key) -> dict`: the loss curvature's spectrum on a probe
    set of the task (issue "Curvature"), by `curvature.spectrum_summary` with the settings of `config.curvature`.

    The probe set is fixed by the task and `key`: `probe_size` examples drawn as one batch of the task at step 0.
    Metrics: `hessian_top_eigenvalue`, `hessian_trace`, `hessian_epsilon_rank` (per epsilon, NaN where not
    resolved), `hessian_density` (on the grid), ... (prefix `config.curvature.kind`); with
    `curvature.exact_ggn_probe_size` > 0 also the exact GGN spectrum of that many probe examples (`ggn_exact_*`).
    """
    c = config.curvature
    probe_problem = dataclasses.replace(problem, batch_size=c.probe_size)
    loss = 'cross_entropy' if problem.kind == 'classification' else 'mse'

    exact_ggn_size = c.get('exact_ggn_probe_size', 0)
    if not 0 <= exact_ggn_size <= c.probe_size:
        raise ValueError(f'curvature.exact_ggn_probe_size={exact_ggn_size} must be in [0, curvature.probe_size='
                         f'{c.probe_size}]: the exact GGN uses the first examples of the curvature probe set')

    def spectrum(params, model_state, data, problem_state, key):
        dataset = probe_problem.batch(data, problem_state, jnp.zeros((), jnp.int32), key)
        apply_fn = lambda p, x: problem.task_outputs(problem_state, predict(p, model_state, x)[0])
        out = curvature.spectrum_summary(
            apply_fn, loss, params, dataset, key, curvature=c.kind,
            num_draws=c.draws, order=c.order, epsilons=tuple(c.epsilons), grid=tuple(c.grid), sigma=c.sigma,
            chunk_size=c.chunk_size)
        if exact_ggn_size:  # the exact GGN spectrum of the probe set's first examples (curvature.gauss_newton)
            head = jax.tree.map(lambda leaf: leaf[:exact_ggn_size], dataset)
            out.update(curvature.exact_ggn_spectrum(apply_fn, loss, params, head, epsilons=tuple(c.epsilons),
                                                    chunk_size=c.chunk_size))
        return out

    return spectrum


def seed_keys(config: ml_collections.ConfigDict) -> jax.Array:
    """One key per run (sweep points x seeds): seed s uses fold_in(PRNGKey(config.seed), s) at every point."""
    return sweeps.runs(config).keys(config.seed)


def make_vmapped(train: Train) -> Callable[[RunState, int], tuple[RunState, dict[str, jax.Array]]]:
    """`run_tasks` over every run at once on one device: ONE compiled program per chunk length."""
    vmapped = jax.jit(jax.vmap(train.run_tasks, in_axes=(0, None, None, None)), static_argnums=3)
    return lambda state, num_tasks: vmapped(state, train.data, state.task_index[0], num_tasks)


def make_sharded(train: Train, mesh: jax.sharding.Mesh):
    """`init(keys, hyperparams)` and `run_chunk(state, first_task, num_tasks)` over the flat runs axis, sharded
    over every device of `mesh` (its one axis, 'runs'): each device holds and computes its slice of the runs, and
    holds a replica of the problem's data, uploaded once."""
    by_run = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('runs'))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    data = jax.tree.map(lambda a: jax.make_array_from_callback(a.shape, replicated, lambda index: a[index]),
                        jax.device_get(train.data))
    init = jax.jit(jax.vmap(train.init), out_shardings=by_run)
    vmapped = jax.jit(jax.vmap(train.run_tasks, in_axes=(0, None, None, None)), static_argnums=3,
                      out_shardings=(by_run, by_run))
    return init, lambda state, first_task, num_tasks: vmapped(state, data, first_task, num_tasks)


# ----------------------------------------------------------------------------------------------------------------
# The host loop: chunks of tasks, metrics, checkpoints, progress.


def _report_nonfinite(chunk_metrics: dict[str, np.ndarray], first_task: int, runs: sweeps.Runs) -> None:
    counts = chunk_metrics['nonfinite_steps']  # (runs, tasks)
    for run in np.flatnonzero(counts.sum(axis=1)):
        point, seed = divmod(int(run), runs.num_seeds)
        where = f'point {point} ' if runs.grid.names else ''
        first = first_task + int(np.flatnonzero(counts[run])[0])
        logging.warning('%sseed %d: %d non-finite losses in tasks %d-%d (first in task %d); other runs are unaffected.',
                        where, seed, counts[run].sum(), first_task, first_task + counts.shape[1] - 1, first)


class Plan(NamedTuple):
    """What a run would do on these devices, before anything is compiled."""

    num_points: int
    num_seeds: int
    num_runs: int
    num_devices: int
    runs_per_device: int  # after padding the runs to a multiple of the device count
    state_bytes_per_run: int  # params, optimizer, learner and problem state
    data_bytes: int  # the problem's data, replicated on every device
    curvature_bytes_per_run: int  # the Lanczos basis of the in-run spectrum, when it is on
    device_bytes_limit: int | None  # what the device reports it can hold; on CPU its share of the host's memory
    num_tasks: int
    examples_per_task: int
    tasks_per_chunk: int  # tasks between checkpoints
    platform: str = 'cpu'

    @property
    def bytes_per_device(self) -> int:
        """A lower bound: persistent state and data, plus the curvature basis; activations come on top."""
        return self.runs_per_device * (self.state_bytes_per_run + self.curvature_bytes_per_run) + self.data_bytes

    def describe(self) -> str:
        gib = lambda b: f'{b / 2**30:.3f} GiB'
        limit = gib(self.device_bytes_limit) if self.device_bytes_limit else 'not reported'
        if self.device_bytes_limit and self.platform == 'cpu':
            limit += ' (the host\'s memory)'
        return (f'{self.num_points} point(s) x {self.num_seeds} seed(s) = {self.num_runs} runs over '
                f'{self.num_devices} device(s), {self.runs_per_device} runs per device\n'
                f'memory per device >= {gib(self.bytes_per_device)} (state {gib(self.state_bytes_per_run)} per run, '
                f'curvature basis {gib(self.curvature_bytes_per_run)} per run, data {gib(self.data_bytes)}); '
                f'device limit {limit}\n'
                f'{self.num_tasks} tasks of {self.examples_per_task} examples, a checkpoint every '
                f'{self.tasks_per_chunk} tasks')


def host_memory_bytes() -> int | None:
    """Physical memory of this host: the limit of CPU devices, which report none."""
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
        return None


def make_plan(config: ml_collections.ConfigDict, train: Train | None = None) -> Plan:
    """From shapes alone (`make_train(shapes_only=True)`) unless `train` is given: reads no data."""
    validation.check_config(config)
    train = train or make_train(config, shapes_only=True)
    devices = jax.devices()
    runs = sweeps.runs(config, len(devices))
    state = jax.eval_shape(train.init, jax.random.PRNGKey(0), {k: v[0] for k, v in runs.hyperparams().items()})
    nbytes = lambda tree: sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(tree))
    num_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(state.params))
    curvature_bytes = (config.curvature.order + 2) * num_params * 4 if config.curvature.every_tasks else 0
    device = jax.local_devices()[0]
    limit = (device.memory_stats() or {}).get('bytes_limit')
    if limit is None and device.platform == 'cpu' and host_memory_bytes():  # the host's CPU devices share it
        limit = host_memory_bytes() // len(jax.local_devices())
    return Plan(num_points=runs.grid.num_points, num_seeds=runs.num_seeds, num_runs=runs.num_runs,
                num_devices=len(devices), runs_per_device=runs.num_padded // len(devices),
                state_bytes_per_run=nbytes(state), data_bytes=nbytes(train.data),
                curvature_bytes_per_run=curvature_bytes, device_bytes_limit=limit,
                num_tasks=config.num_tasks, examples_per_task=train.problem.examples_per_task,
                tasks_per_chunk=config.tasks_per_chunk, platform=device.platform)


def check_fits(plan: Plan) -> None:
    """Refuses, with a suggested split, a run whose persistent memory alone exceeds a device."""
    if plan.device_bytes_limit is None or plan.bytes_per_device <= plan.device_bytes_limit:
        return
    per_run = plan.state_bytes_per_run + plan.curvature_bytes_per_run
    fitting = max(0, (plan.device_bytes_limit - plan.data_bytes) // per_run) * plan.num_devices
    raise MemoryError(f'{plan.describe()}\nThis does not fit. Run at most {fitting} runs at once on these devices: '
                      'fewer seeds (--config.num_seeds), fewer sweep points per program, or more devices.')


def _to_host(tree):
    """Every run's values as numpy on this process (gathered from all hosts in a multi-host program)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Runs (or resumes) ONE program, the experiment `config`, in `workdir`; returns the metrics, leading axes
    (run, task). A run whose metrics already hold every task returns them without compiling anything.

    The runs (sweep points x seeds, `sweeps`) form one flat axis sharded over all devices of all processes; with a
    sweep, `results.load_run` splits it into (point, seed). A sweep over structural fields is several programs:
    `run_programs` runs it. Only process 0 writes the config and the metrics; orbax writes every process's shards of
    the checkpoint.

    Before anything is written: the config is validated (`validation`), the workdir locked against a second
    process, its config compared, the program built and its memory checked. Every checkpoint also holds the
    metrics so far, from which a lost metrics.npz is rebuilt; a damaged newest checkpoint is moved aside and the
    previous one resumed (`workdir`; docs/durability.md).
    """
    validation.check_config(config)
    writer = jax.process_index() == 0
    devices = jax.devices()
    runs = sweeps.runs(config, len(devices))
    with workdir_lib.Lock(workdir) if writer else contextlib.nullcontext():
        workdir_lib.check_same_experiment(workdir, config)
        finished = _finished_metrics(workdir, config)
        if finished is not None:
            if writer:
                workdir_lib.write_config(workdir, config)
            return finished
        train = make_train(config)
        check_fits(make_plan(config, train))
        init, run_chunk = make_sharded(train, jax.sharding.Mesh(np.array(devices), ('runs',)))
        state = init(runs.keys(config.seed), runs.hyperparams())
        done, restored, history = workdir_lib.restore_latest(workdir, state, writer=writer)
        _check_not_shrunk(workdir, config, done)
        history = workdir_lib.reconcile_metrics(workdir, done, history, writer=writer)
        if writer:
            workdir_lib.write_config(workdir, config)
        if restored is not None:
            state = restored
            if writer and done:
                print(f'Resuming {workdir} from its checkpoint after task {done}.')
        return _run_chunks(config, workdir, train, runs, run_chunk, state, done, history, progress=progress)


def _check_not_shrunk(workdir: str, config: ml_collections.ConfigDict, done: int) -> None:
    held = max(done, workdir_lib.num_tasks_in(load_npz(os.path.join(workdir, METRICS_FILE))))
    if held > config.num_tasks:
        raise workdir_lib.WorkdirError(
            f'{workdir} already holds {held} tasks, more than config.num_tasks = {config.num_tasks}: nothing is '
            f'changed. Read the first tasks with results.load_run; to continue the run give --config.num_tasks >= '
            f'{held}.')


def _finished_metrics(workdir: str, config: ml_collections.ConfigDict) -> dict[str, np.ndarray] | None:
    """The metrics of a finished run, checked against (or rebuilt from) its newest checkpoint without building
    anything; None when there is work to do (or a damaged checkpoint to set aside)."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    steps = workdir_lib.checkpoint_steps(directory)
    _check_not_shrunk(workdir, config, steps[-1] if steps else 0)
    if not steps or steps[-1] != config.num_tasks:
        return None
    try:
        history = workdir_lib.restore_history(directory, steps[-1])
    except Exception:  # a damaged checkpoint: the full path moves it aside and resumes from the previous one
        return None
    return workdir_lib.reconcile_metrics(workdir, steps[-1], history, writer=jax.process_index() == 0)


def _run_chunks(config, workdir, train, runs, run_chunk, state, done, history, *, progress):
    """The chunks from task `done` on: after each, metrics.npz and a checkpoint (state and metrics so far)."""
    writer = jax.process_index() == 0
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                           keep_period=config.keep_checkpoints_every or None)
    directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    fresh = not workdir_lib.checkpoint_steps(directory)
    with ocp.CheckpointManager(directory, options=options) as manager:
        if fresh:  # A fresh run: checkpoint the initial state too (spectra at initialisation need it).
            manager.save(0, args=workdir_lib.save_args(state, {}))
        live = live_metrics.LiveMetrics(workdir, runs, first_task=done, enabled=writer)
        examples_per_task = train.problem.examples_per_task * runs.num_runs
        bar = tqdm(total=config.num_tasks, initial=done, unit='task', disable=not (progress and writer),
                   dynamic_ncols=True)
        while done < config.num_tasks:
            chunk = min(config.tasks_per_chunk, config.num_tasks - done)
            start = time.perf_counter()
            state, chunk_metrics = run_chunk(state, np.int32(done), chunk)
            chunk_metrics = runs.unpad(_to_host(chunk_metrics))
            elapsed = time.perf_counter() - start
            history = {name: np.concatenate([history[name], values], axis=1) if name in history else values
                       for name, values in chunk_metrics.items()}
            done += chunk
            if writer:
                _report_nonfinite(chunk_metrics, done - chunk, runs)
                save_metrics(workdir, history)
                live.write(chunk_metrics, done - chunk)
            manager.save(done, args=workdir_lib.save_args(state, history))
            bar.update(chunk)
            online = chunk_metrics[train.problem.online_metric_name][:, -1].mean()
            bar.set_postfix({'examples/s': f'{chunk * examples_per_task / elapsed:.3g}',
                             train.problem.online_metric_name: f'{online:.4f}'})
        manager.wait_until_finished()
        bar.close()
        live.close()
    return history


def run_programs(config: ml_collections.ConfigDict, workdir: str, *, only: int | None = None,
                 progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Runs (or resumes) every program of `config`'s sweep, one after another: one per combination of the swept
    structural fields (`sweeps.programs`), each a `run` in `workdir/<program name>` (in `workdir` itself when only
    continuous fields are swept); `only=i` runs program i alone, e.g. one program per host or job. Finished programs
    are skipped, an unfinished one resumes from its checkpoint. Returns program name -> metrics (leading axes
    (run, task)); `results.load_runs(workdir)` reads them back.
    """
    programs = sweeps.programs(config)
    chosen = sweeps.select(programs, only)
    for program in chosen:  # every program's config is checked before any program runs or anything is written
        validation.check_config(program.config)
    if programs[0].name and jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        workdir_lib.check_same_experiment(workdir, config, SWEEP_CONFIG_FILE)
        workdir_lib.write_config(workdir, config, SWEEP_CONFIG_FILE)
    return {program.name: run(program.config, program.workdir(workdir), progress=progress) for program in chosen}
