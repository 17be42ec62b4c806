"""Structure a density cannot express, coded exactly beside the model (`ride_tf.codec.structure`): an RGB image with
three equal channels coded as one gray plane, and histograms with gaps coded as indices in tables of used values."""
import numpy as np
import pytest

from ride_tf import codec, pretrained
from ride_tf.codec import structure


def camera(height=48, width=64):
    return np.ascontiguousarray(pretrained.load_photo("camera", 1, crop=False)[200:200 + height, 150:150 + width])


def coffee(height=40, width=56):
    return np.ascontiguousarray(pretrained.load_photo("coffee", 3, crop=False)[100:100 + height, 200:200 + width])


def test_an_rgb_file_with_equal_channels_costs_what_the_gray_image_costs():
    """Three equal channels are found and coded once by the gray model: the file is at most 1% (here 48 bytes
    of header and fingerprint variant aside: the same stream) larger than the gray image's, it decodes to the
    three channels, and it is smaller than the RCT planes' file."""
    gray = camera()
    rgb = np.repeat(gray, 3, axis=-1)
    data, index = codec.compress_best([("rgb", None), ("gray", "rct")], rgb)
    assert index == 1
    header = codec.read_header(data)
    assert header.fingerprint == structure.coding_fingerprint(codec.model_fingerprint("gray"), "equal")
    gray_file = codec.compress("gray", gray)
    assert len(data) - len(gray_file) == 0                            # the same header size and stream
    assert len(data) <= 1.01 * len(gray_file)
    assert len(data) < len(codec.compress("gray", rgb, colour_transform="rct"))
    np.testing.assert_array_equal(codec.decompress(data), rgb)
    np.testing.assert_array_equal(codec.decompress("gray", data), rgb)
    with pytest.raises(ValueError, match="three channels are equal"):
        codec.compress("gray", coffee(), colour_transform="equal")


def test_a_gapped_histogram_costs_what_its_dense_remapping_costs_plus_its_table():
    """A picture halved and doubled (only even values) is packed: its exact size is that of the same picture with
    its values remapped to a dense range (each value replaced by its rank among the values used) plus the
    256-bit table, its file 32 bytes longer than the dense picture's, and far shorter than the plain coding's;
    it decodes bit for bit."""
    gray = camera()
    gapped = gray // 2 * 2
    ranks = np.cumsum(np.bincount(gapped.reshape(-1), minlength=256) > 0) - 1
    dense = ranks[gapped].astype(np.uint8)
    assert len(np.unique(dense)) == dense.max() + 1                  # dense: every value up to the largest used
    assert structure.worth_packing(gapped) and not structure.worth_packing(gray)
    dense_bits = codec.compressed_size_bits("gray", dense[None])[0]
    assert codec.compressed_size_bits("gray", gapped[None], packed=True)[0] == dense_bits + 256
    data, _ = codec.compress_best([("gray", None)], gapped)
    assert len(data) == len(codec.compress("gray", dense)) + structure.TABLE_BYTES
    assert len(data) < 0.95 * len(codec.compress("gray", gapped))
    np.testing.assert_array_equal(codec.decompress(data), gapped)


@pytest.mark.parametrize("coding", [("rgb", None), ("gray", "rct")])
def test_colour_files_pack_each_channel(coding):
    """In colour, each channel gets its own table (jointly and by planes); the round trip is exact and the tables
    are 32 bytes per channel."""
    image = coffee()
    image = (image // 4 * 4 + np.array([0, 1, 2], np.uint8)).astype(np.uint8)       # every 4th value, shifted
    plain = codec.compress(coding[0], image, colour_transform=coding[1])
    packed = codec.compress(coding[0], image, colour_transform=coding[1], packed=True)
    np.testing.assert_array_equal(codec.decompress(packed), image)
    assert len(packed) < len(plain)
    dense = np.stack([np.searchsorted(np.unique(image[..., c]), image[..., c]) for c in range(3)], -1).astype(np.uint8)
    bits = codec.compressed_size_bits(coding[0], image[None], colour_transform=coding[1], packed=True)[0]
    assert bits == codec.compressed_size_bits(coding[0], dense[None], colour_transform=coding[1])[0] + 3 * 256


def test_photographs_without_gaps_are_not_tried_packed():
    """A photograph whose values fill their range gives `compress_best` no packed coding to try (no extra
    encoding): only the candidates themselves."""
    tried = codec.codings_to_try([("rgb", None), ("gray", "rct")], coffee())
    assert [(t, p, k) for _, t, p, k in tried] == [(None, False, 0), ("rct", False, 1)]


def test_damaged_tables_are_refused():
    """A packed file whose tables are cut or emptied fails its checks (a CodecError), never wrong pixels."""
    data = codec.compress("gray", camera() // 2 * 2, packed=True)
    header = codec.read_header(data)
    start = header.size
    empty = data[:start] + bytes(structure.TABLE_BYTES) + data[start + structure.TABLE_BYTES:]
    for bad in (data[:start + 10], empty):
        with pytest.raises(codec.CodecError):
            codec.decompress(bad)
    used = structure.used_values(camera())
    with pytest.raises(structure.PackingError, match="table"):
        structure.read_tables(b"\x00" * 5, 1)
    assert structure.read_tables(structure.table_bytes(used) + b"rest", 1)[1] == b"rest"
    np.testing.assert_array_equal(structure.read_tables(structure.table_bytes(used), 1)[0], used)


# ------------------------------------------------------------------ per-image adaptation
def smooth():
    """A gray photograph region of 48,000 pixels (the top of coffee: the table and a blurred background)."""
    return np.ascontiguousarray(pretrained.load_photo("coffee", 1, crop=False)[0:160, 0:300])


def test_priors_fitted_to_an_image_shorten_its_file_and_decode_exactly():
    """On this region the fitted priors lower the exact size by more than 0.3%, shifts included (64 bytes for the
    64 experts of "gray"; measured 0.56%), and the file decodes bit for bit, with the model named or found by
    fingerprint; the exact size of the adapted coding is its file's payload (less the lanes' few bytes)."""
    from ride_tf.codec import adapt

    image = smooth()
    plain = codec.compressed_size_bits("gray", image[None])[0]
    adapted = codec.compressed_size_bits("gray", image[None], adapted=True)[0]
    assert adapted < 0.997 * plain
    data = codec.compress("gray", image, adapted=True)
    header = codec.read_header(data)
    assert header.fingerprint == structure.coding_fingerprint(codec.model_fingerprint("gray"), None, False, True)
    assert adapted <= 8 * (len(data) - header.size) <= adapted + 96 * 32
    np.testing.assert_array_equal(codec.decompress(data), image)
    np.testing.assert_array_equal(codec.decompress("gray", data), image)
    shifts, _ = adapt.read_shifts(data[header.size:], 1, 64)
    assert np.abs(shifts[0]).max() > 0


def test_compress_best_keeps_the_adapted_file_only_where_it_is_shorter():
    """adapt=True adds one coding, the shortest one adapted, and the shorter file is kept: on this region the
    adapted one; the colour planes are adapted plane by plane (3 x 64 bytes of shifts)."""
    image = smooth()
    tries = codec.compress_tries([("gray", None)], image, adapt=True)
    assert [coding for _, _, coding in tries] == [(None, False, False), (None, False, True)]
    data, _ = codec.compress_best([("gray", None)], image, adapt=True)
    assert data == min((f for f, *_ in tries), key=len) == tries[1][0]
    colour = np.ascontiguousarray(pretrained.load_photo("coffee", 3, crop=False)[0:64, 0:96])
    planes_file = codec.compress("gray", colour, colour_transform="rct", adapted=True)
    np.testing.assert_array_equal(codec.decompress(planes_file), colour)
    with pytest.raises(ValueError, match="one-channel"):
        codec.compress("rgb", colour, adapted=True)


def test_the_fit_writes_the_same_bytes_with_any_thread_count_and_on_the_reference_path(tmp_path):
    """The shifts are exact arithmetic (integer weights and sums, decimal logarithms): 1 and 3 threads, and a
    process without the C kernels (NumPy, RIDE_TF_NATIVE=0), write the same adapted file."""
    import os
    import subprocess
    import sys

    image = smooth()
    files = [codec.compress("gray", image, adapted=True, threads=t) for t in (1, 3)]
    assert files[0] == files[1]
    np.save(tmp_path / "image.npy", image)
    code = ("import sys, numpy as np; from ride_tf import codec; "
            "sys.stdout.buffer.write(codec.compress('gray', np.load(sys.argv[1]), adapted=True))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "image.npy")], capture_output=True,
                            timeout=600, env=dict(os.environ, RIDE_TF_NATIVE="0"),
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout == files[0]


def test_damaged_shifts_are_refused():
    data = codec.compress("gray", smooth()[:32, :40], adapted=True)         # small: the shifts cost more than
    assert len(data) > len(codec.compress("gray", smooth()[:32, :40]))       # they save, as compress_best finds
    start = codec.read_header(data).size
    bad = bytearray(data)
    bad[start + 3] = 0x80                                 # -128: outside [-127, 127]
    for damaged in (bytes(bad), data[:start + 20]):
        with pytest.raises(codec.CodecError):
            codec.decompress(damaged)
