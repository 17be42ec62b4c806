"""The coding path with its arithmetic compiled: the integer model's integers in C, the matrix products in BLAS.

`ride_tf.codec.coding` (NumPy and XLA) is the reference; this module
computes the same integers with the C kernels of `kernels.c` (built with the
package as `ride_tf.codec.kernels`), so that encoding and decoding pay for
the model's arithmetic and little else:

* **Matrix products** stay in NumPy (BLAS, one thread): every product of
  the integer model is a float64 sum of integers below 2^52, exact in any
  order (`ride_tf.codec.integer.quantize_linear`).  The MCGSM's three
  products (responses, gate, means) are one product with the matrix
  `mixture_weights`: the gate's rows that read the squared responses are
  applied in C, and the means' rows that read c are added to the rows of v
  that hold c (the same integer sum).
* **Everything between the products** is one C call per line of pixels:
  the centred inputs gathered from the image, the neighbours' LSTM states
  from ring buffers (r + 2 slots per row for the decoder's wavefronts, 2
  for the encoder's anti-diagonals), the cell's gates and lookups, the
  mixture's weights and means, every channel's cumulative table, and for
  the decoder the search of each lane's slot and the rANS steps.

Encoding runs the spatial LSTM along the anti-diagonals of the whole image
(teacher forcing), and the mixtures and tables of groups of diagonals
(about `PIXELS_PER_GROUP` pixels) on a second thread while the scan goes
on.  Decoding keeps the wavefront order.  `tests/test_native.py` checks
every kernel against the integer model's NumPy arithmetic, the encoder's
tables against the reference encoder's and the decoded pixels against the
NumPy decoder's.

When the extension is missing (a ride-tf installed without a C compiler), or
the environment sets RIDE_TF_NATIVE=0, `AVAILABLE` is False and the codec
uses the reference path: the same files, more slowly.
"""
import concurrent.futures
import os

import numpy as np
import threadpoolctl

from ride_tf import geometry
from ride_tf.codec import lookup
from ride_tf.codec.integer import TOTAL
from ride_tf.codec.rans import RansDecoder, RansError

# RIDE_TF_NATIVE=0 in the environment makes a process use the reference path (to compare, or to rule out the C
# kernels); the files are the same.
if os.environ.get("RIDE_TF_NATIVE", "1") == "0":
    kernels, IMPORT_ERROR = None, "RIDE_TF_NATIVE=0"
else:
    try:
        from ride_tf.codec import kernels
        IMPORT_ERROR = None
    except ImportError as error:            # built without a C compiler: the reference path codes the same files
        kernels, IMPORT_ERROR = None, error

__all__ = ["AVAILABLE", "NativeModel", "native_model", "model_constants", "require", "usable", "encode_steps",
           "PIXELS_PER_GROUP"]

AVAILABLE = kernels is not None
# Pixels per group of anti-diagonals whose mixtures the encoder computes at once (bounds its memory: about
# 1.5 KB per pixel for the 1 x 64 models).
PIXELS_PER_GROUP = 1 << 16


def require(owner="the compiled coding path"):
    """RuntimeError naming the problem when the C kernels are not built."""
    if kernels is None:
        raise RuntimeError(f"{owner}: the compiled kernels (ride_tf.codec.kernels) are not built ({IMPORT_ERROR}); "
                           "reinstall ride-tf where a C compiler is available (`pip install -e .`), or use the "
                           "reference path (decoder='numpy').")


def usable(integer):
    """Whether the kernels are built and cover this integer model: its experts' width shifts s (z = (d G) >> s)
    lie in [0, 62], as in every model trained here (22-30); other models code on the reference path."""
    shifts = np.asarray(integer.width_shifts)
    return AVAILABLE and shifts.size > 0 and 0 <= int(shifts.min()) and int(shifts.max()) <= 62


def _as(array, dtype):
    return np.ascontiguousarray(array, dtype)


def model_constants(integer, gate_squares):
    """The dict of `kernels.model`: sizes, lookup tables and the integer model's per-column constants
    (`gate_squares`: the gate's rows on the squared responses, [F, components])."""
    tables = lookup.load()
    out = dict(channels=integer.num_channels, components=integer.num_components, scales=integer.num_scales,
               features=integer.responses.weights.shape[1], units=integer.units, layers=integer.num_layers,
               paper=int(integer.cell == "paper"), extended=int(bool(integer.extended)),
               reads_inputs=int(bool(integer.reads_inputs)), radius=integer.radius,
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
            raise ValueError("NativeModel: the integer model's width shifts lie outside [0, 62]; code it on the "
                             "reference path (decoder='numpy').")
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
        self.natural = _as(m.order, np.int64)

    # ------------------------------------------------------------ one line of pixels
    def _lstm(self, rings, image, line, slots, x, a, out, ld, offset):
        """The LSTM layers of a line of pixels: states from and to `rings` ([H + 1, slots, U] each); the top
        layer's h into out[offset + p ld ...]; x, a: the scratch of `_buffers`."""
        height, width = image.shape[:2]
        n = line[3]
        for layer in range(self.layers):
            ring_h, ring_c = rings[layer]
            if layer == 0:
                kernels.inputs(self.capsule, image, height, width, line, False, x[0], x[0].shape[1], 0)
            column = self.width_u if layer == 0 else self.units
            kernels.states(self.capsule, ring_h, ring_c, height, width, slots, line, x[layer], x[layer].shape[1],
                           column)
            np.matmul(x[layer][:n], self.layer_weights[layer], out=a[:n])
            top = layer == self.layers - 1
            target, target_ld, target_offset = (out, ld, offset) if top else (x[layer + 1], x[layer + 1].shape[1], 0)
            kernels.cell(self.capsule, layer, a, a.shape[1], ring_h, ring_c, height, width, slots, line, target,
                         target_ld, target_offset)

    def _buffers(self, rows):
        """The scratch of a line of up to `rows` pixels: the products' inputs x per layer and their results a."""
        widths = [self.width_u] + [self.units] * (self.layers - 1)
        parts = 4 if self.integer.extended else 2
        x = [np.zeros((rows, w + parts * self.units)) for w in widths]
        a = np.zeros((rows, 5 * self.units))
        return x, a

    # ------------------------------------------------------------------ encoding
    def intervals(self, image):
        """(start, freq) int64 [H, W, C] of every value of a uint8 image [H, W, C], channels in coding order: the
        tables of `ride_tf.codec.coding.IntegerCoder.intervals`, integer for integer."""
        image = _as(image, np.uint8)
        height, width, channels = image.shape
        if channels != self.channels:
            raise ValueError(f"NativeModel.intervals: the image has {channels} channels, the model "
                             f"{self.channels}.")
        # The anti-diagonals d = i + j in order; pixel p of diagonal d is (i0 + p, d - i0 - p).
        diagonals = np.arange(height + width - 1)
        first_rows = np.maximum(0, diagonals - width + 1)
        lengths = np.minimum(height - 1, diagonals) - first_rows + 1
        starts = np.concatenate([[0], np.cumsum(lengths)])
        rows = np.concatenate([np.arange(i0, i0 + n) for i0, n in zip(first_rows, lengths)])
        cols = np.repeat(diagonals, lengths) - rows
        raster = rows * width + cols                             # raster index of each pixel in diagonal order
        known = _as(image.reshape(-1, channels)[raster][:, list(self.integer.order)], np.uint8)
        start = np.empty((height * width, channels), np.int64)
        freq = np.empty_like(start)
        groups = [0]
        for d in range(len(diagonals)):
            if starts[d + 1] - starts[groups[-1]] >= PIXELS_PER_GROUP or d == len(diagonals) - 1:
                groups.append(d + 1)
        longest = int(lengths.max())
        x, a = self._buffers(longest)
        rings = [(np.zeros((height + 1, 2, self.units)), np.zeros((height + 1, 2, self.units)))
                 for _ in range(self.layers)]

        def tables(first, last, z):
            b = z @ self.mixture_weights
            kernels.intervals(self.capsule, b, self.b_width, last - first, known[first:last], start[first:last],
                              freq[first:last])

        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"), \
                concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = []
            for g0, g1 in zip(groups[:-1], groups[1:]):
                first, last = int(starts[g0]), int(starts[g1])
                z = np.empty((last - first, self.z_width))
                for d in range(g0, g1):
                    n, i0 = int(lengths[d]), int(first_rows[d])
                    line = (i0, d - i0, 1, n)
                    offset = (int(starts[d]) - first) * self.z_width
                    if self.layers:
                        self._lstm(rings, image, line, 2, x, a, z, self.z_width, offset)
                    column = self.units if self.layers else 0
                    kernels.inputs(self.capsule, image, height, width, line, not self.integer.reads_inputs, z,
                                   self.z_width, offset + column)
                if len(pending) >= 2:               # at most two groups wait for their tables (memory)
                    pending.pop(0).result()
                pending.append(pool.submit(tables, first, last, z))
            for future in pending:
                future.result()
        out_start, out_freq = np.empty_like(start), np.empty_like(freq)
        out_start[raster], out_freq[raster] = start, freq
        return out_start.reshape(height, width, channels), out_freq.reshape(height, width, channels)

    # ------------------------------------------------------------------ decoding
    def decode(self, data, height, width, lanes):
        """The uint8 image [H, W, C] of a rANS stream with `lanes` lanes that `ride_tf.codec.coding.encode` wrote
        (`RansError` if it does not decode): front by front, as `ride_tf.codec.coding.decode`."""
        decoder = RansDecoder(data, lanes, TOTAL)
        integer = self.integer
        channels, r = self.channels, self.radius
        image = np.zeros((height, width, channels), np.uint8)
        slots = r + 2
        longest = int(min(height, -(-width // (r + 1))))
        x, a = self._buffers(longest)
        z = np.zeros((longest, self.z_width))
        b = np.zeros((longest, self.b_width))
        rings = [(np.zeros((height + 1, slots, self.units)), np.zeros((height + 1, slots, self.units)))
                 for _ in range(self.layers)]
        states = _as(decoder.states, np.uint64)
        words = _as(decoder.words, np.uint64)
        position = 0
        column = self.units if self.layers else 0
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            for t in range(geometry.num_fronts(height, width, integer.nb_size)):
                i_lo, i_hi = geometry.front_rows(t, height, width, integer.nb_size)
                n = i_hi - i_lo + 1
                if n <= 0:            # images narrower than r + 1 columns have fronts without pixels
                    continue
                line = (i_lo, t - (r + 1) * i_lo, r + 1, n)
                if self.layers:
                    self._lstm(rings, image, line, slots, x, a, z, self.z_width, 0)
                kernels.inputs(self.capsule, image, height, width, line, not integer.reads_inputs, z, self.z_width,
                               column)
                np.matmul(z[:n], self.mixture_weights, out=b[:n])
                position = kernels.decode(self.capsule, b, self.b_width, image, height, width, line, lanes, states,
                                          words, position, self.natural)
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


def encode_steps(lanes, start, freq, boundaries, num_lanes, total=TOTAL):
    """The stream (bytes) of `ride_tf.codec.rans.RansEncoder` for the steps boundaries[k] .. boundaries[k + 1] of
    the symbols (start, freq) on `lanes` (int arrays), in one C call; the same checks and bytes."""
    require("encode_steps")
    return kernels.rans_encode(_as(lanes, np.int64), _as(start, np.int64), _as(freq, np.int64),
                               _as(boundaries, np.int64), int(num_lanes), int(total))
