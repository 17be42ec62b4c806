"""The integer model as a file: everything a coder needs, loaded with NumPy alone and checked against its fingerprint.

A model file is a NumPy ``.npz`` archive (no pickles) holding

    meta           JSON (UTF-8 bytes as uint8): {"format": FILE_FORMAT, "version": FILE_VERSION,
                   "integer_format": the arithmetic's version (`ride_tf.codec.integer.FORMAT`),
                   "lookup_sha256": the lookup tables' digest, "config": the architecture
                   (`IntegerModel.config()`), "fingerprint": 32 hex digits, "source": free-form
                   provenance, e.g. the .keras file's SHA-256 and name}
    input_mean, layer0.weights, layer0.bias, layer0.scale, layer0.bounds, ..., responses.*, gate.*, means.*,
    gate_exponents, logit_factor, logit_scale, logit_offset, inverse_widths, width_shifts, regressions
                   float64 arrays holding integers (and powers of two), `IntegerModel.named_arrays()`

The coding tables are data, kept apart from the model that produced them, so
that the two sides of a codec never derive them independently: the encoder
and the decoder load the same integers.  `load_integer_model` checks the
format, every array's shape against the configuration, that the arrays
hold integers for which every accumulation of the model stays exact (below
2^52, the bound `ride_tf.codec.derive.quantize_linear` guarantees), and that
the fingerprint recomputed from the content is the one stored; any problem
raises `ModelFileError` naming it.  The fingerprint is what compressed files
carry, so a file decodes with any copy of the model file that wrote it.
"""
import json
import os
import zipfile

import numpy as np

from ride_tf import geometry
from ride_tf.codec import lookup
from ride_tf.codec.integer import (ARRAY_KEYS, CELLS, CONFIG_KEYS, FORMAT, INPUT_BITS, STATE_BITS, IntegerLinear,
                                   IntegerModel)

__all__ = ["save_integer_model", "load_integer_model", "read_meta", "ModelFileError", "FILE_FORMAT", "FILE_VERSION",
           "SUFFIX"]

FILE_FORMAT = "ride-tf integer model file"
FILE_VERSION = 1
# The name an integer model file gets beside its .keras file (gray.keras -> gray.integer.npz).
SUFFIX = ".integer.npz"
_EXACT = 2.0 ** 52
_LINEAR_PARTS = ("weights", "bias", "scale", "bounds")


class ModelFileError(ValueError):
    """A file that is not a sound integer model file: foreign, damaged, of another version, or inconsistent."""


def save_integer_model(integer, path, source=None):
    """Write `integer` (an `IntegerModel`) to `path` (a temporary name, then a rename); returns the path.

    `source`: a JSON-serialisable dict of provenance stored in the meta (not part of the fingerprint)."""
    from ride_tf.io import atomic_path

    meta = dict(format=FILE_FORMAT, version=FILE_VERSION, integer_format=FORMAT, lookup_sha256=lookup.SHA256,
                config=integer.config(), fingerprint=integer.fingerprint.hex(), source=dict(source or {}))
    arrays = integer.named_arrays()
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    with atomic_path(os.fspath(path), owner="save_integer_model") as temporary:
        with open(temporary, "wb") as f:
            np.savez_compressed(f, **arrays)
    return os.fspath(path)


def read_meta(path):
    """The meta dict of an integer model file, read without its arrays (ModelFileError if it has none)."""
    with _open(path) as data:
        return _meta(path, data)


def load_integer_model(path):
    """The `IntegerModel` stored in `path`, checked (see the module docstring); ModelFileError otherwise."""
    with _open(path) as data:
        meta = _meta(path, data)
        arrays = {}
        for name in data.files:
            if name != "meta":
                try:
                    arrays[name] = np.asarray(data[name])
                except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
                    raise ModelFileError(f"{path}: the array {name!r} cannot be read ({error}).") from None
    config = _checked_config(path, meta.get("config"))
    parts = _checked_arrays(path, config, arrays)
    try:
        integer = IntegerModel(config, parts)
    except (ValueError, KeyError) as error:
        raise ModelFileError(f"{path}: {error}") from None
    if integer.fingerprint.hex() != meta.get("fingerprint"):
        raise ModelFileError(f"{path}: the content does not match its fingerprint (the file was changed or damaged; "
                             f"stored {meta.get('fingerprint')}, computed {integer.fingerprint.hex()}).")
    return integer


# ------------------------------------------------------------------ checks
def _open(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such integer model file." if not os.path.exists(path)
                             else f"{path}: not a regular file.")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(f"{path}: not an integer model file (not a NumPy archive: {error}).") from None


def _meta(path, data):
    if not hasattr(data, "files") or "meta" not in data.files:
        raise ModelFileError(f"{path}: not an integer model file (no meta record).")
    try:
        meta = json.loads(bytes(np.asarray(data["meta"], np.uint8)).decode())
    except (ValueError, UnicodeDecodeError, TypeError) as error:
        raise ModelFileError(f"{path}: its meta record is damaged ({error}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{path}: not an integer model file (format {meta.get('format') if isinstance(meta, dict) else None!r}).")
    if meta.get("version") != FILE_VERSION:
        raise ModelFileError(f"{path}: integer model file version {meta.get('version')!r}; this ride-tf reads "
                             f"version {FILE_VERSION}.")
    if meta.get("integer_format") != FORMAT:
        raise ModelFileError(f"{path}: the integer arithmetic {meta.get('integer_format')!r} is not this ride-tf's "
                             f"({FORMAT!r}).")
    if meta.get("lookup_sha256") != lookup.SHA256:
        raise ModelFileError(f"{path}: made with other lookup tables than this ride-tf's.")
    return meta


def _checked_config(path, config):
    if not isinstance(config, dict) or any(key not in config for key in CONFIG_KEYS):
        raise ModelFileError(f"{path}: the configuration must hold {', '.join(CONFIG_KEYS)}.")

    def integer(key, low):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ModelFileError(f"{path}: config {key} must be an integer >= {low}, got {value!r}.")
        return value

    channels = integer("num_channels", 1)
    for key, low in (("nb_size", 3), ("num_layers", 0), ("units", 1), ("num_components", 1), ("num_scales", 1)):
        integer(key, low)
    if config["nb_size"] % 2 == 0:
        raise ModelFileError(f"{path}: config nb_size must be odd, got {config['nb_size']}.")
    order = config["order"]
    if not isinstance(order, list) or sorted(order) != list(range(channels)) or \
            any(isinstance(c, bool) or not isinstance(c, int) for c in order):
        raise ModelFileError(f"{path}: config order must be a permutation of 0 .. {channels - 1}, got {order!r}.")
    if config["cell"] not in CELLS:
        raise ModelFileError(f"{path}: config cell must be one of {CELLS}, got {config['cell']!r}.")
    for key in ("extended", "reads_inputs"):
        if not isinstance(config[key], bool):
            raise ModelFileError(f"{path}: config {key} must be true or false, got {config[key]!r}.")
    if config["num_layers"] == 0 and not config["reads_inputs"]:
        raise ModelFileError(f"{path}: a model without spatial LSTM layers must read its inputs (reads_inputs).")
    return config


def _shapes(config):
    """{array name: shape} of a model of this configuration, and the affine maps' input bounds {prefix: [B_i]}."""
    channels, units, layers = config["num_channels"], config["units"], config["num_layers"]
    inputs, offsets = geometry.num_inputs(config["nb_size"], channels), geometry.num_indicators(config["nb_size"])
    components, experts = config["num_components"], config["num_components"] * config["num_scales"]
    memory = (2 ** STATE_BITS) * (64 if config["cell"] == "paper" else 1)
    u_bounds = [2 ** INPUT_BITS] * inputs + [1] * offsets
    state = [2 ** STATE_BITS] * units
    neighbours = state * 2 + (([memory] * units) * 2 if config["extended"] else [])
    v_bounds = (state if layers else []) + (u_bounds if config["reads_inputs"] else [])
    shapes, bounds = {"input_mean": (inputs,)}, {}
    for k in range(layers):
        bounds[f"layer{k}"] = (u_bounds if k == 0 else state) + neighbours
    return shapes, bounds, dict(v_bounds=v_bounds, inputs=inputs, components=components, experts=experts,
                                channels=channels, units=units)


def _checked_arrays(path, config, arrays):
    shapes, bounds, sizes = _shapes(config)
    expected = {"input_mean"} | set(ARRAY_KEYS) | {f"{prefix}.{part}" for prefix in
                                                   [f"layer{k}" for k in range(config["num_layers"])]
                                                   + ["responses", "gate", "means"] for part in _LINEAR_PARTS}
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise ModelFileError(f"{path}: the arrays do not fit the configuration (missing {missing}, unexpected "
                             f"{extra}).")
    for name, array in arrays.items():
        if array.dtype != np.float64 or not np.isfinite(array).all():
            raise ModelFileError(f"{path}: array {name!r} must hold finite float64 values.")
    features = arrays["responses.weights"].shape[1] if arrays["responses.weights"].ndim == 2 else -1
    channels, components, experts = sizes["channels"], sizes["components"], sizes["experts"]
    v_bounds = sizes["v_bounds"]
    bounds.update(responses=v_bounds, gate=v_bounds + [1 << 20] * max(features, 0),
                  means=v_bounds + [2 ** INPUT_BITS] * sizes["inputs"])
    outputs = {f"layer{k}": 5 * sizes["units"] for k in range(config["num_layers"])}
    outputs.update(responses=features, gate=components, means=components * channels)
    shapes.update(gate_exponents=(components,), logit_factor=(experts,), logit_scale=(experts,),
                  logit_offset=(experts,), inverse_widths=(experts, channels), width_shifts=(experts, channels),
                  regressions=(components, channels, channels))
    for prefix, n_out in outputs.items():
        shapes.update({f"{prefix}.weights": (len(bounds[prefix]), n_out), f"{prefix}.bias": (n_out,),
                       f"{prefix}.scale": (n_out,), f"{prefix}.bounds": (2,)})
    for name, shape in shapes.items():
        if arrays[name].shape != tuple(shape) or min(shape, default=1) < 1:
            raise ModelFileError(f"{path}: array {name!r} has shape {arrays[name].shape}, the configuration needs "
                                 f"{tuple(shape)}.")
    for name in ["input_mean", "logit_factor", "logit_offset", "inverse_widths", "width_shifts", "regressions",
                 "gate_exponents"] + [f"{p}.{part}" for p in outputs for part in ("weights", "bias", "bounds")]:
        if not np.array_equal(arrays[name], np.rint(arrays[name])):
            raise ModelFileError(f"{path}: array {name!r} must hold integers.")
    maps = {}
    for prefix in outputs:
        weights, bias, scale = (arrays[f"{prefix}.{part}"] for part in ("weights", "bias", "scale"))
        mantissa, _ = np.frexp(scale)
        if (scale <= 0).any() or (mantissa != 0.5).any():
            raise ModelFileError(f"{path}: array {prefix + '.scale'!r} must hold powers of two.")
        worst = np.asarray(bounds[prefix], np.float64) @ np.abs(weights) + np.abs(bias)
        if (worst >= _EXACT).any():
            raise ModelFileError(f"{path}: the affine map {prefix!r} could leave the exact range (2^52).")
        low, high = arrays[f"{prefix}.bounds"]
        maps[prefix] = IntegerLinear(weights, bias, scale, float(low), float(high))
    parts = {key: arrays[key] for key in ("input_mean",) + ARRAY_KEYS}
    parts.update(layers=[maps[f"layer{k}"] for k in range(config["num_layers"])], responses=maps["responses"],
                 gate=maps["gate"], means=maps["means"])
    return parts
