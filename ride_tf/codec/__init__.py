"""The lossless codec: RIDE's probabilities, in integers, driving a range coder; exact on every machine.

    data = ride_tf.compress("gray", image)         # bytes (a shipped model by name; or a RIDE, a model file)
    image = ride_tf.decompress(data)               # uint8 [H, W, C], bit for bit (the model found by fingerprint)

The runtime (no TensorFlow; NumPy and the C kernels):
    integer     the integer model: the coding tables' arithmetic in integers (`IntegerModel`, plain data)
    model_file  the integer model as a file (`save_integer_model`, `load_integer_model`), checked on loading
    registry    the shipped integer models and the cache of derived ones, found by name or fingerprint
    lookup      the exact lookup tables (tanh, sigmoid, exp, the normal CDF), shipped as data
    native      the same arithmetic compiled (C kernels, `kernels.c`): the fast encoder and decoder, on every core
    coding      the coding order, encoding in one batched pass, decoding front by front (NumPy, the reference)
    planes      colour by planes: a reversible colour transform, each plane coded by a gray model
    structure   what the model cannot express, coded beside it: equal channels, histograms with gaps
    adapt       a one-channel model's priors fitted to one image, the shifts stored in its file
    palette     the palette coder: images of few colours (screenshots, plots) by context mixing, no model
    rans        interleaved rANS on (start, frequency) integers
    format      the container: header, checks, metadata
The float model's side (TensorFlow):
    derive      the integer model of a RIDE, derived exactly from its float weights
    graph       the integer model's arithmetic as TensorFlow ops (SavedModels' exact sizes)
    compiled    the decoding loop as one XLA program per image shape
And the front door over both:
    api         `compress`, `compress_best`, `decompress`, `compressed_size_bits`, `integer_model_of_file`

The names are imported on first use.
"""
from ride_tf.lazy_imports import lazy_exports

_EXPORTS = {
    **{name: "ride_tf.codec.api" for name in (
        "compress", "compress_best", "compress_palette", "palette_alternative", "decompress", "is_palette_file",
        "model_fingerprint", "DECODERS", "as_integer_model", "integer_model_of_file", "find_model",
        "compressed_size_bits", "pixel_code_lengths", "UnknownModelError", "codings_to_try", "compress_tries")},
    **{name: "ride_tf.codec.format" for name in (
        "CodecError", "Header", "read_header", "HEADER_SIZE", "MAGIC", "FORMAT_VERSION", "MAX_PIXELS",
        "MAX_METADATA")},
    **{name: "ride_tf.codec.integer" for name in ("IntegerModel", "TOTAL", "WINDOW")},
    **{name: "ride_tf.codec.model_file" for name in ("save_integer_model", "load_integer_model", "ModelFileError")},
    "integer_model": "ride_tf.codec.derive",
    "coder_for": "ride_tf.codec.coding",
    "NativeModel": "ride_tf.codec.native",
    **{name: f"ride_tf.codec.{name}" for name in ("api", "integer", "model_file", "registry", "lookup", "native",
                                                  "coding", "planes", "structure", "adapt", "palette", "rans", "format",
                                                  "derive", "graph", "compiled")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
