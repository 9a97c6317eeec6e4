"""Tasks made of subsets of a labelled dataset, trained for several epochs of minibatch SGD each.

One mechanism serves the class- and data-incremental problems of the papers (`schedule`):

* 'all_pairs' -- class-incremental pairwise MNIST ("Neural Network Plasticity and Loss Sharpness", Sec. 3.1): every
  task is a binary classification between two digits, all C(10, 2) = 45 pairs in a random order per run (a longer
  run repeats that order). Label 0 is the smaller digit. Each pair keeps all its training and test images, so the
  6:1 train-to-test ratio of MNIST is preserved.
* 'consecutive_pairs' -- Continual ImageNet (Dohare et al., Nature 2024, Methods): task t classifies classes
  order[2t] vs order[2t + 1] of a per-run random class order; after C / 2 tasks the same order is used again, as the
  papers' code does (it concatenates the run's class order with itself).
* 'class_increments' -- class-incremental CIFAR-100 (Dohare et al., Nature 2024, Methods): task t trains on the first
  `classes_per_increment * (t + 1)` classes of a per-run class order (all of them once they are exhausted); the
  network has one output per class of the dataset and the classes not seen yet are hidden from the loss, the
  accuracy and the predictions (`task_outputs`), as the papers' code slices the output layer to the seen classes.
* 'warm_start' -- Ash & Adams (2020), "On warm-starting neural network training", Sec. 2: task 0 trains on a random
  half of the training set (half of every class), task 1 on all of it; compare with a network reset at the start of
  task 1 (`config.reset_at_task_start = 'network'`) to see the warm-starting generalisation gap.

Within a task, training runs `epochs` passes over the task's training examples in minibatches of `batch_size`, each
epoch in a fresh random order (`problems.shuffle`, no order tables in memory). An epoch has ceil(n / batch_size)
steps for the task's n examples; its last minibatch is filled up with the epoch's first examples, so every step has
the same shape. Tasks with fewer examples than the largest possible task have fewer steps (`active_steps`): the
remaining steps of the compiled task leave the run unchanged. At the end of a task the network is scored on the test
images of the task's classes (`test_accuracy`); the online accuracy is the mean accuracy on each minibatch before the
update on it.

Validation split (optional, class-incremental CIFAR-100's early stopping): `validation_per_class` images of each class
held out of the training images (`problems.make_problem` takes the first ones of each class, as the papers' code).
The engine scores the task's validation images (those of its active classes) after every epoch
(`validation_period`: the task's steps per epoch) and keeps the network of the best score; with `early_stopping`
that network, not the last one, is scored on the test images and carried into the next task (`engine`).

Data (on the device, uploaded once): images as uint8 with a per-class index so that a task's examples are found
without scanning the dataset:

    train_x (N, *input_shape) uint8, train_y (N,) int32, train_by_class (C, P) int32, train_counts (C,) int32
    test_x, test_y, test_by_class, test_counts: the same for the test split
    validation_x, ...: the same for the validation split, when there is one

`train_by_class[c, :train_counts[c]]` are the indices of class c's images (padded with 0). Pixels are scaled to
[0, 1] (then standardised per channel with `mean`/`std` when given, `augment.normalize`) and, in training minibatches
only, augmented on the device when `augment` is set (`problems.augment`). Test images are never augmented (the
CIFAR-100 paper's code augments its test set too; we score the network on the images themselves).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.problems import augment, shuffle
from plasticity_jax.problems.base import Predict, Problem

SCHEDULES = ('all_pairs', 'consecutive_pairs', 'class_increments', 'warm_start')
EVAL_CHUNK = 1000  # test images per forward pass at the end of a task
HIDDEN_LOGIT = -1e30  # the output of a class the task does not use: softmax weight 0, finite gradients
WARM_START_FRACTION = 0.5


def class_index(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(by_class (C, P) int32, counts (C,) int32): the indices of each class's examples, padded with 0."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes).astype(np.int32)
    by_class = np.zeros((num_classes, max(int(counts.max()), 1)), np.int32)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        by_class[c, :len(members)] = members
    return by_class, counts


def make_data(train_x, train_y, test_x, test_y, num_classes: int, validation=None) -> dict[str, jax.Array]:
    """The problem's device data from host arrays (images uint8, labels in [0, num_classes)); `validation`:
    (images, labels) of a validation split, or None."""
    return jax.device_put(host_data(train_x, train_y, test_x, test_y, num_classes, validation))


def host_data(train_x, train_y, test_x, test_y, num_classes: int, validation=None) -> dict[str, np.ndarray]:
    """`make_data` before the upload (what `problems.make_problem` uploads, or only measures when planning)."""
    data = {}
    splits = [('train', train_x, train_y), ('test', test_x, test_y)]
    if validation is not None:
        splits.append(('validation', *validation))
    for split, images, labels in splits:
        by_class, counts = class_index(labels, num_classes)
        data.update({f'{split}_x': np.asarray(images, np.uint8), f'{split}_y': np.asarray(labels, np.int32),
                     f'{split}_by_class': by_class, f'{split}_counts': counts})
    return data


@dataclasses.dataclass(frozen=True)
class DatasetTasks(Problem):
    """Build with `DatasetTasks.create(...)`, which derives the task sizes from the data.

    `max_train_examples` / `max_test_examples` / `max_validation_examples` (0: no validation split): the most
    examples any task can have (static: they fix the number of steps per task and of evaluation chunks).
    `class_size`: the per-class count when every class has the same number of training images (CIFAR-100,
    ImageNet), which makes a task's number of steps a function of the task index alone (so skipped steps are free
    under `vmap`); 0 otherwise (MNIST). `early_stopping`: the task's best network on the validation split is the
    one tested and carried on (`engine`).
    """

    schedule: str = 'all_pairs'
    num_classes: int = 10
    epochs: int = 1
    classes_per_increment: int = 5
    max_train_examples: int = 0
    max_test_examples: int = 0
    max_validation_examples: int = 0
    early_stopping: bool = False
    class_size: int = 0
    augment: bool = False
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @classmethod
    def create(cls, data: dict[str, Any], *, schedule: str, epochs: int, batch_size: int, probe_size: int,
               classes_per_increment: int = 5, augment: bool = False, mean=(), std=(),
               early_stopping: bool = False) -> DatasetTasks:
        if schedule not in SCHEDULES:
            raise ValueError(f'unknown problem.schedule {schedule!r}; valid: {list(SCHEDULES)}')
        if early_stopping and 'validation_counts' not in data:
            raise ValueError('problem.early_stopping needs a validation split: set problem.validation_per_class > 0')
        train_counts = np.asarray(data['train_counts'])
        num_classes = len(train_counts)

        def task_size(split):
            counts = np.asarray(data.get(f'{split}_counts', np.zeros(num_classes, np.int32)))
            if schedule.endswith('pairs'):
                return max(int(counts[a] + counts[b]) for a, b in itertools.combinations(range(num_classes), 2))
            return int(counts.sum())

        max_train, max_test = task_size('train'), task_size('test')
        uniform = bool(np.all(train_counts == train_counts[0]))
        steps_per_epoch = -(-max_train // batch_size)
        return cls(kind='classification', input_shape=tuple(data['train_x'].shape[1:]),
                   num_outputs=2 if schedule.endswith('pairs') else num_classes,
                   examples_per_task=epochs * steps_per_epoch * batch_size, batch_size=batch_size,
                   probe_size=probe_size, schedule=schedule, num_classes=num_classes, epochs=epochs,
                   classes_per_increment=classes_per_increment, max_train_examples=max_train,
                   max_test_examples=max_test, max_validation_examples=task_size('validation'),
                   early_stopping=early_stopping, class_size=int(train_counts[0]) if uniform else 0, augment=augment,
                   mean=tuple(mean), std=tuple(std))

    # -- Which classes and how many of their examples a task uses.

    @property
    def classes_per_task(self) -> int:
        """The length of the state's `classes` array (the task uses its first `num_active` entries)."""
        return 2 if self.schedule.endswith('pairs') else self.num_classes

    def _num_active(self, task: jax.Array) -> jax.Array:
        if self.schedule.endswith('pairs'):
            return jnp.int32(2)
        if self.schedule == 'class_increments':
            return jnp.minimum(self.classes_per_increment * (task + 1), self.num_classes).astype(jnp.int32)
        return jnp.int32(self.num_classes)

    def _fraction(self, task: jax.Array) -> jax.Array:
        """The share of each active class's training images the task uses."""
        if self.schedule == 'warm_start':
            return jnp.where(task == 0, WARM_START_FRACTION, 1.0)
        return jnp.float32(1.0)

    def init(self, data, key):
        order_key, pair_key, within_key = jax.random.split(key, 3)
        state = {'class_order': jax.random.permutation(order_key, self.num_classes).astype(jnp.int32),
                 'within_class_key': within_key}
        if self.schedule == 'all_pairs':
            pairs = np.array(list(itertools.combinations(range(self.num_classes), 2)), np.int32)
            state['pair_order'] = jnp.asarray(pairs)[jax.random.permutation(pair_key, len(pairs))]
        return {**state, **self._task(state, jnp.int32(0), key)}

    def _task(self, state, task, key) -> dict[str, jax.Array]:
        order = state['class_order']
        if self.schedule == 'all_pairs':
            classes = state['pair_order'][task % state['pair_order'].shape[0]]
        elif self.schedule == 'consecutive_pairs':
            classes = order[(2 * task + jnp.arange(2)) % self.num_classes]
        else:
            classes = order
        num_active = self._num_active(task)
        visible = jnp.zeros(self.num_classes, bool).at[classes].set(jnp.arange(classes.shape[0]) < num_active)
        return {'classes': classes, 'num_active': num_active, 'fraction': self._fraction(task),
                'output_mask': visible if self.schedule == 'class_increments' else jnp.ones(self.num_outputs, bool),
                'epoch_key': key}

    def start_task(self, data, state, task_index, key):
        return {**state, **self._task(state, task_index, key)}

    # -- The task's examples: rank r in [0, n) -> (class slot, image index).

    def _used_counts(self, data, state, split: str) -> jax.Array:
        """Examples of each of the state's classes this task uses (0 for inactive slots)."""
        counts = data[f'{split}_counts'][state['classes']]
        if split == 'train':
            counts = jnp.floor(counts * state['fraction']).astype(jnp.int32)
        return jnp.where(jnp.arange(self.classes_per_task) < state['num_active'], counts, 0)

    def _lookup(self, data, state, split: str, ranks: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Image indices and labels of the task's examples number `ranks` (in [0, n))."""
        used = self._used_counts(data, state, split)
        starts = jnp.cumsum(used) - used
        slot = jnp.searchsorted(starts, ranks, side='right') - 1  # the last slot starting at or before the rank
        within = ranks - starts[slot]
        classes = state['classes'][slot]
        # A per-run random order within each class, so that a `fraction` of a class is a random subset of it.
        within = jax.vmap(lambda c, j: shuffle.permute(jax.random.fold_in(state['within_class_key'], c),
                                                       data[f'{split}_counts'][c], j))(classes, within)
        index = data[f'{split}_by_class'][classes, within]
        labels = slot if self.schedule.endswith('pairs') else classes
        return index, labels.astype(jnp.int32)

    def _num_examples(self, data, state, split: str) -> jax.Array:
        return jnp.sum(self._used_counts(data, state, split))

    def _steps_per_epoch(self, num_examples: jax.Array) -> jax.Array:
        return (num_examples + self.batch_size - 1) // self.batch_size

    def active_steps(self, data, state, task):
        """epochs x ceil(n / batch_size); from the task index alone when every class has `class_size` images."""
        if self.class_size:
            fraction = self._fraction(task)
            num_examples = self._num_active(task) * jnp.floor(self.class_size * fraction).astype(jnp.int32)
        else:
            num_examples = self._num_examples(data, state, 'train')
        return self.epochs * self._steps_per_epoch(num_examples)

    def _inputs(self, images: jax.Array) -> jax.Array:
        if self.mean:
            return augment.normalize(images, self.mean, self.std)
        return images.astype(jnp.float32) / 255.0

    def batch(self, data, state, step, key):
        num_examples = self._num_examples(data, state, 'train')
        steps_per_epoch = self._steps_per_epoch(num_examples)
        epoch, within_epoch = step // steps_per_epoch, step % steps_per_epoch
        positions = (within_epoch * self.batch_size + jnp.arange(self.batch_size)) % num_examples
        ranks = shuffle.permute(jax.random.fold_in(state['epoch_key'], epoch), num_examples, positions)
        index, labels = self._lookup(data, state, 'train', ranks)
        x = self._inputs(data['train_x'][index])
        if self.augment:
            x = augment.augment(key, x)
        return x, labels

    def probe(self, data, state, key):
        del key  # The first examples of the task's first epoch are a random sample of its training images.
        num_examples = self._num_examples(data, state, 'train')
        positions = jnp.arange(self.probe_size) % num_examples
        ranks = shuffle.permute(jax.random.fold_in(state['epoch_key'], 0), num_examples, positions)
        return self._inputs(data['train_x'][self._lookup(data, state, 'train', ranks)[0]])

    def sample_inputs(self, data, state, key, size):
        ranks = jax.random.randint(key, (size,), 0, self._num_examples(data, state, 'train'))
        return self._inputs(data['train_x'][self._lookup(data, state, 'train', ranks)[0]])

    def task_outputs(self, state, outputs):
        return jnp.where(state['output_mask'], outputs, HIDDEN_LOGIT)

    def _accuracy(self, data, state, predict: Predict, split: str, max_examples: int) -> jax.Array:
        """The accuracy on the task's images of `split` (never augmented), in chunks of `EVAL_CHUNK`."""
        num_examples = self._num_examples(data, state, split)
        chunk_size = min(EVAL_CHUNK, max_examples)
        chunks = -(-max_examples // chunk_size)
        ranks = jnp.arange(chunks * chunk_size).reshape(chunks, chunk_size)

        def correct(chunk):
            valid = chunk < num_examples
            index, labels = self._lookup(data, state, split, jnp.where(valid, chunk, 0))
            hits = jnp.argmax(predict(self._inputs(data[f'{split}_x'][index])), axis=-1) == labels
            return jnp.sum(hits & valid)

        return jnp.sum(jax.lax.map(correct, ranks)) / num_examples

    def evaluate(self, data, state, predict: Predict):
        return {'test_accuracy': self._accuracy(data, state, predict, 'test', self.max_test_examples)}

    def validation_period(self, data, state, task):
        """Once per epoch: the task's steps per epoch (a function of the task index alone when every class has
        `class_size` images, so that under `vmap` the engine scores only at epoch ends; otherwise it scores at every
        step and keeps the epoch ends' scores)."""
        if not self.max_validation_examples:
            return 0
        return self.active_steps(data, state, task) // self.epochs

    def validate(self, data, state, predict: Predict):
        return self._accuracy(data, state, predict, 'validation', self.max_validation_examples)
