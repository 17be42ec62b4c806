"""Tests of the MCGSM Keras layer (`ride_tf.nn.mcgsm`) and its distribution (`ride_tf.nn.distributions`).

The reference for everything numeric is an independent NumPy implementation written
below, directly from the formulas of the `ride_tf.nn.mcgsm` module docstring:

    log p(c, s | x) = eta_cs - 1/2 e^alpha_cs sum_n beta_cn^2 (b_n . x)^2 + e^alpha_cs (l_c . x) - log Z(x)
    y | c, s, x     ~ N(A_c x + m_c, (e^alpha_cs L_c L_c^T)^-1),  L_c = lower triangle of cholesky_factors[c]

with the C * S experts in (c, s) row-major order.
"""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from ride_tf.nn.distributions import MCGSMDistribution
from ride_tf.nn.mcgsm import MAX_LOG_SCALE, MCGSM

tfd = tfp.distributions

VARIABLE_NAMES = ["priors", "scales", "feature_weights", "features", "predictors",
                  "cholesky_factors", "linear_features", "means"]


# --------------------------------------------------------------------------- helpers
def make_layer(C, S, dim_in, dim_out, F=None, dtype="float32", seed=0, build=True):
    """An MCGSM whose variables hold random values with a much larger spread than the initializer.

    The cholesky factors are non-identity lower-triangular matrices, component 1 has a negative
    diagonal entry (only |det| may enter the density) and the *upper* triangle holds large garbage
    that must be ignored.
    """
    layer = MCGSM(C, S, num_features=F, dim_out=dim_out, dtype=dtype)
    layer.build((None, dim_in))
    rng = np.random.default_rng(seed)
    F = layer.num_features
    d = dim_out
    chol = np.tril(rng.normal(0.0, 0.4, (C, d, d)), -1)
    chol += np.eye(d)[None] * rng.uniform(0.6, 1.4, (C, d, 1))
    if C > 1:
        chol[1, 0, 0] *= -1.0
    chol += np.triu(rng.normal(0.0, 3.0, (C, d, d)), 1)  # garbage above the diagonal
    values = dict(
        priors=rng.normal(0.0, 1.0, (C, S)),
        scales=rng.uniform(-1.0, 1.0, (C, S)),
        feature_weights=rng.normal(0.0, 1.0, (C, F)),
        features=rng.normal(0.0, 1.0 / np.sqrt(dim_in), (dim_in, F)),
        predictors=rng.normal(0.0, 0.5, (C, d, dim_in)),
        cholesky_factors=chol,
        linear_features=rng.normal(0.0, 0.5, (C, dim_in)),
        means=rng.normal(0.0, 1.0, (C, d)),
    )
    for name, value in values.items():
        getattr(layer, name).assign(value)
    return layer


def params_of(layer):
    """The layer's variables as float64 NumPy arrays."""
    return {name: np.asarray(getattr(layer, name).numpy(), dtype=np.float64) for name in VARIABLE_NAMES}


def np_logsumexp(a, axis=-1):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def reference_mixture(p, x):
    """NumPy: (log gate [M, K], expert means [M, K, d], expert precisions [K, d, d]) for x [M, D]."""
    x = np.asarray(x, dtype=np.float64)
    C, S = p["priors"].shape
    a = np.exp(p["scales"])                                              # [C, S]
    responses = x @ p["features"]                                        # [M, F]
    quad = (responses ** 2) @ (p["feature_weights"] ** 2).T              # [M, C]
    lin = x @ p["linear_features"].T                                     # [M, C]
    logits = p["priors"][None] - 0.5 * a[None] * quad[:, :, None] + a[None] * lin[:, :, None]
    logits = logits.reshape(len(x), C * S)
    log_gate = logits - np_logsumexp(logits)[:, None]
    mu_c = np.einsum("cod,md->mco", p["predictors"], x) + p["means"][None]   # [M, C, d]
    mu = np.repeat(mu_c, S, axis=1)                                      # [M, C*S, d], (c, s) row-major
    L = np.tril(p["cholesky_factors"])
    lam = np.stack([a[c, s] * L[c] @ L[c].T for c in range(C) for s in range(S)])
    return log_gate, mu, lam


def reference_log_prob(p, x, y):
    log_gate, mu, lam = reference_mixture(p, x)
    y = np.asarray(y, dtype=np.float64)
    d = mu.shape[-1]
    diff = y[:, None, :] - mu                                            # [M, K, d]
    quad = np.einsum("mki,kij,mkj->mk", diff, lam, diff)
    logdet = np.linalg.slogdet(lam)[1]                                   # [K]
    log_normal = 0.5 * logdet[None] - 0.5 * d * np.log(2 * np.pi) - 0.5 * quad
    return np_logsumexp(log_gate + log_normal)


def reference_moments(p, x):
    """Mixture mean [M, d] and covariance [M, d, d] for x [M, D]."""
    log_gate, mu, lam = reference_mixture(p, x)
    pi = np.exp(log_gate)
    sigma = np.linalg.inv(lam)                                           # [K, d, d]
    mean = np.einsum("mk,mki->mi", pi, mu)
    second = np.einsum("mk,kij->mij", pi, sigma) + np.einsum("mk,mki,mkj->mij", pi, mu, mu)
    return mean, second - np.einsum("mi,mj->mij", mean, mean)


def reference_cdf(p, x, y):
    """dim_out = 1: sum_k pi_k Phi((y - mu_k) sqrt(lambda_k)), x [M, D], y [M]."""
    log_gate, mu, lam = reference_mixture(p, x)
    z = (np.asarray(y, np.float64)[:, None] - mu[..., 0]) * np.sqrt(lam[:, 0, 0])[None]
    phi = 0.5 * (1.0 + np.vectorize(math.erf)(z / np.sqrt(2.0)))
    return np.sum(np.exp(log_gate) * phi, axis=-1)


def ks_statistic(u):
    """Kolmogorov-Smirnov distance between the empirical distribution of u and U(0, 1)."""
    u = np.sort(np.asarray(u, dtype=np.float64).ravel())
    n = len(u)
    i = np.arange(1, n + 1)
    return max(np.max(i / n - u), np.max(u - (i - 1) / n))


# --------------------------------------------------------------------------- variables and shapes
def test_variables_have_the_documented_names_and_shapes():
    C, S, F, D, d = 3, 4, 6, 5, 2
    layer = MCGSM(num_components=C, num_scales=S, num_features=F, dim_out=d)
    layer.build((None, D))
    shapes = {v.name: tuple(v.shape) for v in layer.weights}
    assert shapes == {
        "priors": (C, S), "scales": (C, S), "feature_weights": (C, F), "features": (D, F),
        "predictors": (C, d, D), "cholesky_factors": (C, d, d), "linear_features": (C, D),
        "means": (C, d),
    }
    assert len(layer.trainable_weights) == 8
    assert layer.num_experts == C * S == 12
    assert layer.dim_in == D


def test_num_features_defaults_to_dim_in():
    layer = MCGSM(num_components=2, num_scales=3, num_features=None)
    layer.build((None, 7))
    assert layer.num_features == 7
    assert tuple(layer.features.shape) == (7, 7)
    assert tuple(layer.feature_weights.shape) == (2, 7)
    assert layer.get_config()["num_features"] == 7


@pytest.mark.parametrize("leading", [(), (7,), (2, 3), (2, 1, 4)])
@pytest.mark.parametrize("dim_out", [1, 3])
def test_call_gives_batch_shape_of_leading_dims_and_event_shape_dim_out(leading, dim_out):
    C, S, D = 3, 2, 5
    layer = make_layer(C, S, D, dim_out)
    x = np.random.default_rng(1).normal(size=leading + (D,)).astype(np.float32)
    dist = layer(x)
    assert isinstance(dist, MCGSMDistribution)
    assert tuple(dist.batch_shape) == leading
    assert tuple(dist.event_shape) == (dim_out,)
    assert tuple(dist.gate_logits.shape) == leading + (C * S,)
    assert tuple(dist.loc.shape) == leading + (C * S, dim_out)
    y = np.zeros(leading + (dim_out,), np.float32)
    assert tuple(dist.log_prob(y).shape) == leading
    assert tuple(dist.mean().shape) == leading + (dim_out,)
    assert tuple(dist.sample(4, seed=(1, 2)).shape) == (4,) + leading + (dim_out,)
    assert tuple(dist.sample((2, 3), seed=(1, 2)).shape) == (2, 3) + leading + (dim_out,)
    if dim_out == 1:
        assert tuple(dist.cdf(y).shape) == leading
    # The leading dims are really batch dims: log_prob agrees with the flattened call.
    flat = layer(x.reshape(-1, D)).log_prob(y.reshape(-1, dim_out)).numpy()
    np.testing.assert_allclose(dist.log_prob(y).numpy().ravel(), flat, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- normalisation
def test_log_prob_integrates_to_one_dim_out_1():
    C, S, D = 3, 4, 5
    layer = make_layer(C, S, D, 1, F=3, seed=2)
    p = params_of(layer)
    rng = np.random.default_rng(3)
    xs = np.concatenate([rng.normal(size=(3, D)), 3.0 * rng.normal(size=(1, D))])
    for x in xs:
        _, mu, lam = reference_mixture(p, x[None])
        std = 1.0 / np.sqrt(lam[:, 0, 0])
        lo, hi = mu.min() - 12 * std.max(), mu.max() + 12 * std.max()
        grid = np.linspace(lo, hi, 40001)
        density = np.exp(layer(np.tile(x, (len(grid), 1)).astype(np.float32))
                         .log_prob(grid[:, None].astype(np.float32)).numpy().astype(np.float64))
        integral = np.trapezoid(density, grid)
        assert abs(integral - 1.0) < 1e-3, (x, integral)


def test_log_prob_integrates_to_one_dim_out_2():
    C, S, D = 2, 3, 4
    layer = make_layer(C, S, D, 2, F=6, seed=4)
    p = params_of(layer)
    L = np.tril(p["cholesky_factors"])
    assert abs(L[0, 1, 0]) > 0.05 and abs(L[1, 1, 0]) > 0.05  # really non-diagonal factors
    rng = np.random.default_rng(5)
    for x in rng.normal(size=(2, D)):
        _, mu, lam = reference_mixture(p, x[None])
        max_std = np.sqrt(np.linalg.eigvalsh(np.linalg.inv(lam)).max())
        min_std = np.sqrt(np.linalg.eigvalsh(np.linalg.inv(lam)).min())
        lo, hi = mu[0].min(0) - 10 * max_std, mu[0].max(0) + 10 * max_std
        n = int(np.ceil((hi - lo).max() / (min_std / 5)))
        g0, g1 = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
        y = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 2)
        density = np.exp(layer(np.tile(x, (len(y), 1)).astype(np.float32))
                         .log_prob(y.astype(np.float32)).numpy().astype(np.float64)).reshape(n, n)
        integral = np.trapezoid(np.trapezoid(density, g1, axis=1), g0)
        assert abs(integral - 1.0) < 1e-3, (x, integral, n)


# --------------------------------------------------------------------------- reference implementation
@pytest.mark.parametrize("dim_out,F", [(1, 3), (3, 9)])
def test_log_prob_matches_numpy_reference(dim_out, F):
    C, S, D, M = 3, 4, 6, 200
    layer = make_layer(C, S, D, dim_out, F=F, seed=6 + dim_out)
    p = params_of(layer)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(M, D)).astype(np.float32)
    # y both near the predicted means and far from them.
    mean, _ = reference_moments(p, x)
    y = (mean + rng.normal(0.0, 1.0, (M, dim_out)) * rng.choice([0.3, 1.0, 4.0], (M, 1))).astype(np.float32)
    got = layer(x).log_prob(y).numpy()
    want = reference_log_prob(p, x, y)
    assert got.dtype == np.float32
    assert np.std(want) > 1.0  # the comparison spans a range of values
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # layer.log_prob(x, y) is the same thing
    np.testing.assert_allclose(layer.log_prob(x, y).numpy(), got, rtol=0, atol=0)


def test_distribution_parameters_match_numpy_reference():
    C, S, D, d = 3, 2, 5, 2
    layer = make_layer(C, S, D, d, F=4, seed=8)
    p = params_of(layer)
    x = np.random.default_rng(9).normal(size=(10, D)).astype(np.float32)
    log_gate, mu, lam = reference_mixture(p, x)
    dist = layer(x)
    np.testing.assert_allclose(tf.nn.log_softmax(dist.gate_logits).numpy(), log_gate, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dist.loc.numpy(), mu, rtol=1e-5, atol=1e-5)
    P = dist.precision_cholesky.numpy().astype(np.float64)
    np.testing.assert_allclose(np.einsum("kij,klj->kil", P, P), lam, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- sampling and cdf
def test_samples_follow_the_cdf_kolmogorov_smirnov():
    C, S, D, n = 3, 4, 5, 20000
    layer = make_layer(C, S, D, 1, seed=10)
    x = np.random.default_rng(11).normal(size=(1, D)).astype(np.float32)
    dist = layer(x)
    samples = dist.sample(n, seed=(12, 13))                                   # [n, 1, 1]
    assert tuple(samples.shape) == (n, 1, 1)
    u = dist.cdf(samples).numpy().ravel()
    threshold = 1.63 / np.sqrt(n)                                           # 1% critical value
    assert ks_statistic(u) < threshold
    # The test has power: samples shifted by a fifth of the mixture's standard deviation fail it.
    _, cov = reference_moments(params_of(layer), x)
    shifted = dist.cdf(samples + 0.2 * np.sqrt(cov[0, 0, 0])).numpy().ravel()
    assert ks_statistic(shifted) > 3 * threshold


def test_sample_from_noise_follows_the_cdf_and_matches_the_moments_dim_out_3():
    """The deterministic map of the samplers: iid U(0,1) and N(0,I) draws give the mixture."""
    C, S, D, n = 3, 4, 5, 20000
    rng = np.random.default_rng(21)
    layer = make_layer(C, S, D, 1, seed=20)
    x = np.repeat(rng.normal(size=(1, D)).astype(np.float32), n, axis=0)
    dist = layer(x)
    y = dist.sample_from_noise(rng.random(n).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32))
    assert tuple(y.shape) == (n, 1)
    assert ks_statistic(dist.cdf(y).numpy()) < 1.63 / np.sqrt(n)
    # Uniform draws pick the experts by the gate's CDF: u = 0 the first expert, u -> 1 the last one.
    weights = tf.nn.softmax(dist.gate_logits[0]).numpy()
    picks = layer(x[:2]).sample_from_noise(np.float32([0.0, 1.0 - 1e-7]), np.zeros((2, 1), np.float32)).numpy()
    np.testing.assert_allclose(picks[:, 0], dist.loc.numpy()[0, [0, C * S - 1], 0], rtol=1e-5)
    assert weights.min() > 0
    # Three-dimensional pixels: mean and covariance of the draws against the reference moments.
    layer3 = make_layer(C, S, D, 3, seed=22)
    x3 = np.repeat(rng.normal(size=(1, D)).astype(np.float32), n, axis=0)
    draws = layer3(x3).sample_from_noise(rng.random(n).astype(np.float32),
                                         rng.normal(size=(n, 3)).astype(np.float32)).numpy().astype(np.float64)
    mean, cov = reference_moments(params_of(layer3), x3[:1])
    se = np.sqrt(np.diag(cov[0]) / n)
    assert np.all(np.abs(draws.mean(0) - mean[0]) < 4.5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov[0], atol=0.08 * np.abs(cov[0]).max())


def test_sample_moments_match_mixture_moments_dim_out_2():
    C, S, D, n = 3, 2, 4, 40000
    layer = make_layer(C, S, D, 2, seed=14)
    p = params_of(layer)
    x = np.random.default_rng(15).normal(size=(2, D)).astype(np.float32)  # two different batch members
    mean, cov = reference_moments(p, x)
    samples = layer(x).sample(n, seed=(16, 17)).numpy().astype(np.float64)  # [n, 2, 2]
    assert tuple(samples.shape) == (n, 2, 2)
    assert np.abs(mean[0] - mean[1]).max() > 0.5  # the batch members really differ
    for b in range(2):
        ys = samples[:, b]
        se_mean = np.sqrt(np.diag(cov[b]) / n)
        assert np.all(np.abs(ys.mean(0) - mean[b]) < 4.5 * se_mean), (b, ys.mean(0), mean[b])
        centred = ys - ys.mean(0)
        products = centred[:, :, None] * centred[:, None, :]
        se_cov = products.reshape(n, 4).std(0).reshape(2, 2) / np.sqrt(n)
        sample_cov = products.mean(0)
        assert np.all(np.abs(sample_cov - cov[b]) < 4.5 * se_cov), (b, sample_cov, cov[b])
        # Power: the covariance of the wrong expert form (L^T L instead of L L^T) is rejected.
        L = np.tril(p["cholesky_factors"])
        log_gate, mu, _ = reference_mixture(p, x[b:b + 1])
        a = np.exp(p["scales"]).ravel()
        wrong_sigma = np.stack([np.linalg.inv(a[k] * L[k // S].T @ L[k // S]) for k in range(C * S)])
        pi = np.exp(log_gate[0])
        wrong_cov = (np.einsum("k,kij->ij", pi, wrong_sigma) + np.einsum("k,ki,kj->ij", pi, mu[0], mu[0])
                     - np.outer(mean[b], mean[b]))
        assert np.any(np.abs(sample_cov - wrong_cov) > 10 * se_cov)


def test_cdf_matches_reference_is_monotone_has_limits_and_derivative_is_density():
    C, S, D = 3, 4, 5
    layer = make_layer(C, S, D, 1, dtype="float64", seed=18)
    p = params_of(layer)
    x = np.random.default_rng(19).normal(size=(1, D))
    _, mu, lam = reference_mixture(p, x)
    std = 1.0 / np.sqrt(lam[:, 0, 0])
    grid = np.linspace(mu.min() - 8 * std.max(), mu.max() + 8 * std.max(), 2001)
    xs = np.tile(x, (len(grid), 1))
    dist = layer(xs)
    cdf = dist.cdf(grid[:, None]).numpy()
    assert cdf.dtype == np.float64
    np.testing.assert_allclose(cdf, reference_cdf(p, xs, grid), rtol=1e-10, atol=1e-12)
    assert np.all(np.diff(cdf) >= -1e-15)
    assert cdf[0] < 1e-6 and cdf[-1] > 1 - 1e-6 and np.any((cdf > 0.3) & (cdf < 0.7))
    far = layer(np.tile(x, (2, 1))).cdf(np.array([[mu.min() - 60 * std.max()], [mu.max() + 60 * std.max()]]))
    assert far.numpy()[0] < 1e-12 and far.numpy()[1] > 1.0 - 1e-12
    # log_cdf far in the left tail is finite and very negative, not -inf
    log_far = layer(x).log_cdf(np.array([[mu.min() - 60 * std.max()]])).numpy()
    assert np.isfinite(log_far).all() and log_far[0] < -100
    # d/dy cdf = exp(log_prob)
    h = 1e-5
    pts = grid[::40]
    xp = np.tile(x, (len(pts), 1))
    numeric = (layer(xp).cdf((pts + h)[:, None]).numpy() - layer(xp).cdf((pts - h)[:, None]).numpy()) / (2 * h)
    density = np.exp(layer(xp).log_prob(pts[:, None]).numpy())
    assert density.max() > 0.05
    np.testing.assert_allclose(numeric, density, rtol=1e-6, atol=1e-9)


def test_cdf_float32_extremes():
    layer = make_layer(2, 3, 4, 1, seed=20)
    x = np.random.default_rng(21).normal(size=(3, 4)).astype(np.float32)
    dist = layer(x)
    lo = dist.cdf(np.full((3, 1), -1e4, np.float32)).numpy()
    hi = dist.cdf(np.full((3, 1), 1e4, np.float32)).numpy()
    assert np.all(lo < 1e-6) and np.all(lo >= 0.0)
    assert np.all(np.abs(hi - 1.0) < 1e-6)


def test_cdf_of_multivariate_pixels_is_refused():
    dist = make_layer(2, 2, 4, 2)(np.zeros((1, 4), np.float32))
    with pytest.raises(NotImplementedError):
        dist.cdf(np.zeros((1, 2), np.float32))


# --------------------------------------------------------------------------- mean and mixture structure
@pytest.mark.parametrize("dim_out", [1, 3])
def test_mean_is_gate_weighted_mean_of_expert_means(dim_out):
    layer = make_layer(3, 4, 5, dim_out, seed=22)
    p = params_of(layer)
    x = np.random.default_rng(23).normal(size=(50, 5)).astype(np.float32)
    log_gate, mu, _ = reference_mixture(p, x)
    want = np.einsum("mk,mki->mi", np.exp(log_gate), mu)
    assert np.std(want) > 0.3
    np.testing.assert_allclose(layer(x).mean().numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dim_out", [1, 2])
def test_mixture_and_components_are_consistent_with_log_prob(dim_out):
    C, S, D, M = 3, 2, 5, 40
    layer = make_layer(C, S, D, dim_out, seed=24)
    p = params_of(layer)
    rng = np.random.default_rng(25)
    x = rng.normal(size=(M, D)).astype(np.float32)
    y = rng.normal(0, 2, size=(M, dim_out)).astype(np.float32)
    dist = layer(x)
    mixture, components = dist.mixture_distribution, dist.components_distribution
    assert tuple(components.batch_shape) == (M, C * S)
    assert tuple(components.event_shape) == (dim_out,)
    log_gate, mu, lam = reference_mixture(p, x)
    np.testing.assert_allclose(mixture.probs_parameter().numpy(), np.exp(log_gate), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(components.mean().numpy(), mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(components.covariance().numpy(), np.broadcast_to(np.linalg.inv(lam),
                               (M,) + lam.shape), rtol=1e-4, atol=1e-5)
    manual = tf.reduce_logsumexp(tf.nn.log_softmax(mixture.logits, -1)
                                 + components.log_prob(y[:, None, :]), -1).numpy()
    np.testing.assert_allclose(dist.log_prob(y).numpy(), manual, rtol=1e-5, atol=1e-4)
    msf = tfd.MixtureSameFamily(mixture, components).log_prob(y).numpy()
    np.testing.assert_allclose(dist.log_prob(y).numpy(), msf, rtol=1e-5, atol=1e-4)
    # expert_log_prob / posterior_logits are the per-expert terms of the same sum
    np.testing.assert_allclose(dist.expert_log_prob(y).numpy(), components.log_prob(y[:, None, :]).numpy(),
                               rtol=1e-5, atol=1e-4)
    posterior = tf.nn.softmax(dist.posterior_logits(y), -1).numpy()
    np.testing.assert_allclose(posterior.sum(-1), 1.0, atol=1e-5)



def test_validate_args_checks_the_shapes_statically_and_in_graphs():
    """As TFP's MixtureSameFamily: the experts of the gate, the means and the factors, the event size and the
    batch shapes must agree; a ValueError at construction where the shapes are known, and with validate_args an
    InvalidArgumentError when a graph of unknown shapes runs (without it, a gate of 1 expert broadcasts silently)."""
    K, d, n = 3, 2, 4
    logits, loc, factors = tf.zeros([n, K]), tf.zeros([n, K, d]), tf.eye(d, batch_shape=[K])
    y = tf.ones([n, d])
    bad = {"number of experts": (tf.zeros([n, 1]), loc, factors),
           "event size": (logits, loc, tf.eye(d + 1, batch_shape=[K])),
           "batch shapes of gate_logits and loc": (logits, tf.zeros([n + 1, K, d]), factors)}
    for message, args in bad.items():
        for validate_args in (True, False):
            with pytest.raises(ValueError, match=message):
                MCGSMDistribution(*args, validate_args=validate_args)
    with pytest.raises(ValueError, match="rank >= 3"):
        MCGSMDistribution(logits, loc, tf.eye(d), validate_args=True)

    spec = [tf.TensorSpec([None, None]), tf.TensorSpec([None, None, None]), tf.TensorSpec([None, None, None]),
            tf.TensorSpec([None, None])]
    checked = tf.function(lambda *a: MCGSMDistribution(*a[:3], validate_args=True).log_prob(a[3]),
                          input_signature=spec)
    unchecked = tf.function(lambda *a: MCGSMDistribution(*a[:3]).log_prob(a[3]), input_signature=spec)
    expected = MCGSMDistribution(logits, loc, factors).log_prob(y).numpy()
    np.testing.assert_array_equal(checked(logits, loc, factors, y).numpy(), expected)
    for message, args in bad.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            checked(*args, y)
    assert np.isfinite(unchecked(*bad["number of experts"], y).numpy()).all()       # what validate_args catches

# --------------------------------------------------------------------------- gradients
def test_float64_layer_and_gradients_match_finite_differences():
    C, S, F, D, d, M = 2, 3, 4, 4, 2, 20
    layer = make_layer(C, S, D, d, F=F, dtype="float64", seed=26)
    assert all(v.dtype == "float64" for v in layer.weights)
    rng = np.random.default_rng(27)
    x = rng.normal(size=(M, D))
    y = rng.normal(0.0, 1.5, size=(M, d))
    assert layer(x).log_prob(y).dtype == tf.float64

    def loss():
        return tf.reduce_mean(layer(x).log_prob(y))

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, layer.trainable_weights)
    h = 1e-6
    for var, grad in zip(layer.trainable_weights, grads):
        assert grad is not None, var.name
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.all(np.isfinite(grad)), var.name
        base = var.numpy().copy()
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            for sign in (1, -1):
                shifted = base.copy()
                shifted[idx] += sign * h
                var.assign(shifted)
                numeric[idx] += sign * loss().numpy() / (2 * h)
            var.assign(base)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7, err_msg=var.name)
        if var.name != "cholesky_factors":
            assert np.abs(grad).max() > 1e-4, var.name  # every variable matters
    # the upper triangle of cholesky_factors is ignored
    chol_grad = tf.convert_to_tensor(grads[VARIABLE_NAMES.index("cholesky_factors")]).numpy()
    assert np.all(chol_grad[:, 0, 1] == 0.0) and np.abs(chol_grad[:, 1, 0]).max() > 1e-4


# --------------------------------------------------------------------------- numerical stability
def test_float32_stability_with_extreme_scales_and_large_inputs():
    C, S, D, d, M = 2, 3, 8, 2, 64
    layer = make_layer(C, S, D, d, seed=28)
    layer.scales.assign(np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 3.0]]))
    rng = np.random.default_rng(29)
    x = (1e3 * rng.normal(size=(M, D))).astype(np.float32)
    dist = layer(x)
    ys = {
        "zero": np.zeros((M, d), np.float32),
        "sample": dist.sample(seed=(30, 31)).numpy(),
        "expert_mean": dist.loc.numpy()[:, 0],
        "far": np.full((M, d), 1e4, np.float32),
        "unit": rng.normal(size=(M, d)).astype(np.float32),
    }
    for name, y in ys.items():
        lp = dist.log_prob(y).numpy()
        assert np.all(np.isfinite(lp)), (name, lp)
    assert np.all(np.isfinite(dist.mean().numpy()))
    # Scales are clipped at +-MAX_LOG_SCALE, as documented: 100 acts like MAX_LOG_SCALE.
    clipped = make_layer(C, S, D, d, seed=28)
    clipped.scales.assign(np.clip(layer.scales.numpy(), -MAX_LOG_SCALE, MAX_LOG_SCALE))
    np.testing.assert_array_equal(clipped(x).log_prob(ys["unit"]).numpy(), dist.log_prob(ys["unit"]).numpy())
    for name in ("sample", "unit", "far"):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(layer(x).log_prob(ys[name]))
        grads = tape.gradient(loss, layer.trainable_weights)
        assert np.isfinite(loss.numpy()), name
        for var, grad in zip(layer.trainable_weights, grads):
            assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy())), (name, var.name)


def test_univariate_stability_and_cdf_with_extreme_scales():
    layer = make_layer(2, 2, 6, 1, seed=32)
    layer.scales.assign(np.array([[100.0, -100.0], [-100.0, 100.0]]))
    x = (1e3 * np.random.default_rng(33).normal(size=(16, 6))).astype(np.float32)
    dist = layer(x)
    y = dist.sample(seed=(34, 35))
    assert np.all(np.isfinite(dist.log_prob(y).numpy()))
    cdf = dist.cdf(y).numpy()
    assert np.all(np.isfinite(cdf)) and np.all((cdf >= 0) & (cdf <= 1))


# --------------------------------------------------------------------------- serialisation
@keras.saving.register_keras_serializable(package="test_mcgsm")
class MCGSMLogProbModel(keras.Model):
    """A small model around an MCGSM: (x, y) -> log p(y | x)."""

    def __init__(self, dim_in, dim_out, **kwargs):
        super().__init__(**kwargs)
        self.dim_in, self.dim_out = int(dim_in), int(dim_out)
        self.mcgsm = MCGSM(3, 2, num_features=4, dim_out=self.dim_out, name="mcgsm")
        self.mcgsm.build((None, self.dim_in))
        self.built = True

    def call(self, inputs):
        x, y = inputs
        return self.mcgsm(x).log_prob(y)

    def get_config(self):
        return {**super().get_config(), "dim_in": self.dim_in, "dim_out": self.dim_out}


def test_get_config_round_trip():
    layer = MCGSM(num_components=3, num_scales=5, num_features=7, dim_out=2, name="m")
    config = layer.get_config()
    assert {k: config[k] for k in ("num_components", "num_scales", "num_features", "dim_out")} == \
        {"num_components": 3, "num_scales": 5, "num_features": 7, "dim_out": 2}
    clone = MCGSM.from_config(config)
    assert clone.get_config() == config
    built = MCGSM(num_components=2, num_scales=3)
    built.build((None, 6))
    config = built.get_config()
    assert config["num_features"] == 6
    clone = MCGSM.from_config(config)
    assert clone.get_config() == config
    clone.build((None, 6))
    assert [tuple(v.shape) for v in clone.weights] == [tuple(v.shape) for v in built.weights]


def test_model_with_mcgsm_saves_and_loads(tmp_path):
    model = MCGSMLogProbModel(5, 2)
    rng = np.random.default_rng(36)
    for v in model.mcgsm.weights:
        v.assign(rng.normal(0.0, 0.5, v.shape))
    x = rng.normal(size=(9, 5)).astype(np.float32)
    y = rng.normal(size=(9, 2)).astype(np.float32)
    before = model((x, y)).numpy()
    path = str(tmp_path / "mcgsm_model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.mcgsm, MCGSM)
    for a, b in zip(model.mcgsm.weights, loaded.mcgsm.weights):
        assert a.name == b.name
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded((x, y)).numpy(), before)
    assert np.all(np.isfinite(before))


# --------------------------------------------------------------------------- argument validation
@pytest.mark.parametrize("kwargs", [
    dict(num_components=0), dict(num_scales=1.5), dict(num_components=-2), dict(dim_out=0),
    dict(num_features=0), dict(num_features=2.5),
])
def test_bad_constructor_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        MCGSM(**kwargs)


def test_unknown_input_dimension_raises():
    with pytest.raises(ValueError):
        MCGSM(2, 2).build((None, None))


def test_set_standard_normal_makes_every_conditional_a_standard_normal():
    layer = make_layer(3, 2, 5, 2, seed=30)
    layer.set_standard_normal()
    x = np.random.default_rng(31).normal(size=(7, 5)).astype(np.float32) * 3
    y = np.random.default_rng(32).normal(size=(7, 2)).astype(np.float32)
    expected = -0.5 * (y ** 2).sum(-1) - np.log(2 * np.pi)
    np.testing.assert_allclose(layer.log_prob(x, y).numpy(), expected, rtol=1e-5)
