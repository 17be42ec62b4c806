"""The training patches: random square crops of in-memory images, flipped, as a tf.data pipeline.

Patches travel as uint8 and are dequantized inside the model (fresh uniform
noise every step), so the pipeline is light and exact to the data protocol.
Crops, flips and shuffling are functions of the seed, so a resumed run sees
the patches of an uninterrupted one.  (Data larger than memory:
`ride_tf.data.streaming.streaming_patches`, with the same flips.)
"""
import numpy as np
import tensorflow as tf

from ride_tf.checks import check_bool, check_images, check_integer
from ride_tf.data.streaming import random_flips
from ride_tf.defaults import TRAINING

__all__ = ["as_image_list", "sample_patches", "patch_dataset"]


def as_image_list(images, num_channels, name="images"):
    """A batch array [N, H, W(, C)] or a list of [H, W(, C)] arrays -> list of [H, W, C] uint8/float arrays."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name}: the list of images is empty.")
        return [check_images(np.asarray(im)[np.newaxis], num_channels, name=f"{name}[{k}]")[0]
                for k, im in enumerate(images)]
    return list(check_images(images, num_channels, name=name))


def sample_patches(images, patch_size, num_patches, num_channels=1, seed=0):
    """Random square crops: NumPy [num_patches, P, P, C] of the images' dtype.

    `images` is a batch [N, H, W(, C)] or a list of images of different sizes;
    crops are drawn uniformly over images (weighted by their number of crop
    positions) and positions.
    """
    patch_size = check_integer("sample_patches", "patch_size", patch_size, 1)
    num_patches = check_integer("sample_patches", "num_patches", num_patches, 1)
    images = as_image_list(images, num_channels)
    sizes = np.array([max(im.shape[0] - patch_size + 1, 0) * max(im.shape[1] - patch_size + 1, 0)
                      for im in images])
    if (sizes <= 0).all():
        raise ValueError(f"sample_patches: every image is smaller than the patch size {patch_size}.")
    sizes = np.maximum(sizes, 0)
    rng = np.random.default_rng(seed)
    which = rng.choice(len(images), size=num_patches, p=sizes / sizes.sum())
    patches = np.empty((num_patches, patch_size, patch_size, num_channels), images[0].dtype)
    for k, i in enumerate(which):
        im = images[i]
        top = rng.integers(0, im.shape[0] - patch_size + 1)
        left = rng.integers(0, im.shape[1] - patch_size + 1)
        patches[k] = im[top:top + patch_size, left:left + patch_size]
    return patches


def patch_dataset(images, patch_size, num_patches, batch_size=TRAINING["batch_size"], num_channels=1, flips=True,
                  seed=0, drop_remainder=True):
    """A tf.data pipeline of random patches [batch, P, P, C] with optional random flips.

    One pass over it is one epoch of `num_patches` patches (drawn once, with
    `seed`); it is shuffled every pass.
    """
    for name, value in [("batch_size", batch_size), ("num_channels", num_channels)]:
        check_integer("patch_dataset", name, value, 1)
    check_bool("patch_dataset", "flips", flips)
    patches = sample_patches(images, patch_size, num_patches, num_channels, seed)
    ds = tf.data.Dataset.from_tensor_slices(patches).shuffle(len(patches), seed=seed,
                                                             reshuffle_each_iteration=True)
    if flips:
        flip_seeds = tf.data.Dataset.random(seed=seed).batch(2)      # one seed pair per patch, repeatable
        ds = tf.data.Dataset.zip((ds, flip_seeds)).map(random_flips, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
