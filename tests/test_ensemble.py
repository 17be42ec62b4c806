"""Tests of the ensembles over rotations and flips (`ride_tf.ensemble`, paper section 3.1)."""
import keras
import numpy as np
import pytest

import ride_tf
from ride_tf import RIDE, data, geometry
from ride_tf.ensemble import ensemble_log_prob, member_log_probs


def fitted_model(num_layers=1, seed=0):
    keras.utils.set_random_seed(seed)
    model = RIDE(num_layers=num_layers, num_hiddens=6, num_components=3, num_scales=2, num_features=5)
    model.adapt(data.dead_leaves(6, size=32, seed=3, noise_std=0.02))
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + 0.2 * rng.standard_normal(v.shape))
    return model


@pytest.fixture(scope="module")
def models():
    return [fitted_model(1, seed=0), fitted_model(0, seed=1)]


def test_equals_the_single_model_when_the_eight_terms_are_equal(models):
    """An image invariant under all eight maps (a radial pattern) gives eight equal terms."""
    yy, xx = np.mgrid[:15, :15] - 7.0
    image = (0.5 + 0.4 * np.cos(np.hypot(yy, xx) / 2.0)).astype(np.float32)[None]
    for k in range(8):
        np.testing.assert_array_equal(geometry.dihedral(image[..., None], k)[..., 0], image)
    single = models[0].log_likelihood_rate(image)
    np.testing.assert_allclose(ride_tf.ensemble_log_likelihood_rate(models[0], image), single, rtol=1e-6)


def test_a_mixture_lies_between_the_members_average_and_best(models):
    images = data.dead_leaves(3, size=(13, 18), seed=5, noise_std=0.02)
    terms = member_log_probs(models, images, seed=2)                   # [N, M, 8]
    assert terms.shape == (3, 2, 8)
    # The members' rates, each computed directly on the transformed image with the same noise.
    floats = (images[..., None].astype(np.float32) + 0.5) / 256.0
    direct = models[0].log_prob(np.ascontiguousarray(geometry.dihedral(floats, 5)))
    np.testing.assert_allclose(member_log_probs(models, floats)[:, 0, 5], direct, rtol=1e-6)
    rate = ride_tf.ensemble_log_likelihood_rate(models, images, seed=2)
    member_rates = terms / (13 * 18 * np.log(2.0))
    assert np.all(rate <= member_rates.max(axis=(1, 2)) + 1e-9)
    assert np.all(rate >= member_rates.mean(axis=(1, 2)) - 1e-9)
    # The terms differ, so both inequalities are strict here.
    assert np.all(member_rates.max(axis=(1, 2)) - rate > 1e-3)
    assert np.all(rate - member_rates.mean(axis=(1, 2)) > 1e-4)
    # log-sum-exp computed another way.
    np.testing.assert_allclose(ensemble_log_prob(models, images, seed=2),
                               np.log(np.mean(np.exp(terms.reshape(3, -1).astype(np.longdouble)), axis=1)),
                               rtol=1e-9)


def test_dihedral_maps_are_a_group_of_permutations_with_inverses():
    x = np.random.default_rng(0).random((2, 5, 7, 1))
    seen = set()
    for k in range(8):
        y = geometry.dihedral(x, k)
        np.testing.assert_array_equal(geometry.inverse_dihedral(y, k), x)
        np.testing.assert_array_equal(np.sort(y.ravel()), np.sort(x.ravel()))
        seen.add(y.tobytes())
    assert len(seen) == 8


def test_bad_arguments(models):
    with pytest.raises(ValueError, match="at least one model"):
        ride_tf.ensemble_log_likelihood_rate([], np.zeros((1, 8, 8), np.uint8))
    colour = RIDE(num_channels=3, num_layers=0, num_components=2, num_features=3)
    with pytest.raises(ValueError, match="channels"):
        ride_tf.ensemble_log_likelihood_rate([models[0], colour], np.zeros((1, 8, 8), np.uint8))
