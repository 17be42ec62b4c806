"""Ensembles over the eight rotations and flips (paper section 3.1).

For models p_1 .. p_M and the eight dihedral maps T_1 .. T_8 of the image grid
(`ride_tf.geometry.DIHEDRAL`; permutations of the pixels, |det T_k| = 1):

    p_ens(x) = 1 / (8 M) sum_m sum_k p_m(T_k x)

a mixture model over images, computed per image in log space (log-sum-exp of
the 8 M whole-image log-likelihoods).  Every pixel is modelled, so all terms
score the same pixels of the same image.  Because it is a mixture,

    mean_(m,k) log p_m(T_k x)  <=  log p_ens(x)  <=  max_(m,k) log p_m(T_k x),

so the ensemble's rate is never below the average of its members' rates and
never above the best member's (on that image).
"""
import numpy as np

from ride_tf import geometry
from ride_tf.checks import check_bool, check_seed
from ride_tf.preprocessing import prepare_images
from ride_tf.quantization import to_bits_per_pixel

__all__ = ["ensemble_log_prob", "ensemble_log_likelihood_rate", "member_log_probs"]


def _as_models(models):
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    if not models:
        raise ValueError("ensemble: needs at least one model.")
    for k, model in enumerate(models):
        if not all(hasattr(model, name) for name in ("log_prob", "num_channels")):
            raise ValueError(f"ensemble: models[{k}] must be a ride_tf.RIDE, got {type(model).__name__}.")
    channels = {m.num_channels for m in models}
    if len(channels) != 1:
        raise ValueError(f"ensemble: the models have different numbers of channels {sorted(channels)}.")
    return models


def member_log_probs(models, images, noise=True, seed=None, transforms=range(8)):
    """log p_m(T_k x) in nats for every image, model and map: NumPy [N, M, K] (float64).

    uint8 images are dequantized once (same noise for every term, seedable);
    floats in [0, 1] are used as given.
    """
    models = _as_models(models)
    noise, seed = check_bool("ensemble", "noise", noise), check_seed("ensemble", seed)
    images = prepare_images(images, models[0].num_channels, noise=noise, seed=seed)
    out = np.empty((len(images), len(models), len(transforms)))
    for k, index in enumerate(transforms):
        transformed = np.ascontiguousarray(geometry.dihedral(images, index))
        for m, model in enumerate(models):
            out[:, m, k] = model.log_prob(transformed)
    return out


def _mixture(terms):
    """log of the mean of exp(terms) over all but the first axis, [N] (log-sum-exp, stable)."""
    flat = terms.reshape(len(terms), -1)
    top = flat.max(axis=1)
    return top + np.log(np.mean(np.exp(flat - top[:, None]), axis=1))


def ensemble_log_prob(models, images, noise=True, seed=None):
    """log p_ens(x) in nats per image, [N]: the mixture over models and the eight dihedral maps."""
    return _mixture(member_log_probs(models, images, noise, seed))


def ensemble_log_likelihood_rate(models, images, noise=True, seed=None):
    """The ensemble's log-likelihood rate in bit per pixel (and channel), [N] (larger is better).

    `models` is one `RIDE` or a list of them (same number of channels).
    """
    terms = member_log_probs(models, images, noise, seed)
    num_pixels = np.shape(images)[1] * np.shape(images)[2]
    return to_bits_per_pixel(_mixture(terms) / num_pixels, _as_models(models)[0].num_channels)
