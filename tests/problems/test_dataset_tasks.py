import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_jax.problems import dataset_tasks
from plasticity_jax.problems.dataset_tasks import HIDDEN_LOGIT, DatasetTasks

# Four classes with unequal sizes; image i holds the value i in its one pixel, so a batch reveals which images it
# contains (inputs are scaled by 1/255).
TRAIN_LABELS = np.repeat(np.arange(4), [5, 7, 3, 6])
TEST_LABELS = np.repeat(np.arange(4), [2, 3, 1, 2])


def images(count):
    return np.arange(count, dtype=np.uint8).reshape(count, 1, 1, 1)


def make(schedule, *, epochs=2, batch_size=4, train_labels=TRAIN_LABELS, test_labels=TEST_LABELS, **kwargs):
    data = dataset_tasks.make_data(images(len(train_labels)), train_labels, images(len(test_labels)), test_labels,
                                   num_classes=4)
    problem = DatasetTasks.create(data, schedule=schedule, epochs=epochs, batch_size=batch_size, probe_size=8,
                                  **kwargs)
    return problem, data


def indices(x):
    return np.rint(np.asarray(x).reshape(len(x)) * 255).astype(int)


@functools.partial(jax.jit, static_argnums=0)
def _start(problem, data, task, key):
    return problem.start_task(data, problem.init(data, key), task, jax.random.fold_in(key, task))


def start(problem, data, task, seed=0):
    """The problem state at the start of `task` (one compiled program per problem, not an eager op at a time)."""
    return _start(problem, data, jnp.int32(task), jax.random.key(seed))


@functools.partial(jax.jit, static_argnums=0)
def _batch(problem, data, state, step, key):
    return problem.batch(data, state, step, key)


def batch(problem, data, state, step, key=None):
    """`problem.batch` at `step`, one compiled program per problem."""
    return _batch(problem, data, state, jnp.int32(step), key)


@functools.partial(jax.jit, static_argnums=0)
def _active_steps(problem, data, state, task):
    return problem.active_steps(data, state, task)


def active_steps(problem, data, state, task):
    """`problem.active_steps` of `task`, one compiled program per problem."""
    return int(_active_steps(problem, data, state, jnp.int32(task)))


@functools.partial(jax.jit, static_argnums=0)
def init(problem, data, key):
    """`problem.init`, one compiled program per problem."""
    return problem.init(data, key)


def score(method, data, state, predict):
    """`problem.evaluate` / `problem.validate` (a bound `method`) with `predict`, as one compiled program."""
    return jax.jit(lambda d, s: method(d, s, predict))(data, state)


def test_all_pairs_visits_each_pair_once_in_a_per_seed_order_with_label_zero_the_smaller_class():
    problem, data = make('all_pairs')
    assert problem.num_outputs == 2 and problem.max_train_examples == 7 + 6
    orders = []
    for seed in (0, 1):
        pairs = [tuple(np.asarray(start(problem, data, t, seed)['classes']).tolist()) for t in range(6)]
        assert sorted(pairs) == list(itertools.combinations(range(4), 2))
        orders.append(pairs)
        state = start(problem, data, 2, seed)
        x, y = batch(problem, data, state, 0, jax.random.key(0))
        np.testing.assert_array_equal(np.asarray(y), (TRAIN_LABELS[indices(x)] == pairs[2][1]).astype(int))
    assert orders[0] != orders[1]


def test_sample_inputs_draw_the_task_examples_only_and_cover_them():
    problem, data = make('all_pairs')
    state = start(problem, data, 1)
    task_classes = np.asarray(state['classes'])
    drawn = indices(jax.jit(problem.sample_inputs, static_argnums=3)(data, state, jax.random.key(3), 200))
    np.testing.assert_array_equal(np.unique(drawn), np.nonzero(np.isin(TRAIN_LABELS, task_classes))[0])


def test_each_epoch_presents_every_example_of_the_task_once_in_a_new_order():
    problem, data = make('all_pairs', epochs=3, batch_size=4)
    state = start(problem, data, 0)
    a, b = np.asarray(state['classes'])
    pool = np.flatnonzero(np.isin(TRAIN_LABELS, [a, b]))
    steps_per_epoch = math.ceil(len(pool) / 4)
    assert active_steps(problem, data, state, 0) == 3 * steps_per_epoch
    epochs = []
    for epoch in range(3):
        seen = np.concatenate([indices(batch(problem, data, state, epoch * steps_per_epoch + s,
                                                     jax.random.key(0))[0]) for s in range(steps_per_epoch)])
        np.testing.assert_array_equal(np.sort(seen[:len(pool)]), pool)  # then the epoch's first ones again
        np.testing.assert_array_equal(seen[len(pool):], seen[:len(seen) - len(pool)])
        epochs.append(seen[:len(pool)])
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_consecutive_pairs_follow_the_class_order_and_wrap_around():
    problem, data = make('consecutive_pairs')
    order = np.asarray(init(problem, data, jax.random.key(0))['class_order'])
    for task in range(5):
        expected = [order[(2 * task) % 4], order[(2 * task + 1) % 4]]
        np.testing.assert_array_equal(np.asarray(start(problem, data, task)['classes']), expected)


def test_class_increments_add_classes_and_hide_the_unseen_outputs():
    problem, data = make('class_increments', classes_per_increment=1)
    assert problem.num_outputs == 4 and problem.class_size == 0
    order = np.asarray(init(problem, data, jax.random.key(0))['class_order'])
    for task in range(5):
        state = start(problem, data, task)
        seen = order[:min(task + 1, 4)]
        np.testing.assert_array_equal(np.asarray(state['output_mask']), np.isin(np.arange(4), seen))
        outputs = problem.task_outputs(state, jnp.ones((2, 4)))
        np.testing.assert_array_equal(np.asarray(outputs[0]), np.where(np.isin(np.arange(4), seen), 1.0,
                                                                     np.float32(HIDDEN_LOGIT)))
        x, y = batch(problem, data, state, 0, jax.random.key(0))
        assert set(TRAIN_LABELS[indices(x)]) <= set(seen)
        np.testing.assert_array_equal(np.asarray(y), TRAIN_LABELS[indices(x)])
        n = np.isin(TRAIN_LABELS, seen).sum()
        assert active_steps(problem, data, state, task) == 2 * math.ceil(n / 4)


def test_with_equal_classes_the_number_of_steps_depends_on_the_task_index_alone():
    labels = np.repeat(np.arange(4), 3)
    problem, data = make('class_increments', classes_per_increment=2, train_labels=labels, test_labels=labels)
    assert problem.class_size == 3
    steps = jax.vmap(lambda task: problem.active_steps(data, None, task))(jnp.arange(3))  # no state needed
    np.testing.assert_array_equal(np.asarray(steps), [2 * math.ceil(6 / 4), 2 * math.ceil(12 / 4)] + [6])


def test_warm_start_uses_a_random_half_of_every_class_then_everything():
    problem, data = make('warm_start', epochs=1, batch_size=1)
    halves = []
    for seed in (0, 1):
        state = start(problem, data, 0, seed)
        n = active_steps(problem, data, state, 0)
        assert n == sum(c // 2 for c in (5, 7, 3, 6))
        seen = np.concatenate([indices(batch(problem, data, state, s, None)[0]) for s in range(n)])
        assert np.bincount(TRAIN_LABELS[seen], minlength=4).tolist() == [2, 3, 1, 3] and len(set(seen)) == n
        halves.append(set(seen))
        everything = start(problem, data, 1, seed)
        assert active_steps(problem, data, everything, 1) == len(TRAIN_LABELS)
    assert halves[0] != halves[1]


def test_evaluate_scores_the_test_images_of_the_task_classes():
    problem, data = make('all_pairs')
    state = start(problem, data, 0)
    a, b = np.asarray(state['classes'])
    test_labels = jnp.asarray(TEST_LABELS)

    def oracle(x):  # the correct pair label of every image
        return jax.nn.one_hot((test_labels[jnp.rint(x.reshape(-1) * 255).astype(int)] == b).astype(int), 2)

    assert float(score(problem.evaluate, data, state, oracle)['test_accuracy']) == 1.0
    always_first = lambda x: jnp.tile(jnp.array([1.0, 0.0]), (x.shape[0], 1))
    expected = np.sum(TEST_LABELS == a) / np.sum(np.isin(TEST_LABELS, [a, b]))
    np.testing.assert_allclose(float(score(problem.evaluate, data, state, always_first)['test_accuracy']), expected)


def test_validate_scores_the_validation_images_of_the_classes_seen_so_far():
    validation_labels = np.repeat(np.arange(4), [2, 1, 3, 1])
    data = dataset_tasks.make_data(images(len(TRAIN_LABELS)), TRAIN_LABELS, images(len(TEST_LABELS)), TEST_LABELS,
                                   num_classes=4, validation=(images(len(validation_labels)), validation_labels))
    problem = DatasetTasks.create(data, schedule='class_increments', epochs=3, batch_size=4, probe_size=8,
                                  classes_per_increment=2, early_stopping=True)
    assert problem.max_validation_examples == 7 and problem.early_stopping
    state = start(problem, data, 0)
    seen = np.asarray(state['classes'][:2])
    labels = jnp.asarray(validation_labels)
    oracle = lambda x: jax.nn.one_hot(labels[jnp.rint(x.reshape(-1) * 255).astype(int)], 4)
    assert float(score(problem.validate, data, state, oracle)) == 1.0
    always = lambda x: jnp.tile(jax.nn.one_hot(seen[0], 4), (x.shape[0], 1))
    expected = np.sum(validation_labels == seen[0]) / np.sum(np.isin(validation_labels, seen))
    np.testing.assert_allclose(float(score(problem.validate, data, state, always)), expected)
    # Once per epoch: the task's steps divided by its epochs.
    n = np.isin(TRAIN_LABELS, seen).sum()
    assert int(problem.validation_period(data, state, jnp.int32(0))) == math.ceil(n / 4)
    without, _ = make('class_increments')
    assert without.validation_period(data, state, jnp.int32(0)) == 0
    with pytest.raises(ValueError, match='needs a validation split'):
        make('class_increments', early_stopping=True)


def test_unknown_schedule_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown problem.schedule 'pairs'.*all_pairs"):
        make('pairs')
