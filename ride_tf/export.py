"""SavedModel export for TF Serving: `export_saved_model` and `ride-tf export`.

The SavedModel holds the model's weights and one traced graph per signature.
It loads and runs without `ride_tf` and without TensorFlow Probability:
with `tf.saved_model.load`, with the session-based loader that TF Serving
and `saved_model_cli` use, or in TF Serving itself.  Every signature takes
any batch size N >= 1 and any image size H x W (dynamic dimensions):

  signature             inputs                                  outputs
  serving_default,      images  uint8 [N, H, W, C]              rate        float32 [N]  bit/px, every pixel
  log_likelihood_rate                                           rate_valid  float32 [N]  bit/px, valid region
  log_prob              images  uint8 [N, H, W, C]              log_prob    float64 [N]  nats per image
  pixel_log_prob        images  uint8 [N, H, W, C]              pixel_log_prob float32 [N, H, W] nats
  compressed_size       images  uint8 [N, H, W, C]              bits        float64 [N]  exact code length
  sample                num_samples, height, width, seed        images      uint8 [N, H, W, C]
                        (int32 scalars)

`serving_default` is `log_likelihood_rate`.  C is the model's channel count.

Dequantization.  The likelihood signatures dequantize the 8-bit intensities k
with the bin centres, (k + 0.5) / 256 (the Python API's `noise=False`), not
with uniform noise, so the same request always gets the same answer: `rate`
equals `model.log_likelihood_rate(images, noise=False)`, `rate_valid` the same
with `region="valid"` (rows r..H-1, columns r..W-1-r, r = nb_size // 2),
`log_prob` and `pixel_log_prob` likewise.  Sums and means run in float64, as
in the Python API.  `compressed_size` needs no dequantization: it sums the
code lengths of the integer model's tables (`ride_tf.codec.integer`), and
equals `ride_tf.compressed_size_bits`, the size of what
`ride_tf.compress` writes.

Sampling.  `sample` runs the wavefront sampler (`ride_tf.sampling`) with the
stateless draws of `ride_tf.sampling.draws`, so the images equal
`model.sample(num_samples, height, width, seed=seed)` for the same seed.

Bad requests fail with INVALID_ARGUMENT and a readable message:
  * images of another dtype: "Expects arg[0] to be uint8 but float is
    provided" (the signature's dtype, checked by the runtime);
  * a wrong rank or channel count, or a non-scalar size: "Shape of tensor ...
    [3,10,13] is not compatible with expected shape [?,?,?,1]" (EnsureShape:
    TF Serving feeds a request into the graph without comparing its shape
    with the SignatureDef, so the graph checks it);
  * an empty batch or image, images smaller than the neighbourhood for the
    rate signatures ((r + 1) x (2r + 1) pixels, because of `rate_valid`),
    sizes below 1, requests over `max_sample_pixels`, and non-finite
    log-likelihoods (a model whose "paper" cell overflowed): "assertion
    failed: [log_prob: the batch is empty ...]", starting with the signature.

Memory.  A request is evaluated in one graph call: the spatial LSTM states of
every pixel of the batch are held at once (about 4 x num_hiddens bytes per
pixel and layer, 64 MB for one 256 x 256 image at 64 units), unlike the Python
API, which tiles large images.  `sample` needs about the same per pixel;
`max_sample_pixels` (N H W, default 2^24) bounds it.
"""
import os

import keras
import numpy as np
import tensorflow as tf

from ride_tf import geometry
from ride_tf.checks import check_integer
from ride_tf.codec.derive import integer_model
from ride_tf.codec.graph import code_length_bits
from ride_tf.io import atomic_directory
from ride_tf.model import RIDE, load_model
from ride_tf.quantization import LN2, dequantize, quantize
from ride_tf.wavefront.sampling import draws, wavefront_sample

__all__ = ["export_saved_model", "export_command", "SIGNATURES", "DEFAULT_MAX_SAMPLE_PIXELS"]

# The signatures every export has, in the order they are registered ("serving_default" aliases the first).
SIGNATURES = ("log_likelihood_rate", "log_prob", "pixel_log_prob", "sample", "compressed_size", "serving_default")
DEFAULT_MAX_SAMPLE_PIXELS = 1 << 24


# ------------------------------------------------------------------ checks
def _require(condition, *message):
    """An Assert op: INVALID_ARGUMENT "assertion failed: [message...]" when `condition` is False."""
    return tf.debugging.Assert(condition, list(message), summarize=8)


def _checked(tensor, checks):
    """`tensor`, to be computed only after every assertion in `checks` has passed."""
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def _ensure_shape(tensor, shape):
    """`tensor` after a run-time check of its rank and its static dimensions (EnsureShape).

    TF Serving feeds a request into the graph without comparing its shape
    with the SignatureDef, so the graph checks it.  An Assert on the rank or
    on a dimension the signature declares would not do: Grappler folds such
    Shape and Rank ops into the declared values and drops the Assert.
    EnsureShape survives; it fails with INVALID_ARGUMENT "Shape of tensor ...
    [2,10,13] is not compatible with expected shape [?,?,?,1]".
    """
    return tf.ensure_shape(tensor, shape)


def _check_images(images, num_channels, endpoint, min_height=1, min_width=1):
    """uint8 images [N, H, W, C] as they arrived, checked at run time.

    Rank 4 and C = num_channels (EnsureShape), N >= 1, H >= min_height and
    W >= min_width (Asserts whose messages name the signature).
    """
    images = _ensure_shape(images, [None, None, None, num_channels])
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    checks = [
        _require(batch >= 1, f"{endpoint}: the batch is empty (shape", shape, ")"),
        _require((height >= min_height) & (width >= min_width),
                 f"{endpoint}: images must be at least {min_height} x {min_width} pixels"
                 + (" (the valid region of rate_valid needs the whole causal neighbourhood)"
                    if (min_height, min_width) != (1, 1) else "") + ", got", height, "x", width),
    ]
    return _checked(images, checks)


def _check_scalar(value, endpoint, name, low):
    """A scalar int32 input, checked at run time: rank 0 (EnsureShape) and value >= low."""
    value = _ensure_shape(value, [])
    return _checked(value, [_require(value >= low, f"{endpoint}: {name} must be >= {low}, got", value)])


def _finite(log_prob_map, endpoint, cell, what="log-likelihoods"):
    """The log-likelihood map, after an assertion that every value is finite (as `RIDE.pixel_log_prob`)."""
    bad = tf.reduce_sum(tf.cast(~tf.math.is_finite(log_prob_map), tf.int32))
    check = _require(tf.equal(bad, 0), f"{endpoint}:", bad, f"{what} are not finite; the weights "
                     f"of the model are non-finite or its spatial LSTM states overflowed (cell={cell}; the "
                     "stable cell cannot overflow)")
    return _checked(log_prob_map, [check])


# --------------------------------------------------------------- endpoints
class _Endpoints:
    """The functions behind the signatures, bound to one model (traced by ExportArchive)."""

    def __init__(self, model, max_sample_pixels):
        self.model = model
        self.max_sample_pixels = max_sample_pixels
        self.channels = model.num_channels
        self.r = model.radius
        self.integer = integer_model(model)

    def image_spec(self):
        return tf.TensorSpec([None, None, None, self.channels], tf.uint8, name="images")

    def _log_prob_map(self, images, endpoint, min_height=1, min_width=1):
        """Checked uint8 images -> float32 nats [N, H, W] of every pixel (bin-centre dequantization)."""
        images = _check_images(images, self.channels, endpoint, min_height, min_width)
        log_prob_map = self.model(dequantize(images, noise=False), training=False)
        return _finite(tf.cast(log_prob_map, tf.float32), endpoint, self.model.cell)

    def _rate(self, log_prob_map):
        """[N, H', W'] nats -> float32 [N] bit per pixel and channel, the mean taken in float64."""
        mean = tf.reduce_mean(tf.cast(log_prob_map, tf.float64), axis=[1, 2])
        return tf.cast(mean / (self.channels * LN2), tf.float32)

    def log_likelihood_rate(self, images):
        """images uint8 [N, H, W, C] -> rate, rate_valid: float32 [N] bit/px (every pixel, valid region)."""
        log_prob_map = self._log_prob_map(images, "log_likelihood_rate", self.r + 1, 2 * self.r + 1)
        rows, cols = geometry.valid_slices(self.model.nb_size)
        return {"rate": self._rate(log_prob_map), "rate_valid": self._rate(log_prob_map[:, rows, cols])}

    def log_prob(self, images):
        """images uint8 [N, H, W, C] -> log_prob: float64 [N], nats per image (every pixel)."""
        log_prob_map = self._log_prob_map(images, "log_prob")
        return {"log_prob": tf.reduce_sum(tf.cast(log_prob_map, tf.float64), axis=[1, 2])}

    def pixel_log_prob(self, images):
        """images uint8 [N, H, W, C] -> pixel_log_prob: float32 [N, H, W], nats per pixel."""
        return {"pixel_log_prob": self._log_prob_map(images, "pixel_log_prob")}

    def compressed_size(self, images):
        """images uint8 [N, H, W, C] -> bits: float64 [N], the exact ideal code length of each image.

        sum over every pixel of log2(TOTAL / f), f the frequency of the
        pixel's value in the integer model's table (`ride_tf.codec.integer`,
        its integers constants of this graph), as
        `ride_tf.compressed_size_bits`: the size of what
        `ride_tf.compress` writes, on any machine.
        """
        images = _check_images(images, self.channels, "compressed_size")
        bits = _finite(code_length_bits(self.integer, images), "compressed_size", self.model.cell, "code lengths")
        return {"bits": tf.reduce_sum(bits, axis=[1, 2])}

    def sample(self, num_samples, height, width, seed):
        """int32 scalars -> images: uint8 [num_samples, height, width, C], as `RIDE.sample` with that seed."""
        num_samples = _check_scalar(num_samples, "sample", "num_samples", 1)
        height = _check_scalar(height, "sample", "height", 1)
        width = _check_scalar(width, "sample", "width", 1)
        seed = _check_scalar(seed, "sample", "seed", np.iinfo(np.int32).min)
        pixels = (tf.cast(num_samples, tf.int64) * tf.cast(height, tf.int64) * tf.cast(width, tf.int64))
        size_ok = _require(pixels <= self.max_sample_pixels, "sample: num_samples x height x width =", pixels,
                           f"pixels exceeds the limit of this export, {self.max_sample_pixels} "
                           "(export_saved_model(..., max_sample_pixels=...))")
        num_samples = _checked(num_samples, [size_ok])
        dtype = self.model.compute_dtype
        known = tf.zeros(tf.stack([num_samples, height, width, self.channels]), dtype)
        mask = tf.ones(tf.stack([num_samples, height, width]), tf.bool)
        uniform, normal = draws(seed, num_samples, height, width, self.channels, tf.constant(0), dtype)
        images = wavefront_sample(self.model, known, mask, uniform, normal)
        return {"images": quantize(tf.cast(images, tf.float32))}

    def sample_spec(self):
        return [tf.TensorSpec([], tf.int32, name=name) for name in ("num_samples", "height", "width", "seed")]


def _check_model(model, owner):
    if not isinstance(model, RIDE):
        raise ValueError(f"{owner}: model must be a ride_tf.RIDE, got {type(model).__name__}.")
    model.require_finite_weights(owner)


def export_saved_model(model, path, max_sample_pixels=DEFAULT_MAX_SAMPLE_PIXELS, verbose=False):
    """Write `model` as a SavedModel with the signatures of the module docstring.

    Args:
      model: a `ride_tf.RIDE`.
      path: the SavedModel directory to create (it must not exist, or be empty).
        For TF Serving this is BASE/VERSION (see `export_command`).
      max_sample_pixels: the largest num_samples x height x width that the
        `sample` signature accepts (a bound on its memory).
      verbose: print Keras' list of the endpoints.

    Returns:
      `path`.
    """
    _check_model(model, "export_saved_model")
    model.whitening.require_adapted("export_saved_model")
    check_integer("export_saved_model", "max_sample_pixels", max_sample_pixels, 1)
    path = os.fspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise ValueError(f"export_saved_model: {path} exists and is not an empty directory.")
    endpoints = _Endpoints(model, int(max_sample_pixels))
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint registered is also "serving_default".
    archive.add_endpoint("log_likelihood_rate", endpoints.log_likelihood_rate, [endpoints.image_spec()])
    archive.add_endpoint("log_prob", endpoints.log_prob, [endpoints.image_spec()])
    archive.add_endpoint("pixel_log_prob", endpoints.pixel_log_prob, [endpoints.image_spec()])
    archive.add_endpoint("sample", endpoints.sample, endpoints.sample_spec())
    archive.add_endpoint("compressed_size", endpoints.compressed_size, [endpoints.image_spec()])
    with atomic_directory(path, "export_saved_model") as temporary:   # renamed to `path` once complete
        archive.write_out(temporary, verbose=verbose)
    return path


# ----------------------------------------------------------- ride-tf export
def _versions(directory):
    """The numeric version subdirectories of a TF Serving model base directory."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory)
                  if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def export_command(model_path, directory, version=None, max_sample_pixels=DEFAULT_MAX_SAMPLE_PIXELS):
    """`ride-tf export model.keras DIR [--version N]`: write the SavedModel to DIR/N, as TF Serving expects.

    Args:
      model_path: a .keras file of a `RIDE`.
      directory: the model's base directory (TF Serving's `base_path`); created if needed.
      version: a positive integer; None takes one more than the largest
        version already in `directory` (1 for a new directory).  An existing
        version is never overwritten (TF Serving treats versions as immutable).
      max_sample_pixels: see `export_saved_model`.

    The SavedModel is written to a hidden temporary directory next to the
    target, which TF Serving ignores, and renamed to DIR/N only when complete.

    Returns:
      the path DIR/N.

    Raises:
      ValueError: with a one-line message, for a missing or foreign model file,
        a bad version, an existing version or a base path that is not a directory.
    """
    if version is not None and (isinstance(version, bool) or not isinstance(version, (int, np.integer))
                                or version < 1):
        raise ValueError(f"export: version must be a positive integer, got {version!r}")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{directory}: exists and is not a directory")
    model = load_model(model_path)
    if version is None:
        version = (_versions(directory) or [0])[-1] + 1
    target = os.path.join(directory, str(int(version)))
    if os.path.exists(target):
        raise ValueError(f"{target}: version {version} already exists; TF Serving versions are immutable, "
                         "so export under a new --version")
    os.makedirs(directory, exist_ok=True)
    export_saved_model(model, target, max_sample_pixels=max_sample_pixels)   # written aside, then renamed
    return target
