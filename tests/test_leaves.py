"""Tests of the dead-leaves images (`ride_tf.data.leaves`) against slow references."""
import numpy as np
import pytest

from ride_tf.data import leaves
from ride_tf import data


def _reference_dead_leaves(u, height, width, min_radius, max_radius, antialias):
    """Slow, obvious front-to-back painter for the disks described by uniforms u [n, 4]."""
    margin = max_radius + 1.0
    r = leaves.inverse_power_law_cdf(u[:, 0], min_radius, max_radius, 3.0)
    cy = u[:, 1] * (height + 2 * margin) - margin
    cx = u[:, 2] * (width + 2 * margin) - margin
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    image = np.zeros((height, width))
    transmit = np.ones((height, width))
    done = np.zeros((height, width), dtype=bool)
    for k in range(len(u)):
        dist = np.hypot(yy - cy[k], xx - cx[k])
        if antialias:
            cov = np.clip(r[k] + 0.5 - dist, 0.0, 1.0)
            cov[dist <= r[k] - 0.5] = 1.0
        else:
            cov = (dist <= r[k]).astype(float)
        cov[done] = 0.0
        image += transmit * cov * u[k, 3]
        transmit *= 1.0 - cov
        done |= cov >= 1.0
    return image, done


@pytest.mark.parametrize("antialias", [False, True])
def test_dead_leaves_matches_slow_reference(antialias):
    # The vectorised renderer equals a per-disk painter on the same disks.
    for seed in range(3):
        renderer = leaves.DeadLeavesRenderer(20, 28, 1.0, 12.0, 3.0, antialias, None)
        image = renderer.render(np.random.default_rng(seed))
        assert renderer.uncovered == 0
        u = np.random.default_rng(seed).random((renderer.drawn, 4))
        expected, done = _reference_dead_leaves(u, 20, 28, 1.0, 12.0, antialias)
        assert done.all()
        np.testing.assert_allclose(image, expected, rtol=0, atol=1e-12)


class _FixedUniforms:
    """Stands in for a Generator: returns given disk uniforms, then a background value."""

    def __init__(self, disks, background):
        self.disks = np.asarray(disks, dtype=float)
        self.background = background

    def random(self, shape):
        if shape == 1:
            return np.array([self.background])
        return self.disks[: shape[0]]


def _one_disk(antialias, radius=10.0, centre=(32.3, 31.7), size=64):
    renderer = leaves.DeadLeavesRenderer(size, size, radius, radius, 3.0, antialias, max_disks=1)
    ext = size + 2 * renderer.margin
    u = [[0.5, (centre[0] + renderer.margin) / ext, (centre[1] + renderer.margin) / ext, 1.0]]
    return renderer.render(_FixedUniforms(u, background=0.0))


def test_single_disk_area_and_antialiased_edge():
    area = np.pi * 10.0 ** 2
    hard = _one_disk(antialias=False)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert abs(hard.sum() - area) < 0.02 * area  # pixel centres inside
    soft = _one_disk(antialias=True)
    assert abs(soft.sum() - area) < 0.005 * area  # coverage integrates to the area
    partial = (soft > 0) & (soft < 1)
    # A ring of partially covered pixels about one perimeter (2 pi r = 63) long.
    assert 50 <= partial.sum() <= 90
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    dist = np.hypot(yy - 32.3, xx - 31.7)
    assert np.all(np.abs(dist[partial] - 10.0) < 0.5)
    assert np.all(soft[dist <= 9.5] == 1.0) and np.all(soft[dist >= 10.5] == 0.0)


def test_dead_leaves_shape_and_dtype():
    images = data.dead_leaves(2, size=(40, 56), seed=1)
    assert images.shape == (2, 40, 56) and images.dtype == np.uint8
    floats = data.dead_leaves(2, size=(40, 56), seed=1, dtype=np.float64)
    assert floats.dtype == np.float64 and floats.min() >= 0.0 and floats.max() <= 1.0
    np.testing.assert_array_equal(np.rint(floats * 255).astype(np.uint8), images)
    assert data.dead_leaves(1, size=16, dtype=np.float32).dtype == np.float32
    assert data.dead_leaves(0, size=16).shape == (0, 16, 16)
    with pytest.raises(ValueError, match="dtype"):
        data.dead_leaves(1, size=16, dtype=np.int16)
    with pytest.raises(ValueError, match="min_radius"):
        data.dead_leaves(1, size=16, min_radius=5, max_radius=2)
    with pytest.raises(ValueError, match="size"):
        data.dead_leaves(1, size=(16, 16, 3))


def test_dead_leaves_determinism_and_independence_of_num_images():
    a = data.dead_leaves(3, size=64, seed=7)
    np.testing.assert_array_equal(a, data.dead_leaves(3, size=64, seed=7))
    b = data.dead_leaves(3, size=64, seed=8)
    assert (a != b).mean() > 0.5
    assert (a[0] != a[1]).mean() > 0.5  # images of one seed differ too
    np.testing.assert_array_equal(data.dead_leaves(5, size=64, seed=7)[:3], a)
    np.testing.assert_array_equal(data.dead_leaves(1, size=64, seed=7, first_index=2)[0], a[2])


def test_dead_leaves_piecewise_constant_and_full_range():
    images = data.dead_leaves(4, size=128, seed=0, antialias=False)
    # Measured: 0.83-0.89 of the pixels equal their right neighbour (hard edges).
    assert (images[:, :, 1:] == images[:, :, :-1]).mean() > 0.8
    assert images.min() <= 3 and images.max() >= 252
    assert len(np.unique(images)) > 200  # uniform intensities: many gray levels


def test_dead_leaves_antialias_changes_only_edges():
    hard = data.dead_leaves(3, size=128, seed=0, antialias=False)
    soft = data.dead_leaves(3, size=128, seed=0, antialias=True)
    diff = hard != soft
    assert 0.05 < diff.mean() < 0.4  # measured 0.16-0.24
    padded = np.pad(hard, ((0, 0), (1, 1), (1, 1)), mode="edge").astype(int)
    neighbours = np.stack([padded[:, 1 + dy:129 + dy, 1 + dx:129 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    at_edge = (neighbours != hard[None]).any(axis=0)
    assert at_edge[diff].mean() > 0.99  # changed pixels lie at hard edges (measured 0.998)
    between = (soft > neighbours.min(axis=0)) & (soft < neighbours.max(axis=0))
    assert between[diff].mean() > 0.95  # ... with intermediate values (measured 0.99)


def test_dead_leaves_noise():
    clean = data.dead_leaves(2, size=128, seed=3, dtype=np.float64)
    noisy = data.dead_leaves(2, size=128, seed=3, dtype=np.float64, noise_std=0.05)
    inside = (clean > 0.2) & (clean < 0.8)  # far from clipping
    noise = (noisy - clean)[inside]
    assert abs(noise.std() - 0.05) < 0.002 and abs(noise.mean()) < 0.002
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    clean8 = data.dead_leaves(2, size=128, seed=3)
    noisy8 = data.dead_leaves(2, size=128, seed=3, noise_std=0.05)
    inside8 = (clean8 > 50) & (clean8 < 200)
    assert abs((noisy8.astype(float) - clean8)[inside8].std() / 255 - 0.05) < 0.003
    with pytest.raises(ValueError, match="noise_std"):
        data.dead_leaves(1, size=16, noise_std=-1)


def test_power_law_radii():
    n = 100_000
    radii = data.sample_power_law_radii(n, 2.0, 128.0, rng=0)
    assert radii.min() >= 2.0 and radii.max() <= 128.0
    # Kolmogorov-Smirnov statistic against F(r) = (2^-2 - r^-2) / (2^-2 - 128^-2).
    x = np.sort(radii)
    cdf = data.power_law_cdf(x, 2.0, 128.0)
    np.testing.assert_allclose(cdf, (2.0 ** -2 - x ** -2) / (2.0 ** -2 - 128.0 ** -2), atol=1e-12)
    ks = max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())
    assert ks < 1.95 / np.sqrt(n)  # 0.1% critical value, 0.0062 (measured 0.0026)
    # Log-log slope of the density over log-spaced bins: -3 (measured -2.98).
    edges = np.geomspace(2.0, 128.0, 13)
    counts, _ = np.histogram(radii, edges)
    centres = np.sqrt(edges[1:] * edges[:-1])
    slope = np.polyfit(np.log(centres), np.log(counts / np.diff(edges)), 1)[0]
    assert abs(slope + 3.0) < 0.1
    # Other exponents, including the logarithmic case exponent = 1.
    for exponent in (1.0, 2.0):
        r = data.sample_power_law_radii(20_000, 1.0, 50.0, exponent=exponent, rng=1)
        for q in (0.25, 0.5, 0.75):
            assert abs(data.power_law_cdf(np.quantile(r, q), 1.0, 50.0, exponent) - q) < 0.02


def test_stopping_rule_cap_shows_background_leaf():
    renderer = leaves.DeadLeavesRenderer(32, 32, 2.0, 2.0, 3.0, False, max_disks=3)
    image = renderer.render(np.random.default_rng(0))
    assert renderer.drawn == 3 and renderer.uncovered > 32 * 32 - 3 * 25
    _, counts = np.unique(image, return_counts=True)
    assert counts.max() == renderer.uncovered  # all uncovered pixels show one background leaf
    full = leaves.DeadLeavesRenderer(64, 64, 2.0, 32.0, 3.0, True, None)
    full.render(np.random.default_rng(0))
    assert full.uncovered == 0 and full.drawn < full.max_disks


def test_dead_leaves_benchmark_splits():
    config = data.DEAD_LEAVES_BENCHMARK
    assert config["num_images"] == 1000 and config["size"] == 256
    assert data.DEAD_LEAVES_BENCHMARK_NUM_TEST == 100
    test = data.dead_leaves_benchmark("test", num_images=1)
    assert test.shape == (1, 256, 256) and test.dtype == np.uint8
    # Image 900 of "all" is image 0 of "test".
    image_900 = data.dead_leaves(**{**config, "num_images": 1, "first_index": 900})
    np.testing.assert_array_equal(test, image_900)
    train = data.dead_leaves_benchmark("train", num_images=2)
    np.testing.assert_array_equal(train, data.dead_leaves_benchmark("all", num_images=2))
    assert (train[0] != test[0]).mean() > 0.5
    with pytest.raises(ValueError, match="split"):
        data.dead_leaves_benchmark("validation")
    with pytest.raises(ValueError, match="num_images"):
        data.dead_leaves_benchmark("test", num_images=101)
