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
import keras
import numpy as np
import tensorflow as tf

from ride_tf.distributions import MCGSMDistribution
from ride_tf.preprocessing import check_integer

__all__ = ["MCGSM", "MAX_LOG_SCALE"]

MAX_LOG_SCALE = 40.0




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

    def get_config(self):
        config = super().get_config()
        config.update(num_components=self.num_components, num_scales=self.num_scales,
                      num_features=self.num_features, dim_out=self.dim_out)
        return config
