"""Deriving a RIDE's integer model (`ride_tf.codec.integer`) from its float weights: exactly, on every machine.

This is the one place that reads a float model for the codec.  Everything it
computes is a function of the float32 weights alone: products of float32
weights are exact in float64 and sums of them are correctly rounded
(`math.fsum`); rounding is IEEE round-half-even; the per-expert constants
that need exp, sqrt or a matrix inverse (the experts' widths, the colour
conditionals) are computed exactly with `fractions` and correctly rounded
with `decimal`.  Two machines that load the same model file derive the same
integer model, integer for integer.

The result is plain data (`IntegerModel`), which `ride_tf.codec.model_file`
writes to a file and loads back with NumPy alone: coding needs the float
model (and TensorFlow) only to derive it once.  `RIDE.integer_model()` calls
`integer_model` here; this module reads a RIDE through its attributes and
imports no model code above the layers (`ride_tf.nn`).

    integer = ride_tf.codec.derive.integer_model(model)      # cached per set of weights
"""
import decimal
import fractions
import hashlib
import math

import numpy as np

from ride_tf import geometry
from ride_tf.codec.integer import (ARG, DERIVATION, DERIVATIONS, INPUT_BITS, MEAN_BITS, PAPER_MEMORY, STATE_BITS,
                                   IntegerLinear, IntegerModel)
from ride_tf.nn.mcgsm import MAX_LOG_SCALE

__all__ = ["derive", "integer_model", "quantize_linear", "DERIVATION", "DERIVATIONS", "NARROW_BITS"]

_EXACT = 2.0 ** 52       # every accumulation stays below this
NARROW_BITS = 15         # narrow products: weights and inputs of at most 16 bits, column sums within 32


# ------------------------------------------------------------------ affine maps
def quantize_linear(weights, bias, in_exponents, in_bounds, out_exponents, out_bound, narrow=None):
    """The IntegerLinear closest to y = x W + b for inputs x_i = x_int_i / 2^a_i with |x_int_i| <= B_i.

    Output j is y_int_j ~ y_j 2^t_j, clipped to +-out_bound.  Column j's
    weights get the exponent q_j, the largest (up to t_j + 24) for which the
    column's worst-case accumulation, sum_i B_i |V_ij| + |bias_j|, stays
    below 2^52; V_ij = round(W_ij 2^(q_j - a_i)).  Deterministic: the bound
    is an exactly rounded sum (`math.fsum`) and every rounding is IEEE's.

    `narrow` (a boolean per input, or None) marks the inputs whose products
    a coder may compute in 16-bit integers (`NARROW_BITS`): q_j is then also
    small enough that every marked weight fits 16 bits, |V_ij| < 2^15, and
    the marked part of the worst case, sum over marked i of B_i |V_ij|,
    stays below 2^31 (an int32 accumulator).  Marked inputs must have
    B_i <= 2^15.
    """
    weights = np.asarray(weights, np.float64)
    bias = np.zeros(weights.shape[1]) if bias is None else np.asarray(bias, np.float64)
    in_exponents = np.broadcast_to(np.asarray(in_exponents, np.int64), weights.shape[:1])
    in_bounds = np.broadcast_to(np.asarray(in_bounds, np.float64), weights.shape[:1])
    out_exponents = np.broadcast_to(np.asarray(out_exponents, np.int64), weights.shape[1:])
    narrow = np.zeros(weights.shape[0], bool) if narrow is None else np.asarray(narrow, bool)
    if narrow.shape != weights.shape[:1] or np.any(in_bounds[narrow] > 2 ** NARROW_BITS):
        raise ValueError("quantize_linear: narrow must mark inputs (one flag each) whose bounds are at most 2^15.")
    unit = np.ldexp(in_bounds, -in_exponents)                       # the largest |x_i|, exact
    values = np.zeros_like(weights)
    biases = np.zeros_like(bias)
    scale = np.zeros_like(bias)
    for j in range(weights.shape[1]):
        bound = math.fsum(list(np.abs(weights[:, j]) * unit) + [abs(bias[j])])   # the largest |y_j|
        q = int(out_exponents[j]) + 24
        if bound > 0:
            q = min(q, 50 - math.frexp(bound)[1])                  # 2^q bound < 2^51, room for rounding
        if narrow.any():
            narrow_bound = math.fsum(list(np.abs(weights[narrow, j]) * unit[narrow]))
            largest = float(np.max(np.abs(np.ldexp(weights[narrow, j], -in_exponents[narrow]))))
            if narrow_bound > 0:                                    # 2^q narrow_bound < 2^30, |V| < 2^14
                q = min(q, 2 * NARROW_BITS - math.frexp(narrow_bound)[1],
                        NARROW_BITS - 1 - math.frexp(largest)[1])
        column = np.rint(np.ldexp(weights[:, j], q - in_exponents))
        values[:, j] = column
        biases[j] = np.rint(np.ldexp(bias[j], q))
        scale[j] = np.ldexp(1.0, int(out_exponents[j]) - q)
        worst = sum(int(b) * abs(int(v)) for b, v in zip(in_bounds, column)) + abs(int(biases[j]))
        if worst >= _EXACT:
            raise ValueError(f"quantize_linear: column {j} could exceed 2^52 ({worst}); weights out of range.")
        narrow_worst = sum(int(b) * abs(int(v)) for b, v in zip(in_bounds[narrow], column[narrow]))
        if narrow_worst >= 2 ** (2 * NARROW_BITS + 1) or np.any(np.abs(column[narrow]) >= 2 ** NARROW_BITS):
            raise ValueError(f"quantize_linear: column {j}'s narrow products could exceed 32 bits; weights out "
                             "of range.")
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
def derive(model, derivation=DERIVATION):
    """The `IntegerModel` of a RIDE whose whitening was fitted (ValueError for an unfitted model or non-finite
    weights); see `ride_tf.codec.integer` for what each array holds.

    derivation 2 (the default) quantizes every weight that reads an LSTM state h (bound 2^15) as a narrow
    product (`quantize_linear`'s `narrow`), so that a coder may compute those products in 16-bit integers with
    32-bit sums; derivation 1 gives the integers of the earlier derivation, for files written with them."""
    if derivation not in DERIVATIONS:
        raise ValueError(f"derive: derivation must be one of {DERIVATIONS}, got {derivation!r}.")
    model.whitening.require_adapted("integer model")
    model.require_finite_weights("integer model")
    channels = model.num_channels
    order = tuple(model.coding_order)              # the c-th coded channel is channel order[c]
    config = dict(num_channels=channels, order=order, nb_size=model.nb_size, num_layers=model.num_layers,
                  units=model.num_hiddens, cell=model.cell, extended=model.extended,
                  reads_inputs=model.num_layers == 0 or model.mcgsm_reads_inputs,
                  num_components=model.num_components, num_scales=model.num_scales)
    num_offsets = geometry.num_indicators(model.nb_size)
    num_inputs = geometry.num_inputs(model.nb_size, channels)
    whitening = model.whitening
    f64 = lambda v: np.asarray(v.numpy(), np.float64)
    input_mean, fold = f64(whitening.input_mean), f64(whitening.input_whitening)
    memory_bound = (2 ** STATE_BITS) * (PAPER_MEMORY if model.cell == "paper" else 1)
    u_exponents = [INPUT_BITS] * num_inputs + [0] * num_offsets
    u_bounds = [2 ** INPUT_BITS] * num_inputs + [1] * num_offsets
    u = model.num_hiddens

    def fold_inputs(weights, offset):
        """Rows offset .. offset + P C read x^ = A c: replace them by A^T rows (they then read c)."""
        weights = np.array(weights, np.float64)
        weights[offset:offset + num_inputs] = _fold(fold, weights[offset:offset + num_inputs])
        return weights

    layers = []
    for index, lstm in enumerate(model.slstms):
        kernel, bias = f64(lstm.kernel), f64(lstm.bias)
        exponents, bounds = (u_exponents, u_bounds) if index == 0 else ([STATE_BITS] * u, [2 ** STATE_BITS] * u)
        if index == 0:
            kernel = fold_inputs(kernel, 0)
        exponents = list(exponents) + [STATE_BITS] * (2 * u)
        bounds = list(bounds) + [2 ** STATE_BITS] * (2 * u)
        narrow = [index > 0] * (len(exponents) - 2 * u) + [True] * (2 * u)       # the states h
        if model.extended:
            exponents += [STATE_BITS] * (2 * u)
            bounds += [memory_bound] * (2 * u)
            narrow += [False] * (2 * u)
        layers.append(quantize_linear(kernel, bias, exponents, bounds, ARG, 16 << ARG,
                                      narrow=narrow if derivation >= 2 else None))

    # The MCGSM's inputs v: [h, c, e] (skip inputs), [c, e] (no LSTM) or h (the paper's architecture).
    mcgsm = model.mcgsm
    v_exponents, v_bounds, fold_offset = [], [], None
    if model.num_layers:
        v_exponents += [STATE_BITS] * u
        v_bounds += [2 ** STATE_BITS] * u
    if config["reads_inputs"]:
        fold_offset = u if model.num_layers else 0
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
    narrows = derivation >= 2 and model.num_layers > 0          # v's first u inputs are the top states h
    v_narrow = ([True] * u + [False] * (len(v_exponents) - u)) if narrows else None
    responses = quantize_linear(features, None, v_exponents, v_bounds, response_exponents, 1 << 20, narrow=v_narrow)
    square_exponents = [2 * t - 20 for t in response_exponents]
    quadratic = -0.5 * np.square(f64(mcgsm.feature_weights)).T                  # [F, C]
    gate_weights = np.concatenate([linear, quadratic], axis=0)
    gate_input_exponents = v_exponents + square_exponents
    gate_bounds = v_bounds + [1 << 20] * len(square_exponents)
    unit = np.ldexp(np.array(gate_bounds, np.float64), -np.array(gate_input_exponents))
    gate_column_bounds = [math.fsum(list(np.abs(gate_weights[:, c]) * unit)) for c in range(gate_weights.shape[1])]
    gate_exponents = np.array([30 - (math.frexp(b)[1] if b > 0 else 0) for b in gate_column_bounds])
    gate = quantize_linear(gate_weights, None, gate_input_exponents, gate_bounds, gate_exponents, 1 << 30,
                           narrow=v_narrow + [False] * len(square_exponents) if narrows else None)

    # logit_k = eta_k + E_k t_c(k), E_k = e^alpha_k at exponent e_k (E_k < 2^21).
    scales = np.clip(f64(mcgsm.scales), -MAX_LOG_SCALE, MAX_LOG_SCALE).reshape(-1)
    logit_factor, logit_scale = [], []
    for k, alpha in enumerate(scales):
        value = _DECIMAL.exp(decimal.Decimal(float(alpha)))
        exponent = 0
        while _DECIMAL.multiply(value, decimal.Decimal(2) ** exponent) >= (1 << 21):
            exponent -= 1
        while _DECIMAL.multiply(value, decimal.Decimal(2) ** (exponent + 1)) < (1 << 21):
            exponent += 1
        logit_factor.append(_round_decimal(value, exponent))
        component = k // model.num_scales
        logit_scale.append(math.ldexp(1.0, ARG - int(gate_exponents[component]) - exponent))
    logit_offset = np.rint(np.ldexp(f64(mcgsm.priors).reshape(-1), ARG))

    # Expert means mu_(c, ch) = m(x^) + (W^-1 (A_c v + m_c))_ch, from [v, c].
    w_inv = np.array([[float(v) for v in row] for row in _inverse(_fraction_matrix(f64(whitening.output_whitening)))])
    predictors, means = f64(mcgsm.predictors), f64(mcgsm.means)                # [C, ch, dim_in], [C, ch]
    prediction = _dot(f64(whitening.predictor), fold)                          # [ch, P C]: m(x^) = Pw A c
    columns, biases = [], []
    for component in range(model.num_components):
        on_v = _dot(w_inv, predictors[component])                              # [ch, dim_in]
        if fold_offset is not None:
            on_v = fold_inputs(on_v.T, fold_offset).T
        columns.append(np.concatenate([on_v, prediction], axis=1).T)           # [dim_in + P C, ch]
        biases.append(_dot(w_inv, means[component][:, None])[:, 0] + f64(whitening.output_mean))
    columns = [column[:, list(order)] for column in columns]                   # channels in coding order
    biases = [bias[list(order)] for bias in biases]
    mean_weights = np.concatenate(columns, axis=1)                              # [dim_in + P C, C * ch]
    mean_map = quantize_linear(mean_weights, np.concatenate(biases), v_exponents + [INPUT_BITS] * num_inputs,
                               v_bounds + [2 ** INPUT_BITS] * num_inputs, MEAN_BITS, 8 << MEAN_BITS,
                               narrow=v_narrow + [False] * num_inputs if narrows else None)

    # Widths and colour conditionals per expert.
    cholesky = f64(mcgsm.cholesky_factors)
    inverse_widths, width_shifts, regressions = [], [], []
    for component in range(model.num_components):
        reg, variances = _conditionals(f64(whitening.output_whitening), cholesky[component], order)
        regressions.append([[round(r * (1 << MEAN_BITS)) for r in row] for row in reg])
        for scale in range(model.num_scales):
            alpha = scales[component * model.num_scales + scale]
            pairs = [_inverse_width(v, alpha) for v in variances]
            inverse_widths.append([g for g, _ in pairs])
            width_shifts.append([shift for _, shift in pairs])
    regressions = np.array(regressions, np.float64)                             # [C, ch, ch] at 2^-16
    if np.abs(regressions).max(initial=0) >= 2 ** 31:
        raise ValueError("integer model: a colour regression coefficient is out of range.")
    return IntegerModel(config, dict(
        input_mean=np.rint(np.ldexp(input_mean, INPUT_BITS)), layers=layers, responses=responses, gate=gate,
        means=mean_map, gate_exponents=gate_exponents.astype(np.float64),
        logit_factor=np.array(logit_factor, np.float64), logit_scale=np.array(logit_scale, np.float64),
        logit_offset=logit_offset, inverse_widths=np.array(inverse_widths, np.float64),
        width_shifts=np.array(width_shifts, np.float64), regressions=regressions))


_MODELS = {}


def integer_model(model, derivation=DERIVATION):
    """The `IntegerModel` of `model` by `derivation` (see `derive`), derived once per set of weights (cached by the
    float weights' digest)."""
    digest = hashlib.sha256(repr(model.coding_order).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    key = (id(model), digest.hexdigest(), derivation)
    if key not in _MODELS:
        for old in [k for k in _MODELS if k[0] == id(model) and k[1] != key[1]]:
            del _MODELS[old]
        _MODELS[key] = derive(model, derivation)
    return _MODELS[key]
