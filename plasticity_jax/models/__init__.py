"""Models: flax linen modules whose `__call__` returns `(outputs, hidden_activations_per_layer)`."""

import flax.linen as nn
import ml_collections

from plasticity_jax.models.actor_critic import ActorCritic
from plasticity_jax.models.conv import CONV_LOWERINGS, PatchConv
from plasticity_jax.models.convnet import ConvNet
from plasticity_jax.models.initializers import FanInScaling, kaiming_init
from plasticity_jax.models.mlp import ACTIVATIONS, KAIMING_GAIN, MLP, NORMALIZATIONS
from plasticity_jax.models.normalization import GRADIENT_STATE_COLLECTIONS, OnlineNorm, online_norm_forward
from plasticity_jax.models.resnet import ResNet18
from plasticity_jax.models.units import Path, UnitLayer, sequential_unit_layers

MODEL_NAMES = ('convnet', 'mlp', 'resnet18')


def make_model(config: ml_collections.ConfigDict, num_outputs: int) -> nn.Module:
    """Builds the model named by `config.name` (`config` is the run config's `model` section).

    'mlp' reads width, depth, activation and init_distribution; its dropout and normalization fields default to
    off when a config lacks them (configs written before they existed). 'convnet' (Continual ImageNet's network)
    reads `base_width` (default 32, the paper's) and `conv_lowering` (default 'auto', `models.conv`) if present.
    'resnet18' reads `base_width` (default 64), `conv_lowering` and `blocks_per_stage` (default 2) if present.
    """
    lowering = config.get('conv_lowering', 'auto')
    if config.name == 'convnet':
        return ConvNet(num_outputs=num_outputs, conv_lowering=lowering,
                       base_width=config.get('base_width', ConvNet.base_width))
    if config.name == 'resnet18':
        return ResNet18(num_outputs=num_outputs, base_width=config.get('base_width', ResNet18.base_width),
                        conv_lowering=lowering,
                        blocks_per_stage=config.get('blocks_per_stage', ResNet18.blocks_per_stage))
    if config.name != 'mlp':
        raise ValueError(f'unknown model.name {config.name!r}; valid: {list(MODEL_NAMES)}')
    optional = {field: config[field] for field in ('dropout_rate', 'normalization', 'online_norm_alpha_f',
                                                   'online_norm_alpha_b') if field in config}
    return MLP(width=config.width, depth=config.depth, num_outputs=num_outputs, activation=config.activation,
               init_distribution=config.init_distribution, **optional)


__all__ = ['ACTIVATIONS', 'ActorCritic', 'CONV_LOWERINGS', 'FanInScaling', 'GRADIENT_STATE_COLLECTIONS',
           'KAIMING_GAIN', 'MLP', 'MODEL_NAMES', 'NORMALIZATIONS', 'ConvNet', 'OnlineNorm', 'Path', 'PatchConv',
           'ResNet18', 'UnitLayer', 'kaiming_init', 'make_model', 'online_norm_forward', 'sequential_unit_layers']
