"""Causal pixel neighbourhoods (paper Fig. 1B); the geometry itself is in `ride_tf.geometry`.

A neighbourhood of width `nb_size` (odd, r = nb_size // 2) around pixel (i, j)
covers rows i - r .. i and columns j - r .. j + r, and keeps the *causal* part
of that window: the r full rows above the pixel and the r pixels to its left.
For nb_size = 5 that is a 3 x 5 window with 12 causal inputs per channel:

    x x x x x
    x x x x x
    x x o . .          (o: the pixel; x: its inputs)

Multi-channel images: every channel of every causal position is an input, in
offset-major, channel-minor order.  The pixel's own channels are *not* inputs
of each other: a colour pixel is predicted jointly by a multivariate MCGSM
(event size = num_channels), so channel order never matters.

`extract_neighbourhoods` returns the pairs of the pixels whose whole window
lies inside the array it is given: rows r .. H-1 and columns r .. W-1-r, an
output grid of (H - r) x (W - 2r); output index (a, b) is array pixel
(a + r, b + r).  Applied to `pad_images(images)` this is every pixel of the
image.
"""
import numpy as np
import tensorflow as tf

from ride_tf.geometry import (causal_mask, causal_offsets, num_inputs, padding, radius,  # noqa: F401
                              valid_shape)

__all__ = ["causal_mask", "causal_offsets", "num_inputs", "valid_shape", "pad_images", "extract_neighbourhoods",
           "neighbourhoods_at"]


def pad_images(images, nb_size):
    """[N, H, W, C] -> [N, H + r, W + 2r, C]: zeros r rows above and r columns at each side.

    On the padded image the valid region of `extract_neighbourhoods` is the
    whole original image: every pixel gets a window (see `ride_tf.geometry`).
    """
    return tf.pad(images, [[0, 0]] + padding(nb_size) + [[0, 0]])


def extract_neighbourhoods(images, nb_size):
    """Split images into (causal neighbourhood, pixel) pairs over the valid region.

    Args:
      images: float Tensor [N, H, W, C] with H >= r + 1 and W >= 2r + 1.
      nb_size: odd neighbourhood width.

    Returns:
      inputs: [N, H - r, W - 2r, P * C] with P = len(causal_offsets(nb_size)),
        ordered offset-major, channel-minor.
      outputs: [N, H - r, W - 2r, C], the pixels themselves.
    """
    r = radius(nb_size)
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    num_channels = images.shape[-1]
    if images.shape.rank != 4:
        raise ValueError(f"extract_neighbourhoods: expected images [N, H, W, C], got shape {images.shape}.")
    if images.shape[1] is not None and images.shape[2] is not None:
        valid_shape(images.shape[1], images.shape[2], nb_size)

    def window(di, dj):
        return images[:, r + di:height + di, r + dj:width - r + dj, :]

    inputs = tf.stack([window(di, dj) for di, dj in causal_offsets(nb_size)], axis=-2)
    new_shape = tf.concat([tf.shape(inputs)[:3], [-1]], 0)
    inputs = tf.reshape(inputs, new_shape)
    if num_channels is not None:
        inputs = tf.ensure_shape(inputs, [None, None, None, num_inputs(nb_size, num_channels)])
    return inputs, window(0, 0)


def neighbourhoods_at(images, positions, nb_size):
    """(causal neighbourhood, pixel) pairs of chosen pixels, in NumPy (no graph).

    Args:
      images: NumPy [N, H, W, C].
      positions: int [M, 3], (n, i, j) of pixels whose whole window lies inside the image
        (r <= i, r <= j <= W - 1 - r).
      nb_size: odd neighbourhood width.

    Returns:
      inputs [M, P * C] (offset-major, channel-minor, as `extract_neighbourhoods`) and outputs [M, C].
    """
    positions = np.asarray(positions, np.int64).reshape(-1, 3)
    n, i, j = positions.T
    offsets = np.asarray(causal_offsets(nb_size))
    inputs = images[n[:, None], i[:, None] + offsets[:, 0], j[:, None] + offsets[:, 1]]       # [M, P, C]
    return inputs.reshape(len(positions), -1), images[n, i, j]
