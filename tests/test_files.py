"""Tests of reading image files (`ride_tf.data.files`): `load_image` for models."""
import numpy as np
import pytest
from PIL import Image

from ride_tf import data


def _rgb_pattern(height=12, width=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_load_image_png_and_tiff_exact(tmp_path):
    rgb = _rgb_pattern()
    gray = rgb[:, :, 1].copy()
    for ext in ("png", "tif"):
        Image.fromarray(rgb).save(tmp_path / f"rgb.{ext}")
        Image.fromarray(gray).save(tmp_path / f"gray.{ext}")
        np.testing.assert_array_equal(data.load_image(tmp_path / f"rgb.{ext}", mode="rgb"), rgb)
        loaded = data.load_image(str(tmp_path / f"gray.{ext}"))
        assert loaded.dtype == np.uint8 and loaded.shape == (12, 17)
        np.testing.assert_array_equal(loaded, gray)
        # Gray as RGB: three equal channels.
        np.testing.assert_array_equal(data.load_image(tmp_path / f"gray.{ext}", mode="rgb"),
                                      np.repeat(gray[:, :, None], 3, axis=2))
        # RGB as gray: ITU-R 601-2 luma.
        luma = data.load_image(tmp_path / f"rgb.{ext}", mode="gray")
        expected = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(luma - expected).max() <= 1.0


def test_load_image_jpeg_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([4 * yy, 5 * xx, 128 + 2 * yy - xx], axis=2).astype(np.uint8)  # smooth
    Image.fromarray(rgb).save(tmp_path / "image.jpg", quality=95)
    loaded = data.load_image(tmp_path / "image.jpg", mode="rgb")
    assert loaded.shape == (32, 48, 3) and loaded.dtype == np.uint8
    assert np.abs(loaded.astype(float) - rgb).mean() < 3.0
    gray = data.load_image(tmp_path / "image.jpg")
    assert gray.shape == (32, 48)
    assert np.abs(gray - rgb.astype(float) @ np.array([0.299, 0.587, 0.114])).mean() < 3.0


def test_load_image_16_bit_and_alpha(tmp_path):
    values8 = np.arange(12 * 8, dtype=np.uint16).reshape(12, 8) * 2
    values16 = values8 * 257  # 8-bit values stored in 16 bits
    for ext in ("png", "tif"):
        Image.fromarray(values16).save(tmp_path / f"deep.{ext}")
        np.testing.assert_array_equal(data.load_image(tmp_path / f"deep.{ext}"), values8)
        assert data.load_image(tmp_path / f"deep.{ext}", mode="rgb").shape == (12, 8, 3)
    Image.fromarray(np.array([[0, 65535, 32767, 129]], dtype=np.uint16)).save(tmp_path / "scale.png")
    np.testing.assert_array_equal(data.load_image(tmp_path / "scale.png"), [[0, 255, 127, 1]])
    rgba = np.concatenate([_rgb_pattern(), np.zeros((12, 17, 1), np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(data.load_image(tmp_path / "rgba.png", mode="rgb"), rgba[:, :, :3])


def test_load_image_errors(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        data.load_image(missing)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        data.load_image(text)
    Image.fromarray(_rgb_pattern(64, 64)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.png"):
        data.load_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="not a regular file"):
        data.load_image(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        data.load_image(tmp_path / "whole.png", mode="RGB")


def test_load_images(tmp_path):
    paths = []
    for k, shape in enumerate([(10, 12), (7, 5)]):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(np.full(shape, 10 * k + 3, np.uint8)).save(paths[-1])
    images = data.load_images(paths)
    assert [im.shape for im in images] == [(10, 12), (7, 5)]
    assert [int(im[0, 0]) for im in images] == [3, 13]
    assert data.load_images(paths, mode="rgb")[1].shape == (7, 5, 3)
    with pytest.raises(TypeError):
        data.load_images(str(paths[0]))
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        data.load_images([paths[0], tmp_path / "nothing.png"])
