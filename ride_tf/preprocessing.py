"""Input checking and the paper's data protocol (8-bit intensities -> continuous values).

The models are densities over continuous intensities in [0, 1).  The paper's
protocol turns an 8-bit image k in {0..255} into (k + u) / 256 with
u ~ U[0, 1).  With that convention the log-likelihood rate r (bit/px) of the
continuous model bounds the lossless code length of the 8-bit image:
-log2 P(k) <= 8 - r bits per pixel (and channel) on average.

What the models accept:
  * uint8 arrays: dequantized here as (k + u) / 256 (u uniform, seedable), or
    with `noise=False` as the bin centres (k + 0.5) / 256;
  * float arrays: taken as already-dequantized intensities, which must lie in
    [0, 1] and be finite.
Any other dtype (e.g. uint16 van Hateren data) is refused: scale it first.
Shapes: [N, H, W, C], or [N, H, W] for single-channel models.
"""
import numpy as np
import tensorflow as tf

__all__ = ["check_images", "check_image_tensor", "check_integer", "check_bool", "check_number", "check_seed",
           "dequantize", "quantize", "prepare_images", "to_bits_per_pixel"]

LN2 = float(np.log(2.0))


def check_integer(owner, name, value, low, high=None):
    """`value` as an int, or ValueError "{owner}: {name} must be an integer >= {low}, got ..."

    bool and float values are refused, not coerced (True, 2.5 and 2.0 all raise)."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
            or (high is not None and value > high)):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}: {name} must be an integer {bounds}, got {value!r}.")
    return int(value)


def check_bool(owner, name, value):
    """`value` as a bool, or ValueError: only True and False (also NumPy's) are accepted, not "False" or 0."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}.")
    return bool(value)


def check_number(owner, name, value, low=None, high=None, low_open=False, high_open=False):
    """`value` as a finite float in the given range, or ValueError naming it (strings and bools are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}.")
    value = float(value)
    bad = (not np.isfinite(value)
           or (low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high:g}")
        what = " and ".join(["finite"] + bounds)
        raise ValueError(f"{owner}: {name} must be {what}, got {value!r}.")
    return value


def check_seed(owner, value, name="seed", allow_none=True):
    """A seed: None (when allowed) or an integer in [0, 2^63); anything else is a ValueError naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2 ** 63:
        raise ValueError(f"{owner}: {name} must be {'None or ' if allow_none else ''}an integer in "
                         f"[0, 2**63), got {value!r}.")
    return int(value)


def to_bits_per_pixel(nats, num_channels=1):
    """Nats per pixel -> bit per pixel and channel, nats / (C ln 2) (NumPy, Tensors or floats)."""
    num_channels = check_integer("to_bits_per_pixel", "num_channels", num_channels, 1)
    return nats / (num_channels * LN2)


def quantize(images):
    """The inverse of `dequantize`: intensities in [0, 1] -> uint8 k = floor(256 x), clipped to 0..255.

    Works on NumPy arrays and Tensors (in tf graphs).  NaN has no 8-bit value: NumPy input with NaN
    raises ValueError."""
    if isinstance(images, (np.ndarray, list, tuple, float, int, np.number)):
        images = np.asarray(images)
        if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
            raise ValueError(f"quantize: expected intensities (floats), got dtype {images.dtype}.")
        if np.isnan(images).any():
            raise ValueError(f"quantize: the intensities contain {int(np.isnan(images).sum())} NaN value(s).")
        return np.clip(np.floor(images * 256.0), 0, 255).astype(np.uint8)
    return tf.cast(tf.clip_by_value(tf.floor(images * 256.0), 0.0, 255.0), tf.uint8)


def check_images(images, num_channels, nb_size=None, name="images"):
    """Validate a batch of images and return it as a NumPy array [N, H, W, C].

    Raises ValueError naming the problem: wrong rank, wrong channel count, images
    smaller than the neighbourhood, NaN or infinite values, values out of range,
    unsupported dtype.
    """
    if isinstance(images, tf.Tensor):
        images = images.numpy()
    images = np.asarray(images)
    if images.dtype == object:
        raise ValueError(f"{name}: expected a numeric array, got an object array "
                         "(images of different sizes must be passed one batch per size).")
    if images.ndim == 3 and num_channels == 1:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        expected = "[N, H, W] or [N, H, W, 1]" if num_channels == 1 else f"[N, H, W, {num_channels}]"
        raise ValueError(f"{name}: expected shape {expected}, got rank {images.ndim} with shape {images.shape}.")
    if images.shape[-1] != num_channels:
        raise ValueError(f"{name}: the model has {num_channels} channel(s) but the images have "
                         f"{images.shape[-1]} (shape {images.shape}).")
    if images.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty.")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"{name}: images must be at least 1 x 1 pixels, got {images.shape[1]} x {images.shape[2]}.")
    if nb_size is not None:
        r = nb_size // 2
        if images.shape[1] < r + 1 or images.shape[2] < 2 * r + 1:
            raise ValueError(f"{name}: images of {images.shape[1]} x {images.shape[2]} pixels are smaller "
                             f"than the causal neighbourhood (nb_size={nb_size} needs at least "
                             f"{r + 1} x {2 * r + 1}).")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{name}: dtype {images.dtype} is not supported: pass uint8 intensities or "
                         "floats in [0, 1] (already dequantized).")
    if not np.isfinite(images).all():
        raise ValueError(f"{name}: contains {int((~np.isfinite(images)).sum())} NaN or infinite value(s).")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name}: float intensities must lie in [0, 1], got values in [{low:g}, {high:g}] "
                         "(pass uint8 for 8-bit data).")
    return images


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


def dequantize(images, noise=True, seed=None):
    """uint8 [..] -> float32 (k + u) / 256, u ~ U[0, 1) (or 0.5 with noise=False); works in tf graphs.

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
    images = tf.cast(images, tf.float32)
    if not noise:
        return (images + 0.5) / 256.0
    if seed is None:
        u = tf.random.uniform(tf.shape(images), dtype=tf.float32)
    else:
        seed = tf.constant([int(seed), 0]) if isinstance(seed, (int, np.integer)) else seed
        u = tf.random.stateless_uniform(tf.shape(images), seed=seed, dtype=tf.float32)
    return (images + u) / 256.0


def prepare_images(images, num_channels, nb_size=None, noise=True, seed=None, name="images"):
    """check_images, then dequantize uint8 input; returns float32 NumPy [N, H, W, C] in [0, 1]."""
    images = check_images(images, num_channels, nb_size, name=name)
    if images.dtype == np.uint8:
        return dequantize(images, noise=noise, seed=seed).numpy()
    return images.astype(np.float32)
