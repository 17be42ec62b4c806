"""Tests of the XLA-compiled decoder (`ride_tf.codec.compiled`): the same pixels as the NumPy decoder for every
stream it decodes, and the same refusals for streams that do not decode."""
import numpy as np
import pytest

from ride_tf import codec, data as image_data, pretrained
from ride_tf.codec import coding, compiled
from ride_tf.codec.rans import RansError
from test_discrete import colour_dead_leaves, small_ride


def roundtrip(model, image):
    """(NumPy-decoded, compiled-decoded) images of the stream of `image`."""
    coder = coding.coder_for(codec.integer_model(model))
    data = coding.encode(coder, image)
    height, width = image.shape[:2]
    return coding.decode(coder, data, height, width), compiled.decode(coder, data, height, width)


@pytest.mark.parametrize("channels, layers, order, shape", [
    (1, 2, None, (13, 17)),           # two layers: both layers' states carried front to front
    (1, 0, None, (6, 9)),             # the MCGSM alone
    (3, 1, (2, 0, 1), (9, 11)),       # colour, channels coded in another order
    (1, 1, None, (7, 2)),             # narrower than r + 1 = 3 columns: fronts without pixels
])
def test_the_compiled_decoder_gives_back_every_image_the_numpy_decoder_does(channels, layers, order, shape):
    model = small_ride(num_channels=channels, num_layers=layers)
    model.coding_order = order
    height, width = shape
    image = (colour_dead_leaves(1, max(shape))[0, :height, :width] if channels == 3
             else image_data.dead_leaves(1, size=max(shape), seed=5)[0, :height, :width, None])
    reference, decoded = roundtrip(model, np.ascontiguousarray(image))
    np.testing.assert_array_equal(reference, image)
    np.testing.assert_array_equal(decoded, image)


def test_the_compiled_decoder_decodes_photo_noise_and_constant_images_of_the_shipped_model():
    """One program per shape: a photo crop, noise and a constant image of the same shape share it."""
    model = pretrained("gray")
    rng = np.random.default_rng(3)
    images = [pretrained.load_photo("camera", 1, crop=False)[200:231, 100:141],
              rng.integers(0, 256, (31, 41, 1), dtype=np.uint8), np.full((31, 41, 1), 255, np.uint8)]
    coder = coding.coder_for(codec.integer_model(model))
    for image in images:
        data = coding.encode(coder, np.ascontiguousarray(image))
        np.testing.assert_array_equal(compiled.decode(coder, data, 31, 41), image)
    assert compiled.is_compiled(coder, 31, 41) and not compiled.is_compiled(coder, 41, 31)


def test_the_compiled_decoder_refuses_streams_that_do_not_decode():
    model = small_ride(num_channels=1, num_layers=1)
    image = image_data.dead_leaves(1, size=12, seed=2)[0][..., None]
    coder = coding.coder_for(codec.integer_model(model))
    data = bytearray(coding.encode(coder, image))
    lanes = coding.num_lanes(12, 12, 1)
    corrupted = bytes(data[:8 * lanes]) + bytes(b ^ 0x5A for b in data[8 * lanes:])
    for bad in (corrupted, bytes(data[:-4]), bytes(data[:8 * lanes - 1])):
        with pytest.raises(RansError):
            compiled.decode(coder, bad, 12, 12)
    np.testing.assert_array_equal(compiled.decode(coder, bytes(data), 12, 12), image)


def test_decompress_takes_either_decoder_and_names_a_wrong_one():
    model = small_ride(num_channels=1, num_layers=1)
    image = image_data.dead_leaves(1, size=10, seed=4)[0][..., None]
    data = codec.compress(model, image)
    for decoder in codec.DECODERS:
        np.testing.assert_array_equal(codec.decompress(model, data, decoder=decoder), image)
    with pytest.raises(ValueError, match="decoder must be one of"):
        codec.decompress(model, data, decoder="fast")
