"""Keras callbacks of the training recipe, for plain `model.fit`: the curriculum, the MCGSM's L-BFGS
fine-tuning after every epoch, and a wall-clock deadline.  (`FitCheckpoint`, which makes `fit`
resumable, is in `ride_tf.training.checkpoint`.)"""
import time

import keras
import tensorflow as tf

from ride_tf.checks import check_integer, check_number
from ride_tf.data.streaming import random_flips
from ride_tf.defaults import NATURAL_IMAGE_PATCH_SIZES, TRAINING
from ride_tf.training.patches import as_image_list, sample_patches
from ride_tf.training.schedule import default_learning_rates

__all__ = ["PatchCurriculum", "FinetuneMCGSM", "StopAt"]


class PatchCurriculum(keras.callbacks.Callback):
    """Curriculum of patch sizes and learning rates for plain `model.fit`.

    Use `curriculum.dataset()` as fit's data and the curriculum itself as a
    callback: at the start of epoch e it switches to `patch_sizes[e]` (the
    last one afterwards) and sets the optimizer's learning rate to
    `learning_rates[e]`.  Each epoch draws `num_patches` fresh patches.
    """

    def __init__(self, images, patch_sizes=NATURAL_IMAGE_PATCH_SIZES, learning_rates=None,
                 num_patches=5000, batch_size=50, num_channels=1, flips=True, seed=0):
        super().__init__()
        self.images = as_image_list(images, num_channels)
        self.patch_sizes = [check_integer("PatchCurriculum", f"patch_sizes[{k}]", p, 1)
                            for k, p in enumerate(patch_sizes)]
        if not self.patch_sizes:
            raise ValueError("PatchCurriculum: patch_sizes is empty.")
        self.learning_rates = (default_learning_rates("sgd", len(self.patch_sizes)) if learning_rates is None
                               else [check_number("PatchCurriculum", f"learning_rates[{k}]", v, low=0.0,
                                                  low_open=True) for k, v in enumerate(learning_rates)])
        check_integer("PatchCurriculum", "num_patches", num_patches, 1)
        check_integer("PatchCurriculum", "batch_size", batch_size, 1)
        self.num_patches, self.batch_size = int(num_patches), int(batch_size)
        self.num_channels, self.flips, self.seed = num_channels, flips, seed
        self.epoch = 0

    @property
    def patch_size(self):
        return self.patch_sizes[min(self.epoch, len(self.patch_sizes) - 1)]

    def _generate(self):
        patches = sample_patches(self.images, self.patch_size, self.num_patches, self.num_channels,
                                 seed=self.seed + self.epoch)
        for start in range(0, len(patches) - self.batch_size + 1, self.batch_size):
            yield patches[start:start + self.batch_size]

    def dataset(self):
        dtype = tf.as_dtype(self.images[0].dtype)
        spec = tf.TensorSpec([self.batch_size, None, None, self.num_channels], dtype)
        ds = tf.data.Dataset.from_generator(self._generate, output_signature=spec)
        if self.flips:
            flip_seeds = tf.data.Dataset.random(seed=self.seed).batch(2 * self.batch_size)
            ds = tf.data.Dataset.zip((ds, flip_seeds)).map(
                lambda b, s: tf.map_fn(lambda args: random_flips(*args), (b, tf.reshape(s, [-1, 2])),
                                       fn_output_signature=spec.dtype))
        return ds.prefetch(2)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        lr = self.learning_rates[min(epoch, len(self.learning_rates) - 1)]
        self.model.optimizer.learning_rate.assign(lr)


class FinetuneMCGSM(keras.callbacks.Callback):
    """After every epoch, fine-tune the MCGSM alone by L-BFGS on a fixed sample of pixels.

    The pixels are those of `patches` (uint8/float [M, P, P, C]), fixed at
    construction, so every epoch fine-tunes on the same data.
    """

    def __init__(self, patches, max_iter=TRAINING["finetune_max_iter"], num_samples=TRAINING["finetune_samples"],
                 seed=0, verbose=0):
        super().__init__()
        check_integer("FinetuneMCGSM", "max_iter", max_iter, 0)
        check_integer("FinetuneMCGSM", "num_samples", num_samples, 1)
        self.patches, self.max_iter, self.num_samples = patches, max_iter, num_samples
        self.seed, self.verbose = seed, verbose
        self.results = []

    def on_epoch_end(self, epoch, logs=None):
        result = self.model.finetune(self.patches, max_iter=self.max_iter, num_samples=self.num_samples,
                                     seed=self.seed, verbose=self.verbose)
        self.results.append(result)
        if logs is not None:
            logs["finetune_bits_per_pixel"] = result.validation_rate


class StopAt(keras.callbacks.Callback):
    """Stops `fit` after the first batch that ends later than `deadline` (time.monotonic())."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True
