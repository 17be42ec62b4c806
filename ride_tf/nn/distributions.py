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
      validate_args: as TFP's `MixtureSameFamily`: the shapes must agree (the
        number of experts K of the gate, the means and the factors; the event
        size d of the means and the factors; batch shapes that broadcast).
        Where the shapes are known when the distribution is built, a mismatch
        is a ValueError there, with or without validate_args; where they are
        not (inside a `tf.function` with unknown dimensions), validate_args
        adds assert ops, which raise InvalidArgumentError when the graph runs.
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

    def _parameter_control_dependencies(self, is_init):
        """The shape checks of `validate_args` (see the class docstring); the parameters are tensors fixed at
        construction, so they are checked there once (`is_init`) and TFP attaches those checks to every method."""
        if not is_init:
            return []
        logits, loc, factors = self._gate_logits, self._loc, self._precision_cholesky
        assertions = []
        for name, tensor, rank in (("gate_logits", logits, 1), ("loc", loc, 2), ("precision_cholesky", factors, 3)):
            if tensor.shape.rank is not None and tensor.shape.rank < rank:
                raise ValueError(f"MCGSMDistribution: {name} must have rank >= {rank}, got shape {tensor.shape}.")
            if tensor.shape.rank is None and self.validate_args:
                assertions.append(tf.debugging.assert_rank_at_least(
                    tensor, rank, message=f"MCGSMDistribution: {name} must have rank >= {rank}"))
        agreeing = [("the number of experts", (("gate_logits", logits, -1), ("loc", loc, -2),
                                                ("precision_cholesky", factors, -3))),
                    ("the event size", (("loc", loc, -1), ("precision_cholesky", factors, -1),
                                        ("precision_cholesky", factors, -2)))]
        for what, dims in agreeing:
            first_name, first, first_axis = dims[0]
            for name, tensor, axis in dims[1:]:
                a, b = _static_dim(first, first_axis), _static_dim(tensor, axis)
                message = (f"MCGSMDistribution: {what} differs between {first_name} (axis {first_axis}) and "
                           f"{name} (axis {axis})")
                if a is not None and b is not None:
                    if a != b:
                        raise ValueError(f"{message}: {a} != {b}.")
                elif self.validate_args:
                    assertions.append(tf.debugging.assert_equal(tf.shape(first)[first_axis], tf.shape(tensor)[axis],
                                                                message=message))
        batches = (("gate_logits", logits, 1), ("loc", loc, 2), ("precision_cholesky", factors, 3))
        for k, (name_a, a, event_a) in enumerate(batches):
            for name_b, b, event_b in batches[k + 1:]:
                message = f"MCGSMDistribution: the batch shapes of {name_a} and {name_b} do not broadcast"
                shape_a, shape_b = _batch_shape(a, event_a), _batch_shape(b, event_b)
                try:
                    tf.broadcast_static_shape(shape_a, shape_b)
                except ValueError:
                    raise ValueError(f"{message}: {shape_a} and {shape_b}.") from None
                if self.validate_args and not (shape_a.is_fully_defined() and shape_b.is_fully_defined()):
                    assertions.append(tf.debugging.assert_equal(
                        _broadcastable(tf.shape(a)[:-event_a], tf.shape(b)[:-event_b]), True, message=message))
        return assertions

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
        d = tf.cast(tf.shape(self._loc)[-1] if self._event_size() is None else self._event_size(), self.dtype)
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


def _static_dim(tensor, axis):
    """The static size of tensor's axis (negative: from the end), or None where it is unknown."""
    rank = tensor.shape.rank
    if rank is None or rank < -axis:
        return None
    return tf.compat.dimension_value(tensor.shape[axis])


def _batch_shape(tensor, event_ndims):
    """The static batch shape of a parameter with event_ndims trailing event dimensions (unknown rank: unknown)."""
    if tensor.shape.rank is None:
        return tf.TensorShape(None)
    return tensor.shape[:max(0, tensor.shape.rank - event_ndims)]


def _broadcastable(shape_a, shape_b):
    """Whether two shapes (int32 vectors) broadcast: at every aligned axis equal, or one of them 1 (a bool tensor)."""
    rank = tf.maximum(tf.size(shape_a), tf.size(shape_b))
    a = tf.concat([tf.ones([rank - tf.size(shape_a)], shape_a.dtype), shape_a], 0)
    b = tf.concat([tf.ones([rank - tf.size(shape_b)], shape_b.dtype), shape_b], 0)
    return tf.reduce_all((a == b) | (a == 1) | (b == 1))


def _gather_expert(params, k):
    """params B + [K, ...], k [n] + B (integer) -> [n] + B + [...]."""
    n = tf.shape(k)[0]
    tiled = tf.broadcast_to(params[tf.newaxis], tf.concat([[n], tf.shape(params)], 0))
    return tf.gather(tiled, k, axis=len(k.shape), batch_dims=len(k.shape))
