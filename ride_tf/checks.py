"""Argument checks of the public API, without TensorFlow (NumPy only).

Every check raises ValueError with a message that names the function (the
"owner"), the argument and what was wrong, e.g. ``"finetune:
validation_fraction must be finite and >= 0 and < 1, got 1.5."``.  Values are
refused, never coerced: True is not an integer, 2.0 is not an integer, "3"
is not a number.  The data modules and the command line use these checks
too, so this module must stay free of TensorFlow (the tests import it in a
process where TensorFlow cannot load).
"""
import numpy as np

__all__ = ["is_integer", "check_integer", "check_bool", "check_real", "check_number", "check_fraction", "check_seed", "check_choice",
           "check_verbose", "check_images", "NonFiniteError"]


class NonFiniteError(FloatingPointError, ValueError):
    """Numbers that must be finite are NaN or infinite: a model's weights or log-likelihoods, a loss, the data of
    an L-BFGS fit (hidden states of a diverged model).

    What `ride_tf.training.train` rolls a stage back for, told apart from other errors by its type.  A
    `FloatingPointError` (values overflowed or diverged) and, for the checks that refused such values with
    ValueError before it existed, a `ValueError`.
    """


def is_integer(value):
    """Whether `value` is an integer (Python or NumPy), bools excluded."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_integer(owner, name, value, low, high=None):
    """`value` as an int, or ValueError "{owner}: {name} must be an integer >= {low}, got ..."

    bool and float values are refused, not coerced (True, 2.5 and 2.0 all raise)."""
    if not is_integer(value) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}: {name} must be an integer {bounds}, got {value!r}.")
    return int(value)


def check_bool(owner, name, value):
    """`value` as a bool, or ValueError: only True and False (also NumPy's) are accepted, not "False" or 0."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}.")
    return bool(value)


def check_real(owner, name, value):
    """`value` as a float (any real number, inf and NaN included), or ValueError naming it (strings and bools
    are refused); for arguments whose range the caller checks with its own message."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}.")
    return float(value)


def check_number(owner, name, value, low=None, high=None, low_open=False, high_open=False):
    """`value` as a finite float in the given range, or ValueError naming it (strings and bools are refused)."""
    value = check_real(owner, name, value)
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


def check_fraction(owner, name, value):
    """A fraction in [0, 1) (e.g. the share of data held out), as a float; ValueError naming it otherwise."""
    return check_number(owner, name, value, low=0.0, high=1.0, high_open=True)


def check_seed(owner, value, name="seed", allow_none=True):
    """A seed: None (when allowed) or an integer in [0, 2^63); anything else is a ValueError naming it."""
    if value is None and allow_none:
        return None
    if not is_integer(value) or not 0 <= value < 2 ** 63:
        raise ValueError(f"{owner}: {name} must be {'None or ' if allow_none else ''}an integer in "
                         f"[0, 2**63), got {value!r}.")
    return int(value)


def check_choice(owner, name, value, choices):
    """`value` if it is one of `choices` (a tuple), else ValueError listing them."""
    if not any(value is choice or (type(value) is type(choice) and value == choice) for choice in choices):
        raise ValueError(f"{owner}: {name} must be one of {tuple(choices)}, got {value!r}.")
    return value


def check_verbose(owner, value, choices=(0, 1, 2)):
    """A verbosity level: one of `choices` (ints, not bools), else ValueError naming it."""
    if not is_integer(value) or value not in choices:
        raise ValueError(f"{owner}: verbose must be one of {tuple(choices)}, got {value!r}.")
    return int(value)


def check_images(images, num_channels, nb_size=None, name="images"):
    """Validate a batch of images and return it as a NumPy array [N, H, W, C].

    Accepts NumPy arrays, sequences and tensors (anything with `.numpy()`).
    Raises ValueError naming the problem: wrong rank, wrong channel count,
    images smaller than the neighbourhood, NaN or infinite values, values out
    of range, unsupported dtype.
    """
    if hasattr(images, "numpy") and callable(images.numpy):
        images = images.numpy()
    try:
        images = np.asarray(images)
    except ValueError:           # a list of images of different sizes
        images = np.empty(0, object)
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
