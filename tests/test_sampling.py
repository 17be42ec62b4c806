"""Tests of the wavefront sampler (`ride_tf.wavefront.sampling`, `RIDE.sample`)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ride_tf import RIDE, data as image_data, geometry
from ride_tf.wavefront.sampling import draws


def small_ride(num_layers=2, seed=0, dtype=None, **kwargs):
    keras.utils.set_random_seed(seed)
    config = dict(num_hiddens=6, num_layers=num_layers, num_components=3, num_scales=2, num_features=5)
    config.update(kwargs)
    if dtype is not None:
        config["dtype"] = dtype
    model = RIDE(**config)
    model.adapt(image_data.dead_leaves(6, size=32, seed=3, noise_std=0.02))
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:       # non-trivial gates and mixtures
        v.assign(v.numpy() + 0.3 * rng.standard_normal(v.shape))
    return model


def naive_raster_sample(model, uniform, normal):
    """Raster order, one pixel at a time: each pixel's conditional from a full forward pass of the model."""
    num, height, width = uniform.shape
    dx = geometry.num_inputs(model.nb_size, model.num_channels)
    canvas = np.zeros((num, height, width, model.num_channels))

    @tf.function
    def forward(images):
        u, _ = model.whitened_pairs(images)
        return u, model.hidden_states(u)

    for i in range(height):
        for j in range(width):
            u, h = forward(tf.constant(canvas, model.compute_dtype))
            y_hat = model.mcgsm(h[:, i, j]).sample_from_noise(uniform[:, i, j], normal[:, i, j])
            y = model.whitening.unwhiten_outputs(u[:, i, j, :dx], y_hat).numpy()
            canvas[:, i, j] = np.clip(y, 0.0, np.nextafter(1.0, 0.0))
    return canvas


@pytest.mark.parametrize("num_layers, size", [(0, (5, 7)), (2, (6, 9)), (1, (9, 4))])
def test_wavefront_sampler_equals_a_naive_raster_sampler(num_layers, size):
    """With the random draws fixed, the wavefront order gives exactly the raster-order image (float64)."""
    # The paper's architecture: with skip_inputs, random weights on the MCGSM's rows of u make a chaotic
    # autoregression that amplifies float64 round-off past the tolerance (tests/test_training.py checks
    # the sampler of a skip model started from a fitted baseline).
    model = small_ride(num_layers=num_layers, dtype="float64", extended=num_layers == 1, skip_inputs=False)
    height, width = size
    uniform, normal = (t.numpy() for t in draws(7, 2, height, width, 1, dtype=tf.float64))
    reference = naive_raster_sample(model, uniform, normal)
    continuous = model.sample(2, height, width, seed=7, continuous=True)
    np.testing.assert_allclose(continuous, reference, rtol=0, atol=1e-7)   # float32 output of float64 sampling
    np.testing.assert_array_equal(model.sample(2, height, width, seed=7),
                                  np.clip(np.floor(reference * 256), 0, 255).astype(np.uint8))
    # The draws are not trivial: values spread over the range.
    assert reference.std() > 0.05


def test_seed_determinism_and_batch_size_independence():
    model = small_ride()
    a = model.sample(4, 10, 11, seed=3)
    assert a.shape == (4, 10, 11, 1) and a.dtype == np.uint8
    np.testing.assert_array_equal(model.sample(4, 10, 11, seed=3), a)
    np.testing.assert_array_equal(model.sample(4, 10, 11, seed=3, batch_size=3), a)
    np.testing.assert_array_equal(model.sample(2, 10, 11, seed=3), a[:2])
    assert np.mean(model.sample(4, 10, 11, seed=4) != a) > 0.5
    continuous = model.sample(4, 10, 11, seed=3, continuous=True)
    assert continuous.dtype == np.float32 and continuous.min() >= 0.0 and continuous.max() < 1.0
    np.testing.assert_array_equal(np.floor(continuous * 256).astype(np.uint8), a)


def test_conditional_sampling_keeps_the_known_pixels():
    model = small_ride()
    images = image_data.dead_leaves(3, size=(14, 15), seed=9, noise_std=0.02)
    mask = np.zeros((14, 15), bool)
    mask[4:10, 3:11] = True
    out = model.sample(images=images, mask=mask, seed=1)
    assert out.shape == (3, 14, 15, 1)
    np.testing.assert_array_equal(out[:, ~mask, 0], images[:, ~mask])
    assert np.mean(out[:, mask, 0] != images[:, mask]) > 0.5
    # Float images: kept values come back unchanged.
    floats = (images[..., None].astype(np.float32) + 0.25) / 256.0
    out = model.sample(images=floats, mask=mask, seed=1, continuous=True)
    np.testing.assert_array_equal(out[:, ~mask], floats[:, ~mask])
    # The drawn pixels depend on the known pixels around them (they are conditioned on them).
    other = model.sample(images=255 - images, mask=mask, seed=1)
    assert np.abs(other[:, mask, 0].astype(int) - out[:, mask, 0] * 256).mean() > 5


def gaussian_ar_images(num, size, seed=0):
    """A causal Gaussian AR process (`image_data.gaussian_autoregressive`), mean 0.5."""
    return image_data.gaussian_autoregressive(num, size, seed=seed)


def autocorrelations(images, margin):
    """Per-image correlation of horizontal and vertical neighbours on the interior: [N, 2]."""
    x = images[:, margin:, margin:]
    out = []
    for im in x:
        h = np.corrcoef(im[:, :-1].ravel(), im[:, 1:].ravel())[0, 1]
        v = np.corrcoef(im[:-1].ravel(), im[1:].ravel())[0, 1]
        out.append((h, v))
    return np.array(out)


def test_samples_of_a_gaussian_ar_model_reproduce_its_autocorrelation():
    """The MCGSM with one standard-normal expert on top of the fitted whitening is the AR process's exact
    conditional; its samples' neighbour correlations must match the data's within 4 standard errors."""
    data = gaussian_ar_images(24, 40)
    assert 0.0 < data.min() and data.max() < 1.0
    keras.utils.set_random_seed(0)
    model = RIDE(num_layers=0, num_components=1, num_scales=1, num_features=1)
    model.adapt(data.astype(np.float32))
    model.mcgsm.set_standard_normal()
    samples = model.sample(24, 40, 40, seed=0, continuous=True)[..., 0]
    margin = 8
    real, drawn = autocorrelations(data, margin), autocorrelations(samples, margin)
    standard_error = np.sqrt(real.var(0, ddof=1) / len(real) + drawn.var(0, ddof=1) / len(drawn))
    difference = np.abs(real.mean(0) - drawn.mean(0))
    assert (difference < 4 * standard_error).all(), (real.mean(0), drawn.mean(0), standard_error)
    assert real.mean(0)[0] > 0.5 and standard_error.max() < 0.02   # the check has power
    # Mean and spread of the intensities too.
    assert abs(samples[:, margin:, margin:].mean() - 0.5) < 0.02
    assert abs(samples[:, margin:, margin:].std() / data.std() - 1.0) < 0.15


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_samples=0, height=4, width=4), "num_samples"),
    (dict(num_samples=2, height=-1, width=4), "height"),
    (dict(num_samples=2, height=4, width=2.5), "width"),
    (dict(num_samples=2, height=4, width=4, seed="a"), "seed"),
    (dict(num_samples=2, height=4, width=4, mask=np.ones((4, 4), bool)), "needs the images"),
    (dict(images=np.zeros((2, 4, 4), np.uint8)), "needs a mask"),
    (dict(images=np.zeros((2, 4, 4), np.uint8), mask=np.ones((3, 3), bool)), "does not fit"),
    (dict(images=np.zeros((2, 4, 4), np.uint8), mask=np.ones((4, 4))), "boolean"),
    (dict(images=np.zeros((2, 4, 4), np.uint8), mask=np.ones((4, 4), bool), height=5), "does not match"),
    (dict(images=np.zeros((2, 4, 4), np.int32), mask=np.ones((4, 4), bool)), "dtype int32"),
])
def test_bad_arguments_are_refused(kwargs, message):
    model = small_ride(num_layers=0)
    with pytest.raises(ValueError, match=message):
        model.sample(**kwargs)
