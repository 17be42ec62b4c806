"""Tests of the conversions in `ride_tf.preprocessing` (one helper per conversion)."""
import numpy as np
import pytest
import tensorflow as tf

from ride_tf.preprocessing import dequantize, quantize, to_bits_per_pixel


def test_quantize_inverts_dequantize_for_every_value_and_noise():
    k = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for noise, seed in [(False, None), (True, 0), (True, 1)]:
        floats = dequantize(k, noise=noise, seed=seed)
        np.testing.assert_array_equal(quantize(floats.numpy()), k)
        np.testing.assert_array_equal(quantize(floats).numpy(), k)
    # Out-of-range values are clipped to the end bins.
    np.testing.assert_array_equal(quantize(np.array([-0.5, 0.0, 0.999999, 1.0, 7.0])), [0, 0, 255, 255, 255])


def test_bits_per_pixel_divides_by_channels_and_ln2():
    assert to_bits_per_pixel(np.log(2.0)) == pytest.approx(1.0)
    assert to_bits_per_pixel(3 * np.log(2.0), num_channels=3) == pytest.approx(1.0)
    assert float(to_bits_per_pixel(tf.constant(2 * np.log(2.0)))) == pytest.approx(2.0)


def test_check_integer_accepts_integers_and_names_what_it_refuses():
    from ride_tf.preprocessing import check_integer

    assert check_integer("X", "n", 3, 1) == 3 and check_integer("X", "n", np.int64(0), 0) == 0
    for bad in [0, -2, 2.0, 2.5, True, "3", None]:
        with pytest.raises(ValueError, match=r"X: n must be an integer >= 1"):
            check_integer("X", "n", bad, 1)
