"""The experiments of configs/ on small data: the image problems run end to end on generated data in the formats of
their real datasets (no ImageNet or CIFAR-100 copy is available offline), the MNIST ones on the real files."""

import re

import jax
import numpy as np
import pytest

from plasticity_jax import data as datasets
from plasticity_jax import engine, learners, sweeps, validation
from plasticity_jax.results import load_run
from tests.conftest import REPO_ROOT, load_config

CONFIGS = sorted(path.name for path in (REPO_ROOT / 'configs').glob('*.py'))


def variant_names(name):
    """The variants of configs/`name` (its `get_config` lists them when asked for an unknown one)."""
    with pytest.raises(ValueError, match='unknown config variant') as error:
        load_config(name, '_no_such_variant_')
    return re.findall(r"'([^']+)'", str(error.value).split('valid:')[1])


@pytest.mark.parametrize('name', CONFIGS)
def test_every_variant_of_every_config_is_valid_and_builds_its_learner(name):
    """Each variant as `--config=configs/<name>:<variant>` gives it passes validation and builds its learner (an RL
    run's without an auxiliary batch, which RL runs do not draw). Variants that could not run were found this way:
    UPGD on an experiment's SGD with momentum or Adam, L2-ER's default rank batch in PPO."""
    names = variant_names(name)
    assert names
    for variant in [None, *names]:
        config = load_config(name, variant)
        validation.check_config(config)
        learner = learners.make_learner(config.learner, init_params=None)
        assert not ('rl' in config and learner.auxiliary_batch_size), variant


# Small sizes for tracing a config's program: each field set where the config has it.
TRACE_SIZES = {'num_seeds': 2, 'num_tasks': 1, 'tasks_per_chunk': 1, 'metrics.probe_size': 16,
               'problem.examples_per_task': 64, 'problem.train_per_class': 6, 'problem.test_per_class': 2,
               'problem.validation_per_class': 2, 'problem.epochs': 1, 'model.base_width': 2,
               'model.blocks_per_stage': 1, 'curvature.probe_size': 16, 'curvature.chunk_size': 16,
               'rl.updates_per_task': 1}


@pytest.mark.slow  # minutes: every variant's program traced, the MJX ones included
@pytest.mark.parametrize('name', CONFIGS)
def test_every_variant_of_every_config_traces(name, tmp_path, monkeypatch, shared_data_dir):
    """Each variant's program at small sizes (the RL ones combined with `smoke`), traced (`jax.eval_shape` of the
    runs' init and a task): the errors that only tracing finds (L2-ER's summed rank term on a ConvNet's unequal
    widths, the step-size schedule with continual backprop's optimizer-state reset) fail here."""
    monkeypatch.setattr(datasets, 'load_tfds_images', lambda dataset, data_dir=None: _fake_cifar100('cifar100'))
    folder = _class_folder(tmp_path)
    for variant in [None, *variant_names(name)]:
        if 'rl' in load_config(name):
            variant = ','.join(filter(None, ['smoke', variant if variant != 'smoke' else None]))
        config = load_config(name, variant)
        config.unlock()
        sizes = {field: value for field, value in TRACE_SIZES.items()
                 if validation.lookup(config, field) is not validation.MISSING}
        if validation.lookup(config, 'problem.batch_size') is not validation.MISSING:
            sizes['problem.batch_size'] = 2 if config.problem.batch_size > 1 else 1
        config = sweeps.with_values(config, sizes)
        if 'data_dir' in config:
            config.data_dir = str(folder) if name == 'continual_imagenet.py' else shared_data_dir
        validation.check_config(config)
        train, runs = engine.make_train(config), sweeps.runs(config)
        state = jax.eval_shape(jax.vmap(train.init), runs.keys(config.seed), runs.hyperparams())
        metrics = jax.eval_shape(lambda s, train=train: engine.make_vmapped(train)(s, 1), state)[1]
        assert all(m.shape[:2] == (runs.num_runs, 1) for m in metrics.values()), variant


def _shrink(config, **fields):
    return sweeps.with_values(config, {'num_seeds': 2, 'tasks_per_chunk': 2, 'metrics.probe_size': 16, **fields})


def _class_folder(tmp_path):
    """4 classes of 8 generated 32x32 images, the format of Continual ImageNet's prepared class folder; class c is
    bright in channel c % 3."""
    rng = np.random.default_rng(0)
    folder = tmp_path / 'classes'
    folder.mkdir()
    for c in range(4):
        images = rng.integers(0, 100, (8, 32, 32, 3), dtype=np.uint8)
        images[..., c % 3] += 120 * (c < 3)
        np.save(folder / f'{c}.npy', images)
    return folder


def test_continual_imagenet_on_a_generated_class_folder(tmp_path):
    folder = _class_folder(tmp_path)  # 6 train + 2 test images per class
    config = _shrink(load_config('continual_imagenet.py'), num_tasks=3, data_dir=str(folder),
                     **{'problem.train_per_class': 6, 'problem.test_per_class': 2, 'problem.epochs': 3,
                        'problem.batch_size': 4})
    engine.run(config, str(tmp_path / 'run'), progress=False)
    run = load_run(str(tmp_path / 'run'))
    assert run.metrics['test_accuracy'].shape == (2, 3)
    assert np.all(np.isin(run.metrics['test_accuracy'] * 4, np.arange(5)))  # 4 test images per pair
    assert run.metrics['dead_fraction'].shape == (2, 3, 5)  # 3 conv blocks + 2 dense hidden layers
    assert np.all(np.isfinite(run.metrics['online_loss']))


def test_continual_imagenet_learner_variants_are_the_released_configs():
    """lop/imagenet/cfg/{cbp,snp,l2}.json: their fields, and 5,000 tasks where backprop's bp.json runs 2,000."""
    assert load_config('continual_imagenet.py').num_tasks == 2000
    for variant, fields in (('cbp', {'replacement_rate': 3e-4, 'maturity_threshold': 100, 'step_size': 0.01}),
                            ('shrink_perturb', {'weight_decay': 1e-5, 'noise_std': 1e-5}),
                            ('l2', {'weight_decay': 3e-6, 'step_size': 0.03})):
        config = load_config('continual_imagenet.py', variant)
        assert config.num_tasks == 5000 and config.learner.name == variant, variant
        assert {k: config.learner[k] for k in fields} == fields, variant


def test_continual_imagenet_refuses_a_missing_folder(tmp_path):
    config = _shrink(load_config('continual_imagenet.py'), data_dir=str(tmp_path / 'nowhere'))
    with pytest.raises(datasets.DataSourceError, match='nowhere.*does not exist'):
        engine.make_train(config)


def _fake_cifar100(name, data_dir=None):
    assert name == 'cifar100'
    rng = np.random.default_rng(1)
    train_y, test_y = np.repeat(np.arange(10), 12), np.repeat(np.arange(10), 3)
    return datasets.ImageDataset(rng.integers(0, 256, (len(train_y), 32, 32, 3), dtype=np.uint8), train_y,
                                 rng.integers(0, 256, (len(test_y), 32, 32, 3), dtype=np.uint8), test_y)


def _small_incremental_cifar100(monkeypatch, variant=None):
    """incremental_cifar100.py (`variant`) on 10 generated classes (2 tasks of 5 new classes), a ResNet-18 of base
    width 4."""
    monkeypatch.setattr(datasets, 'load_tfds_images', _fake_cifar100)
    # Early stopping as the papers' code (on by default): the first 2 of each class's 12 training images validate.
    config = _shrink(load_config('incremental_cifar100.py', variant), num_tasks=2,
                     **{'problem.train_per_class': 10, 'problem.validation_per_class': 2, 'problem.epochs': 2,
                        'problem.batch_size': 16, 'model.base_width': 4, 'model.blocks_per_stage': 1})
    assert config.problem.early_stopping
    return config


def test_incremental_cifar100_builds_and_traces_on_generated_cifar_shaped_data(monkeypatch):
    """The config's wiring (augmentation, normalisation, early stopping, the class increments, the step-size
    milestones) and every metric's shape, by tracing the chunk program of its continual backprop variant
    (`jax.eval_shape`: about 5 CPU-s here; compiling and running the ResNet program, the slow test below, takes 13
    more). The `cbp` variant with the config's milestones failed to trace until the schedule kept the optimizer
    state's structure (`learners.schedule`). The default suite runs ResNets through the learners' tests and the
    conv-net image problem end to end (continual ImageNet above)."""
    assert load_config('incremental_cifar100.py', 'scratch').reset_at_task_start == 'network'
    # ResNet-18's depth as a field (docs/conv_nets.md): `--config.model.blocks_per_stage=1` overrides it.
    from plasticity_jax import config as config_lib
    assert load_config('incremental_cifar100.py').model.blocks_per_stage == 2
    assert config_lib.load('configs/incremental_cifar100.py', {'model.blocks_per_stage': 1}).model.blocks_per_stage == 1
    config = _small_incremental_cifar100(monkeypatch, 'cbp')
    assert config.learner.name == 'cbp' and config.learner.step_size_milestones == (0.3, 0.6, 0.8)
    train = engine.make_train(config)
    assert train.problem.augment and train.problem.mean and train.problem.num_outputs == 10
    assert train.problem.early_stopping and train.problem.max_validation_examples == 20
    np.testing.assert_array_equal(train.data['validation_counts'], 2)
    np.testing.assert_array_equal(train.data['train_counts'], 10)
    state = jax.eval_shape(jax.vmap(train.init), engine.seed_keys(config))
    _, metrics = jax.eval_shape(lambda s: engine.make_vmapped(train)(s, 2), state)
    for name in ('test_accuracy', 'validation_accuracy', 'validation_epoch', 'online_loss'):
        assert metrics[name].shape == (2, 2), name
    assert metrics['dead_fraction'].shape[:2] == (2, 2)


@pytest.mark.slow
def test_incremental_cifar100_on_generated_cifar_shaped_data(tmp_path, monkeypatch):
    engine.run(_small_incremental_cifar100(monkeypatch), str(tmp_path), progress=False)
    metrics = load_run(str(tmp_path)).metrics
    assert metrics['test_accuracy'].shape == (2, 2) and np.all(np.isfinite(metrics['online_loss']))
    # 5 classes x 3 test images in task 0, 10 x 3 in task 1; 5 x 2 and 10 x 2 validation images.
    np.testing.assert_allclose(metrics['test_accuracy'][:, 0] * 15 % 1, 0, atol=1e-5)
    np.testing.assert_allclose(metrics['test_accuracy'][:, 1] * 30 % 1, 0, atol=1e-5)
    np.testing.assert_allclose(metrics['validation_accuracy'] * [10, 20] % 1, 0, atol=1e-5)
    assert np.all(np.isin(metrics['validation_epoch'], [0, 1]))
