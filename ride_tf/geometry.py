"""Pixel geometry shared by the model, the sampler, the ensembles and the coder.

Causal neighbourhood (paper Fig. 1B).  A neighbourhood of odd width
``nb_size`` (r = nb_size // 2) around pixel (i, j) covers rows i - r .. i and
columns j - r .. j + r and keeps its *causal* part: the r full rows above the
pixel and the r pixels to its left.  For nb_size = 5, 12 inputs per channel:

    x x x x x
    x x x x x
    x x o . .          (o: the pixel; x: its inputs)

Every pixel is modelled.  The image is padded by r rows above and r columns
at each side (``PADDING``), so that every pixel (i, j) of an H x W image has a
full window; the inputs that fall into the padding are *outside the image*:
the model replaces them by their mean (see `ride_tf.whitening`) and receives,
for every causal offset, an indicator that is 1 where that input lies outside
the image (`outside_indicators`).  Inside the *valid region* (rows r .. H-1,
columns r .. W-1-r, the paper's protocol) all indicators are 0.

Wavefront order.  Pixel (i, j) needs the pixels of its causal window, which
reaches r columns to the right in the rows above, and the hidden states of
(i, j-1) and (i-1, j).  With the front index t = (r + 1) i + j every one of
them lies on an earlier front, so all pixels of one front can be drawn at
once: (r + 1)(H - 1) + W fronts instead of H W raster steps.

The eight dihedral maps (rotations by multiples of 90 degrees, with and
without a horizontal flip) act on [N, H, W, C] arrays; they are the ensemble's
transformations T_k (paper section 3.1), permutations of the pixels with
|det T_k| = 1.

The module imports no TensorFlow: the codec's runtime uses its index
arithmetic on ints and NumPy arrays; the functions that also take Tensors
(`outside_indicators`, `front_rows` inside a graph, `dihedral`) import it
when they get one.
"""
import numpy as np

__all__ = ["radius", "causal_offsets", "causal_mask", "num_inputs", "num_indicators", "padding",
           "valid_shape", "valid_slices", "outside_indicators", "outside_indicators_at", "front_index", "num_fronts", "front_rows",
           "DIHEDRAL", "dihedral", "inverse_dihedral"]


def radius(nb_size):
    """r = nb_size // 2, after checking that nb_size is an odd integer >= 3."""
    if (isinstance(nb_size, (bool, np.bool_)) or not isinstance(nb_size, (int, np.integer)) or nb_size < 3
            or nb_size % 2 == 0):
        raise ValueError(f"nb_size must be an odd integer >= 3, got {nb_size!r}.")
    return int(nb_size) // 2


def causal_offsets(nb_size):
    """The (di, dj) offsets of the causal inputs relative to the pixel, in raster order."""
    r = radius(nb_size)
    return [(di, dj) for di in range(-r, 1) for dj in range(-r, r + 1) if di < 0 or dj < 0]


def causal_mask(nb_size):
    """Boolean window [r + 1, nb_size]: True at the causal inputs (the pixel sits at [r, r])."""
    r = radius(nb_size)
    mask = np.zeros((r + 1, nb_size), dtype=bool)
    for di, dj in causal_offsets(nb_size):
        mask[r + di, r + dj] = True
    return mask


def num_inputs(nb_size, num_channels=1):
    """Size of one neighbourhood vector: P * num_channels with P = r * nb_size + r."""
    return len(causal_offsets(nb_size)) * num_channels


def num_indicators(nb_size):
    """Number of outside-the-image indicators per pixel: P, one per causal offset."""
    return len(causal_offsets(nb_size))


def padding(nb_size):
    """[[top, bottom], [left, right]] = [[r, 0], [r, r]]: the padding that gives every pixel a full window."""
    r = radius(nb_size)
    return [[r, 0], [r, r]]


def valid_shape(height, width, nb_size):
    """(H - r, W - 2r), the grid of pixels whose whole window lies inside the image."""
    r = radius(nb_size)
    if height < r + 1 or width < 2 * r + 1:
        raise ValueError(f"an image of {height} x {width} pixels has no valid region: nb_size={nb_size} "
                         f"needs at least {r + 1} x {2 * r + 1} pixels for region='valid'.")
    return height - r, width - 2 * r


def valid_slices(nb_size):
    """(rows, cols) slices that cut the valid region out of an [.., H, W] map: rows r.., cols r..-r."""
    r = radius(nb_size)
    return slice(r, None), slice(r, -r)


def outside_indicators(rows, cols, width, nb_size, dtype="float32"):
    """Indicators [len(rows), len(cols), P]: 1 where causal input k of pixel (i, j) is outside the image.

    Args:
      rows, cols: 1-D int Tensors of image row and column indices (e.g. the
        rows and columns of a tile; rows >= 0).
      width: the image width W (a scalar Tensor or int); inputs outside are
        those with row i + di < 0 or column j + dj outside 0 .. W - 1.
      nb_size: the neighbourhood width.
    """
    import tensorflow as tf

    rows = tf.convert_to_tensor(rows, tf.int32)[:, None]
    cols = tf.convert_to_tensor(cols, tf.int32)[None, :]
    return outside_indicators_at(rows, cols, width, nb_size, dtype)


def outside_indicators_at(rows, cols, width, nb_size, dtype="float32"):
    """Indicators broadcast(rows, cols).shape + [P] for pixels (rows[k], cols[k]) (broadcasting int Tensors)."""
    import tensorflow as tf

    rows = tf.convert_to_tensor(rows, tf.int32)
    cols = tf.convert_to_tensor(cols, tf.int32)
    width = tf.convert_to_tensor(width, tf.int32)
    planes = [(rows + di < 0) | (cols + dj < 0) | (cols + dj >= width) for di, dj in causal_offsets(nb_size)]
    return tf.cast(tf.stack(planes, axis=-1), dtype)


# ---------------------------------------------------------------- wavefronts
def front_index(i, j, nb_size):
    """t = (r + 1) i + j: the wavefront on which pixel (i, j) can be drawn."""
    return (radius(nb_size) + 1) * i + j


def num_fronts(height, width, nb_size):
    """(r + 1)(H - 1) + W fronts cover an H x W image."""
    return (radius(nb_size) + 1) * (height - 1) + width


def front_rows(t, height, width, nb_size):
    """(i_lo, i_hi): the rows of front t are i_lo .. i_hi, pixel (i, t - (r + 1) i) in row i.

    Works on ints and on int Tensors (inside a tf.while_loop)."""
    step = radius(nb_size) + 1
    if isinstance(t, (int, np.integer)):
        i_lo = max(0, -((width - 1 - t) // step))   # ceil((t - W + 1) / step)
        return i_lo, min(height - 1, t // step)
    import tensorflow as tf

    i_lo = tf.maximum(0, -tf.math.floordiv(width - 1 - t, step))
    return i_lo, tf.minimum(height - 1, tf.math.floordiv(t, step))


# ------------------------------------------------------------ dihedral maps
# (number of counter-clockwise quarter turns, flip left-right first)
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def _dihedral_map(index):
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or not 0 <= index < 8:
        raise ValueError(f"dihedral: index must be an integer in [0, 8) (geometry.DIHEDRAL), got {index!r}.")
    return DIHEDRAL[index]


def dihedral(images, index):
    """T_index applied to images [N, H, W, C] (NumPy or Tensor): flip (if any), then rotate."""
    turns, flip = _dihedral_map(index)
    if isinstance(images, np.ndarray):
        out = images[:, :, ::-1] if flip else images
        return np.rot90(out, turns, axes=(1, 2))
    import tensorflow as tf

    out = tf.reverse(images, [2]) if flip else images
    return tf.image.rot90(out, turns) if turns else out


def inverse_dihedral(images, index):
    """T_index^-1 applied to images or maps [N, H, W, C]: rotate back, then flip."""
    turns, flip = _dihedral_map(index)
    if isinstance(images, np.ndarray):
        out = np.rot90(images, -turns, axes=(1, 2))
        return out[:, :, ::-1] if flip else out
    import tensorflow as tf

    out = tf.image.rot90(images, (4 - turns) % 4) if turns else images
    return tf.reverse(out, [2]) if flip else out
