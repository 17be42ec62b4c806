"""Colour by planes: a reversible colour transform, then each plane coded by a gray model on its own.

    planes = forward(rgb, "rct")      # uint8 [..., 3] -> uint8 [..., 3], a bijection of the 2^24 colours
    rgb = inverse(planes, "rct")

The transform of JPEG-LS (and, without the wrap, of JPEG 2000's RCT family),
in arithmetic mod 256 so that it maps 8-bit triples to 8-bit triples:

    P0 = G,   P1 = (R - G + 128) mod 256,   P2 = (B - G + 128) mod 256
    G = P0,   R = (P1 + P0 - 128) mod 256,  B = (P2 + P0 - 128) mod 256

Each plane is an 8-bit gray image, coded by the gray model's integer tables
exactly as `ride_tf.codec.coding` codes a gray image, one rANS stream per
plane.  Measured (docs/colour.md): with the shipped models the gray model on
these planes codes colour photographs in fewer bits than the joint rgb model.

A file coded this way carries, in place of the model's fingerprint,
`fingerprint(model_fingerprint, transform)` (a SHA-256 of the gray model's
fingerprint and the transform's name), so that only the same gray model and
transform decode it.  Its payload is the three streams' lengths (u32, big
endian, for the first two) and the streams.
"""
import hashlib
import struct

import numpy as np

from ride_tf.checks import check_choice
from ride_tf.codec.coding import encode, pixel_code_length_bits
from ride_tf.codec.rans import RansError

__all__ = ["TRANSFORMS", "check_transform", "forward", "inverse", "fingerprint", "split", "join_streams",
           "encode_planes", "decode_planes", "pixel_code_length_bits_planes"]

TRANSFORMS = ("rct",)
_LENGTHS = struct.Struct(">II")


def check_transform(owner, transform, num_channels):
    """`transform` if it is one of `TRANSFORMS` and the model that codes the planes is grayscale (`num_channels`
    1); ValueError naming the problem otherwise."""
    check_choice(owner, "colour_transform", transform, TRANSFORMS)
    if num_channels != 1:
        raise ValueError(f"{owner}: colour_transform={transform!r} codes a colour image's planes with a grayscale "
                         f"model; this model has {num_channels} channels.")
    return transform


def forward(rgb, transform="rct"):
    """The planes (P0, P1, P2) uint8 [..., 3] of uint8 colours [..., 3] (R, G, B)."""
    check_choice("colour planes", "transform", transform, TRANSFORMS)
    x = np.asarray(rgb).astype(np.int32)
    red, green, blue = x[..., 0], x[..., 1], x[..., 2]
    return np.stack([green, (red - green + 128) % 256, (blue - green + 128) % 256], -1).astype(np.uint8)


def inverse(planes, transform="rct"):
    """The colours (R, G, B) uint8 [..., 3] of planes uint8 [..., 3]: `forward`'s inverse."""
    check_choice("colour planes", "transform", transform, TRANSFORMS)
    p = np.asarray(planes).astype(np.int32)
    green = p[..., 0]
    return np.stack([(p[..., 1] + green - 128) % 256, green, (p[..., 2] + green - 128) % 256], -1).astype(np.uint8)


def fingerprint(model_fingerprint, transform):
    """16 bytes identifying (gray model, transform): what a file coded by planes carries in its header."""
    check_choice("colour planes", "transform", transform, TRANSFORMS)
    return hashlib.sha256(b"ride-tf colour planes " + transform.encode() + b" " + bytes(model_fingerprint)).digest()[:16]


def split(image, transform="rct"):
    """The three planes uint8 [H, W, 1] of a uint8 colour image [H, W, 3] (C-contiguous, each coded alone)."""
    planes = forward(image, transform)
    return [np.ascontiguousarray(planes[..., c:c + 1]) for c in range(3)]


def join_streams(streams):
    """The payload of three planes' rANS streams: the first two's lengths (u32, big endian), then the streams."""
    return _LENGTHS.pack(len(streams[0]), len(streams[1])) + b"".join(streams)


def encode_planes(coder, image, transform="rct", threads=None, coders=None):
    """The payload (bytes) of a uint8 colour image [H, W, 3]: each plane's rANS stream under the gray `coder`
    (or coders[c] for plane c; `threads` as for `ride_tf.codec.coding.encode`)."""
    coders = coders or [coder] * 3
    return join_streams([encode(c, plane, threads=threads) for c, plane in zip(coders, split(image, transform))])


def decode_planes(decode, coder, payload, height, width, transform="rct", coders=None):
    """The uint8 colour image [H, W, 3] of `encode_planes`'s payload; `decode(coder, stream, H, W)` decodes one
    plane (`coding.decode` or `compiled.decode`) with `coder` (or coders[c] for plane c).  RansError if the
    payload does not split into three streams."""
    coders = coders or [coder] * 3
    payload = bytes(payload)
    if len(payload) < _LENGTHS.size:
        raise RansError(f"the colour planes' payload has {len(payload)} bytes, less than its {_LENGTHS.size}-byte "
                        "table of lengths.")
    first, second = _LENGTHS.unpack(payload[:_LENGTHS.size])
    ends = np.cumsum([_LENGTHS.size, first, second])
    if ends[-1] > len(payload):
        raise RansError("the colour planes' lengths exceed the payload.")
    streams = [payload[ends[0]:ends[1]], payload[ends[1]:ends[2]], payload[ends[2]:]]
    planes = np.concatenate([decode(c, stream, height, width) for c, stream in zip(coders, streams)], axis=-1)
    return inverse(planes, transform)


def pixel_code_length_bits_planes(coder, image, transform="rct", threads=None):
    """The ideal code length of every pixel of a uint8 colour image [H, W, 3] coded by planes, bits float64
    [H, W] (the sum over its three planes)."""
    planes = forward(image, transform)
    return sum(pixel_code_length_bits(coder, np.ascontiguousarray(planes[..., c:c + 1]), threads=threads)
               for c in range(3))
