"""The coding path compiled: the integer model's arithmetic in C, a whole image per call, on every core.

`ride_tf.codec.coding` (NumPy) is the reference; this module computes the
same integers with the C kernels of `kernels.c` (built with the package as
`ride_tf.codec.kernels`), one C call per image:

* **Matrix products** in C (`kernels.set_weights` copies the weights once):
  every product of the integer model is a float64 sum of integers whose
  absolute values add up to less than 2^52 (`ride_tf.codec.derive.
  quantize_linear`), so every order of summation, fused multiply-adds
  included, gives the same integers: the AVX-512, AVX2 and generic kernels
  agree bit for bit.  Where a model's weights allow it (every shipped
  model, derivation 2 of `ride_tf.codec.derive`), the rows that read LSTM
  states run as 16-bit multiply-adds with 32-bit sums, and the rows that
  read the inputs c as two such passes (the weights' high and low halves);
  the indicator rows are added only where a pixel's neighbour is outside the
  image: exact sums too, so the same integers (`NativeModel.passes` lists
  the 16-bit passes; `kernels.products` computes one product for the
  tests).  The MCGSM's three products (responses, gate, means)
  are one product with the matrix `mixture_weights`: the gate's rows that
  read the squared responses are applied after it, and the means' rows that
  read c are added to the rows of v that hold c (the same integer sum).
* **Everything between the products** per pixel: the centred inputs
  gathered from the image, the neighbours' LSTM states from ring buffers
  (r + 2 slots per row for the decoder's wavefronts, 2 for the encoder's
  anti-diagonals), the cell's gates and lookups, the mixture's weights and
  means, every channel's cumulative table, and for the decoder the search of
  each lane's slot (from a logistic quantile of the slot, `quantile_guess`)
  and the rANS steps.  The cumulative tables are
  computed in float64, vectorised, where a model's bounds keep every term an
  exact integer below 2^52 (`NativeModel.table_arithmetic`, "float64" for
  every shipped model), else in int64: the same integers.  The encoder's
  rANS stream is written by `encode_fronts`, which walks the coding order
  itself.

**Threads** (`threads=`, default: every core this process may use, at most
one per `PIXELS_PER_THREAD` pixels): encoding runs the spatial LSTM along the
anti-diagonals of the image (teacher forcing), each thread taking a
contiguous part of every diagonal with its mixtures and tables, the threads
meeting at a barrier after each diagonal.  Decoding keeps the wavefront
order: where the image has at least two rANS lanes per thread, each thread
owns a fixed set of lanes and computes the LSTM, mixtures and values of
their pixels; channel by channel and round by round of pixels on distinct
lanes, the threads meet once and each reads the words of its own lanes,
counting the round's words in lane order as one thread would read them.
With fewer lanes the threads share each front's LSTM and mixtures and
thread 0 finds the values.  The bytes and the pixels do not depend on the
number of threads.  `tests/test_native.py`
checks the kernels against the integer model's NumPy arithmetic, the
encoder's tables against the reference encoder's and the decoded pixels
against the NumPy decoder's, for several thread counts and instruction sets.

When the extension is missing (a ride-tf installed without a C compiler), or
the environment sets RIDE_TF_NATIVE=0, `AVAILABLE` is False and the codec
uses the reference path: the same files, more slowly.
"""
import os

import numpy as np

from ride_tf import geometry
from ride_tf.runtime import native_setting
from ride_tf.codec import lookup
from ride_tf.codec.integer import TOTAL
from ride_tf.codec.rans import RansDecoder, RansError

# RIDE_TF_NATIVE (`ride_tf.runtime.native_setting`): "0" makes a process use the reference path (to compare, or to
# rule out the C kernels); "generic" or "avx2" caps the instruction set of the kernels (what a machine without
# AVX-512 or AVX2 runs); unset or "1": the best this CPU has.  The files are the same.
ISA_NAMES = ("generic", "avx2", "avx512")
_SETTING = native_setting()
ISA = "avx512" if _SETTING == "1" else _SETTING
if _SETTING == "0":
    kernels, IMPORT_ERROR = None, "RIDE_TF_NATIVE=0"
else:
    try:
        from ride_tf.codec import kernels
        IMPORT_ERROR = None
    except ImportError as error:            # built without a C compiler: the reference path codes the same files
        kernels, IMPORT_ERROR = None, error

__all__ = ["AVAILABLE", "NativeModel", "native_model", "model_constants", "require", "usable", "encode_steps",
           "encode_fronts", "default_threads", "ISA", "ISA_NAMES", "PIXELS_PER_THREAD"]

AVAILABLE = kernels is not None
# An image gets at most one thread per this many pixels (a thread's start and its barriers cost more than it saves
# on smaller images).
PIXELS_PER_THREAD = 1 << 12


def default_threads():
    """The cores this process may run on (its CPU affinity), the default number of coding threads."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _threads(threads, pixels):
    """The threads that code an image of `pixels` pixels: `threads` (None: `default_threads()`), at most one per
    `PIXELS_PER_THREAD` pixels, at least 1."""
    wanted = default_threads() if threads is None else int(threads)
    return max(1, min(wanted, pixels // PIXELS_PER_THREAD, 256))


def require(owner="the compiled coding path"):
    """RuntimeError naming the problem when the C kernels are not built."""
    if kernels is None:
        raise RuntimeError(f"{owner}: the compiled kernels (ride_tf.codec.kernels) are not built ({IMPORT_ERROR}); "
                           "reinstall ride-tf where a C compiler is available (`pip install -e .`), or use the "
                           "reference path (decoder='numpy').")


MAX_EXPERTS = 1024


def usable(integer):
    """Whether the kernels are built and cover this integer model: its experts' width shifts s (z = (d G) >> s)
    lie in [0, 62], as in every model trained here (22-30), and it has at most `MAX_EXPERTS` experts (the kernels'
    float64 sums of weights stay exact); other models code on the reference path."""
    shifts = np.asarray(integer.width_shifts)
    return (AVAILABLE and shifts.size > 0 and 0 <= int(shifts.min()) and int(shifts.max()) <= 62
            and integer.num_experts <= MAX_EXPERTS)


def _as(array, dtype):
    return np.ascontiguousarray(array, dtype)


def model_constants(integer, gate_squares):
    """The dict of `kernels.model`: sizes, lookup tables and the integer model's per-column constants
    (`gate_squares`: the gate's rows on the squared responses, [F, components])."""
    tables = lookup.load()
    out = dict(channels=integer.num_channels, components=integer.num_components, scales=integer.num_scales,
               features=integer.responses.weights.shape[1], units=integer.units, layers=integer.num_layers,
               paper=int(integer.cell == "paper"), extended=int(bool(integer.extended)),
               reads_inputs=int(bool(integer.reads_inputs)), radius=integer.radius, isa=ISA_NAMES.index(ISA),
               offsets=_as(geometry.causal_offsets(integer.nb_size), np.int64).reshape(-1),
               input_mean=_as(integer.input_mean, np.float64).reshape(-1),
               gate_squares=_as(gate_squares, np.float64),
               logit_factor_scaled=_as(integer.logit_factor_scaled, np.float64),
               logit_offset=_as(integer.logit_offset, np.float64),
               inverse_widths=_as(integer.inverse_widths_int, np.int64),
               width_shifts=_as(integer.width_shifts_t, np.int64),
               regressions=_as(integer.regressions, np.int64))
    for name in lookup.TABLES:
        out[name] = _as(tables[name], np.int64)
        out[name + "_low"] = lookup.TABLES[name][1] << lookup.ARGUMENT_BITS
    affine = {f"layer{k}": layer for k, layer in enumerate(integer.layers)}
    affine.update(responses=integer.responses, gate=integer.gate, means=integer.means)
    for prefix, linear in affine.items():
        out[prefix + "_bias"] = _as(linear.bias, np.float64)
        out[prefix + "_scale"] = _as(linear.scale, np.float64)
        out[prefix + "_low"], out[prefix + "_high"] = float(linear.low), float(linear.high)
    return out


class NativeModel:
    """An integer model (`ride_tf.codec.integer.IntegerModel`) in the C kernels: its encoder and decoder.

    Attributes: `integer`; `layer_weights` (the LSTM layers' integer weights
    [D_l, 5U]); `mixture_weights` [Z, F + components + components C], the
    MCGSM's products on the mixture inputs z = [h, c, e] (skip inputs),
    [c, e] (no LSTM) or [h, c] (the paper's architecture).
    """

    def __init__(self, integer):
        require("NativeModel")
        if not usable(integer):
            raise ValueError("NativeModel: the integer model's width shifts lie outside [0, 62] or it has more than "
                             f"{MAX_EXPERTS} experts; code it on the reference path (decoder='numpy').")
        self.integer = m = integer
        self.channels, self.units, self.layers, self.radius = m.num_channels, m.units, m.num_layers, m.radius
        self.width_u = m.num_inputs + m.num_offsets
        self.layer_weights = [_as(layer.weights, np.float64) for layer in m.layers]
        dim_v = m.responses.weights.shape[0]
        gate_v, gate_squares = m.gate.weights[:dim_v], m.gate.weights[dim_v:]
        means_v, means_c = np.array(m.means.weights[:dim_v]), m.means.weights[dim_v:]
        features = m.responses.weights.shape[1]
        if m.reads_inputs:
            first = self.units if self.layers else 0        # v = [h, c, e]: c's rows also read by the means
            means_v[first:first + m.num_inputs] += means_c     # integers below 2^53: exact
            self.mixture_weights = _as(np.concatenate([m.responses.weights, gate_v, means_v], 1), np.float64)
        else:
            top = np.concatenate([m.responses.weights, gate_v, means_v], 1)
            bottom = np.concatenate([np.zeros((m.num_inputs, features + m.num_components)), means_c], 1)
            self.mixture_weights = _as(np.concatenate([top, bottom], 0), np.float64)
        self.z_width, self.b_width = self.mixture_weights.shape
        self.capsule = kernels.model(model_constants(m, gate_squares))
        # the instruction set the kernels run: the best this CPU has, at most RIDE_TF_NATIVE's
        self.isa = ISA_NAMES[kernels.set_weights(self.capsule, self.layer_weights, self.mixture_weights)]
        # the products' rows computed in 16-bit integers, [(product, first_row, end_row, scale)] (product l < L the
        # LSTM layer l, L the mixture): the states h where the weights fit (derivation 2), the inputs c in two
        # halves where theirs do; the other rows in float64 (kernels.c, `Narrow`)
        self.passes = kernels.passes(self.capsule)
        # "float64" (vectorised) where the model's bounds keep every term of the cumulative tables below 2^52, else
        # "int64": the same integers either way (kernels.c, `terms_are_exact`)
        self.table_arithmetic = kernels.table_arithmetic(self.capsule)
        self.natural = _as(m.order, np.int64)

    # ------------------------------------------------------------------ encoding
    def intervals(self, image, threads=None):
        """(start, freq) int64 [H, W, C] of every value of a uint8 image [H, W, C], channels in coding order: the
        tables of `ride_tf.codec.coding.IntegerCoder.intervals`, integer for integer, on `threads` threads (None:
        `default_threads()`)."""
        image = _as(image, np.uint8)
        height, width, channels = image.shape
        if channels != self.channels:
            raise ValueError(f"NativeModel.intervals: the image has {channels} channels, the model "
                             f"{self.channels}.")
        start = np.empty((height, width, channels), np.int64)
        freq = np.empty_like(start)
        kernels.encode_image(self.capsule, image, height, width, self.natural, start, freq,
                             _threads(threads, height * width))
        return start, freq

    def experts(self, image, stride, threads=None):
        """`ride_tf.codec.coding.IntegerCoder.experts` in C: (logits, masses) int64 [S, K] of the pixels of every
        `stride`-th row of a uint8 image [H, W, 1], integer for integer."""
        image = _as(image, np.uint8)
        height, width, channels = image.shape
        if channels != 1 or self.channels != 1:
            raise ValueError("NativeModel.experts: a one-channel model and image are needed.")
        count = -(-height // stride) * width
        logits = np.empty((count, self.integer.num_experts), np.int64)
        masses = np.empty_like(logits)
        kernels.experts_image(self.capsule, image, height, width, int(stride), logits, masses,
                              _threads(threads, height * width))
        return logits, masses

    # ------------------------------------------------------------------ decoding
    def decode(self, data, height, width, lanes, threads=None):
        """The uint8 image [H, W, C] of a rANS stream with `lanes` lanes that `ride_tf.codec.coding.encode` wrote
        (`RansError` if it does not decode): front by front, as `ride_tf.codec.coding.decode`, on `threads`
        threads (None: `default_threads()`); the same pixels for any number."""
        decoder = RansDecoder(data, lanes, TOTAL)
        image = np.zeros((height, width, self.channels), np.uint8)
        states = _as(decoder.states, np.uint64)
        words = _as(decoder.words, np.uint64)
        position = kernels.decode_image(self.capsule, image, height, width, lanes, states, words, 0, self.natural,
                                        _threads(threads, height * width))
        if position < 0:
            raise RansError("the coded stream ends too early (truncated, or decoded with other tables).")
        decoder.states, decoder.position = states, position
        decoder.check_finished()
        return image

    # ------------------------------------------------------------ for the tests
    def mixture(self, z):
        """(weights [M, K] int64, means [M, K, C] int64) of pixels with mixture inputs z [M, Z]: the integer
        model's `mixture` (its means repeated over the scales)."""
        b = _as(z, np.float64) @ self.mixture_weights
        count = len(b)
        integer = self.integer
        weights = np.empty((count, integer.num_experts), np.int64)
        means = np.empty((count, integer.num_components, self.channels), np.int64)
        kernels.mixture(self.capsule, b, self.b_width, count, weights, means)
        return weights, np.repeat(means, integer.num_scales, axis=1)


_MODELS = {}


def native_model(integer):
    """The `NativeModel` of an integer model (built once per integer model)."""
    if _MODELS.get(id(integer), (None,))[0] is not integer:
        _MODELS[id(integer)] = (integer, NativeModel(integer))
    return _MODELS[id(integer)][1]


def encode_fronts(start, freq, nb_size, num_lanes, total=TOTAL):
    """The stream (bytes) of `encode_steps` for the values of a whole image, start and freq int [H, W, C] in image
    order (the channels in coding order), in the coding order of `ride_tf.codec.coding.steps`, which the C kernel
    follows without building it; the same checks and bytes."""
    require("encode_fronts")
    start, freq = _as(start, np.int64), _as(freq, np.int64)
    if start.ndim != 3 or freq.shape != start.shape:
        raise ValueError(f"encode_fronts: start and freq must be [H, W, C] arrays of one shape, got {start.shape} "
                         f"and {freq.shape}.")
    height, width, channels = start.shape
    return kernels.rans_encode_fronts(start, freq, height, width, channels, geometry.radius(nb_size),
                                      int(num_lanes), int(total))


def encode_steps(lanes, start, freq, boundaries, num_lanes, total=TOTAL):
    """The stream (bytes) of `ride_tf.codec.rans.RansEncoder` for the steps boundaries[k] .. boundaries[k + 1] of
    the symbols (start, freq) on `lanes` (int arrays), in one C call; the same checks and bytes."""
    require("encode_steps")
    return kernels.rans_encode(_as(lanes, np.int64), _as(start, np.int64), _as(freq, np.int64),
                               _as(boundaries, np.int64), int(num_lanes), int(total))
