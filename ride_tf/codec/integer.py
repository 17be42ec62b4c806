"""The integer model: a RIDE's coding tables in integer arithmetic, so that every machine computes the same ones.

A range coder needs the encoder's probability tables exactly.  The float
model's tables are not portable: matrix products change their summation
order with the kernel (oneDNN or Eigen, AVX2 or AVX-512, CPU or GPU), and
exp, tanh and erf change their last bits with the library.  The integer
model derived here computes every table from integers only (after Ballé,
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
* Nonlinearities (tanh, sigmoid, exp, the normal CDF) are looked up in the
  integer tables of `ride_tf.codec.lookup` at integer arguments.
* Divisions are integer divisions (int64 floor division); the argmax that
  takes the rounding remainder of the weights breaks ties by the lowest index.

So the tables are functions of the integer weights alone, and the same on
every machine.  The integer weights themselves are derived from the float
weights deterministically: products of float32 weights are exact in
float64 and sums of them are correctly rounded (`math.fsum`); rounding is
IEEE round-half-even; the per-expert constants that need exp, sqrt or a
matrix inverse (the experts' widths, the colour conditionals) are computed
exactly with `fractions` and correctly rounded with `decimal`.  Two machines
that load the same model file derive the same integer model, and its
`fingerprint` (SHA-256 of every integer array, the lookup tables and the
format) is stored in each compressed file and checked by the decoder.

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
import decimal
import fractions
import hashlib
import math

import numpy as np
import tensorflow as tf

from ride_tf import geometry
from ride_tf.codec import lookup
from ride_tf.nn.mcgsm import MAX_LOG_SCALE
from ride_tf.nn.spatial_lstm import diagonal_scan

__all__ = ["IntegerModel", "IntegerLinear", "quantize_linear", "integer_model", "TENSORFLOW", "NUMPY", "TOTAL",
           "WEIGHT_BITS", "WINDOW", "FORMAT"]

FORMAT = "ride-tf integer model 1"
INPUT_BITS = 12          # centred inputs c
STATE_BITS = 15          # LSTM states, gates
ARG = lookup.ARGUMENT_BITS   # pre-activations, logits, z: integers standing for a / 2^10
MEAN_BITS = 16           # intensities
WEIGHT_BITS = 20         # mixture weights sum to 2^20
CDF_BITS = 24            # normal CDF
TOTAL = (1 << WEIGHT_BITS) + 256
# Bins of the decoder's first table around each pixel's mixture mean.
WINDOW = 16
_EXACT = 2.0 ** 52       # every accumulation stays below this
_PAPER_MEMORY = 64       # the paper cell's unbounded memory is clipped to [-64, 64]
_NUM_BINS = 256


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


def quantize_linear(weights, bias, in_exponents, in_bounds, out_exponents, out_bound):
    """The IntegerLinear closest to y = x W + b for inputs x_i = x_int_i / 2^a_i with |x_int_i| <= B_i.

    Output j is y_int_j ~ y_j 2^t_j, clipped to +-out_bound.  Column j's
    weights get the exponent q_j, the largest (up to t_j + 24) for which the
    column's worst-case accumulation, sum_i B_i |V_ij| + |bias_j|, stays
    below 2^52; V_ij = round(W_ij 2^(q_j - a_i)).  Deterministic: the bound
    is an exactly rounded sum (`math.fsum`) and every rounding is IEEE's.
    """
    weights = np.asarray(weights, np.float64)
    bias = np.zeros(weights.shape[1]) if bias is None else np.asarray(bias, np.float64)
    in_exponents = np.broadcast_to(np.asarray(in_exponents, np.int64), weights.shape[:1])
    in_bounds = np.broadcast_to(np.asarray(in_bounds, np.float64), weights.shape[:1])
    out_exponents = np.broadcast_to(np.asarray(out_exponents, np.int64), weights.shape[1:])
    unit = np.ldexp(in_bounds, -in_exponents)                       # the largest |x_i|, exact
    values = np.zeros_like(weights)
    biases = np.zeros_like(bias)
    scale = np.zeros_like(bias)
    for j in range(weights.shape[1]):
        bound = math.fsum(list(np.abs(weights[:, j]) * unit) + [abs(bias[j])])   # the largest |y_j|
        q = int(out_exponents[j]) + 24
        if bound > 0:
            q = min(q, 50 - math.frexp(bound)[1])                  # 2^q bound < 2^51, room for rounding
        column = np.rint(np.ldexp(weights[:, j], q - in_exponents))
        values[:, j] = column
        biases[j] = np.rint(np.ldexp(bias[j], q))
        scale[j] = np.ldexp(1.0, int(out_exponents[j]) - q)
        worst = sum(int(b) * abs(int(v)) for b, v in zip(in_bounds, column)) + abs(int(biases[j]))
        if worst >= _EXACT:
            raise ValueError(f"quantize_linear: column {j} could exceed 2^52 ({worst}); weights out of range.")
    return IntegerLinear(values, biases, scale, -float(out_bound), float(out_bound))


def _fold(matrix, weights):
    """matrix^T @ weights with every entry an exactly rounded sum of exact products (deterministic)."""
    matrix, weights = np.asarray(matrix, np.float64), np.asarray(weights, np.float64)
    products = matrix[:, :, None] * weights[:, None, :]              # float32 x float32: exact in float64
    return np.array([[math.fsum(products[:, i, j]) for j in range(weights.shape[1])]
                     for i in range(matrix.shape[1])]).reshape(matrix.shape[1], weights.shape[1])


def _dot(a, b):
    """a @ b with exactly rounded sums of products (a, b small float64 matrices)."""
    return _fold(np.asarray(a).T, b)


# ------------------------------------------------------- per-expert constants
_DECIMAL = decimal.Context(prec=60)


def _fraction_matrix(values):
    return [[fractions.Fraction(float(v)) for v in row] for row in np.asarray(values, np.float64)]


def _inverse(matrix):
    """The exact inverse of a small matrix of Fractions (Gauss-Jordan)."""
    n = len(matrix)
    rows = [list(row) + [fractions.Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        head = rows[col][col]
        rows[col] = [v / head for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    return [row[n:] for row in rows]


def _matmul(a, b):
    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]


def _transpose(a):
    return [list(col) for col in zip(*a)]


def _to_decimal(value):
    return _DECIMAL.divide(decimal.Decimal(value.numerator), decimal.Decimal(value.denominator))


def _conditionals(output_whitening, cholesky, order):
    """Exact per-component colour conditionals: (regressions [C, C] as Fractions, variances [C] as Fractions).

    Expert (c, s) is Gaussian in intensities with covariance e^-alpha_cs B B^T,
    B = W^-1 L_c^-T (W the output whitening, L_c the lower Cholesky factor of
    the component's precision), its channels taken in `order`.  Channel ch given the channels before it has
    the regression coefficients reg[ch, :ch] (independent of alpha) and the
    variance e^-alpha v[ch].
    """
    w_inv = _inverse(_fraction_matrix(output_whitening))
    w_inv = [w_inv[c] for c in order]                        # Sigma's rows and columns in the coding order
    lower = _fraction_matrix(np.tril(cholesky))
    b = _matmul(w_inv, _transpose(_inverse(lower)))
    sigma = _matmul(b, _transpose(b))
    n = len(sigma)
    regressions = [[fractions.Fraction(0)] * n for _ in range(n)]
    variances = []
    for ch in range(n):
        if ch == 0:
            variances.append(sigma[0][0])
            continue
        before = [row[:ch] for row in sigma[:ch]]
        cross = [sigma[i][ch] for i in range(ch)]
        inverse = _inverse(before)
        coefficients = [sum(inverse[i][k] * cross[k] for k in range(ch)) for i in range(ch)]
        for i in range(ch):
            regressions[ch][i] = coefficients[i]
        variances.append(sigma[ch][ch] - sum(c * x for c, x in zip(coefficients, cross)))
    return regressions, variances


def _inverse_width(variance, alpha):
    """(G, s) with G = round(2^(s - 6) / sigma), 2^25 <= G < 2^26 where possible; sigma^2 = e^-alpha variance.

    (edge - mean) * G / 2^s, the edge and the mean at 2^-16, is then the
    standardised distance z at 2^-10."""
    alpha = min(max(float(alpha), -MAX_LOG_SCALE), MAX_LOG_SCALE)
    ctx = _DECIMAL
    inverse_sigma = ctx.divide(ctx.exp(ctx.divide(decimal.Decimal(alpha), 2)), ctx.sqrt(_to_decimal(variance)))
    x = ctx.multiply(inverse_sigma, decimal.Decimal(2) ** -6)
    shift = 0
    low, high = decimal.Decimal(1 << 25), decimal.Decimal(1 << 26)
    while ctx.multiply(x, decimal.Decimal(2) ** shift) >= high and shift > -60:
        shift -= 1
    while ctx.multiply(x, decimal.Decimal(2) ** shift) < low and shift < 200:
        shift += 1
    value = int(ctx.multiply(x, decimal.Decimal(2) ** shift).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
    return value, shift


def _round_decimal(value, exponent):
    return int(_DECIMAL.multiply(value, decimal.Decimal(2) ** exponent).to_integral_value(
        rounding=decimal.ROUND_HALF_EVEN))


# ------------------------------------------------------------------ the model
class IntegerModel:
    """The integer model of a RIDE (see the module docstring); its graph parts are TensorFlow functions.

    Args:
      model: a `ride_tf.RIDE` whose whitening was fitted.

    Attributes: `fingerprint` (16 bytes), `num_channels`, `nb_size`,
    `num_layers`, `units`, `num_experts`, and the derived integer arrays.
    """

    def __init__(self, model):
        model.whitening.require_adapted("IntegerModel")
        model.require_finite_weights("IntegerModel")
        self.num_channels = channels = model.num_channels
        self.order = tuple(model.coding_order)              # the c-th coded channel is channel order[c]
        self.nb_size, self.radius = model.nb_size, model.radius
        self.num_layers, self.units = model.num_layers, model.num_hiddens
        self.cell, self.extended = model.cell, model.extended
        self.reads_inputs = model.num_layers == 0 or model.mcgsm_reads_inputs
        self.num_components, self.num_scales = model.num_components, model.num_scales
        self.num_experts = self.num_components * self.num_scales
        self.num_offsets = num_offsets = geometry.num_indicators(self.nb_size)
        self.num_inputs = num_inputs = geometry.num_inputs(self.nb_size, channels)
        self.tables64 = {name: table.astype(np.float64) for name, table in lookup.load().items()}
        whitening = model.whitening
        f64 = lambda v: np.asarray(v.numpy(), np.float64)
        input_mean, fold = f64(whitening.input_mean), f64(whitening.input_whitening)
        self.input_mean = np.rint(np.ldexp(input_mean, INPUT_BITS))
        memory_bound = (2 ** STATE_BITS) * (_PAPER_MEMORY if self.cell == "paper" else 1)
        u_exponents = [INPUT_BITS] * num_inputs + [0] * num_offsets
        u_bounds = [2 ** INPUT_BITS] * num_inputs + [1] * num_offsets
        u = self.units

        def fold_inputs(weights, offset):
            """Rows offset .. offset + P C read x^ = A c: replace them by A^T rows (they then read c)."""
            weights = np.array(weights, np.float64)
            weights[offset:offset + num_inputs] = _fold(fold, weights[offset:offset + num_inputs])
            return weights

        self.layers = []
        for index, lstm in enumerate(model.slstms):
            kernel, bias = f64(lstm.kernel), f64(lstm.bias)
            exponents, bounds = (u_exponents, u_bounds) if index == 0 else ([STATE_BITS] * u, [2 ** STATE_BITS] * u)
            if index == 0:
                kernel = fold_inputs(kernel, 0)
            exponents = list(exponents) + [STATE_BITS] * (2 * u)
            bounds = list(bounds) + [2 ** STATE_BITS] * (2 * u)
            if self.extended:
                exponents += [STATE_BITS] * (2 * u)
                bounds += [memory_bound] * (2 * u)
            self.layers.append(quantize_linear(kernel, bias, exponents, bounds, ARG, 16 << ARG))

        # The MCGSM's inputs v: [h, c, e] (skip inputs), [c, e] (no LSTM) or h (the paper's architecture).
        mcgsm = model.mcgsm
        v_exponents, v_bounds, fold_offset = [], [], None
        if self.num_layers:
            v_exponents += [STATE_BITS] * u
            v_bounds += [2 ** STATE_BITS] * u
        if self.reads_inputs:
            fold_offset = u if self.num_layers else 0
            v_exponents += u_exponents
            v_bounds += u_bounds
        features = f64(mcgsm.features)
        linear = f64(mcgsm.linear_features).T                                  # [dim_in, C]
        if fold_offset is not None:
            features, linear = fold_inputs(features, fold_offset), fold_inputs(linear, fold_offset)
        response_bounds = [math.fsum(list(np.abs(features[:, n]) * np.ldexp(np.array(v_bounds, np.float64),
                                                                             -np.array(v_exponents))))
                           for n in range(features.shape[1])]
        response_exponents = [20 - (math.frexp(b)[1] if b > 0 else 0) for b in response_bounds]
        self.responses = quantize_linear(features, None, v_exponents, v_bounds, response_exponents, 1 << 20)
        square_exponents = [2 * t - 20 for t in response_exponents]
        quadratic = -0.5 * np.square(f64(mcgsm.feature_weights)).T                  # [F, C]
        gate_weights = np.concatenate([linear, quadratic], axis=0)
        gate_exponents = v_exponents + square_exponents
        gate_bounds = v_bounds + [1 << 20] * len(square_exponents)
        unit = np.ldexp(np.array(gate_bounds, np.float64), -np.array(gate_exponents))
        gate_column_bounds = [math.fsum(list(np.abs(gate_weights[:, c]) * unit)) for c in range(gate_weights.shape[1])]
        self.gate_exponents = np.array([30 - (math.frexp(b)[1] if b > 0 else 0) for b in gate_column_bounds])
        self.gate = quantize_linear(gate_weights, None, gate_exponents, gate_bounds, self.gate_exponents, 1 << 30)

        # logit_k = eta_k + E_k t_c(k), E_k = e^alpha_k at exponent e_k (E_k < 2^21).
        scales = np.clip(f64(mcgsm.scales), -MAX_LOG_SCALE, MAX_LOG_SCALE).reshape(-1)
        self.logit_factor, self.logit_scale = [], []
        for k, alpha in enumerate(scales):
            value = _DECIMAL.exp(decimal.Decimal(float(alpha)))
            exponent = 0
            while _DECIMAL.multiply(value, decimal.Decimal(2) ** exponent) >= (1 << 21):
                exponent -= 1
            while _DECIMAL.multiply(value, decimal.Decimal(2) ** (exponent + 1)) < (1 << 21):
                exponent += 1
            self.logit_factor.append(_round_decimal(value, exponent))
            component = k // self.num_scales
            self.logit_scale.append(math.ldexp(1.0, ARG - int(self.gate_exponents[component]) - exponent))
        self.logit_factor = np.array(self.logit_factor, np.float64)
        self.logit_scale = np.array(self.logit_scale, np.float64)
        self.logit_offset = np.rint(np.ldexp(f64(mcgsm.priors).reshape(-1), ARG))
        # E_k 2^-shift_k, exact for the same reason: t E_k (< 2^52) rescaled by a power of two.
        self.logit_factor_scaled = self.logit_factor * self.logit_scale

        # Expert means mu_(c, ch) = m(x^) + (W^-1 (A_c v + m_c))_ch, from [v, c].
        w_inv = np.linalg.inv(f64(whitening.output_whitening))
        w_inv_exact = [[float(v) for v in row] for row in _inverse(_fraction_matrix(f64(whitening.output_whitening)))]
        w_inv = np.array(w_inv_exact)
        predictors, means = f64(mcgsm.predictors), f64(mcgsm.means)                # [C, ch, dim_in], [C, ch]
        prediction = _dot(f64(whitening.predictor), fold)                          # [ch, P C]: m(x^) = Pw A c
        columns, biases = [], []
        for component in range(self.num_components):
            on_v = _dot(w_inv, predictors[component])                              # [ch, dim_in]
            if fold_offset is not None:
                on_v = fold_inputs(on_v.T, fold_offset).T
            columns.append(np.concatenate([on_v, prediction], axis=1).T)           # [dim_in + P C, ch]
            biases.append(_dot(w_inv, means[component][:, None])[:, 0] + f64(whitening.output_mean))
        columns = [column[:, list(self.order)] for column in columns]                # channels in coding order
        biases = [bias[list(self.order)] for bias in biases]
        mean_weights = np.concatenate(columns, axis=1)                              # [dim_in + P C, C * ch]
        self.means = quantize_linear(mean_weights, np.concatenate(biases), v_exponents + [INPUT_BITS] * num_inputs,
                                     v_bounds + [2 ** INPUT_BITS] * num_inputs, MEAN_BITS, 8 << MEAN_BITS)

        # Widths and colour conditionals per expert.
        cholesky = f64(mcgsm.cholesky_factors)
        inverse_widths, width_shifts, regressions = [], [], []
        for component in range(self.num_components):
            reg, variances = _conditionals(f64(whitening.output_whitening), cholesky[component], self.order)
            regressions.append([[round(r * (1 << MEAN_BITS)) for r in row] for row in reg])
            for s in range(self.num_scales):
                alpha = scales[component * self.num_scales + s]
                pairs = [_inverse_width(v, alpha) for v in variances]
                inverse_widths.append([g for g, _ in pairs])
                width_shifts.append([shift for _, shift in pairs])
        self.inverse_widths = np.array(inverse_widths, np.float64)                  # [K, ch]
        self.width_shifts = np.array(width_shifts, np.int64)                        # [K, ch]
        # G 2^-s: multiplying an integer difference by it is exact ((diff G) 2^-s, a power-of-two rescaling).
        self.inverse_widths_scaled = np.ldexp(self.inverse_widths, -self.width_shifts)
        self.inverse_widths_int = np.ascontiguousarray(self.inverse_widths.T.astype(np.int64))   # [ch, K]
        self.width_shifts_t = np.ascontiguousarray(self.width_shifts.T)                          # [ch, K]
        self.regressions = np.array(regressions, np.float64)                        # [C, ch, ch] at 2^-16
        if np.abs(self.regressions).max(initial=0) >= 2 ** 31:
            raise ValueError("IntegerModel: a colour regression coefficient is out of range.")
        self.fingerprint = self._fingerprint()

    # ------------------------------------------------------------ identity
    def arrays(self):
        """Every integer array of the model, in a fixed order (what the fingerprint covers)."""
        out = [self.input_mean]
        for layer in self.layers + [self.responses, self.gate, self.means]:
            out += layer.arrays()
        return out + [self.gate_exponents.astype(np.float64), self.logit_factor, self.logit_scale, self.logit_offset,
                      self.inverse_widths, self.width_shifts.astype(np.float64), self.regressions]

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
            bound = one * _PAPER_MEMORY
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
            bound = one * _PAPER_MEMORY
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
    def mixture(self, v, u, ops):
        """(weights [M, K] summing to 2^20, means [M, K, C] at 2^-16) of pixels with MCGSM inputs v [M, dim]."""
        responses = self.responses(v, ops)
        squares = ops.floor(responses * responses * 2.0 ** -20)
        t = ops.repeat(self.gate(ops.concat([v, squares], -1), ops), self.num_scales, -1)       # [M, K]
        logits = ops.floor(t * ops.constant(self.logit_factor_scaled))
        logits = ops.clip(logits + ops.constant(self.logit_offset), -float(1 << 20), float(1 << 20))
        raw = self.lookup("exp_weight", logits - ops.max(logits, -1), ops)
        weights = self.normalise(raw, ops)
        means = self.means(ops.concat([v, u[:, :self.num_inputs]], -1), ops)                  # [M, C * ch]
        means = ops.reshape(means, [-1, self.num_components, self.num_channels])
        return weights, ops.repeat(means, self.num_scales, 1)

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
        edges = ops.where(bins <= 0.0, 0.0 * bins - 2.0 ** 30, ops.where(bins >= _NUM_BINS, 0.0 * bins + 2.0 ** 30,
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
        table[bins >= _NUM_BINS] = float(TOTAL)
        return table

    def window_start(self, weights, mean, ops):
        """The first bin of the decoder's window: WINDOW bins around the mixture's mean, [M] (float64)."""
        centre = ops.floor(ops.sum(weights * mean, -1)[:, 0] * 2.0 ** -(WEIGHT_BITS + MEAN_BITS - 8))
        return ops.clip(centre - WINDOW // 2, 0.0, float(_NUM_BINS - WINDOW))

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

    # ------------------------------------------------------------- images
    def code_images(self, values):
        """(start, freq) [N, H, W, C] float64 of uint8 images [N, H, W, C], channels in coding order (TensorFlow; the
        whole images at once)."""
        from ride_tf.neighbourhoods import extract_neighbourhoods, pad_images

        ops = TENSORFLOW
        images = tf.cast(values, tf.float64)
        windows, _ = extract_neighbourhoods(pad_images(images, self.nb_size), self.nb_size)
        shape = tf.shape(images)
        outside = geometry.outside_indicators(tf.range(shape[1]), tf.range(shape[2]), shape[2], self.nb_size,
                                              tf.float64)
        u = self.centred_inputs(windows, tf.broadcast_to(outside, tf.concat([shape[:1], tf.shape(outside)], 0)), ops)
        h = u
        for layer in range(self.num_layers):
            step = lambda x, hl, cl, hu, cu, layer=layer: self.cell_step(layer, x, hl, cl, hu, cu, ops)
            h, _ = diagonal_scan(h, self.units, step)
        v = self.mcgsm_inputs(h, u, ops)
        weights, means = self.mixture(tf.reshape(v, [-1, v.shape[-1]]), tf.reshape(u, [-1, u.shape[-1]]), ops)
        known = tf.gather(tf.reshape(images, [-1, self.num_channels]), list(self.order), axis=-1)
        start, freq = self.intervals(weights, means, known, ops)
        out_shape = tf.concat([shape[:3], [self.num_channels]], 0)
        return tf.reshape(start, out_shape), tf.reshape(freq, out_shape)

    def code_length_bits(self, values):
        """The exact code length of every pixel in bits, float64 [N, H, W]: sum over channels of log2(TOTAL / f)."""
        _, freq = self.code_images(values)
        return tf.reduce_sum(math.log2(TOTAL) - tf.math.log(freq) / math.log(2.0), axis=-1)


class _TensorFlowOps:
    """The integer model's arithmetic on float64 tensors (in graphs, on any device)."""
    float = staticmethod(lambda x: tf.cast(x, tf.float64))
    constant = staticmethod(lambda x: tf.constant(x, tf.float64))
    matmul = staticmethod(tf.matmul)
    floor = staticmethod(tf.floor)
    clip = staticmethod(tf.clip_by_value)
    maximum = staticmethod(tf.maximum)
    where = staticmethod(tf.where)
    reshape = staticmethod(tf.reshape)
    concat = staticmethod(lambda parts, axis: tf.concat(parts, axis))
    stack = staticmethod(lambda parts, axis: tf.stack(parts, axis))
    split = staticmethod(lambda x, n: tf.split(x, n, axis=-1))
    repeat = staticmethod(lambda x, n, axis: tf.repeat(x, n, axis=axis))
    max = staticmethod(lambda x, axis: tf.reduce_max(x, axis=axis, keepdims=True))
    sum = staticmethod(lambda x, axis: tf.reduce_sum(x, axis=axis, keepdims=True))

    @staticmethod
    def clipped_gather(table, index):
        """table[clip(index, 0, len - 1)] for float64 integer indices."""
        index = tf.clip_by_value(index, 0.0, float(len(table) - 1))
        return tf.gather(tf.constant(table), tf.cast(index, tf.int32))

    @staticmethod
    def mix(phi, weights):
        """sum_k weights[m, k] phi[m, e, k] -> [m, e] (integer sums below 2^53: exact in any order)."""
        return tf.reduce_sum(weights[:, None, :] * phi, axis=-1)

    @staticmethod
    def standardised_index(edges, mean, inverse_width, shift, inverse_width_scaled, offset):
        """floor((edges[m, e] - mean[m, k]) G_k / 2^s_k) + offset, [m, e, k]: the standardised distances at 2^-10
        (G 2^-s is exact, so is the product)."""
        return tf.floor((edges[:, :, None] - mean[:, None, :]) * tf.constant(inverse_width_scaled)) + offset

    @staticmethod
    def floordiv(a, b):
        """Integer floor division of float64 integers (in int64, exact)."""
        return tf.cast(tf.math.floordiv(tf.cast(a, tf.int64), tf.cast(b, tf.int64)), tf.float64)

    @staticmethod
    def first_largest(x):
        """1 at the first largest entry of each row of x [M, K], else 0 (float64)."""
        num = tf.shape(x)[-1]
        index = tf.range(num)
        first = tf.reduce_min(tf.where(x == tf.reduce_max(x, axis=-1, keepdims=True), index, num), axis=-1,
                              keepdims=True)
        return tf.cast(tf.equal(index, first), tf.float64)


class _NumpyOps:
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


TENSORFLOW, NUMPY = _TensorFlowOps(), _NumpyOps()


_MODELS = {}


def integer_model(model):
    """The `IntegerModel` of `model`, derived once per set of weights (cached by the float weights' digest)."""
    digest = hashlib.sha256(repr(model.coding_order).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    key = (id(model), digest.hexdigest())
    if key not in _MODELS:
        for old in [k for k in _MODELS if k[0] == id(model)]:
            del _MODELS[old]
        _MODELS[key] = IntegerModel(model)
    return _MODELS[key]
