"""A lossless image codec on RIDE: range coding of the 8-bit values with the model's masses.

    data = compress(model, image)          # bytes
    image = decompress(model, data)        # uint8 [H, W, C], bit for bit

Order and probabilities: the pixels are coded front by front in the
sampler's wavefront order (`ride_tf.wavefront`), and within a pixel channel by
channel.  For each front one traced graph call writes the previous front's
values (at their bin centres) into the canvas, advances the spatial LSTMs and
returns the 256-bin table of channel 0 of every pixel of the front
(`ride_tf.discrete.bin_table`, the masses of `compressed_size_bits`); channels
1, 2 get their tables from a second graph given the values coded before them.
The encoder runs exactly the same loop as the decoder, with the values known
(teacher forcing), so both compute the same tables from the same inputs with
the same graphs and the same shapes.  Those are element-wise and per-row
operations whose results do not depend on the batch or on TensorFlow's thread
count (a test decodes in a fresh process with another thread count), and the
decoder also checks a CRC-32 of the image, so a mismatch is reported, never
returned.

Entropy coding: constriction's range coder (`constriction.stream.queue`) with
`Categorical(perfect=False)` models, which quantize each table
deterministically to 24-bit fixed point and give every bin a non-zero mass.

File format (version 1), big-endian header of 44 bytes, then the range
coder's 32-bit words (little-endian):

    magic "RIDE\\x00\\x1a" | version u8 | channels u8 | height u32 | width u32 |
    model fingerprint 16 bytes | CRC-32 of the image u32 | payload words u32 |
    CRC-32 of the payload u32 | CRC-32 of the header's preceding bytes u32

A file for another model, a truncated, corrupted or foreign file raises
`CodecError` saying which; sizes in a header are trusted only after its CRC
has checked out, so random bytes can neither allocate much nor run long.
"""
import hashlib
import json
import struct
import zlib

import keras
import numpy as np
import tensorflow as tf

from ride_tf import discrete
from ride_tf.preprocessing import check_images
from ride_tf.wavefront import Wavefront

__all__ = ["CodecError", "compress", "decompress", "model_fingerprint", "read_header", "Header",
           "HEADER_SIZE", "MAGIC", "FORMAT_VERSION", "MAX_PIXELS"]

MAGIC = b"RIDE\x00\x1a"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">6sBBII16sIII")
HEADER_SIZE = _HEADER.size + 4
# The largest image a header may announce (2^28 pixels, 16384 x 16384).
MAX_PIXELS = 1 << 28


class CodecError(ValueError):
    """A file that cannot be decoded with this model: foreign, truncated, corrupted or for another model."""


class Header(tuple):
    """The parsed header: (height, width, channels, fingerprint, image_crc, payload_words, payload_crc)."""
    __slots__ = ()
    fields = ("height", "width", "channels", "fingerprint", "image_crc", "payload_words", "payload_crc")

    def __new__(cls, *values):
        return super().__new__(cls, values)

    def __getattr__(self, name):
        return self[self.fields.index(name)]


def model_fingerprint(model):
    """16 bytes identifying a model: SHA-256 of its configuration and every weight's name, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(keras.saving.serialize_keras_object(model)["config"], sort_keys=True,
                             default=str).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.digest()[:16]


def read_header(data):
    """Parse and check the header of `data` (bytes); CodecError if it is not a valid ride-tf file."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decompress: data must be bytes, got {type(data).__name__}.")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise CodecError("not a ride-tf compressed image (the file does not start with the magic bytes).")
    if len(data) < HEADER_SIZE:
        raise CodecError(f"truncated file: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header.")
    fields = _HEADER.unpack(data[:_HEADER.size])
    (header_crc,) = struct.unpack(">I", data[_HEADER.size:HEADER_SIZE])
    if zlib.crc32(data[:_HEADER.size]) != header_crc:
        raise CodecError("corrupted file: the header's checksum does not match.")
    _, version, channels, height, width, fingerprint, image_crc, words, payload_crc = fields
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported format version {version} (this ride-tf reads version {FORMAT_VERSION}).")
    if channels < 1 or height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise CodecError(f"corrupted file: the header announces an image of {height} x {width} x {channels}.")
    return Header(height, width, channels, fingerprint, image_crc, words, payload_crc)


# --------------------------------------------------------------- the graphs
def _graphs(model):
    """The codec's traced graphs for `model` (one trace each, for every image size)."""
    functions = model._graph_functions
    if "codec_front" in functions:
        return functions["codec_front"], functions["codec_channel"], functions["codec_globals"]
    channels, units = model.num_channels, model.num_hiddens
    num_states = 2 * (model.radius + 1) * model.num_layers
    dtype = model.compute_dtype

    def unflatten(flat):
        per_layer = 2 * (model.radius + 1)
        return tuple(tuple(flat[l * per_layer:(l + 1) * per_layer]) for l in range(model.num_layers))

    def globals_fn():
        mixture = discrete.intensity_mixture(model, tf.zeros([1, model.mcgsm.dim_in], dtype),
                                             tf.zeros([1, model.whitening.input_dim], dtype))
        return mixture.regressions, mixture.stddevs

    def front_fn(t, height, width, canvas, previous_pixels, previous_values, regressions, stddevs, *flat):
        front = Wavefront(model)
        canvas = front.write(canvas, previous_pixels, previous_values)
        pixels, h, x_hat, history = front.features(t, canvas, unflatten(flat), height, width)
        mixture = discrete.intensity_mixture(model, h, x_hat)
        mixture = mixture._replace(regressions=regressions, stddevs=stddevs)
        mean, std = discrete.channel_moments(mixture, 0)
        table = discrete.bin_table(mixture.log_weights, mean, std, tf.float32)
        flat_history = [s for layer in history for s in layer]
        return [canvas, pixels, mixture.log_weights, mixture.means, table] + flat_history

    def channel_fn(channel, log_weights, means, regressions, stddevs, values):
        # values [n, C] int32: channels < channel are set.
        mixture = discrete.IntensityMixture(log_weights, means, regressions, stddevs)
        previous = tf.cast(discrete.bin_centres(values), tf.float64)
        for c in range(channels - 1):
            log_weights = log_weights + discrete.channel_log_mass(mixture._replace(log_weights=log_weights), c,
                                                                  values[:, c], previous)
            mean, std = discrete.channel_moments(mixture, c + 1, previous)
            if c + 1 == channel:
                return discrete.bin_table(log_weights, mean, std, tf.float32)
        raise AssertionError("unreachable")

    f64 = tf.float64
    state = tf.TensorSpec([None, None, units], dtype)
    front_spec = [tf.TensorSpec([], tf.int32)] * 3 + [
        tf.TensorSpec([None, None, None, channels], dtype), tf.TensorSpec([None, 2], tf.int32),
        tf.TensorSpec([None, None, channels], dtype), tf.TensorSpec([None, channels, channels], f64),
        tf.TensorSpec([None, channels], f64)] + [state] * num_states
    functions["codec_front"] = tf.function(front_fn, input_signature=front_spec)
    channel_graphs = {}
    for channel in range(1, channels):
        channel_graphs[channel] = tf.function(
            lambda *args, channel=channel: channel_fn(channel, *args), input_signature=[
                tf.TensorSpec([None, None], f64), tf.TensorSpec([None, None, channels], f64),
                tf.TensorSpec([None, channels, channels], f64), tf.TensorSpec([None, channels], f64),
                tf.TensorSpec([None, channels], tf.int32)])
    functions["codec_channel"] = channel_graphs
    functions["codec_globals"] = tf.function(globals_fn)
    return functions["codec_front"], channel_graphs, functions["codec_globals"]


def _run(model, height, width, symbols=None, code=None, verbose=0):
    """The loop shared by encoder and decoder.

    symbols: uint8 [H, W, C] when encoding (None when decoding); code(c, table [n, 256] float64,
    known [n] or None) -> the n values of channel c (the encoder codes the known ones,
    the decoder decodes them).  Returns the image uint8 [H, W, C].
    """
    front_graph, channel_graphs, globals_graph = _graphs(model)
    channels, r = model.num_channels, model.radius
    dtype = model.compute_dtype
    regressions, stddevs = globals_graph()
    front = Wavefront(model)
    canvas, history = front.initial_state(tf.zeros([1, height, width, channels], dtype))
    flat = [s for layer in history for s in layer]
    out = np.zeros((height, width, channels), np.uint8)
    previous_pixels = np.zeros((0, 2), np.int32)
    previous_values = np.zeros((0, 1, channels), dtype)
    num_fronts = (r + 1) * (height - 1) + width
    bar = keras.utils.Progbar(num_fronts, verbose=verbose, unit_name="front")
    for t in range(num_fronts):
        result = front_graph(np.int32(t), np.int32(height), np.int32(width), canvas, previous_pixels,
                             previous_values, regressions, stddevs, *flat)
        canvas, pixels, log_weights, means, table = result[:5]
        flat = result[5:]
        pixels = pixels.numpy()
        values = np.zeros((len(pixels), channels), np.int32)
        known = None if symbols is None else symbols[pixels[:, 0], pixels[:, 1]]
        for c in range(channels):
            if c > 0:
                table = channel_graphs[c](log_weights, means, regressions, stddevs, values)
            values[:, c] = code(c, table.numpy().astype(np.float64), None if known is None else known[:, c])
        out[pixels[:, 0], pixels[:, 1]] = values
        previous_pixels = pixels.astype(np.int32)
        previous_values = ((values.astype(dtype) + 0.5) / 256.0)[:, None, :]
        if verbose and (t % 64 == 0 or t == num_fronts - 1):
            bar.update(t + 1)
    return out


def _check_image(model, image):
    array = np.asarray(image.numpy() if isinstance(image, tf.Tensor) else image)
    if array.dtype != np.uint8:
        raise ValueError(f"compress: image must be uint8 (8-bit values), got dtype {array.dtype}.")
    if array.ndim == 2 and model.num_channels == 1:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"compress: image must be one image [H, W, C] (or [H, W] for a grayscale model), "
                         f"got shape {array.shape}.")
    check_images(array[None], model.num_channels, name="compress: image")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ValueError(f"compress: images of more than {MAX_PIXELS} pixels are not supported, got "
                         f"{array.shape[0]} x {array.shape[1]}.")
    return np.ascontiguousarray(array)


def _constriction():
    import constriction

    return constriction.stream.queue, constriction.stream.model.Categorical(perfect=False)


def compress(model, image, verbose=0):
    """Losslessly compress one uint8 image [H, W, C] (or [H, W]) with `model`; returns bytes.

    The size is within a fraction of a percent of
    `ride_tf.discrete.compressed_size_bits` plus the 44-byte header.
    """
    image = _check_image(model, image)
    queue, categorical = _constriction()
    encoder = queue.RangeEncoder()

    def code(channel, table, known):
        encoder.encode(known.astype(np.int32), categorical, table)
        return known

    height, width, channels = image.shape
    _run(model, height, width, symbols=image, code=code, verbose=verbose)
    payload = encoder.get_compressed().astype("<u4").tobytes()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, channels, height, width, model_fingerprint(model),
                          zlib.crc32(image.tobytes()), len(payload) // 4, zlib.crc32(payload))
    return header + struct.pack(">I", zlib.crc32(header)) + payload


def decompress(model, data, verbose=0):
    """The image uint8 [H, W, C] that `compress(model, image)` wrote into `data`, bit for bit.

    Raises `CodecError` for data that are not a ride-tf file, truncated or
    corrupted files, and files written with another model.
    """
    header = read_header(data)
    data = bytes(data)
    if header.channels != model.num_channels:
        raise CodecError(f"the file holds a {header.channels}-channel image but the model has "
                         f"{model.num_channels} channel(s).")
    if header.fingerprint != model_fingerprint(model):
        raise CodecError("the file was compressed with another model (model fingerprints differ); decode it "
                         "with the model that compressed it.")
    payload = data[HEADER_SIZE:]
    expected = 4 * header.payload_words
    if len(payload) < expected:
        raise CodecError(f"truncated file: {len(payload)} of {expected} payload bytes.")
    if len(payload) > expected:
        raise CodecError(f"corrupted file: {len(payload) - expected} bytes after the end of the payload.")
    if zlib.crc32(payload) != header.payload_crc:
        raise CodecError("corrupted file: the payload's checksum does not match.")
    queue, categorical = _constriction()
    decoder = queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))

    def code(channel, table, known):
        try:
            return decoder.decode(categorical, table)
        except Exception as error:   # constriction reports an exhausted or invalid stream
            raise CodecError(f"corrupted file: the range decoder failed ({error}).") from None

    image = _run(model, header.height, header.width, code=code, verbose=verbose)
    if zlib.crc32(image.tobytes()) != header.image_crc:
        raise CodecError("decoding did not reproduce the image's checksum: the file is corrupted or was "
                         "written by a model whose numbers differ from this one's.")
    return image
