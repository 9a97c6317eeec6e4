"""Online Permuted MNIST on the real (offline) data: permutations, batches, probes, the end-of-task evaluation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.data import load_mnist
from plasticity_jax.problems import PermutedMNIST, Problem, make_problem
from plasticity_jax.problems.permuted_mnist import EVAL_CHUNK
from tests.conftest import load_config

NUM_TRAIN, NUM_PIXELS = 60_000, 784


def _problem(batch_size=1, examples_per_task=60_000, probe_size=32):
    return PermutedMNIST(kind='classification', input_shape=(NUM_PIXELS,), num_outputs=10,
                         examples_per_task=examples_per_task, batch_size=batch_size, probe_size=probe_size)


@pytest.fixture(scope='module')
def mnist(shared_data_dir, tmp_path_factory):
    # Module scope runs before the function-scoped cache fixture, so name the temporary cache folder here.
    return load_mnist(shared_data_dir, cache_dir=tmp_path_factory.getbasetemp() / 'cache')


@pytest.fixture(scope='module')
def raw(mnist):
    """numpy reference arrays: images flattened to (N, 784) uint8, labels."""
    return {'train_x': mnist.train_images.reshape(NUM_TRAIN, NUM_PIXELS), 'train_y': mnist.train_labels,
            'test_x': mnist.test_images.reshape(10_000, NUM_PIXELS), 'test_y': mnist.test_labels}


@pytest.fixture(scope='module')
def data(mnist):
    return PermutedMNIST.make_data(*mnist)


@pytest.fixture(scope='module')
def task(data):
    """The state of one task (task index 3) and its permutations as numpy arrays."""
    problem = _problem()
    state = problem.start_task(data, problem.init(data, jax.random.key(0)), jnp.int32(3), jax.random.key(1))
    return state, np.asarray(state['pixel_permutation']), np.asarray(state['example_order'])


def _expected(raw, perm, index):
    """The paper's inputs by numpy: the images `index` with pixels permuted, scaled to [0, 1], and labels."""
    return raw['train_x'][index][:, perm].astype(np.float32) / 255.0, raw['train_y'][index]


# ----------------------------------------------------------------- data and task permutations


def test_make_data_flattens_and_keeps_dtypes(data, raw):
    assert data['train_x'].shape == (NUM_TRAIN, NUM_PIXELS) and data['train_x'].dtype == jnp.uint8
    assert data['test_x'].shape == (10_000, NUM_PIXELS) and data['test_x'].dtype == jnp.uint8
    assert data['train_y'].dtype == jnp.int32 and data['test_y'].dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(data['train_x'][:100]), raw['train_x'][:100])
    np.testing.assert_array_equal(np.asarray(data['test_y']), raw['test_y'])


def test_init_is_the_identity_task(data, raw):
    problem = _problem(batch_size=5)
    state = jax.jit(problem.init)(data, jax.random.key(0))
    np.testing.assert_array_equal(state['pixel_permutation'], np.arange(NUM_PIXELS))
    np.testing.assert_array_equal(state['example_order'], np.arange(NUM_TRAIN))
    x, y = jax.jit(problem.batch)(data, state, jnp.int32(2), jax.random.key(0))
    np.testing.assert_allclose(x, raw['train_x'][10:15] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, raw['train_y'][10:15])


def test_start_task_draws_valid_permutations(task):
    _, perm, order = task
    assert perm.shape == (NUM_PIXELS,) and order.shape == (NUM_TRAIN,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(NUM_PIXELS))
    np.testing.assert_array_equal(np.sort(order), np.arange(NUM_TRAIN))
    # A random permutation, not (nearly) the identity.
    assert np.mean(perm == np.arange(NUM_PIXELS)) < 0.02
    assert np.mean(order == np.arange(NUM_TRAIN)) < 0.01


def test_task_keys_give_different_permutations_and_same_key_the_same(data, task):
    problem = _problem()
    state, perm, order = task
    again = problem.start_task(data, problem.init(data, jax.random.key(0)), jnp.int32(3), jax.random.key(1))
    np.testing.assert_array_equal(again['pixel_permutation'], perm)
    np.testing.assert_array_equal(again['example_order'], order)
    other = problem.start_task(data, state, jnp.int32(4), jax.random.key(2))
    assert np.mean(np.asarray(other['pixel_permutation']) == perm) < 0.05
    assert np.mean(np.asarray(other['example_order']) == order) < 0.01


# ----------------------------------------------------------------- batches


def test_batch_is_the_ordered_example_permuted_and_scaled(data, raw, task):
    problem = _problem()
    state, perm, order = task
    batch = jax.jit(lambda d, step, key: problem.batch(d, state, step, key))  # data: an argument
    for step in (0, 1, 12_345, NUM_TRAIN - 1):
        x, y = batch(data, jnp.int32(step), jax.random.key(0))
        want_x, want_y = _expected(raw, perm, order[[step]])
        assert x.shape == (1, NUM_PIXELS) and x.dtype == jnp.float32 and y.shape == (1,)
        np.testing.assert_allclose(np.asarray(x), want_x, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(y), want_y)
    # The key carries no randomness: the task's order does.
    np.testing.assert_array_equal(batch(data, jnp.int32(7), jax.random.key(5))[0],
                                  batch(data, jnp.int32(7), jax.random.key(6))[0])


def test_batch_pixels_are_in_unit_interval_with_full_range(data, task):
    problem = _problem(batch_size=500)
    state, _, _ = task
    x, y = jax.jit(problem.batch)(data, state, jnp.int32(3), jax.random.key(0))
    x = np.asarray(x)
    assert x.min() == 0.0 and x.max() == 1.0  # 255 / 255: divided by 255, not 256
    # MNIST's mean pixel is 33.3 / 255 = 0.13.
    assert abs(x.mean() - 33.3184 / 255) < 0.01
    assert set(np.unique(np.asarray(y))) == set(range(10))


def test_batch_size_greater_than_one(data, raw, task):
    problem = _problem(batch_size=16, examples_per_task=60_000 - 60_000 % 16)
    state, perm, order = task
    batch = jax.jit(problem.batch)
    for step in (0, 3, 1000):
        x, y = batch(data, state, jnp.int32(step), jax.random.key(0))
        want_x, want_y = _expected(raw, perm, order[step * 16:(step + 1) * 16])
        assert x.shape == (16, NUM_PIXELS)
        np.testing.assert_allclose(np.asarray(x), want_x, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(y), want_y)


def test_steps_past_the_dataset_wrap_around(data, raw, task):
    state, perm, order = task
    # Batch size 1, 100,000 examples per task (the dissertation's switch100k): step s shows example s mod 60,000.
    problem = _problem(examples_per_task=100_000)
    assert problem.steps_per_task == 100_000
    batch = jax.jit(lambda d, step: problem.batch(d, state, step, jax.random.key(0)))  # data: an argument
    for step, position in ((NUM_TRAIN, 0), (NUM_TRAIN + 5, 5), (problem.steps_per_task - 1, 39_999)):
        x, y = batch(data, jnp.int32(step))
        want_x, want_y = _expected(raw, perm, order[[position]])
        np.testing.assert_allclose(np.asarray(x), want_x, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(y), want_y)
    # A batch that straddles the end of the order: 8571 * 7 = 59,997, so positions 59,997 .. 60,003 -> 59997..2.
    problem = _problem(batch_size=7, examples_per_task=70_000)
    x, y = jax.jit(problem.batch)(data, state, jnp.int32(8571), jax.random.key(0))
    positions = np.array([59_997, 59_998, 59_999, 0, 1, 2, 3])
    want_x, want_y = _expected(raw, perm, order[positions])
    np.testing.assert_allclose(np.asarray(x), want_x, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(y), want_y)


def test_reshuffled_epochs_each_show_every_image_once_in_a_new_order(data, raw, task):
    state, perm, order = task
    # Minibatch variant: 3 epochs of batch 1000. Epoch 0 is the task's order; epochs 1 and 2 are new orders.
    problem = _problem(batch_size=1000, examples_per_task=3 * NUM_TRAIN)
    problem = type(problem)(**{**problem.__dict__, 'reshuffle_each_epoch': True})
    batch = jax.jit(lambda d, step: problem.batch(d, state, step, jax.random.key(0)))
    # The labels of all 180 steps in one program (the images, unused here, are not computed).
    labels_of_steps = jax.jit(jax.vmap(lambda d, step: batch(d, step)[1], in_axes=(None, 0)))
    epochs = np.asarray(labels_of_steps(data, np.arange(180, dtype=np.int32))).reshape(3, NUM_TRAIN)
    np.testing.assert_array_equal(epochs[0], raw['train_y'][order])
    for labels in epochs[1:]:
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.bincount(raw['train_y'], minlength=10))
        assert np.mean(labels == epochs[0]) < 0.2  # a different order (chance agreement is about 0.1)
    assert np.mean(epochs[1] == epochs[2]) < 0.2
    x, y = batch(data, jnp.int32(60))  # images and labels stay aligned
    for row, label in zip(np.rint(np.asarray(x[:3]) * 255).astype(np.uint8), np.asarray(y[:3])):
        image = np.empty_like(row)
        image[perm] = row  # the training image before the task's pixel permutation
        assert label in raw['train_y'][np.flatnonzero((raw['train_x'] == image).all(axis=1))]


# ----------------------------------------------------------------- probe


def test_probe_is_probe_size_permuted_images_of_the_task(data, raw, task):
    problem = _problem(probe_size=32)
    state, perm, order = task
    probe = np.asarray(jax.jit(problem.probe)(data, state, jax.random.key(0)))
    assert probe.shape == (32, NUM_PIXELS) and probe.dtype == np.float32
    want, _ = _expected(raw, perm, order[:32])
    np.testing.assert_allclose(probe, want, rtol=1e-6)
    # Permuted: the probe differs from the same images unpermuted.
    assert not np.allclose(probe, raw['train_x'][order[:32]] / 255.0)


def test_sample_inputs_are_random_permuted_images_of_the_task(data, raw, task):
    problem = _problem()
    state, perm, _ = task
    train_images = {image.tobytes() for image in raw['train_x']}
    sample_inputs = jax.jit(problem.sample_inputs, static_argnums=3)
    samples = [np.asarray(sample_inputs(data, state, jax.random.key(k), 50)) for k in (0, 1)]
    for sample in samples:
        assert sample.shape == (50, NUM_PIXELS) and sample.min() >= 0 and sample.max() <= 1
        # every row is one of the task's permuted training images: with the permutation undone, a training image
        unpermuted = np.empty(sample.shape, np.uint8)
        unpermuted[:, perm] = np.rint(sample * 255).astype(np.uint8)
        assert all(row.tobytes() in train_images for row in unpermuted)
    assert not np.array_equal(samples[0], samples[1])


# ----------------------------------------------------------------- evaluate (on small fake datasets)


def _fake_data(test_labels, test_images=None, num_train=20):
    test_labels = np.asarray(test_labels, np.int32)
    if test_images is None:
        test_images = np.zeros((len(test_labels), NUM_PIXELS), np.uint8)
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8)
    train_y = rng.integers(0, 10, num_train)
    return PermutedMNIST.make_data(train_x, train_y, np.asarray(test_images).reshape(-1, 28, 28), test_labels)


def _favour_class_zero(x):
    return jnp.zeros((x.shape[0], 10)).at[:, 0].set(1.0)


@pytest.mark.parametrize('num_test', [7, 1000, 1500, 2000, 2999])
def test_evaluate_accuracy_of_a_constant_predictor(num_test):
    rng = np.random.default_rng(num_test)
    labels = rng.integers(0, 10, num_test)
    labels[0] = 0  # padding of the last chunk repeats image 0: it must not count
    labels[-1] = 0  # the last image must count
    data = _fake_data(labels)
    problem = _problem()

    @jax.jit  # one program, not an eager op at a time
    def accuracy_of_a_new_task(data):
        state = problem.start_task(data, problem.init(data, jax.random.key(0)), jnp.int32(0), jax.random.key(1))
        return problem.evaluate(data, state, _favour_class_zero)['test_accuracy']

    accuracy = float(accuracy_of_a_new_task(data))
    assert accuracy == pytest.approx(np.mean(labels == 0), abs=1e-6)
    assert 0.0 < accuracy < 1.0


def test_evaluate_last_partial_chunk_counts_exactly():
    # 1500 test images, 1 chunk and a half: only image 1499 of the second chunk is a zero.
    labels = np.ones(1500, np.int32)
    labels[0] = 0
    labels[1499] = 0
    data = _fake_data(labels)
    problem = _problem()
    assert EVAL_CHUNK == 1000
    accuracy = float(jax.jit(lambda d: problem.evaluate(d, problem.init(d, jax.random.key(0)), _favour_class_zero)
                             ['test_accuracy'])(data))
    assert accuracy == pytest.approx(2 / 1500, abs=1e-7)  # not 501 / 1500 (padding counted) nor 2 / 2000


def test_evaluate_applies_the_task_permutation_and_aligns_images_with_labels():
    # Test image i has one bright pixel, at position labels[i] (before the task's permutation). A predictor that
    # knows the permutation finds the label: perm[argmax(x)]. Ten images get a wrong label on purpose.
    num_test = 1500
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, num_test).astype(np.int32)
    images = np.zeros((num_test, NUM_PIXELS), np.uint8)
    images[np.arange(num_test), labels] = 255
    wrong = rng.choice(num_test, 10, replace=False)
    stored_labels = labels.copy()
    stored_labels[wrong] = (labels[wrong] + 1) % 10
    data = _fake_data(stored_labels, images)
    problem = _problem()
    state = jax.jit(lambda d: problem.start_task(d, problem.init(d, jax.random.key(0)), jnp.int32(1),
                                                jax.random.key(2)))(data)

    @jax.jit  # both accuracies in one program, not an eager op at a time
    def accuracies(data, state):
        def predict(x):
            return jax.nn.one_hot(state['pixel_permutation'][jnp.argmax(x, axis=-1)], 10)

        return (problem.evaluate(data, state, predict)['test_accuracy'],
                problem.evaluate(data, state, lambda x: jax.nn.one_hot(jnp.argmax(x, axis=-1), 10))['test_accuracy'])

    accuracy, unpermuted = (float(a) for a in accuracies(data, state))
    assert accuracy == pytest.approx((num_test - 10) / num_test, abs=1e-6)
    # Without undoing the permutation the same predictor is near chance: the inputs really are permuted.
    assert unpermuted < 0.3


def test_evaluate_under_jit_and_vmap_over_tasks():
    labels = np.arange(1500) % 10
    images = np.zeros((1500, NUM_PIXELS), np.uint8)
    images[np.arange(1500), labels] = 255
    data = _fake_data(labels, images)
    problem = _problem()

    def accuracy(key):
        state = problem.start_task(data, problem.init(data, key), jnp.int32(1), key)
        predict = lambda x: jax.nn.one_hot(state['pixel_permutation'][jnp.argmax(x, axis=-1)], 10)
        return problem.evaluate(data, state, predict)['test_accuracy']

    accuracies = jax.jit(jax.vmap(accuracy))(jax.random.split(jax.random.key(3), 2))
    np.testing.assert_allclose(accuracies, [1.0, 1.0], atol=1e-6)


# ----------------------------------------------------------------- base Problem (classification) and config


def test_classification_loss_and_online_metric_by_hand():
    problem = _problem()
    loss, online_metric = jax.jit(problem.loss), jax.jit(problem.online_metric)
    outputs = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    targets = np.array([0, 1], np.int32)
    cross_entropy = ((math.log(math.e ** 2 + math.e + 1) - 2.0) + (math.log(2 + math.e ** 3) - 0.0)) / 2
    assert float(loss(outputs, targets)) == pytest.approx(cross_entropy, rel=1e-5)
    assert float(online_metric(outputs, targets)) == pytest.approx(0.5)  # argmax 0 right, 2 wrong
    assert float(online_metric(outputs, np.array([0, 2], np.int32))) == pytest.approx(1.0)
    assert problem.online_metric_name == 'online_accuracy'
    assert isinstance(problem, Problem)
    assert _problem(batch_size=4, examples_per_task=10_000).steps_per_task == 2_500
    # The base Problem leaves the stream to subclasses and evaluates nothing.
    base = Problem(kind='classification', input_shape=(2,), num_outputs=2, examples_per_task=4, batch_size=2,
                   probe_size=1)
    with pytest.raises(NotImplementedError):
        base.init({}, jax.random.key(0))
    assert base.evaluate({}, None, lambda x: x) == {}


def test_make_problem_from_the_config(shared_data_dir, raw):
    config = load_config('permuted_mnist.py')
    config.data_dir = shared_data_dir
    config.problem.examples_per_task = 10_000
    problem, data = make_problem(config)
    assert isinstance(problem, PermutedMNIST)
    assert (problem.kind, problem.input_shape, problem.num_outputs) == ("classification", (NUM_PIXELS,), 10)
    assert (problem.examples_per_task, problem.batch_size, problem.probe_size) == (10_000, 1,
                                                                                    config.metrics.probe_size)
    np.testing.assert_array_equal(np.asarray(data['test_x'][-3:]), raw['test_x'][-3:])
