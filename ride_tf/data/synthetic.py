"""Synthetic images with known conditionals, for tests and sanity checks."""
import math

import numpy as np

from ride_tf.checks import check_integer, check_real

__all__ = ["gaussian_autoregressive"]

def gaussian_autoregressive(num_images, size, a=0.55, b=0.35, noise_std=0.05, mean=0.5, burn_in=24, seed=0):
    """Images of the causal Gaussian AR process x_ij = a x_i,j-1 + b x_i-1,j + e_ij, e_ij ~ N(0, noise_std^2).

    Every conditional p(x_ij | x_<ij) is Gaussian and linear in the two causal
    neighbours, so the Gaussian linear predictor of a 3 px (or larger)
    neighbourhood is the exact model; |a| + |b| < 1 keeps the process
    stationary.  The process starts from zeros `burn_in` pixels above and to the
    left of the returned window, and `mean` is added.  Returns float64
    [num_images, size, size] (not clipped: the defaults keep the values well
    inside (0, 1)).
    """
    owner = "gaussian_autoregressive"
    a, b = check_real(owner, "a", a), check_real(owner, "b", b)
    noise_std, mean = check_real(owner, "noise_std", noise_std), check_real(owner, "mean", mean)
    if not (math.isfinite(noise_std) and noise_std >= 0 and math.isfinite(mean)):
        raise ValueError(f"{owner}: noise_std must be finite and >= 0 and mean finite, got {noise_std}, {mean}")
    if not abs(a) + abs(b) < 1:
        raise ValueError(f"gaussian_autoregressive: |a| + |b| must be < 1 for a stationary process, got {a}, {b}")
    num_images, size = check_integer(owner, "num_images", num_images, 0), check_integer(owner, "size", size, 1)
    burn_in, seed = check_integer(owner, "burn_in", burn_in, 0), check_integer(owner, "seed", seed, 0)
    rng = np.random.default_rng(seed)
    n = size + burn_in
    x = np.zeros((num_images, n, n))
    e = rng.normal(0.0, noise_std, (num_images, n, n))
    for i in range(n):
        for j in range(n):
            x[:, i, j] = e[:, i, j] + (a * x[:, i, j - 1] if j else 0.0) + (b * x[:, i - 1, j] if i else 0.0)
    return mean + x[:, burn_in:, burn_in:]
