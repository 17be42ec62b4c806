"""The discrete likelihood of 8-bit images: each pixel's probability mass and exact code lengths.

The models are densities of continuous intensities y.  An 8-bit value k is the
bin B_k = [k/256, (k+1)/256) of intensities, with the two outer bins open to
the tails, B_0 = (-inf, 1/256) and B_255 = [255/256, inf), so that the 256
bins cover the real line and their masses sum to exactly 1:

    P(k_ij | k_<ij) = integral over B_k of p(y | x_ij) dy,

where the context x_ij holds the earlier pixels at their bin centres
(k + 1/2) / 256: what a decoder knows.  The exact ideal code length of an image
is sum_ij -log2 P(k_ij | k_<ij) bits (`float_code_length_bits`).  The codec
(`ride_tf.codec`) codes with the same masses computed in integers, the same on
every machine (`ride_tf.compressed_size_bits`, within a fraction of a percent
of the float ones).

In intensities y (undoing the conditional whitening y^ = W (y - m(x)), an
affine map for fixed x), the MCGSM of a pixel is a mixture of K Gaussians

    p(y | x) = sum_k w_k N(y; mu_k, Sigma_k),   mu_k = m(x) + W^-1 loc_k,
    Sigma_k = W^-1 Lambda_k^-1 W^-T              (Lambda_k = P_k P_k^T, the expert's precision)

(`intensity_mixture`).  Grayscale: a bin's mass is sum_k w_k (Phi(b_k) - Phi(a_k))
with a_k, b_k its edges standardised by expert k, computed from the nearer tail
so that far bins keep their relative precision (`normal_bin_log_mass`).

Colour (C channels): the channels of a pixel are coded one after the other,
each through the exact conditionals of the joint mixture.  Channel c of expert
k given the earlier channels v_<c (at their bin centres) is Gaussian with

    mean  mu_kc + Sigma_k[c, <c] Sigma_k[<c, <c]^-1 (v_<c - mu_k,<c),
    var   Sigma_k[c, c] - Sigma_k[c, <c] Sigma_k[<c, <c]^-1 Sigma_k[<c, c],

and the component weights are updated by the mass each expert gave the earlier
channels' bins, w_k <- w_k P_k(bin of channel c) / sum (the posterior over
experts given the coded bins).  Every factor is a distribution over 256 values,
so the product is a distribution over the 256^C colours; it equals the joint
mixture's mass on the colour cube up to conditioning each expert on bin centres
instead of integrating over the bins.

Shapes: M pixels, K = num_components * num_scales experts, C channels.
"""
import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ride_tf import evaluation, geometry
from ride_tf.checks import NonFiniteError, check_choice, check_images, check_verbose
from ride_tf.defaults import REGIONS
from ride_tf.nn.mcgsm import IntensityMixture
from ride_tf.quantization import LN2, NUM_BINS, bin_centres

__all__ = ["NUM_BINS", "IntensityMixture", "normal_bin_log_mass", "intensity_mixture", "channel_moments",
           "channel_log_mass", "bin_table", "window_start", "window_table", "mixture_constants", "log_mass", "log_mass_map", "pixel_log_mass",
           "float_code_length_bits", "bin_centres", "coding_values"]


def _bin_edges(values, dtype):
    """Bins k [..] -> (lower, upper) edges in intensities, -inf / +inf for the outer bins."""
    k = tf.cast(values, dtype)
    lower = tf.where(k <= 0, tf.constant(-np.inf, dtype), k / NUM_BINS)
    upper = tf.where(k >= NUM_BINS - 1, tf.constant(np.inf, dtype), (k + 1) / NUM_BINS)
    return lower, upper


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0, accurate for x near 0 and for x -> -inf."""
    x = tf.minimum(x, tf.zeros_like(x))
    near = x > -LN2
    minus_one = -tf.ones_like(x)
    safe_near = tf.where(near, x, minus_one)
    safe_far = tf.where(near, minus_one, x)
    return tf.where(near, tf.math.log(-tf.math.expm1(safe_near)), tf.math.log1p(-tf.exp(safe_far)))


def normal_bin_log_mass(lower, upper):
    """log(Phi(upper) - Phi(lower)) for standardised edges lower < upper (may be -inf / +inf).

    Computed from the nearer tail so that it stays accurate (and finite while
    the mass is representable in log space) far from the mean: a bin whose
    centre lies above 0 is reflected, (lower, upper) -> (-upper, -lower)
    (the same mass), so that the bin lies mostly below 0, and then
    log Phi(upper) + log(1 - Phi(lower) / Phi(upper)) uses two log-CDFs, each
    accurate in the lower tail.  Gradients are finite wherever the mass is
    positive (infinite edges count as +-1e4, where Phi is 0 or 1 in any float).
    """
    lower = tf.convert_to_tensor(lower)
    upper = tf.convert_to_tensor(upper, lower.dtype)
    # Infinite edges as +-1e4 (Phi(-1e4) is 0 in any float), so that gradients through them are 0, not NaN.
    lower = tf.clip_by_value(lower, -1e4, 1e4)
    upper = tf.clip_by_value(upper, -1e4, 1e4)
    standard = tfp.distributions.Normal(tf.zeros([], lower.dtype), tf.ones([], lower.dtype))
    reflect = lower + upper > 0.0
    low = tf.where(reflect, -upper, lower)
    high = tf.where(reflect, -lower, upper)
    log_high = standard.log_cdf(high)
    return log_high + _log1mexp(standard.log_cdf(low) - log_high)


def mixture_constants(model, dtype=tf.float64):
    """What the intensity mixtures of all pixels share: (W^-1 [C, C], regressions [K, C, C], stddevs [K, C]).

    Compute it once (e.g. before a loop over wavefronts) and pass it to `intensity_mixture`.
    """
    w_inv = model.whitening.output_unwhitening(tf.float64)
    return (tf.cast(w_inv, dtype),) + model.mcgsm.intensity_constants(w_inv, dtype, model.coding_order)


def intensity_mixture(model, h, x_hat, constants=None, dtype=tf.float64):
    """The MCGSM of each pixel in intensities (`MCGSM.intensity_mixture`, see the module docstring).

    Args:
      model: a `ride_tf.RIDE`.
      h: [M, dim_h] the MCGSM's inputs; x_hat: [M, P * C] the whitened neighbourhoods.
      constants: `mixture_constants(model, dtype)`, if already computed.
      dtype: of the result (float64 for exact sizes, float32 for training losses).
    Returns:
      IntensityMixture.
    """
    w_inv, regressions, stddevs = mixture_constants(model, dtype) if constants is None else constants
    return model.mcgsm.intensity_mixture(h, model.whitening.prediction(x_hat), w_inv, (regressions, stddevs),
                                         dtype, model.coding_order)


def coding_values(model, values):
    """Values [..., C] in the model's coding order (`RIDE.coding_order`): what `log_mass` takes."""
    return tf.gather(values, list(model.coding_order), axis=-1)


def channel_moments(mixture, channel, previous=None):
    """Mean [M, K] and standard deviation [K] of channel `channel` given earlier channels' values previous [M, >= channel]."""
    mean = mixture.means[..., channel]
    if channel > 0:
        deviation = tf.cast(previous[:, None, :channel], mean.dtype) - mixture.means[..., :channel]
        mean = mean + tf.reduce_sum(mixture.regressions[None, :, channel, :channel] * deviation, -1)
    return mean, mixture.stddevs[:, channel]


def channel_log_mass(mixture, channel, values, previous=None):
    """log P_k(bin values | earlier channels) of each expert for channel `channel`: values [M] -> [M, K]."""
    mean, std = channel_moments(mixture, channel, previous)
    lower, upper = _bin_edges(values, mean.dtype)
    return normal_bin_log_mass(_standardise(lower, mean, std), _standardise(upper, mean, std))


def _standardise(edges, mean, std):
    """(edges [M, 1] - mean [M, K]) / std [K], with infinite edges kept infinite and out of the gradient.

    (-inf - mean) / std has an infinite derivative in std, and the clip in
    `normal_bin_log_mass` would multiply it by 0: NaN gradients for the scales.
    """
    edges = edges[:, None]
    finite = tf.math.is_finite(edges)
    z = (tf.where(finite, edges, tf.zeros_like(edges)) - mean) / std
    return tf.where(finite, z, edges * tf.ones_like(z))


def log_mass(mixture, values):
    """log P(k) in nats of each pixel's 8-bit values k [M, C] under the mixtures, [M] (the mixture's dtype,
    float64 by default).

    Channel by channel: log sum_k w_k P_k(bin of channel c), then the weights
    are updated by each expert's mass (the module docstring).
    """
    dtype = mixture.log_weights.dtype
    previous = tf.cast(bin_centres(values), dtype)
    log_weights = mixture.log_weights
    total = tf.zeros(tf.shape(values)[:1], dtype)
    for c in range(values.shape[-1]):
        expert_log_mass = channel_log_mass(mixture, c, values[:, c], previous)
        joint = log_weights + expert_log_mass
        total += tf.reduce_logsumexp(joint, -1) - tf.reduce_logsumexp(log_weights, -1)
        log_weights = joint
    return total


def _tail_cdfs(log_weights, mean, std, edges, dtype):
    """The mixture's lower- and upper-tail CDFs at edges [M, E] (intensities, may be -inf / +inf), [M, E] each.

    L(e) = sum_k w_k Phi(z_k), U(e) = sum_k w_k Q(z_k), z_k = (e - mean_k) / std_k, each expert's Phi
    and Q from its tail mass t = Q(|z|) (one erfc per edge and expert).  The reductions run over the
    last axis, so each row is computed alone: the numbers do not depend on M.
    """
    mean = tf.cast(mean, dtype)
    z = (tf.cast(edges, dtype)[:, :, None] - mean[:, None, :]) / tf.cast(std, dtype)[None, None, :]   # [M, E, K]
    tail = 0.5 * tf.math.erfc(tf.abs(z) * (1.0 / math.sqrt(2.0)))
    below = z < 0
    weights = tf.nn.softmax(tf.cast(log_weights, dtype), axis=-1)[:, None, :]                    # [M, 1, K]
    lower = tf.reduce_sum(weights * tf.where(below, tail, 1.0 - tail), axis=-1)
    upper = tf.reduce_sum(weights * tf.where(below, 1.0 - tail, tail), axis=-1)
    return lower, upper


def _masses_between(lower, upper):
    """Masses of the intervals between consecutive edges from the tail CDFs [M, E] -> [M, E - 1].

    The difference of L below the mixture's median and of U above it, so
    that far intervals keep their relative precision."""
    return tf.where(lower[:, 1:] <= 0.5, lower[:, 1:] - lower[:, :-1], upper[:, :-1] - upper[:, 1:])


def bin_table(log_weights, mean, std, dtype=tf.float64):
    """The masses of all 256 bins of one channel: log_weights [M, K], mean [M, K], std [K] -> [M, 256].

    Evaluated from the mixture's tail CDFs at the bin edges (`_tail_cdfs`),
    so the masses of far bins keep their relative precision; rows sum to 1 up
    to round-off.  `dtype` sets the arithmetic (the codec uses float32).
    """
    num = tf.shape(mean)[0]
    edges = tf.concat([[-np.inf], tf.range(1, NUM_BINS, dtype=tf.float64) / NUM_BINS, [np.inf]], 0)
    edges = tf.broadcast_to(edges[None], [num, NUM_BINS + 1])
    return _masses_between(*_tail_cdfs(log_weights, mean, std, edges, dtype))


def window_start(log_weights, mean, width):
    """The first bin of a window of `width` bins around each pixel's mixture mean, int32 [M]."""
    centre = tf.reduce_sum(tf.nn.softmax(log_weights, -1) * mean, -1)
    start = tf.cast(tf.round(tf.clip_by_value(centre, -1.0, 2.0) * NUM_BINS), tf.int32) - width // 2
    return tf.clip_by_value(start, 0, NUM_BINS - width)


def window_table(log_weights, mean, std, start, width, dtype=tf.float64):
    """Masses of `width` bins from start [M] on, with the two tails as escape symbols: [M, width + 2].

    Symbol 0 is "below the window" (mass P(k < start)), symbols 1..width the
    bins start..start + width - 1, symbol width + 1 "above the window"
    (P(k >= start + width)).  Rows sum to 1 up to round-off; the masses are
    those of `bin_table`.  Computing width + 1 edges instead of 255 is what
    makes the codec fast; the rare escaped pixels are then coded with the
    full table restricted to their tail (`ride_tf.codec`).
    """
    k = start[:, None] + tf.range(width + 1)[None, :]                                              # [M, W + 1]
    edges = tf.cast(k, dtype) / NUM_BINS
    edges = tf.where(k <= 0, tf.constant(-np.inf, dtype), tf.where(k >= NUM_BINS, tf.constant(np.inf, dtype), edges))
    lower, upper = _tail_cdfs(log_weights, mean, std, edges, dtype)
    return tf.concat([lower[:, :1], _masses_between(lower, upper), upper[:, -1:]], axis=1)


def log_mass_head(model, dtype=tf.float64):
    """A head (see `RIDE.log_density_head`): log P(k_ij | k_<ij) in nats, [N, H, W] in `dtype`.

    The images must be the bin centres of 8-bit values (`bin_centres`); the
    values are read back from them (half a bin from any edge).  float64 (the
    default) for exact sizes; float32 is the cheaper training loss of
    `RIDE(objective="discrete")` (the same numbers to about 1e-6 relative).
    """
    num_inputs = geometry.num_inputs(model.nb_size, model.num_channels)
    channels = model.num_channels

    def head(h, u, y_hat, y):
        shape = tf.shape(y_hat)
        x_hat = tf.reshape(u[..., :num_inputs], [-1, num_inputs])
        values = tf.cast(tf.floor(tf.reshape(tf.cast(y, tf.float64), [-1, channels]) * NUM_BINS), tf.int32)
        mixture = intensity_mixture(model, tf.reshape(h, [-1, h.shape[-1]]), x_hat, dtype=dtype)
        return tf.reshape(log_mass(mixture, coding_values(model, values)), shape[:3])
    return head


def log_mass_map(model, images, dtype=tf.float64):
    """In-graph: uint8 images [N, H, W, C] -> [N, H, W] in `dtype`, log P(k_ij | k_<ij) in nats (every pixel)."""
    centres = tf.cast(bin_centres(images), model.compute_dtype)
    return log_mass_head(model, dtype)(*model.forward(centres))


def _check_uint8(images, model, name, nb_size=None, num_channels=None):
    """uint8 images [N, H, W, C] with C = num_channels (default: the model's), else ValueError."""
    images = check_images(images, num_channels or model.num_channels, nb_size, name=name)
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: the discrete likelihood is defined for 8-bit images; pass uint8 values "
                         f"(got {images.dtype}).")
    return images


def pixel_log_mass(model, images, region="full", verbose=0):
    """log P(k_ij | k_<ij) in nats of every pixel of uint8 images, NumPy float64 [N, H, W].

    region="valid" keeps the paper's region (as `RIDE.pixel_log_prob`);
    large images are evaluated in tiles (`ride_tf.evaluation.pixel_map`).
    """
    check_choice("pixel_log_mass", "region", region, REGIONS)
    check_verbose("pixel_log_mass", verbose)
    nb_size = model.nb_size if region == "valid" else None
    images = _check_uint8(images, model, "images", nb_size)
    model.whitening.require_adapted("compressed size")
    centres = bin_centres(images)
    log_masses = evaluation.pixel_map(model, centres, "log_mass", log_mass_head(model), verbose)
    if not np.isfinite(log_masses).all():
        bad = int((~np.isfinite(log_masses)).sum())
        raise NonFiniteError(f"pixel_log_mass: {bad} of {log_masses.size} log-masses are not finite "
                                 "(non-finite model weights?).")
    return evaluation.crop(model, log_masses, region)


def float_code_length_bits(model, images, verbose=0):
    """The ideal code length of each uint8 image under the float model's masses, in bits, float64 [N].

    sum over every pixel of -log2 P(k_ij | k_<ij) of `pixel_log_mass`: what
    training for the code length optimises.  The codec's tables are the
    integer model's (`ride_tf.compressed_size_bits`), within a fraction of a
    percent of these."""
    return -pixel_log_mass(model, images, verbose=verbose).sum(axis=(1, 2)) / LN2
