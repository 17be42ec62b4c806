"""The factorized mixture of conditional Gaussian scale mixtures (MCGSM) as a Keras layer.

Paper eqs. 3-5 with the factorization K_c = sum_n beta_cn^2 b_n b_n^T, extended
(as in the supplementary and the reference C++ toolkit) to multivariate pixels,
linear gate features and expert biases.  With x the layer's input (a whitened
causal neighbourhood, or a spatial LSTM's hidden state) and y the pixel:

    log p(c, s | x) = eta_cs - 1/2 e^alpha_cs sum_n beta_cn^2 (b_n . x)^2
                      + e^alpha_cs (l_c . x)  - log Z(x)                       (gate)
    y | c, s, x     ~ N(A_c x + m_c,  (e^alpha_cs L_c L_c^T)^-1)               (expert)

Variables (names of the reference toolkit, except `feature_weights`, which it
calls `weights`) and their symbols in the paper:

    priors            [C, S]              eta_cs
    scales            [C, S]              alpha_cs (log precision scales)
    feature_weights   [C, F]              beta_cn
    features          [dim_in, F]         b_n (columns)
    predictors        [C, dim_out, dim_in] a_c (A_c for multivariate pixels)
    cholesky_factors  [C, dim_out, dim_out] L_c, lower triangular; the expert's
                                          precision is e^alpha_cs L_c L_c^T
                                          (L_c = 1 recovers eq. 5's variance e^-alpha_cs)
    linear_features   [C, dim_in]         l_c (not in the paper; zero recovers eq. 4)
    means             [C, dim_out]        m_c (not in the paper; zero recovers eq. 5)

Numerics: scales are clipped to +-`MAX_LOG_SCALE` before exponentiation, so
e^alpha never overflows in float32 whatever the variable holds, and the mixture
is evaluated with log-sum-exp (see `MCGSMDistribution`).
"""
import collections

import keras
import numpy as np
import tensorflow as tf

from ride_tf.nn.distributions import MCGSMDistribution
from ride_tf.checks import check_integer

__all__ = ["MCGSM", "MAX_LOG_SCALE", "IntensityMixture"]

MAX_LOG_SCALE = 40.0

IntensityMixture = collections.namedtuple("IntensityMixture", ["log_weights", "means", "regressions", "stddevs"])
IntensityMixture.__doc__ = """A pixel's MCGSM as a mixture of K Gaussians in intensities y (`MCGSM.intensity_mixture`).

log_weights [M, K] (normalised), means [M, K, C]; regressions [K, C, C]
(row c: the coefficients of channels < c in channel c's conditional mean,
zero elsewhere) and stddevs [K, C] (channel c's conditional standard deviation)."""


def _conditionals(covariance, num_channels):
    """Regression coefficients [K, C, C] and conditional standard deviations [K, C] of each channel on the
    earlier ones, from the experts' covariances [K, C, C]."""
    rows, stds = [], []
    num = tf.shape(covariance)[0]
    for c in range(num_channels):
        if c == 0:
            coefficients = tf.zeros([num, 0], covariance.dtype)
            variance = covariance[:, 0, 0]
        else:
            s_pp = covariance[:, :c, :c]
            s_pc = covariance[:, :c, c]
            coefficients = tf.linalg.solve(s_pp, s_pc[..., None])[..., 0]                   # [K, c]
            variance = covariance[:, c, c] - tf.reduce_sum(coefficients * s_pc, -1)
        rows.append(tf.pad(coefficients, [[0, 0], [0, num_channels - c]]))
        stds.append(tf.sqrt(variance))
    return tf.stack(rows, axis=1), tf.stack(stds, axis=1)



@keras.saving.register_keras_serializable(package="ride_tf")
class MCGSM(keras.layers.Layer):
    """Factorized MCGSM: maps inputs [..., dim_in] to a distribution over y [..., dim_out].

    Args:
      num_components: C, the number of components (precision structures).
      num_scales: S, the number of scales per component.
      num_features: F, the number of shared quadratic features b_n; defaults to
        dim_in.
      dim_out: the size of the pixel (1 for grayscale, 3 for a joint colour pixel).

    Calling the layer on x of shape [..., dim_in] returns an `MCGSMDistribution`
    with batch shape [...] and event shape [dim_out] (a mixture over the C * S
    pairs, in (c, s) row-major order).
    """

    def __init__(self, num_components=8, num_scales=4, num_features=None, dim_out=1, **kwargs):
        super().__init__(**kwargs)
        for name, value in [("num_components", num_components), ("num_scales", num_scales),
                            ("dim_out", dim_out), ("num_features", num_features)]:
            if value is None and name == "num_features":
                continue
            check_integer("MCGSM", name, value, 1)
        self.num_components = int(num_components)
        self.num_scales = int(num_scales)
        self.num_features = None if num_features is None else int(num_features)
        self.dim_out = int(dim_out)
        self.dim_in = None

    def build(self, input_shape):
        dim_in = input_shape[-1]
        if dim_in is None:
            raise ValueError("MCGSM: the last input dimension (dim_in) must be known to build the layer.")
        self.dim_in = int(dim_in)
        if self.num_features is None:
            self.num_features = self.dim_in
        C, S, F, D, d = self.num_components, self.num_scales, self.num_features, self.dim_in, self.dim_out
        scale_offsets = np.linspace(-1.0, 1.0, S) if S > 1 else np.zeros(1)

        def scales_init(shape, dtype=None):
            return keras.ops.cast(scale_offsets[None, :] + np.random.uniform(-0.1, 0.1, size=shape), dtype)

        def cholesky_init(shape, dtype=None):
            return keras.ops.cast(np.tile(np.eye(d)[None], (C, 1, 1)), dtype)

        small = keras.initializers.RandomNormal(stddev=0.01)
        self.priors = self.add_weight(name="priors", shape=(C, S),
                                      initializer=keras.initializers.RandomUniform(-0.1, 0.1))
        self.scales = self.add_weight(name="scales", shape=(C, S), initializer=scales_init)
        self.feature_weights = self.add_weight(name="feature_weights", shape=(C, F),
                                               initializer=keras.initializers.RandomUniform(0.01, 0.02))
        self.features = self.add_weight(name="features", shape=(D, F),
                                        initializer=keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(D)))
        self.predictors = self.add_weight(name="predictors", shape=(C, d, D), initializer=small)
        self.cholesky_factors = self.add_weight(name="cholesky_factors", shape=(C, d, d),
                                                initializer=cholesky_init)
        self.linear_features = self.add_weight(name="linear_features", shape=(C, D), initializer=small)
        self.means = self.add_weight(name="means", shape=(C, d), initializer="zeros")
        super().build(input_shape)

    def set_standard_normal(self):
        """Make every expert N(0, I), so that p(y | x) = N(y; 0, I) for every input.

        On whitened pixels (`ride_tf.whitening`) the model is then exactly the
        Gaussian linear predictor of its neighbourhood.
        """
        for name in ["priors", "scales", "feature_weights", "predictors", "linear_features", "means"]:
            variable = getattr(self, name)
            variable.assign(np.zeros(variable.shape))
        self.cholesky_factors.assign(np.tile(np.eye(self.dim_out)[None], (self.num_components, 1, 1)))

    @property
    def num_experts(self):
        return self.num_components * self.num_scales

    def distribution_parameters(self, x):
        """(gate_logits [..., C*S], loc [..., C*S, dim_out], precision_cholesky [C*S, dim_out, dim_out])."""
        C, S, d = self.num_components, self.num_scales, self.dim_out
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        batch_shape = tf.shape(x)[:-1]
        flat = tf.reshape(x, [-1, self.dim_in])                                    # [M, D]
        precision_scales = tf.exp(tf.clip_by_value(self.scales, -MAX_LOG_SCALE, MAX_LOG_SCALE))
        responses = tf.matmul(flat, self.features)                                 # [M, F]
        quadratic = tf.matmul(tf.square(responses), tf.square(self.feature_weights), transpose_b=True)
        linear = tf.matmul(flat, self.linear_features, transpose_b=True)           # [M, C]
        logits = (self.priors + precision_scales * (linear - 0.5 * quadratic)[:, :, None])  # [M, C, S]
        loc = tf.reshape(tf.matmul(flat, tf.reshape(self.predictors, [C * d, self.dim_in]),
                                   transpose_b=True), [-1, C, d]) + self.means      # [M, C, d]
        loc = tf.broadcast_to(loc[:, :, None, :], tf.stack([tf.shape(flat)[0], C, S, d]))
        cholesky = tf.linalg.band_part(self.cholesky_factors, -1, 0)
        precision_cholesky = cholesky[:, None] * tf.sqrt(precision_scales)[:, :, None, None]
        return (tf.reshape(logits, tf.concat([batch_shape, [C * S]], 0)),
                tf.reshape(loc, tf.concat([batch_shape, [C * S, d]], 0)),
                tf.reshape(precision_cholesky, [C * S, d, d]))

    def call(self, x):
        gate_logits, loc, precision_cholesky = self.distribution_parameters(x)
        return MCGSMDistribution(gate_logits, loc, precision_cholesky)

    def log_prob(self, x, y):
        """log p(y | x) in nats: x [..., dim_in], y [..., dim_out] -> [...].

        y must have exactly the shape x.shape[:-1] + [dim_out] (the
        distribution's batch and event shape): a y of another shape, e.g. [M]
        instead of [M, 1], is refused (ValueError; an assert op when the
        shapes are only known at run time) instead of being broadcast.
        """
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        y = tf.convert_to_tensor(y, dtype=self.compute_dtype)
        expected = x.shape[:-1].concatenate([self.dim_out])
        if x.shape.rank is not None and y.shape.rank is not None and not y.shape.is_compatible_with(expected):
            raise ValueError(f"MCGSM.log_prob: y has shape {y.shape} but x of shape {x.shape} needs y of shape "
                             f"{expected} (batch shape + [dim_out={self.dim_out}]).")
        if not (y.shape.is_fully_defined() and x.shape.is_fully_defined()):
            check = tf.debugging.assert_equal(
                tf.shape(y), tf.concat([tf.shape(x)[:-1], [self.dim_out]], 0),
                message=f"MCGSM.log_prob: y must have shape x.shape[:-1] + [{self.dim_out}]")
            with tf.control_dependencies([check]):
                y = tf.identity(y)
        return self(x).log_prob(y)

    # ------------------------------------------------- copying and converting
    def transplant(self, other):
        """Copy a fitted MCGSM `other` that reads the last `other.dim_in` of this MCGSM's inputs.

        This MCGSM reads [h, u] and `other` reads u alone (e.g. RIDE's MCGSM
        and its fitted MCGSM baseline): the rows of the gate features, linear
        features and predictors that act on u get `other`'s values and the
        rows that act on h get zeros; priors, scales, feature weights,
        Cholesky factors and means are copied.  This MCGSM then ignores h and
        gives `other`'s distribution (to float round-off).  Returns self.
        """
        for name in ("num_components", "num_scales", "num_features", "dim_out"):
            if getattr(self, name) != getattr(other, name):
                raise ValueError(f"MCGSM.transplant: {name} is {getattr(self, name)} here but "
                                 f"{getattr(other, name)} in the MCGSM copied.")
        if other.dim_in > self.dim_in:
            raise ValueError(f"MCGSM.transplant: the MCGSM copied reads {other.dim_in} inputs, more than "
                             f"this one's {self.dim_in}.")
        for name in ("priors", "scales", "feature_weights", "cholesky_factors", "means"):
            getattr(self, name).assign(getattr(other, name).numpy())
        offset = self.dim_in - other.dim_in          # the rows of h come first: inputs [h, u]
        for name, axis in (("features", 0), ("predictors", 2), ("linear_features", 1)):
            values = np.zeros(getattr(self, name).shape, np.float32)
            index = [slice(None)] * values.ndim
            index[axis] = slice(offset, None)
            values[tuple(index)] = getattr(other, name).numpy()
            getattr(self, name).assign(values)
        return self

    def intensity_constants(self, output_unwhitening, dtype=tf.float64, order=None):
        """What the intensity mixtures of all pixels share: (regressions [K, C, C], stddevs [K, C]).

        With y^ = W (y - m(x)) (`ride_tf.nn.whitening`, W^-1 = `output_unwhitening`
        [C, C]), expert k is Gaussian in y with covariance
        Sigma_k = W^-1 Lambda_k^-1 W^-T (Lambda_k = P_k P_k^T its precision): the
        same for every pixel.  Its channel c given the earlier channels has
        the regression coefficients and standard deviation returned here.
        `order` (a permutation of the channels, default the identity) is the
        order in which the channels are taken: the c-th entry is channel
        order[c].  Computed in float64, returned in `dtype`.
        """
        f64 = tf.float64
        w_inv = tf.cast(output_unwhitening, f64)
        if order is not None:
            w_inv = tf.gather(w_inv, list(order), axis=0)      # rows of Sigma in the coding order
        _, _, precision_cholesky = self.distribution_parameters(tf.zeros([1, self.dim_in], self.compute_dtype))
        chol = tf.linalg.band_part(tf.cast(precision_cholesky, f64), -1, 0)                 # [K, C, C]
        eye = tf.eye(self.dim_out, dtype=f64)
        chol_inv = tf.linalg.triangular_solve(chol, tf.broadcast_to(eye, tf.shape(chol)), lower=True)
        a = tf.matmul(w_inv, chol_inv, transpose_b=True)                                     # W^-1 P^-T
        covariance = tf.matmul(a, a, transpose_b=True)                                       # [K, C, C]
        return tuple(tf.cast(t, dtype) for t in _conditionals(covariance, self.dim_out))

    def intensity_mixture(self, x, prediction, output_unwhitening, constants=None, dtype=tf.float64, order=None):
        """Each pixel's distribution of intensities y as a mixture of Gaussians, `IntensityMixture` in `dtype`.

        x: [M, dim_in] this MCGSM's inputs; prediction: m(x) [M, C], the
        whitening's linear prediction of y; output_unwhitening: W^-1 [C, C].
        Expert k has mean m(x) + W^-1 loc_k(x) and the covariance of
        `intensity_constants` (pass them as `constants` to compute them once).
        With `order`, channel c of the mixture is channel order[c] of y.
        """
        regressions, stddevs = (self.intensity_constants(output_unwhitening, dtype, order) if constants is None
                                else constants)
        w_inv = tf.cast(output_unwhitening, dtype)
        gate_logits, loc, _ = self.distribution_parameters(x)
        prediction = tf.cast(prediction, dtype)
        if self.dim_out == 1:
            means = prediction[:, None, :] + w_inv[0, 0] * tf.cast(loc, dtype)                  # [M, K, 1]
        else:
            means = prediction[:, None, :] + tf.linalg.matvec(w_inv, tf.cast(loc, dtype))     # [M, K, C]
        log_weights = tf.nn.log_softmax(tf.cast(gate_logits, dtype), axis=-1)
        if order is not None:
            means = tf.gather(means, list(order), axis=-1)
        return IntensityMixture(log_weights, means, regressions, stddevs)

    def get_config(self):
        config = super().get_config()
        config.update(num_components=self.num_components, num_scales=self.num_scales,
                      num_features=self.num_features, dim_out=self.dim_out)
        return config
