"""Tests of colour by planes (`ride_tf.codec.planes`): the reversible colour transform is a bijection, and colour
images coded plane by plane with a gray model decode bit for bit at the size `compressed_size_bits` reports."""
import numpy as np
import pytest

import ride_tf
from ride_tf import codec
from ride_tf.codec import planes
from test_discrete import colour_dead_leaves, small_ride


def test_the_colour_transform_is_a_bijection_of_all_2_to_the_24_colours():
    values = np.arange(1 << 24, dtype=np.int64)
    rgb = np.stack([values >> 16, (values >> 8) & 255, values & 255], -1).astype(np.uint8)
    p = planes.forward(rgb)
    np.testing.assert_array_equal(planes.inverse(p), rgb)
    code = (p[:, 0].astype(np.int64) << 16) | (p[:, 1].astype(np.int64) << 8) | p[:, 2]
    assert len(np.unique(code)) == 1 << 24                                 # onto: every triple once
    # G, then R and B as differences from G, offset by 128 and wrapped.
    np.testing.assert_array_equal(planes.forward(np.array([[10, 200, 255]], np.uint8)), [[200, 194, 183]])


@pytest.fixture(scope="module")
def gray_model():
    return small_ride(num_channels=1, num_layers=1)


@pytest.mark.parametrize("shape, kind", [((13, 17), "leaves"), ((7, 2), "leaves"), ((1, 1), "noise"),
                                         ((9, 11), "noise"), ((6, 5), "constant")])
def test_colour_images_coded_by_planes_decode_bit_for_bit_with_both_decoders(gray_model, shape, kind):
    height, width = shape
    rng = np.random.default_rng(height * width)
    image = {"leaves": lambda: colour_dead_leaves(1, max(shape), seed=3)[0, :height, :width],
             "noise": lambda: rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
             "constant": lambda: np.full((height, width, 3), (250, 3, 128), np.uint8)}[kind]()
    image = np.ascontiguousarray(image)
    data = codec.compress(gray_model, image, colour_transform="rct")
    for decoder in ("numpy", "compiled"):
        np.testing.assert_array_equal(codec.decompress(gray_model, data, decoder=decoder), image)


def test_the_size_of_planes_is_the_sum_of_the_planes_and_the_file_holds_it(gray_model):
    image = colour_dead_leaves(1, 20, seed=5)[0]
    bits = codec.compressed_size_bits(gray_model, image[None], colour_transform="rct")[0]
    p = planes.forward(image)
    separate = sum(codec.compressed_size_bits(gray_model, p[None, ..., c:c + 1])[0] for c in range(3))
    assert bits == pytest.approx(separate, rel=1e-12)
    data = codec.compress(gray_model, image, colour_transform="rct")
    payload_bits = 8 * (len(data) - codec.read_header(data).size)
    lanes = codec.coding.num_lanes(20, 20, 1)
    assert bits <= payload_bits <= bits + 3 * (96 * lanes + 32) + 64, (payload_bits, bits)


def test_planes_files_need_the_same_gray_model_and_bad_arguments_are_named(gray_model):
    image = colour_dead_leaves(1, 12, seed=6)[0]
    data = codec.compress(gray_model, image, colour_transform="rct")
    other = small_ride(num_channels=1, num_layers=1, seed=1)
    with pytest.raises(codec.CodecError, match="another model"):
        codec.decompress(other, data)
    colour = small_ride(num_channels=3, num_layers=1)
    with pytest.raises(codec.CodecError, match="another model"):
        codec.decompress(colour, data)
    with pytest.raises(ValueError, match="colour_transform must be one of"):
        codec.compress(gray_model, image, colour_transform="ycbcr")
    with pytest.raises(ValueError, match="grayscale model"):
        codec.compress(colour, image, colour_transform="rct")
    with pytest.raises(ValueError, match="3 channel"):
        codec.compress(gray_model, image[..., :1], colour_transform="rct")
    with pytest.raises(ValueError, match="grayscale model"):
        ride_tf.compressed_size_bits(colour, image[None], colour_transform="rct")
    truncated = codec.format.write_container(image, codec.read_header(data).fingerprint, b"\0\0\0", b"")
    with pytest.raises(codec.CodecError, match="range decoder failed"):
        codec.decompress(gray_model, truncated)
