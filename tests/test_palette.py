"""Tests of the palette coder (`ride_tf.codec.palette` and its C version `palette.c`): the C coder writes the
reference's bytes, every image comes back, repeated patterns cost little, and bad input raises."""
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ride_tf import codec
from ride_tf.codec import palette
from ride_tf.codec.palette import PaletteError

needs_c = pytest.mark.skipif(not palette.available(), reason="the C palette coder is not built here")


def window(height=96, width=160, channels=3):
    """A drawn screen image: a title bar, panels with text, a gradient (uint8 [H, W, channels])."""
    picture = Image.new("RGB", (width, height), (236, 236, 236))
    draw = ImageDraw.Draw(picture)
    draw.rectangle([0, 0, width, 14], fill=(48, 63, 96))
    draw.text((4, 2), "ride-tf window", fill=(255, 255, 255))
    for k in range(4):
        draw.text((6, 20 + 16 * k), f"item {k:02d} settings", fill=(20, 20, 20))
    ramp = np.linspace(60, 220, width // 2).astype(np.uint8)
    picture.paste(Image.fromarray(np.repeat(np.stack([ramp, ramp // 2, 255 - ramp], -1)[None], 10, 0)),
                  (width // 2, height - 12))
    if channels == 1:
        picture = picture.convert("L")
    pixels = np.array(picture)
    return pixels.reshape(height, width, channels)


def images():
    rng = np.random.default_rng(0)
    few = rng.integers(0, 5, (23, 31, 1)).astype(np.uint8) * 60
    colours = rng.integers(0, 256, (40, 3)).astype(np.uint8)
    return {
        "window, rgb": window(),
        "window, gray": window(channels=1),
        "few gray values": few,
        "40 colours": colours[rng.integers(0, 40, (17, 29))],
        "two values": np.where(rng.random((20, 20, 1)) < 0.3, 255, 0).astype(np.uint8),
        "one row": rng.integers(0, 3, (1, 50, 1)).astype(np.uint8),
        "one column": rng.integers(0, 3, (50, 1, 3)).astype(np.uint8),
        "1 x 1": np.array([[[7]]], np.uint8),
        "constant": np.full((9, 13, 3), 200, np.uint8),
        "every gray value": np.arange(256, dtype=np.uint8).reshape(16, 16, 1),
    }


@needs_c
@pytest.mark.parametrize("name", list(images()))
def test_the_c_coder_writes_the_reference_bytes_and_both_decode_them(name):
    """For drawn, random, constant and degenerate images: C bytes == reference bytes; both decoders give back
    the image bit for bit."""
    image = images()[name]
    data = palette.encode(image, "native")
    assert data == palette.encode(image, "reference")
    for engine in ("native", "reference"):
        back = palette.decode(data, *image.shape, engine=engine)
        assert back.dtype == np.uint8 and np.array_equal(back, image), engine


def test_num_colours_counts_the_palette():
    """`num_colours` (flags) equals the length of `colours`'s palette (a sort) on every test image, and on a
    4-channel image."""
    four = np.random.default_rng(6).integers(0, 3, (9, 11, 4)).astype(np.uint8)
    for name, image in {**images(), "four channels": four}.items():
        assert palette.num_colours(image) == len(palette.colours(image)[0]), name


def test_every_image_comes_back_with_the_default_engine():
    for name, image in images().items():
        back = palette.decode(palette.encode(image), *image.shape)
        assert np.array_equal(back, image), name


@needs_c
def test_the_largest_palette_codes_and_one_more_colour_is_refused():
    """4096 distinct colours code (12-bit escape codes) and come back; 4097 raise ValueError naming the count."""
    codes = np.random.default_rng(1).permutation(1 << 24)[:4097]
    rgb = np.stack([(codes >> (8 * c)) & 255 for c in range(3)], -1).astype(np.uint8)
    image = np.concatenate([rgb[:4096], rgb[:4096]]).reshape(128, 64, 3)
    assert len(palette.colours(image)[0]) == 4096 and palette.applicable(image)
    assert np.array_equal(palette.decode(palette.encode(image), *image.shape), image)
    many = np.concatenate([rgb, rgb[:4095]]).reshape(128, 64, 3)
    assert not palette.applicable(many)
    with pytest.raises(ValueError, match="4097 distinct colours, more than 4096"):
        palette.encode(many)
    with pytest.raises(ValueError, match="4097 distinct colours"):
        codec.compress_palette(many)


def test_a_repeated_pattern_costs_a_fraction_of_its_first_copy():
    """A random 2-colour 12 x 12 tile repeated 16 x 16 times: the context models learn it, so the 256 copies cost
    less than 8 times the tile alone (measured 6.1)."""
    tile = np.where(np.random.default_rng(2).random((12, 12, 1)) < 0.5, 255, 0).astype(np.uint8)
    single = 8 * len(palette.encode(tile))
    tiled = 8 * len(palette.encode(np.tile(tile, (16, 16, 1))))
    assert single > 100 and tiled < 8 * single, (single, tiled)


def test_a_drawn_window_costs_less_than_its_png():
    """On a drawn 192 x 320 screen image (panels, anti-aliased text, a gradient) the palette coder's payload is
    below 0.75 of the PNG file (Pillow, optimize=True; measured 0.66 gray, 0.64 colour)."""
    for channels in (1, 3):
        image = window(192, 320, channels)
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if channels == 1 else image).save(buffer, "PNG", optimize=True)
        data = palette.encode(image)
        assert len(data) < 0.75 * len(buffer.getvalue()), (channels, len(data), len(buffer.getvalue()))


def test_screen_images_and_few_colours_look_synthetic_and_photographs_do_not():
    """`looks_synthetic`: a drawn window (flat share above 0.9) and dithered two-colour noise (2 colours) do, a
    photograph's crop (flat share below 0.35) and an image of more than 4096 colours do not; `compress_best`
    with palette="auto" tries the palette coder only on the former."""
    from skimage import data

    drawn = window(96, 160)
    dithered = np.where(np.random.default_rng(3).random((40, 40, 1)) < 0.5, 255, 0).astype(np.uint8)
    photo = data.camera()[100:228, 100:228, None]
    assert palette.flat_share(drawn) > 0.9 and palette.flat_share(photo) < 0.35      # 0.906, 0.291
    assert palette.looks_synthetic(drawn) and palette.looks_synthetic(dithered)
    assert not palette.looks_synthetic(photo) and palette.applicable(photo)
    noise = np.random.default_rng(4).integers(0, 256, (80, 80, 3)).astype(np.uint8)
    assert not palette.looks_synthetic(noise)


def test_a_trial_band_finds_dead_leaves_worth_trying_though_they_do_not_look_synthetic():
    """Dead leaves (256 x 256, 256 gray values) repeat a neighbour at fewer than 80% of the pixels, so they do
    not look synthetic; the trial band's rate (measured 2.37 bit/px) sends them to the palette coder against a
    rival at 3 bit/px (the gray photo model takes 3.24) and not against one at 1.5."""
    from ride_tf import data as image_data

    leaves = image_data.dead_leaves(1, size=256, seed=123)[0][..., None]
    assert 0.6 < palette.flat_share(leaves) < palette.SYNTHETIC_FLAT_SHARE and not palette.looks_synthetic(leaves)
    rate = palette.trial_rate(leaves)
    assert 2.0 < rate < 2.6, rate
    assert palette.worth_trying(leaves, 3.0 * leaves.size)
    assert not palette.worth_trying(leaves, 1.5 * leaves.size)
    assert 8 * len(palette.encode(leaves)) < 2.4 * leaves.size


def test_squash_and_stretch_are_inverse_integer_maps():
    """squash(0) = 2047 (PAQ's knots), squash rises from 1 to 4094 over [-2047, 2047], and stretch(p) is the
    smallest d with squash(d) >= p for every p it reaches."""
    values = [palette.squash(d) for d in range(-2047, 2048)]
    assert palette.squash(0) == 2047 and values[0] == 1 and values[-1] == 4094
    assert all(b >= a for a, b in zip(values, values[1:]))
    for p in range(1, 4095):
        d = palette.stretch(p)
        assert palette.squash(d) >= p and (d == -2047 or palette.squash(d - 1) < p), p


def test_corrupted_payloads_raise_or_fail_the_file_checksum():
    """Truncated and damaged payloads raise PaletteError in the decoder or decode to an image of the announced
    shape (never a crash); in a file, the container's checksums catch them: `decompress` raises CodecError,
    never returns wrong pixels."""
    image = window(48, 80)
    payload = palette.encode(image)
    with pytest.raises(PaletteError):
        palette.decode(payload[:5], *image.shape)
    with pytest.raises(PaletteError, match="palette"):
        palette.decode(payload[:8] + b"\x00" * 3 + payload[11:], *image.shape)
    block = int.from_bytes(payload[4:8], "big")
    for cut in (len(payload) - 1, 8 + block + 2):
        damaged = payload[:cut] + bytes(b ^ 0x5A for b in payload[cut:])
        try:
            back = palette.decode(damaged, *image.shape)
        except PaletteError:
            continue
        assert back.shape == image.shape and back.dtype == np.uint8
    data = codec.compress_palette(image)
    header = codec.read_header(data)
    for position in (header.size + 20, len(data) - 3):
        flipped = bytearray(data)
        flipped[position] ^= 0x5A
        with pytest.raises(codec.CodecError):
            codec.decompress(None, bytes(flipped))


def test_engine_choices_are_checked(monkeypatch):
    image = window(24, 32)
    with pytest.raises(ValueError, match="engine must be one of"):
        palette.encode(image, "fast")
    monkeypatch.setattr(palette, "native_setting", lambda: "0")        # as RIDE_TF_NATIVE=0 at the start
    assert not palette.available()
    with pytest.raises(ValueError, match="needs the C kernels"):
        palette.encode(image, "native")
    assert np.array_equal(palette.decode(palette.encode(image), *image.shape), image)


@needs_c
def test_the_c_coder_refuses_bad_arguments():
    from ride_tf.codec import palette_kernels

    indices = np.zeros((4, 5), np.int32)
    with pytest.raises(ValueError, match="20 x 5"):
        palette_kernels.encode(indices.tobytes(), 20, 5, 2)
    with pytest.raises(ValueError, match=r"index 3 outside \[0, 2\)"):
        palette_kernels.encode((indices + 3).tobytes(), 4, 5, 2)
    with pytest.raises(ValueError, match="colours must lie in"):
        palette_kernels.encode(indices.tobytes(), 4, 5, 1)
    with pytest.raises(ValueError, match="out of range"):
        palette_kernels.decode(b"", 0, 5, 2)
