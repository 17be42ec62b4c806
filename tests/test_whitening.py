"""Tests of the conditional whitening (`ride_tf.nn.whitening`, paper eq. 7).

    x^ = C_xx^(-1/2) (x - m_x)
    y^ = W (y - m_y - C_yx C_xx^(-1/2) x^),     W = (C_yy - C_yx C_xx^-1 C_xy)^(-1/2)

All reference values are computed here in float64 NumPy from the empirical (1/M) moments.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ride_tf.nn.whitening import ConditionalWhitening

DX = 12
M = 20000


def gaussian_data(dy, seed=0, m=M):
    """Correlated Gaussian (x, y) with non-zero means; y depends linearly on x plus noise."""
    rng = np.random.default_rng(seed)
    d = DX + dy
    mixing = rng.normal(size=(d, d)) / np.sqrt(d) + np.diag(rng.uniform(0.5, 2.0, d))
    z = rng.normal(size=(m, d)) @ mixing.T + rng.normal(0.0, 3.0, d)
    return z[:, :DX].astype(np.float32), z[:, DX:].astype(np.float32)


def non_gaussian_data(dy, seed=0, m=M):
    """Heavy-tailed, skewed and bounded sources mixed linearly; y depends non-linearly on x."""
    rng = np.random.default_rng(seed)
    sources = np.concatenate([rng.laplace(size=(m, 4)), rng.exponential(size=(m, 4)),
                              rng.uniform(-2, 2, size=(m, DX - 8))], axis=1)
    mixing = rng.normal(size=(DX, DX)) / np.sqrt(DX) + np.eye(DX)
    x = sources @ mixing.T + 5.0
    w = rng.normal(size=(DX, dy)) / np.sqrt(DX)
    y = (np.tanh(x @ w) + 0.3 * (x[:, :dy] - 5.0) ** 2 + 0.5 * rng.laplace(size=(m, dy))
         + 1.0 * (x @ rng.normal(size=(DX, dy))) / np.sqrt(DX))
    return x.astype(np.float32), y.astype(np.float32)


DATASETS = {"gaussian": gaussian_data, "non_gaussian": non_gaussian_data}


def adapted_layer(x, y):
    layer = ConditionalWhitening()
    layer.build((None, x.shape[-1]), (None, y.shape[-1]))
    layer.adapt(x, y)
    return layer


def moments(a, b):
    """Empirical means and (1/M) cross-covariance of float64 copies."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ac, bc = a - a.mean(0), b - b.mean(0)
    return a.mean(0), b.mean(0), ac.T @ bc / len(a)


def reference_conditional_gaussian(x, y):
    """(mu [M, dy], Sigma [dy, dy]) of the Gaussian linear predictor: y | x ~ N(mu, Sigma)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m_y, m_x, c_yx = moments(y, x)
    c_xx = moments(x, x)[2]
    c_yy = moments(y, y)[2]
    mu = m_y + (x - m_x) @ np.linalg.solve(c_xx, c_yx.T)
    sigma = c_yy - c_yx @ np.linalg.solve(c_xx, c_yx.T)
    return mu, sigma


def log_normal(y, mu, sigma):
    d = y.shape[-1]
    diff = y - mu
    quad = np.einsum("mi,ij,mj->m", diff, np.linalg.inv(sigma), diff)
    return -0.5 * quad - 0.5 * np.linalg.slogdet(sigma)[1] - 0.5 * d * np.log(2 * np.pi)


# --------------------------------------------------------------------------- whitening statistics
@pytest.mark.parametrize("kind", sorted(DATASETS))
@pytest.mark.parametrize("dy", [1, 3])
def test_whitened_data_have_identity_covariance_zero_mean_and_no_cross_correlation(kind, dy):
    x, y = DATASETS[kind](dy, seed=dy)
    # the raw data are far from white: means, scales and correlations
    raw_mx, _, raw_cov = moments(x, x)
    assert np.abs(raw_mx).max() > 1.0 and np.abs(raw_cov - np.eye(DX)).max() > 0.3
    assert np.abs(moments(x, y)[2]).max() > 0.2
    layer = adapted_layer(x, y)
    assert layer.is_adapted
    x_hat, y_hat = layer(x, y)
    assert x_hat.dtype == tf.float32 and tuple(x_hat.shape) == (M, DX) and tuple(y_hat.shape) == (M, dy)
    m_xh, _, c_xx = moments(x_hat, x_hat)
    m_yh, _, c_yy = moments(y_hat, y_hat)
    c_yx = moments(y_hat, x_hat)[2]
    assert np.abs(m_xh).max() < 1e-3
    assert np.abs(c_xx - np.eye(DX)).max() < 1e-3
    assert np.abs(m_yh).max() < 1e-3
    assert np.abs(c_yy - np.eye(dy)).max() < 1e-3
    assert np.abs(c_yx).max() < 1e-3
    # call() is whiten_inputs then whiten_outputs
    np.testing.assert_array_equal(x_hat.numpy(), layer.whiten_inputs(x).numpy())
    np.testing.assert_array_equal(y_hat.numpy(), layer.whiten_outputs(x_hat, y).numpy())


def test_input_whitening_is_the_symmetric_inverse_square_root():
    x, y = gaussian_data(1, seed=4)
    layer = adapted_layer(x, y)
    c_xx = moments(x, x)[2]
    w = layer.input_whitening.numpy().astype(np.float64)
    np.testing.assert_allclose(w, w.T, atol=1e-5)
    np.testing.assert_allclose(w @ w @ c_xx, np.eye(DX), atol=1e-4)
    np.testing.assert_allclose(layer.input_mean.numpy(), x.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.output_mean.numpy(), y.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)


def test_prediction_is_the_linear_least_squares_prediction():
    x, y = non_gaussian_data(3, seed=5)
    layer = adapted_layer(x, y)
    mu, _ = reference_conditional_gaussian(x, y)
    prediction = layer.prediction(layer.whiten_inputs(x)).numpy()
    np.testing.assert_allclose(prediction, mu, atol=2e-4 * np.abs(mu).max())


def test_works_on_image_shaped_tensors():
    x, y = gaussian_data(3, seed=6)
    layer = adapted_layer(x, y)
    x4, y4 = x[:240].reshape(2, 10, 12, DX), y[:240].reshape(2, 10, 12, 3)
    x_hat, y_hat = layer(x4, y4)
    assert tuple(x_hat.shape) == (2, 10, 12, DX) and tuple(y_hat.shape) == (2, 10, 12, 3)
    flat_x_hat, flat_y_hat = layer(x[:240], y[:240])
    np.testing.assert_allclose(x_hat.numpy().reshape(240, DX), flat_x_hat.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y_hat.numpy().reshape(240, 3), flat_y_hat.numpy(), rtol=1e-6, atol=1e-6)
    # adapt also accepts image-shaped arrays: same statistics as the flattened pairs
    shaped = adapted_layer(x.reshape(20, 50, 20, DX), y.reshape(20, 50, 20, 3))
    for a, b in zip(shaped.weights, layer.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# --------------------------------------------------------------------------- inverse and Jacobian
@pytest.mark.parametrize("dy", [1, 3])
def test_unwhiten_outputs_inverts_whiten_outputs(dy):
    x, y = non_gaussian_data(dy, seed=7)
    layer = adapted_layer(x, y)
    x_hat = layer.whiten_inputs(x)
    y_hat = layer.whiten_outputs(x_hat, y)
    assert np.abs(y_hat.numpy() - y).max() > 0.1  # whitening really changed y
    np.testing.assert_allclose(layer.unwhiten_outputs(x_hat, y_hat).numpy(), y, rtol=1e-5,
                               atol=1e-5 * np.abs(y).max())
    # and the other way round
    z = np.random.default_rng(8).normal(size=(100, dy)).astype(np.float32)
    np.testing.assert_allclose(layer.whiten_outputs(x_hat[:100], layer.unwhiten_outputs(x_hat[:100], z)).numpy(),
                               z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dy", [1, 3])
def test_log_det_jacobian_matches_autodiff_and_numpy(dy):
    x, y = gaussian_data(dy, seed=9)
    layer = adapted_layer(x, y)
    x_hat = layer.whiten_inputs(x[:1])
    y0 = tf.constant(y[:1])
    with tf.GradientTape() as tape:
        tape.watch(y0)
        y_hat = layer.whiten_outputs(x_hat, y0)
    jacobian = tape.jacobian(y_hat, y0).numpy().reshape(dy, dy).astype(np.float64)
    numeric = np.linalg.slogdet(jacobian)[1]
    ldj = layer.log_det_jacobian
    assert ldj.dtype == tf.float64
    _, sigma = reference_conditional_gaussian(x, y)
    from_numpy = -0.5 * np.linalg.slogdet(sigma)[1]             # log|det Sigma^-1/2|
    assert abs(from_numpy) > 0.1
    np.testing.assert_allclose(ldj.numpy(), numeric, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ldj.numpy(), from_numpy, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(DATASETS))
@pytest.mark.parametrize("dy", [1, 3])
def test_whitened_gaussian_likelihood_is_the_gaussian_linear_predictor(kind, dy):
    x, y = DATASETS[kind](dy, seed=10 + dy)
    layer = adapted_layer(x, y)
    _, y_hat = layer(x, y)
    y_hat = y_hat.numpy().astype(np.float64)
    per_pixel = (-0.5 * np.sum(y_hat ** 2, -1) - 0.5 * dy * np.log(2 * np.pi)
                 + layer.log_det_jacobian.numpy())
    mu, sigma = reference_conditional_gaussian(x, y)
    reference = log_normal(y.astype(np.float64), mu, sigma)
    assert abs(per_pixel.mean() - reference.mean()) < 1e-3
    np.testing.assert_allclose(per_pixel, reference, rtol=1e-4, atol=1e-3)
    # it beats the unconditional Gaussian on y (the inputs are informative)
    unconditional = log_normal(y.astype(np.float64), y.mean(0), moments(y, y)[2]).mean()
    assert per_pixel.mean() > unconditional + 0.05


# --------------------------------------------------------------------------- state, validation, saving
def test_identity_before_adapt():
    layer = ConditionalWhitening()
    layer.build((None, DX), (None, 3))
    assert not layer.is_adapted
    x, y = gaussian_data(3, seed=12, m=50)
    x_hat, y_hat = layer(x, y)
    np.testing.assert_array_equal(x_hat.numpy(), x)
    np.testing.assert_array_equal(y_hat.numpy(), y)
    np.testing.assert_array_equal(layer.unwhiten_outputs(x_hat, y).numpy(), y)
    assert layer.log_det_jacobian.numpy() == 0.0


@pytest.mark.parametrize("case", ["nan_x", "nan_y", "inf_x", "mismatched", "too_few"])
def test_adapt_rejects_bad_data(case):
    x, y = gaussian_data(1, seed=13, m=200)
    x, y = x.copy(), y.copy()
    if case == "nan_x":
        x[17, 3] = np.nan
    elif case == "nan_y":
        y[5, 0] = np.nan
    elif case == "inf_x":
        x[0, 0] = np.inf
    elif case == "mismatched":
        y = y[:-1]
    elif case == "too_few":
        x, y = x[:DX + 1], y[:DX + 1]                            # 13 pairs for a 13 x 13 covariance
    layer = ConditionalWhitening()
    layer.build((None, DX), (None, 1))
    with pytest.raises(ValueError):
        layer.adapt(x, y)
    # a failed adapt leaves the identity in place
    assert not layer.is_adapted
    np.testing.assert_array_equal(layer.input_whitening.numpy(), np.eye(DX))


def test_enough_pairs_are_accepted():
    x, y = gaussian_data(1, seed=14, m=DX + 6)
    layer = ConditionalWhitening()
    layer.build((None, DX), (None, 1))
    layer.adapt(x, y)
    assert layer.is_adapted
    assert np.all(np.isfinite(layer.output_whitening.numpy()))


@keras.saving.register_keras_serializable(package="test_whitening")
class WhiteningModel(keras.Model):
    """A small model around a ConditionalWhitening: (x, y) -> (x^, y^)."""

    def __init__(self, dx, dy, **kwargs):
        super().__init__(**kwargs)
        self.dx, self.dy = int(dx), int(dy)
        self.whitening = ConditionalWhitening(name="whitening")
        self.whitening.build((None, self.dx), (None, self.dy))
        self.built = True

    def call(self, inputs):
        x, y = inputs
        return self.whitening(x, y)

    def get_config(self):
        return {**super().get_config(), "dx": self.dx, "dy": self.dy}


def test_weights_are_non_trainable_and_survive_save_load(tmp_path):
    x, y = non_gaussian_data(3, seed=15, m=5000)
    model = WhiteningModel(DX, 3)
    layer = model.whitening
    assert layer.trainable_weights == []
    assert model.trainable_weights == []
    assert sorted(v.name for v in layer.non_trainable_weights) == sorted(
        ["input_mean", "input_whitening", "output_mean", "predictor", "output_whitening", "adapted"])
    layer.adapt(x, y)
    before = [t.numpy() for t in model((x[:64], y[:64]))]
    path = str(tmp_path / "whitening_model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.whitening.is_adapted
    assert loaded.whitening.trainable_weights == []
    for a, b in zip(layer.weights, loaded.whitening.weights):
        assert a.name == b.name
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    after = [t.numpy() for t in loaded((x[:64], y[:64]))]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert loaded.whitening.log_det_jacobian.numpy() == layer.log_det_jacobian.numpy() != 0.0
    assert loaded.whitening.get_config()["eps"] == layer.eps
