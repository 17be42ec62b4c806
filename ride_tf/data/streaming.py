"""Training data larger than memory: image files and TFRecord shards read lazily, sharded per worker.

`ride_tf.training` draws its patches from images held in memory.  For data
sets that do not fit, this module streams them from disk with `tf.data`:

    files = data.image_files("photos/")                       # sorted PNG/JPEG/GIF/BMP paths
    shards = data.write_tfrecords(files, "shards/train", num_shards=8)
    ds = data.streaming_patches(shards, patch_size=16, batch_size=50)   # or data.streaming_patches(files, ...)
    model.fit(ds, steps_per_epoch=1000)

What is in memory at any time: `cycle_length` decoded images, the shuffle
buffer of patches (`shuffle_buffer` x P x P x C bytes) and the prefetched
batches, whatever the size of the data set.

Sharding: with `num_shards` / `shard_index` (or a `tf.distribute.InputContext`
from `strategy.distribute_datasets_from_function`) each worker reads only
its own files, so that workers see disjoint data.  Under Keras `fit` with a
multi-worker strategy, a dataset built from files is also sharded by file
automatically.

A file that cannot be decoded is skipped with a warning instead of stopping a
long training run; a source with no usable file raises ValueError.
"""
import glob
import os

import numpy as np
import tensorflow as tf

from ride_tf.checks import check_integer

__all__ = ["IMAGE_EXTENSIONS", "image_files", "write_tfrecords", "streaming_patches", "random_flips"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
_FEATURE = "image"


def image_files(folder, extensions=IMAGE_EXTENSIONS):
    """The image files of `folder` (not recursive) whose names end with `extensions`, sorted."""
    if not os.path.isdir(folder):
        raise ValueError(f"image_files: {folder!r} is not a directory.")
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if name.lower().endswith(tuple(extensions)) and os.path.isfile(os.path.join(folder, name)))
    if not files:
        raise ValueError(f"image_files: no image files ({', '.join(extensions)}) in {folder!r}.")
    return files


def _encoded(image_or_path):
    """PNG or JPEG bytes of an image array [H, W(, C)] uint8 or an image file."""
    if isinstance(image_or_path, (str, os.PathLike)):
        path = os.fspath(image_or_path)
        with open(path, "rb") as stream:
            data = stream.read()
        if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff":
            return data
        from ride_tf.data.files import load_image    # other formats: decode and store as PNG

        image_or_path = load_image(path, mode="rgb" if _is_colour(path) else "gray")
    image = np.asarray(image_or_path)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"write_tfrecords: images must be uint8 [H, W] or [H, W, C], got {image.dtype} "
                         f"{image.shape}.")
    if image.ndim == 2:
        image = image[..., None]
    return tf.io.encode_png(image).numpy()


def _is_colour(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1", "LA")


def write_tfrecords(images, prefix, num_shards=1):
    """Write images (arrays or image files) into `num_shards` TFRecord files; returns their paths.

    Image k goes to shard k % num_shards, as a tf.train.Example with one
    bytes feature "image" (PNG, or the file's own PNG/JPEG bytes).  Each shard
    is written under a temporary name and renamed when complete.
    """
    num_shards = check_integer("write_tfrecords", "num_shards", num_shards, 1)
    images = list(images)
    if not images:
        raise ValueError("write_tfrecords: no images to write.")
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    paths = [f"{prefix}-{k:05d}-of-{num_shards:05d}.tfrecord" for k in range(num_shards)]
    temporary = [os.path.join(directory, f".{os.path.basename(p)}.tmp-{os.getpid()}") for p in paths]
    writers = [tf.io.TFRecordWriter(t) for t in temporary]
    try:
        for k, image in enumerate(images):
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[_encoded(image)]))
            example = tf.train.Example(features=tf.train.Features(feature={_FEATURE: feature}))
            writers[k % num_shards].write(example.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    for t, p in zip(temporary, paths):
        os.replace(t, p)
    return paths


def _sources(source):
    """(file paths, kind) with kind "images" or "tfrecord"."""
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if os.path.isdir(source):
            return image_files(source), "images"
        files = sorted(glob.glob(source))
        if not files:
            raise ValueError(f"streaming_patches: no file matches {source!r}.")
    else:
        files = [os.fspath(f) for f in source]
        if not files:
            raise ValueError("streaming_patches: the list of files is empty.")
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise ValueError(f"streaming_patches: {len(missing)} file(s) do not exist, e.g. {missing[0]!r}.")
    kinds = {"tfrecord" if f.endswith((".tfrecord", ".tfrecords")) else "images" for f in files}
    if len(kinds) > 1:
        raise ValueError("streaming_patches: mix of TFRecord and image files; pass one kind.")
    return files, kinds.pop()


def streaming_patches(source, patch_size, batch_size=50, num_channels=1, patches_per_image=16, flips=True,
                      seed=0, shuffle_buffer=4096, cycle_length=2, num_shards=None, shard_index=None,
                      input_context=None, repeat=True):
    """A tf.data pipeline of random uint8 patches [batch_size, P, P, C] read lazily from disk.

    Args:
      source: a folder of image files, a glob pattern, or a list of image or
        TFRecord files (`write_tfrecords`).
      patch_size: P; images smaller than P x P are skipped.
      batch_size, num_channels: the batches' shape (images are decoded to
        `num_channels` channels: 1 gray, 3 RGB).
      patches_per_image: random crops taken from each decoded image before it
        is released.
      flips: random left-right and up-down flips, as `ride_tf.training`.
      seed: makes file order, crops and shuffling repeatable.
      shuffle_buffer: patches mixed across images (memory: buffer x P^2 x C bytes).
      cycle_length: images read and decoded in parallel.
      num_shards, shard_index: read only every num_shards-th file from
        shard_index on (one worker's share); or pass `input_context`.
      repeat: cycle over the files forever (for `fit(steps_per_epoch=...)`).

    Returns:
      tf.data.Dataset of uint8 [batch_size, P, P, num_channels] (the model
      dequantizes uint8 batches itself).
    """
    patch_size = check_integer("streaming_patches", "patch_size", patch_size, 1)
    batch_size = check_integer("streaming_patches", "batch_size", batch_size, 1)
    patches_per_image = check_integer("streaming_patches", "patches_per_image", patches_per_image, 1)
    shuffle_buffer = check_integer("streaming_patches", "shuffle_buffer", shuffle_buffer, 1)
    cycle_length = check_integer("streaming_patches", "cycle_length", cycle_length, 1)
    if num_channels not in (1, 3):
        raise ValueError(f"streaming_patches: num_channels must be 1 or 3, got {num_channels!r}.")
    if input_context is not None:
        num_shards, shard_index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if (num_shards is None) != (shard_index is None):
        raise ValueError("streaming_patches: pass both num_shards and shard_index, or neither.")
    files, kind = _sources(source)
    if num_shards is not None:
        num_shards = check_integer("streaming_patches", "num_shards", num_shards, 1)
        shard_index = check_integer("streaming_patches", "shard_index", shard_index, 0)
        if shard_index >= num_shards:
            raise ValueError(f"streaming_patches: shard_index {shard_index} must be < num_shards {num_shards}.")
        shard = files[shard_index::num_shards]
        if not shard:
            raise ValueError(f"streaming_patches: shard {shard_index} of {num_shards} has no file "
                             f"({len(files)} file{'' if len(files) == 1 else 's'} in all).")
        files = shard

    def decode(data):
        image = tf.io.decode_image(data, channels=num_channels, dtype=tf.uint8, expand_animations=False)
        return tf.ensure_shape(image, [None, None, num_channels])

    def records(path):
        if kind == "images":
            return tf.data.Dataset.from_tensors(tf.io.read_file(path))
        parse = lambda record: tf.io.parse_single_example(
            record, {_FEATURE: tf.io.FixedLenFeature([], tf.string)})[_FEATURE]
        return tf.data.TFRecordDataset(path).map(parse)

    def crops(image, crop_seed):
        seeds = tf.random.experimental.stateless_split(crop_seed, patches_per_image)
        return tf.data.Dataset.from_tensor_slices(seeds).map(
            lambda s: tf.image.stateless_random_crop(image, [patch_size, patch_size, num_channels], s))

    big_enough = lambda image: tf.reduce_all(tf.shape(image)[:2] >= patch_size)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if repeat:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(records, cycle_length=cycle_length, num_parallel_calls=cycle_length, deterministic=True)
    ds = ds.map(decode, num_parallel_calls=cycle_length).ignore_errors(log_warning=True).filter(big_enough)
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
    ds = ds.flat_map(lambda image, s: crops(image, tf.cast(s, tf.int64)))
    ds = ds.shuffle(shuffle_buffer, seed=seed)
    if flips:
        flip_seeds = tf.data.Dataset.random(seed=seed + 1).batch(2)      # one seed pair per patch, repeatable
        ds = tf.data.Dataset.zip((ds, flip_seeds)).map(random_flips, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def random_flips(patch, seed):
    """Random left-right and up-down flips of one patch [P, P, C], a function of `seed` [2] (repeatable in any
    process): the data augmentation of the paper's recipe (`ride_tf.training.patches` uses it too)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    patch = tf.image.stateless_random_flip_left_right(patch, seeds[0])
    return tf.image.stateless_random_flip_up_down(patch, seeds[1])
