"""Tests of the `ride-tf` command line, through subprocesses (`python -m ride_tf`) as a user runs it."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import ride_tf
from ride_tf import RIDE, codec, data as image_data
from ride_tf.cli import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "ride_tf", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def error_line(result):
    """The one line the command prints about a problem (TensorFlow's start-up log lines aside)."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("ride-tf")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Image files and a small saved model."""
    folder = tmp_path_factory.mktemp("cli")
    images = image_data.dead_leaves(4, size=(24, 30), seed=0, noise_std=0.02)
    for k, image in enumerate(images):
        Image.fromarray(image).save(folder / f"leaf{k}.png")
    (folder / "notimage.png").write_text("this is not an image")
    keras.utils.set_random_seed(0)
    model = RIDE(num_layers=1, num_hiddens=4, num_components=2, num_scales=2, num_features=3)
    model.adapt(images)
    model.save(str(folder / "model.keras"))
    return folder


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "inpaint", "size", "compress",
                                     "decompress", "export"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: ride-tf {command}")
    assert any(option in text for option in ("--output", "--region", "--model", "--version"))


def test_train_writes_a_model_that_evaluates_and_samples(workdir):
    result = run("train", "leaf0.png", "leaf1.png", "leaf2.png", "--output", "trained.keras", "--hiddens", "3",
                 "--components", "2", "--features", "3", "--patch-sizes", "8", "--patches", "50",
                 "--finetune-iter", "2", "--finetune-samples", "1000", "--quiet", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "saved trained.keras" in result.stdout
    model = keras.models.load_model(str(workdir / "trained.keras"))
    assert isinstance(model, RIDE) and model.num_hiddens == 3
    assert not [name for name in os.listdir(workdir) if ".tmp-" in name]      # no temporary files left

    result = run("evaluate", "model.keras", "leaf3.png", "leaf0.png", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    loaded = keras.models.load_model(str(workdir / "model.keras"))
    image = np.asarray(Image.open(workdir / "leaf3.png"))
    expected = loaded.log_likelihood_rate(image[None], seed=0)[0]
    assert report["images"][0]["bits_per_pixel"] == pytest.approx(expected, abs=1e-5)
    assert report["mean_bits_per_pixel"] == pytest.approx(np.mean([r["bits_per_pixel"] for r in report["images"]]))

    result = run("sample", "model.keras", "--size", "9x13", "-n", "2", "--output", "samples", "--seed", "4",
                 cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = [np.asarray(Image.open(workdir / "samples" / f"sample_{k:03d}.png")) for k in range(2)]
    np.testing.assert_array_equal(np.stack(drawn), loaded.sample(2, 9, 13, seed=4)[..., 0])


def test_inpaint_fills_the_white_mask_pixels_and_keeps_the_others(workdir):
    mask = np.zeros((24, 30), np.uint8)
    mask[8:14, 10:17] = 255
    Image.fromarray(mask).save(workdir / "mask.png")
    result = run("inpaint", "model.keras", "leaf1.png", "mask.png", "--output", "filled.png", "--sweeps", "1",
                 cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "42 pixels filled" in result.stdout
    original = np.asarray(Image.open(workdir / "leaf1.png"))
    filled = np.asarray(Image.open(workdir / "filled.png"))
    assert filled.shape == original.shape and filled.dtype == np.uint8
    np.testing.assert_array_equal(filled[mask == 0], original[mask == 0])
    assert np.mean(filled[mask > 0] != original[mask > 0]) > 0.5


@pytest.mark.parametrize("args, message", [
    (["evaluate", "model.keras", "missing.png"], "missing.png: no such file"),
    (["evaluate", "model.keras", "notimage.png"], "notimage.png: not an image"),
    (["evaluate", "notimage.png", "leaf0.png"], "notimage.png: not a ride-tf model file"),
    (["evaluate", "missing.keras", "leaf0.png"], "missing.keras: no such model file"),
])
def test_errors_print_one_line_and_exit_non_zero(workdir, args, message):
    result = run(*args, cwd=workdir)
    assert result.returncode == 1
    assert message in error_line(result)


@pytest.mark.parametrize("args, message, code", [
    (["evaluate", "model.keras", "leaf0.png", "--ensemble", "--region", "valid"], "cannot be combined", 1),
    (["train", "leaf0.png", "--output", "m.h5"], "must name a .keras file", 1),
    (["train", "leaf0.png", "--output", "m.keras", "--patch-sizes", "40"], "exceeds the smallest", 1),
    (["sample", "model.keras", "--size", "3y4", "--output", "x"], "size must look like HxW", 2),
    (["sample", "model.keras", "--size", "4x4", "-n", "0", "--output", "x"], "expected an integer >= 1", 2),
    (["frobnicate"], "invalid choice", 2),
])
def test_usage_errors_in_process(workdir, args, message, code, capsys, monkeypatch):
    """The same one-line errors, checked without a subprocess (argument and option checks)."""
    monkeypatch.chdir(workdir)
    try:
        status = main(args)
    except SystemExit as exit_info:        # argparse's usage errors
        status = exit_info.code
    assert status == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


def test_parser_lists_the_documented_subcommands():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert sorted(commands) == ["compress", "decompress", "evaluate", "export", "inpaint", "sample", "size", "train"]


def in_process(workdir, capsys, *args):
    """Run `ride-tf ARGS` in this process (no TensorFlow start-up per call): (status, stdout, stderr)."""
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        status = main(list(args))
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    return status, out, err


def test_size_compress_decompress_round_trip_with_a_model_file(workdir, capsys, monkeypatch, tmp_path):
    """`size` prints the exact size; `compress` then `decompress` give back the PNG's pixels; without --model,
    `decompress` finds the model's integer model in the cache (derived by `size`); with an empty cache it refuses
    the file with one line naming the model's fingerprint."""
    status, out, err = in_process(workdir, capsys, "size", "leaf0.png", "leaf1.png", "--model", "model.keras",
                                  "--json")
    assert status == 0, err
    rows = json.loads(out)["images"]
    assert [r["path"] for r in rows] == ["leaf0.png", "leaf1.png"]
    for r in rows:      # the exact size of the same pixels under the same model through the API, the shorter coding
        pixels = np.array(Image.open(workdir / r["path"]))[np.newaxis, ..., np.newaxis]
        sizes = [ride_tf.compressed_size_bits(str(workdir / "model.keras"), pixels, packed=packed)[0]
                 for packed in (False, True)]
        assert r["bits"] == min(sizes) and r["bits_per_pixel"] == r["bits"] / 720, (r, sizes)
        assert ("table of used values" in r["note"]) == (sizes[1] < sizes[0]), r
    status, out, err = in_process(workdir, capsys, "compress", "leaf0.png", "leaf0.ride", "--model", "model.keras")
    assert status == 0, err
    data = (workdir / "leaf0.ride").read_bytes()
    payload = len(data) - codec.read_header(data).size
    assert abs(8 * payload - rows[0]["bits"]) <= 0.01 * rows[0]["bits"] + 64
    status, out, err = in_process(workdir, capsys, "decompress", "leaf0.ride", "back.png", "--model", "model.keras")
    assert status == 0, err
    np.testing.assert_array_equal(np.array(Image.open(workdir / "back.png")),
                                  np.array(Image.open(workdir / "leaf0.png")))
    status, out, err = in_process(workdir, capsys, "decompress", "leaf0.ride", "back_xla.png", "--model",
                                  "model.keras", "--decoder", "compiled")
    assert status == 0, err
    np.testing.assert_array_equal(np.array(Image.open(workdir / "back_xla.png")),
                                  np.array(Image.open(workdir / "leaf0.png")))
    status, out, err = in_process(workdir, capsys, "decompress", "leaf0.ride", "cached.png")
    assert status == 0, err
    np.testing.assert_array_equal(np.array(Image.open(workdir / "cached.png")),
                                  np.array(Image.open(workdir / "leaf0.png")))
    # Neither shipped nor cached: one clear line naming the fingerprint, nothing written.
    monkeypatch.setenv("RIDE_TF_CACHE", str(tmp_path / "empty-cache"))
    status, out, err = in_process(workdir, capsys, "decompress", "leaf0.ride", "other.png")
    fingerprint = codec.read_header((workdir / "leaf0.ride").read_bytes()).fingerprint.hex()
    assert status == 1 and err.count("\n") == 1 and fingerprint in err and "--model" in err
    assert not (workdir / "other.png").exists()


def test_compress_uses_the_pretrained_model_by_default(workdir, capsys):
    assert in_process(workdir, capsys, "compress", "leaf1.png", "leaf1.ride")[0] == 0
    assert in_process(workdir, capsys, "decompress", "leaf1.ride", "leaf1_back.png")[0] == 0
    np.testing.assert_array_equal(np.array(Image.open(workdir / "leaf1_back.png")),
                                  np.array(Image.open(workdir / "leaf1.png")))


def test_model_takes_the_name_of_a_shipped_model(workdir, capsys):
    """`--model NAME` with NAME from `ride_tf.pretrained.available()` (and no file of that name) uses that shipped
    model: the size it prints is that model's exact size, and its file decodes with the same name."""
    image = np.array(Image.open(workdir / "leaf2.png"))
    status, out, _ = in_process(workdir, capsys, "size", "leaf2.png", "--model", "gray-small")
    assert status == 0
    bits = float(ride_tf.compressed_size_bits(ride_tf.pretrained("gray-small"), image[None])[0])
    assert f"{bits / 8:.1f}" in out, out
    assert in_process(workdir, capsys, "compress", "leaf2.png", "leaf2s.ride", "--model", "gray-small")[0] == 0
    assert in_process(workdir, capsys, "decompress", "leaf2s.ride", "leaf2s.png", "--model", "gray-small")[0] == 0
    np.testing.assert_array_equal(np.array(Image.open(workdir / "leaf2s.png")), image)


def test_codec_commands_report_bad_files_in_one_line(workdir, capsys):
    (workdir / "junk.ride").write_bytes(b"RIDE" + bytes(10))
    for args, message in [(("decompress", "junk.ride", "x.png"), "not a ride-tf"),
                          (("decompress", "missing.ride", "x.png"), "no such file"),
                          (("compress", "notimage.png", "x.ride"), "notimage.png"),
                          (("size", "leaf0.png", "--model", "nothing.keras"), "no such model")]:
        status, out, err = in_process(workdir, capsys, *args)
        assert status == 1 and err.startswith("ride-tf: error:") and err.count("\n") == 1, err
        assert message in err
    # And through a real process: one line, no traceback.
    assert "not a ride-tf" in error_line(run("decompress", "junk.ride", "x.png", cwd=workdir))


def test_export_writes_a_versioned_saved_model(workdir, capsys):
    assert in_process(workdir, capsys, "export", "model.keras", "served", "--version", "3")[0] == 0
    assert (workdir / "served" / "3" / "saved_model.pb").exists()
    status, _, err = in_process(workdir, capsys, "export", "model.keras", "served", "--version", "3")
    assert status == 1 and "exists" in err


# --------------------------------------------------- bad files and arguments (issue #10)
def test_decompress_finds_the_shipped_model_that_wrote_a_file_by_its_fingerprint(workdir, capsys, monkeypatch,
                                                                                   tmp_path):
    """A file of a model shipped beside the default ("gray-old" here: the package folder holds its integer model
    file) decodes without --model; a file of a model that is neither shipped nor cached is refused in one line
    that names its fingerprint."""
    import shutil

    from ride_tf.codec import registry

    monkeypatch.setenv("RIDE_TF_CACHE", str(tmp_path / "cache"))
    status, _, err = in_process(workdir, capsys, "compress", "leaf2.png", "leaf2.ride", "--model", "model.keras")
    assert status == 0, err
    shutil.rmtree(tmp_path / "cache")
    folder = tmp_path / "shipped"
    shutil.copytree(registry.SHIPPED_FOLDER, folder)
    assert in_process(workdir, capsys, "export", "model.keras", str(folder / "gray-old.integer.npz"), "--codec")[0] == 0
    monkeypatch.setattr(registry, "SHIPPED_FOLDER", str(folder))
    status, out, err = in_process(workdir, capsys, "decompress", "leaf2.ride", "leaf2_back.png")
    assert status == 0, err
    np.testing.assert_array_equal(np.array(Image.open(workdir / "leaf2_back.png")),
                                  np.array(Image.open(workdir / "leaf2.png")))
    (folder / "gray-old.integer.npz").unlink()
    status, out, err = in_process(workdir, capsys, "decompress", "leaf2.ride", "leaf2_none.png")
    fingerprint = codec.read_header((workdir / "leaf2.ride").read_bytes()).fingerprint.hex()
    assert status == 1 and err.count("\n") == 1 and fingerprint in err
    assert not (workdir / "leaf2_none.png").exists()


def test_colour_files_coded_by_planes_round_trip_and_size_says_what_compress_writes(workdir, capsys):
    """--colour planes: the shipped gray model on the reversible colour transform's planes; decompress finds it
    without --model, and `size` reports the payload's bits."""
    rng = np.random.default_rng(7)
    base = image_data.dead_leaves(1, size=(20, 26), seed=4)[0].astype(np.int32)
    rgb = np.stack([base, (base + rng.integers(0, 20, base.shape)) % 256, 255 - base], -1).astype(np.uint8)
    Image.fromarray(rgb).save(workdir / "colour.png")
    status, out, err = in_process(workdir, capsys, "size", "colour.png", "--colour", "planes", "--json")
    assert status == 0, err
    bits = json.loads(out)["images"][0]["bits"]
    status, out, err = in_process(workdir, capsys, "compress", "colour.png", "colour.ride", "--colour", "planes")
    assert status == 0 and "colour planes" in out, err
    data = (workdir / "colour.ride").read_bytes()
    assert bits <= 8 * (len(data) - codec.read_header(data).size) <= bits + 3 * 128 + 64
    status, out, err = in_process(workdir, capsys, "decompress", "colour.ride", "colour_back.png")
    assert status == 0, err
    np.testing.assert_array_equal(np.array(Image.open(workdir / "colour_back.png")), rgb)
    status, out, err = in_process(workdir, capsys, "compress", "colour.png", "colour2.ride", "--colour", "planes",
                                  "--model", "model.keras")
    assert status == 0 and "model.keras" in out, err


def test_colour_best_keeps_the_shorter_of_joint_and_planes(workdir, capsys):
    """--colour best (the default): `size` reports min(joint, planes) of the shipped models and `compress`
    writes the shorter of the two files, which decompresses to the same pixels; --mode rgb names one model.
    (--palette never: on this small piecewise-constant image the palette coder would win.)"""
    rng = np.random.default_rng(11)
    base = image_data.dead_leaves(1, size=(18, 22), seed=6)[0].astype(np.int32)
    rgb = np.stack([base, (base + rng.integers(0, 9, base.shape)) % 256, (base // 2 + 40)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(workdir / "best.png")
    bits = {}
    for colour in ("joint", "planes", "best"):
        status, out, err = in_process(workdir, capsys, "size", "best.png", "--colour", colour, "--json", "--palette",
                                      "never")
        assert status == 0, err
        bits[colour] = json.loads(out)["images"][0]
    assert bits["best"]["bits"] == min(bits["joint"]["bits"], bits["planes"]["bits"])
    assert "shipped rgb model" in bits["best"]["note"] and "shipped gray model" in bits["best"]["note"]
    assert bits["joint"]["model"] == "shipped rgb model" and bits["planes"]["model"] == "shipped gray model"
    lengths = {}
    for colour in ("joint", "planes", "best"):
        args = [] if colour == "best" else ["--colour", colour]
        status, out, err = in_process(workdir, capsys, "compress", "best.png", f"best_{colour}.ride", *args,
                                      "--palette", "never")
        assert status == 0, err
        lengths[colour] = len((workdir / f"best_{colour}.ride").read_bytes())
    assert "the shortest of 2 codings" in out, out
    assert lengths["best"] == min(lengths["joint"], lengths["planes"]), lengths
    status, out, err = in_process(workdir, capsys, "decompress", "best_best.ride", "best_back.png")
    assert status == 0, err
    np.testing.assert_array_equal(np.array(Image.open(workdir / "best_back.png")), rgb)
    status, out, err = in_process(workdir, capsys, "size", "best.png", "--mode", "rgb", "--json")
    assert status == 0 and json.loads(out)["images"][0]["bits"] == bits["joint"]["bits"], err


def test_the_palette_coder_is_tried_beside_the_models_and_decodes_without_one(workdir, capsys):
    """--palette auto (the default): on a drawn screen image the palette coder's file is the shortest, `size`
    reports its payload, and `decompress` needs no model; --palette never keeps the model, --palette only codes
    with the palette coder alone and refuses a model option and an image of more than 4096 colours."""
    from test_palette import window

    Image.fromarray(window(96, 160)).save(workdir / "window.png")
    status, out, err = in_process(workdir, capsys, "compress", "window.png", "window.ride")
    assert status == 0 and "palette coder" in out and "the shortest of 3 codings" in out, (out, err)
    data = (workdir / "window.ride").read_bytes()
    assert codec.is_palette_file(codec.read_header(data))
    status, out, err = in_process(workdir, capsys, "size", "window.png", "--json")
    row = json.loads(out)["images"][0]
    assert status == 0 and row["model"] == "palette coder", err
    assert row["bits"] == 8 * (len(data) - codec.read_header(data).size)
    for decoder in ("auto", "numpy"):
        status, out, err = in_process(workdir, capsys, "decompress", "window.ride", "window_back.png", "--decoder",
                                      decoder)
        assert status == 0, err
        np.testing.assert_array_equal(np.array(Image.open(workdir / "window_back.png")), window(96, 160))
    status, out, err = in_process(workdir, capsys, "compress", "window.png", "model.ride", "--palette", "never")
    assert status == 0 and "palette coder" not in out and "shipped" in out, out
    assert len((workdir / "model.ride").read_bytes()) > len(data)
    status, out, err = in_process(workdir, capsys, "compress", "window.png", "only.ride", "--palette", "only")
    assert status == 0 and (workdir / "only.ride").read_bytes() == data, err
    status, out, err = in_process(workdir, capsys, "compress", "window.png", "x.ride", "--palette", "only",
                                  "--mode", "rgb")
    assert status == 1 and "drop --mode" in err, err
    noise = np.random.default_rng(3).integers(0, 256, (70, 70, 3)).astype(np.uint8)
    Image.fromarray(noise).save(workdir / "noise.png")
    status, out, err = in_process(workdir, capsys, "compress", "noise.png", "x.ride", "--palette", "only")
    assert status == 1 and err.count("\n") == 1 and "distinct colours, more than 4096" in err, err


@pytest.fixture(scope="module")
def bad_files(workdir):
    """Truncated PNG and JPEG files, corrupted, foreign and never-adapted model files."""
    png = (workdir / "leaf0.png").read_bytes()
    (workdir / "truncated.png").write_bytes(png[:len(png) // 2])
    Image.open(workdir / "leaf0.png").save(workdir / "leaf0.jpg", quality=90)
    jpeg = (workdir / "leaf0.jpg").read_bytes()
    (workdir / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (workdir / "empty.png").write_bytes(b"")
    model = (workdir / "model.keras").read_bytes()
    (workdir / "corrupt.keras").write_bytes(model[:len(model) // 2])
    foreign = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    foreign.save(str(workdir / "foreign.keras"))
    RIDE(num_layers=0, num_components=2, num_scales=2, num_features=3).save(str(workdir / "fresh.keras"))
    (workdir / "a_directory.png").mkdir(exist_ok=True)
    (workdir / "a_file").write_text("x")
    return workdir


@pytest.mark.parametrize("args, message", [
    (["evaluate", "model.keras", "truncated.png"], "truncated.png: cannot decode image"),
    (["evaluate", "model.keras", "truncated.jpg"], "truncated.jpg: cannot"),
    (["evaluate", "model.keras", "empty.png"], "empty.png: not an image"),
    # A folder is an input (searched for images): one without images is a failure of its own (issue #31).
    (["evaluate", "model.keras", "a_directory.png"], "a_directory.png: a folder without image files"),
    (["evaluate", "corrupt.keras", "leaf0.png"], "corrupt.keras: not a ride-tf model file"),
    (["evaluate", "foreign.keras", "leaf0.png"], "foreign.keras: a Keras model, but not a ride-tf RIDE model"),
    (["evaluate", "fresh.keras", "leaf0.png"], "fresh.keras: the model's whitening was never fitted"),
    (["evaluate", "a_directory.png", "leaf0.png"], "a_directory.png: a folder without image files"),
    (["sample", "corrupt.keras", "--size", "4x4", "--output", "s"], "not a ride-tf model file"),
    (["sample", "model.keras", "--size", "4x4", "--output", "a_file"], "a_file: exists and is not a directory"),
    (["inpaint", "model.keras", "leaf0.png", "missing_mask.png", "--output", "f.png"], "missing_mask.png: no such file"),
    (["inpaint", "model.keras", "truncated.png", "leaf0.png", "--output", "f.png"], "cannot decode image"),
    (["inpaint", "model.keras", "leaf0.png", "leaf0.png", "--output", "a_directory.png"], "is a directory"),
    (["size", "truncated.jpg", "--model", "model.keras"], "truncated.jpg: cannot"),
    (["size", "leaf0.png", "--model", "foreign.keras"], "not a ride-tf RIDE model"),
    (["compress", "truncated.png", "x.ride", "--model", "model.keras"], "cannot decode image"),
    (["compress", "leaf0.png", "a_directory.png", "--model", "model.keras"], "is a directory"),
    (["decompress", "leaf0.png", "x.png", "--model", "model.keras"], "not a ride-tf compressed image"),
    (["export", "corrupt.keras", "exported"], "not a ride-tf model file"),
    (["export", "fresh.keras", "exported"], "has not been fitted"),
    (["train", "leaf0.png", "missing.png", "--output", "m.keras"], "missing.png: no such file"),
    (["train", "leaf0.png", "truncated.jpg", "--output", "m.keras"], "truncated.jpg: cannot"),
    (["train", "leaf0.png", "--output", "a_directory.png/x.keras/"], "must name a .keras file"),
])
def test_bad_files_print_one_line_and_exit_1(bad_files, args, message, capsys, monkeypatch):
    monkeypatch.chdir(bad_files)
    status = main(args)
    err = capsys.readouterr().err
    assert status == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("ride-tf")]
    assert len(lines) == 1 and message in lines[0], err
    assert not [name for name in os.listdir(bad_files) if ".tmp-" in name]     # nothing half-written left


@pytest.mark.parametrize("args, message", [
    (["evaluate", "model.keras", "leaf0.png", "--seed", "-1"], "expected an integer >= 0"),
    (["sample", "model.keras", "--size", "0x4", "--output", "x"], "at least 1x1"),
    (["sample", "model.keras", "--size", "4x4", "--output", "x", "--batch-size", "0"], "expected an integer >= 1"),
    (["train", "leaf0.png", "--output", "m.keras", "--learning-rates", "nan"], "expected a finite number > 0"),
    (["train", "leaf0.png", "--output", "m.keras", "--learning-rates", "-0.1"], "expected a finite number > 0"),
    (["train", "leaf0.png", "--output", "m.keras", "--patches", "10"], "expected an integer >= 50"),
    (["train", "leaf0.png", "--output", "m.keras", "--layers", "1.5"], "expected an integer >= 0"),
    (["inpaint", "model.keras", "leaf0.png", "leaf1.png", "--output", "f.png", "--sweeps", "x"], "integer"),
    (["export", "model.keras", "d", "--version", "0"], "expected an integer >= 1"),
])
def test_bad_option_values_are_usage_errors(bad_files, args, message, capsys, monkeypatch):
    monkeypatch.chdir(bad_files)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_errors_of_the_package_are_one_line_too(bad_files, capsys, monkeypatch):
    """A ValueError from the package (here: even --nb-size for train) is printed as one line, status 1."""
    monkeypatch.chdir(bad_files)
    status = main(["train", "leaf0.png", "--output", "m.keras", "--nb-size", "4", "--patch-sizes", "8"])
    err = capsys.readouterr().err
    assert status == 1 and "nb_size must be odd" in err and "Traceback" not in err
    assert not (bad_files / "m.keras").exists()


# --------------------------------------------- lossless means lossless: file modes (issue #16)
def mode_files(folder):
    """{name: (path, exact)}: small PNGs of every mode a user may pass; exact: whether ride-tf codes it exactly."""
    rng = np.random.default_rng(3)
    gray = image_data.dead_leaves(1, size=(10, 13), seed=5)[0]
    rgb = np.stack([gray, np.roll(gray, 2, axis=1), 255 - gray], axis=-1)
    files = {}

    def save(name, image, exact, **options):
        path = folder / f"mode_{name}.png"
        image.save(path, **options)
        files[name] = (path, exact)

    save("gray", Image.fromarray(gray), True)
    save("rgb", Image.fromarray(rgb), True)
    save("rgba_opaque", Image.fromarray(np.concatenate([rgb, np.full((10, 13, 1), 255, np.uint8)], -1), "RGBA"), True)
    save("la_constant", Image.fromarray(np.stack([gray, np.full((10, 13), 77, np.uint8)], -1), "LA"), True)
    save("palette", Image.fromarray(rgb).quantize(colors=7), True)
    save("bilevel", Image.fromarray(gray > 128), True)
    alpha = rng.integers(0, 256, (10, 13), dtype=np.uint8)
    save("rgba_transparent", Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), "RGBA"), False)
    save("gray16", Image.fromarray(gray.astype(np.uint16) * 257), False)
    import imagecodecs

    path = folder / "mode_rgb16.png"
    path.write_bytes(imagecodecs.png_encode(rgb.astype(np.uint16) * 257))
    files["rgb16"] = (path, False)
    return files


def pixels_and_mode(path):
    with Image.open(path) as image:
        palette = image.getpalette() if image.mode == "P" else None
        return image.mode, np.array(image), palette


def test_compress_then_decompress_gives_back_every_mode_exactly_or_refuses_in_one_line(workdir, capsys):
    """For gray, RGB, RGBA, palette, 16-bit and 1-bit PNGs: the same image back, or exit 1 with one line
    naming the problem; never exit 0 with another image."""
    for name, (path, exact) in mode_files(workdir).items():
        status, out, err = in_process(workdir, capsys, "compress", path.name, f"{name}.ride")
        if not exact:
            assert status == 1 and err.count("\n") == 1 and err.startswith("ride-tf: error:"), (name, err)
            assert path.name in err and "mode" in err, (name, err)
            assert not (workdir / f"{name}.ride").exists()
            continue
        assert status == 0, (name, err)
        status, out, err = in_process(workdir, capsys, "decompress", f"{name}.ride", f"{name}_back.png")
        assert status == 0, (name, err)
        mode, pixels, palette = pixels_and_mode(path)
        back_mode, back_pixels, back_palette = pixels_and_mode(workdir / f"{name}_back.png")
        assert back_mode == mode, name
        np.testing.assert_array_equal(back_pixels, pixels, err_msg=name)
        assert back_palette == palette, name


def test_a_colour_file_picks_the_colour_model_and_an_explicit_gray_model_is_refused(workdir, capsys):
    files = mode_files(workdir)
    rgb = files["rgb"][0].name
    status, out, err = in_process(workdir, capsys, "size", rgb, "--json", "--colour", "joint", "--palette", "never")
    assert status == 0, err
    row = json.loads(out)["images"][0]
    assert row["channels"] == 3 and row["model"] == "shipped rgb model" and row["note"] == ""
    # A gray model for a colour file: refused with the ways out, unless --to-gray says so.
    for args in (["--model", "model.keras"], ["--mode", "gray"]):
        status, out, err = in_process(workdir, capsys, "compress", rgb, "x.ride", *args)
        assert status == 1 and err.count("\n") == 1 and "colour image" in err and "--to-gray" in err, err
        status, out, err = in_process(workdir, capsys, "size", rgb, *args)
        assert status == 1 and "colour image" in err, err
        status, out, err = in_process(workdir, capsys, "evaluate", rgb, *args)
        assert status == 1 and "colour image" in err, err
    status, out, err = in_process(workdir, capsys, "compress", rgb, "gray.ride", "--mode", "gray", "--to-gray")
    assert status == 0 and "converted to gray" in out, (out, err)
    assert in_process(workdir, capsys, "decompress", "gray.ride", "gray_back.png")[0] == 0
    luma = np.array(Image.open(workdir / rgb).convert("L"))
    np.testing.assert_array_equal(np.array(Image.open(workdir / "gray_back.png")), luma)
    # A gray file with a colour model is refused too.
    status, out, err = in_process(workdir, capsys, "compress", files["gray"][0].name, "y.ride", "--mode", "rgb")
    assert status == 1 and "grayscale image" in err, err


def test_evaluate_without_a_model_uses_the_shipped_model_of_each_file(workdir, capsys):
    files = mode_files(workdir)
    status, out, err = in_process(workdir, capsys, "evaluate", files["gray"][0].name, files["rgb"][0].name,
                                  "--json")
    assert status == 0, err
    rows = json.loads(out)["images"]
    assert [r["model"] for r in rows] == ["shipped gray model", "shipped rgb model"]
    # The first argument is still the model when it is not an image file.
    status, out, err = in_process(workdir, capsys, "evaluate", "model.keras", files["gray"][0].name, "--json")
    assert status == 0 and json.loads(out)["images"][0]["model"] == "model.keras", err


def test_help_and_usage_errors_do_not_start_tensorflow():
    """`ride-tf --help` parses without importing TensorFlow and prints nothing on stderr."""
    code = ("import sys; from ride_tf.cli import build_parser; build_parser().format_help(); "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
    result = subprocess.run([sys.executable, "-m", "ride_tf", "compress", "--help"], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0 and result.stderr == "" and "usage: ride-tf compress" in result.stdout


def test_tensorflow_start_up_lines_are_filtered_and_real_messages_kept():
    """An entry point that starts TensorFlow with `ride_tf.runtime.quiet_tensorflow` prints none of its
    informational start-up lines; Python warnings still reach stderr."""
    code = ("import warnings, ride_tf.runtime; tf = ride_tf.runtime.quiet_tensorflow(); tf.constant(1.0) + 1.0; "
            "warnings.warn('a real warning')")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env=dict(env, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    assert "a real warning" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line[:1] in "IE" and line[1:5].isdigit()], \
        result.stderr
    assert "absl::InitializeLog" not in result.stderr
