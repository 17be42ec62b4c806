"""Preparing the models' input: the Keras path's tensor check and the NumPy path's dequantized batches.

The argument checks live in `ride_tf.checks` (without TensorFlow) and the
data protocol (8-bit values <-> intensities, nats -> bit/px) in
`ride_tf.quantization`; their names are importable from here too.

What the models accept:
  * uint8 arrays: dequantized as (k + u) / 256 (u uniform, seedable), or
    with `noise=False` as the bin centres (k + 0.5) / 256;
  * float arrays: taken as already-dequantized intensities, which must lie in
    [0, 1] and be finite.
Any other dtype (e.g. uint16 van Hateren data) is refused: scale it first.
Shapes: [N, H, W, C], or [N, H, W] for single-channel models.
"""
import numpy as np
import tensorflow as tf

from ride_tf.checks import check_bool, check_images, check_integer, check_number, check_seed  # noqa: F401
from ride_tf.quantization import LN2, dequantize, quantize, to_bits_per_pixel  # noqa: F401

__all__ = ["check_images", "check_image_tensor", "check_integer", "check_bool", "check_number", "check_seed",
           "dequantize", "quantize", "prepare_images", "to_bits_per_pixel"]


def check_image_tensor(images, num_channels, name="images"):
    """The input check of the Keras path (`RIDE.call`, so `model(x)`, `fit`, `evaluate`, `predict`).

    Returns the images as a Tensor [N, H, W, C] (rank 3 gets a channel axis
    for single-channel models).  Dtype, rank and channel count are checked
    when the graph is built (ValueError).  The values of float images (finite,
    in [0, 1]) are checked by `check_images` when running eagerly (ValueError
    with the same messages as the NumPy-facing methods) and otherwise by
    tf.debugging assert ops in the graph (`InvalidArgumentError` whose message
    names the problem): two reductions per batch, cheap next to the model.
    """
    images = tf.convert_to_tensor(images)
    dtype = images.dtype
    if dtype != tf.uint8 and not dtype.is_floating:
        raise ValueError(f"{name}: dtype {dtype.name} is not supported: pass uint8 intensities or floats in "
                         "[0, 1] (already dequantized).")
    rank = images.shape.rank
    if rank == 3 and num_channels == 1:
        images = images[..., tf.newaxis]
    elif rank is not None and rank != 4:
        expected = "[N, H, W] or [N, H, W, 1]" if num_channels == 1 else f"[N, H, W, {num_channels}]"
        raise ValueError(f"{name}: expected shape {expected}, got rank {rank} with shape {images.shape}.")
    elif rank is None:
        images = tf.ensure_shape(images, [None, None, None, num_channels])
    channels = images.shape[-1]
    if channels is not None and channels != num_channels:
        raise ValueError(f"{name}: the model has {num_channels} channel(s) but the images have {channels} "
                         f"(shape {images.shape}).")
    if dtype == tf.uint8:
        return images
    if tf.executing_eagerly():
        check_images(images, num_channels, name=name)
        return images
    finite = tf.debugging.assert_equal(
        tf.reduce_all(tf.math.is_finite(images)), True,
        message=f"{name}: contains NaN or infinite values (float images must be finite intensities in [0, 1])")
    with tf.control_dependencies([finite]):
        in_range = tf.debugging.assert_equal(
            tf.logical_and(tf.reduce_min(images) >= 0, tf.reduce_max(images) <= 1), True,
            message=f"{name}: float intensities must lie in [0, 1] (pass uint8 for 8-bit data; "
                    "scale 0..255 floats by 1/256 after adding dequantization noise)")
    with tf.control_dependencies([in_range]):
        return tf.identity(images)


def prepare_images(images, num_channels, nb_size=None, noise=True, seed=None, name="images"):
    """check_images, then dequantize uint8 input; returns float32 NumPy [N, H, W, C] in [0, 1]."""
    images = check_images(images, num_channels, nb_size, name=name)
    if images.dtype == np.uint8:
        return dequantize(images, noise=noise, seed=seed).numpy()
    return images.astype(np.float32)
