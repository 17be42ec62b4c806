"""The integer model: a RIDE's coding tables in integer arithmetic, so that every machine computes the same ones.

A range coder needs the encoder's probability tables exactly.  The float
model's tables are not portable: matrix products change their summation
order with the kernel (oneDNN or Eigen, AVX2 or AVX-512, CPU or GPU), and
exp, tanh and erf change their last bits with the library.  The integer
model computes every table from integers only (after Ballé,
Johnston and Minnen, "Integer networks for data compression with
latent-variable models", ICLR 2019):

* Values are integers standing for x / 2^e, each with a fixed exponent e:
  centred inputs c = x - m_x at 2^-12, LSTM states and gates at 2^-15,
  pre-activations, logits and standardised edges at 2^-10, intensities at
  2^-16, mixture weights summing to exactly 2^20, normal CDFs at 2^-24.
* Affine maps are products of such integers with integer weights, in
  float64 (any device).  The weights are chosen so that the sum of the
  absolute values of every column's terms stays below 2^52
  (`quantize_linear`, checked when derived), so every partial sum of any
  summation order, fused multiply-adds included, is an exact integer.
  Rescaling multiplies by a power of two and floors: exact too.
* Derivation 2 (`DERIVATION`) also keeps every weight that reads an LSTM
  state h (|h| <= 2^15) within 16 bits and each column's worst case over
  those rows below 2^31, so a coder may compute those products in 16-bit
  integers with 32-bit sums (the C kernels do: `ride_tf.codec.native`); the
  integers are the same as float64's.  Derivation 1, the earlier one, is
  kept for the files written with it.
* Nonlinearities (tanh, sigmoid, exp, the normal CDF) are looked up in the
  integer tables of `ride_tf.codec.lookup` at integer arguments.
* Divisions are integer divisions (int64 floor division); the argmax that
  takes the rounding remainder of the weights breaks ties by the lowest index.

So the tables are functions of the integer weights alone, and the same on
every machine.  The integer weights are derived from the float weights
deterministically, once (`ride_tf.codec.derive`, which needs the float
model); an `IntegerModel` is plain data: its configuration and integer
arrays, written to a file and loaded back with NumPy alone
(`ride_tf.codec.model_file`).  Its `fingerprint` (SHA-256 of every integer
array, the configuration, the lookup tables and the format) is stored in
each compressed file and checked by the decoder.  This module imports no
TensorFlow: its arithmetic takes an `ops` object, `NUMPY` here (the coder's
reference path) and `ride_tf.codec.graph.TENSORFLOW` for graphs (the
compiled decoder, SavedModels).

The model, for a pixel with causal 8-bit values k (P per channel) and
outside-the-image indicators e:

    c = [(2k + 1) 2^3 - round(m_x 2^12)] (inside)          centred inputs; the whitening x^ = A c is folded
                                                           into the weights that read it
    spatial LSTM (stable or paper cell) on [c, e], [h_left, h_up]: h, c at 2^-15
    MCGSM on v (the top states and / or [c, e]):
      responses r = v F (2^20 range), quadratic r^2, gate logits eta + e^alpha (l . v - r^2 beta^2 / 2)
      weights w_k = EXP[logit_k - max] normalised to sum 2^20; expert means mu_k (2^-16) per channel
    channel c of expert k: z = (edge - mean_kc) / sigma_kc at 2^-10, mean_kc conditioned on the earlier
      channels' values; Q(b) = floor(sum_k w_k PHI[z_kb] / 2^24) for the bin edges b = 0..256 (Q(0) = 0,
      Q(256) = 2^20), and the cumulative table F(b) = Q(b) + b: every value has frequency >= 1 of TOTAL.
      The weights of the next channel are w_k (P_k(value) + 1) normalised again.

`TOTAL` = 2^20 + 256 is the range coder's total (`ride_tf.codec.rans`).
"""
import dataclasses
import hashlib

import numpy as np

from ride_tf import geometry
from ride_tf.codec import lookup

__all__ = ["IntegerModel", "IntegerLinear", "NUMPY", "TOTAL", "WEIGHT_BITS", "WINDOW", "FORMAT", "NUM_BINS",
           "CONFIG_KEYS", "CELLS", "PRIOR_SHIFT_BITS", "DERIVATION", "DERIVATIONS"]

FORMAT = "ride-tf integer model 1"
# How integer models are derived from float weights (`ride_tf.codec.derive`): 2 narrows the weights that read
# LSTM states to 16 bits (issue 29); 1, the earlier derivation, stays derivable for the files written with it.
DERIVATION = 2
DERIVATIONS = (1, 2)
INPUT_BITS = 12          # centred inputs c
STATE_BITS = 15          # LSTM states, gates
ARG = lookup.ARGUMENT_BITS   # pre-activations, logits, z: integers standing for a / 2^10
MEAN_BITS = 16           # intensities
WEIGHT_BITS = 20         # mixture weights sum to 2^20
CDF_BITS = 24            # normal CDF
TOTAL = (1 << WEIGHT_BITS) + 256
# Bins of the decoder's first table around each pixel's mixture mean.
WINDOW = 16
PAPER_MEMORY = 64        # the paper cell's unbounded memory is clipped to [-64, 64]
PRIOR_SHIFT_BITS = 4     # a per-image shift of the experts' priors is stored in 1/16 nats
NUM_BINS = 256
CELLS = ("stable", "paper")
# The configuration of an integer model: the architecture it computes (its types are checked when loaded).
CONFIG_KEYS = ("num_channels", "order", "nb_size", "num_layers", "units", "cell", "extended", "reads_inputs",
               "num_components", "num_scales")
# The arrays beside the affine maps, in the order the fingerprint covers them.
ARRAY_KEYS = ("gate_exponents", "logit_factor", "logit_scale", "logit_offset", "inverse_widths", "width_shifts",
              "regressions")


def _clip(x, low, high):
    """np.clip without its Python wrapper (in place on x)."""
    return np.minimum(np.maximum(x, low, out=x), high, out=x)



# ------------------------------------------------------------------ affine maps
@dataclasses.dataclass
class IntegerLinear:
    """y = clip(floor((x @ weights + bias) * scale), low, high): x and y integers, `scale` powers of two.

    weights [n_in, n_out], bias [n_out] and scale [n_out] are float64 arrays
    holding integers (powers of two); for inputs within their bounds every
    partial sum of x @ weights + bias is an integer below 2^52 (exact in float64).
    """
    weights: np.ndarray
    bias: np.ndarray
    scale: np.ndarray
    low: float
    high: float

    def __call__(self, x, ops):
        acc = ops.matmul(x, ops.constant(self.weights)) + ops.constant(self.bias)
        return ops.clip(ops.floor(acc * ops.constant(self.scale)), self.low, self.high)

    def arrays(self):
        return [self.weights, self.bias, self.scale, np.array([self.low, self.high])]


# ------------------------------------------------------------------ the model
class IntegerModel:
    """The integer model of a RIDE (see the module docstring): its configuration and integer arrays.

    Args:
      config: dict of `CONFIG_KEYS`: num_channels C, order (the coding order
        of the channels, a permutation), nb_size, num_layers L, units U, cell
        ("stable" or "paper"), extended, reads_inputs (the MCGSM reads the
        inputs u), num_components and num_scales (K = their product experts).
      arrays: dict of input_mean [P C]; layers (L `IntegerLinear`, [D_l, 5U]);
        responses, gate, means (`IntegerLinear`); and the float64 arrays of
        `ARRAY_KEYS`: gate_exponents [components], logit_factor, logit_scale,
        logit_offset [K], inverse_widths and width_shifts [K, C],
        regressions [components, C, C].  Every value is an integer held in
        float64 (the scales are powers of two).

    Built by `ride_tf.codec.derive.derive` from a RIDE, or loaded from a file
    (`ride_tf.codec.model_file.load_integer_model`).  Attributes: the config's
    names, `fingerprint` (16 bytes), `radius`, `num_experts`, `num_inputs`,
    `num_offsets` and the arrays.
    """

    def __init__(self, config, arrays):
        missing = [key for key in CONFIG_KEYS if key not in config]
        if missing:
            raise ValueError(f"IntegerModel: the configuration lacks {', '.join(missing)}.")
        self.num_channels = int(config["num_channels"])
        self.order = tuple(int(c) for c in config["order"])   # the c-th coded channel is channel order[c]
        self.nb_size, self.radius = int(config["nb_size"]), geometry.radius(int(config["nb_size"]))
        self.num_layers, self.units = int(config["num_layers"]), int(config["units"])
        self.cell, self.extended = str(config["cell"]), bool(config["extended"])
        self.reads_inputs = bool(config["reads_inputs"])
        self.num_components, self.num_scales = int(config["num_components"]), int(config["num_scales"])
        self.num_experts = self.num_components * self.num_scales
        self.num_offsets = geometry.num_indicators(self.nb_size)
        self.num_inputs = geometry.num_inputs(self.nb_size, self.num_channels)
        self.tables64 = {name: table.astype(np.float64) for name, table in lookup.load().items()}
        self.input_mean = np.asarray(arrays["input_mean"], np.float64)
        self.layers = list(arrays["layers"])
        self.responses, self.gate, self.means = arrays["responses"], arrays["gate"], arrays["means"]
        self.gate_exponents = np.asarray(arrays["gate_exponents"], np.float64)
        self.logit_factor = np.asarray(arrays["logit_factor"], np.float64)
        self.logit_scale = np.asarray(arrays["logit_scale"], np.float64)
        self.logit_offset = np.asarray(arrays["logit_offset"], np.float64)
        self.inverse_widths = np.asarray(arrays["inverse_widths"], np.float64)                  # [K, ch]
        self.width_shifts = np.asarray(arrays["width_shifts"]).astype(np.int64)                 # [K, ch]
        self.regressions = np.asarray(arrays["regressions"], np.float64)                        # [C, ch, ch]
        # E_k 2^-shift_k: t E_k (< 2^52) rescaled by a power of two, exact.
        self.logit_factor_scaled = self.logit_factor * self.logit_scale
        # G 2^-s: multiplying an integer difference by it is exact ((diff G) 2^-s, a power-of-two rescaling).
        self.inverse_widths_scaled = np.ldexp(self.inverse_widths, -self.width_shifts)
        self.inverse_widths_int = np.ascontiguousarray(self.inverse_widths.T.astype(np.int64))   # [ch, K]
        self.width_shifts_t = np.ascontiguousarray(self.width_shifts.T)                          # [ch, K]
        self.fingerprint = self._fingerprint()

    def config(self):
        """The configuration dict (`CONFIG_KEYS`) of this model, JSON-serialisable."""
        return dict(num_channels=self.num_channels, order=list(self.order), nb_size=self.nb_size,
                    num_layers=self.num_layers, units=self.units, cell=self.cell, extended=self.extended,
                    reads_inputs=self.reads_inputs, num_components=self.num_components,
                    num_scales=self.num_scales)

    def affine_maps(self):
        """{name: IntegerLinear}: layer0 .. layer{L-1}, responses, gate, means, in the fingerprint's order."""
        maps = {f"layer{k}": layer for k, layer in enumerate(self.layers)}
        maps.update(responses=self.responses, gate=self.gate, means=self.means)
        return maps

    def named_arrays(self):
        """{name: float64 array} of every integer array of the model (what a model file stores): input_mean, each
        affine map's weights, bias, scale and bounds ("layer0.weights", ...), and `ARRAY_KEYS`."""
        out = {"input_mean": self.input_mean}
        for prefix, linear in self.affine_maps().items():
            for name, array in zip(("weights", "bias", "scale", "bounds"), linear.arrays()):
                out[f"{prefix}.{name}"] = np.asarray(array, np.float64)
        for key in ARRAY_KEYS:
            out[key] = np.asarray(getattr(self, key), np.float64)
        return out

    # ------------------------------------------------------------ identity
    def arrays(self):
        """Every integer array of the model, in a fixed order (what the fingerprint covers)."""
        return list(self.named_arrays().values())

    def _fingerprint(self):
        digest = hashlib.sha256(FORMAT.encode())
        config = (self.num_channels, self.nb_size, self.num_layers, self.units, self.cell, self.extended,
                  self.reads_inputs, self.num_components, self.num_scales, self.order)
        digest.update(repr(config).encode())
        digest.update(lookup.SHA256.encode())
        for array in self.arrays():
            digest.update(np.ascontiguousarray(array, "<f8").tobytes())
        return digest.digest()[:16]

    # -------------------------------------------------------------- lookups
    def lookup(self, name, index, ops):
        """The table `name` at integer arguments `index` (float64 integers), clipped to the table's range."""
        _, low, _, _ = lookup.TABLES[name]
        return ops.clipped_gather(self.tables64[name], index - float(low << ARG))

    # ------------------------------------------------------------- the LSTM
    def centred_inputs(self, values, outside, ops):
        """u = [c, e] [..., P C + P] from 8-bit values k [..., P C] (anything where outside) and indicators e
        [..., P] (1 outside the image); c = ((2k + 1) 2^3 - round(m_x 2^12)) where inside, else 0."""
        values, outside = ops.float(values), ops.float(outside)
        inside = 1.0 - ops.repeat(outside, self.num_channels, -1)
        centred = ((2.0 * values + 1.0) * 8.0 - ops.constant(self.input_mean)) * inside
        return ops.concat([centred, outside], -1)

    def cell_step(self, layer, x, h_left, c_left, h_up, c_up, ops):
        """One integer cell for M pixels: (h, c) [M, U] from inputs x [M, D] and the neighbours' states."""
        parts = [x, h_left, h_up] + ([c_left, c_up] if self.extended else [])
        a = self.layers[layer](ops.concat(parts, -1), ops)
        a_g, a_o, a_i, a_l, a_u = ops.split(a, 5)
        g = self.lookup("tanh", a_g, ops)
        o = self.lookup("sigmoid", a_o, ops)
        one = float(1 << STATE_BITS)
        if self.cell == "paper":
            i, f_left, f_up = (self.lookup("sigmoid", v, ops) for v in (a_i, a_l, a_u))
            bound = one * PAPER_MEMORY
        else:
            top = ops.maximum(ops.maximum(a_i, a_l), ops.maximum(a_u, 0.0))
            e_i, e_l, e_u = (self.lookup("exp_gate", v - top, ops) for v in (a_i, a_l, a_u))
            total = e_i + e_l + e_u + self.lookup("exp_gate", -top, ops)
            i, f_left, f_up = (ops.floordiv(v * one, total) for v in (e_i, e_l, e_u))
            bound = one
        c = ops.clip(ops.floor((g * i + c_left * f_left + c_up * f_up) * (1.0 / one)), -bound, bound)
        h = self.lookup("tanh", ops.floor(c * o * 2.0 ** -(2 * STATE_BITS - ARG)), ops)
        return h, c

    def cell_step_numpy(self, layer, x, h_left, c_left, h_up, c_up):
        """`cell_step` in NumPy, lean: the same integers with one BLAS product, one gather for tanh(a_g) and
        sigmoid(a_o) (a table of both, per-column offsets) and one for the four exp_gate lookups, int64 elsewhere.
        The decoder's front loop and the encoder's diagonal scan run it; float64 arrays [M, .] in and out."""
        linear, units, lean = self.layers[layer], self.units, self._lean_cell()
        parts = [x, h_left, h_up] + ([c_left, c_up] if self.extended else [])
        a = np.concatenate(parts, -1) @ linear.weights
        a += linear.bias
        a *= linear.scale
        np.floor(a, out=a)
        a = _clip(a, linear.low, linear.high).astype(np.int64).reshape(len(a), 5, units)
        go = np.take(lean["go_table"], _clip(a[:, :2] + lean["go_offset"], lean["go_low"], lean["go_high"]))
        g, o = go[:, 0], go[:, 1]
        one = 1 << STATE_BITS
        if self.cell == "paper":
            sig = lean["sigmoid"]
            gates = np.take(sig, _clip(a[:, 2:] - lean["sigmoid_low"], 0, len(sig) - 1))
            bound = one * PAPER_MEMORY
        else:
            args = np.zeros((len(a), 4, units), np.int64)
            args[:, :3] = a[:, 2:]
            top = args.max(axis=1, keepdims=True)                   # max(a_i, a_l, a_u, 0)
            args -= top
            exp = lean["exp_gate"]
            args -= lean["exp_gate_low"]
            e = np.take(exp, np.maximum(args, 0, out=args))          # arguments <= 0: below the table's top
            total = e.sum(axis=1, keepdims=True)
            gates = (e[:, :3] * one) // total
            bound = one
        memory = g * gates[:, 0]
        memory += c_left.astype(np.int64) * gates[:, 1]
        memory += c_up.astype(np.int64) * gates[:, 2]
        memory >>= STATE_BITS
        c = _clip(memory, -bound, bound)
        index = c * o
        index >>= 2 * STATE_BITS - ARG
        index -= lean["tanh_low"]
        tanh = lean["tanh"]
        h = np.take(tanh, _clip(index, 0, len(tanh) - 1))
        return h.astype(np.float64), c.astype(np.float64)

    def _lean_cell(self):
        """The int64 tables and offsets of `cell_step_numpy` (built once)."""
        if getattr(self, "_lean", None) is None:
            tables = {name: table.astype(np.int64) for name, table in self.tables64.items()}
            low = {name: lookup.TABLES[name][1] << ARG for name in tables}
            tanh, sigmoid = tables["tanh"], tables["sigmoid"]
            column = lambda first, second: np.array([first, second], np.int64)[:, None]       # [2, 1]
            self._lean = {
                "go_table": np.concatenate([tanh, sigmoid]), "go_offset": column(-low["tanh"], len(tanh) - low["sigmoid"]),
                "go_low": column(0, len(tanh)), "go_high": column(len(tanh) - 1, len(tanh) + len(sigmoid) - 1),
                "tanh": tanh, "tanh_low": low["tanh"], "sigmoid": sigmoid, "sigmoid_low": low["sigmoid"],
                "exp_gate": tables["exp_gate"], "exp_gate_low": low["exp_gate"]}
        return self._lean

    def mcgsm_inputs(self, h, u, ops):
        """v: what the MCGSM reads ([h, u], u or h)."""
        if self.num_layers == 0:
            return u
        return ops.concat([h, u], -1) if self.reads_inputs else h

    # ----------------------------------------------------------- the MCGSM
    def logits(self, v, ops):
        """The gate logits [M, K] (at 2^-10, the priors eta_k included, clipped to +-2^20) of pixels with MCGSM
        inputs v [M, dim]."""
        responses = self.responses(v, ops)
        squares = ops.floor(responses * responses * 2.0 ** -20)
        t = ops.repeat(self.gate(ops.concat([v, squares], -1), ops), self.num_scales, -1)       # [M, K]
        logits = ops.floor(t * ops.constant(self.logit_factor_scaled))
        return ops.clip(logits + ops.constant(self.logit_offset), -float(1 << 20), float(1 << 20))

    def weights(self, logits, ops):
        """The mixture weights [M, K], summing to 2^20, of gate logits [M, K]: EXP[logit - max], normalised."""
        return self.normalise(self.lookup("exp_weight", logits - ops.max(logits, -1), ops), ops)

    def mixture(self, v, u, ops):
        """(weights [M, K] summing to 2^20, means [M, K, C] at 2^-16) of pixels with MCGSM inputs v [M, dim]."""
        weights = self.weights(self.logits(v, ops), ops)
        means = self.means(ops.concat([v, u[:, :self.num_inputs]], -1), ops)                  # [M, C * ch]
        means = ops.reshape(means, [-1, self.num_components, self.num_channels])
        return weights, ops.repeat(means, self.num_scales, 1)

    def with_prior_shift(self, shift):
        """This model with the experts' priors eta_k shifted by shift_k / 2^PRIOR_SHIFT_BITS nats (shift: ints
        [K]); `ride_tf.codec.adapt` fits such a shift to one image."""
        shift = np.asarray(shift)
        if shift.shape != (self.num_experts,):
            raise ValueError(f"with_prior_shift: one shift per expert ({self.num_experts}) is needed, got shape "
                             f"{shift.shape}.")
        arrays = {key: getattr(self, key) for key in ("input_mean", "layers", "responses", "gate", "means")
                  + ARRAY_KEYS}
        arrays["logit_offset"] = self.logit_offset + np.ldexp(shift.astype(np.float64), ARG - PRIOR_SHIFT_BITS)
        return IntegerModel(self.config(), arrays)

    @staticmethod
    def normalise(raw, ops):
        """Integer weights summing to exactly 2^20: floor(raw_k 2^20 / sum raw), the remainder to the largest
        (the lowest index among ties).  raw: float64 integers [M, K] below 2^42, not all zero."""
        weights = ops.floordiv(raw * float(1 << WEIGHT_BITS), ops.sum(raw, -1))
        remainder = float(1 << WEIGHT_BITS) - ops.sum(weights, -1)
        return weights + ops.first_largest(weights) * remainder

    # ------------------------------------------------------------- channels
    def channel_mixture(self, weights, means, previous, channel, ops):
        """(weights [M, K], mean [M, K]) of channel `channel` given the earlier channels' values previous [M, >= ch].

        Channel by channel: the mean of channel ch is conditioned on the
        earlier values (their bin centres), and after each earlier channel
        the weights are multiplied by the mass each expert gave its bin."""
        for ch in range(channel + 1):
            mean = means[..., ch]
            for earlier in range(ch):
                centre = (2.0 * ops.float(previous[:, earlier]) + 1.0) * 128.0
                regression = ops.constant(np.repeat(self.regressions[:, ch, earlier], self.num_scales))   # [K]
                mean = mean + ops.floor(regression * (centre[:, None] - means[..., earlier]) * 2.0 ** -MEAN_BITS)
            if ch == channel:
                return weights, mean
            value = ops.float(previous[:, ch])
            phi = self.expert_cdf(mean, ch, ops.stack([value, value + 1.0], 1), ops)               # [M, 2, K]
            weights = self.normalise(weights * (ops.floor((phi[:, 1] - phi[:, 0]) * 2.0 ** -4) + 1.0), ops)

    def expert_cdf(self, mean, channel, bins, ops):
        """PHI of every expert at the lower edges of bins b [M, E] (0..256; 0 is -inf, 256 is +inf): [M, E, K].

        The outer edges become +-2^30, which the table's clip maps to PHI(-9) = 0 and PHI(9) = 2^24 exactly."""
        edges = bins * float(1 << (MEAN_BITS - 8))                                       # b / 256 at 2^-16
        edges = ops.where(bins <= 0.0, 0.0 * bins - 2.0 ** 30, ops.where(bins >= NUM_BINS, 0.0 * bins + 2.0 ** 30,
                                                                          edges))
        _, low, _, _ = lookup.TABLES["phi"]
        index = ops.standardised_index(edges, mean, self.inverse_widths[:, channel], self.width_shifts[:, channel],
                                       self.inverse_widths_scaled[:, channel], -float(low << ARG))
        return ops.clipped_gather(self.tables64["phi"], index)

    def cumulative(self, weights, mean, channel, bins, ops):
        """F(b) = Q(b) + b at bins b [M, E] (float64 integers 0..256): the cumulative table, total `TOTAL`."""
        phi = self.expert_cdf(mean, channel, bins, ops)
        mixed = ops.mix(phi, weights)                                                    # < 2^44: exact
        return ops.floor(mixed * 2.0 ** -CDF_BITS) + bins

    def cumulative_numpy(self, weights, mean, channel, bins):
        """`cumulative` in NumPy, lean: the same integers (int64 arithmetic, outer bins set afterwards), for the
        decoder's many small tables.  weights [M, K], mean [M, K] float64 integers; bins int64 [M, E]."""
        _, low, _, _ = lookup.TABLES["phi"]
        index = bins[:, :, None] * (1 << (MEAN_BITS - 8)) - mean.astype(np.int64)[:, None, :]
        index *= self.inverse_widths_int[channel]
        index >>= self.width_shifts_t[channel]
        index -= low << ARG
        phi = np.take(self.tables64["phi"], index, mode="clip")
        table = np.floor(np.matmul(phi, weights[:, :, None])[..., 0] * 2.0 ** -CDF_BITS) + bins
        table[bins <= 0] = 0.0
        table[bins >= NUM_BINS] = float(TOTAL)
        return table

    def window_start(self, weights, mean, ops):
        """The first bin of the decoder's window: WINDOW bins around the mixture's mean, [M] (float64)."""
        centre = ops.floor(ops.sum(weights * mean, -1)[:, 0] * 2.0 ** -(WEIGHT_BITS + MEAN_BITS - 8))
        return ops.clip(centre - WINDOW // 2, 0.0, float(NUM_BINS - WINDOW))

    def intervals(self, weights, means, known, ops):
        """(start, freq) [M, C] of known values [M, C], both in coding order (teacher forcing: each channel given
        the known earlier ones)."""
        starts, freqs = [], []
        for channel in range(self.num_channels):
            channel_weights, mean = self.channel_mixture(weights, means, known, channel, ops)
            value = ops.float(known[:, channel])
            table = self.cumulative(channel_weights, mean, channel, ops.stack([value, value + 1.0], 1), ops)
            starts.append(table[:, 0])
            freqs.append(table[:, 1] - table[:, 0])
        return ops.stack(starts, -1), ops.stack(freqs, -1)


class NumpyOps:
    """The same arithmetic on NumPy float64 arrays: the decoder's front-by-front loop (no per-call overhead)."""
    float = staticmethod(lambda x: np.asarray(x, np.float64))
    constant = staticmethod(lambda x: x)
    matmul = staticmethod(np.matmul)
    floor = staticmethod(np.floor)
    clip = staticmethod(np.clip)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)
    reshape = staticmethod(np.reshape)
    concat = staticmethod(lambda parts, axis: np.concatenate(parts, axis))
    stack = staticmethod(lambda parts, axis: np.stack(parts, axis))
    split = staticmethod(lambda x, n: np.split(x, n, axis=-1))
    repeat = staticmethod(lambda x, n, axis: np.repeat(x, n, axis=axis))
    max = staticmethod(lambda x, axis: np.max(x, axis=axis, keepdims=True))
    sum = staticmethod(lambda x, axis: np.sum(x, axis=axis, keepdims=True))

    @staticmethod
    def clipped_gather(table, index):
        return np.take(table, index if index.dtype == np.intp else index.astype(np.intp), mode="clip")

    @staticmethod
    def mix(phi, weights):
        return np.matmul(phi, weights[:, :, None])[..., 0]

    @staticmethod
    def standardised_index(edges, mean, inverse_width, shift, inverse_width_scaled, offset):
        """The same integers in int64: (d G) >> s is floor(d G / 2^s), and d G < 2^47 stays exact."""
        index = edges.astype(np.int64)[:, :, None] - mean.astype(np.int64)[:, None, :]
        index *= inverse_width.astype(np.int64)
        index >>= shift
        index += int(offset)
        return index

    @staticmethod
    def floordiv(a, b):
        return np.floor_divide(a.astype(np.int64), b.astype(np.int64)).astype(np.float64)

    @staticmethod
    def first_largest(x):
        out = np.zeros_like(x)
        out[np.arange(len(x)), np.argmax(x, axis=-1)] = 1.0        # NumPy's argmax takes the first maximum
        return out


NUMPY = NumpyOps()
