"""Ancestral sampling of RIDE in wavefront order (paper sections 3.4: textures, inpainting).

The sampler is one wavefront pass (`ride_tf.wavefront.Wavefront.run`, a
`tf.while_loop` over the (r + 1)(H - 1) + W fronts); on each front it computes the top LSTM states of the
front's pixels (`Wavefront.features`), draws the mixture component and the
Gaussian for all of them, in all images, in one batched call
(`MCGSMDistribution.sample_from_noise`), un-whitens them (W^-1 computed once,
before the loop) and writes them into the canvas.

Randomness: the draws of image n are a function of (seed, n) only (stateless
random ops): one uniform (the component) and C standard normals (the
Gaussian) per pixel, drawn before the loop.  So a seed gives the same images
whatever the batch size, and `draws` lets a reference sampler use the same
numbers.

Range: a Gaussian mixture puts a little mass outside [0, 1).  Values drawn
there are clipped to [0, 1) before they are written, so later pixels are
conditioned on exactly the values returned (`continuous=True`); uint8 output
is `ride_tf.preprocessing.quantize` of them, floor(256 y).

Conditional sampling (`images=`, `mask=`): pixels where the mask is False are
kept (uint8 known pixels enter as their bin centres (k + 0.5) / 256) and the
others are drawn in the same order, conditioned on everything before them.
"""
import numpy as np
import tensorflow as tf

from ride_tf.checks import check_bool, check_images, check_integer, check_seed
from ride_tf.evaluation import traced
from ride_tf.quantization import bin_centres, quantize
from ride_tf.wavefront import Wavefront

__all__ = ["draws", "sample", "wavefront_sample", "sampler_graph", "ONE_MINUS"]

# The largest float32 below 1: continuous samples lie in [0, ONE_MINUS].
ONE_MINUS = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


def _check_int(name, value, low):
    return check_integer("sample", name, value, low)


def draws(seed, num_images, height, width, num_channels, first_image=0, dtype=tf.float32):
    """The random numbers of the sampler: (uniform [N, H, W], normal [N, H, W, C]).

    Image n's numbers depend only on (seed, first_image + n) and the image size,
    so they do not depend on the batch the image is drawn in.
    """
    seed = tf.cast(seed, tf.int64)
    shape = tf.stack([height, width])

    def one(n):
        key = tf.stack([seed, tf.cast(n, tf.int64)])
        u = tf.random.stateless_uniform(shape, seed=key, dtype=dtype)
        z = tf.random.stateless_normal(tf.concat([shape, [num_channels]], 0), seed=key + [0, 1 << 40],
                                       dtype=dtype)
        return u, z

    index = tf.range(num_images) + first_image
    return tf.map_fn(one, index, fn_output_signature=(tf.TensorSpec(None, dtype), tf.TensorSpec(None, dtype)))


def wavefront_sample(model, known, mask, uniform, normal):
    """The sampler's graph: one wavefront pass (`Wavefront.run`) that draws the masked pixels (call it in a
    tf.function).

    Args:
      model: a `ride_tf.RIDE`.
      known: float [N, H, W, C], intensities of the pixels that are kept.
      mask: bool [N, H, W], True where a pixel is drawn.
      uniform, normal: the random draws ([N, H, W] and [N, H, W, C], see `draws`).

    Returns:
      float [N, H, W, C]: the image, kept pixels unchanged and drawn pixels in [0, 1).
    """
    dtype = model.compute_dtype
    channels = model.num_channels
    front = Wavefront(model)
    known = tf.cast(known, dtype)
    batch = tf.shape(known)[0]
    known_t = tf.transpose(known, [1, 2, 0, 3])
    uniform_t = tf.transpose(tf.cast(uniform, dtype), [1, 2, 0])
    normal_t = tf.transpose(tf.cast(normal, dtype), [1, 2, 0, 3])
    w_inv = model.whitening.output_unwhitening()                                         # once, not per step

    def draw(t, pixels, h, x_hat):
        n = tf.shape(pixels)[0]
        # The MCGSM's draws for every pixel of the front, in one call.
        u = tf.reshape(tf.gather_nd(uniform_t, pixels), [n * batch])
        z = tf.reshape(tf.gather_nd(normal_t, pixels), [n * batch, channels])
        y_hat = model.mcgsm(h).sample_from_noise(u, z)
        # Back to intensities, kept pixels restored.
        y = model.whitening.unwhiten_outputs(x_hat, y_hat, inverse=w_inv)
        y = tf.clip_by_value(tf.reshape(y, [n, batch, channels]), 0.0, ONE_MINUS)
        # The mask is gathered as it is, not transposed: oneDNN's transpose has no bool kernel (it logs an
        # error before falling back), and grappler would move a cast to numbers after the transpose.
        shape = [n, batch]
        index = tf.stack([tf.broadcast_to(tf.range(batch)[None, :], shape),
                          tf.broadcast_to(pixels[:, None, 0], shape), tf.broadcast_to(pixels[:, None, 1], shape)], -1)
        return tf.where(tf.gather_nd(mask, index)[..., None], y, tf.gather_nd(known_t, pixels))

    return front.run(known, draw)


def sampler_graph(model):
    """The traced sampler of `model`: (known [N, H, W, C], mask [N, H, W], seed int64, first_image int32) ->
    images [N, H, W, C] floats (one trace for every batch and image size; `evaluation.traced`)."""
    dtype = model.compute_dtype
    channels = model.num_channels

    def run(known, mask, seed, first_image):
        shape = tf.shape(known)
        uniform, normal = draws(seed, shape[0], shape[1], shape[2], channels, first_image, dtype)
        return wavefront_sample(model, known, mask, uniform, normal)

    return traced(model, "sample", run, [
        tf.TensorSpec([None, None, None, channels], dtype), tf.TensorSpec([None, None, None], tf.bool),
        tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int32)])


def sample(model, num_samples=None, height=None, width=None, seed=None, continuous=False, images=None,
           mask=None, batch_size=None):
    """Ancestral samples of `model`; see the module docstring.

    Args:
      model: a `ride_tf.RIDE`.
      num_samples, height, width: how many images of what size (H, W >= 1).
        With `images`, these default to its shape (and must match it if given).
      seed: int; None draws one at random.  The same seed gives the same
        images, whatever `batch_size`.
      continuous: return the floats in [0, 1) instead of uint8.
      images: uint8 or float [N, H, W(, C)] known pixels, for conditional sampling.
      mask: bool [N, H, W] (or [H, W], for every image): True where pixels are
        drawn; pixels where it is False are kept.  Required with `images`.
      batch_size: images drawn per graph call (default: all).

    Returns:
      uint8 [N, H, W, C] (or float32 in [0, 1) with continuous=True).
    """
    channels = model.num_channels
    if images is not None:
        images = check_images(images, channels, name="images")
        if mask is None:
            raise ValueError("sample: conditional sampling needs a mask (True where pixels are drawn).")
        for name, value, actual in [("num_samples", num_samples, images.shape[0]),
                                    ("height", height, images.shape[1]), ("width", width, images.shape[2])]:
            if value is not None and value != actual:
                raise ValueError(f"sample: {name}={value!r} does not match images of shape {images.shape}.")
        num_samples, height, width = images.shape[:3]
        known = bin_centres(images) if images.dtype == np.uint8 else images.astype(np.float32)
    else:
        if mask is not None:
            raise ValueError("sample: a mask needs the images whose pixels it keeps (images=...).")
        num_samples = _check_int("num_samples", num_samples, 1)
        height = _check_int("height", height, 1)
        width = _check_int("width", width, 1)
        known = np.zeros((num_samples, height, width, channels), np.float32)
    if mask is None:
        mask = np.ones((num_samples, height, width), bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"sample: mask must be boolean (True where pixels are drawn), got dtype {mask.dtype}.")
    if mask.shape == (height, width):
        mask = np.broadcast_to(mask, (num_samples, height, width))
    if mask.shape != (num_samples, height, width):
        raise ValueError(f"sample: mask of shape {mask.shape} does not fit images of shape "
                         f"({num_samples}, {height}, {width}).")
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2 ** 31))
    seed = check_seed("sample", seed)
    batch_size = num_samples if batch_size is None else _check_int("batch_size", batch_size, 1)
    continuous = check_bool("sample", "continuous", continuous)
    model.whitening.require_adapted("sample")
    graph = sampler_graph(model)
    out = []
    for start in range(0, num_samples, batch_size):
        stop = min(num_samples, start + batch_size)
        out.append(graph(known[start:stop], np.ascontiguousarray(mask[start:stop]), np.int64(seed),
                         np.int32(start)).numpy())
    result = np.concatenate(out)
    return result.astype(np.float32) if continuous else quantize(result)
