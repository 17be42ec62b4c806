"""Tests of the causal neighbourhoods (`ride_tf.neighbourhoods`, paper Fig. 1B).

The images used here encode each pixel's position in its value (10 * i + j, plus 100 per
channel), so every extracted input can be checked against a hand-written list.
"""
import numpy as np
import pytest
import tensorflow as tf

from ride_tf.neighbourhoods import (causal_mask, causal_offsets, extract_neighbourhoods,
                                    num_inputs, valid_shape)


def position_image(height, width, channels=1, batch=1):
    """[batch, H, W, C] with value 10 * i + j + 100 * c + 1000 * n."""
    n, i, j, c = np.meshgrid(np.arange(batch), np.arange(height), np.arange(width), np.arange(channels),
                             indexing="ij")
    return (1000 * n + 10 * i + j + 100 * c).astype(np.float32)


# --------------------------------------------------------------------------- window geometry
def test_nb_size_5_mask_and_offsets():
    mask = causal_mask(5)
    expected = np.array([[1, 1, 1, 1, 1],
                         [1, 1, 1, 1, 1],
                         [1, 1, 0, 0, 0]], dtype=bool)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)
    assert causal_offsets(5) == [(-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2),
                                 (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2),
                                 (0, -2), (0, -1)]
    assert num_inputs(5) == 12
    assert num_inputs(5, num_channels=3) == 36


def test_nb_size_3_and_7():
    np.testing.assert_array_equal(causal_mask(3), np.array([[1, 1, 1], [1, 0, 0]], dtype=bool))
    assert causal_offsets(3) == [(-1, -1), (-1, 0), (-1, 1), (0, -1)]
    assert num_inputs(3) == 4
    assert num_inputs(7) == 24
    assert causal_mask(7).shape == (4, 7)
    assert causal_mask(7).sum() == 24
    np.testing.assert_array_equal(causal_mask(7)[3], [1, 1, 1, 0, 0, 0, 0])


@pytest.mark.parametrize("nb_size", [3, 5, 7, 9, 11])
def test_offsets_are_causal_unique_in_raster_order_and_match_mask(nb_size):
    r = nb_size // 2
    offsets = causal_offsets(nb_size)
    assert len(offsets) == len(set(offsets)) == r * nb_size + r == num_inputs(nb_size)
    for di, dj in offsets:
        assert di < 0 or (di == 0 and dj < 0), (di, dj)   # strictly before the pixel in raster order
        assert -r <= di <= 0 and -r <= dj <= r
    assert offsets == sorted(offsets)                        # raster order
    mask = causal_mask(nb_size)
    assert mask.shape == (r + 1, nb_size)
    assert sorted((int(a) - r, int(b) - r) for a, b in zip(*np.nonzero(mask))) == offsets
    assert not mask[r, r:].any()                             # neither the pixel nor anything after it


@pytest.mark.parametrize("bad", [4, 2, 1, 0, -3, 6, 3.5])
def test_bad_nb_size_raises(bad):
    for fn in (causal_offsets, causal_mask, num_inputs):
        with pytest.raises(ValueError):
            fn(bad)
    with pytest.raises(ValueError):
        valid_shape(10, 10, bad)
    with pytest.raises(ValueError):
        extract_neighbourhoods(position_image(8, 8), bad)


# --------------------------------------------------------------------------- extraction
def test_extract_nb3_on_position_image_by_hand():
    image = position_image(4, 6)                              # values 10 * i + j
    inputs, outputs = extract_neighbourhoods(image, 3)
    assert tuple(inputs.shape) == (1, 3, 4, 4)                # (H - 1) x (W - 2), 4 inputs
    assert tuple(outputs.shape) == (1, 3, 4, 1)
    # output (a, b) is pixel (a + 1, b + 1)
    np.testing.assert_array_equal(outputs.numpy()[0, :, :, 0], [[11, 12, 13, 14],
                                                               [21, 22, 23, 24],
                                                               [31, 32, 33, 34]])
    # neighbours in the order (-1,-1), (-1,0), (-1,1), (0,-1)
    expected = np.array([
        [[0, 1, 2, 10], [1, 2, 3, 11], [2, 3, 4, 12], [3, 4, 5, 13]],
        [[10, 11, 12, 20], [11, 12, 13, 21], [12, 13, 14, 22], [13, 14, 15, 23]],
        [[20, 21, 22, 30], [21, 22, 23, 31], [22, 23, 24, 32], [23, 24, 25, 33]],
    ], dtype=np.float32)
    np.testing.assert_array_equal(inputs.numpy()[0], expected)


def test_extract_nb5_by_hand():
    image = position_image(5, 7)
    inputs, outputs = extract_neighbourhoods(image, 5)
    assert tuple(inputs.shape) == (1, 3, 3, 12)
    assert outputs.numpy()[0, 0, 0, 0] == 22
    np.testing.assert_array_equal(inputs.numpy()[0, 0, 0], [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21])
    assert outputs.numpy()[0, 2, 2, 0] == 44
    np.testing.assert_array_equal(inputs.numpy()[0, 2, 2], [22, 23, 24, 25, 26, 32, 33, 34, 35, 36, 42, 43])


def test_every_input_is_a_pixel_before_the_output_in_raster_order():
    image = position_image(6, 9)
    for nb_size in (3, 5):
        inputs, outputs = extract_neighbourhoods(image, nb_size)
        out = outputs.numpy()[..., 0]
        ins = inputs.numpy()
        # values 10 * i + j with j < 10 are ordered like raster order
        assert np.all(ins < out[..., None])
        # and they are exactly the pixels at the causal offsets
        for k, (di, dj) in enumerate(causal_offsets(nb_size)):
            np.testing.assert_array_equal(ins[..., k], out + 10 * di + dj)


def test_multichannel_order_is_offset_major_channel_minor():
    image = position_image(4, 6, channels=2)                  # channel 1 = channel 0 + 100
    inputs, outputs = extract_neighbourhoods(image, 3)
    assert tuple(inputs.shape) == (1, 3, 4, 8)
    assert tuple(outputs.shape) == (1, 3, 4, 2)
    np.testing.assert_array_equal(outputs.numpy()[0, 0, 0], [11, 111])
    np.testing.assert_array_equal(inputs.numpy()[0, 0, 0], [0, 100, 1, 101, 2, 102, 10, 110])
    np.testing.assert_array_equal(inputs.numpy()[0, 2, 3], [23, 123, 24, 124, 25, 125, 33, 133])


def test_batches_are_processed_independently():
    images = position_image(4, 6, channels=2, batch=3)        # image n = image 0 + 1000 n
    inputs, outputs = extract_neighbourhoods(images, 3)
    assert tuple(inputs.shape) == (3, 3, 4, 8)
    single_in, single_out = extract_neighbourhoods(images[:1], 3)
    for n in range(3):
        np.testing.assert_array_equal(inputs.numpy()[n], single_in.numpy()[0] + 1000 * n)
        np.testing.assert_array_equal(outputs.numpy()[n], single_out.numpy()[0] + 1000 * n)


def test_inside_tf_function_with_unknown_sizes():
    channels = 2

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
    def extract(images):
        inputs, outputs = extract_neighbourhoods(images, 5)
        assert inputs.shape[-1] == num_inputs(5, channels) == 24  # static last dimension
        return inputs, outputs

    for shape in [(2, 5, 7), (1, 8, 6)]:
        images = position_image(*shape[1:], channels=channels, batch=shape[0])
        inputs, outputs = extract(images)
        eager_in, eager_out = extract_neighbourhoods(images, 5)
        h, w = valid_shape(shape[1], shape[2], 5)
        assert tuple(inputs.shape) == (shape[0], h, w, 24)
        assert tuple(outputs.shape) == (shape[0], h, w, channels)
        np.testing.assert_array_equal(inputs.numpy(), eager_in.numpy())
        np.testing.assert_array_equal(outputs.numpy(), eager_out.numpy())
    assert extract.experimental_get_tracing_count() == 1


def test_minimal_image_gives_one_pixel():
    image = position_image(3, 5)
    inputs, outputs = extract_neighbourhoods(image, 5)
    assert tuple(inputs.shape) == (1, 1, 1, 12)
    assert outputs.numpy().ravel().tolist() == [22]


@pytest.mark.parametrize("height,width,nb_size", [(4, 6, 3), (5, 9, 5), (7, 7, 7), (10, 3, 3), (12, 20, 5)])
def test_valid_shape_matches_outputs(height, width, nb_size):
    r = nb_size // 2
    assert valid_shape(height, width, nb_size) == (height - r, width - 2 * r)
    inputs, outputs = extract_neighbourhoods(position_image(height, width), nb_size)
    assert tuple(inputs.shape[1:3]) == valid_shape(height, width, nb_size)
    assert tuple(outputs.shape[1:3]) == valid_shape(height, width, nb_size)
    assert inputs.shape[-1] == num_inputs(nb_size)
