"""Models: flax linen modules whose `__call__` returns `(outputs, hidden_activations_per_layer)`."""

from plasticity_jax.models.mlp import ACTIVATIONS, KAIMING_GAIN, MLP, kaiming_init

import ml_collections


def make_model(config: ml_collections.ConfigDict, num_outputs: int) -> MLP:
    """Builds the model named by `config.name` (`config` is the run config's `model` section)."""
    if config.name != 'mlp':
        raise ValueError(f"unknown model.name {config.name!r}; valid: ['mlp']")
    return MLP(width=config.width, depth=config.depth, num_outputs=num_outputs, activation=config.activation,
               init_distribution=config.init_distribution)


__all__ = ['ACTIVATIONS', 'KAIMING_GAIN', 'MLP', 'kaiming_init', 'make_model']
