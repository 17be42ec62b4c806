"""`compress` and `decompress`: a RIDE's lossless codec, exact on every machine.

    data = compress(model, image)          # bytes
    image = decompress(model, data)        # uint8 [H, W, C], bit for bit

The tables come from the model's integer model (`ride_tf.codec.integer`,
derived from the float weights once per set of weights, the same on every
machine), the symbols are coded by interleaved rANS in the sampler's
wavefront order (`ride_tf.codec.coding`), and the file is the container of
`ride_tf.codec.format`, whose header holds the integer model's fingerprint.
The payload is within a few bytes per lane of
`ride_tf.discrete.compressed_size_bits` (the same tables' ideal code length).
A file decodes with the same model file on any machine: another CPU kernel
(oneDNN on or off, AVX2 or AVX-512), any thread count, a GPU.

Screenshots, plots and other images of few colours are coded better by the
palette coder (`ride_tf.codec.palette`, no model): `compress_palette` writes
such a file, `compress_best(..., palette=True)` keeps it where it is the
shorter, and `decompress` reads it with any model (or None).
"""
import numpy as np

from ride_tf.checks import check_choice, check_images
from ride_tf.defaults import COMPILE_PIXELS, DECODERS
from ride_tf.codec import compiled, native, planes
from ride_tf.codec import palette as palette_coding
from ride_tf.codec.coding import coder_for_model, decode, decode_native, encode
from ride_tf.codec.format import MAX_PIXELS, CodecError, image_checksum, read_container, write_container
from ride_tf.codec.integer import integer_model
from ride_tf.codec.rans import RansError

__all__ = ["DECODERS", "compress", "compress_best", "compress_palette", "palette_alternative", "decompress",
           "is_palette_file", "model_fingerprint"]


def model_fingerprint(model):
    """16 bytes identifying the tables `model` codes with: the fingerprint of its integer model."""
    return integer_model(model).fingerprint


def _check_image(model, image, colour_transform=None, owner="compress"):
    """The image as a C-contiguous uint8 array [H, W, C] for `model` (None: any channel count), or ValueError."""
    array = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
    if array.dtype != np.uint8:
        raise ValueError(f"{owner}: image must be uint8 (8-bit values), got dtype {array.dtype}.")
    if array.ndim == 2 and (model is None or model.num_channels == 1) and colour_transform is None:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{owner}: image must be one image [H, W, C] (or [H, W] for a grayscale model), "
                         f"got shape {array.shape}.")
    if colour_transform is not None:
        planes.check_transform(owner, colour_transform, model.num_channels)
    channels = array.shape[-1] if model is None else (3 if colour_transform else model.num_channels)
    if model is None and not 1 <= channels <= 4:
        raise ValueError(f"{owner}: image must have 1 to 4 channels, got {channels}.")
    check_images(array[None], channels, name=f"{owner}: image")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ValueError(f"{owner}: images of more than {MAX_PIXELS} pixels are not supported, got "
                         f"{array.shape[0]} x {array.shape[1]}.")
    return np.ascontiguousarray(array)


def compress(model, image, metadata=b"", colour_transform=None):
    """Losslessly compress one uint8 image [H, W, C] (or [H, W]) with `model`; returns bytes.

    `metadata`: opaque bytes stored in the header (e.g. the image file's mode;
    `read_header(data).metadata` gives them back).  `colour_transform`
    ("rct", see `ride_tf.codec.planes`): code a colour image [H, W, 3] with a
    grayscale model, plane by plane after the reversible colour transform.
    """
    image = _check_image(model, image, colour_transform)
    if not isinstance(metadata, (bytes, bytearray)):
        raise TypeError(f"compress: metadata must be bytes, got {type(metadata).__name__}.")
    model.whitening.require_adapted("compress")
    coder = coder_for_model(model)
    if colour_transform is not None:
        return write_container(image, planes.fingerprint(coder.integer.fingerprint, colour_transform),
                               planes.encode_planes(coder, image, colour_transform), bytes(metadata))
    return write_container(image, coder.integer.fingerprint, encode(coder, image), bytes(metadata))


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


def compress_best(candidates, image, metadata=b"", palette=False):
    """The shortest of the files `compress` writes for one image under several codings: (bytes, index).

    `candidates`: a non-empty sequence of (model, colour_transform) pairs,
    e.g. [(rgb_model, None), (gray_model, "rct")] for a colour image coded
    jointly or by planes; `index` is the position of the one kept (the first
    of equal lengths).  `palette`: also try the palette coder where
    `palette_alternative` says so beside the shortest of these files (True,
    "auto" or False); if its file is the shortest, `index` is
    `len(candidates)`.  Every file is
    self-describing (its header names the model's fingerprint and the colour
    transform, or the palette coder), so `decompress` with the model that won
    reads it back like any other.  Costs one encoding per candidate.
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("compress_best: candidates must hold at least one (model, colour_transform) pair.")
    for k, candidate in enumerate(candidates):
        if not (isinstance(candidate, (tuple, list)) and len(candidate) == 2):
            raise TypeError(f"compress_best: candidates[{k}] must be a (model, colour_transform) pair, got "
                            f"{type(candidate).__name__}.")
    if palette not in (True, False, "auto"):
        raise ValueError(f"compress_best: palette must be True, False or 'auto', got {palette!r}.")
    files = [compress(model, image, metadata, colour_transform) for model, colour_transform in candidates]
    alternative = palette_alternative(image, 8 * min(len(f) for f in files), palette, metadata)
    if alternative is not None:
        files.append(alternative)
    index = min(range(len(files)), key=lambda k: len(files[k]))
    return files[index], index


def decompress(model, data, decoder="auto"):
    """The image uint8 [H, W, C] that `compress(model, image)` wrote into `data`, bit for bit (a colour image
    coded by planes with a grayscale model, `compress(..., colour_transform=...)`, decodes with that model;
    a file of `compress_palette` decodes with any model, or None).

    `decoder`: one of `DECODERS`, the same pixels either way: "native" (the
    C kernels of `ride_tf.codec.native`, the fastest), "numpy" (the
    reference), "compiled" (one XLA program per image shape) or "auto" (native
    where the kernels are built; else XLA for images of at least
    `COMPILE_PIXELS` values or shapes already compiled in this process, NumPy
    for the rest).  Raises `CodecError` for
    data that are not a ride-tf file, truncated or corrupted files, and files
    written with another model.
    """
    check_choice("decompress", "decoder", decoder, DECODERS)
    header, payload = read_container(data)
    if is_palette_file(header):
        return _decompress_palette(header, payload, decoder)
    if model is None:
        raise ValueError("decompress: this file was coded with a model (not the palette coder); pass that model.")
    coder = coder_for_model(model)
    transform = next((t for t in planes.TRANSFORMS if header.channels == 3 and model.num_channels == 1
                      and header.fingerprint == planes.fingerprint(coder.integer.fingerprint, t)), None)
    if transform is None and header.channels != model.num_channels:
        raise CodecError(f"the file holds a {header.channels}-channel image but the model has "
                         f"{model.num_channels} channel(s).")
    if transform is None and header.fingerprint != coder.integer.fingerprint:
        raise CodecError("the file was compressed with another model (model fingerprints differ); decode it "
                         "with the model that compressed it.")
    try:
        shape = (header.height, header.width)
        if decoder == "auto":
            if native.usable(coder.integer):
                decoder = "native"
            elif header.height * header.width * header.channels >= COMPILE_PIXELS or compiled.is_compiled(coder,
                                                                                                           *shape):
                decoder = "compiled"
            else:
                decoder = "numpy"
        decoding = {"native": decode_native, "compiled": compiled.decode, "numpy": decode}[decoder]
        image = (planes.decode_planes(decoding, coder, payload, *shape, transform) if transform
                 else decoding(coder, payload, *shape))
    except RansError as error:
        raise CodecError(f"corrupted file: the range decoder failed ({error}).") from None
    if image_checksum(image) != header.image_crc:
        raise CodecError("decoding did not reproduce the image's checksum: the file is corrupted.")
    return image


def _decompress_palette(header, payload, decoder):
    """A palette-coded file's image: decoder "native" takes the C coder, "numpy" and "compiled" the reference."""
    engine = {"auto": "auto", "native": "native"}.get(decoder, "reference")
    try:
        image = palette_coding.decode(payload, header.height, header.width, header.channels, engine)
    except RansError as error:
        raise CodecError(f"corrupted file: the palette decoder failed ({error}).") from None
    if image_checksum(image) != header.image_crc:
        raise CodecError("decoding did not reproduce the image's checksum: the file is corrupted.")
    return image
