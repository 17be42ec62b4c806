"""Per-image adaptation: the experts' priors of a one-channel model fitted to one image, stored in its file.

The MCGSM's priors eta_k say how often each expert is responsible for a
pixel, averaged over the training pictures; a single picture (a smooth sky,
a textured wall) uses its experts in other proportions.  `fit_prior_shift`
finds a shift delta_k of every prior (in 1/16 nats, one signed byte each) that
lowers the code length of the image's own pixels, by the fixed point of the
expectation-maximisation step of a mixture's prior weights,

    delta_k <- delta_k + log( sum_p r_pk / sum_p w_pk(delta) ),   r_pk = w_pk(delta) P_pk / sum_k w_pk(delta) P_pk,

where w_pk(delta) are the integer model's weights of pixel p with the priors
shifted and P_pk each expert's mass of the pixel's value, on a sample of the
image's pixels (every `stride`-th row, about `SAMPLE_PIXELS`).  The file
carries the shifts (K bytes per plane) and the decoder codes with
`IntegerModel.with_prior_shift(delta)`: the same tables on both sides.

The fit is exact arithmetic wherever it decides a byte of the file, so every
machine writes the same file: the weights are the integer model's own, the
responsibilities are floor(2^20 w P / sum w P) (an IEEE division of integers
below 2^53, correctly rounded, then an exact floor), the sums are of integers,
and the logarithm is computed with `decimal` and rounded to the 1/16 grid.

Measured (docs/codec.md): a few tenths of a percent to about one and a half
percent on photographs, more on smooth ones; `compress_best` keeps the
adapted file only where it is the shorter, header and shifts included.
"""
import decimal

import numpy as np

from ride_tf.codec.integer import ARG, NUMPY, PRIOR_SHIFT_BITS

__all__ = ["SAMPLE_PIXELS", "ITERATIONS", "sample_stride", "fit_prior_shift", "adapted_model", "shift_bytes",
           "read_shifts", "AdaptationError"]

SAMPLE_PIXELS = 1 << 16          # about this many pixels take part in the fit
ITERATIONS = 12
_SHIFT_LIMIT = 127               # the shifts lie in [-127, 127] sixteenths of a nat
_CONTEXT = decimal.Context(prec=34)


class AdaptationError(ValueError):
    """Shifts that do not fit their file (a damaged file)."""


def sample_stride(height, width):
    """Every how many rows the fit samples pixels: about `SAMPLE_PIXELS` of an H x W image."""
    return max(1, (height * width) // SAMPLE_PIXELS)


def _log16(numerator, denominator):
    """round(16 ln(numerator / denominator)) of positive integers, exactly (decimal, 34 digits)."""
    ratio = _CONTEXT.divide(decimal.Decimal(int(numerator)), decimal.Decimal(int(denominator)))
    return int(_CONTEXT.multiply(_CONTEXT.ln(ratio), decimal.Decimal(1 << PRIOR_SHIFT_BITS)).to_integral_value(
        rounding=decimal.ROUND_HALF_EVEN))


def fit_prior_shift(integer, logits, masses, iterations=ITERATIONS):
    """The shift int64 [K] (1/16 nats, in [-127, 127]) of `integer`'s priors fitted to pixels with gate logits
    [M, K] and expert masses [M, K] (`IntegerCoder.experts`); all zeros for no pixels."""
    logits = np.asarray(logits, np.float64)
    masses = np.asarray(masses, np.float64)
    shift = np.zeros(integer.num_experts, np.int64)
    if not len(logits):
        return shift
    unit = float(1 << (ARG - PRIOR_SHIFT_BITS))
    for _ in range(iterations):
        shifted = np.clip(logits + shift * unit, -float(1 << 20), float(1 << 20))
        weights = integer.weights(shifted, NUMPY)                                 # [M, K], each row sums to 2^20
        joint = weights * masses                                                  # integers below 2^44
        total = joint.sum(axis=1, keepdims=True)                                  # below 2^51: exact
        keep = total[:, 0] > 0
        if not keep.any():
            break
        responsibility = np.floor(joint[keep] / total[keep] * float(1 << 20))
        r_sum = responsibility.sum(axis=0).astype(np.int64)                       # integers: exact in any order
        w_sum = weights[keep].sum(axis=0).astype(np.int64)
        step = np.array([_log16(max(r, 1), w) if w > 0 else 0 for r, w in zip(r_sum, w_sum)], np.int64)
        new = np.clip(shift + step, -_SHIFT_LIMIT, _SHIFT_LIMIT)
        if np.array_equal(new, shift):
            break
        shift = new
    return shift


def adapted_model(coder, plane, threads=None):
    """(shift, the adapted IntegerModel) of one plane uint8 [H, W, 1] under a one-channel coder's model: the
    priors fitted to the plane's sampled pixels (`fit_prior_shift`)."""
    logits, masses = coder.experts(plane, sample_stride(*plane.shape[:2]), threads=threads)
    shift = fit_prior_shift(coder.integer, logits, masses)
    return shift, coder.integer.with_prior_shift(shift)


def shift_bytes(shifts):
    """The shifts of the planes (a list of int [K]) as bytes: one signed byte per expert and plane."""
    return b"".join(np.asarray(s, np.int8).tobytes() for s in shifts)


def read_shifts(payload, planes, experts):
    """(list of `planes` shifts int64 [K], the rest of the payload); AdaptationError if the payload is too short
    or a shift lies outside [-127, 127]."""
    size = planes * experts
    if len(payload) < size:
        raise AdaptationError(f"the payload has {len(payload)} bytes, less than its {size} bytes of prior shifts.")
    shifts = np.frombuffer(bytes(payload[:size]), np.int8).astype(np.int64).reshape(planes, experts)
    if (np.abs(shifts) > _SHIFT_LIMIT).any():
        raise AdaptationError("a prior shift outside [-127, 127].")
    return list(shifts), payload[size:]
