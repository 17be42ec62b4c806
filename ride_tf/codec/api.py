"""`compress`, `decompress` and exact sizes: the lossless codec's front door, exact on every machine.

    data = compress("gray", image)                # bytes; the shipped model "gray", no TensorFlow
    image = decompress(data)                      # uint8 [H, W, C], bit for bit: the model found by fingerprint
    bits = compressed_size_bits(model, images)    # [N] exact code lengths in bits

`model` is an integer model (`ride_tf.codec.integer.IntegerModel`), the name
of a shipped model ("gray", "rgb", ...), the path of an integer model file
(``*.integer.npz``, `ride_tf.codec.model_file`), the path of a ``.keras``
file (its integer model derived once and cached, `integer_model_of_file`), or
a `ride_tf.RIDE` (derived once per set of weights).  The first three need
neither TensorFlow nor the float model: the codec's runtime (integer model,
coder, C kernels, container) runs on NumPy; TensorFlow is imported only to
derive an integer model from a float one, and by the XLA decoder
(``decoder="compiled"``).

The tables come from the integer model (the same integers on every machine),
the symbols are coded by interleaved rANS in the sampler's wavefront order
(`ride_tf.codec.coding`), and the file is the container of
`ride_tf.codec.format`, whose header holds the integer model's fingerprint.
The payload is within a few bytes per lane of `compressed_size_bits` (the
same tables' ideal code length).  A file decodes with the same model on any
machine: another CPU kernel (AVX2 or AVX-512), any thread count, a GPU.

`threads` (encode and decode): how many threads code one image (None: every
core this process may use); the bytes and the pixels do not depend on it.

Screenshots, plots and other images of few colours are coded better by the
palette coder (`ride_tf.codec.palette`, no model): `compress_palette` writes
such a file, `compress_best(..., palette=True)` keeps it where it is the
shorter, and `decompress` reads it without a model.
"""
import hashlib
import os

import numpy as np

from ride_tf.checks import check_bool, check_choice, check_images, check_integer, check_verbose
from ride_tf.defaults import DECODERS
from ride_tf.codec import adapt, native, planes, registry, structure
from ride_tf.codec import palette as palette_coding
from ride_tf.codec.coding import coder_for, decode, decode_native, encode, pixel_code_length_bits
from ride_tf.codec.format import MAX_PIXELS, CodecError, image_checksum, read_container, write_container
from ride_tf.codec.integer import DERIVATION, IntegerModel
from ride_tf.codec.model_file import load_integer_model, save_integer_model
from ride_tf.codec.rans import RansError

__all__ = ["DECODERS", "compress", "compress_best", "compress_tries", "codings_to_try", "compress_palette", "palette_alternative",
           "decompress",
           "is_palette_file", "model_fingerprint", "as_integer_model", "integer_model_of_file", "earlier_integer_model",
           "find_model",
           "compressed_size_bits", "pixel_code_lengths", "UnknownModelError"]


class UnknownModelError(CodecError):
    """A file written with a model that is neither given nor shipped nor cached: its fingerprint is in the text."""


def as_integer_model(model, owner="compress", derivation=DERIVATION):
    """The `IntegerModel` that `model` names (see the module docstring); ValueError / TypeError naming `owner`.

    A string names a file where one exists (a .keras file, or an integer model file), else a shipped model.
    `derivation` (`ride_tf.codec.derive`) picks the integer model of a float model (a RIDE, a .keras file) or of a
    shipped model; an integer model, or its file, is itself."""
    if isinstance(model, IntegerModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.exists(path):
            return integer_model_of_file(path, derivation=derivation) if path.endswith(".keras") else \
                load_integer_model(path)
        if path in registry.shipped_names(derivation):
            return registry.shipped_model(path, derivation)
        raise ValueError(f"{owner}: {path}: no such model file, and no shipped model of that name (shipped: "
                         f"{', '.join(registry.shipped_names())}).")
    if hasattr(model, "whitening") and hasattr(model, "coding_order"):       # a RIDE: derive (TensorFlow is loaded)
        from ride_tf.codec.derive import integer_model

        return integer_model(model, derivation)
    raise TypeError(f"{owner}: model must be a ride_tf.RIDE, an integer model, the name of a shipped model "
                    f"({', '.join(registry.shipped_names())}) or a model file path, got {type(model).__name__}.")


def integer_model_of_file(path, cache=True, derivation=DERIVATION):
    """The `IntegerModel` of a .keras file by `derivation` (`ride_tf.codec.derive`), derived once and kept in the
    cache (`registry.cached_path`, keyed by the SHA-256 of the file's bytes): the first call loads the float
    model (TensorFlow) and derives it, later ones, in any process, load the cached integer model with NumPy
    alone.  cache=False derives without reading or writing the cache.  ValueError for a file that is not a
    ride-tf model."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    cached = registry.cached_path(digest, derivation)
    if cache and os.path.exists(cached):
        try:
            return load_integer_model(cached)
        except ValueError:
            pass                         # a damaged cache entry: derive it again and replace it
    from ride_tf.codec.derive import integer_model
    from ride_tf.model import load_model
    from ride_tf.runtime import quiet_tensorflow

    quiet_tensorflow()
    integer = integer_model(load_model(path), derivation)
    if cache:
        os.makedirs(registry.cache_folder(), exist_ok=True)
        save_integer_model(integer, cached, source=dict(keras_sha256=digest, keras_file=os.path.basename(path)))
    return integer


def earlier_integer_model(model):
    """The integer model of derivation 1 (what files written before issue 29's 16-bit products hold) of the model
    that `model` names, or None where `model` is an integer model (or its file), whose integers are fixed, or a
    name without a derivation-1 model."""
    if isinstance(model, IntegerModel):
        return None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if (os.path.exists(path) and not path.endswith(".keras")) or \
                (not os.path.exists(path) and path not in registry.shipped_names(1)):
            return None
    return as_integer_model(model, "decompress", derivation=1)


def model_fingerprint(model):
    """16 bytes identifying the tables `model` codes with: the fingerprint of its integer model."""
    return as_integer_model(model, "model_fingerprint").fingerprint


def _check_threads(owner, threads):
    return None if threads is None else check_integer(owner, "threads", threads, 1)


def check_colour_transform(owner, colour_transform, channels):
    """`colour_transform` if it is one of `structure.COLOUR_TRANSFORMS` and the model is grayscale (`channels` 1);
    ValueError naming the problem otherwise."""
    check_choice(owner, "colour_transform", colour_transform, structure.COLOUR_TRANSFORMS)
    if channels != 1:
        raise ValueError(f"{owner}: colour_transform={colour_transform!r} codes a colour image with a grayscale "
                         f"model; this model has {channels} channels.")
    return colour_transform


def _check_image(channels, image, colour_transform=None, owner="compress"):
    """The image as a C-contiguous uint8 array [H, W, C] for a model of `channels` channels (None: any channel
    count), or ValueError."""
    array = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
    if array.dtype != np.uint8:
        raise ValueError(f"{owner}: image must be uint8 (8-bit values), got dtype {array.dtype}.")
    if array.ndim == 2 and (channels is None or channels == 1) and colour_transform is None:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{owner}: image must be one image [H, W, C] (or [H, W] for a grayscale model), "
                         f"got shape {array.shape}.")
    if colour_transform is not None:
        check_colour_transform(owner, colour_transform, channels)
    wanted = array.shape[-1] if channels is None else (3 if colour_transform else channels)
    if channels is None and not 1 <= wanted <= 4:
        raise ValueError(f"{owner}: image must have 1 to 4 channels, got {wanted}.")
    check_images(array[None], wanted, name=f"{owner}: image")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ValueError(f"{owner}: images of more than {MAX_PIXELS} pixels are not supported, got "
                         f"{array.shape[0]} x {array.shape[1]}.")
    return np.ascontiguousarray(array)


def compress(model, image, metadata=b"", colour_transform=None, threads=None, packed=False, adapted=False):
    """Losslessly compress one uint8 image [H, W, C] (or [H, W]) with `model`; returns bytes.

    `metadata`: opaque bytes stored in the header (e.g. the image file's mode;
    `read_header(data).metadata` gives them back).  `colour_transform`: code a
    colour image [H, W, 3] with a grayscale model, "rct" plane by plane after
    the reversible colour transform (`ride_tf.codec.planes`), "equal" as one
    plane when its three channels are equal (`ride_tf.codec.structure`).
    `packed`: code each channel's values as their indices in the table of the
    values it uses (the table in the file; `ride_tf.codec.structure`).
    `adapted`: a one-channel model's priors fitted to each plane, the shifts
    in the file (`ride_tf.codec.adapt`; about twice the encoding time).
    """
    integer = as_integer_model(model, "compress")
    image = _check_image(integer.num_channels, image, colour_transform)
    if not isinstance(metadata, (bytes, bytearray)):
        raise TypeError(f"compress: metadata must be bytes, got {type(metadata).__name__}.")
    check_bool("compress", "packed", packed)
    check_bool("compress", "adapted", adapted)
    if adapted and integer.num_channels != 1:
        raise ValueError(f"compress: adapted=True fits a one-channel model's priors; this model has "
                         f"{integer.num_channels} channels.")
    threads = _check_threads("compress", threads)
    coder = coder_for(integer)
    values = structure.coded_channels(image, colour_transform)
    head = b""
    if packed:
        used = structure.used_values(values)
        head, values = structure.table_bytes(used), structure.pack(values, used)
    plane_images = planes.split(values, colour_transform) if colour_transform == "rct" else [values]
    coders = [coder] * len(plane_images)
    if adapted:
        fits = [adapt.adapted_model(coder, plane, threads) for plane in plane_images]
        head += adapt.shift_bytes([shift for shift, _ in fits])
        coders = [coder_for(model) for _, model in fits]
    streams = [encode(c, plane, threads=threads) for c, plane in zip(coders, plane_images)]
    payload = planes.join_streams(streams) if colour_transform == "rct" else streams[0]
    return write_container(image, structure.coding_fingerprint(integer.fingerprint, colour_transform, packed, adapted),
                           head + payload, bytes(metadata))


def compress_palette(image, metadata=b""):
    """Losslessly compress one uint8 image [H, W, C] (or [H, W]) with the palette coder (`ride_tf.codec.palette`,
    no model); returns bytes.  ValueError for an image of more than `ride_tf.codec.palette.MAX_COLOURS`
    distinct colours."""
    image = _check_image(None, image, owner="compress_palette")
    if not isinstance(metadata, (bytes, bytearray)):
        raise TypeError(f"compress_palette: metadata must be bytes, got {type(metadata).__name__}.")
    return write_container(image, palette_coding.FINGERPRINT, palette_coding.encode(image), bytes(metadata))


def palette_alternative(image, rival_bits, palette="auto", metadata=b""):
    """The palette coder's file of one uint8 image [H, W, C] (or [H, W]) where `palette` says to try it beside a
    rival file of `rival_bits` bits, else None: True wherever the image has at most
    `ride_tf.codec.palette.MAX_COLOURS` colours, "auto" where it may win (`palette.worth_trying`: the image
    looks synthetic, or the coder's rate on a band of it is within 1.1 of the rival's), False never.  Whether
    the file is shorter than the rival is the caller's to compare."""
    if palette not in (True, False, "auto"):
        raise ValueError(f"palette_alternative: palette must be True, False or 'auto', got {palette!r}.")
    if not palette:
        return None
    array = _check_image(None, image, owner="palette_alternative")
    tried = (palette_coding.worth_trying(array, rival_bits) if palette == "auto"
             else palette_coding.applicable(array))
    return compress_palette(array, metadata) if tried else None


def is_palette_file(header):
    """Whether a file's header (`read_header`) announces the palette coder (decoded without a model)."""
    return header.fingerprint == palette_coding.FINGERPRINT


def codings_to_try(candidates, image):
    """The codings `compress_best` tries first for one uint8 image [H, W, C]: a list of (integer model,
    colour_transform, packed, index), `index` the position in `candidates` ((model, colour_transform) pairs) of
    the candidate each comes from.

    Each candidate as given, except that a gray model's "rct" becomes "equal" where the image's three channels
    are equal (never longer: the same first plane, no constant ones); and beside each, its packed form where
    `structure.worth_packing` finds gaps in the histogram of what it codes."""
    image = np.asarray(image)
    equal = structure.channels_equal(image)
    out = []
    for index, (model, transform) in enumerate(candidates):
        integer = as_integer_model(model, "compress_best")
        if equal and integer.num_channels == 1 and transform == "rct":
            transform = "equal"
        out.append((integer, transform, False, index))
        if structure.worth_packing(structure.coded_channels(image, transform) if image.ndim == 3 else image[..., None]):
            out.append((integer, transform, True, index))
    return out


def compress_best(candidates, image, metadata=b"", palette=False, threads=None, adapt=False):
    """The shortest of the files `compress` writes for one image under several codings: (bytes, index).

    `candidates`: a non-empty sequence of (model, colour_transform) pairs,
    e.g. [("rgb", None), ("gray", "rct")] for a colour image coded jointly or
    by planes; each is tried as `codings_to_try` says (equal channels coded
    once, histograms with gaps packed, where the image has them), and `index`
    is the position of the candidate whose coding was kept (the first of
    equal lengths).  `adapt`: also try the shortest of these files' coding
    with the priors fitted to the image (one-channel models;
    `ride_tf.codec.adapt`: about twice the time of one encoding).  `palette`:
    also try the palette coder where `palette_alternative` says so beside the
    shortest of these files (True, "auto" or False); if its file is the
    shortest, `index` is `len(candidates)`.  Every file is self-describing
    (its header names the model's fingerprint and the coding, or the palette
    coder), so `decompress` reads it back like any other.  `compress_tries`
    gives every file tried.
    """
    files = compress_tries(candidates, image, metadata, palette, threads, adapt)
    data, index, _ = min(files, key=lambda f: len(f[0]))
    return data, index


def compress_tries(candidates, image, metadata=b"", palette=False, threads=None, adapt=False):
    """Every file `compress_best` tries, in the order tried: a list of (bytes, index, coding), coding the
    (colour_transform, packed, adapted) of a model's file or None for the palette coder's."""
    candidates = list(candidates)
    if not candidates:
        raise ValueError("compress_best: candidates must hold at least one (model, colour_transform) pair.")
    for k, candidate in enumerate(candidates):
        if not (isinstance(candidate, (tuple, list)) and len(candidate) == 2):
            raise TypeError(f"compress_best: candidates[{k}] must be a (model, colour_transform) pair, got "
                            f"{type(candidate).__name__}.")
    if palette not in (True, False, "auto"):
        raise ValueError(f"compress_best: palette must be True, False or 'auto', got {palette!r}.")
    check_bool("compress_best", "adapt", adapt)
    files = [(compress(integer, image, metadata, transform, threads, packed), index, (transform, packed, False))
             for integer, transform, packed, index in codings_to_try(candidates, image)]
    data, index, (transform, packed, _) = min(files, key=lambda f: len(f[0]))
    integer = as_integer_model(candidates[index][0], "compress_best")
    if adapt and integer.num_channels == 1:
        files.append((compress(integer, image, metadata, transform, threads, packed, adapted=True), index,
                      (transform, packed, True)))
    alternative = palette_alternative(image, 8 * min(len(f[0]) for f in files), palette, metadata)
    if alternative is not None:
        files.append((alternative, len(candidates), None))
    return files


def find_model(header):
    """The `registry.Found` (integer model, (colour_transform, packed) coding, name) that wrote the file of `header`, among the
    shipped and cached integer models; UnknownModelError naming the fingerprint if none did."""
    found = registry.find(header.fingerprint, header.channels)
    if found is None:
        raise UnknownModelError(
            f"the file was written with a model that is neither shipped with ride-tf nor cached here (fingerprint "
            f"{header.fingerprint.hex()}); decode it with that model: ride_tf.decompress(MODEL, data), or "
            "`ride-tf decompress FILE OUT --model MODEL` (a .keras file or its integer model file).")
    return found


def decompress(model, data=None, decoder="auto", threads=None):
    """The image uint8 [H, W, C] that `compress` wrote into `data`, bit for bit.

    `decompress(data)` finds the model by the fingerprint in the file's
    header among the shipped models and those cached here (`registry.find`;
    `UnknownModelError`, a CodecError naming the fingerprint, if none wrote
    it); `decompress(model, data)` decodes with the given model (see the
    module docstring for what a model may be).  A colour image coded by
    planes with a grayscale model decodes with that model; a file of
    `compress_palette` decodes without one (any `model` is then ignored).

    `decoder`: one of `DECODERS`, the same pixels either way: "native" (the C
    kernels of `ride_tf.codec.native`, the fastest), "numpy" (the
    reference), "compiled" (one XLA program per image shape; needs
    TensorFlow) or "auto" (native where the kernels are built, else NumPy).
    Raises `CodecError` for data that are not a ride-tf file, truncated or
    corrupted files, and files written with another model.
    """
    if data is None:
        model, data = None, model
    check_choice("decompress", "decoder", decoder, DECODERS)
    threads = _check_threads("decompress", threads)
    header, payload = read_container(data)
    if is_palette_file(header):
        return _decompress_palette(header, payload, decoder)
    if model is None:
        integer, (transform, packed, adapted), _ = find_model(header)
    else:
        integer = as_integer_model(model, "decompress")
        coding = structure.match(integer.fingerprint, integer.num_channels, header.fingerprint, header.channels)
        if coding is None:                  # a file of the earlier derivation of the same model
            earlier = earlier_integer_model(model)
            if earlier is not None:
                coding = structure.match(earlier.fingerprint, earlier.num_channels, header.fingerprint,
                                         header.channels)
                integer = earlier if coding is not None else integer
        if coding is None and header.channels != integer.num_channels and integer.num_channels != 1:
            raise CodecError(f"the file holds a {header.channels}-channel image but the model has "
                             f"{integer.num_channels} channels.")
        if coding is None:
            raise CodecError("the file was compressed with another model (model fingerprints differ); decode it "
                             "with the model that compressed it, or without naming one (ride_tf.decompress(data)).")
        transform, packed, adapted = coding
    if decoder == "auto":
        decoder = "native" if native.usable(integer) else "numpy"
    if decoder == "compiled":
        from ride_tf.codec import compiled

        decoding = compiled.decode
    elif decoder == "native":
        decoding = lambda coder, stream, height, width: decode_native(coder, stream, height, width, threads)
    else:
        decoding = decode
    try:
        shape = (header.height, header.width)
        count = 3 if transform == "rct" else 1
        if packed:
            used, payload = structure.read_tables(payload, 1 if transform == "equal" else header.channels)
        coders = [coder_for(integer)] * count
        if adapted:
            shifts, payload = adapt.read_shifts(payload, count, integer.num_experts)
            coders = [coder_for(integer.with_prior_shift(shift)) for shift in shifts]
        values = (planes.decode_planes(decoding, None, payload, *shape, transform, coders=coders)
                  if transform == "rct" else decoding(coders[0], payload, *shape))
        if packed:
            values = structure.unpack(values, used)
        image = np.ascontiguousarray(np.repeat(values, 3, axis=-1)) if transform == "equal" else values
    except (RansError, structure.PackingError, adapt.AdaptationError) as error:
        raise CodecError(f"corrupted file: the range decoder failed ({error}).") from None
    if image_checksum(image) != header.image_crc:
        raise CodecError("decoding did not reproduce the image's checksum: the file is corrupted.")
    return image


def _decompress_palette(header, payload, decoder):
    """A palette-coded file's image: decoder "native" takes the C coder, "numpy" and "compiled" the reference."""
    engine = {"auto": "auto", "native": "native"}.get(decoder, "reference")
    try:
        image = palette_coding.decode(payload, header.height, header.width, header.channels, engine)
    except palette_coding.PaletteError as error:
        raise CodecError(f"corrupted file: the palette decoder failed ({error}).") from None
    if image_checksum(image) != header.image_crc:
        raise CodecError("decoding did not reproduce the image's checksum: the file is corrupted.")
    return image


# ------------------------------------------------------------------ exact sizes
def pixel_code_lengths(model, images, verbose=0, colour_transform=None, threads=None, packed=False, adapted=False):
    """The code length of every pixel of uint8 images in bits under the codec's tables, float64 [N, H, W] (the
    sum over a pixel's channels); `compressed_size_bits` is its sum over each image.  `colour_transform`,
    `packed` and `adapted`: the coding, as for `compress` ("rct": colour images [N, H, W, 3] coded plane by plane
    by a grayscale model, "equal": as one plane; packed: each image's values coded as indices in its own tables;
    adapted: each plane under the model with its priors fitted to it).  verbose=1 shows a progress bar over the
    images (tqdm, on standard error)."""
    integer = as_integer_model(model, "pixel_code_lengths")
    check_verbose("pixel_code_lengths", verbose, (0, 1))
    check_bool("pixel_code_lengths", "packed", packed)
    check_bool("pixel_code_lengths", "adapted", adapted)
    if adapted and integer.num_channels != 1:
        raise ValueError(f"pixel_code_lengths: adapted=True fits a one-channel model's priors; this model has "
                         f"{integer.num_channels} channels.")
    threads = _check_threads("pixel_code_lengths", threads)
    channels = 3 if colour_transform else integer.num_channels
    if colour_transform is not None:
        check_colour_transform("pixel_code_lengths", colour_transform, integer.num_channels)
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"pixel_code_lengths: images must be uint8 (8-bit values), got dtype {array.dtype}.")
    if array.ndim == 3 and channels == 1:
        array = array[..., None]
    array = check_images(array, channels, name="images")
    coder = coder_for(integer)
    out = np.empty(array.shape[:3], np.float64)
    progress = _progress(len(array), verbose and len(array) > 1)
    for k, image in enumerate(array):
        values = structure.coded_channels(np.ascontiguousarray(image), colour_transform)
        if packed:
            values = structure.pack(values, structure.used_values(values))
        plane_images = planes.split(values, colour_transform) if colour_transform == "rct" else [values]
        coders = ([coder_for(adapt.adapted_model(coder, plane, threads)[1]) for plane in plane_images] if adapted
                  else [coder] * len(plane_images))
        out[k] = sum(pixel_code_length_bits(c, plane, threads=threads) for c, plane in zip(coders, plane_images))
        progress.update(1)
    progress.close()
    return out


def compressed_size_bits(model, images, verbose=0, colour_transform=None, threads=None, packed=False, adapted=False):
    """The exact ideal code length of each whole uint8 image in bits, float64 [N]: the size of what `compress`
    writes.

    The sum over every pixel (borders included) of log2(TOTAL / f_ij), f_ij
    the frequency of the pixel's value in the integer model's table
    (`ride_tf.codec.integer`, the tables the codec codes with, the same on
    every machine), and what a coding stores beside the streams: for a packed
    coding its tables (256 bits per coded channel), for an adapted one its
    prior shifts (8 bits per expert and plane).  A file holds this many bits
    rounded up to 32-bit words, plus at most 96 bits per rANS lane and the
    header.  Divide by H * W * C for bit per pixel and channel.  verbose=1
    shows a progress bar over the images.  `colour_transform`, `packed` and
    `adapted`: the coding, as for `compress`.  Runs without TensorFlow for
    integer models, shipped names and model files.
    """
    integer = as_integer_model(model, "compressed_size_bits")
    channels = 1 if colour_transform == "equal" else 3 if colour_transform else integer.num_channels
    extra = (8 * structure.TABLE_BYTES * channels if packed else 0) + (
        8 * integer.num_experts * (3 if colour_transform == "rct" else 1) if adapted else 0)
    return pixel_code_lengths(integer, images, verbose, colour_transform, threads, packed, adapted).sum(axis=(1, 2)) + extra


def _progress(total, shown):
    """A tqdm progress bar over `total` images on standard error (disabled unless `shown`)."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not shown, unit="image", leave=False)
