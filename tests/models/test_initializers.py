import jax
import numpy as np
import pytest

from plasticity_jax.models import FanInScaling, kaiming_init


@pytest.mark.parametrize('distribution', ['normal', 'uniform'])
def test_variance_is_scale_over_fan_in_for_dense_and_conv_kernels(distribution):
    init = FanInScaling(2.0, distribution)
    dense = np.asarray(init(jax.random.PRNGKey(0), (50, 2000)))
    conv = np.asarray(init(jax.random.PRNGKey(1), (3, 3, 8, 2000)))  # fan_in = 3 * 3 * 8 (receptive field)
    assert dense.std() == pytest.approx(np.sqrt(2.0 / 50), rel=0.01)
    assert conv.std() == pytest.approx(np.sqrt(2.0 / 72), rel=0.01)
    if distribution == 'uniform':
        assert np.abs(dense).max() <= np.sqrt(3 * 2.0 / 50)


def test_a_column_drawn_alone_has_the_scale_of_a_column_of_a_wide_kernel():
    """What `learners.reinit` relies on: the scale depends on fan_in, not on the number of columns."""
    init = kaiming_init(np.sqrt(2.0), 'normal')
    columns = np.asarray(jax.jit(jax.vmap(lambda k: init(k, (100, 1))[:, 0]))(jax.random.split(jax.random.PRNGKey(0),
                                                                                               300)))  # one program
    wide = np.asarray(init(jax.random.PRNGKey(1), (100, 300)))
    assert columns.std() == pytest.approx(wide.std(), rel=0.03)


def test_is_hashable_as_flax_fields_must_be_and_rejects_unknown_distributions():
    assert hash(kaiming_init(1.0, 'normal')) == hash(FanInScaling(1.0, 'normal'))
    with pytest.raises(ValueError, match='init_distribution must be one of'):
        FanInScaling(1.0, 'orthogonal')
