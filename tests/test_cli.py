"""Tests of the `ride-tf` command line, through subprocesses (`python -m ride_tf`) as a user runs it."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from ride_tf import RIDE, datasets
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
    images = datasets.dead_leaves(4, size=(24, 30), seed=0, noise_std=0.02)
    for k, image in enumerate(images):
        Image.fromarray(image).save(folder / f"leaf{k}.png")
    (folder / "notimage.png").write_text("this is not an image")
    keras.utils.set_random_seed(0)
    model = RIDE(num_layers=1, num_hiddens=4, num_components=2, num_scales=2, num_features=3)
    model.adapt(images)
    model.save(str(folder / "model.keras"))
    return folder


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "inpaint"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: ride-tf {command}") and "--output" in text or "--region" in text


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
    assert sorted(commands) == ["evaluate", "inpaint", "sample", "train"]
