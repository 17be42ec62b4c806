"""Causal pixel neighbourhoods (paper Fig. 1B).

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

Modelled ("valid") pixels are those whose whole window lies inside the image:
rows r .. H-1 and columns r .. W-1-r, i.e. an output grid of
(H - r) x (W - 2r) pixels; output index (a, b) is image pixel (a + r, b + r).
"""
import numpy as np
import tensorflow as tf

__all__ = ["causal_mask", "causal_offsets", "num_inputs", "valid_shape", "extract_neighbourhoods"]


def _radius(nb_size):
    if int(nb_size) != nb_size or nb_size < 3 or nb_size % 2 == 0:
        raise ValueError(f"nb_size must be an odd integer >= 3, got {nb_size!r}.")
    return int(nb_size) // 2


def causal_offsets(nb_size):
    """The (di, dj) offsets of the causal inputs relative to the pixel, in raster order."""
    r = _radius(nb_size)
    return [(di, dj) for di in range(-r, 1) for dj in range(-r, r + 1) if di < 0 or dj < 0]


def causal_mask(nb_size):
    """Boolean window [r + 1, nb_size]: True at the causal inputs (the pixel sits at [r, r])."""
    r = _radius(nb_size)
    mask = np.zeros((r + 1, nb_size), dtype=bool)
    for di, dj in causal_offsets(nb_size):
        mask[r + di, r + dj] = True
    return mask


def num_inputs(nb_size, num_channels=1):
    """Size of one neighbourhood vector: (r * nb_size + r) * num_channels."""
    return len(causal_offsets(nb_size)) * num_channels


def valid_shape(height, width, nb_size):
    """(H', W') = (H - r, W - 2r), the grid of modelled pixels."""
    r = _radius(nb_size)
    if height < r + 1 or width < 2 * r + 1:
        raise ValueError(f"an image of {height} x {width} pixels is smaller than the causal neighbourhood "
                         f"(nb_size={nb_size} needs at least {r + 1} x {2 * r + 1}).")
    return height - r, width - 2 * r


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
    r = _radius(nb_size)
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
