"""Tests of van Hateren's raw images (`ride_tf.data.van_hateren`)."""
import numpy as np
import pytest

from ride_tf import data


def test_read_iml_big_endian(tmp_path):
    values = np.arange(8 * 12, dtype=np.uint16).reshape(8, 12) * 600  # up to 57000
    values[0, :3] = [300, 65535, 1]
    (tmp_path / "a.iml").write_bytes(values.astype(">u2").tobytes())
    image = data.read_iml(tmp_path / "a.iml", shape=(8, 12))
    assert image.dtype == np.uint16 and image.shape == (8, 12)
    np.testing.assert_array_equal(image, values)
    assert image[0, 0] == 300  # 0x012C; little-endian would read 0x2C01 = 11265
    with pytest.raises(ValueError, match="192 bytes"):
        data.read_iml(tmp_path / "a.iml", shape=(8, 13))
    with pytest.raises(ValueError, match="a.iml"):
        data.read_iml(tmp_path / "a.iml")  # the real 1024 x 1536 shape
    with pytest.raises(FileNotFoundError):
        data.read_iml(tmp_path / "b.iml", shape=(8, 12))


def test_load_van_hateren(tmp_path):
    stack = np.random.default_rng(0).integers(0, 5000, size=(3, 8, 12)).astype(np.uint16)
    for k, name in enumerate(["imk002.iml", "imk010.iml", "imk100.iml"]):
        (tmp_path / name).write_bytes(stack[k].astype(">u2").tobytes())
    (tmp_path / "readme.txt").write_text("ignored")
    np.testing.assert_array_equal(data.load_van_hateren(tmp_path, shape=(8, 12)), stack)
    np.testing.assert_array_equal(data.load_van_hateren(tmp_path, shape=(8, 12), max_images=2), stack[:2])
    paths = [tmp_path / "imk100.iml", tmp_path / "imk002.iml"]
    np.testing.assert_array_equal(data.load_van_hateren(paths, shape=(8, 12)), stack[[2, 0]])
    linear = data.load_van_hateren(tmp_path, shape=(8, 12), to_uint8="linear", max_value=5000)
    np.testing.assert_array_equal(linear, np.rint(stack / 5000 * 255).astype(np.uint8))
    log = data.load_van_hateren(tmp_path, shape=(8, 12), to_uint8="log")
    assert log.dtype == np.uint8
    assert all(log[k].max() == 255 for k in range(3))  # per-image maximum -> 255
    order = np.argsort(stack[0], axis=None)
    assert np.all(np.diff(log[0].ravel()[order].astype(int)) >= 0)  # monotone mapping
    with pytest.raises(ValueError, match="no files"):
        data.load_van_hateren(tmp_path, shape=(8, 12), pattern="*.imc")
    with pytest.raises(ValueError, match="method"):
        data.van_hateren_to_uint8(stack, method="gamma")
