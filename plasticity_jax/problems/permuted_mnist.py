"""Online Permuted MNIST (Dohare dissertation, Sec. 4.1; Dohare et al., Nature 2024).

Each task applies a new random pixel permutation to all 60,000 MNIST training images and presents them one by one
(batch size 1) in a fresh random order; the learner sees each example once, and `examples_per_task` (the
task-switching interval: 10k, 60k, 100k, 1M in the dissertation's Fig. 4.4) can exceed 60,000, in which case the
task's order is cycled, as in the papers' code. With `reshuffle_each_epoch` (the minibatch variant of "Neural
Network Plasticity and Loss Sharpness": several epochs of minibatch SGD per task) every further pass over the images
is in a fresh random order (`problems.shuffle`). The online accuracy is the fraction of the task's examples classified
correctly before the update on them; at the end of each task the network is also scored on the 10,000 test images
under the same permutation (`test_accuracy`).

Pixels are scaled to [0, 1] (the papers' data pipeline divides by 255). Images stay on the device as uint8 and
are permuted and scaled per step, so a task costs no host round-trip and no copy of the dataset.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_jax.problems import shuffle
from plasticity_jax.problems.base import Predict, Problem

EVAL_CHUNK = 1000  # test images per forward pass at the end of a task (bounds memory with many vmapped seeds)


@dataclasses.dataclass(frozen=True)
class PermutedMNIST(Problem):
    """Data: {'train_x': uint8 (N, 784), 'train_y': int32 (N,), 'test_x': uint8 (M, 784), 'test_y': int32 (M,)}."""

    reshuffle_each_epoch: bool = False

    @staticmethod
    def make_data(train_images, train_labels, test_images, test_labels) -> dict[str, jax.Array]:
        return jax.device_put(PermutedMNIST.host_data(train_images, train_labels, test_images, test_labels))

    @staticmethod
    def host_data(train_images, train_labels, test_images, test_labels) -> dict[str, np.ndarray]:
        """`make_data` before the upload (what `problems.make_problem` uploads, or only measures when planning)."""
        flat = lambda images: np.asarray(images, np.uint8).reshape(len(images), -1)
        return {'train_x': flat(train_images), 'train_y': np.asarray(train_labels, np.int32),
                'test_x': flat(test_images), 'test_y': np.asarray(test_labels, np.int32)}

    def init(self, data, key):
        num_pixels = data['train_x'].shape[1]
        num_train = data['train_x'].shape[0]
        return {'pixel_permutation': jnp.arange(num_pixels, dtype=jnp.int32),
                'example_order': jnp.arange(num_train, dtype=jnp.int32), 'epoch_key': key}

    def start_task(self, data, state, task_index, key):
        del state, task_index
        pixel_key, order_key, epoch_key = jax.random.split(key, 3)
        return {'pixel_permutation': jax.random.permutation(pixel_key, data['train_x'].shape[1]).astype(jnp.int32),
                'example_order': jax.random.permutation(order_key, data['train_x'].shape[0]).astype(jnp.int32),
                'epoch_key': epoch_key}

    def _inputs(self, images, state):
        return images[:, state['pixel_permutation']].astype(jnp.float32) / 255.0

    def batch(self, data, state, step, key):
        del key  # The task's example order already holds its randomness.
        num_train = state['example_order'].shape[0]
        epoch, positions = jnp.divmod(step * self.batch_size + jnp.arange(self.batch_size), num_train)
        if self.reshuffle_each_epoch:  # Epoch 0 keeps the task's order; epoch e > 0 permutes it again.
            reordered = jax.vmap(lambda e, p: shuffle.permute(jax.random.fold_in(state['epoch_key'], e), num_train,
                                                              p))(epoch, positions)
            positions = jnp.where(epoch > 0, reordered, positions)
        index = state['example_order'][positions]
        return self._inputs(data['train_x'][index], state), data['train_y'][index]

    def probe(self, data, state, key):
        del key  # The first `probe_size` examples of the task's random order are a random sample of its images.
        index = state['example_order'][:self.probe_size]
        return self._inputs(data['train_x'][index], state)

    def sample_inputs(self, data, state, key, size):
        index = jax.random.randint(key, (size,), 0, data['train_x'].shape[0])
        return self._inputs(data['train_x'][index], state)

    def evaluate(self, data, state, predict: Predict):
        num_test = data['test_x'].shape[0]
        chunks = -(-num_test // EVAL_CHUNK)
        index = jnp.arange(chunks * EVAL_CHUNK)
        valid = index < num_test
        index = jnp.where(valid, index, 0).reshape(chunks, EVAL_CHUNK)

        def correct(chunk_index):
            outputs = predict(self._inputs(data['test_x'][chunk_index], state))
            return jnp.argmax(outputs, axis=-1) == data['test_y'][chunk_index]

        hits = jax.lax.map(correct, index).reshape(-1)
        return {'test_accuracy': jnp.sum(hits & valid) / num_test}
