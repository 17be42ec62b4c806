"""The data protocol: 8-bit values <-> continuous intensities, and nats -> bit/px, each written once.

The models are densities over continuous intensities y in [0, 1).  An 8-bit
value k in {0..255} is the bin [k/256, (k+1)/256) of intensities (`NUM_BINS`
bins).  The paper's protocol dequantizes k as (k + u) / 256 with u ~ U[0, 1)
(`dequantize`); with that convention the log-likelihood rate r (bit/px) of
the continuous model bounds the lossless code length of the 8-bit image:
-log2 P(k) <= 8 - r bits per pixel (and channel) on average.  The context a
decoder knows is the bin centre (k + 1/2) / 256 (`bin_centres`, also
`dequantize(noise=False)`); `quantize` maps intensities back to k = floor(256 y).

Every function here accepts NumPy arrays and TensorFlow tensors and returns
the same kind (`dequantize` returns a tensor).
"""
import numpy as np
import tensorflow as tf

from ride_tf.checks import check_bool, check_integer

__all__ = ["NUM_BINS", "LN2", "bin_centres", "dequantize", "quantize", "to_bits_per_pixel", "nats_to_bits"]

NUM_BINS = 256
LN2 = float(np.log(2.0))


def _is_numpy(values):
    return isinstance(values, (np.ndarray, list, tuple, float, int, np.number))


def bin_centres(values):
    """uint8 values k -> float32 intensities (k + 1/2) / 256, the context a decoder knows (NumPy or Tensor)."""
    if _is_numpy(values):
        return (np.asarray(values).astype(np.float32) + 0.5) / NUM_BINS
    return (tf.cast(values, tf.float32) + 0.5) / NUM_BINS


def nats_to_bits(nats):
    """Nats -> bits, nats / ln 2 (NumPy, Tensors or floats)."""
    return nats / LN2


def to_bits_per_pixel(nats, num_channels=1):
    """Nats per pixel -> bit per pixel and channel, nats / (C ln 2) (NumPy, Tensors or floats)."""
    num_channels = check_integer("to_bits_per_pixel", "num_channels", num_channels, 1)
    return nats_to_bits(nats) / num_channels


def quantize(images):
    """The inverse of `dequantize`: intensities in [0, 1] -> uint8 k = floor(256 x), clipped to 0..255.

    Works on NumPy arrays and Tensors (in tf graphs).  NaN has no 8-bit value: NumPy input with NaN
    raises ValueError."""
    if _is_numpy(images):
        images = np.asarray(images)
        if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
            raise ValueError(f"quantize: expected intensities (floats), got dtype {images.dtype}.")
        if np.isnan(images).any():
            raise ValueError(f"quantize: the intensities contain {int(np.isnan(images).sum())} NaN value(s).")
        return np.clip(np.floor(images * float(NUM_BINS)), 0, NUM_BINS - 1).astype(np.uint8)
    return tf.cast(tf.clip_by_value(tf.floor(images * float(NUM_BINS)), 0.0, NUM_BINS - 1.0), tf.uint8)


def dequantize(images, noise=True, seed=None):
    """uint8 [..] -> float32 Tensor (k + u) / 256, u ~ U[0, 1) (or the bin centre with noise=False); works in graphs.

    `seed` (an int or a shape-[2] tensor) makes the noise deterministic.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise ValueError(f"dequantize: expected uint8 intensities, got dtype {images.dtype.name}.")
    noise = check_bool("dequantize", "noise", noise)
    if isinstance(seed, (bool, np.bool_, float, str, bytes)) or (
            isinstance(seed, (int, np.integer)) and not 0 <= seed < 2 ** 63):
        raise ValueError(f"dequantize: seed must be None, an integer in [0, 2**63) or a shape-[2] integer "
                         f"tensor, got {seed!r}.")
    if not noise:
        return bin_centres(images)
    if seed is None:
        u = tf.random.uniform(tf.shape(images), dtype=tf.float32)
    else:
        seed = tf.constant([int(seed), 0]) if isinstance(seed, (int, np.integer)) else seed
        u = tf.random.stateless_uniform(tf.shape(images), seed=seed, dtype=tf.float32)
    return (tf.cast(images, tf.float32) + u) / NUM_BINS
