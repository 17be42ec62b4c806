"""Tests of inpainting by Metropolis within Gibbs (`ride_tf.wavefront.inpainting`, `RIDE.inpaint`)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ride_tf import RIDE, data
from ride_tf.wavefront.inpainting import block_grid, block_schedule, block_windows


def small_ride(num_layers=1, seed=0):
    keras.utils.set_random_seed(seed)
    model = RIDE(num_hiddens=6, num_layers=num_layers, num_components=3, num_scales=2, num_features=5)
    model.adapt(data.dead_leaves(6, size=32, seed=3, noise_std=0.02))
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:       # non-trivial gates and mixtures
        v.assign(v.numpy() + 0.3 * rng.standard_normal(v.shape))
    return model


@pytest.fixture(scope="module")
def model():
    return small_ride()


def hole(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_known_pixels_shape_dtype_acceptance_and_determinism(model):
    image = data.dead_leaves(1, size=(16, 18), seed=9, noise_std=0.02)[0]          # uint8 [H, W]
    mask = hole(image.shape, slice(5, 10), slice(4, 11))
    out, rate = model.inpaint(image, mask, num_sweeps=2, seed=1, verbose=0)
    assert out.shape == (16, 18) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert 0.0 <= rate <= 1.0
    assert np.mean(out[mask] != image[mask]) > 0.5, "the hole is filled with new values"
    again, rate_again = model.inpaint(image[None, ..., None], mask, num_sweeps=2, seed=1, verbose=0)
    again = again[0, ..., 0]
    np.testing.assert_array_equal(again, out)
    assert rate_again == rate
    other, _ = model.inpaint(image, mask, num_sweeps=2, seed=2, verbose=0)
    assert np.mean(other[mask] != out[mask]) > 0.5, "another seed gives another fill"
    # Float input in [H, W, 1] and [1, H, W, 1]: known values come back bit for bit, in the input's dtype.
    floats = (image[..., None].astype(np.float64) + 0.3) / 256.0
    out, _ = model.inpaint(floats, mask, num_sweeps=1, seed=1, verbose=0)
    assert out.shape == (16, 18, 1) and out.dtype == np.float64
    np.testing.assert_array_equal(out[~mask], floats[~mask])
    assert 0.0 <= out.min() and out.max() < 1.0
    batch, _ = model.inpaint(floats[None].astype(np.float32), mask, num_sweeps=0, seed=1, verbose=0)
    assert batch.shape == (1, 16, 18, 1) and batch.dtype == np.float32


def test_callback_sees_every_sweep_and_zero_sweeps_is_the_initialisation(model):
    image = data.dead_leaves(1, size=(12, 12), seed=4, noise_std=0.02)[0]
    mask = hole(image.shape, slice(3, 8), slice(3, 8))
    states = []
    out, rate = model.inpaint(image, mask, num_sweeps=3, seed=5, verbose=0,
                              callback=lambda sweep, state: states.append((sweep, state)))
    assert [s for s, _ in states] == [0, 1, 2]
    last = states[-1][1]
    assert last.shape == (12, 12) and last.dtype == np.float32
    np.testing.assert_array_equal(np.floor(last[mask] * 256).astype(np.uint8), out[mask])
    np.testing.assert_allclose(last[~mask], (image[~mask] + 0.5) / 256, rtol=0, atol=1e-7)
    initial, nan_rate = model.inpaint(image, mask, num_sweeps=0, seed=5, verbose=0)
    assert np.isnan(nan_rate)
    np.testing.assert_array_equal(initial[~mask], image[~mask])


def test_cutting_a_window_below_and_r_columns_right_of_a_block_keeps_the_blocks_conditionals(model):
    """The proposals are drawn on windows cut there (fewer wavefronts); the block's terms must not change."""
    window = np.random.default_rng(0).random((2, 19, 19, 1)).astype(np.float32)
    full = model(window).numpy()
    block = (slice(None), slice(7, 12), slice(7, 12))
    cut = model(window[:, :12, :12 + model.radius]).numpy()
    np.testing.assert_allclose(cut[block], full[block], rtol=0, atol=1e-5)
    # One column fewer and the block's right column sees the image's edge: its terms change.
    closer = model(window[:, :12, :11 + model.radius]).numpy()
    assert np.abs(closer[:, 7:12, 11] - full[:, 7:12, 11]).min() > 1e-3


def test_blocks_cover_every_missing_pixel_and_groups_are_independent():
    mask = np.zeros((40, 50), bool)
    mask[3:20, 5:9] = True          # a tall hole near the top
    mask[30:33, 40:50] = True       # a flat one at the right edge
    mask[25, 2] = True              # a single pixel
    corners = block_grid(mask)
    covered = np.zeros_like(mask)
    for i, j in corners:
        assert mask[i:i + 5, j:j + 5].any() and 0 <= i <= 35 and 0 <= j <= 45
        covered[i:i + 5, j:j + 5] = True
    assert covered[mask].all()
    windows = block_windows(corners, mask.shape)
    assert ((windows >= 0) & (windows + 19 <= np.array(mask.shape))).all()
    assert ((windows <= corners) & (corners + 5 <= windows + 19)).all(), "each window contains its block"
    groups = block_schedule(corners, windows, mask.shape)
    assert sorted(np.concatenate(groups)) == list(range(len(corners)))
    for group in groups:        # no window of a group reaches another block of the group
        for a in group:
            for b in group:
                if a != b:
                    rows = windows[a, 0] < corners[b, 0] + 5 and corners[b, 0] < windows[a, 0] + 19
                    cols = windows[a, 1] < corners[b, 1] + 5 and corners[b, 1] < windows[a, 1] + 19
                    assert not (rows and cols), (a, b)
    assert len(groups) < len(corners), "some blocks are proposed together"


# ------------------------------------------------------------ a Gaussian model with a known posterior
def gaussian_ar_images(num, size, seed=0):
    """A causal Gaussian AR process (`data.gaussian_autoregressive`), mean 0.5."""
    return data.gaussian_autoregressive(num, size, seed=seed)


def gaussian_ride(nb_size=3):
    """One standard-normal expert on the whitening fitted to the AR process: log p(x) is quadratic in x."""
    keras.utils.set_random_seed(0)
    model = RIDE(num_layers=0, num_components=1, num_scales=1, num_features=1, nb_size=nb_size, dtype="float64")
    model.adapt(gaussian_ar_images(24, 40).astype(np.float32))
    model.mcgsm.set_standard_normal()
    return model


def hole_gaussians(model, image, mask):
    """The Gaussians of the hole's values x_M (known pixels fixed) under exp(sum of terms), for two sets
    of terms of log p(x) = sum_ij log p(x_ij | x_<ij): all of them (the posterior) and only the hole's
    own terms (what ancestral sampling of the hole alone targets).  Returns [(mean, covariance)] * 2.

    Each sum is quadratic in x_M: its gradient at x_M = 0 is b and its change for a unit step in pixel
    k is -Lambda[:, k]; the Gaussian has precision Lambda and mean Lambda^-1 b.
    """
    terms = tf.constant(np.stack([np.ones(image.shape), mask.astype(float)]))

    @tf.function(reduce_retracing=True)
    def gradients(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            log_p = model(x)
            totals = [tf.reduce_sum(log_p * terms[t]) for t in range(2)]
        return [tape.gradient(total, x) for total in totals]

    index = np.flatnonzero(mask)
    batch = np.repeat(np.where(mask, 0.0, image).reshape(1, -1), len(index) + 1, axis=0)
    batch[np.arange(1, len(index) + 1), index] = 1.0
    out = []
    for gradient in gradients(tf.constant(batch.reshape((-1,) + image.shape + (1,)))):
        gradient = gradient.numpy().reshape(len(index) + 1, -1)[:, index]
        precision = -(gradient[1:] - gradient[0]).T
        covariance = np.linalg.inv(0.5 * (precision + precision.T))
        out.append((covariance @ gradient[0], covariance))
    return out


def autocorrelation_time(series):
    """Integrated autocorrelation time of chains [N, K], their autocorrelations pooled over K (Geyer's
    initial positive sequence: sum until the first pair of lags with a negative sum)."""
    x = series - series.mean(0)
    n = len(x)
    rho = np.array([np.mean(np.sum(x[:n - k] * x[k:], 0) / np.sum(x * x, 0)) for k in range(n // 4)])
    tau = -1.0
    for k in range(0, len(rho) - 1, 2):
        pair = rho[k] + rho[k + 1]
        if pair < 0:
            break
        tau += 2 * pair
    return tau


SIZE, HOLE, SWEEPS = 44, (4, 6), 200


@pytest.fixture(scope="module")
def gaussian_chain():
    """A chain of RIDE's inpainting on a Gaussian model, with the exact posterior of its holes.

    The 44 x 44 image has 20 holes of 4 x 6 pixels (each covered by two
    overlapping 5 x 5 blocks) with 4 known pixels between them: the model's
    terms reach 1 pixel, so the holes' posteriors are independent and the
    chain is 20 independent chains (their blocks are proposed together).
    nb_size = 3 with 9 x 9 windows: a window reaches 2 pixels beyond its
    block, all that the terms depending on the block read, so the windowed
    acceptance is the exact one.
    """
    model = gaussian_ride(nb_size=3)
    image = gaussian_ar_images(1, SIZE, seed=5)[0]
    mask = np.zeros(image.shape, bool)
    hole_of_pixel = np.full(image.shape, -1)
    for top in range(3, SIZE - HOLE[0] - 2, HOLE[0] + 4):
        for left in range(3, SIZE - HOLE[1] - 2, HOLE[1] + 4):
            mask[top:top + HOLE[0], left:left + HOLE[1]] = True
            hole_of_pixel[top:top + HOLE[0], left:left + HOLE[1]] = hole_of_pixel.max() + 1
    (mean, covariance), (mean_q, covariance_q) = hole_gaussians(model, image, mask)
    states = []
    _, rate = model.inpaint(image, mask, num_sweeps=SWEEPS, seed=0, verbose=0, window_size=9,
                            callback=lambda sweep, state: states.append(state[mask]))
    sd = np.sqrt(np.diag(covariance))
    return dict(states=np.array(states), mean=mean, covariance=covariance, sd=sd, mean_q=mean_q,
                covariance_q=covariance_q, rate=rate, num_holes=hole_of_pixel.max() + 1,
                # the mean squared correlation of the posterior: the pixels' statistics are not independent
                rho2=np.mean((covariance / np.outer(sd, sd)) ** 2), tau=autocorrelation_time(np.array(states)))


def test_the_chain_mean_approaches_the_gaussian_posterior_mean(gaussian_chain):
    c = gaussian_chain
    states, mean, sd, tau = c["states"], c["mean"], c["sd"], c["tau"]
    assert c["num_holes"] == 20 and 0.05 < c["rate"] < 0.95
    assert 0.2 < mean.min() and mean.max() < 0.8 and sd.max() < 0.07, "the posterior is far from the range's ends"
    assert 1.0 <= tau < 20.0, f"autocorrelation time {tau:.1f} sweeps"
    # Per pixel, 5 standard errors with a conservative effective sample size (half the estimated one).
    effective = SWEEPS / (2 * tau)
    z = (states.mean(0) - mean) / (sd / np.sqrt(effective))
    assert np.abs(z).max() < 5.0, f"max |z| = {np.abs(z).max():.2f} over {len(z)} pixels, tau = {tau:.1f}"
    # All pixels together: Q = mean_k (m_k - mu_k)^2 / (sigma_k^2 tau / N) is ~1 for a correct chain, with
    # sd sqrt(2 mean rho^2) ~ 0.1 from the posterior's correlations; 2.5 leaves room for the estimated tau.
    scale = sd ** 2 * tau / SWEEPS
    q = np.mean((states.mean(0) - mean) ** 2 / scale)
    assert q < 2.5, f"Q = {q:.2f} (expected 1 +- {np.sqrt(2 * c['rho2']):.2f})"
    # The check has power: the target of ancestral sampling alone (pixels after the holes ignored) fails it.
    q_ancestral = np.mean((c["mean_q"] - mean) ** 2 / scale)
    assert q_ancestral > 2 * 2.5, q_ancestral


def test_the_chain_leaves_the_gaussian_posterior_invariant(gaussian_chain):
    """The chain's per-pixel variance in the holes matches the posterior variance."""
    c = gaussian_chain
    burn_in = 10
    states, variance, tau = c["states"][burn_in:], c["sd"] ** 2, c["tau"]
    ratio = np.mean(states.var(0) / variance)
    # The mean over pixels of v_k / sigma_k^2 from n draws has variance 2 mean(rho^2) / n for a Gaussian;
    # n = (N - burn-in) / (2 tau), conservatively.
    sd = np.sqrt(2 * c["rho2"] / (len(states) / (2 * tau)))
    assert abs(ratio - 1.0) < 5 * sd, f"variance ratio {ratio:.3f}, 5 sd = {5 * sd:.3f}"
    # Power: the variance of ancestral sampling of the holes alone is off by more than that.
    ratio_q = np.mean(np.diag(c["covariance_q"]) / variance)
    assert abs(ratio_q - 1.0) > 5 * sd, (ratio_q, 5 * sd)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=np.zeros((2, 8, 8, 1), np.uint8)), "one image"),
    (dict(image=np.zeros((8,), np.uint8)), "image must have shape"),
    (dict(image=np.zeros((8, 8, 3), np.uint8)), "image must have shape"),
    (dict(image=np.zeros((8, 8), np.int32)), "image: dtype int32"),
    (dict(image=np.full((8, 8), 1.5)), "image: float intensities"),
    (dict(mask=np.ones((8, 8))), "mask must be boolean"),
    (dict(mask=np.ones((8, 9), bool)), "mask must have the image's height and width"),
    (dict(mask=np.zeros((8, 8), bool)), "mask has no missing pixel"),
    (dict(num_sweeps=-1), "num_sweeps"),
    (dict(num_sweeps=2.0), "num_sweeps"),
    (dict(seed="a"), "seed"),
    (dict(verbose=3), "verbose"),
    (dict(num_candidates=0), "num_candidates"),
    (dict(stride=6), "stride"),
    (dict(window_size=4), "window_size"),
    (dict(callback=3), "callback"),
])
def test_bad_arguments_are_refused(model, kwargs, message):
    arguments = dict(image=np.zeros((8, 8), np.uint8), mask=np.ones((8, 8), bool), num_sweeps=1, verbose=0)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        model.inpaint(**arguments)
