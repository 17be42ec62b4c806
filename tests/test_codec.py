"""Tests of the lossless codec (`ride_tf.codec`): round trips, sizes, determinism across processes, bad files."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ride_tf import codec, data as image_data, discrete
from test_discrete import colour_dead_leaves, small_ride

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gray():
    return small_ride(num_layers=2)


@pytest.fixture(scope="module")
def colour():
    return small_ride(num_channels=3, num_layers=1)


def texture_crop(height, width):
    from skimage import data

    return data.brick()[100:100 + height, 50:50 + width]


def gray_images():
    rng = np.random.default_rng(0)
    return {
        "dead leaves": image_data.dead_leaves(1, size=32, seed=8)[0],
        "texture": texture_crop(24, 30),
        "uniform noise": rng.integers(0, 256, (16, 16), dtype=np.uint8),
        "constant": np.full((12, 12), 200, np.uint8),
        "1 x 1": np.array([[17]], np.uint8),
        "3 x 200": image_data.dead_leaves(1, size=(3, 200), seed=2)[0],
        "37 x 53": image_data.dead_leaves(1, size=(37, 53), seed=4)[0],
        "extremes": np.tile(np.array([[0, 255], [255, 0]], np.uint8), (5, 7)),
    }


def check_round_trip(model, image):
    data = codec.compress(model, image)
    decoded = codec.decompress(model, data)
    expected = image if image.ndim == 3 else image[..., None]
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    np.testing.assert_array_equal(decoded, expected)
    pixel_bits = -discrete.pixel_log_mass(model, expected[None])[0] / np.log(2.0)
    exact = pixel_bits.sum()
    payload_bits = 8 * (len(data) - codec.HEADER_SIZE)
    # Within 1% of the exact size, plus the range coder's last 32-bit words.  The coder gives every
    # value at least 2^-24, so pixels the model finds less likely than that cost it only ~24 bits.
    floored = np.minimum(pixel_bits, 24.0).sum()
    assert 0.99 * floored - 64 <= payload_bits <= 1.01 * exact + 64, (payload_bits, exact, floored)
    if floored == exact:
        assert abs(payload_bits - exact) <= 0.01 * exact + 64
    return data


@pytest.mark.parametrize("name", list(gray_images()))
def test_grayscale_round_trip_is_bit_exact_and_the_size_matches_the_exact_size(gray, name):
    check_round_trip(gray, gray_images()[name])


@pytest.mark.parametrize("shape", [(20, 22), (1, 1), (3, 40)])
def test_colour_round_trip_is_bit_exact_and_the_size_matches_the_exact_size(colour, shape):
    from skimage import data

    images = {(20, 22): colour_dead_leaves(1, 22)[0, :20], (1, 1): np.array([[[3, 250, 128]]], np.uint8),
              (3, 40): data.astronaut()[200:203, 100:140]}
    check_round_trip(colour, images[shape])


def test_decoding_in_a_fresh_process_with_another_thread_count(gray, tmp_path):
    """The decoder reproduces the encoder's tables bit for bit in another process with 1 thread (TensorFlow's and
    the coder's), the model loaded by Keras itself."""
    model_path = tmp_path / "model.keras"
    gray.save(model_path)
    image = image_data.dead_leaves(1, size=(30, 41), seed=12)[0]
    data_path = tmp_path / "image.ride"
    data_path.write_bytes(codec.compress(gray, image))
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        import keras
        import ride_tf.model     # its classes register with Keras
        from ride_tf import codec
        model = keras.saving.load_model({str(model_path)!r})
        image = codec.decompress(model, open({str(data_path)!r}, "rb").read(), threads=1)
        np.save({str(tmp_path / "decoded.npy")!r}, image)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "decoded.npy")[..., 0], image)


def test_the_header_describes_the_image_and_the_model(gray):
    image = image_data.dead_leaves(1, size=(9, 14), seed=1)[0]
    header = codec.read_header(codec.compress(gray, image))
    assert (header.height, header.width, header.channels) == (9, 14, 1)
    assert header.fingerprint == codec.model_fingerprint(gray)


def test_a_file_for_another_model_is_refused(gray, colour):
    data = codec.compress(gray, image_data.dead_leaves(1, size=10, seed=1)[0])
    other = small_ride(num_layers=2, seed=1)
    with pytest.raises(codec.CodecError, match="another model"):
        codec.decompress(other, data)
    with pytest.raises(codec.CodecError, match="channel"):
        codec.decompress(colour, data)


def test_truncated_corrupted_and_foreign_files_raise_codec_error(gray):
    data = codec.compress(gray, image_data.dead_leaves(1, size=12, seed=1)[0])
    with pytest.raises(codec.CodecError, match="truncated"):
        codec.decompress(gray, data[:-4])
    with pytest.raises(codec.CodecError, match="truncated"):
        codec.decompress(gray, data[:20])
    with pytest.raises(codec.CodecError, match="not a ride-tf"):
        codec.decompress(gray, b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(codec.CodecError, match="not a ride-tf"):
        codec.decompress(gray, b"")
    corrupted = bytearray(data)
    corrupted[-3] ^= 0x10
    with pytest.raises(codec.CodecError, match="corrupted"):
        codec.decompress(gray, bytes(corrupted))
    with pytest.raises(codec.CodecError, match="corrupted"):
        codec.decompress(gray, data + b"\x00" * 4)
    with pytest.raises(TypeError, match="bytes"):
        codec.decompress(gray, "a string")


def test_fuzzed_files_never_decode_to_a_wrong_image(gray):
    """Random mutations (bit flips, byte changes, cuts, insertions) give CodecError or the right image."""
    image = image_data.dead_leaves(1, size=10, seed=3)[0]
    data = codec.compress(gray, image)
    rng = np.random.default_rng(0)
    outcomes = {"error": 0, "same": 0}
    for trial in range(60):
        mutated = bytearray(data)
        kind = trial % 4
        position = int(rng.integers(0, len(mutated)))
        if kind == 0:
            mutated[position] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            mutated[position] = int(rng.integers(0, 256))
        elif kind == 2:
            mutated = mutated[:position]
        else:
            mutated[position:position] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        try:
            decoded = codec.decompress(gray, bytes(mutated))
        except codec.CodecError:
            outcomes["error"] += 1
        else:
            np.testing.assert_array_equal(decoded[..., 0], image)
            outcomes["same"] += 1
    assert outcomes["error"] >= 50, outcomes
    for _ in range(20):     # random bytes, with and without the magic in front
        junk = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        for candidate in (junk, codec.MAGIC + junk):
            with pytest.raises(codec.CodecError):
                codec.decompress(gray, candidate)


def test_bad_images_are_refused_with_a_clear_message(gray):
    with pytest.raises(ValueError, match="uint8"):
        codec.compress(gray, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="one image"):
        codec.compress(gray, np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="channel"):
        codec.compress(gray, np.zeros((4, 4, 3), np.uint8))


def test_compress_best_keeps_the_shortest_file_and_refuses_bad_candidates(gray, colour):
    """Of a colour model coding jointly and a gray model coding by planes, `compress_best` returns the shorter
    file (its index), which decodes with that model; no candidates or a bare model are refused by name."""
    image = colour_dead_leaves(1, (14, 17), seed=3)[0]
    candidates = [(colour, None), (gray, "rct")]
    files = [codec.compress(model, image, colour_transform=transform) for model, transform in candidates]
    data, index = codec.compress_best(candidates, image)
    assert len(data) == min(len(f) for f in files) and data == files[index]
    np.testing.assert_array_equal(codec.decompress(candidates[index][0], data), image)
    assert codec.compress_best(candidates[::-1], image)[1] == 1 - index or len(files[0]) == len(files[1])
    with pytest.raises(ValueError, match="at least one"):
        codec.compress_best([], image)
    with pytest.raises(TypeError, match=r"candidates\[0\]"):
        codec.compress_best([colour], image)


def test_compress_best_tries_the_palette_coder_and_its_files_decode_without_a_model(gray):
    """palette=True: on a drawn screen image the palette coder's file (index len(candidates)) is shorter than
    the model's and equals `compress_palette`'s; it decodes with any model or None (every decoder choice).  A
    model's file with None is refused by name; an image of more than 4096 colours is not given to the palette
    coder, and `compress_palette` refuses it; "auto" leaves a photograph to the shipped model.  A file of a model
    that is neither shipped nor cached, decoded without it, is refused with its fingerprint named."""
    from test_palette import window

    image = window(48, 80, channels=1)
    data, index = codec.compress_best([(gray, None)], image, palette=True)
    assert index == 1 and data == codec.compress_palette(image)
    assert len(data) < len(codec.compress(gray, image))
    assert codec.is_palette_file(codec.read_header(data))
    for decoder in codec.DECODERS[:1] + codec.DECODERS[2:]:
        np.testing.assert_array_equal(codec.decompress(None, data, decoder=decoder), image)
    np.testing.assert_array_equal(codec.decompress(gray, data), image)
    own = codec.compress(gray, image)
    with pytest.raises(codec.UnknownModelError, match=codec.model_fingerprint(gray).hex()):
        codec.decompress(None, own)
    with pytest.raises(codec.UnknownModelError, match="ride-tf decompress FILE OUT --model MODEL"):
        codec.decompress(own)
    codes = np.random.default_rng(5).integers(0, 1 << 24, (80, 80))
    rgb = np.stack([(codes >> (8 * c)) & 255 for c in range(3)], -1).astype(np.uint8)
    assert codec.compress_best([(gray, "rct")], rgb, palette=True)[1] == 0
    with pytest.raises(ValueError, match="distinct colours, more than 4096"):
        codec.compress_palette(rgb)
    assert codec.compress_best([(gray, None)], image, palette="auto")[1] == 1
    from skimage import data

    from ride_tf import pretrained

    shipped, photo = pretrained.load("gray"), data.camera()[200:264, 200:264]
    assert codec.compress_best([(shipped, None)], photo, palette="auto") == (codec.compress(shipped, photo), 0)
    with pytest.raises(ValueError, match="palette must be True, False or 'auto'"):
        codec.compress_best([(gray, None)], image, palette="yes")


def test_palette_alternative_is_the_palette_file_where_its_choice_tries_it():
    """`palette_alternative`: the file of `compress_palette` (with the metadata) for True and, on a drawn screen
    image, for "auto" whatever the rival; None for False, for "auto" on a photograph against the shipped model's
    file, and for an image of more than 4096 colours; a bad choice raises naming it."""
    from skimage import data

    from ride_tf import pretrained
    from test_palette import window

    image = window(48, 80, channels=1)
    expected = codec.compress_palette(image, b"mode")
    for choice in (True, "auto"):
        assert codec.palette_alternative(image, 1.0, choice, metadata=b"mode") == expected
    assert codec.palette_alternative(image, 1.0, False) is None
    shipped, photo = pretrained.load("gray"), data.camera()[200:264, 200:264]
    assert codec.palette_alternative(photo, 8 * len(codec.compress(shipped, photo)), "auto") is None
    codes = np.random.default_rng(5).integers(0, 1 << 24, (80, 80))
    rgb = np.stack([(codes >> (8 * c)) & 255 for c in range(3)], -1).astype(np.uint8)
    assert codec.palette_alternative(rgb, 1e9, True) is None
    with pytest.raises(ValueError, match="palette_alternative: palette must be True, False or 'auto'"):
        codec.palette_alternative(image, 1.0, "yes")
