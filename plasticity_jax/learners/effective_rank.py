"""L2-ER: L2 regularisation plus a reward for the effective rank of the hidden features: 'l2_er'.

He, Guo, Prakash et al. (2025), "Spectral Collapse Drives Loss of Plasticity in Deep Continual Learning"
(arXiv 2509.22335; poster /work/shared/papers/000): keeping the Kronecker-factored GGN's feature factor
E[a a^T] well spread keeps the Hessian's rank up. The poster's objective is

    min_theta  E[loss] - erank( sum_l E[a_l a_l^T] ) + lambda ||theta||^2

Here, as an extra loss term (objective hook) plus weight decay in the optimizer:

    objective(theta) = loss(theta) - erank_coef * R(theta)
    optimizer        = chain(add_l2(weight_decay), <SGD or Adam>)      (g + weight_decay * theta, i.e. lambda = wd/2)

    R = erank( sum_l C_l )            erank_layers = 'sum' (default; the poster's formula; needs equal widths)
    R = sum_l erank( C_l )            erank_layers = 'per_layer'
    C_l = A_l^T A_l / B               A_l: the step's (B, width) features of hidden layer l, after the activation
    erank(C) = exp(-sum_i p_i log(p_i + 1e-8)),  p_i = lambda_i / sum_j lambda_j,  lambda: eigenvalues of C

(Roy & Vetterli's effective rank of the covariance spectrum, with the authors' code's epsilon in the log.) The
eigenvalues are computed from the smaller of C (width x width) and the Gram matrix A A^T / B (B x B; same non-zero
eigenvalues), and differentiated with the symmetric-eigenvalue rule dlambda_i = v_i^T dC v_i (no eigenvector
derivative, so repeated or zero eigenvalues give finite gradients).

THE RANK BATCH. The features A_l come from a batch of `rank_batch_size` examples of the current task drawn
uniformly at random at every step, apart from the training batch (the engine's auxiliary batch,
`Learner.auxiliary_batch_size`; the network in evaluation mode on it, differentiated w.r.t. the params). The
authors' Online Permuted MNIST configs train with batch size 1 and set `er_batch: 100` for the rank step: the
covariance of one example, a a^T, has rank 1 and erank exactly 1 whatever theta is, so a rank term on the training
batch alone would have zero gradient there. Which 100 examples their loop takes is not in their released code
(choice: a fresh uniform sample of the current task's training examples at every step). `rank_batch_size = 0`
computes the term on the training batch instead (then it acts only with `problem.batch_size > 1`, and a warning is
logged when the objective is traced with batch size 1).

`l2_er_mode`: 'objective' (default): the poster's joint objective above, one gradient step on it per step.
'alternating': the authors' code (github.com/KevinGuo27/ReAI-loss-of-plasticity, lop/algos/er.py: a task-loss SGD
step, then a separate SGD step on -erank of the features): even steps follow only grad(loss), odd steps only
grad(-erank_coef * R), each plus weight decay, through the same base optimizer (the authors use a second SGD
optimizer with its own step size er_lr; here erank_coef * step_size plays that role, and with Adam the two gradient
streams share its moments). The engine's objective hook cannot see the step, so the optimizer takes both partial
gradients itself: the learner's objective hook and its optimizer share a trace-time switch (`TermSwitch`) that
selects which terms the objective includes while the optimizer calls `grad_fn`; both gradients are computed every
step and the step parity (a counter in the optimizer state) picks one. The authors compute their rank step on a
separate batch of er_batch = 100 examples, as here (THE RANK BATCH above).

Defaults (config variant `l2_er`), the authors' Online Permuted MNIST configs (lop/permuted_mnist/cfg/task800/erowd/
std_net.json: SGD, step size 0.01, weight_decay 1e-3, er_coeff 0.01, er_batch 100): weight_decay = 1e-3,
erank_coef = 0.01 (we read er_coeff as the coefficient of the rank term; the config does not say) and
rank_batch_size = 100. erank_layers = 'sum'.

`weight_decay` is an `optax.inject_hyperparams` array in the optimizer state; `erank_coef` is closed over by the
objective hook (which has no state): a Python float, or, when swept, this run's value as a traced array, so a sweep
of it is one program like a sweep of any other float field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from plasticity_jax import linalg
from plasticity_jax.learners.backprop import make_optimizer
from plasticity_jax.learners.base import Learner, LossFn, make_learner_with
from plasticity_jax.learners.weight_decay import add_l2, field

DEFAULTS = {'weight_decay': 1e-3, 'erank_coef': 0.01, 'erank_layers': 'sum', 'l2_er_mode': 'objective',
            'rank_batch_size': 100}
ERANK_LAYERS = ('sum', 'per_layer')
L2_ER_MODES = ('objective', 'alternating')
LOG_EPS = 1e-8  # The authors' code: entropy = -sum p log(p + 1e-8).


@jax.custom_vjp
def symmetric_eigenvalues(matrix: jax.Array) -> jax.Array:
    """Eigenvalues (ascending) of a symmetric matrix, differentiable also at repeated eigenvalues (`linalg`: one
    LAPACK call per matrix under `vmap`)."""
    return linalg.eigvalsh(matrix)


def _eigenvalues_fwd(matrix):
    values, vectors = linalg.eigh(matrix)
    return values, vectors


def _eigenvalues_bwd(vectors, cotangent):
    # d lambda_i = v_i^T dC v_i  =>  dC-cotangent = V diag(cotangent) V^T (exact for symmetric spectral functions).
    return ((vectors * cotangent) @ vectors.T,)


symmetric_eigenvalues.defvjp(_eigenvalues_fwd, _eigenvalues_bwd)


def spectrum_erank(eigenvalues: jax.Array) -> jax.Array:
    """exp(entropy) of the normalised non-negative spectrum (Roy & Vetterli), with log(p + 1e-8)."""
    values = jnp.maximum(eigenvalues, 0.0)
    total = jnp.sum(values)
    p = values / jnp.where(total > 0, total, 1.0)
    return jnp.exp(-jnp.sum(p * jnp.log(p + LOG_EPS)))


def second_moment_eigenvalues(rows: jax.Array, batch: int) -> jax.Array:
    """Eigenvalues of rows^T rows / batch, from whichever of rows^T rows and rows rows^T is smaller."""
    n, width = rows.shape
    gram = rows @ rows.T if n < width else rows.T @ rows
    gram = (gram + gram.T) / (2.0 * batch)
    return symmetric_eigenvalues(gram)


def feature_erank(hidden: Sequence[jax.Array], layers: str = 'sum') -> jax.Array:
    """R: erank(sum_l E[a_l a_l^T]) ('sum') or sum_l erank(E[a_l a_l^T]) ('per_layer') over the batch."""
    if layers not in ERANK_LAYERS:
        raise ValueError(f'unknown erank_layers {layers!r}; valid: {list(ERANK_LAYERS)}')
    hidden = [h.reshape(h.shape[0], -1) for h in hidden]
    batch = hidden[0].shape[0]
    if layers == 'per_layer':
        return sum(spectrum_erank(second_moment_eigenvalues(h, batch)) for h in hidden)
    widths = {h.shape[1] for h in hidden}
    if len(widths) != 1:
        raise ValueError(f"erank_layers='sum' adds the layers' E[a a^T], which needs equal widths; got "
                         f"{sorted(widths)}: use erank_layers='per_layer'")
    # sum_l A_l^T A_l = S^T S with S the layers' features stacked along the batch axis.
    return spectrum_erank(second_moment_eigenvalues(jnp.concatenate(hidden, axis=0), batch))


class TermSwitch:
    """Which terms the L2-ER objective includes: read when the objective is TRACED (a Python value, not an array).

    The alternating optimizer sets it around its own `grad_fn` calls to get the gradient of the task loss alone and
    of the rank term alone; everywhere else it is 'both'. One switch per learner instance.
    """

    def __init__(self):
        self.terms = 'both'  # 'both', 'task' or 'rank'

    def __call__(self, terms: str, grad_fn, params):
        previous, self.terms = self.terms, terms
        try:
            return grad_fn(params, 0)
        finally:
            self.terms = previous


def erank_objective(coef, layers: str = 'sum', switch: TermSwitch | None = None):
    """The objective hook: loss_fn -> (loss - coef * R(features), forward) (terms selected by `switch`); the features
    are those of the auxiliary batch when the loss function has one, else the training batch's."""

    def objective(loss_fn: LossFn) -> LossFn:
        def penalised(params):
            loss, forward = loss_fn(params)
            terms = switch.terms if switch is not None else 'both'
            if not forward.hidden or terms == 'task':
                return loss, forward
            features = forward.hidden if forward.auxiliary_hidden is None else forward.auxiliary_hidden
            if features[0].shape[0] == 1:
                logging.warning('L2-ER: a rank batch of 1 example, so the rank term erank(a a^T) = 1 has zero '
                                'gradient; only the L2 part acts (set learner.rank_batch_size > 1).')
            rank_term = -coef * feature_erank(features, layers)
            return (rank_term if terms == 'rank' else loss + rank_term), forward
        return penalised

    return objective


class AlternatingState(NamedTuple):
    count: jax.Array  # steps taken: even -> task step, odd -> rank step


def alternate_task_and_rank(switch: TermSwitch) -> optax.GradientTransformationExtraArgs:
    """Replaces the incoming gradient by grad(task loss) on even steps and grad(-coef R) on odd steps."""

    def init(params):
        del params
        return AlternatingState(count=jnp.zeros((), jnp.int32))

    def update(updates, state, params=None, *, grad_fn=None, **extra_args):
        del extra_args
        if grad_fn is None or params is None:
            raise ValueError('alternate_task_and_rank needs params and grad_fn(params, i)')
        task, rank = switch('task', grad_fn, params), switch('rank', grad_fn, params)
        take_task = state.count % 2 == 0
        new = jax.tree.map(lambda t, r, u: jnp.where(take_task, t, r).astype(u.dtype), task, rank, updates)
        return new, AlternatingState(count=state.count + 1)

    return optax.GradientTransformationExtraArgs(init, update)


def make_l2_er(config: ml_collections.ConfigDict, init_params) -> Learner:
    del init_params
    mode = field(config, 'l2_er_mode', DEFAULTS)
    layers = field(config, 'erank_layers', DEFAULTS)
    if mode not in L2_ER_MODES:
        raise ValueError(f'unknown l2_er_mode {mode!r}; valid: {list(L2_ER_MODES)}')
    if layers not in ERANK_LAYERS:
        raise ValueError(f'unknown erank_layers {layers!r}; valid: {list(ERANK_LAYERS)}')
    coef = field(config, 'erank_coef', DEFAULTS)
    rank_batch_size = int(field(config, 'rank_batch_size', DEFAULTS))
    if rank_batch_size < 0:
        raise ValueError(f'rank_batch_size must be >= 0 (0: the training batch), got {rank_batch_size}')
    decay = optax.inject_hyperparams(add_l2)(weight_decay=field(config, 'weight_decay', DEFAULTS))
    if mode == 'objective':
        return make_learner_with(optax.chain(decay, make_optimizer(config)), objective=erank_objective(coef, layers),
                                 auxiliary_batch_size=rank_batch_size)
    switch = TermSwitch()
    return make_learner_with(optax.chain(alternate_task_and_rank(switch), decay, make_optimizer(config)),
                             objective=erank_objective(coef, layers, switch), auxiliary_batch_size=rank_batch_size)
