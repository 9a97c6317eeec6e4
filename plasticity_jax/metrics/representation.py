"""Representation-level correlates of loss of plasticity.

These are the quantities that Dohare et al. track alongside performance to
explain why deep networks lose plasticity in continual learning:

* the fraction of dead (or saturated) hidden units,
* the average magnitude of the network weights,
* the effective rank (and related rank measures) of each hidden layer's
  representation.

References:
    [Dohare24] S. Dohare, J. F. Hernandez-Garcia, Q. Lan, P. Rahman,
        A. R. Mahmood, R. S. Sutton. "Loss of plasticity in deep continual
        learning". Nature 632, 768-774 (2024), Methods.
    [DohareThesis] S. Dohare. "Deep continual learning" (PhD dissertation,
        University of Alberta), chapter 4.2, "Correlates of loss of plasticity".
    [RoyVetterli07] O. Roy, M. Vetterli. "The effective rank: a measure of
        effective dimensionality". EUSIPCO 2007, Definition 1.
    [Yang20] Y. Yang, G. Zhang, Z. Xu, D. Katabi. "Harnessing structures for
        value-based planning and reinforcement learning". ICLR 2020
        (approximate rank, as used in [Dohare24]).
    [Kumar23] S. Kumar, H. Marklund, B. Van Roy. "Maintaining plasticity in
        continual learning via regenerative regularization" (L2 Init), 2023,
        following [Lyle22] C. Lyle, M. Rowland, W. Dabney. "Understanding and
        preventing capacity loss in reinforcement learning". ICLR 2022.
    [RudelsonVershynin07] M. Rudelson, R. Vershynin. "Sampling from large
        matrices: an approach through geometric functional analysis".
        Journal of the ACM 54(4), 2007 (numerical / stable rank).

Convolutional layers: a hidden array of rank > 2, (num_examples, height, width,
channels), is a layer whose units are its channels (a channel applies the same
incoming weights at every position). The rank measures use each channel's
spatial mean per example, i.e. the (num_examples, channels) features of
:func:`unit_features`. A channel is dead when it is dead at every position of
every example (:func:`dead_fraction` treats positions as further examples);
for ReLU this is exactly a spatial mean of 0 on every example, since a
nonnegative map averages to 0 only where it is 0 everywhere.

Every function operates on a single run (one seed); the training engine
vmaps over seeds. All functions are pure ``jax.numpy``, jittable and
vmappable; string/float hyperparameters (``activation``, thresholds) are
Python values resolved at trace time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from plasticity_jax import linalg

__all__ = [
    "ACTIVATIONS",
    "approximate_rank",
    "dead_fraction",
    "effective_rank",
    "feature_rank",
    "representation_metrics",
    "singular_values",
    "stable_rank",
    "unit_features",
    "weight_magnitude",
]

# Saturation values per saturating activation: a unit is dead if, on every
# example, its output is within ``saturation_epsilon`` of one and the same of
# these values.
_SATURATION_VALUES: dict[str, tuple[float, ...]] = {
    "sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "elu": (-1.0,),  # lower saturation; elu is unbounded above
    "swish": (0.0,),  # swish(x) -> 0 as x -> -inf
}

#: Activation names understood by :func:`dead_fraction`.
ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "tanh",
    "sigmoid",
    "elu",
    "leaky_relu",
    "swish",
    "identity",
)


def unit_features(features: jax.Array) -> jax.Array:
    """(num_examples, num_units) float32 features of one hidden layer.

    A dense layer's (num_examples, num_units) features are returned as they
    are; a convolutional layer's (num_examples, ..., channels) maps become each
    channel's mean over the spatial positions, per example.
    """
    features = jnp.asarray(features, dtype=jnp.float32)
    return jnp.mean(features, axis=tuple(range(1, features.ndim - 1)))


# ---------------------------------------------------------------------------
# Dead / saturated units
# ---------------------------------------------------------------------------


def _dead_units(
    features: jax.Array, activation: str, saturation_epsilon: float, max_active_share: float = 0.0
) -> jax.Array:
    """Boolean mask (num_units,) of dead units; see :func:`dead_fraction`."""

    def stuck(condition: jax.Array) -> jax.Array:  # the condition fails on at most max_active_share of examples
        return jnp.mean(jnp.logical_not(condition).astype(jnp.float32), axis=0) <= max_active_share

    if activation == "relu":
        return stuck(features == 0)
    if activation == "leaky_relu":
        return stuck(features < 0)
    if activation == "identity":
        return jnp.zeros(features.shape[1], dtype=bool)
    stuck_at = [stuck(jnp.abs(features - value) <= saturation_epsilon) for value in _SATURATION_VALUES[activation]]
    return jnp.any(jnp.stack(stuck_at), axis=0)


def dead_fraction(
    features: jax.Array, activation: str, saturation_epsilon: float = 0.01, max_active_share: float = 0.0
) -> jax.Array:
    """Fraction of dead hidden units in one layer.

    Definition ([DohareThesis] ch. 4.2; [Dohare24] Methods, "dead units"): a
    ReLU unit is dead if it outputs zero for every example in a probe sample
    (two thousand images in the paper). For saturating activations the
    analogue is a unit whose output stays within ``saturation_epsilon`` of
    one and the same saturation value on every example:

    * ``relu``: output exactly 0 on every example;
    * ``sigmoid``: within eps of 0 on every example, or of 1 on every example;
    * ``tanh``: within eps of -1 on every example, or of 1 on every example;
    * ``elu``: within eps of -1 (its lower saturation) on every example;
    * ``swish``: within eps of 0 on every example (swish -> 0 for x -> -inf);
    * ``leaky_relu``: output < 0 on every example (stuck in the low-slope
      regime);
    * ``identity``: never dead.

    A unit that sits at 0 on some examples and at 1 on others (sigmoid) is
    *not* dead: it still discriminates between inputs.

    A convolutional channel is a unit whose examples are all positions of all
    examples: it is dead when the condition above holds at every position.

    ``max_active_share`` > 0 relaxes "every example" to "all but that share
    of the examples": the papers' PPO figure counts a policy unit dead when
    it was active (> 0) on at most 1% of the last 1,000 acting steps
    (lop/rl/plots/fig4b.py on `pol_features_activity`); the RL configs set
    ``metrics.dead_max_active_share = 0.01``.

    Args:
        features: (num_examples, num_units) post-activation hidden features,
            or (num_examples, ..., channels) convolutional maps.
        activation: name of the layer's activation, one of :data:`ACTIVATIONS`
            (a Python string, static under ``jit``).
        saturation_epsilon: tolerance around a saturation value.
        max_active_share: share of the examples on which a dead unit may
            still be off its saturation value (0: none, the papers' rule).

    Returns:
        float32 scalar in [0, 1].

    Raises:
        ValueError: if ``activation`` is not one of :data:`ACTIVATIONS`.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}."
        )
    features = jnp.asarray(features, dtype=jnp.float32)
    dead = _dead_units(features.reshape(-1, features.shape[-1]), activation, saturation_epsilon, max_active_share)
    return jnp.mean(dead.astype(jnp.float32))


# ---------------------------------------------------------------------------
# Weight magnitude
# ---------------------------------------------------------------------------


def _is_kernel_path(path: tuple[Any, ...]) -> bool:
    """True if a pytree key path ends with the key ``'kernel'``."""
    if not path:
        return False
    last = path[-1]
    key = getattr(last, "key", getattr(last, "name", None))
    return key == "kernel"


def weight_magnitude(params: Mapping[str, Any]) -> jax.Array:
    """Average absolute weight of the network, biases excluded.

    Definition ([DohareThesis] ch. 4.2; [Dohare24] Methods): "the sum of the
    absolute values of all the network weights divided by the total number
    of weights". Weights are the ``'kernel'`` leaves of a flax params pytree,
    dense and convolutional kernels alike (each entry of a conv kernel is one
    weight, shared over positions); ``'bias'`` and any other leaves are
    ignored, among them the ``'scale'`` and ``'bias'`` of normalisation layers
    (an affine rescaling per unit, not connections between units).

    Args:
        params: flax params pytree (dict or FrozenDict).

    Returns:
        float32 scalar.

    Raises:
        ValueError: if the pytree contains no leaf whose path ends in
            ``'kernel'`` (the structure is static, so this is a trace-time
            check).
    """
    leaves_with_path, _ = jax.tree_util.tree_flatten_with_path(params)
    kernels = [leaf for path, leaf in leaves_with_path if _is_kernel_path(path)]
    if not kernels:
        raise ValueError("weight_magnitude: params contain no 'kernel' leaves.")
    total_abs = sum(jnp.sum(jnp.abs(jnp.asarray(k, dtype=jnp.float32))) for k in kernels)
    total_count = sum(int(jnp.size(k)) for k in kernels)
    return jnp.asarray(total_abs / total_count, dtype=jnp.float32)


# ---------------------------------------------------------------------------
# Rank measures from singular values
# ---------------------------------------------------------------------------


def singular_values(features: jax.Array) -> jax.Array:
    """Singular values of a representation matrix, in float32.

    Args:
        features: (num_examples, num_units) representation matrix Phi, or
            (num_examples, ..., channels) convolutional maps, whose Phi is
            their :func:`unit_features` (spatial means).

    Returns:
        (min(num_examples, num_units),) nonnegative singular values, in
        descending order (``jnp.linalg.svd(..., compute_uv=False)``; `linalg.svdvals`: one LAPACK call per
        matrix under `vmap`, see there).
    """
    return linalg.svdvals(unit_features(features))


def effective_rank(s: jax.Array) -> jax.Array:
    """Effective rank of a matrix from its singular values.

    Definition ([RoyVetterli07] Definition 1; used in [Dohare24] Methods and
    [DohareThesis] ch. 4.2): with p_k = s_k / sum_j s_j,

        erank = exp(H(p)),  H(p) = -sum_k p_k log p_k,  with 0 log 0 = 0.

    erank(I_n) = n and erank of a rank-1 matrix is 1. By convention an
    all-zero matrix (sum of singular values 0) has effective rank 0; no NaN
    is produced in value or gradient.

    Args:
        s: (k,) nonnegative singular values, any order.

    Returns:
        float32 scalar.
    """
    s = jnp.asarray(s, dtype=jnp.float32)
    total = jnp.sum(s)
    nonzero_total = total > 0
    p = s / jnp.where(nonzero_total, total, 1.0)
    positive = p > 0
    plogp = jnp.where(positive, p * jnp.log(jnp.where(positive, p, 1.0)), 0.0)
    entropy = -jnp.sum(plogp)
    return jnp.where(nonzero_total, jnp.exp(entropy), 0.0)


def approximate_rank(s: jax.Array, threshold: float = 0.99) -> jax.Array:
    """Approximate rank: singular values needed to reach a share of their sum.

    Definition (following [Yang20] as used in [Dohare24] Methods, with the
    singular values themselves rather than their squares): the smallest k such
    that the k largest singular values sum to at least ``threshold`` times the
    sum of all singular values,

        arank = min { k : sum_{i<=k} s_(i) >= threshold * sum_i s_i },

    with s_(1) >= s_(2) >= ... the sorted singular values. An all-zero matrix
    has approximate rank 0.

    Args:
        s: (k,) nonnegative singular values, any order.
        threshold: share in (0, 1].

    Returns:
        int32 scalar.
    """
    s = jnp.asarray(s, dtype=jnp.float32)
    cumulative = jnp.cumsum(jnp.sort(s)[::-1])
    total = cumulative[-1]  # same summation order as the cumsum: no off-by-one from rounding
    below = jnp.sum(cumulative < threshold * total)
    rank = jnp.minimum(below + 1, s.shape[0])
    return jnp.where(total > 0, rank, 0).astype(jnp.int32)


def stable_rank(s: jax.Array) -> jax.Array:
    """Stable rank: squared Frobenius norm over squared spectral norm.

    Definition: srank = sum_k s_k^2 / max_k s_k^2 = ||Phi||_F^2 / ||Phi||_2^2
    ([RudelsonVershynin07]; a smooth lower bound on the rank, complementary
    to the effective rank). srank(I_n) = n, a rank-1
    matrix has srank 1. An all-zero matrix has stable rank 0.

    Args:
        s: (k,) nonnegative singular values, any order.

    Returns:
        float32 scalar.
    """
    s = jnp.asarray(s, dtype=jnp.float32)
    largest_sq = jnp.max(s) ** 2
    nonzero = largest_sq > 0
    return jnp.where(nonzero, jnp.sum(s**2) / jnp.where(nonzero, largest_sq, 1.0), 0.0)


def feature_rank(s: jax.Array, num_examples: int, delta: float = 0.01) -> jax.Array:
    """Feature rank: number of significant singular values of Phi / sqrt(n).

    Definition ([Kumar23], following [Lyle22]): for a feature
    matrix Phi of n examples, the number of singular values of Phi / sqrt(n)
    strictly greater than ``delta``,

        frank = #{ k : s_k / sqrt(n) > delta }.

    Args:
        s: (k,) nonnegative singular values of Phi, any order.
        num_examples: n, the number of rows of Phi.
        delta: threshold on the normalised singular values.

    Returns:
        int32 scalar.
    """
    s = jnp.asarray(s, dtype=jnp.float32)
    scaled = s / jnp.sqrt(jnp.asarray(num_examples, dtype=jnp.float32))
    return jnp.sum(scaled > delta).astype(jnp.int32)


# ---------------------------------------------------------------------------
# All correlates at once
# ---------------------------------------------------------------------------


def representation_metrics(
    hidden_layers: Sequence[jax.Array],
    params: Mapping[str, Any],
    activation: str,
    *,
    saturation_epsilon: float = 0.01,
    approximate_rank_threshold: float = 0.99,
    feature_rank_delta: float = 0.01,
    dead_max_active_share: float = 0.0,
) -> dict[str, jax.Array]:
    """All plasticity-loss correlates of one run on a probe set.

    Computes, per hidden layer, the dead-unit fraction and the effective,
    approximate, stable and feature ranks of the layer's representation (one
    SVD per layer), plus the network's average weight magnitude — the
    correlates of [Dohare24] Methods / [DohareThesis] ch. 4.2, measured at the
    start of each task.

    Args:
        hidden_layers: sequence of per-layer (num_examples, units_l)
            post-activation features, or (num_examples, ..., channels_l)
            convolutional maps (see the module docstring); layers may have
            different widths and ranks.
        params: flax params pytree of the network.
        activation: hidden activation name (see :func:`dead_fraction`).
        saturation_epsilon: see :func:`dead_fraction`.
        approximate_rank_threshold: see :func:`approximate_rank`.
        feature_rank_delta: see :func:`feature_rank`.
        dead_max_active_share: ``max_active_share`` of :func:`dead_fraction`.

    Returns:
        dict with float32 arrays of shape (num_layers,) under
        ``'dead_fraction'``, ``'effective_rank'``, ``'approximate_rank'``,
        ``'stable_rank'``, ``'feature_rank'``, and a float32 scalar under
        ``'weight_magnitude'``.
    """
    if len(hidden_layers) == 0:
        raise ValueError("representation_metrics: hidden_layers is empty.")
    per_layer: dict[str, list[jax.Array]] = {
        "dead_fraction": [],
        "effective_rank": [],
        "approximate_rank": [],
        "stable_rank": [],
        "feature_rank": [],
    }
    for features in hidden_layers:
        s = singular_values(features)
        per_layer["dead_fraction"].append(
            dead_fraction(features, activation, saturation_epsilon, dead_max_active_share))
        per_layer["effective_rank"].append(effective_rank(s))
        per_layer["approximate_rank"].append(approximate_rank(s, approximate_rank_threshold))
        per_layer["stable_rank"].append(stable_rank(s))
        per_layer["feature_rank"].append(feature_rank(s, features.shape[0], feature_rank_delta))
    metrics = {
        name: jnp.stack([jnp.asarray(v, dtype=jnp.float32) for v in values])
        for name, values in per_layer.items()
    }
    metrics["weight_magnitude"] = weight_magnitude(params)
    return metrics
