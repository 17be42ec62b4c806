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
