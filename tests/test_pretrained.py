"""The pretrained models that ship with the package (ride_tf.pretrained)."""
import os
import re

import numpy as np
import pytest

import ride_tf
from ride_tf import RIDE, pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The documented configuration of the shipped gray model (docs/pretrained.md), and of the earlier, smaller
# one shipped beside it as "gray-small" ("gray-102min" and "rgb-67min", shipped as "gray" and "rgb" before the
# runs that continued them, have the configuration of the current ones).
GRAY_CONFIG = dict(num_channels=1, num_hiddens=64, num_layers=1, num_components=16, num_scales=4,
                   num_features=32, nb_size=5, extended=False, cell="stable")
SMALL_CONFIG = dict(GRAY_CONFIG, num_hiddens=32)
# Measured on the shipped model: the 64 x 64 crop of the held-out `camera` photo at rows 192..255,
# columns 256..319 (seed 1 dequantization noise), every pixel.  The test allows 0.05 bit/px of slack.
CAMERA_CROP = (slice(192, 256), slice(256, 320))
GRAY_CAMERA_CROP_RATE = 4.219
# The same for "rgb" (bit per pixel and channel): rows 150..213, columns 250..313 of the held-out `coffee`.
RGB_CONFIG = dict(GRAY_CONFIG, num_channels=3)
COFFEE_CROP = (slice(150, 214), slice(250, 314))
RGB_COFFEE_CROP_RATE = 4.615


def test_available_lists_gray_and_rgb_with_a_description():
    models = pretrained.available()
    assert set(models) == {"gray", "rgb", "gray-102min", "rgb-67min", "gray-small", "rgb-small", "gray-2x64",
                           "gray-wide", "rgb-170min"}
    for description in models.values():
        assert isinstance(description, str) and "held-out" in description
    assert ride_tf.pretrained.available() == models


def test_shipped_files_are_package_data_and_small():
    for name in ("gray", "rgb"):
        path = pretrained.model_path(name)
        assert os.path.dirname(path) == os.path.dirname(os.path.abspath(pretrained.__file__))
        assert os.path.getsize(path) < 5e6
    with open(os.path.join(ROOT, "setup.py")) as f:
        setup = f.read()
    assert re.search(r'package_data=\{"ride_tf\.pretrained": \[[^]]*"\*\.keras"', setup)


def test_unknown_name_raises_and_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*'gray'"):
        ride_tf.pretrained("nope")
    with pytest.raises(ValueError, match="available"):
        pretrained.load("../gray")


def test_gray_has_the_documented_config_and_fresh_copies():
    a = ride_tf.pretrained("gray")
    assert isinstance(a, RIDE)
    config = a.get_config()
    assert {k: config[k] for k in GRAY_CONFIG} == GRAY_CONFIG
    assert a.whitening.is_adapted
    b = pretrained.load("gray")
    assert a is not b
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # Fresh copies: changing one does not change the other, nor later loads.
    a.mcgsm.trainable_variables[0].assign(a.mcgsm.trainable_variables[0] + 1.0)
    for wb, wc in zip(b.get_weights(), pretrained.load("gray").get_weights()):
        np.testing.assert_array_equal(wb, wc)


def test_the_earlier_models_ship_beside_the_new_ones_with_their_configs():
    """The models shipped as "gray" and "rgb" before ("gray-small", "rgb-small" before the photograph corpus;
    "gray-102min", "rgb-67min" before their training was continued; "rgb-170min" before the widened corpus) still load, so that files they compressed
    keep decoding, and each has its own fingerprint."""
    for name, expected in (("gray-small", SMALL_CONFIG), ("rgb-small", dict(SMALL_CONFIG, num_channels=3)),
                           ("gray-102min", GRAY_CONFIG), ("rgb-67min", RGB_CONFIG), ("rgb-170min", RGB_CONFIG)):
        config = pretrained.load(name).get_config()
        assert {k: config[k] for k in expected} == expected
        assert "shipped as" in pretrained.info(name)["description"]
    for a, b in (("gray", "gray-102min"), ("rgb", "rgb-67min"), ("rgb", "rgb-170min")):
        assert any(not np.array_equal(wa, wb) for wa, wb in zip(pretrained.load(a).get_weights(),
                                                                  pretrained.load(b).get_weights()))


def test_the_larger_gray_model_ships_beside_the_default_and_codes_camera_in_fewer_bits():
    """"gray-2x64" (2 layers of 64 units, docs/corpus.md) loads with its configuration, has its own fingerprint,
    and its exact code length of a 64 x 64 crop of the held-out camera is below the default "gray"'s."""
    pytest.importorskip("skimage")
    large, default = pretrained.load("gray-2x64"), pretrained.load("gray")
    config = large.get_config()
    assert {k: config[k] for k in GRAY_CONFIG} == dict(GRAY_CONFIG, num_layers=2)
    assert ride_tf.codec.model_fingerprint(large) != ride_tf.codec.model_fingerprint(default)
    crop = pretrained.load_photo("camera", 1, crop=False)[CAMERA_CROP][np.newaxis]
    bits = [float(ride_tf.compressed_size_bits(m, crop)[0]) for m in (large, default)]
    assert bits[0] < bits[1], bits


def test_the_model_of_the_widened_corpus_ships_beside_the_default():
    """"gray-wide" (the default's configuration, trained on from it on the corpus of issue 30, docs/corpus.md)
    loads with that configuration and its own fingerprint, and its record names the earlier runs it continued."""
    wide, default = pretrained.load("gray-wide"), pretrained.load("gray")
    config = wide.get_config()
    assert {k: config[k] for k in GRAY_CONFIG} == GRAY_CONFIG
    assert ride_tf.codec.model_fingerprint(wide) != ride_tf.codec.model_fingerprint(default)
    record = pretrained.info("gray-wide")
    assert len(record["earlier_training"]) == 2 and record["train_minutes"] > 300


def test_held_out_data_is_disjoint_from_the_training_data():
    assert not set(pretrained.HELD_OUT["photos"]) & set(pretrained.TRAINING_IMAGES)
    assert set(pretrained.COLOUR_PHOTOS) <= set(pretrained.TRAINING_IMAGES)
    assert set(pretrained.HELD_OUT["texture_regions"]) == set(pretrained.TEXTURES)
    record = pretrained.info("gray")
    assert set(record["held_out_rates"]) >= set(pretrained.HELD_OUT["photos"])


def test_gray_rate_on_a_held_out_crop():
    pytest.importorskip("skimage")
    model = ride_tf.pretrained("gray")
    crop = pretrained.load_photo("camera", 1, crop=False)[CAMERA_CROP][np.newaxis]
    rate = float(model.log_likelihood_rate(crop, seed=1)[0])
    gaussian = float(model.gaussian_log_likelihood_rate(crop, seed=1)[0])
    assert np.isfinite(rate)
    assert rate > gaussian + 0.3
    assert rate > GRAY_CAMERA_CROP_RATE - 0.05


def test_rgb_config_and_rate_on_a_held_out_crop():
    pytest.importorskip("skimage")
    model = ride_tf.pretrained("rgb")
    config = model.get_config()
    assert {k: config[k] for k in RGB_CONFIG} == RGB_CONFIG
    crop = pretrained.load_photo("coffee", 3, crop=False)[COFFEE_CROP][np.newaxis]
    rate = float(model.log_likelihood_rate(crop, seed=1)[0])
    gaussian = float(model.gaussian_log_likelihood_rate(crop, seed=1)[0])
    assert np.isfinite(rate)
    assert rate > gaussian + 0.3
    assert rate > RGB_COFFEE_CROP_RATE - 0.05
