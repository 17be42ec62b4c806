"""Where a decoder finds integer models: the shipped ones, and those derived earlier on this machine (the cache).

    registry.shipped_model("gray")       # the IntegerModel of the shipped model "gray" (NumPy only)
    registry.find(header.fingerprint)    # the model (and colour transform) that wrote a file, or None

Shipped models: each ``NAME.keras`` of the package folder ``ride_tf/pretrained``
ships its integer model beside it as ``NAME.integer.npz`` (derived by
``examples/ship_model.py``; a test re-derives them and compares integer for
integer).  The integer models of the earlier derivation (1, before the
16-bit products of issue 29) ship in ``ride_tf/pretrained/derivation-1``, so
that the files written with them still decode.  The cache: integer models
derived from a user's ``.keras`` files (`integer_model_of_file`), one file
per model file and derivation, named by the SHA-256 of the ``.keras`` file's
bytes (``DIGEST.integer.npz`` for derivation 1, ``DIGEST.d2.integer.npz``
for 2), in

    $RIDE_TF_CACHE/integer-models       if RIDE_TF_CACHE is set (the one place it is read)
    $XDG_CACHE_HOME/ride-tf/integer-models, else ~/.cache/ride-tf/integer-models

A file's header names the model by its fingerprint; `find` looks through the
shipped models (the current derivation's, then the earlier), then the cache,
reading each file's meta record only.  A
file of another coding than the plain one (colour planes, equal channels,
packed histograms) carries the fingerprint of (model, coding)
(`ride_tf.codec.structure.coding_fingerprint`), which `find` matches too.
"""
import functools
import os

from ride_tf.codec import structure
from ride_tf.codec.integer import DERIVATION, DERIVATIONS
from ride_tf.codec.model_file import SUFFIX, ModelFileError, load_integer_model, read_meta

__all__ = ["SHIPPED_FOLDER", "EARLIER_FOLDER", "shipped_names", "shipped_path", "shipped_model", "cache_folder",
           "cached_path", "find", "Found"]

SHIPPED_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")
EARLIER_FOLDER = os.path.join(SHIPPED_FOLDER, "derivation-1")      # the shipped models' derivation-1 integer models


class Found(tuple):
    """What `find` returns: (model, coding, name): the IntegerModel, the (colour_transform, packed, adapted) coding
    of the file (`ride_tf.codec.structure`), and where the model came from (a shipped model's name, or
    "cached ...")."""
    __slots__ = ()

    def __new__(cls, model, coding, name):
        return super().__new__(cls, (model, tuple(coding), name))

    model = property(lambda self: self[0])
    coding = property(lambda self: self[1])
    name = property(lambda self: self[2])


def _folder(derivation):
    if derivation not in DERIVATIONS:
        raise ValueError(f"derivation must be one of {DERIVATIONS}, got {derivation!r}.")
    return SHIPPED_FOLDER if derivation == DERIVATION else EARLIER_FOLDER


def shipped_names(derivation=DERIVATION):
    """The names of the shipped integer models of `derivation` (sorted)."""
    folder = _folder(derivation)
    if not os.path.isdir(folder):
        return []
    return sorted(f[:-len(SUFFIX)] for f in os.listdir(folder) if f.endswith(SUFFIX) and not f.startswith("."))


def shipped_path(name, derivation=DERIVATION):
    """The path of the shipped integer model `name` of `derivation`; ValueError listing the names if there is none."""
    names = shipped_names(derivation)
    if name not in names:
        raise ValueError(f"no shipped integer model {name!r} of derivation {derivation}; shipped: "
                         f"{', '.join(names) or 'none'}.")
    return os.path.join(_folder(derivation), name + SUFFIX)


@functools.lru_cache(maxsize=None)
def shipped_model(name, derivation=DERIVATION):
    """The `IntegerModel` of the shipped model `name` by `derivation` (loaded and checked once per process)."""
    return load_integer_model(shipped_path(name, derivation))


def cache_folder():
    """The folder of integer models derived from users' .keras files (see the module docstring)."""
    base = os.environ.get("RIDE_TF_CACHE")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "ride-tf")
    return os.path.join(base, "integer-models")


def cached_path(file_digest, derivation=DERIVATION):
    """The cache's path for the integer model by `derivation` of a .keras file whose bytes have SHA-256
    `file_digest` (hex)."""
    _folder(derivation)
    tag = "" if derivation == 1 else f".d{derivation}"
    return os.path.join(cache_folder(), file_digest + tag + SUFFIX)


def _candidates():
    """(name, path, load) of every integer model `find` may use: the shipped ones (the earlier derivation's named
    "NAME (derivation 1)"), then the cached ones; load() gives the model."""
    out = [(name, shipped_path(name), functools.partial(shipped_model, name)) for name in shipped_names()]
    out += [(f"{name} (derivation 1)", shipped_path(name, 1), functools.partial(shipped_model, name, 1))
            for name in shipped_names(1)]
    folder = cache_folder()
    if os.path.isdir(folder):
        for f in sorted(os.listdir(folder)):
            if f.endswith(SUFFIX):
                path = os.path.join(folder, f)
                out.append((f"cached {f[:12]}", path, functools.partial(load_integer_model, path)))
    return out


def find(fingerprint, channels):
    """The `Found` (model, coding, name) that wrote a file whose header holds `fingerprint` (16 bytes) for an
    image of `channels` channels, among the shipped and cached integer models; None if none did."""
    for name, path, load in _candidates():
        try:
            meta = read_meta(path)
            own, own_channels = bytes.fromhex(meta["fingerprint"]), meta["config"]["num_channels"]
        except (ModelFileError, KeyError, ValueError, TypeError):
            continue                      # a damaged cache entry is not a match; `load` reports it when named
        coding = structure.match(own, own_channels, fingerprint, channels)
        if coding is not None:
            return Found(load(), coding, name)
    return None
