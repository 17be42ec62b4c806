"""The MCGSM's conditional distribution of one pixel, as a TFP distribution.

Given the inputs of every pixel, a (factorized) mixture of conditional Gaussian
scale mixtures is a mixture over the K = C * S pairs (component c, scale s):

    p(y | x) = sum_k  pi_k(x)  N(y; mu_k(x), Lambda_k^-1),      Lambda_k = P_k P_k^T

with gate probabilities pi_k = softmax(gate_logits)_k, expert means mu_k and a
lower-triangular factor P_k of each expert's *precision* matrix.  This module
knows nothing about where these parameters come from (see `ride_tf.mcgsm`);
it only turns them into `log_prob`, `sample`, `cdf` and `mean`, in a
numerically stable way (log-sum-exp over the mixture, triangular factors instead
of inverses).

Shapes, with batch shape B and event shape [d]:
    gate_logits:          B + [K]
    loc:                  B + [K, d]
    precision_cholesky:   [K, d, d] or B + [K, d, d] (lower triangular)
"""
import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = ["MCGSMDistribution"]


class MCGSMDistribution(tfd.Distribution):
    """Mixture of Gaussian experts parametrised by precision Cholesky factors.

    A MixtureSameFamily-style distribution: `mixture_distribution` is the
    Categorical gate over the K experts, `components_distribution` the batch of
    K multivariate normals.  `log_prob`, `sample`, `mean` work for any event
    size d; `cdf`/`log_cdf` for d = 1.

    Args:
      gate_logits: float Tensor B + [K], unnormalised log gate probabilities.
      loc: float Tensor B + [K, d], the experts' means.
      precision_cholesky: float Tensor [..., K, d, d]; P_k with precision
        Lambda_k = P_k P_k^T.  Only the lower triangle is read; the signs of its
        diagonal do not matter (|det P_k| enters the density).
    """

    def __init__(self, gate_logits, loc, precision_cholesky, validate_args=False,
                 allow_nan_stats=True, name="MCGSMDistribution"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = tf.as_dtype(loc.dtype) if hasattr(loc, "dtype") else tf.float32
            self._gate_logits = tf.convert_to_tensor(gate_logits, dtype=dtype, name="gate_logits")
            self._loc = tf.convert_to_tensor(loc, dtype=dtype, name="loc")
            self._precision_cholesky = tf.linalg.band_part(
                tf.convert_to_tensor(precision_cholesky, dtype=dtype, name="precision_cholesky"), -1, 0)
            super().__init__(dtype=dtype, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                             validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                             parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            gate_logits=tfp.util.ParameterProperties(event_ndims=1),
            loc=tfp.util.ParameterProperties(event_ndims=2),
            precision_cholesky=tfp.util.ParameterProperties(event_ndims=3),
        )

    @property
    def gate_logits(self):
        return self._gate_logits

    @property
    def loc(self):
        return self._loc

    @property
    def precision_cholesky(self):
        return self._precision_cholesky

    @property
    def num_experts(self):
        return tf.compat.dimension_value(self._loc.shape[-2])

    @property
    def mixture_distribution(self):
        """Categorical distribution over the K experts (the gate, paper eq. 4)."""
        return tfd.Categorical(logits=self._gate_logits)

    @property
    def components_distribution(self):
        """The K Gaussian experts (paper eq. 5) as a batch of multivariate normals."""
        scale_tril = tf.linalg.cholesky(tf.linalg.cholesky_solve(
            self._precision_cholesky, tf.eye(self._event_size(), dtype=self.dtype)))
        return tfd.MultivariateNormalTriL(loc=self._loc, scale_tril=scale_tril)

    def _event_size(self):
        return tf.compat.dimension_value(self._loc.shape[-1])

    def _event_shape(self):
        return tf.TensorShape([self._event_size()])

    def _event_shape_tensor(self):
        return tf.shape(self._loc)[-1:]

    def expert_log_prob(self, y):
        """log N(y; mu_k, Lambda_k^-1) for every expert: y B + [d] -> B + [K]."""
        y = tf.convert_to_tensor(y, dtype=self.dtype)
        d = self._event_size()
        if y.shape.rank == 0 or (y.shape.rank is not None and None not in (y.shape[-1], d) and y.shape[-1] != d):
            # e.g. y [M] for event size 1: broadcasting it against the experts would give a wrong number.
            raise ValueError(f"MCGSMDistribution.log_prob: y must end in the event size {d} "
                             f"(shape sample + batch + [{d}]), got shape {y.shape}.")
        diff = y[..., tf.newaxis, :] - self._loc                              # B + [K, d]
        # z = P^T (y - mu); the quadratic form is |z|^2.
        z = tf.reduce_sum(diff[..., :, tf.newaxis] * self._precision_cholesky, axis=-2)
        log_det = tf.reduce_sum(tf.math.log(tf.abs(
            tf.linalg.diag_part(self._precision_cholesky))), axis=-1)     # [.., K]
        d = tf.cast(self._event_size(), self.dtype)
        return log_det - 0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * d * math.log(2 * math.pi)

    def posterior_logits(self, y):
        """Unnormalised log p(k | x, y): what the experts' responsibilities are."""
        return tf.nn.log_softmax(self._gate_logits, axis=-1) + self.expert_log_prob(y)

    def _log_prob(self, y):
        return tf.reduce_logsumexp(self.posterior_logits(y), axis=-1)

    def _log_cdf(self, y):
        self._require_univariate("cdf")
        y = tf.convert_to_tensor(y, dtype=self.dtype)
        prec = tf.abs(self._precision_cholesky[..., 0, 0])                   # [.., K]
        standardized = (y - self._loc[..., 0]) * prec                        # y B + [1] against B + [K]
        log_ndtr = tfd.Normal(tf.zeros([], self.dtype), tf.ones([], self.dtype)).log_cdf(standardized)
        return tf.reduce_logsumexp(tf.nn.log_softmax(self._gate_logits, axis=-1) + log_ndtr, axis=-1)

    def _cdf(self, y):
        return tf.exp(self._log_cdf(y))

    def _mean(self):
        weights = tf.nn.softmax(self._gate_logits, axis=-1)
        return tf.reduce_sum(weights[..., tf.newaxis] * self._loc, axis=-2)

    def _sample_n(self, n, seed=None):
        gate_seed, noise_seed = tfp.random.split_seed(seed, n=2, salt="MCGSMDistribution")
        batch_shape = self.batch_shape_tensor()
        d = self._event_size()
        logits = tf.broadcast_to(self._gate_logits,
                                 tf.concat([batch_shape, tf.shape(self._gate_logits)[-1:]], 0))
        k = tfd.Categorical(logits=logits).sample(n, seed=gate_seed)         # [n] + B
        loc = tf.broadcast_to(self._loc, tf.concat([batch_shape, tf.shape(self._loc)[-2:]], 0))
        chosen_loc = _gather_expert(loc, k)                                   # [n] + B + [d]
        # y = mu_k + P_k^-T eps has covariance P_k^-T P_k^-1 = Lambda_k^-1.
        eps = tf.random.stateless_normal(tf.concat([[n], batch_shape, [d]], 0),
                                         seed=noise_seed, dtype=self.dtype)
        prec = tf.broadcast_to(self._precision_cholesky, tf.concat(
            [batch_shape, tf.shape(self._precision_cholesky)[-3:]], 0))
        chosen_prec = _gather_expert(prec, k)                                 # [n] + B + [d, d]
        offset = tf.linalg.triangular_solve(chosen_prec, eps[..., tf.newaxis],
                                            lower=True, adjoint=True)[..., 0]
        return chosen_loc + offset

    def sample_from_noise(self, uniform, normal):
        """A sample computed from given random draws (a deterministic map; for samplers and tests).

        uniform: B, in [0, 1), picks the expert k by inverting the gate's CDF
        (experts in order, k = number of cumulative probabilities <= uniform);
        normal: B + [d], standard normal, gives y = mu_k + P_k^-T normal.
        Returns B + [d].  With uniform ~ U[0, 1) and normal ~ N(0, I) this is a
        sample of the mixture.
        """
        uniform = tf.convert_to_tensor(uniform, self.dtype)
        normal = tf.convert_to_tensor(normal, self.dtype)
        cdf = tf.math.cumsum(tf.nn.softmax(self._gate_logits, axis=-1), axis=-1)
        num = self.num_experts
        k = tf.minimum(tf.reduce_sum(tf.cast(cdf <= uniform[..., tf.newaxis], tf.int32), axis=-1), num - 1)
        chosen_loc = tf.gather(self._loc, k, axis=-2, batch_dims=len(k.shape))            # B + [d]
        prec = self._precision_cholesky
        if self._event_size() == 1:
            scale = tf.abs(tf.gather(tf.reshape(prec, [-1]), k) if len(prec.shape) == 3 else
                           tf.gather(prec[..., 0, 0], k, axis=-1, batch_dims=len(k.shape)))
            return chosen_loc + normal / scale[..., tf.newaxis]
        if len(prec.shape) == 3:
            chosen_prec = tf.gather(prec, k)                                                 # B + [d, d]
        else:
            chosen_prec = tf.gather(prec, k, axis=-3, batch_dims=len(k.shape))
        offset = tf.linalg.triangular_solve(chosen_prec, normal[..., tf.newaxis], lower=True, adjoint=True)
        return chosen_loc + offset[..., 0]

    def _require_univariate(self, what):
        if self._event_size() != 1:
            raise NotImplementedError(f"MCGSMDistribution.{what} is defined for univariate pixels "
                                      f"(dim_out=1); this one has event size {self._event_size()}.")

    def _default_event_space_bijector(self):
        return tfp.bijectors.Identity()


def _gather_expert(params, k):
    """params B + [K, ...], k [n] + B (integer) -> [n] + B + [...]."""
    n = tf.shape(k)[0]
    tiled = tf.broadcast_to(params[tf.newaxis], tf.concat([[n], tf.shape(params)], 0))
    return tf.gather(tiled, k, axis=len(k.shape), batch_dims=len(k.shape))
