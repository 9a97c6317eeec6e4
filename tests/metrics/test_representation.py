"""Hand-checked tests for the plasticity-loss correlates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax import metrics

# The metrics as one compiled program each (as the engine runs them), not an eager op at a time; inputs are built in
# numpy (an eager jnp op would compile a program of its own). Names and static settings as the engine passes them.
approximate_rank, effective_rank, singular_values, stable_rank, unit_features, weight_magnitude = map(jax.jit, (
    metrics.approximate_rank, metrics.effective_rank, metrics.singular_values, metrics.stable_rank,
    metrics.unit_features, metrics.weight_magnitude))
dead_fraction = jax.jit(metrics.dead_fraction, static_argnames=('activation', 'saturation_epsilon'))
feature_rank = jax.jit(metrics.feature_rank, static_argnames=('num_examples', 'delta'))
representation_metrics = jax.jit(metrics.representation_metrics, static_argnames=('activation',))

RANK_KEYS = ("dead_fraction", "effective_rank", "approximate_rank", "stable_rank", "feature_rank")


def _rank_one(rows=6, cols=4):
    u = np.arange(1.0, rows + 1.0, dtype=np.float32)
    v = np.array([1.0, -2.0, 0.5, 3.0], np.float32)[:cols]
    return np.outer(u, v)


# ----------------------------------------------------------------- effective rank


@pytest.mark.parametrize("n", [1, 3, 10])
def test_effective_rank_identity_is_n(n):
    assert float(effective_rank(singular_values(np.eye(n)))) == pytest.approx(n, rel=1e-5)


def test_effective_rank_rank_one_is_one():
    assert float(effective_rank(singular_values(_rank_one()))) == pytest.approx(1.0, abs=1e-4)


def test_effective_rank_diagonal_matches_hand_entropy():
    # s = (3, 2, 1): p = (1/2, 1/3, 1/6).
    p = (1 / 2, 1 / 3, 1 / 6)
    expected = math.exp(-sum(q * math.log(q) for q in p))  # ~2.7495
    got = effective_rank(singular_values(np.diag(np.array([1.0, 3.0, 2.0]))))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert 2.7 < expected < 2.8


def test_effective_rank_zero_singular_values_contribute_nothing():
    # 0 log 0 = 0: padding with zeros does not change the effective rank.
    assert float(effective_rank(np.array([2.0, 2.0, 0.0, 0.0]))) == pytest.approx(2.0, rel=1e-6)


def test_effective_rank_all_zero_is_zero_without_nan():
    value = effective_rank(singular_values(np.zeros((5, 3))))
    assert float(value) == 0.0
    grad = jax.grad(effective_rank)(np.zeros(3))
    assert not np.any(np.isnan(np.asarray(grad)))


# --------------------------------------------------------------- approximate rank


def test_approximate_rank_dominant_value_below_threshold():
    # 10 / 11 = 0.909 < 0.99 -> need both values.
    assert int(approximate_rank(np.array([10.0, 1.0]))) == 2
    assert int(approximate_rank(np.array([10.0, 1.0]), threshold=0.9)) == 1


def test_approximate_rank_dominant_value_above_threshold():
    # 100 / 101 = 0.9901 >= 0.99 -> one value suffices.
    assert int(approximate_rank(np.array([100.0, 1.0]))) == 1
    # 10 / 10.1 = 0.9901 >= 0.99, order of the input does not matter.
    assert int(approximate_rank(np.array([0.05, 10.0, 0.05]))) == 1


def test_approximate_rank_diag_many_small():
    # diag(10, 1, 1, 1, 1): sums 10, 11, 12, 13, 14 of 14; 0.99 * 14 = 13.86.
    s = singular_values(np.diag(np.array([10.0, 1.0, 1.0, 1.0, 1.0])))
    assert int(approximate_rank(s)) == 5
    assert int(approximate_rank(s, threshold=0.9)) == 4  # 12.6 <= 13
    assert int(approximate_rank(s, threshold=0.5)) == 1  # 7 <= 10


def test_approximate_rank_identity_and_zero():
    assert int(approximate_rank(singular_values(np.eye(7)))) == 7
    assert int(approximate_rank(np.zeros(4))) == 0


# ------------------------------------------------------------------- stable rank


def test_stable_rank_cases():
    assert float(stable_rank(singular_values(np.eye(6)))) == pytest.approx(6.0, rel=1e-5)
    assert float(stable_rank(singular_values(_rank_one()))) == pytest.approx(1.0, abs=1e-4)
    # (4 + 1) / 4 = 1.25.
    assert float(stable_rank(singular_values(np.diag(np.array([2.0, 1.0]))))) == pytest.approx(1.25)
    assert float(stable_rank(np.zeros(3))) == 0.0


# ------------------------------------------------------------------ feature rank


def test_feature_rank_threshold():
    # n = 4: s / 2 = (0.5, 0.25, 0.025, 0.0005).
    s = np.array([0.05, 1.0, 0.001, 0.5])
    assert int(feature_rank(s, num_examples=4)) == 3
    assert int(feature_rank(s, num_examples=4, delta=0.1)) == 2
    assert int(feature_rank(s, num_examples=4, delta=0.3)) == 1
    assert int(feature_rank(s, num_examples=4, delta=0.5)) == 0  # strictly greater


def test_feature_rank_scales_with_num_examples():
    # 0.2 * I_100: every s = 0.2, s / 10 = 0.02 > 0.01.
    assert int(feature_rank(singular_values(0.2 * np.eye(100)), 100)) == 100
    # 0.05 * I_100: s / 10 = 0.005 <= 0.01.
    assert int(feature_rank(singular_values(0.05 * np.eye(100)), 100)) == 0


# ----------------------------------------------------------------- dead fraction


def test_dead_fraction_relu():
    features = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.5, 0.0, 0.7],
        ]
    )
    # Cols 0 and 2 are zero everywhere; col 3 is zero on all but one example: alive.
    assert float(dead_fraction(features, "relu")) == pytest.approx(2 / 4)
    features[1, 2] = 0.3
    assert float(dead_fraction(features, "relu")) == pytest.approx(1 / 4)


def test_dead_fraction_relu_tiny_positive_is_alive():
    features = np.array([[0.0, 1e-6], [0.0, 0.0]])
    assert float(dead_fraction(features, "relu")) == pytest.approx(0.5)


def test_dead_fraction_tanh_saturation_within_eps():
    features = np.array(
        [
            [0.995, -0.999, 0.98, 0.999],
            [0.999, -0.995, 0.985, -0.999],
        ]
    )
    # Col 0 stuck at +1, col 1 stuck at -1, col 2 is 0.02 away, col 3 switches sign.
    assert float(dead_fraction(features, "tanh")) == pytest.approx(2 / 4)
    # A looser epsilon makes col 2 dead; col 3 stays alive.
    assert float(dead_fraction(features, "tanh", saturation_epsilon=0.05)) == pytest.approx(3 / 4)


def test_dead_fraction_sigmoid_mixed_saturation_is_alive():
    features = np.array(
        [
            [0.001, 0.999, 0.001],
            [0.002, 0.998, 0.999],
            [0.000, 1.000, 0.000],
        ]
    )
    # Col 0 stuck at 0, col 1 stuck at 1, col 2 at 0 on some examples and 1 on others.
    assert float(dead_fraction(features, "sigmoid")) == pytest.approx(2 / 3)


def test_dead_fraction_other_activations():
    elu = np.array([[-0.995, -0.5, 0.0], [-0.999, -0.999, -0.995]])
    assert float(dead_fraction(elu, "elu")) == pytest.approx(1 / 3)
    swish = np.array([[-0.001, -0.2, 0.0], [-0.005, -0.001, 0.0]])
    assert float(dead_fraction(swish, "swish")) == pytest.approx(2 / 3)
    leaky = np.array([[-0.01, -0.01, 0.0], [-0.02, 0.5, -0.01]])
    assert float(dead_fraction(leaky, "leaky_relu")) == pytest.approx(1 / 3)
    assert float(dead_fraction(np.zeros((3, 4)), "identity")) == 0.0


def test_a_dead_unit_may_be_active_on_a_share_of_the_examples_when_asked():
    """`max_active_share` (the papers' PPO figure: active on at most 1% of the steps): 200 examples, unit 0 active
    on 2 (1%), unit 1 on 3 (1.5%), unit 2 never, unit 3 always."""
    features = np.zeros((200, 4), np.float32)
    features[:2, 0] = 1.0
    features[:3, 1] = 1.0
    features[:, 3] = 0.5
    assert float(metrics.dead_fraction(features, 'relu')) == pytest.approx(1 / 4)  # only unit 2
    assert float(metrics.dead_fraction(features, 'relu', max_active_share=0.01)) == pytest.approx(2 / 4)  # 0 and 2
    tanh = np.full((200, 2), -1.0, np.float32)
    tanh[:2, 0] = 0.0  # off its saturation value on 1% of the examples
    tanh[:, 1] = np.linspace(-0.5, 0.5, 200)
    assert float(metrics.dead_fraction(tanh, 'tanh', max_active_share=0.01)) == pytest.approx(1 / 2)
    assert float(metrics.dead_fraction(tanh, 'tanh')) == 0.0


def test_dead_fraction_unknown_activation_raises():
    with pytest.raises(ValueError, match="relu.*tanh.*sigmoid"):
        dead_fraction(np.zeros((2, 2)), "gelu")


# -------------------------------------------------------------- weight magnitude


def test_weight_magnitude_ignores_biases():
    params = {
        "Dense_0": {"kernel": np.array([[1.0, -2.0], [3.0, -4.0]]), "bias": np.array([100.0, -100.0])},
        "Dense_1": {"kernel": np.array([[-5.0], [0.0]]), "bias": np.array([50.0])},
    }
    # (1 + 2 + 3 + 4 + 5 + 0) / 6 = 2.5; biases would change the value.
    value = weight_magnitude(params)
    assert value.dtype == jnp.float32
    assert float(value) == pytest.approx(2.5)
    assert float(jax.jit(weight_magnitude)({"params": params})) == pytest.approx(2.5)


def test_weight_magnitude_without_kernels_raises():
    with pytest.raises(ValueError, match="kernel"):
        weight_magnitude({"Dense_0": {"bias": np.ones(3)}})


# -------------------------------------------------------- representation_metrics


def _params():
    return {
        "Dense_0": {"kernel": np.full((3, 5), -0.5), "bias": np.ones(5)},
        "Dense_1": {"kernel": np.full((5, 2), 2.0), "bias": np.ones(2)},
    }


def test_representation_metrics_shapes_and_values():
    layer_0 = np.concatenate([np.eye(8)[:, :4], np.zeros((8, 1))], axis=1)  # 5 units, 1 dead
    layer_1 = np.zeros((8, 2))  # all dead, all-zero
    metrics = representation_metrics((layer_0, layer_1), _params(), "relu")
    assert set(metrics) == set(RANK_KEYS) | {"weight_magnitude"}
    for key in RANK_KEYS:
        assert metrics[key].shape == (2,)
        assert metrics[key].dtype == jnp.float32
        assert not np.any(np.isnan(np.asarray(metrics[key])))
    assert metrics["weight_magnitude"].shape == ()
    np.testing.assert_allclose(metrics["dead_fraction"], [0.2, 1.0])
    np.testing.assert_allclose(metrics["effective_rank"], [4.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(metrics["approximate_rank"], [4.0, 0.0])
    np.testing.assert_allclose(metrics["stable_rank"], [4.0, 0.0], rtol=1e-5)
    # s = 1, s / sqrt(8) = 0.354 > 0.01.
    np.testing.assert_allclose(metrics["feature_rank"], [4.0, 0.0])
    # (15 * 0.5 + 10 * 2) / 25 = 1.1.
    assert float(metrics["weight_magnitude"]) == pytest.approx(1.1)


def test_representation_metrics_jit_vmap_matches_python_loop():
    num_seeds, num_examples = 3, 16
    rng = np.random.default_rng(0)
    layer_0 = np.tanh(3.0 * rng.standard_normal((num_seeds, num_examples, 6), np.float32))
    layer_0[0, :, 0] = 1.0  # one saturated unit in seed 0
    layer_1 = np.tanh(rng.standard_normal((num_seeds, num_examples, 3), np.float32))
    layer_1[1] = 0.0  # all-zero layer in seed 1
    params = jax.tree_util.tree_map(
        lambda x: np.stack([x * (i + 1) for i in range(num_seeds)]), _params()
    )

    def metrics_fn(hidden, p):
        return metrics.representation_metrics(hidden, p, "tanh", approximate_rank_threshold=0.9)

    batched = jax.device_get(jax.jit(jax.vmap(metrics_fn))((layer_0, layer_1), params))  # numpy, for indexing
    alone = jax.jit(metrics_fn)
    for seed in range(num_seeds):
        params_seed = jax.tree_util.tree_map(lambda x: x[seed], params)
        single = alone((layer_0[seed], layer_1[seed]), params_seed)
        for key, value in single.items():
            np.testing.assert_allclose(batched[key][seed], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert float(batched["dead_fraction"][0, 0]) == pytest.approx(1 / 6)
    assert float(batched["effective_rank"][1, 1]) == 0.0
    assert not any(np.any(np.isnan(np.asarray(v))) for v in batched.values())


def test_representation_metrics_empty_raises():
    with pytest.raises(ValueError):
        representation_metrics((), _params(), "relu")


# ------------------------------------------------------ convolutional hidden layers


def _conv_layer():
    """(examples, 4, 4, channels) ReLU maps: channel 0 dead, channel 1 alive at a single position of one example."""
    maps = np.maximum(np.random.default_rng(3).standard_normal((6, 4, 4, 5), np.float32), 0.0)
    maps[..., :2] = 0.0
    maps[2, 3, 1, 1] = 0.5
    return maps


def test_unit_features_are_spatial_means_of_channels():
    maps = _conv_layer()
    np.testing.assert_allclose(unit_features(maps), maps.mean(axis=(1, 2)), rtol=1e-6)
    dense = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(unit_features(dense), dense)


def test_metrics_of_a_conv_layer_are_those_of_its_spatial_mean_features():
    maps, dense = _conv_layer(), np.maximum(np.random.default_rng(4).standard_normal((6, 3), np.float32), 0.0)
    metrics = representation_metrics((maps, dense), _params(), "relu")
    by_hand = representation_metrics((maps.mean(axis=(1, 2)), dense), _params(), "relu")
    for key in RANK_KEYS:
        assert metrics[key].shape == (2,)
        np.testing.assert_allclose(metrics[key], by_hand[key], rtol=1e-5, err_msg=key)
    assert float(metrics["dead_fraction"][0]) == pytest.approx(1 / 5)  # channel 0; channel 1 is alive
    assert 1.0 < float(metrics["effective_rank"][0]) < 4.0


def test_dead_conv_channel_is_dead_at_every_position():
    # tanh: channel 0 at 0.999 everywhere (dead); channel 1 too except at one position, 0.9. Its spatial mean,
    # (15 * 0.999 + 0.9) / 16 = 0.993, is within 0.01 of 1, but the channel is not stuck there: alive.
    maps = np.full((2, 4, 4, 2), 0.999)
    maps[1, 2, 0, 1] = 0.9
    assert float(dead_fraction(maps, "tanh")) == pytest.approx(1 / 2)
    assert float(dead_fraction(unit_features(maps), "tanh")) == pytest.approx(1.0)
    # leaky_relu: negative everywhere but one position of one example: alive.
    leaky = np.full((2, 3, 3, 2), -0.01)
    leaky[0, 1, 1, 0] = 0.2
    assert float(dead_fraction(leaky, "leaky_relu")) == pytest.approx(1 / 2)


def test_weight_magnitude_counts_conv_kernels_and_not_normalisation_parameters():
    params = {
        "conv_0": {"kernel": np.full((3, 3, 2, 4), -1.0), "bias": np.full((4,), 100.0)},  # 72 weights of 1
        "norm_0": {"scale": np.full((4,), 10.0), "bias": np.full((4,), -10.0)},
        "output": {"kernel": np.full((4, 2), 4.0), "bias": np.zeros(2)},  # 8 weights of 4
    }
    assert float(weight_magnitude(params)) == pytest.approx((72 * 1.0 + 8 * 4.0) / 80)
