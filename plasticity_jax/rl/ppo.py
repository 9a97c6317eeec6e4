"""Proximal policy optimisation (Schulman et al., 2017) as the papers run it (Dohare et al., Nature 2024, Methods;
their code `lop/algos/rl/ppo.py`), written for ONE run and plugged into the engine's host loop.

`make_train(config)` returns an `engine.Train` (purejaxrl's shape: pure pieces, everything a `lax.scan`):

    state = train.init(key)                          # RunState: networks, optimizer, learner, environments
    state, metrics = train.run_tasks(state, (), first_task, n)

A "task" of the engine is an interval of `rl.updates_per_task` PPO updates (`updates_per_task * steps_per_update`
environment steps), so metrics keep their (point, seed, task) axes, checkpoints fall between intervals, and sweeps,
sharding, `results.load_run`, plots and the CLI are the supervised ones. One step of a task's scan is one update:

    rollout     lax.scan over steps_per_update / num_envs steps of num_envs environments (vmapped)
    GAE         lax.scan backwards over the rollout (`gae`), advantages normalised over the update's batch
    epochs      lax.scan over `epochs` passes, each a lax.scan over the minibatches of a fresh permutation;
                every minibatch step is one step of the run's learner: objective -> gradient -> optimizer ->
                after-update routine (continual backprop's or ReDo's unit replacement) on {'policy', 'value'}

The papers' settings (the config defaults, `configs/ant.py`): one environment; 2048 steps per update; 10 epochs of
16 minibatches of 128; loss = clipped surrogate (clip 0.2) + value MSE (coefficient 1, no 1/2); gamma 0.99, GAE
lambda 0.95; advantages normalised over the update's batch (mean 0, unbiased std 1, as the code); no entropy bonus,
no value clipping, no gradient clipping, no observation or reward normalisation.

Episode ends. An episode that reached the time limit is treated as terminal by default (`time_limit='terminal'`:
no value beyond it, as the papers' code); `time_limit='bootstrap'` adds gamma V(final observation) at a
truncation instead. GAE never crosses an episode end either way.

Metrics per task (interval), all from the run's own data:
- `episode_return`: mean return of the episodes that ended in the interval (NaN where none did), `episodes`;
- `friction` (environments that report it in `info`): the value in force at the interval's end (mean over the
  run's environments);
- per update, averaged over the interval's updates: `policy_loss`, `value_loss`, `approx_kl` (the k3 estimator
  E[(r - 1) - log r] on the minibatches), `clip_fraction` (share of |r - 1| > clip), `policy_weight_change` and
  `value_weight_change` (sum |dW| of the network's kernels over one update; the papers log the policy's);
- `policy_log_std` (mean over action dimensions, at the interval's end);
- for each network, `policy_*` and `value_*`: dead fraction (active on at most `metrics.dead_max_active_share` of
  the observations, 0.01 in the RL configs as the papers' PPO figure), effective / approximate / stable / feature
  rank per hidden layer and the weight magnitude (`metrics.representation_metrics`), at the interval's end, on the
  observations of its last rollout;
- `nonfinite_steps`: minibatch steps with a non-finite loss (the engine reports them per run).

Learners. Any learner of `learners` works unchanged: the params are `{'policy', 'value', 'log_std'}` under one
optimizer, the forward pass's hidden activations are both networks' (policy first, the order of
`learners.reinit.unit_layers`), and `task_progress` is the share of the interval's updates done. A learner that
asks for an auxiliary batch (L2-ER with `rank_batch_size > 0`) is refused: PPO has no "task" to draw it from; L2-ER
with `rank_batch_size = 0` computes its rank term on each PPO minibatch (the RL configs' `l2_er` variant).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from plasticity_jax import envs, learners, metrics, models, sweeps, validation
from plasticity_jax.learners import AfterUpdateInputs, ForwardPass

TIME_LIMITS = ('terminal', 'bootstrap')
ONLINE_METRIC = 'episode_return'


@dataclasses.dataclass(frozen=True)
class RLProblem:
    """What the engine's host loop reads of a problem (`engine.run`, `engine.make_plan`)."""

    env: envs.Environment
    examples_per_task: int  # environment steps per task (interval), per run
    online_metric_name: str = ONLINE_METRIC


class RolloutState(NamedTuple):
    """The run's environments between updates (`RunState.problem_state`)."""

    env_state: tuple[jax.Array, ...]  # the non-empty leaves of the environments' state (`EnvStatePacking`)
    observation: jax.Array  # (num_envs, observation_size)
    episode_return: jax.Array  # (num_envs,) return of the running episode so far
    info: dict[str, jax.Array]  # (num_envs,) each: the environment's info of its last step


class EnvStatePacking(NamedTuple):
    """Orbax cannot checkpoint zero-size arrays, which MJX's state has (e.g. `act` of a model without actuator
    activations): the run state holds the non-empty leaves only and the empty ones are rebuilt around `env.step`."""

    pack: Any  # env state -> tuple of its non-empty leaves
    unpack: Any  # that tuple -> env state (of one environment)


def env_state_packing(env: envs.Environment) -> EnvStatePacking:
    shapes = jax.eval_shape(lambda key: env.reset(key)[0], jax.random.PRNGKey(0))
    leaves, treedef = jax.tree.flatten(shapes)
    kept = [i for i, leaf in enumerate(leaves) if math.prod(leaf.shape) > 0]

    def pack(state):
        flat = jax.tree.leaves(state)
        return tuple(flat[i] for i in kept)

    def unpack(packed):
        flat = [jnp.zeros(leaf.shape, leaf.dtype) for leaf in leaves]
        for i, value in zip(kept, packed):
            flat[i] = value
        return jax.tree.unflatten(treedef, flat)

    return EnvStatePacking(pack=pack, unpack=unpack)


class Transition(NamedTuple):
    observation: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_observation: jax.Array


def gaussian_log_prob(action: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(action; mean, exp(log_std)^2), summed over the last (action) axis."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, episode_ends: jax.Array, gamma: float,
        lam: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al., 2016, eq. 11-16) over time-major (T, ...) arrays.

    `next_values[t]` is the value of what follows step t (0 after a terminal state, gamma-free); the trace is cut
    where `episode_ends[t]`. Returns (advantages, value targets = advantages + values)."""
    deltas = rewards + gamma * next_values - values
    continues = 1.0 - episode_ends.astype(rewards.dtype)

    def backward(following, xs):
        delta, cont = xs
        advantage = delta + gamma * lam * cont * following
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(rewards[0]), (deltas, continues), reverse=True)
    return advantages, advantages + values


def following_values(values: jax.Array, last_value: jax.Array, terminated: jax.Array, truncated: jax.Array,
                     final_values: jax.Array | None = None) -> jax.Array:
    """The value of what follows each step of a (T, ...) rollout, for `gae`: 0 after a terminal state; after a
    time-limit end, 0 (`final_values` None: the limit treated as terminal) or the value of the observation reached
    (`final_values`, bootstrapping); else the next step's value (`last_value` after the rollout's last step)."""
    following = jnp.concatenate([values[1:], last_value[None]])
    following = jnp.where(truncated, 0.0 if final_values is None else final_values, following)
    return jnp.where(terminated, 0.0, following)


def normalize_advantages(advantages: jax.Array) -> jax.Array:
    """Mean 0 and unbiased standard deviation 1 over the whole batch; only centred if the std is 0 (the code)."""
    centred = advantages - jnp.mean(advantages)
    std = jnp.std(advantages, ddof=1)
    return jnp.where(std > 0, centred / jnp.where(std > 0, std, 1.0), centred)


class LossTerms(NamedTuple):
    policy_loss: jax.Array
    value_loss: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array


def ppo_loss_terms(log_prob: jax.Array, old_log_prob: jax.Array, advantages: jax.Array, value: jax.Array,
                   targets: jax.Array, clip: float) -> LossTerms:
    """The clipped surrogate -E[min(r A, clip(r, 1 - clip, 1 + clip) A)], r = pi / pi_old, and E[(V - target)^2];
    with the diagnostics approximate KL E[(r - 1) - log r] and the share of clipped ratios."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * advantages)
    stop = jax.lax.stop_gradient
    return LossTerms(policy_loss=-jnp.mean(surrogate), value_loss=jnp.mean((value - targets) ** 2),
                     approx_kl=jnp.mean(stop((ratio - 1.0) - log_ratio)),
                     clip_fraction=jnp.mean((jnp.abs(stop(ratio) - 1.0) > clip).astype(jnp.float32)))


def make_train(config: ml_collections.ConfigDict):
    """The pure pieces of one PPO run (`engine.Train`); `engine.make_train` calls this for configs with an `env`."""
    from plasticity_jax import engine  # the engine dispatches here: imported late

    validation.check_config(config)  # the RL rules too (`validation.AGREEMENTS`)
    rl = config.rl
    env = envs.make_env(config.env)
    model = models.ActorCritic(action_size=env.action_size, width=config.model.width, depth=config.model.depth,
                               activation=config.model.activation)
    num_envs = rl.num_envs
    rollout_length = rl.steps_per_update // num_envs
    batch_size = rl.steps_per_update
    num_minibatches = batch_size // rl.minibatch_size
    updates_per_task = rl.updates_per_task
    depth = config.model.depth
    problem = RLProblem(env=env, examples_per_task=updates_per_task * rl.steps_per_update)

    def init_params(key):
        return model.init(key, jnp.zeros((1, env.observation_size), jnp.float32))['params']

    def learner_for(hyperparams) -> learners.Learner:
        learner = learners.make_learner(sweeps.with_values(config, hyperparams).learner, init_params,
                                        model.unit_layers())
        if learner.auxiliary_batch_size:
            raise ValueError(f'learner {config.learner.name!r} asks for an auxiliary batch, which RL runs do not draw')
        return learner

    packing = env_state_packing(env)

    def env_step(packed, action, key):
        """`env.step` of one environment on the packed state."""
        result = env.step(packing.unpack(packed), action, key)
        return result._replace(state=packing.pack(result.state))

    def reset_envs(key):
        env_state, observation = jax.vmap(env.reset)(jax.random.split(key, num_envs))
        env_state = jax.vmap(packing.pack)(env_state)
        info_shapes = jax.eval_shape(lambda s: env_step(s, jnp.zeros(env.action_size), key).info,
                                     jax.tree.map(lambda a: a[0], env_state))
        info = {name: jnp.zeros((num_envs,), s.dtype) for name, s in info_shapes.items()}
        return RolloutState(env_state=env_state, observation=observation,
                            episode_return=jnp.zeros((num_envs,), jnp.float32), info=info)

    def init(key: jax.Array, hyperparams: dict[str, jax.Array] | None = None) -> engine.RunState:
        hyperparams = hyperparams or {}
        learner = learner_for(hyperparams)
        params_key, env_key, tasks_key = jax.random.split(key, 3)
        params = init_params(params_key)
        return engine.RunState(params=params, model_state={}, opt_state=learner.optimizer.init(params),
                               learner_state=learner.after_update.init(params), problem_state=reset_envs(env_key),
                               key=tasks_key, task_index=jnp.zeros((), jnp.int32), hyperparams=hyperparams)

    def apply(params, observations):
        return model.apply({'params': params}, observations)

    def rollout(params, rollout_state: RolloutState, key):
        """`rollout_length` steps of every environment; returns the new state, the time-major transitions and the
        (sum of returns, count) of the episodes that ended."""
        def step(carry, step_key):
            state, finished_sum, finished = carry
            outputs, _ = apply(params, state.observation)
            action_key, env_key = jax.random.split(step_key)
            mean, log_std = outputs['mean'], outputs['log_std']
            action = mean + jnp.exp(log_std) * jax.random.normal(action_key, mean.shape)
            result = jax.vmap(env_step)(state.env_state, action, jax.random.split(env_key, num_envs))
            episode_return = state.episode_return + result.reward
            ended = result.terminated | result.truncated
            finished_sum = finished_sum + jnp.sum(jnp.where(ended, episode_return, 0.0))
            finished = finished + jnp.sum(ended.astype(jnp.int32))
            transition = Transition(observation=state.observation, action=action,
                                    log_prob=gaussian_log_prob(action, mean, log_std), value=outputs['value'],
                                    reward=result.reward, terminated=result.terminated, truncated=result.truncated,
                                    final_observation=result.final_observation)
            state = RolloutState(env_state=result.state, observation=result.observation,
                                 episode_return=jnp.where(ended, 0.0, episode_return), info=result.info)
            return (state, finished_sum, finished), transition

        keys = jax.random.split(key, rollout_length)
        zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        (rollout_state, finished_sum, finished), transitions = jax.lax.scan(step, (rollout_state, *zero), keys)
        return rollout_state, transitions, finished_sum, finished

    def advantages_and_targets(params, transitions: Transition, last_observation):
        last_value = apply(params, last_observation)[0]['value']
        final_values = None
        if rl.time_limit == 'bootstrap':
            final = transitions.final_observation.reshape(-1, env.observation_size)
            final_values = apply(params, final)[0]['value'].reshape(transitions.value.shape)
        following = following_values(transitions.value, last_value, transitions.terminated, transitions.truncated,
                                     final_values)
        ends = transitions.terminated | transitions.truncated
        advantages, targets = gae(transitions.reward, transitions.value, following, ends, rl.gamma, rl.gae_lambda)
        return normalize_advantages(advantages), targets

    def minibatch_step(learner, progress, carry, xs):
        params, opt_state, learner_state = carry
        batch, key = xs
        optimizer_key, after_key = jax.random.split(key)
        observation, action, old_log_prob, advantages, targets = batch

        def loss_fn(params):
            outputs, hidden = apply(params, observation)
            terms = ppo_loss_terms(gaussian_log_prob(action, outputs['mean'], outputs['log_std']), old_log_prob,
                                   advantages, outputs['value'], targets, rl.clip)
            loss = terms.policy_loss + rl.value_coefficient * terms.value_loss
            return loss, ForwardPass(outputs={**outputs, 'terms': terms}, hidden=hidden, loss=loss, model_state={})

        objective = learner.objective(loss_fn)
        (_, forward), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = learner.optimizer.update(
            grads, opt_state, params, key=optimizer_key,
            grad_fn=lambda p, _: jax.grad(objective, has_aux=True)(p)[0], task_progress=progress)
        params = engine.apply_updates_after_backward(params, updates, grads)  # optax.apply_updates, in place
        learner_state, params, opt_state, _ = learner.after_update.update(
            learner_state, AfterUpdateInputs(params=params, opt_state=opt_state, forward=forward, key=after_key))
        terms = forward.outputs['terms']
        return (params, opt_state, learner_state), {**terms._asdict(), 'nonfinite': ~jnp.isfinite(forward.loss)}

    def kernel_change(before, after, network):
        return sum(jnp.sum(jnp.abs(after[network][layer]['kernel'] - before[network][layer]['kernel']))
                   for layer in before[network])

    def update(learner, carry, xs):
        """One PPO update: rollout, GAE, epochs x minibatches of learner steps."""
        params, opt_state, learner_state, rollout_state, _ = carry
        index, key = xs
        rollout_key, epochs_key, steps_key = jax.random.split(key, 3)
        rollout_state, transitions, finished_sum, finished = rollout(params, rollout_state, rollout_key)
        advantages, targets = advantages_and_targets(params, transitions, rollout_state.observation)
        flat = lambda a: a.reshape(batch_size, *a.shape[2:])
        batch = (flat(transitions.observation), flat(transitions.action), flat(transitions.log_prob),
                 flat(advantages), flat(targets))

        def epoch(carry, epoch_index):
            order = jax.random.permutation(jax.random.fold_in(epochs_key, epoch_index), batch_size)
            minibatches = jax.tree.map(lambda a: a[order].reshape(num_minibatches, rl.minibatch_size, *a.shape[1:]),
                                       batch)
            first = epoch_index * num_minibatches
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
                steps_key, first + jnp.arange(num_minibatches))
            step = lambda c, x: minibatch_step(learner, index / updates_per_task, c, x)
            return jax.lax.scan(step, carry, (minibatches, keys))

        before = params
        (params, opt_state, learner_state), stats = jax.lax.scan(
            epoch, (params, opt_state, learner_state), jnp.arange(rl.epochs))
        update_metrics = {name: jnp.mean(stats[name]) for name in LossTerms._fields}
        update_metrics.update(
            nonfinite_steps=jnp.sum(stats['nonfinite'].astype(jnp.int32)), returns_sum=finished_sum,
            episodes=finished, policy_weight_change=kernel_change(before, params, 'policy'),
            value_weight_change=kernel_change(before, params, 'value'))
        return (params, opt_state, learner_state, rollout_state, batch[0]), update_metrics

    def representation(params, observations):
        _, hidden = apply(params, observations)
        result = {}
        for network, layers in (('policy', hidden[:depth]), ('value', hidden[depth:])):
            measured = metrics.representation_metrics(
                layers, params[network], config.model.activation,
                saturation_epsilon=config.metrics.saturation_epsilon,
                approximate_rank_threshold=config.metrics.approximate_rank_threshold,
                feature_rank_delta=config.metrics.feature_rank_delta,
                dead_max_active_share=config.metrics.get('dead_max_active_share', 0.0))
            result.update({f'{network}_{name}': value for name, value in measured.items()})
        return result

    def run_task(state: engine.RunState, task: jax.Array):
        learner = learner_for(state.hyperparams)
        keys = engine.task_keys(state.key, state.task_index)
        indices = jnp.arange(updates_per_task, dtype=jnp.int32)
        update_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(keys.steps, indices)
        observations = jnp.zeros((batch_size, env.observation_size), jnp.float32)  # the last rollout's, at the end
        carry = (state.params, state.opt_state, state.learner_state, state.problem_state, observations)
        (params, opt_state, learner_state, rollout_state, observations), per_update = jax.lax.scan(
            lambda c, x: update(learner, c, x), carry, (indices, update_keys))
        del task
        episodes = jnp.sum(per_update['episodes'])
        task_metrics = {
            ONLINE_METRIC: jnp.where(episodes > 0, jnp.sum(per_update['returns_sum']) / jnp.maximum(episodes, 1),
                                     jnp.nan),
            'episodes': episodes,
            'nonfinite_steps': jnp.sum(per_update['nonfinite_steps']),
            'policy_log_std': jnp.mean(params['log_std']),
            **{name: jnp.mean(per_update[name]) for name in (*LossTerms._fields, 'policy_weight_change',
                                                             'value_weight_change')},
            **{name: jnp.mean(value) for name, value in rollout_state.info.items()},
            **representation(params, observations),
        }
        new_state = state._replace(params=params, opt_state=opt_state, learner_state=learner_state,
                                   problem_state=rollout_state, task_index=state.task_index + 1)
        return new_state, task_metrics

    def run_tasks(state: engine.RunState, data, first_task: jax.Array, num_tasks: int):
        del data
        tasks = first_task + jnp.arange(num_tasks, dtype=jnp.int32)
        return jax.lax.scan(run_task, state, tasks)

    def spectrum_at_task_start(state, data):
        raise ValueError('Hessian spectra (plasticity_jax.spectra) are not available for RL runs')

    return engine.Train(init=init, run_tasks=run_tasks, spectrum_at_task_start=spectrum_at_task_start, data=(),
                        problem=problem)
