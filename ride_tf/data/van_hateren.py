"""van Hateren's natural images: raw `.iml` files (big-endian uint16, 1024 x 1536) and their 8-bit versions."""
import math
import os
from pathlib import Path

import numpy as np

from ride_tf.checks import check_integer, check_real, is_integer
from ride_tf.data.files import check_file

__all__ = ["VAN_HATEREN_SHAPE", "read_iml", "van_hateren_to_uint8", "load_van_hateren"]

#: Shape (rows, columns) of van Hateren's images.
VAN_HATEREN_SHAPE = (1024, 1536)


def read_iml(path, shape=VAN_HATEREN_SHAPE):
    """Read one van Hateren ``.iml`` (or ``.imc``) file.

    The files are raw big-endian unsigned 16-bit integers, ``shape[0]`` rows of
    ``shape[1]`` columns in row-major order, without a header.

    Args:
        path: the file.
        shape: (rows, columns), (1024, 1536) for the real data.

    Returns:
        uint16 array [rows, columns] (native byte order).

    Raises:
        FileNotFoundError: missing file.
        ValueError: the file size is not 2 * rows * columns bytes.
    """
    path = check_file(path)
    if isinstance(shape, (str, bytes)) or len(shape) != 2 or not all(is_integer(v) for v in shape):
        raise ValueError(f"read_iml: shape must be a pair of ints (rows, columns), got {shape!r}")
    rows, cols = (int(v) for v in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    expected = 2 * rows * cols
    actual = path.stat().st_size
    if actual != expected:
        raise ValueError(f"{path}: file has {actual} bytes, but a raw big-endian uint16 image of "
                         f"shape {rows} x {cols} has {expected}")
    data = np.fromfile(path, dtype=">u2", count=rows * cols)
    return data.astype(np.uint16).reshape(rows, cols)


def van_hateren_to_uint8(images, method="log", max_value=None):
    """Map van Hateren intensities (uint16) to 8-bit values.

    A simple, documented mapping (the paper's Supplementary Section 3
    preprocessing is not reproduced here):

      * ``method="log"``: x -> log(1 + x) / log(1 + max_value)
      * ``method="linear"``: x -> x / max_value

    followed by clipping to [0, 1] and ``round(255 * y)``.  ``max_value=None``
    uses each image's own maximum (per-image normalization); pass a number
    (e.g. 65535 or a dataset-wide maximum) for one fixed mapping for all images.

    Args:
        images: array [..., H, W] of non-negative intensities (one image or a stack).
        method: "log" or "linear".
        max_value: None or a positive number.

    Returns:
        uint8 array of the same shape.
    """
    if method not in ("log", "linear"):
        raise ValueError(f"method must be 'log' or 'linear', got {method!r}")
    try:
        x = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("van_hateren_to_uint8: images must be a numeric array") from None
    if x.ndim < 2:
        raise ValueError(f"expected an image [H, W] or a stack [..., H, W], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("van_hateren_to_uint8: intensities must be finite (got NaN or infinite values)")
    if x.size and x.min() < 0:
        raise ValueError("intensities must be non-negative")
    if max_value is None:
        top = x.max(axis=(-2, -1), keepdims=True)
    else:
        top = check_real("van_hateren_to_uint8", "max_value", max_value)
        if not (top > 0 and math.isfinite(top)):
            raise ValueError(f"max_value must be positive, got {max_value}")
    top = np.maximum(top, 1e-12)
    y = np.log1p(x) / np.log1p(top) if method == "log" else x / top
    return np.rint(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_van_hateren(folder_or_paths, shape=VAN_HATEREN_SHAPE, pattern="*.iml", max_images=None,
                     to_uint8=None, max_value=None):
    """Load several van Hateren images.

    Args:
        folder_or_paths: a folder (its files matching ``pattern`` are read in
            sorted name order) or a sequence of file paths.
        shape: image shape, see :func:`read_iml`.
        pattern: glob pattern used for a folder.
        max_images: read at most this many files (the first ones).
        to_uint8: None to return the raw uint16 values, or "log"/"linear" to map
            them to 8 bits with :func:`van_hateren_to_uint8`.
        max_value: passed to :func:`van_hateren_to_uint8`.

    Returns:
        array [N, rows, columns], uint16 (raw) or uint8.

    Raises:
        FileNotFoundError: missing folder or file.
        ValueError: no matching files, or a file of the wrong size.
    """
    if isinstance(folder_or_paths, (str, os.PathLike)):
        folder = Path(folder_or_paths)
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: no such directory")
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a directory (pass a list to load single files)")
        paths = sorted(folder.glob(pattern))
        if not paths:
            raise ValueError(f"{folder}: no files matching {pattern!r}")
    else:
        paths = [Path(p) for p in folder_or_paths]
    if max_images is not None:
        paths = paths[: check_integer("load_van_hateren", "max_images", max_images, 0)]
    rows, cols = (int(v) for v in shape)
    stack = np.empty((len(paths), rows, cols), dtype=np.uint16)
    for k, path in enumerate(paths):
        stack[k] = read_iml(path, shape=shape)
    if to_uint8 is not None:
        return van_hateren_to_uint8(stack, method=to_uint8, max_value=max_value)
    return stack
