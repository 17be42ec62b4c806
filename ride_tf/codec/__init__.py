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

The file format (`ride_tf.codec.format`): a header (with the model's
fingerprint, CRCs of the image, the payload and the header, and optional
metadata), then the range coder's bytes.  A file for another model, a
truncated, corrupted or foreign file raises `CodecError` saying which.
"""
import hashlib
import json

import keras
import numpy as np
import tensorflow as tf

from ride_tf.checks import check_images
from ride_tf.codec.coding import WINDOW, run_coder
from ride_tf.codec.format import (FORMAT_VERSION, HEADER_SIZE, MAGIC, MAX_PIXELS, CodecError, Header,  # noqa: F401
                                  image_checksum, read_container, read_header, write_container)

__all__ = ["CodecError", "compress", "decompress", "model_fingerprint", "read_header", "Header",
           "HEADER_SIZE", "MAGIC", "FORMAT_VERSION", "MAX_PIXELS", "WINDOW"]


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


def compress(model, image, metadata=b""):
    """Losslessly compress one uint8 image [H, W, C] (or [H, W]) with `model`; returns bytes.

    The size is within a fraction of a percent of
    `ride_tf.discrete.compressed_size_bits` plus the header (`HEADER_SIZE`
    bytes and `metadata`, opaque bytes stored in the header, e.g. the image
    file's mode; `read_header(data).metadata` gives them back).
    """
    image = _check_image(model, image)
    if not isinstance(metadata, (bytes, bytearray)):
        raise TypeError(f"compress: metadata must be bytes, got {type(metadata).__name__}.")
    model.whitening.require_adapted("compress")
    queue, categorical = _constriction()
    encoder = queue.RangeEncoder()

    def code(channel, table, known):
        encoder.encode(known.astype(np.int32), categorical, table)
        return known

    coded = run_coder(model, image, code)
    if not np.array_equal(coded, image):   # the graph wrote other values than the known ones
        raise AssertionError("compress: the codec's canvas does not hold the image; please report this.")
    payload = encoder.get_compressed().astype("<u4").tobytes()
    return write_container(image, model_fingerprint(model), payload, metadata)


def decompress(model, data):
    """The image uint8 [H, W, C] that `compress(model, image)` wrote into `data`, bit for bit.

    Raises `CodecError` for data that are not a ride-tf file, truncated or
    corrupted files, and files written with another model.
    """
    header, payload = read_container(data)
    if header.channels != model.num_channels:
        raise CodecError(f"the file holds a {header.channels}-channel image but the model has "
                         f"{model.num_channels} channel(s).")
    if header.fingerprint != model_fingerprint(model):
        raise CodecError("the file was compressed with another model (model fingerprints differ); decode it "
                         "with the model that compressed it.")
    queue, categorical = _constriction()
    decoder = queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))

    failures = []

    def code(channel, table, known):
        try:
            return decoder.decode(categorical, table)
        except Exception as error:   # constriction reports an exhausted or invalid stream
            failures.append(error)
            return np.zeros(len(table), np.int32)

    image = run_coder(model, np.zeros((header.height, header.width, header.channels), np.uint8), code)
    if failures:
        raise CodecError(f"corrupted file: the range decoder failed ({failures[0]}).")
    if image_checksum(image) != header.image_crc:
        raise CodecError("decoding did not reproduce the image's checksum: the file is corrupted or was "
                         "written by a model whose numbers differ from this one's.")
    return image
