"""The training input pipeline: shuffled batches of the images in memory, augmented per batch.

Augmentation lives here, outside the model, so that the exported SavedModel is the plain network
(augmentation layers in the graph made Keras 3.15's export disagree with the trained model).
Each batch is gathered from the arrays by shuffled indices and augmented with whole-batch tensor
ops: no per-image Python or per-image dataset elements, so the pipeline costs a few percent of a
train step on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from network import INPUT_SHAPE, Recipe, to_target


def flip_horizontally(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirror a random half of the (N, 28, 28) images left to right."""
    mirrored = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < 0.5
    return tf.where(mirrored[:, None, None], tf.reverse(images, axis=[2]), images)


def shift(images: tf.Tensor, pixels: int, seed: tf.Tensor) -> tf.Tensor:
    """Move each (N, 28, 28) image by its own random offset of -pixels..pixels along each axis, zeros in."""
    count = tf.shape(images)[0]
    padded = tf.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels]])
    offsets = tf.random.stateless_uniform((2, count), seed, minval=0, maxval=2 * pixels + 1, dtype=tf.int32)
    side = tf.range(INPUT_SHAPE[0])
    rows = tf.gather(padded, offsets[0][:, None] + side, batch_dims=1)
    return tf.gather(rows, offsets[1][:, None] + tf.range(INPUT_SHAPE[1]), axis=2, batch_dims=1)


def training_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, recipe: Recipe, seed: int) -> Any:
    """Batches of (float32 raw pixels (N, 28, 28), one-hot targets), reshuffled every epoch, with
    ``recipe``'s augmentation; the same ``seed`` gives the same batches in the same order."""
    x = tf.constant(images, dtype=tf.uint8)
    y = tf.constant(to_target(labels))

    def gather(indices: tf.Tensor, draw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch = tf.cast(tf.gather(x, indices), tf.float32)
        step_seed = tf.stack([tf.cast(seed, tf.int64), draw])
        if recipe.flip:
            batch = flip_horizontally(batch, step_seed)
        if recipe.shift:
            batch = shift(batch, recipe.shift, step_seed + 1)
        return batch, tf.gather(y, indices)

    # Keras iterates the dataset afresh every epoch: both the order and the per-batch draws that
    # seed the augmentation change from one iteration to the next.
    order = tf.data.Dataset.range(len(images)).shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return (
        tf.data.Dataset.zip(order.batch(batch_size), draws)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
