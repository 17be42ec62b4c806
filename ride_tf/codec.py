"""A lossless image codec on RIDE: range coding of the 8-bit values with the model's masses.

    data = compress(model, image)          # bytes
    image = decompress(model, data)        # uint8 [H, W, C], bit for bit

Order and probabilities: the pixels are coded front by front in the
sampler's wavefront order (`ride_tf.wavefront`), and within a pixel channel by
channel, in one traced `tf.while_loop` (`_graph`).  For each front the graph
advances the spatial LSTMs on the canvas of the values coded so far (at their
bin centres), turns the MCGSM of every pixel of the front into its mixture of
Gaussians in intensities (`ride_tf.discrete.intensity_mixture`) and codes
each channel in two steps:

  1. a table of WINDOW = 16 bins around the mixture's mean plus two escape
     symbols, "below" and "above", with the exact masses of the two tails
     (`discrete.window_table`);
  2. for the rare pixels that escaped (about 0.2% of a photo's pixels), the
     full 256-bin table restricted to that tail (`discrete.bin_table`).

So each value is coded with its exact mass P(k) = P(tail) P(k | tail), and
the common case evaluates 17 instead of 255 bin edges per expert.  The tables
go to the entropy coder through `tf.numpy_function`, which returns the
channel's values: the known ones when encoding, the decoded ones when decoding.
Encoder and decoder run the same graph on the same shapes, so they compute the
same tables from the same inputs; the graph's reductions run over the last
axis, row by row, so the numbers do not depend on TensorFlow's thread count
(a test decodes in a fresh process with one thread), and the decoder also
checks a CRC-32 of the image, so a mismatch is reported, never returned.

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
import threading
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
FORMAT_VERSION = 1   # with WINDOW = 16
_HEADER = struct.Struct(">6sBBII16sIII")
HEADER_SIZE = _HEADER.size + 4
# Bins of the window coded first around each pixel's mixture mean (see `_graph`).
WINDOW = 16
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


# --------------------------------------------------------------- the graph
class _Coder:
    """The entropy coder the traced graph calls back (set for the length of one compress/decompress)."""

    def __init__(self):
        self.code = None
        self.lock = threading.Lock()

    def __call__(self, channel, table, known):
        if len(table) == 0:
            return np.zeros(0, np.int32)
        return np.asarray(self.code(int(channel), table.astype(np.float64), known), np.int32)


def _graph(model):
    """The codec's traced graph for `model`: (known uint8 [H, W, C]) -> the coded image uint8 [H, W, C].

    One `tf.while_loop` over the wavefronts; for each front and channel the
    256-bin tables of the front's pixels go to the coder (`tf.numpy_function`),
    which returns the channel's values (the known ones when encoding, the
    decoded ones when decoding); they enter the canvas at their bin centres.
    """
    functions = model._graph_functions
    if "codec" in functions:
        return functions["codec"]
    channels = model.num_channels
    dtype = model.compute_dtype
    coder = _Coder()

    def code_channel(c, log_weights, mean, std, known):
        """Code one channel of the front's pixels: a window of WINDOW bins with two escapes, then the
        escaped pixels with their full tables restricted to the escaped tail; returns the values [n]."""
        start = discrete.window_start(log_weights, mean, WINDOW)
        table = discrete.window_table(log_weights, mean, std, start, WINDOW, tf.float32)     # [n, W + 2]
        known_symbol = tf.clip_by_value(known - start + 1, 0, WINDOW + 1)
        symbol = tf.ensure_shape(tf.numpy_function(coder, [c, table, known_symbol], tf.int32, stateful=True),
                                 [None])
        value = start + symbol - 1
        escape = (symbol == 0) | (symbol == WINDOW + 1)

        def code_escaped():
            escaped = tf.where(escape)[:, 0]
            full = discrete.bin_table(tf.gather(log_weights, escaped), tf.gather(mean, escaped), std, tf.float32)
            bins = tf.range(discrete.NUM_BINS)[None, :]
            start_escaped = tf.gather(start, escaped)[:, None]
            tail = tf.where(tf.gather(symbol, escaped)[:, None] == 0, bins < start_escaped,
                            bins >= start_escaped + WINDOW)
            tail_value = tf.ensure_shape(tf.numpy_function(
                coder, [c, tf.where(tail, full, tf.zeros_like(full)), tf.gather(known, escaped)], tf.int32,
                stateful=True), [None])
            return tf.tensor_scatter_nd_update(value, escaped[:, None], tail_value)

        return tf.cond(tf.reduce_any(escape), code_escaped, lambda: value)

    def run(known):
        front = Wavefront(model)
        shape = tf.shape(known)
        height, width = shape[0], shape[1]
        canvas, history = front.initial_state(tf.zeros([1, height, width, channels], dtype))
        constants = discrete.mixture_constants(model, tf.float32)

        def body(t, canvas, history):
            pixels, h, x_hat, history = front.features(t, canvas, history, height, width)
            mixture = discrete.intensity_mixture(model, h, x_hat, constants, tf.float32)
            known_front = tf.cast(tf.gather_nd(known, pixels), tf.int32)                  # [n, C]
            log_weights = mixture.log_weights
            values, previous = [], tf.zeros_like(mixture.means[:, 0, :])
            for c in range(channels):
                mean, std = discrete.channel_moments(mixture, c, previous)
                value = code_channel(c, log_weights, mean, std, known_front[:, c])
                values.append(value)
                if c + 1 < channels:
                    log_weights += discrete.channel_log_mass(mixture, c, value, previous)
                    previous = tf.tensor_scatter_nd_update(
                        tf.transpose(previous), [[c]], discrete.bin_centres(value)[None])
                    previous = tf.transpose(previous)
            centres = discrete.bin_centres(tf.stack(values, axis=1))
            return t + 1, front.write(canvas, pixels, tf.cast(centres, dtype)[:, None, :]), history

        num_fronts = front.num_fronts(height, width)
        _, canvas, _ = tf.while_loop(lambda t, *_: t < num_fronts, body, (tf.constant(0), canvas, history),
                                     maximum_iterations=num_fronts)
        image = front.image(canvas, width)[0]
        return tf.cast(tf.floor(image * discrete.NUM_BINS), tf.uint8)

    graph = tf.function(run, input_signature=[tf.TensorSpec([None, None, channels], tf.uint8)])
    functions["codec"] = (graph, coder)
    return functions["codec"]


def _run(model, known, code):
    """Run the codec's graph with `code(channel, table [n, 256] float64, known [n]) -> values [n]`."""
    graph, coder = _graph(model)
    with coder.lock:
        coder.code = code
        try:
            return graph(known).numpy()
        finally:
            coder.code = None


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


def compress(model, image):
    """Losslessly compress one uint8 image [H, W, C] (or [H, W]) with `model`; returns bytes.

    The size is within a fraction of a percent of
    `ride_tf.discrete.compressed_size_bits` plus the 44-byte header.
    """
    image = _check_image(model, image)
    model.whitening.require_adapted("compress")
    queue, categorical = _constriction()
    encoder = queue.RangeEncoder()

    def code(channel, table, known):
        encoder.encode(known.astype(np.int32), categorical, table)
        return known

    height, width, channels = image.shape
    coded = _run(model, image, code)
    if not np.array_equal(coded, image):   # the graph wrote other values than the known ones
        raise AssertionError("compress: the codec's canvas does not hold the image; please report this.")
    payload = encoder.get_compressed().astype("<u4").tobytes()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, channels, height, width, model_fingerprint(model),
                          zlib.crc32(image.tobytes()), len(payload) // 4, zlib.crc32(payload))
    return header + struct.pack(">I", zlib.crc32(header)) + payload


def decompress(model, data):
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

    failures = []

    def code(channel, table, known):
        try:
            return decoder.decode(categorical, table)
        except Exception as error:   # constriction reports an exhausted or invalid stream
            failures.append(error)
            return np.zeros(len(table), np.int32)

    image = _run(model, np.zeros((header.height, header.width, header.channels), np.uint8), code)
    if failures:
        raise CodecError(f"corrupted file: the range decoder failed ({failures[0]}).")
    if zlib.crc32(image.tobytes()) != header.image_crc:
        raise CodecError("decoding did not reproduce the image's checksum: the file is corrupted or was "
                         "written by a model whose numbers differ from this one's.")
    return image
