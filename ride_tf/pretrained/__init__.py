"""Trained RIDE models that ship with the package: ``ride_tf.pretrained("gray")``.

The models were trained by ``examples/train_pretrained.py`` (the paper's
recipe, ``ride_tf.training.train``) on the images that ship with
scikit-image and load without network access, minus the held-out images
listed in `HELD_OUT`.  Each model is a ``.keras`` file in this package's
folder (package data, installed by ``pip install .``) with a small JSON
record beside it (configuration, training data, held-out rates).

    import ride_tf
    print(ride_tf.pretrained.available())      # {"gray": "...one line..."}
    model = ride_tf.pretrained("gray")         # a fresh RIDE (uint8 [N, H, W] or [N, H, W, 1] images)
    model.log_likelihood_rate(image)           # bit/px

Sharing: each file is read once per process; every call returns a *fresh*
model (new variables, same weights), so a caller may train or modify the
model it got without affecting other callers.

This module is callable (``ride_tf.pretrained(name)`` is ``ride_tf.pretrained.load(name)``),
and it also holds the data protocol of the shipped models (`TRAINING_IMAGES`,
`TEXTURES`, `HELD_OUT`, `load_photo`, `training_images`, `held_out_images`)
so that benchmarks measure on exactly the images the models never saw.
"""
import json
import os
import sys
import threading
import types

import numpy as np

__all__ = ["load", "available", "info", "model_path", "TRAINING_IMAGES", "COLOUR_PHOTOS", "TEXTURES",
           "TEXTURE_GRID", "HELD_OUT", "MAX_SIDE", "load_photo", "texture_regions", "training_images",
           "held_out_images"]

_FOLDER = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------ the data
# Whole scikit-image photos (skimage.data function names) that load offline
# with scikit-image 0.26 and are used for training.  Not used: the synthetic
# images (checkerboard, colorwheel, horse, logo, shepp_logan_phantom), `cat`
# (the same photo as `chelsea`, held out) and the images that need a download.
TRAINING_IMAGES = ("astronaut", "cell", "clock", "coins", "hubble_deep_field", "immunohistochemistry",
                   "microaneurysms", "moon", "page", "retina", "rocket", "stereo_motorcycle", "text")
# The training photos that are in colour (the "rgb" model trains on these only).
COLOUR_PHOTOS = ("astronaut", "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
                 "stereo_motorcycle")
# scikit-image's textures (512 x 512 grayscale), each cut into TEXTURE_GRID x
# TEXTURE_GRID regions of 128 x 128; all regions but the held-out one train.
TEXTURES = ("brick", "grass", "gravel")
TEXTURE_GRID = 4
# Held out from training (flips included): whole photos, and one region per
# texture (row-major index in the 4 x 4 grid; the indices of
# examples/textures.py, np.random.default_rng(0).integers(16, size=3)).
# "camera" is grayscale; "coffee" and "chelsea" are colour (converted to gray
# for the gray model).
HELD_OUT = {
    "photos": ("camera", "coffee", "chelsea"),
    "texture_regions": {"brick": 13, "grass": 10, "gravel": 8},
}
# Photos larger than this on a side are centre-cropped to it, so that the
# patch sampling (uniform over crop positions) is not dominated by one photo.
MAX_SIDE = 640


def _to_gray(image):
    import skimage.color
    import skimage.util

    return skimage.util.img_as_ubyte(skimage.color.rgb2gray(image))


def load_photo(name, channels=1, crop=True):
    """A scikit-image image by its skimage.data name, uint8 [H, W, channels] (needs scikit-image).

    channels=1 converts colour to gray (skimage.color.rgb2gray, then to
    uint8); channels=3 requires a colour image.  `stereo_motorcycle` is its
    left view.  crop=True centre-crops sides longer than MAX_SIDE.
    """
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if channels == 1:
        image = (_to_gray(image) if image.ndim == 3 else image)[..., np.newaxis]
    elif channels == 3:
        if image.ndim != 3:
            raise ValueError(f"load_photo: {name!r} is grayscale, not a colour image.")
    else:
        raise ValueError(f"load_photo: channels must be 1 or 3, got {channels!r}.")
    image = np.ascontiguousarray(image.astype(np.uint8))
    if crop:
        h, w = image.shape[:2]
        top, left = max(0, (h - MAX_SIDE) // 2), max(0, (w - MAX_SIDE) // 2)
        image = image[top:top + MAX_SIDE, left:left + MAX_SIDE]
    return image


def texture_regions(name, grid=TEXTURE_GRID):
    """A texture cut into grid x grid regions, uint8 [grid * grid, h, w, 1], row by row."""
    image = load_photo(name, 1, crop=False)
    h, w = image.shape[0] // grid, image.shape[1] // grid
    return np.stack([image[i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(grid) for j in range(grid)])


def training_images(channels=1):
    """{name: uint8 [H, W, C]} of the training data: the photos and (gray) the non-held-out texture regions."""
    photos = COLOUR_PHOTOS if channels == 3 else TRAINING_IMAGES
    images = {name: load_photo(name, channels) for name in photos}
    if channels == 1:
        for name in TEXTURES:
            held = HELD_OUT["texture_regions"][name]
            for k, region in enumerate(texture_regions(name)):
                if k != held:
                    images[f"{name}[{k}]"] = region
    return images


def held_out_images(channels=1):
    """{name: uint8 [H, W, C]} of the held-out data: whole photos (uncropped) and (gray) texture regions.

    For channels=3 only the colour photos ("coffee", "chelsea")."""
    images = {}
    for name in HELD_OUT["photos"]:
        try:
            images[name] = load_photo(name, channels, crop=False)
        except ValueError:          # a grayscale photo for the colour model
            continue
    if channels == 1:
        for name, index in HELD_OUT["texture_regions"].items():
            images[f"{name}[{index}]"] = texture_regions(name)[index]
    return images


# ---------------------------------------------------------------- the models
_CACHE = {}
_LOCK = threading.Lock()


def _names():
    return sorted(f[:-len(".keras")] for f in os.listdir(_FOLDER)
                  if f.endswith(".keras") and not f.startswith("."))   # not a training run's temporary file


def model_path(name):
    """Path of the shipped model file `name` (ValueError listing the available names if unknown)."""
    names = _names()
    if name not in names:
        raise ValueError(f"ride_tf.pretrained: unknown model {name!r}; available: "
                         + (", ".join(repr(n) for n in names) if names else "none"))
    return os.path.join(_FOLDER, name + ".keras")


def info(name):
    """The JSON record shipped beside model `name` (configuration, training data, held-out rates), a dict."""
    path = model_path(name)[:-len(".keras")] + ".json"
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def available():
    """{name: one-line description} of the shipped models."""
    out = {}
    for name in _names():
        record = info(name)
        out[name] = record.get("description", f"RIDE model {name!r}")
    return out


def _read(name):
    """(config, weights) of model `name`, read from its file once per process."""
    with _LOCK:
        if name not in _CACHE:
            import keras

            from ride_tf.model import RIDE   # registers the class for deserialisation

            model = keras.models.load_model(model_path(name), compile=False,
                                            custom_objects={"RIDE": RIDE})
            _CACHE[name] = (model.get_config(), [w.copy() for w in model.get_weights()])
        return _CACHE[name]


def load(name="gray"):
    """A fresh `ride_tf.RIDE` with the weights of the shipped model `name` (see `available()`).

    The file is read once per process; each call builds a new model with its
    own variables (not compiled), so changing it does not change other copies.
    """
    from ride_tf.model import RIDE

    config, weights = _read(name)
    model = RIDE.from_config(config)
    model.set_weights(weights)
    return model


class _CallableModule(types.ModuleType):
    """Makes ``ride_tf.pretrained(name)`` a shorthand for ``ride_tf.pretrained.load(name)``."""

    def __call__(self, name="gray"):
        return load(name)


sys.modules[__name__].__class__ = _CallableModule
