"""Tests of the synthetic images with known conditionals (`ride_tf.data.synthetic`)."""
import numpy as np
import pytest

from ride_tf import data


def test_gaussian_autoregressive_has_the_process_conditionals():
    """Least squares on the causal neighbours recovers (a, b) and the noise std of the process."""
    x = data.gaussian_autoregressive(6, 48, a=0.5, b=0.3, noise_std=0.04, seed=2)
    assert x.shape == (6, 48, 48) and abs(x.mean() - 0.5) < 0.02
    y = (x[:, 1:, 1:] - 0.5).ravel()
    design = np.stack([(x[:, 1:, :-1] - 0.5).ravel(), (x[:, :-1, 1:] - 0.5).ravel()], axis=1)
    coef, residual, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(coef, [0.5, 0.3], atol=0.02)
    assert abs(np.sqrt(residual[0] / len(y)) - 0.04) < 0.002
    with pytest.raises(ValueError, match="stationary"):
        data.gaussian_autoregressive(1, 8, a=0.6, b=0.5)
