"""Tests of ride_tf.datasets: dead leaves, image files, BSDS300, van Hateren."""
import numpy as np
import pytest
from PIL import Image

from ride_tf import datasets

# ---------------------------------------------------------------------------
# Dead leaves
# ---------------------------------------------------------------------------


def _reference_dead_leaves(u, height, width, min_radius, max_radius, antialias):
    """Slow, obvious front-to-back painter for the disks described by uniforms u [n, 4]."""
    margin = max_radius + 1.0
    r = datasets._inverse_power_law_cdf(u[:, 0], min_radius, max_radius, 3.0)
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
        renderer = datasets._DeadLeavesRenderer(20, 28, 1.0, 12.0, 3.0, antialias, None)
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
    renderer = datasets._DeadLeavesRenderer(size, size, radius, radius, 3.0, antialias, max_disks=1)
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
    images = datasets.dead_leaves(2, size=(40, 56), seed=1)
    assert images.shape == (2, 40, 56) and images.dtype == np.uint8
    floats = datasets.dead_leaves(2, size=(40, 56), seed=1, dtype=np.float64)
    assert floats.dtype == np.float64 and floats.min() >= 0.0 and floats.max() <= 1.0
    np.testing.assert_array_equal(np.rint(floats * 255).astype(np.uint8), images)
    assert datasets.dead_leaves(1, size=16, dtype=np.float32).dtype == np.float32
    assert datasets.dead_leaves(0, size=16).shape == (0, 16, 16)
    with pytest.raises(ValueError, match="dtype"):
        datasets.dead_leaves(1, size=16, dtype=np.int16)
    with pytest.raises(ValueError, match="min_radius"):
        datasets.dead_leaves(1, size=16, min_radius=5, max_radius=2)
    with pytest.raises(ValueError, match="size"):
        datasets.dead_leaves(1, size=(16, 16, 3))


def test_dead_leaves_determinism_and_independence_of_num_images():
    a = datasets.dead_leaves(3, size=64, seed=7)
    np.testing.assert_array_equal(a, datasets.dead_leaves(3, size=64, seed=7))
    b = datasets.dead_leaves(3, size=64, seed=8)
    assert (a != b).mean() > 0.5
    assert (a[0] != a[1]).mean() > 0.5  # images of one seed differ too
    np.testing.assert_array_equal(datasets.dead_leaves(5, size=64, seed=7)[:3], a)
    np.testing.assert_array_equal(datasets.dead_leaves(1, size=64, seed=7, first_index=2)[0], a[2])


def test_dead_leaves_piecewise_constant_and_full_range():
    images = datasets.dead_leaves(4, size=128, seed=0, antialias=False)
    # Measured: 0.83-0.89 of the pixels equal their right neighbour (hard edges).
    assert (images[:, :, 1:] == images[:, :, :-1]).mean() > 0.8
    assert images.min() <= 3 and images.max() >= 252
    assert len(np.unique(images)) > 200  # uniform intensities: many gray levels


def test_dead_leaves_antialias_changes_only_edges():
    hard = datasets.dead_leaves(3, size=128, seed=0, antialias=False)
    soft = datasets.dead_leaves(3, size=128, seed=0, antialias=True)
    diff = hard != soft
    assert 0.05 < diff.mean() < 0.4  # measured 0.16-0.24
    padded = np.pad(hard, ((0, 0), (1, 1), (1, 1)), mode="edge").astype(int)
    neighbours = np.stack([padded[:, 1 + dy:129 + dy, 1 + dx:129 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    at_edge = (neighbours != hard[None]).any(axis=0)
    assert at_edge[diff].mean() > 0.99  # changed pixels lie at hard edges (measured 0.998)
    between = (soft > neighbours.min(axis=0)) & (soft < neighbours.max(axis=0))
    assert between[diff].mean() > 0.95  # ... with intermediate values (measured 0.99)


def test_dead_leaves_noise():
    clean = datasets.dead_leaves(2, size=128, seed=3, dtype=np.float64)
    noisy = datasets.dead_leaves(2, size=128, seed=3, dtype=np.float64, noise_std=0.05)
    inside = (clean > 0.2) & (clean < 0.8)  # far from clipping
    noise = (noisy - clean)[inside]
    assert abs(noise.std() - 0.05) < 0.002 and abs(noise.mean()) < 0.002
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    clean8 = datasets.dead_leaves(2, size=128, seed=3)
    noisy8 = datasets.dead_leaves(2, size=128, seed=3, noise_std=0.05)
    inside8 = (clean8 > 50) & (clean8 < 200)
    assert abs((noisy8.astype(float) - clean8)[inside8].std() / 255 - 0.05) < 0.003
    with pytest.raises(ValueError, match="noise_std"):
        datasets.dead_leaves(1, size=16, noise_std=-1)


def test_power_law_radii():
    n = 100_000
    radii = datasets.sample_power_law_radii(n, 2.0, 128.0, rng=0)
    assert radii.min() >= 2.0 and radii.max() <= 128.0
    # Kolmogorov-Smirnov statistic against F(r) = (2^-2 - r^-2) / (2^-2 - 128^-2).
    x = np.sort(radii)
    cdf = datasets.power_law_cdf(x, 2.0, 128.0)
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
        r = datasets.sample_power_law_radii(20_000, 1.0, 50.0, exponent=exponent, rng=1)
        for q in (0.25, 0.5, 0.75):
            assert abs(datasets.power_law_cdf(np.quantile(r, q), 1.0, 50.0, exponent) - q) < 0.02


def test_stopping_rule_cap_shows_background_leaf():
    renderer = datasets._DeadLeavesRenderer(32, 32, 2.0, 2.0, 3.0, False, max_disks=3)
    image = renderer.render(np.random.default_rng(0))
    assert renderer.drawn == 3 and renderer.uncovered > 32 * 32 - 3 * 25
    _, counts = np.unique(image, return_counts=True)
    assert counts.max() == renderer.uncovered  # all uncovered pixels show one background leaf
    full = datasets._DeadLeavesRenderer(64, 64, 2.0, 32.0, 3.0, True, None)
    full.render(np.random.default_rng(0))
    assert full.uncovered == 0 and full.drawn < full.max_disks


def test_dead_leaves_benchmark_splits():
    config = datasets.DEAD_LEAVES_BENCHMARK
    assert config["num_images"] == 1000 and config["size"] == 256
    assert datasets.DEAD_LEAVES_BENCHMARK_NUM_TEST == 100
    test = datasets.dead_leaves_benchmark("test", num_images=1)
    assert test.shape == (1, 256, 256) and test.dtype == np.uint8
    # Image 900 of "all" is image 0 of "test".
    image_900 = datasets.dead_leaves(**{**config, "num_images": 1, "first_index": 900})
    np.testing.assert_array_equal(test, image_900)
    train = datasets.dead_leaves_benchmark("train", num_images=2)
    np.testing.assert_array_equal(train, datasets.dead_leaves_benchmark("all", num_images=2))
    assert (train[0] != test[0]).mean() > 0.5
    with pytest.raises(ValueError, match="split"):
        datasets.dead_leaves_benchmark("validation")
    with pytest.raises(ValueError, match="num_images"):
        datasets.dead_leaves_benchmark("test", num_images=101)


# ---------------------------------------------------------------------------
# Image files
# ---------------------------------------------------------------------------


def _rgb_pattern(height=12, width=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_load_image_png_and_tiff_exact(tmp_path):
    rgb = _rgb_pattern()
    gray = rgb[:, :, 1].copy()
    for ext in ("png", "tif"):
        Image.fromarray(rgb).save(tmp_path / f"rgb.{ext}")
        Image.fromarray(gray).save(tmp_path / f"gray.{ext}")
        np.testing.assert_array_equal(datasets.load_image(tmp_path / f"rgb.{ext}", mode="rgb"), rgb)
        loaded = datasets.load_image(str(tmp_path / f"gray.{ext}"))
        assert loaded.dtype == np.uint8 and loaded.shape == (12, 17)
        np.testing.assert_array_equal(loaded, gray)
        # Gray as RGB: three equal channels.
        np.testing.assert_array_equal(datasets.load_image(tmp_path / f"gray.{ext}", mode="rgb"),
                                      np.repeat(gray[:, :, None], 3, axis=2))
        # RGB as gray: ITU-R 601-2 luma.
        luma = datasets.load_image(tmp_path / f"rgb.{ext}", mode="gray")
        expected = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(luma - expected).max() <= 1.0


def test_load_image_jpeg_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([4 * yy, 5 * xx, 128 + 2 * yy - xx], axis=2).astype(np.uint8)  # smooth
    Image.fromarray(rgb).save(tmp_path / "image.jpg", quality=95)
    loaded = datasets.load_image(tmp_path / "image.jpg", mode="rgb")
    assert loaded.shape == (32, 48, 3) and loaded.dtype == np.uint8
    assert np.abs(loaded.astype(float) - rgb).mean() < 3.0
    gray = datasets.load_image(tmp_path / "image.jpg")
    assert gray.shape == (32, 48)
    assert np.abs(gray - rgb.astype(float) @ np.array([0.299, 0.587, 0.114])).mean() < 3.0


def test_load_image_16_bit_and_alpha(tmp_path):
    values8 = np.arange(12 * 8, dtype=np.uint16).reshape(12, 8) * 2
    values16 = values8 * 257  # 8-bit values stored in 16 bits
    for ext in ("png", "tif"):
        Image.fromarray(values16).save(tmp_path / f"deep.{ext}")
        np.testing.assert_array_equal(datasets.load_image(tmp_path / f"deep.{ext}"), values8)
        assert datasets.load_image(tmp_path / f"deep.{ext}", mode="rgb").shape == (12, 8, 3)
    Image.fromarray(np.array([[0, 65535, 32767, 129]], dtype=np.uint16)).save(tmp_path / "scale.png")
    np.testing.assert_array_equal(datasets.load_image(tmp_path / "scale.png"), [[0, 255, 127, 1]])
    rgba = np.concatenate([_rgb_pattern(), np.zeros((12, 17, 1), np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(datasets.load_image(tmp_path / "rgba.png", mode="rgb"), rgba[:, :, :3])


def test_load_image_errors(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        datasets.load_image(missing)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        datasets.load_image(text)
    Image.fromarray(_rgb_pattern(64, 64)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.png"):
        datasets.load_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="not a regular file"):
        datasets.load_image(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        datasets.load_image(tmp_path / "whole.png", mode="RGB")


def test_load_images(tmp_path):
    paths = []
    for k, shape in enumerate([(10, 12), (7, 5)]):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(np.full(shape, 10 * k + 3, np.uint8)).save(paths[-1])
    images = datasets.load_images(paths)
    assert [im.shape for im in images] == [(10, 12), (7, 5)]
    assert [int(im[0, 0]) for im in images] == [3, 13]
    assert datasets.load_images(paths, mode="rgb")[1].shape == (7, 5, 3)
    with pytest.raises(TypeError):
        datasets.load_images(str(paths[0]))
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        datasets.load_images([paths[0], tmp_path / "nothing.png"])


# ---------------------------------------------------------------------------
# BSDS300
# ---------------------------------------------------------------------------


def _make_bsds(root, train_ids, test_ids, id_files=True):
    for split, ids in (("train", train_ids), ("test", test_ids)):
        folder = root / "images" / split
        folder.mkdir(parents=True)
        for i in ids:
            image = np.full((6, 9, 3), (int(i) % 250, 40, 200), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{i}.jpg", quality=95)
        if id_files:
            (root / f"iids_{split}.txt").write_text("\n".join(str(i) for i in ids[::-1]) + "\n")


def test_load_bsds300_split(tmp_path):
    train_ids = [str(1000 + 37 * k) for k in range(24)]
    test_ids = [str(5000 + k) for k in range(5)]
    _make_bsds(tmp_path / "BSDS300", train_ids, test_ids)
    images, ids = datasets.load_bsds300(tmp_path / "BSDS300", strict=False, validation_size=4, return_ids=True)
    assert [len(images[s]) for s in ("train", "validation", "test")] == [20, 4, 5]
    # Sorted ids; the last 4 training ids are the validation set.
    assert ids["train"] + ids["validation"] == sorted(train_ids, key=int)
    assert ids["validation"] == sorted(train_ids, key=int)[-4:]
    for split in images:
        for image, i in zip(images[split], ids[split]):
            assert image.dtype == np.uint8 and image.shape == (6, 9)
            expected = round(0.299 * (int(i) % 250) + 0.587 * 40 + 0.114 * 200)
            assert abs(int(image[3, 4]) - expected) <= 3
    # The parent folder of BSDS300/ works too.
    assert len(datasets.load_bsds300(tmp_path, strict=False, validation_size=4)["test"]) == 5


def test_load_bsds300_without_id_files(tmp_path):
    _make_bsds(tmp_path, ["3", "1", "2"], ["9"], id_files=False)
    images, ids = datasets.load_bsds300(tmp_path, strict=False, validation_size=1, return_ids=True)
    assert ids == {"train": ["1", "2"], "validation": ["3"], "test": ["9"]}


def test_load_bsds300_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.load_bsds300(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a BSDS300 folder"):
        datasets.load_bsds300(tmp_path / "empty")
    root = tmp_path / "small"
    _make_bsds(root, [str(k) for k in range(1, 4)], ["7"])
    with pytest.raises(ValueError, match="expected 200 training and 100 test"):
        datasets.load_bsds300(root)  # strict: the real counts
    with pytest.raises(ValueError, match="validation_size"):
        datasets.load_bsds300(root, strict=False)  # 20 validation images of 3
    (root / "images" / "train" / "2.jpg").unlink()
    with pytest.raises(ValueError, match="missing 1 image"):
        datasets.load_bsds300(root, strict=False, validation_size=1)


# ---------------------------------------------------------------------------
# van Hateren
# ---------------------------------------------------------------------------


def test_read_iml_big_endian(tmp_path):
    values = np.arange(8 * 12, dtype=np.uint16).reshape(8, 12) * 600  # up to 57000
    values[0, :3] = [300, 65535, 1]
    (tmp_path / "a.iml").write_bytes(values.astype(">u2").tobytes())
    image = datasets.read_iml(tmp_path / "a.iml", shape=(8, 12))
    assert image.dtype == np.uint16 and image.shape == (8, 12)
    np.testing.assert_array_equal(image, values)
    assert image[0, 0] == 300  # 0x012C; little-endian would read 0x2C01 = 11265
    with pytest.raises(ValueError, match="192 bytes"):
        datasets.read_iml(tmp_path / "a.iml", shape=(8, 13))
    with pytest.raises(ValueError, match="a.iml"):
        datasets.read_iml(tmp_path / "a.iml")  # the real 1024 x 1536 shape
    with pytest.raises(FileNotFoundError):
        datasets.read_iml(tmp_path / "b.iml", shape=(8, 12))


def test_load_van_hateren(tmp_path):
    stack = np.random.default_rng(0).integers(0, 5000, size=(3, 8, 12)).astype(np.uint16)
    for k, name in enumerate(["imk002.iml", "imk010.iml", "imk100.iml"]):
        (tmp_path / name).write_bytes(stack[k].astype(">u2").tobytes())
    (tmp_path / "readme.txt").write_text("ignored")
    np.testing.assert_array_equal(datasets.load_van_hateren(tmp_path, shape=(8, 12)), stack)
    np.testing.assert_array_equal(datasets.load_van_hateren(tmp_path, shape=(8, 12), max_images=2), stack[:2])
    paths = [tmp_path / "imk100.iml", tmp_path / "imk002.iml"]
    np.testing.assert_array_equal(datasets.load_van_hateren(paths, shape=(8, 12)), stack[[2, 0]])
    linear = datasets.load_van_hateren(tmp_path, shape=(8, 12), to_uint8="linear", max_value=5000)
    np.testing.assert_array_equal(linear, np.rint(stack / 5000 * 255).astype(np.uint8))
    log = datasets.load_van_hateren(tmp_path, shape=(8, 12), to_uint8="log")
    assert log.dtype == np.uint8
    assert all(log[k].max() == 255 for k in range(3))  # per-image maximum -> 255
    order = np.argsort(stack[0], axis=None)
    assert np.all(np.diff(log[0].ravel()[order].astype(int)) >= 0)  # monotone mapping
    with pytest.raises(ValueError, match="no files"):
        datasets.load_van_hateren(tmp_path, shape=(8, 12), pattern="*.imc")
    with pytest.raises(ValueError, match="method"):
        datasets.van_hateren_to_uint8(stack, method="gamma")


def test_gaussian_autoregressive_has_the_process_conditionals():
    """Least squares on the causal neighbours recovers (a, b) and the noise std of the process."""
    x = datasets.gaussian_autoregressive(6, 48, a=0.5, b=0.3, noise_std=0.04, seed=2)
    assert x.shape == (6, 48, 48) and abs(x.mean() - 0.5) < 0.02
    y = (x[:, 1:, 1:] - 0.5).ravel()
    design = np.stack([(x[:, 1:, :-1] - 0.5).ravel(), (x[:, :-1, 1:] - 0.5).ravel()], axis=1)
    coef, residual, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(coef, [0.5, 0.3], atol=0.02)
    assert abs(np.sqrt(residual[0] / len(y)) - 0.04) < 0.002
    with pytest.raises(ValueError, match="stationary"):
        datasets.gaussian_autoregressive(1, 8, a=0.6, b=0.5)
