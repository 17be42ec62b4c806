"""Conditional whitening of (neighbourhood, pixel) pairs (paper eq. 7).

    x^ = C_xx^(-1/2) (x - m_x)
    y^ = W (y - m_y - C_yx C_xx^(-1/2) x^),     W = (C_yy - C_yx C_xx^-1 C_xy)^(-1/2)

x^ has identity covariance; y^ is the residual of the best linear prediction of
y from x, scaled to identity covariance.  The model predicts y^, so every
pixel's log-likelihood gains log|det W| (the log-Jacobian of y -> y^ at fixed x).
On its own, N(y^; 0, I) + log|det W| is the Gaussian linear predictor with the
same neighbourhood: the baseline every model here should beat.

The statistics are non-trainable weights, so they save and export with a model.
"""
import keras
import numpy as np
import tensorflow as tf

from ride_tf.checks import check_number

__all__ = ["ConditionalWhitening", "NotAdaptedError", "MIN_RESIDUAL_VARIANCE"]

# The smallest variance of a pixel given its neighbourhood that `adapt` accepts (intensities in
# [0, 1]).  Dequantized 8-bit data, (k + u) / 256, always have at least 1 / (12 * 256^2) ~ 1.3e-6;
# far below that the pixel is a deterministic function of its neighbours (constant or synthetic
# images) and W = (residual covariance)^-1/2 would be enormous or infinite.
MIN_RESIDUAL_VARIANCE = 1e-10


class NotAdaptedError(ValueError):
    """A model was used before its conditional whitening was fitted (`adapt`)."""


def not_adapted_message(owner):
    return (f"{owner}: the model's conditional whitening has not been fitted; call model.adapt(images) "
            "(or train it with ride_tf.training.train, which adapts first) before using it.")


def _inverse_sqrt(cov, eps):
    """Symmetric inverse square root of a covariance matrix (eigenvalues floored at eps * max)."""
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, eps * max(values.max(), np.finfo(np.float64).tiny))
    return (vectors / np.sqrt(values)) @ vectors.T


@keras.saving.register_keras_serializable(package="ride_tf")
class ConditionalWhitening(keras.layers.Layer):
    """Conditional whitening with statistics fitted by `adapt`.

    Weights (non-trainable): `input_mean` [Dx] (m_x), `input_whitening` [Dx, Dx]
    (C_xx^-1/2), `output_mean` [Dy] (m_y), `predictor` [Dy, Dx] (C_yx C_xx^-1/2)
    and `output_whitening` [Dy, Dy] (W).  Before `adapt` they hold the identity
    transformation.
    """

    def __init__(self, eps=1e-10, **kwargs):
        super().__init__(**kwargs)
        self.eps = check_number("ConditionalWhitening", "eps", eps, low=0.0, high=1.0, low_open=True)
        self.input_dim = None
        self.output_dim = None

    def build(self, inputs_shape, outputs_shape=None):
        if outputs_shape is None:
            inputs_shape, outputs_shape = inputs_shape
        self.input_dim, self.output_dim = int(inputs_shape[-1]), int(outputs_shape[-1])
        dx, dy = self.input_dim, self.output_dim
        weight = lambda name, shape, init: self.add_weight(name=name, shape=shape, initializer=init,
                                                          trainable=False)
        self.input_mean = weight("input_mean", (dx,), "zeros")
        self.input_whitening = weight("input_whitening", (dx, dx), "identity")
        self.output_mean = weight("output_mean", (dy,), "zeros")
        self.predictor = weight("predictor", (dy, dx), "zeros")
        self.output_whitening = weight("output_whitening", (dy, dy), "identity")
        self.adapted = weight("adapted", (), "zeros")
        self.built = True

    def adapt(self, inputs, outputs):
        """Fit m_x, m_y and the covariances from pairs inputs [M, Dx], outputs [M, Dy] (in float64)."""
        x, y = np.asarray(inputs, dtype=np.float64), np.asarray(outputs, dtype=np.float64)
        if not self.built:
            self.build(x.shape, y.shape)
        x, y = x.reshape(-1, self.input_dim), y.reshape(-1, self.output_dim)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"ConditionalWhitening.adapt: {x.shape[0]} inputs but {y.shape[0]} outputs.")
        if x.shape[0] <= self.input_dim + self.output_dim:
            raise ValueError(f"ConditionalWhitening.adapt: {x.shape[0]} pairs are too few to estimate "
                             f"a covariance of size {self.input_dim + self.output_dim}.")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("ConditionalWhitening.adapt: the data contain NaN or infinite values.")
        m_x, m_y = x.mean(0), y.mean(0)
        xc, yc = x - m_x, y - m_y
        c_xx = xc.T @ xc / len(x)
        c_yx = yc.T @ xc / len(x)
        c_yy = yc.T @ yc / len(x)
        if np.linalg.eigvalsh(c_xx).max() < MIN_RESIDUAL_VARIANCE:
            raise ValueError("ConditionalWhitening.adapt: the neighbourhoods do not vary (constant images?); "
                             "the whitening needs images with texture, or uint8 images, which are "
                             "dequantized with noise.")
        c_xx_isqrt = _inverse_sqrt(c_xx, self.eps)
        predictor = c_yx @ c_xx_isqrt
        residual_cov = c_yy - predictor @ predictor.T
        smallest = float(np.linalg.eigvalsh(residual_cov).min())
        if not smallest >= MIN_RESIDUAL_VARIANCE:
            raise ValueError(
                f"ConditionalWhitening.adapt: the pixels are (almost) exactly predictable from their "
                f"neighbourhoods (residual variance {max(smallest, 0.0):.3g} < {MIN_RESIDUAL_VARIANCE:g}; "
                "constant or degenerate images?), so the whitening would be infinite; pass uint8 images, "
                "which are dequantized with noise, or images with texture.")
        output_whitening = _inverse_sqrt(residual_cov, self.eps)
        weights = [m_x, c_xx_isqrt, m_y, predictor, output_whitening]
        if not all(np.isfinite(np.asarray(w, np.float32)).all() for w in weights):
            raise ValueError("ConditionalWhitening.adapt: the fitted whitening is not finite in float32 "
                             "(intensities far outside [0, 1]?).")
        self.input_mean.assign(m_x)
        self.input_whitening.assign(c_xx_isqrt)
        self.output_mean.assign(m_y)
        self.predictor.assign(predictor)
        self.output_whitening.assign(output_whitening)
        self.adapted.assign(1.0)

    @property
    def is_adapted(self):
        return bool(self.adapted.numpy())

    def require_adapted(self, owner):
        """Raise NotAdaptedError (naming `owner` and the fix) unless `adapt` has run."""
        if not self.is_adapted:
            raise NotAdaptedError(not_adapted_message(owner))

    def assert_adapted(self, owner):
        """In-graph form of `require_adapted` (a tf.debugging assert op; raises at once when eager)."""
        if tf.executing_eagerly():
            self.require_adapted(owner)
            return None
        return tf.debugging.assert_equal(tf.cast(self.adapted, tf.float32), tf.constant(1.0),
                                         message=not_adapted_message(owner))

    @property
    def log_det_jacobian(self):
        """log|det W|, added to the log-likelihood of every (multivariate) pixel."""
        return tf.linalg.slogdet(tf.cast(self.output_whitening, tf.float64))[1]

    def whiten_inputs(self, x, missing=None):
        """x [..., Dx] -> x^ [..., Dx].

        `missing` ([..., Dx], 1 where an input is unknown, e.g. outside the
        image): those inputs are replaced by their mean m_x before whitening.
        """
        x = tf.cast(x, self.compute_dtype)
        centred = x - self.input_mean
        if missing is not None:
            centred = centred * (1.0 - tf.cast(missing, centred.dtype))
        return tf.linalg.matvec(self.input_whitening, centred)

    def prediction(self, x_hat):
        """m_y + C_yx C_xx^-1/2 x^: the Gaussian linear prediction of y, [..., Dy]."""
        x_hat = tf.cast(x_hat, self.compute_dtype)
        return tf.linalg.matvec(self.predictor, x_hat) + self.output_mean

    def whiten_outputs(self, x_hat, y):
        """y [..., Dy] -> y^ [..., Dy] given the whitened inputs x^."""
        y = tf.cast(y, self.compute_dtype)
        return tf.linalg.matvec(self.output_whitening, y - self.prediction(x_hat))

    def unwhiten_outputs(self, x_hat, y_hat, inverse=None):
        """The inverse of `whiten_outputs`: y = W^-1 y^ + m_y + C_yx C_xx^-1/2 x^.

        `inverse`: W^-1 if already computed (`output_unwhitening()`), e.g. once
        before a sampling loop instead of at every step.
        """
        w_inv = self.output_unwhitening() if inverse is None else inverse
        y_hat = tf.cast(y_hat, self.compute_dtype)
        return tf.linalg.matvec(w_inv, y_hat) + self.prediction(x_hat)

    def output_unwhitening(self, dtype=None):
        """W^-1 [Dy, Dy] (in `dtype`, default the layer's compute dtype; inverted in that dtype)."""
        return tf.linalg.inv(tf.cast(self.output_whitening, dtype or self.compute_dtype))

    def call(self, inputs, outputs, missing=None):
        """(x, y) -> (x^, y^); `missing` as in `whiten_inputs`."""
        x_hat = self.whiten_inputs(inputs, missing)
        return x_hat, self.whiten_outputs(x_hat, outputs)

    def get_config(self):
        config = super().get_config()
        config.update(eps=self.eps)
        return config
