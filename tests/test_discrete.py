"""Tests of the discrete likelihood (`ride_tf.discrete`): bin masses and exact compressed sizes."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ride_tf import RIDE, codec, data, discrete, evaluation
from ride_tf.preprocessing import LN2


def small_ride(num_channels=1, num_layers=1, seed=0, dtype=None, images=None):
    keras.utils.set_random_seed(seed)
    config = dict(num_channels=num_channels, num_hiddens=6, num_layers=num_layers, num_components=3,
                  num_scales=2, num_features=5)
    if dtype is not None:
        config["dtype"] = dtype
    model = RIDE(**config)
    model.adapt(colour_dead_leaves(6, 24) if num_channels == 3 else data.dead_leaves(6, size=24, seed=3))
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + 0.3 * rng.standard_normal(v.shape))
    return model


def colour_dead_leaves(num, size, seed=0):
    """Colour images whose channels are correlated but not deterministic functions of each other."""
    base = data.dead_leaves(num, size=size, seed=seed).astype(np.int32)
    other = [data.dead_leaves(num, size=size, seed=seed + s).astype(np.int32) for s in (11, 12)]
    return np.stack([base, (base + other[0]) // 2, (3 * base + other[1]) // 4], -1).astype(np.uint8)


def log_mass_reference(lower, upper):
    """log(Phi(upper) - Phi(lower)) in float64 from math.erfc, from the nearer tail."""
    q = lambda z: 0.5 * math.erfc(z / math.sqrt(2.0))
    if lower >= 0:
        return math.log(q(lower) - q(upper))
    if upper <= 0:
        return math.log(q(-upper) - q(-lower))
    return math.log(1.0 - q(-lower) - q(upper))


def test_normal_bin_log_mass_matches_erfc_and_stays_finite_in_the_far_tails():
    edges = [(-0.3, 0.2), (0.5, 0.6), (-2.0, -1.99), (3.0, 3.5), (-9.0, -8.0), (20.0, 20.5), (-30.0, -29.9)]
    lower, upper = np.array(edges).T
    got = discrete.normal_bin_log_mass(tf.constant(lower), tf.constant(upper)).numpy()
    want = np.array([log_mass_reference(a, b) for a, b in edges])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # Beyond the range of erfc: log Q(z) ~ -z^2/2 - log(z sqrt(2 pi)), and the bin [z, z + d) has
    # mass ~ Q(z) (1 - e^(-z d)).  At z = 100 the mass is about e^-5005, still finite in log space.
    far = discrete.normal_bin_log_mass(tf.constant([100.0, -np.inf, 5.0]),
                                       tf.constant([100.5, -100.0, np.inf])).numpy()
    asymptotic = -100.0 ** 2 / 2 - math.log(100.0 * math.sqrt(2 * math.pi)) + math.log1p(-math.exp(-50.0))
    assert abs(far[0] - asymptotic) < 1e-3 and abs(far[1] - asymptotic) < 1e-3
    assert abs(far[2] - math.log(0.5 * math.erfc(5.0 / math.sqrt(2.0)))) < 1e-9


def test_normal_bin_log_mass_has_finite_gradients():
    lower = tf.constant([-np.inf, -1.0, 2.0, -40.0, 0.1])
    upper = tf.constant([-3.0, 1.0, 2.1, -39.0, np.inf])
    with tf.GradientTape() as tape:
        tape.watch([lower, upper])
        value = tf.reduce_sum(discrete.normal_bin_log_mass(lower, upper))
    grads = tape.gradient(value, [lower, upper])
    assert all(np.isfinite(g.numpy()).all() for g in grads)


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_the_256_bin_masses_sum_to_one_even_for_mixtures_far_in_the_tails(dtype):
    """Rows of bin_table sum to 1 and agree with the log-masses of every single bin."""
    rng = np.random.default_rng(0)
    num, num_experts = 7, 5
    log_weights = rng.standard_normal((num, num_experts))
    mean = rng.uniform(-0.5, 1.5, (num, num_experts))
    mean[0] = -3.0                          # the whole mixture far below the range
    mean[1] = 4.0                           # and far above
    std = np.array([1e-4, 0.003, 0.02, 0.3, 2.0])
    table = discrete.bin_table(tf.constant(log_weights), tf.constant(mean), tf.constant(std), dtype).numpy()
    tolerance = 1e-12 if dtype == tf.float64 else 1e-6
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=tolerance)
    assert (table >= 0).all()
    # Every bin of every row through the log-mass path (float64).
    mixture = discrete.IntensityMixture(tf.constant(np.repeat(log_weights - np.log(np.exp(log_weights).sum(
        1, keepdims=True)), 256, 0)), tf.constant(np.repeat(mean, 256, 0)[..., None]),
        tf.zeros([num_experts, 1, 1], tf.float64), tf.constant(std[:, None]))
    values = tf.constant(np.tile(np.arange(256), num)[:, None], tf.int32)
    log_mass = discrete.log_mass(mixture, values).numpy().reshape(num, 256)
    assert np.isfinite(log_mass).all()
    np.testing.assert_allclose(table, np.exp(log_mass), atol=tolerance, rtol=1e-5 if dtype == tf.float32 else 1e-9)


def test_grayscale_masses_equal_the_mcgsm_cdf_of_the_whitened_bin_edges():
    """Independent path: P(k) = F(w (b - m(x))) - F(w (a - m(x))) with F the MCGSM distribution's cdf in y^."""
    model = small_ride(dtype="float64")
    images = data.dead_leaves(2, size=9, seed=5)
    got = discrete.pixel_log_mass(model, images)
    centres = (images[..., None].astype(np.float64) + 0.5) / 256
    u, _ = model.whitened_pairs(tf.constant(centres))
    h = model.hidden_states(u)
    x_hat = u[..., :12]
    dist = model.mcgsm(h)
    k = images[..., None].astype(np.float64)
    lower = model.whitening.whiten_outputs(x_hat, np.where(k == 0, -1e3, k / 256))
    upper = model.whitening.whiten_outputs(x_hat, np.where(k == 255, 1e3, (k + 1) / 256))
    want = np.log(dist.cdf(upper).numpy() - dist.cdf(lower).numpy())
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_colour_masses_equal_a_numpy_chain_of_gaussian_conditionals():
    """Colour: channel by channel, each expert's conditional Gaussian, weights updated by its bin masses."""
    from math import erfc, sqrt

    model = small_ride(num_channels=3, num_layers=0, dtype="float64")
    images = colour_dead_leaves(1, 6, seed=4)
    got = discrete.pixel_log_mass(model, images)[0]
    centres = (images.astype(np.float64) + 0.5) / 256
    u, _ = model.whitened_pairs(tf.constant(centres))
    gate, loc, prec = (t.numpy() for t in model.mcgsm.distribution_parameters(u))
    w_inv = np.linalg.inv(model.whitening.output_whitening.numpy())
    prediction = model.whitening.prediction(u[..., :36]).numpy()
    cdf = lambda z: 0.5 * erfc(-z / sqrt(2.0))
    for i in range(6):
        for j in range(6):
            log_w = gate[0, i, j] - np.log(np.exp(gate[0, i, j]).sum())
            total = 0.0
            weights = np.exp(log_w)
            for c in range(3):
                masses = []
                for k in range(len(weights)):
                    precision = prec[k] @ prec[k].T
                    cov = w_inv @ np.linalg.inv(precision) @ w_inv.T
                    mu = prediction[0, i, j] + w_inv @ loc[0, i, j, k]
                    mean, var = mu[c], cov[c, c]
                    if c:
                        beta = np.linalg.solve(cov[:c, :c], cov[:c, c])
                        mean += beta @ (centres[0, i, j, :c] - mu[:c])
                        var -= beta @ cov[:c, c]
                    value = images[0, i, j, c]
                    lo = -np.inf if value == 0 else value / 256
                    hi = np.inf if value == 255 else (value + 1) / 256
                    masses.append(cdf((hi - mean) / sqrt(var)) - cdf((lo - mean) / sqrt(var)))
                masses = np.array(masses)
                total += np.log((weights * masses).sum() / weights.sum())
                weights = weights * masses
            np.testing.assert_allclose(got[i, j], total, rtol=1e-7)


def test_exact_size_is_below_the_density_bound_of_a_fitted_model():
    """-log2 P(k) summed over an image stays below (8 - rate) x pixels, averaged over dequantization noise."""
    keras.utils.set_random_seed(0)
    model = RIDE(num_layers=0, num_components=4, num_scales=3, num_features=8)
    train = data.dead_leaves(12, size=32, seed=1, noise_std=0.01)
    model.finetune(train, max_iter=60, num_samples=20_000, verbose=0)
    test = data.dead_leaves(3, size=32, seed=9, noise_std=0.01)
    bits = codec.compressed_size_bits(model, test)
    rates = np.mean([model.log_likelihood_rate(test, seed=s) for s in range(8)], axis=0)
    bound = (8.0 - rates) * 32 * 32
    assert np.all(bits <= bound * 1.002 + 2.0), (bits, bound)
    assert np.all(bits > 0.5 * bound), (bits, bound)      # the same order: not a trivial number


def test_compressed_size_bits_is_the_sum_of_the_pixel_masses_and_tiles_agree(monkeypatch):
    model = small_ride(num_layers=2)
    images = data.dead_leaves(2, size=20, seed=2)
    log_mass = discrete.pixel_log_mass(model, images)
    assert log_mass.shape == (2, 20, 20) and log_mass.dtype == np.float64 and (log_mass < 0).all()
    np.testing.assert_allclose(discrete.float_code_length_bits(model, images), -log_mass.sum((1, 2)) / LN2)
    # The codec's tables (the integer model) give the same sizes to well within 0.5%.
    np.testing.assert_allclose(codec.compressed_size_bits(model, images), -log_mass.sum((1, 2)) / LN2,
                               rtol=5e-3)
    # The tiled path for large images gives the same numbers.
    monkeypatch.setattr(evaluation, "PIXELS_PER_BATCH", 64)
    monkeypatch.setattr(evaluation, "TILE_WIDTH", 8)
    np.testing.assert_allclose(discrete.pixel_log_mass(model, images), log_mass, rtol=1e-5, atol=1e-5)
    # The valid region is the same map, cropped.
    np.testing.assert_allclose(discrete.pixel_log_mass(model, images, region="valid"), log_mass[:, 2:, 2:-2],
                               rtol=1e-5, atol=1e-5)


def test_log_mass_map_in_graph_matches_the_numpy_api():
    model = small_ride()
    images = data.dead_leaves(2, size=11, seed=6)
    graph = tf.function(lambda x: discrete.log_mass_map(model, x))
    np.testing.assert_allclose(graph(tf.constant(images[..., None])).numpy(),
                               discrete.pixel_log_mass(model, images), rtol=1e-6)


def test_compressed_size_bits_refuses_float_images():
    model = small_ride()
    with pytest.raises(ValueError, match="uint8"):
        codec.compressed_size_bits(model, np.full((1, 8, 8), 0.5, np.float32))


@pytest.mark.parametrize("start", [0, 3, 100, 240])
def test_window_table_holds_the_bin_masses_and_the_two_tails_as_escapes(start):
    rng = np.random.default_rng(1)
    num, num_experts, width = 6, 4, 16
    log_weights = tf.constant(rng.standard_normal((num, num_experts)))
    mean = tf.constant(rng.uniform(-0.2, 1.2, (num, num_experts)))
    std = tf.constant(np.array([0.001, 0.01, 0.05, 0.4]))
    full = discrete.bin_table(log_weights, mean, std).numpy()
    window = discrete.window_table(log_weights, mean, std, tf.fill([num], start), width).numpy()
    assert window.shape == (num, width + 2)
    np.testing.assert_allclose(window[:, 1:-1], full[:, start:start + width], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(window[:, 0], full[:, :start].sum(1), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(window[:, -1], full[:, start + width:].sum(1), rtol=1e-9, atol=1e-15)
    # The window follows the mixture's mean, inside 0..256 - width.
    starts = discrete.window_start(log_weights, mean, width).numpy()
    assert ((starts >= 0) & (starts <= 256 - width)).all()
    centre = (tf.nn.softmax(log_weights).numpy() * mean.numpy()).sum(1) * 256
    inside = (centre > width) & (centre < 256 - width)
    np.testing.assert_array_less(np.abs(starts + width / 2 - centre)[inside], 1.0)
