"""The lossless codec: RIDE's probabilities, in integers, driving a range coder; exact on every machine.

    data = ride_tf.compress(model, image)          # bytes
    image = ride_tf.decompress(model, data)        # uint8 [H, W, C], bit for bit

    api        `compress`, `compress_best`, `decompress`, `model_fingerprint`
    integer    the integer model: the coding tables in integer arithmetic, derived from the float model
    lookup     its lookup tables (tanh, sigmoid, exp, the normal CDF), computed exactly, shipped as data
    native     the same arithmetic compiled (C kernels, `kernels.c`): the fast encoder and decoder
    coding     the coding order, encoding in one batched pass, decoding front by front (NumPy, the reference)
    compiled   the same decoding loop as one XLA program per image shape
    planes     colour by planes: a reversible colour transform, each plane coded by a gray model
    palette    the palette coder: images of few colours (screenshots, plots) by context mixing, no model
    rans       interleaved rANS on (start, frequency) integers
    format     the container: header, checks, metadata

The names are imported on first use.
"""
from ride_tf.lazy_imports import lazy_exports

_EXPORTS = {
    **{name: "ride_tf.codec.api" for name in ("compress", "compress_best", "compress_palette",
                                                           "palette_alternative", "decompress", "is_palette_file", "model_fingerprint", "DECODERS")},
    **{name: "ride_tf.codec.format" for name in (
        "CodecError", "Header", "read_header", "HEADER_SIZE", "MAGIC", "FORMAT_VERSION", "MAX_PIXELS",
        "MAX_METADATA")},
    **{name: "ride_tf.codec.integer" for name in ("IntegerModel", "integer_model", "TOTAL", "WINDOW")},
    "coder_for_model": "ride_tf.codec.coding",
    "NativeModel": "ride_tf.codec.native",
    **{name: f"ride_tf.codec.{name}" for name in ("api", "integer", "lookup", "native", "coding", "compiled",
                                                                "planes", "palette", "rans", "format")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
