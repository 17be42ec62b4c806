"""Tests of the coder (`ride_tf.codec.coding`): the coding order, encoder tables equal to the decoder's, and files
that decode in processes running other TensorFlow kernels."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ride_tf import codec, data as image_data, pretrained
from ride_tf.codec import coding
from test_discrete import colour_dead_leaves, small_ride

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_coding_order_visits_every_value_once_in_fronts_with_distinct_lanes():
    height, width, channels, nb_size = 9, 11, 3, 5
    lanes = 2
    order, boundaries = coding.steps(height, width, channels, nb_size, lanes)
    assert sorted(order) == list(range(height * width * channels))
    pixel, channel = order // channels, order % channels
    rows, cols = pixel // width, pixel % width
    fronts = 3 * rows + cols
    assert (np.diff(fronts) >= 0).all()                                   # front by front
    for a, b in zip(boundaries[:-1], boundaries[1:]):
        assert len(np.unique(rows[a:b] % lanes)) == b - a <= lanes        # distinct lanes in a step
        assert len(set(fronts[a:b])) == 1 and len(set(channel[a:b])) == 1


def steps_by_sorting(height, width, channels, nb_size, lanes):
    """The coding order by its definition: every value sorted by (front, channel, round, flat index), a step
    where (front, channel, round) changes."""
    step = nb_size // 2 + 1
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    t = step * i + j
    rounds = (i - np.maximum(0, -((width - 1 - t) // step))) // lanes
    t, rounds, flat = (np.repeat(a.reshape(-1, 1), channels, axis=1).reshape(-1) for a in (t, rounds, i * width + j))
    channel = np.tile(np.arange(channels), height * width)
    values = flat * channels + channel
    order = np.lexsort((values, rounds, channel, t))
    key = np.stack([t[order], channel[order], rounds[order]])
    change = np.nonzero(np.any(key[:, 1:] != key[:, :-1], axis=0))[0] + 1
    return values[order], np.concatenate([[0], change, [len(order)]])


def test_the_coding_order_built_by_segments_equals_its_definition_by_sorting():
    shapes = [(h, w, c, nb, lanes) for h in (1, 2, 7, 16) for w in (1, 2, 3, 4, 9, 17) for c in (1, 3)
              for nb in (3, 5, 7) for lanes in (1, 2, 5, 32)]
    for shape in shapes:
        order, boundaries = coding.steps(*shape)
        expected_order, expected_boundaries = steps_by_sorting(*shape)
        assert np.array_equal(order, expected_order), shape
        assert np.array_equal(boundaries, expected_boundaries), shape
    assert len(shapes) == 576


@pytest.mark.parametrize("channels, layers, order", [(1, 2, None), (3, 1, None), (1, 0, None), (3, 1, (2, 0, 1))])
def test_the_batched_encoder_computes_exactly_the_decoders_tables(channels, layers, order):
    """(start, freq) of every value: the reference encoder's batched pass (bands of rows, LSTM states passed
    on) equals the decoder's front-by-front NumPy pass, integer for integer (any coding order of the channels)."""
    model = small_ride(num_channels=channels, num_layers=layers)
    model.coding_order = order
    image = colour_dead_leaves(1, 23)[0, :, :19] if channels == 3 else image_data.dead_leaves(1, size=(23, 19),
                                                                                           seed=9)[0][..., None]
    coder = coding.coder_for(codec.integer_model(model))
    old = coding.PIXELS_PER_BAND
    try:
        coding.PIXELS_PER_BAND = 19 * 5          # bands of 5 rows: the states cross four band borders
        start, freq = coder.intervals(image, engine="reference")
    finally:
        coding.PIXELS_PER_BAND = old
    front_start, front_freq = coding.front_intervals(coder, image)
    np.testing.assert_array_equal(start, front_start)
    np.testing.assert_array_equal(freq, front_freq)
    assert freq.min() >= 1


MATRIX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import ride_tf
    import tensorflow as tf
    if sys.argv[1] == "1":
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from ride_tf import codec, pretrained
    arrays = dict(np.load(sys.argv[2]))
    out = {}
    threads = 1 if sys.argv[1] == "1" else None
    for name, image in arrays.items():
        if name.endswith(":file"):
            continue
        model = pretrained("rgb" if image.shape[-1] == 3 else "gray")
        out[name + ":encoded"] = np.frombuffer(codec.compress(model, image, threads=threads), np.uint8)
        out[name + ":decoded"] = codec.decompress(model, arrays[name + ":file"].tobytes(), decoder=sys.argv[4],
                                                  threads=threads)
    np.savez(sys.argv[3], **out)
""")


def matrix_images():
    rng = np.random.default_rng(4)
    photo = pretrained.load_photo("coffee", 3, crop=False)[100:140, 200:251]
    gray = pretrained.load_photo("camera", 1, crop=False)[200:248, 100:147]
    return {"gray photo": gray, "gray noise": rng.integers(0, 256, (13, 17, 1), dtype=np.uint8),
            "gray constant": np.full((9, 31, 1), 77, np.uint8), "gray 1 x 1": np.array([[[200]]], np.uint8),
            "colour photo": photo, "colour noise": rng.integers(0, 256, (7, 19, 3), dtype=np.uint8),
            "colour constant": np.full((11, 5, 3), (10, 250, 128), np.uint8)}


# Processes unlike this one: other TensorFlow kernels (oneDNN off, oneDNN limited to AVX2), one thread (TensorFlow's
# and the coder's), other kernels for the native path's products (the C kernels' AVX2 and generic variants,
# OpenBLAS's Haswell and generic x86 kernels for the reference path's), and the reference path instead of the C
# kernels; each with the decoder it runs.
ENVIRONMENTS = {"oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "compiled"),
                "AVX2 kernels": ({"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
                                  "RIDE_TF_NATIVE": "avx2"}, "native"),
                "one thread": ({"ONE_THREAD": "1"}, "numpy"),
                "generic kernels": ({"OPENBLAS_CORETYPE": "Prescott", "RIDE_TF_NATIVE": "generic"}, "native"),
                "no C kernels": ({"RIDE_TF_NATIVE": "0"}, "auto")}


def run_matrix_process(environment, decoder, tmp_path, images, tag):
    """Run MATRIX_SCRIPT in a process with `environment`: it encodes every image and decodes the files given."""
    source = tmp_path / f"{tag}-in.npz"
    target = tmp_path / f"{tag}-out.npz"
    np.savez(source, **images)
    env = dict(os.environ, PYTHONPATH=ROOT, **{k: v for k, v in environment.items() if k != "ONE_THREAD"})
    script = tmp_path / "matrix.py"
    script.write_text(MATRIX_SCRIPT)
    result = subprocess.run([sys.executable, str(script), "1" if "ONE_THREAD" in environment else "0", str(source),
                             str(target), decoder], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(target))


def test_files_decode_bit_exactly_across_kernels_thread_counts_and_paths(tmp_path):
    """Files encoded here (TensorFlow's defaults, the C kernels on every core) decode bit for bit in processes with
    oneDNN off, oneDNN and the C kernels limited to AVX2, one thread, the C kernels' generic variant and without
    the C kernels, with the native, NumPy and XLA decoders (and here with the native and NumPy ones); and each of
    those processes writes the same bytes as this one (gray and colour; a photo, noise, a constant image and odd
    sizes)."""
    images = matrix_images()
    encoded_here = {name: np.frombuffer(codec.compress(pretrained("rgb" if im.shape[-1] == 3 else "gray"), im),
                                        np.uint8) for name, im in images.items()}
    payload = dict(images, **{f"{name}:file": data for name, data in encoded_here.items()})
    for k, (environment, (variables, decoder)) in enumerate(ENVIRONMENTS.items()):
        result = run_matrix_process(variables, decoder, tmp_path, payload, f"env-{k}")
        for name, image in images.items():
            np.testing.assert_array_equal(result[name + ":encoded"], encoded_here[name],
                                          err_msg=f"{environment}: {name} encoded to other bytes")
            np.testing.assert_array_equal(result[name + ":decoded"], image, err_msg=f"{environment}: {name}")
    for name, image in images.items():                    # and here (the XLA decoder: the oneDNN-off process)
        model = pretrained("rgb" if image.shape[-1] == 3 else "gray")
        for decoder in ("auto", "native", "numpy"):
            np.testing.assert_array_equal(codec.decompress(model, encoded_here[name].tobytes(), decoder=decoder),
                                          image, err_msg=f"{decoder}: {name}")


def test_every_coding_order_decodes_and_costs_about_the_same():
    """The channels may be coded in any order (`RIDE.coding_order`): each gives a file that decodes, and the
    exact sizes differ little (the joint density does not depend on the order)."""
    model = small_ride(num_channels=3, num_layers=1)
    image = colour_dead_leaves(1, 17)[0]
    sizes = {}
    for order in [(0, 1, 2), (1, 0, 2), (2, 1, 0)]:
        model.coding_order = order
        data = codec.compress(model, image)
        np.testing.assert_array_equal(codec.decompress(model, data), image)
        sizes[order] = 8 * len(data)
        with pytest.raises(codec.CodecError, match="another model"):      # the order is part of the model
            other = (0, 2, 1)
            model.coding_order = other
            codec.decompress(model, data)
    assert max(sizes.values()) < 1.1 * min(sizes.values()), sizes
