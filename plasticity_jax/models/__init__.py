"""Models: flax linen modules whose `__call__` returns `(outputs, hidden_activations_per_layer)`."""

from plasticity_jax.models.mlp import ACTIVATIONS, KAIMING_GAIN, MLP, NORMALIZATIONS, kaiming_init
from plasticity_jax.models.normalization import OnlineNorm, online_norm_forward

import ml_collections


def make_model(config: ml_collections.ConfigDict, num_outputs: int) -> MLP:
    """Builds the model named by `config.name` (`config` is the run config's `model` section).

    The dropout and normalization fields default to off when a config lacks them (configs written before they
    existed).
    """
    if config.name != 'mlp':
        raise ValueError(f"unknown model.name {config.name!r}; valid: ['mlp']")
    optional = {field: config[field] for field in ('dropout_rate', 'normalization', 'online_norm_alpha_f')
                if field in config}
    return MLP(width=config.width, depth=config.depth, num_outputs=num_outputs, activation=config.activation,
               init_distribution=config.init_distribution, **optional)


__all__ = ['ACTIVATIONS', 'KAIMING_GAIN', 'MLP', 'NORMALIZATIONS', 'OnlineNorm', 'kaiming_init', 'make_model',
           'online_norm_forward']
