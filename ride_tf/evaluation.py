"""The NumPy-facing side of a model: per-pixel maps and rates of image batches, in bounded memory.

`RIDE`'s methods `pixel_log_prob`, `log_prob`, `log_likelihood_rate`,
`gaussian_log_likelihood_rate`, `adapt`, `sample_features` and
`sample_discrete_features` delegate to the functions here.  They take any
model with RIDE's graph interface (`forward`, `tile_log_prob`, `whitened_pairs`,
`hidden_states`, `whitening`, `radius`, `nb_size`, `num_channels`,
`num_hiddens`, `num_layers`); this module does not import the model.

Memory: whole images are evaluated in batches of at most
`ride_tf.defaults.PIXELS_PER_BATCH` pixels (N H W) per graph call; an image
larger than that is evaluated tile by tile, each tile's spatial LSTMs starting
from the states of the row above and the column to its left (`tiled_map`),
which gives the untiled map up to float32 round-off.

Traced functions: `traced(model, name, fn, signature)` keeps one
`tf.function` per model and name (for any batch and image size), so that
repeated calls do not trace again; the sampler, inpainting and the codec use
the same cache.  Each is made by `per_model_function`, so that TensorFlow's
count of retracing is kept per model and function: it counts traces per
Python code object, and the functions of several models built from the same
code (each traced once, as it must be: a graph holds its model's variables)
would read as one function traced again and again ("N out of the last M
calls to <function ...> triggered tf.function retracing").

Shapes: images [N, H, W, C]; maps [N, H, W] in nats; rates [N] in bit per
pixel and channel (`ride_tf.quantization.to_bits_per_pixel` of the mean).
"""
import inspect
import math
import weakref

import keras
import numpy as np
import tensorflow as tf

from ride_tf import geometry
from ride_tf.checks import NonFiniteError, check_bool, check_choice, check_integer, check_seed, check_verbose
from ride_tf.defaults import PIXELS_PER_BATCH, REGION, REGIONS
from ride_tf.neighbourhoods import neighbourhoods_at
from ride_tf.preprocessing import check_images, prepare_images
from ride_tf.quantization import NUM_BINS, bin_centres, to_bits_per_pixel

__all__ = ["traced", "per_model_function", "forget_traced", "prepare", "batches", "pixel_map", "tiled_map", "crop",
           "rate", "pixel_log_prob", "log_prob", "log_likelihood_rate", "gaussian_log_likelihood_rate", "sample_rows",
           "adapt", "sample_features", "sample_discrete_features", "TILE_WIDTH"]

# Width of the tiles of large images (their height follows from PIXELS_PER_BATCH).
TILE_WIDTH = 512

_TRACED = weakref.WeakKeyDictionary()


class _OneModelsFunction:
    """`fn` as the Python function of one model's `tf.function` (see `per_model_function`).

    It has no code object of its own (and no `__wrapped__`), so TensorFlow keys the function's call and
    tracing statistics by this object: per model and function, not per line of source."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "function")
        self.__signature__ = inspect.signature(fn)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def per_model_function(fn, **kwargs):
    """`tf.function(fn, **kwargs)` for a function that closes over one model (or layer).

    Such functions are made once per model and cached (`traced`,
    `ride_tf.training.finetune`); with an `input_signature` each is traced
    once.  TensorFlow's warning about retracing counts the traces of all
    functions made from the same code together, so that training or
    evaluating a few models one after the other would warn although no
    function was traced twice; made here, each function is counted alone.
    """
    return tf.function(_OneModelsFunction(fn), **kwargs)


def traced(model, name, fn, signature=None):
    """The model's traced `tf.function` called `name` (created from `fn` on first use, then reused).

    signature: the input signature (default: one float32 image batch
    [None, None, None, C]); with it the function is traced once for any
    batch and image size.
    """
    functions = _TRACED.setdefault(model, {})
    if name not in functions:
        if signature is None:
            signature = [tf.TensorSpec([None, None, None, model.num_channels], tf.float32)]
        functions[name] = per_model_function(fn, input_signature=signature, reduce_retracing=True)
    return functions[name]


def forget_traced(model):
    """Drop the model's traced functions (after a change that they captured, e.g. `RIDE.coding_order`)."""
    _TRACED.pop(model, None)


def prepare(model, images, noise=True, seed=None, region=REGION, adapted=True, verbose=0):
    """Validated, dequantized float32 images [N, H, W, C] (NumPy).

    With `adapted`, a model whose whitening was never fitted is refused
    (`NotAdaptedError`) after the arguments have been checked."""
    check_verbose("RIDE", verbose)
    nb_size = model.nb_size if check_choice("RIDE", "region", region, REGIONS) == "valid" else None
    noise = check_bool("RIDE", "noise", noise)
    seed = check_seed("RIDE", seed)
    images = prepare_images(images, model.num_channels, nb_size, noise=noise, seed=seed)
    if adapted:
        model.whitening.require_adapted("RIDE")
    return images


def batches(images):
    """Memory-bounded batches (views) of images [N, H, W, C]: at most PIXELS_PER_BATCH pixels each (one image
    at least)."""
    per_batch = max(1, PIXELS_PER_BATCH // (images.shape[1] * images.shape[2]))
    return [images[i:i + per_batch] for i in range(0, len(images), per_batch)]


def tiled_map(model, image, name, head, verbose=0):
    """head's map [1, H, W] of one large image [1, H, W, C], tile by tile in raster order.

    Each tile's LSTMs start from the states of the row above and the column
    to the left (`RIDE.tile_log_prob`), so the result is the untiled map up to
    float32 round-off, in memory bounded by the tile size (plus one row of
    states per layer)."""
    _, height, width, _ = image.shape
    r, units, num_layers = model.radius, model.num_hiddens, model.num_layers
    tile_w = min(width, TILE_WIDTH)
    tile_h = max(1, min(height, PIXELS_PER_BATCH // tile_w))
    padded = np.pad(image, [(0, 0), (r, 0), (r, r), (0, 0)])
    state_spec = [tf.TensorSpec([None, None, units], tf.float32)] * (4 * num_layers)
    spec = [tf.TensorSpec([None, None, None, model.num_channels], tf.float32)] + \
        [tf.TensorSpec([], tf.int32)] * 3 + state_spec

    def tile_fn(window, row0, col0, width, *flat):
        states = [flat[4 * l:4 * l + 4] for l in range(num_layers)]
        log_prob, tile_states = model.tile_log_prob(window, row0, col0, width, states, head)
        out = [log_prob]
        for h, c in tile_states:
            out += [h[:, -1], c[:, -1], h[:, :, -1], c[:, :, -1]]  # bottom row, right column
        return out

    graph = traced(model, "tile_" + name, tile_fn, spec)
    zeros = lambda n: np.zeros((1, n, units), np.float32)
    bottom = [[zeros(width), zeros(width)] for _ in range(num_layers)]     # states above the tile row
    out = None
    tiles = [(i, j) for i in range(0, height, tile_h) for j in range(0, width, tile_w)]
    bar = keras.utils.Progbar(len(tiles), verbose=verbose, unit_name="tile")
    left = None
    for k, (i, j) in enumerate(tiles):
        h_rows, w_cols = min(tile_h, height - i), min(tile_w, width - j)
        if j == 0:
            left = [[zeros(h_rows), zeros(h_rows)] for _ in range(num_layers)]
        flat = []
        for l in range(num_layers):
            flat += [bottom[l][0][:, j:j + w_cols], bottom[l][1][:, j:j + w_cols], left[l][0], left[l][1]]
        window = padded[:, i:i + h_rows + r, j:j + w_cols + 2 * r]
        result = [t.numpy() for t in graph(window, i, j, width, *flat)]
        if out is None:
            out = np.empty((1, height, width), result[0].dtype)
        out[:, i:i + h_rows, j:j + w_cols] = result[0]
        for l in range(num_layers):
            h_bottom, c_bottom, h_right, c_right = result[1 + 4 * l:5 + 4 * l]
            bottom[l][0][:, j:j + w_cols], bottom[l][1][:, j:j + w_cols] = h_bottom, c_bottom
            left[l] = [h_right, c_right]
        bar.update(k + 1)
    return out


def _batched_map(model, name, fn, images, verbose=0):
    """Run the traced `fn` (images -> [n, H, W]) over memory-bounded batches."""
    graph = traced(model, name, fn)
    parts = batches(images)
    bar = keras.utils.Progbar(len(parts), verbose=verbose if len(parts) > 1 else 0, unit_name="batch")
    out = []
    for k, batch in enumerate(parts):
        out.append(graph(batch).numpy())
        bar.update(k + 1)
    return np.concatenate(out)


def pixel_map(model, images, name, head, verbose=0):
    """head(h, u, y^, y) for every pixel of prepared float images [N, H, W, C], NumPy [N, H, W].

    Whole images are batched in memory-bounded graph calls; images of more
    than PIXELS_PER_BATCH pixels are evaluated tile by tile (same numbers up
    to round-off).  `name` keys the traced graphs of `head` (`traced`).
    """
    height, width = images.shape[1:3]
    if height * width > PIXELS_PER_BATCH:
        return np.concatenate([tiled_map(model, images[n:n + 1], name, head, verbose)
                               for n in range(len(images))])
    return _batched_map(model, name, lambda im: head(*model.forward(im)), images, verbose)


def crop(model, log_prob_map, region):
    """The region's part of a map [N, H, W]: all of it ("full"), or rows r.., columns r..-r ("valid")."""
    if region == "valid":
        rows, cols = geometry.valid_slices(model.nb_size)
        return log_prob_map[:, rows, cols]
    return log_prob_map


def rate(model, log_prob_map):
    """NumPy [N, H', W'] nats -> [N] bit per pixel (and channel), accumulated in float64."""
    return to_bits_per_pixel(log_prob_map.astype(np.float64).mean(axis=(1, 2)), model.num_channels)


def pixel_log_prob(model, images, noise=True, seed=None, region=REGION, verbose=0):
    """Per-pixel log-likelihoods in nats, NumPy [N, H, W] (region="valid": [N, H - r, W - 2r]); see
    `RIDE.pixel_log_prob`."""
    images = prepare(model, images, noise, seed, region, verbose=verbose)
    height, width = images.shape[1:3]
    log_prob_map = pixel_map(model, images, "pixel_log_prob", model.log_density_head, verbose)
    bad = ~np.isfinite(log_prob_map)
    if bad.any():
        # Every expert is a Gaussian, so a finite model gives finite log-likelihoods: this is
        # an overflow (e.g. memory cells of the "paper" cell growing along the diagonals).
        raise NonFiniteError(
            f"pixel_log_prob: {int(bad.sum())} of {bad.size} log-likelihoods are not finite on images of "
            f"{height} x {width} pixels: {model.non_finite_cause()}.")
    return crop(model, log_prob_map, region)


def log_prob(model, images, noise=True, seed=None, region=REGION, verbose=0):
    """Per-image log-likelihood in nats over the region's pixels, float64 [N]."""
    return pixel_log_prob(model, images, noise, seed, region, verbose).astype(np.float64).sum(axis=(1, 2))


def log_likelihood_rate(model, images, noise=True, seed=None, region=REGION, verbose=0):
    """Per-image log-likelihood rate in bit per pixel (and channel) over the region, [N]."""
    return rate(model, pixel_log_prob(model, images, noise, seed, region, verbose))


def gaussian_log_likelihood_rate(model, images, noise=True, seed=None, region=REGION):
    """Rate in bit/px of the Gaussian linear predictor with the same neighbourhood (the whitening alone), [N]."""
    def gaussian_map(im):
        _, y_hat = model.whitened_pairs(im)
        log_p = (-0.5 * tf.reduce_sum(tf.square(y_hat), -1) - 0.5 * model.num_channels * math.log(2 * math.pi))
        return log_p + tf.cast(model.whitening.log_det_jacobian, log_p.dtype)
    images = prepare(model, images, noise, seed, region)
    return rate(model, crop(model, _batched_map(model, "gaussian", gaussian_map, images), region))


def sample_rows(model, images, fn, num_samples, seed, region=REGION, adapted=True, owner="RIDE"):
    """Apply `fn` (images -> tensors of rows, one row per pixel of `region`) batch by batch
    and keep each row with probability num_samples / (number of such pixels),
    so that memory stays bounded however many images there are."""
    num_samples = check_integer(owner, "num_samples", num_samples, 1)
    images = prepare(model, images, True, seed, region, adapted)
    height, width = images.shape[1:3]
    if region == "valid":
        height, width = geometry.valid_shape(height, width, model.nb_size)
    num_pixels = len(images) * height * width
    rng = np.random.default_rng(seed)
    fraction = min(1.0, num_samples / num_pixels)
    kept = []
    for batch in batches(images):
        outputs = [t.numpy() for t in fn(batch)]
        keep = rng.random(len(outputs[0])) < fraction
        kept.append([t[keep] for t in outputs])
    return [np.concatenate(parts) for parts in zip(*kept)]


def adapt(model, images, max_pairs=1_000_000, seed=0):
    """Fit the model's conditional whitening from about `max_pairs` random (neighbourhood, pixel) pairs.

    The pairs are drawn uniformly from the valid region of `images` (whole
    neighbourhoods inside the image); uint8 images are dequantized with noise
    seeded by `seed`.  Computed in NumPy: no graph is traced.  Returns the model.
    """
    check_integer("adapt", "max_pairs", max_pairs, 1)
    seed = check_seed("adapt", seed, allow_none=False)
    images = prepare(model, images, True, seed, "valid", adapted=False)
    r = model.radius
    count_h, count_w = geometry.valid_shape(images.shape[1], images.shape[2], model.nb_size)
    rng = np.random.default_rng(seed)
    fraction = min(1.0, max_pairs / (len(images) * count_h * count_w))
    chosen = np.nonzero(rng.random((len(images), count_h, count_w)) < fraction)
    positions = np.stack([chosen[0], chosen[1] + r, chosen[2] + r], axis=1)       # (n, i, j) of the pixels
    inputs, outputs = neighbourhoods_at(images, positions, model.nb_size)
    model.whitening.adapt(inputs, outputs)
    return model


def sample_features(model, images, num_samples, seed=0):
    """MCGSM inputs and whitened pixels of a random sample of pixels (every pixel is a candidate).

    Returns NumPy (h [M, dim_h], y^ [M, C]) with M about num_samples (binomial),
    drawn uniformly over all pixels of `images`.
    """
    def features(im):
        u, y_hat = model.whitened_pairs(im)
        h = model.hidden_states(u)
        return tf.reshape(h, [-1, h.shape[-1]]), tf.reshape(y_hat, [-1, model.num_channels])
    return tuple(sample_rows(model, images, traced(model, "features", features), num_samples, seed, "full"))


def sample_discrete_features(model, images, num_samples, seed=0):
    """MCGSM inputs, whitened neighbourhoods and 8-bit values of a random sample of pixels of uint8 images.

    The contexts are the bin centres of the values (what a decoder knows,
    `ride_tf.discrete`).  Returns NumPy (h [M, dim_h], x^ [M, P * C],
    values int32 [M, C]), M about num_samples, drawn uniformly over all
    pixels: the data of the discrete fine-tuning.
    """
    images = check_images(images, model.num_channels)
    if images.dtype != np.uint8:
        raise ValueError("sample_discrete_features: the discrete likelihood is defined for 8-bit "
                         f"images; pass uint8 values (got {images.dtype}).")
    num_inputs = geometry.num_inputs(model.nb_size, model.num_channels)

    def features(im):
        u, _ = model.whitened_pairs(im)
        h = model.hidden_states(u)
        values = tf.cast(tf.floor(im * float(NUM_BINS)), tf.int32)
        return (tf.reshape(h, [-1, h.shape[-1]]), tf.reshape(u[..., :num_inputs], [-1, num_inputs]),
                tf.reshape(values, [-1, model.num_channels]))
    graph = traced(model, "discrete_features", features)
    return tuple(sample_rows(model, bin_centres(images), graph, num_samples, seed, "full"))
