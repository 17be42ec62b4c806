"""The container of a compressed image: header, checks and the payload, apart from the model and the coder.

File format (version 2), big-endian header, then the payload (the entropy
coder's bytes):

    magic "RIDE\\x00\\x1a" 6 bytes | version u8 | channels u8 | height u32 | width u32 |
    model fingerprint 16 bytes | CRC-32 of the image u32 | payload bytes u32 | CRC-32 of the payload u32 |
    metadata bytes u32 | metadata (that many bytes) | CRC-32 of all preceding header bytes u32

`HEADER_SIZE` (52 bytes) is the header without metadata.  The metadata is
opaque here: the command line stores the image file's mode in it
(`ride_tf.data.files.FileMode`), so that `ride-tf decompress` writes back
the mode that went in.  The model fingerprint identifies the exact tables the
coder used (`ride_tf.codec.integer`), so a decoder with another model, or
another version of the same model, refuses the file instead of decoding
garbage.  The image CRC is checked after decoding, so a mismatch is
reported, never returned.

Checks: sizes in a header are trusted only after its CRC has checked out, so
random bytes can neither allocate much nor run long; every problem raises
`CodecError` saying which.  Files of version 1 (written before the coding path
was exact on every machine) are refused with a message naming the version.
"""
import struct
import zlib

__all__ = ["CodecError", "Header", "MAGIC", "FORMAT_VERSION", "HEADER_SIZE", "MAX_PIXELS", "MAX_METADATA",
           "write_container", "read_header", "read_container", "image_checksum"]

MAGIC = b"RIDE\x00\x1a"
FORMAT_VERSION = 2
_FIXED = struct.Struct(">6sBBII16sIIII")
HEADER_SIZE = _FIXED.size + 4
# The largest image a header may announce (2^28 pixels, 16384 x 16384), and the largest metadata.
MAX_PIXELS = 1 << 28
MAX_METADATA = 1 << 24


class CodecError(ValueError):
    """A file that cannot be decoded with this model: foreign, truncated, corrupted or for another model."""


class Header(tuple):
    """The parsed header: (height, width, channels, fingerprint, image_crc, payload_size, payload_crc, metadata,
    size), `size` the header's length in bytes."""
    __slots__ = ()
    fields = ("height", "width", "channels", "fingerprint", "image_crc", "payload_size", "payload_crc", "metadata",
              "size")

    def __new__(cls, *values):
        return super().__new__(cls, values)

    def __getattr__(self, name):
        return self[self.fields.index(name)]


def image_checksum(image):
    """CRC-32 of an image's bytes (uint8 [H, W, C], C-contiguous)."""
    return zlib.crc32(image.tobytes())


def write_container(image, fingerprint, payload, metadata=b""):
    """The file's bytes: header (with `metadata`) and `payload`, for the uint8 image [H, W, C] it codes."""
    height, width, channels = image.shape
    if len(fingerprint) != 16:
        raise ValueError(f"write_container: the fingerprint must have 16 bytes, got {len(fingerprint)}.")
    if len(metadata) > MAX_METADATA:
        raise ValueError(f"write_container: metadata of {len(metadata)} bytes exceed {MAX_METADATA}.")
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, channels, height, width, bytes(fingerprint), image_checksum(image),
                        len(payload), zlib.crc32(payload), len(metadata))
    header = fixed + bytes(metadata)
    return header + struct.pack(">I", zlib.crc32(header)) + bytes(payload)


def read_header(data):
    """Parse and check the header of `data` (bytes); CodecError if it is not a valid ride-tf file."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decompress: data must be bytes, got {type(data).__name__}.")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise CodecError("not a ride-tf compressed image (the file does not start with the magic bytes).")
    if len(data) > len(MAGIC) and data[len(MAGIC)] != FORMAT_VERSION:
        raise CodecError(f"unsupported format version {data[len(MAGIC)]} (this ride-tf reads version "
                         f"{FORMAT_VERSION}" + ("; version 1 files were written before the coding path was exact on "
                                                "every machine: decode them with the ride-tf that wrote them"
                                                if data[len(MAGIC)] == 1 else "") + ").")
    if len(data) < HEADER_SIZE:
        raise CodecError(f"truncated file: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header.")
    fields = _FIXED.unpack(data[:_FIXED.size])
    _, version, channels, height, width, fingerprint, image_crc, payload_size, payload_crc, metadata_size = fields
    if metadata_size > MAX_METADATA:
        raise CodecError("corrupted file: the header announces metadata of "
                         f"{metadata_size} bytes.")
    size = HEADER_SIZE + metadata_size
    if len(data) < size:
        raise CodecError(f"truncated file: {len(data)} bytes, shorter than its {size}-byte header.")
    (header_crc,) = struct.unpack(">I", data[size - 4:size])
    if zlib.crc32(data[:size - 4]) != header_crc:
        raise CodecError("corrupted file: the header's checksum does not match.")
    if channels < 1 or height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise CodecError(f"corrupted file: the header announces an image of {height} x {width} x {channels}.")
    metadata = data[_FIXED.size:size - 4]
    return Header(height, width, channels, fingerprint, image_crc, payload_size, payload_crc, metadata, size)


def read_container(data):
    """(Header, payload bytes) of a file, both checked (CRC of the header and of the payload); CodecError otherwise."""
    header = read_header(data)
    data = bytes(data)
    payload = data[header.size:]
    if len(payload) < header.payload_size:
        raise CodecError(f"truncated file: {len(payload)} of {header.payload_size} payload bytes.")
    if len(payload) > header.payload_size:
        raise CodecError(f"corrupted file: {len(payload) - header.payload_size} bytes after the end of the payload.")
    if zlib.crc32(payload) != header.payload_crc:
        raise CodecError("corrupted file: the payload's checksum does not match.")
    return header, payload
