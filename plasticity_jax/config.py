"""Pieces shared by the experiment configs in `configs/`: the common fields and named variants.

A run is fully described by one `ml_collections.ConfigDict`. Each file `configs/<experiment>.py` defines
`get_config(arg)`, built from `base_config()` and a dict of named variants; `arg` selects variants, several joined
by commas: `configs/slowly_changing_regression.py:tanh,adam`. `load(spec, overrides)` gives the config of a
`--config=` spec from Python (notebooks, scripts, tests), as the command line would.
"""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

# configs/ of a checkout: `load` falls back to it for a relative spec not found from the working directory.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

Variant = Callable[[ml_collections.ConfigDict], None]


def base_config() -> ml_collections.ConfigDict:
    """Fields every experiment has; the experiment file fills `problem`, `model` and `learner`."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # Seed s of the run uses key fold_in(PRNGKey(seed), s).
    config.num_seeds = 4  # Independent runs, vmapped into one compiled program.
    config.num_tasks = 100
    config.tasks_per_chunk = 10  # Tasks per compiled call; metrics and a checkpoint are written after each.
    # Steps per iteration of the compiled step loop (`lax.scan(..., unroll=...)`): fewer loop iterations, each doing
    # several steps; the parameters do not change (the metrics' running sums may, in the last bit). Pays where a
    # loop iteration has a fixed cost (GPUs, small networks).
    config.step_unroll = 1
    # The training step's forward and backward pass in 'float32' or 'bfloat16' (mixed precision: bfloat16 copies of
    # float32 parameters, float32 loss, gradients and updates; evaluation and metrics stay float32). bfloat16 pays on
    # TPUs and GPUs; on CPUs it is slower. Its effect on Online Permuted MNIST: docs/performance.md.
    config.compute_dtype = 'float32'
    config.keep_checkpoints = 3  # The latest checkpoints kept for resuming ...
    config.keep_checkpoints_every = 0  # ... plus, if > 0, every checkpoint after a multiple of this many tasks.
    config.data_dir = ''  # Folder with offline data (e.g. the MNIST IDX files); '' = $PLASTICITY_JAX_DATA_DIR.
    # MNIST: 'auto' (the IDX files of the data dir if one is set, else 'download' them into the cache), 'idx',
    # 'download' or 'tfds' (needs the tfds extra). See data.mnist.
    config.data_source = 'auto'
    # At every task's start: 'none', 'head' (zero the output layer) or 'network' (fresh network; engine.RESETS).
    config.reset_at_task_start = 'none'
    # Swept fields, mirroring the config: e.g. config.sweep.learner.step_size = (0.01, 0.003). See `sweeps`.
    config.sweep = ml_collections.ConfigDict()

    config.metrics = ml_collections.ConfigDict()
    config.metrics.probe_size = 2000  # Examples of the new task on which the correlates are measured.
    config.metrics.saturation_epsilon = 0.01  # Dead-unit tolerance for saturating activations.
    # A dead unit is off its saturation value on at most this share of the probe examples (0: on none, the papers'
    # supervised rule; the RL configs use 0.01, the papers' PPO figure's rule: `metrics.dead_fraction`).
    config.metrics.dead_max_active_share = 0.0
    config.metrics.approximate_rank_threshold = 0.99
    config.metrics.feature_rank_delta = 0.01  # Kumar et al. (2023).

    # In-run Hessian spectra (plasticity_jax.curvature), at the start and end of every `every_tasks`-th task.
    config.curvature = ml_collections.ConfigDict()
    config.curvature.every_tasks = 0  # 0: off.
    config.curvature.probe_size = 1000  # Fixed probe set of the task (its examples at step 0, as one batch).
    config.curvature.chunk_size = 500  # Examples per forward pass of a curvature product (bounds memory).
    config.curvature.kind = 'hessian'  # 'hessian', 'ggn' or 'fisher'.
    config.curvature.order = 64  # Lanczos steps per draw.
    config.curvature.draws = 4  # Random probe vectors of stochastic Lanczos quadrature.
    config.curvature.epsilons = tuple(10.0**e for e in range(-6, 1))  # The epsilon-rank sweep.
    config.curvature.grid = (-5.0, 45.0, 501)  # Density grid (low, high, points).
    config.curvature.sigma = 0.1  # Gaussian smoothing of the density.
    # > 0: also the exact GGN spectrum (curvature.gauss_newton) of the first this-many probe examples: an
    # (N C) x (N C) eigendecomposition per run and measurement (docs/curvature.md).
    config.curvature.exact_ggn_probe_size = 0

    config.learner = ml_collections.ConfigDict()
    config.learner.name = 'backprop'
    config.learner.optimizer = 'sgd'
    config.learner.step_size = 0.003
    config.learner.momentum = 0.0
    config.learner.beta1 = 0.9
    config.learner.beta2 = 0.999
    config.learner.eps = 1e-8
    # Step-size decay within every task (learners.schedule): x step_size_decay at each of these fractions of a task.
    config.learner.step_size_milestones = ()
    config.learner.step_size_decay = 1.0
    return config


def model_config(*, width: int, depth: int, activation: str = 'relu',
                 init_distribution: str = 'normal') -> ml_collections.ConfigDict:
    """The `model` section: an MLP (`plasticity_jax.models.MLP`) with every field the experiments share.

    Dropout and normalization are off here; the variants of `model_variants()` turn them on.
    """
    model = ml_collections.ConfigDict()
    model.name = 'mlp'
    model.width = width
    model.depth = depth
    model.activation = activation
    model.init_distribution = init_distribution
    model.dropout_rate = 0.0  # p: probability of zeroing each hidden unit in training (0 = no dropout).
    model.normalization = 'none'  # 'none', 'layernorm' or 'online_norm', between each hidden dense and activation.
    # Online Normalization's forward and backward decays (Chiley et al., 2019; plasticity_jax/models/normalization.py;
    # alpha_b = 1 switches its backward control process off).
    model.online_norm_alpha_f = ONLINE_NORM_ALPHA_F
    model.online_norm_alpha_b = ONLINE_NORM_ALPHA_B
    return model


def dataset_tasks_problem(*, dataset: str, schedule: str, epochs: int, batch_size: int, classes_per_increment: int = 5,
                          train_per_class: int = 0, test_per_class: int = 0, num_classes: int = 0,
                          augment: bool = False) -> ml_collections.ConfigDict:
    """The `problem` section of a problem made of subsets of a labelled dataset (`problems.dataset_tasks`)."""
    return ml_collections.ConfigDict({
        'name': 'dataset_tasks',
        'dataset': dataset,  # 'mnist', 'cifar10', 'cifar100' (TFDS or MNIST's IDX files) or 'imagenet32' (a folder)
        'schedule': schedule,  # 'all_pairs', 'consecutive_pairs', 'class_increments' or 'warm_start'
        'epochs': epochs,  # passes over the task's training images
        'batch_size': batch_size,
        'classes_per_increment': classes_per_increment,  # 'class_increments' only
        'train_per_class': train_per_class,  # training images per class (0: all)
        'test_per_class': test_per_class,  # 'imagenet32' only: test images per class after the training ones
        'num_classes': num_classes,  # 'imagenet32' only: use classes 0..num_classes-1 (0: all in the folder)
        'augment': augment,  # flip / crop / rotate training images on the device (problems.augment)
    })


def image_model_config(name: str, **fields) -> ml_collections.ConfigDict:
    """The `model` section of a convolutional model ('convnet' or 'resnet18'); ReLU networks (`activation` is what
    the dead-unit metric uses); `conv_lowering` 'auto': convolutions as patches x kernel on a CPU, XLA's elsewhere
    (`models.conv`); 'resnet18' also `blocks_per_stage` (2, ResNet-18's; 1 gives the 10-layer network of the same
    kind)."""
    defaults = {'name': name, 'activation': 'relu', 'conv_lowering': 'auto'}
    if name == 'resnet18':
        from plasticity_jax.models.resnet import ResNet18
        defaults['blocks_per_stage'] = ResNet18.blocks_per_stage
    return ml_collections.ConfigDict({**defaults, **fields})


# Dohare's dissertation Sec. 4.3 (Fig. 4.8) shows Dropout with p = 0.1 on Online Permuted MNIST ("to show how the
# method performs"; p = 0.01 was best there, almost identical to backprop, and larger p lost plasticity faster).
DROPOUT_RATE = 0.1
# The dissertation names Online Normalization's two decay hyperparameters but the values it used are only in the
# legend of its Fig. 4.10 (not in the text); alpha_f = 0.999 and alpha_b = 0.99 are the defaults of Chiley et al.'s
# reference code.
ONLINE_NORM_ALPHA_F = 0.999
ONLINE_NORM_ALPHA_B = 0.99


def model_variants(dropout_rate: float = DROPOUT_RATE,
                   online_norm_alpha_f: float = ONLINE_NORM_ALPHA_F) -> dict[str, Variant]:
    """Variants `dropout` (p = `dropout_rate`), `layernorm` and `online_norm` of the `model_config()` MLP."""

    def online_norm(config):
        config.model.normalization = 'online_norm'
        config.model.online_norm_alpha_f = online_norm_alpha_f

    return {'dropout': lambda c: setattr(c.model, 'dropout_rate', dropout_rate),
            'layernorm': lambda c: setattr(c.model, 'normalization', 'layernorm'),
            'online_norm': online_norm}


def step_size_variants(step_sizes) -> dict[str, Variant]:
    """Variants `lr<step size>`, e.g. `lr0.01`."""
    return {f'lr{step_size}': (lambda c, s=step_size: setattr(c.learner, 'step_size', s)) for step_size in step_sizes}


def sweep_step_sizes_variant(step_sizes) -> dict[str, Variant]:
    """`sweep_lr`: the paper's step sizes as one sweep (one compiled program, points x seeds)."""
    def apply(config):
        config.sweep.learner = ml_collections.ConfigDict({'step_size': tuple(step_sizes)})
    return {'sweep_lr': apply}


def adam_variant(config: ml_collections.ConfigDict) -> None:
    config.learner.optimizer = 'adam'


def learner_variants() -> dict[str, Variant]:
    """One variant per registered learner (`cbp`, `l2`, ...): sets `learner.name` and adds its default fields."""
    from plasticity_jax.learners import LEARNERS

    def select(config, name):
        config.learner.name = name
        for field, value in LEARNERS[name].defaults.items():
            config.learner[field] = value

    return {name: (lambda c, n=name: select(c, n)) for name in LEARNERS}


def learner_with(name: str, fields: Mapping[str, Any]) -> Variant:
    """The variant of learner `name` (`learner_variants`) with some of its fields set to an experiment's values."""
    select = learner_variants()[name]

    def variant(config):
        select(config)
        config.learner.update(fields)

    return variant


def apply_variants(config: ml_collections.ConfigDict, arg: str | None,
                   variants: Mapping[str, Variant]) -> ml_collections.ConfigDict:
    """Applies the comma-separated variants named in `arg`, then locks the config against new fields."""
    for name in filter(None, (arg or '').split(',')):
        if name not in variants:
            raise ValueError(f'unknown config variant {name!r}; valid: {sorted(variants)}')
        variants[name](config)
    config.lock()
    return config


def load(spec: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """The config of `--config=spec --config.<field>=<value> ...`: `get_config(variants)` of the file, then overrides.

    Args:
      spec: `path/to/config.py[:variant1,variant2]`, e.g. `'configs/permuted_mnist.py:lr0.01,cbp'`. A relative path
        that does not exist from the working directory is looked up in the checkout's root (so notebooks can say
        `configs/x.py` from `notebooks/`).
      overrides: dotted field -> value, e.g. `{'num_seeds': 2, 'model.width': 100}`.

    Returns:
      The config, locked as the command line's is: existing fields can be set, new ones cannot (`config.unlock()`).

    Raises:
      FileNotFoundError: the config file does not exist (naming the paths tried).
      KeyError: an override names a field the config lacks (listing the valid ones).
    """
    path, _, variants = spec.partition(':')
    candidates = [pathlib.Path(path).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(REPO_ROOT / path)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f'config file {path!r} not found; tried {", ".join(map(str, candidates))}.')
    module_spec = importlib.util.spec_from_file_location(f'plasticity_jax_config_{found.stem}', found)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(variants or None)
    for name, value in (overrides or {}).items():
        parent, leaf = field_parent(config, name)
        parent[leaf] = value
    return config


def field_parent(config: ml_collections.ConfigDict, name: str) -> tuple[ml_collections.ConfigDict, str]:
    """The ConfigDict holding the dotted field `name` (e.g. 'model.width'), and the field's last part.

    Raises:
      KeyError: the config has no such field; the message names where the path breaks and the valid fields there.
    """
    *parents, leaf = name.split('.')
    node = config
    for depth, field in enumerate([*parents, leaf]):
        if not isinstance(node, ml_collections.ConfigDict) or field not in node:
            where = '.'.join(['config', *parents[:depth]])
            valid = ', '.join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else \
                '(none: it is a value)'
            raise KeyError(f"unknown config field '{name}': {where} has no field {field!r}. Valid: {valid}")
        if depth < len(parents):
            node = node[field]
    return node, leaf
