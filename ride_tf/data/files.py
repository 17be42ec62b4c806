"""Image files: reading them as 8-bit arrays for training, and losslessly for the codec.

Two readers:
  * `load_image(path, mode)` converts any image Pillow reads to the 8-bit gray
    or RGB array a model wants (training, evaluation): colour to luma,
    16-bit to 8-bit, alpha dropped.  Convenient, and lossy by design.
  * `read_image_file(path)` reads a file exactly: the uint8 array of its pixel
    values and the `FileMode` that turns them back into the same file mode
    (`write_image_file`), or a ValueError that names the file's mode when the
    pixels cannot be represented exactly (16-bit samples, varying alpha,
    CMYK, several frames, ...).  The codec's command line uses it, so that
    what `ride-tf decompress` writes has the pixels that went in.
"""
import dataclasses
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ride_tf.defaults import COLOUR_MODES
from ride_tf.io import atomic_path

__all__ = ["load_image", "load_images", "check_file", "open_image", "FileMode", "read_image_file",
           "image_from_pixels", "write_image_file", "is_image_file", "luma", "EXACT_MODES"]

# The file modes `read_image_file` represents exactly (Pillow's names), and how.
EXACT_MODES = {
    "L": "8-bit gray",
    "RGB": "8-bit colour",
    "1": "bilevel, coded as gray 0 / 255",
    "P": "palette (without transparency), coded as its colours (gray if the palette is gray)",
    "LA": "gray with constant alpha (the alpha value is stored, not coded)",
    "RGBA": "colour with constant alpha (the alpha value is stored, not coded)",
}
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _check_mode(mode):
    if mode not in COLOUR_MODES:
        raise ValueError(f"mode must be 'gray' or 'rgb', got {mode!r}")


def check_file(path):
    """`path` as a Path to an existing regular file (FileNotFoundError, TypeError or ValueError naming it)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    return path


def _high_bit_depth_to_uint8(image, path):
    """16-bit (or 32-bit integer holding 16-bit) gray image -> uint8 by round(v / 257)."""
    if image.mode == "F":
        raise ValueError(f"{path}: floating-point images (Pillow mode 'F') are not supported")
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{path}: integer image with values outside the 16-bit range [0, 65535] "
                         f"(Pillow mode {image.mode!r}) is not supported")
    # round(v * 255 / 65535) = round(v / 257): 0 -> 0, 65535 -> 255, 257 k -> k.
    return ((values * 2 + 257) // 514).astype(np.uint8)


def load_image(path, mode="gray"):
    """Read an image file (PNG, JPEG, TIFF, or anything else Pillow reads).

    Conversion:
      * ``mode="gray"``: color images are converted with Pillow's "L" conversion
        (ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B, rounded).
      * ``mode="rgb"``: gray images are replicated to three channels.
      * Alpha channels are dropped (not composited); palette images are expanded.
      * 16-bit gray images (16-bit PNG/TIFF; Pillow modes "I;16*" and "I") are
        scaled to 8 bits by round(v * 255 / 65535); integer images outside
        [0, 65535] and float ("F") images raise ValueError.  (Pillow itself reads
        16-bit-per-channel *color* PNGs as 8-bit RGB.)
      * For multi-frame files (e.g. TIFF stacks) the first frame is read.

    Args:
        path: path of the image file.
        mode: "gray" or "rgb".

    Returns:
        uint8 array [H, W] (gray) or [H, W, 3] (rgb).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: wrong ``mode``, path is not a file, or the file is not a
            readable image (the message names the path and the problem).
    """
    _check_mode(mode)
    path, image = open_image(path)
    with image:
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            gray = _high_bit_depth_to_uint8(image, path)
            return gray if mode == "gray" else np.repeat(gray[:, :, None], 3, axis=2)
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")
        return np.array(image.convert("L" if mode == "gray" else "RGB"), dtype=np.uint8)


def load_images(paths, mode="gray"):
    """Read several image files with :func:`load_image`.

    Args:
        paths: a sequence of paths (a single str/Path is refused to avoid
            iterating over its characters).
        mode: "gray" or "rgb".

    Returns:
        list of uint8 arrays [H, W] or [H, W, 3]; sizes may differ.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("load_images expects a sequence of paths; use load_image for one path")
    _check_mode(mode)
    return [load_image(p, mode=mode) for p in paths]


def open_image(path):
    """(Path, decoded Pillow image) of an image file, or FileNotFoundError / ValueError naming the problem
    (missing, not a file, not an image, truncated or corrupt data).  Close the image when done."""
    path = check_file(path)
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file Pillow can identify") from None
    except PermissionError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot open image ({error})") from error
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:  # e.g. truncated or corrupt data
        image.close()
        raise ValueError(f"{path}: cannot decode image ({error})") from error
    return path, image


def is_image_file(path):
    """Whether `path` is a regular file that Pillow identifies as an image (without decoding it)."""
    try:
        with Image.open(path):
            return os.path.isfile(path)
    except (OSError, ValueError, SyntaxError):
        return False


# ------------------------------------------------------------ exact reading
@dataclasses.dataclass(frozen=True)
class FileMode:
    """How a coded uint8 array [H, W, channels] turns back into the pixels of an image file.

    mode: the file's Pillow mode, one of `EXACT_MODES`.
    channels: 1 (gray) or 3 (colour), the channels of the coded array.
    alpha: the constant alpha value of an "LA" / "RGBA" file, else None.
    palette: for "P": the palette as RGB triples (bytes), and `used`, the
      palette indices the image uses (ascending); each used index has its own
      colour, so the colours give the indices back.
    icc_profile: the file's ICC colour profile (bytes, b"" if none), written back with the pixels.

    `to_bytes` / `from_bytes` give a compact form (stored in a codec file's header).
    """
    mode: str
    channels: int
    alpha: int = None
    palette: bytes = b""
    used: tuple = ()
    icc_profile: bytes = b""

    _LAYOUT = struct.Struct(">8sBhHI")      # mode, channels, alpha (-1: none), len(used), len(icc_profile)

    def to_bytes(self):
        alpha = -1 if self.alpha is None else self.alpha
        head = self._LAYOUT.pack(self.mode.encode("ascii"), self.channels, alpha, len(self.used),
                                 len(self.icc_profile))
        return head + bytes(self.used) + struct.pack(">H", len(self.palette)) + self.palette + self.icc_profile

    @classmethod
    def from_bytes(cls, data):
        """The FileMode of `to_bytes`; ValueError if `data` is not one."""
        try:
            mode, channels, alpha, num_used, icc_length = cls._LAYOUT.unpack_from(data)
            offset = cls._LAYOUT.size
            used = tuple(data[offset:offset + num_used])
            offset += num_used
            (palette_length,) = struct.unpack_from(">H", data, offset)
            offset += 2
            palette = bytes(data[offset:offset + palette_length])
            icc = bytes(data[offset + palette_length:offset + palette_length + icc_length])
            mode = mode.rstrip(b"\0").decode("ascii")
        except (struct.error, UnicodeDecodeError):
            raise ValueError("not a FileMode record (truncated or damaged)") from None
        if (mode not in EXACT_MODES or channels not in (1, 3) or len(used) != num_used or len(icc) != icc_length
                or len(palette) != palette_length or offset + palette_length + icc_length != len(data)):
            raise ValueError("not a FileMode record (inconsistent fields)")
        return cls(mode, channels, None if alpha < 0 else alpha, palette, used, icc)

    @property
    def description(self):
        """E.g. "RGBA (colour with constant alpha ...)"."""
        return f"{self.mode} ({EXACT_MODES[self.mode]})"


def _bit_depth(path, image):
    """Bits per sample as stored in the file (PNG header, TIFF tag), or 8 where the format does not say."""
    if image.format == "PNG":
        with open(path, "rb") as stream:
            header = stream.read(25)
        return header[24] if len(header) == 25 and header[12:16] == b"IHDR" else 8
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def _refuse(path, image, why):
    raise ValueError(f"{path}: {why} (Pillow mode {image.mode}); ride-tf codes exactly: "
                     + ", ".join(EXACT_MODES) + ". Convert the image first, or keep it as PNG.")


def read_image_file(path):
    """The exact pixels of an image file: (uint8 [H, W, C], FileMode), C = 1 or 3.

    `image_from_pixels(pixels, file_mode)` is an image of the file's mode with
    the same pixel values (palette images: the same indices and palette).
    Files whose pixels an 8-bit gray or RGB array cannot represent exactly
    raise ValueError naming the file and its mode: more than 8 bits per
    sample (16-bit PNG or TIFF, Pillow modes I;16, I, F), alpha that varies
    (transparency), palette images with transparency or with two used
    indices of one colour, other modes (CMYK, YCbCr, LAB, ...), and files of
    several frames.  Missing files raise FileNotFoundError, unreadable ones
    ValueError (as `load_image`).
    """
    path, image = open_image(path)
    with image:
        if getattr(image, "n_frames", 1) > 1:
            _refuse(path, image, f"{image.n_frames} frames (an animation or a stack); only single images are coded")
        if image.mode in _HIGH_DEPTH_MODES or _bit_depth(path, image) > 8:
            _refuse(path, image, f"{_bit_depth(path, image) if image.mode not in _HIGH_DEPTH_MODES else 'more than 8'}"
                    "-bit samples; the models code 8-bit values")
        icc = image.info.get("icc_profile") or b""
        mode = image.mode
        if mode == "L":
            return np.array(image, np.uint8)[..., None], FileMode("L", 1, icc_profile=icc)
        if mode == "RGB":
            return np.array(image, np.uint8), FileMode("RGB", 3, icc_profile=icc)
        if mode == "1":
            return np.array(image, bool).astype(np.uint8)[..., None] * np.uint8(255), FileMode("1", 1, icc_profile=icc)
        if mode in ("LA", "RGBA"):
            values = np.array(image, np.uint8)
            alpha = values[..., -1]
            if alpha.min() != alpha.max():
                _refuse(path, image, "an alpha channel that varies (transparency); alpha is not coded")
            colour = values[..., :-1]
            return np.ascontiguousarray(colour), FileMode(mode, colour.shape[-1], alpha=int(alpha.flat[0]),
                                                          icc_profile=icc)
        if mode == "P":
            return _read_palette_image(path, image, icc)
        _refuse(path, image, "an image mode without an exact 8-bit gray or RGB form")


def _read_palette_image(path, image, icc):
    if "transparency" in image.info or image.palette.mode != "RGB":
        _refuse(path, image, "a palette image with transparency")
    indices = np.array(image, np.uint8)
    palette = np.array(image.getpalette("RGB"), np.uint8).reshape(-1, 3)
    used = np.unique(indices)
    colours = palette[used]
    if len(np.unique(colours, axis=0)) != len(used):
        _refuse(path, image, "a palette image in which two used indices have the same colour")
    gray = bool((colours == colours[:, :1]).all())
    pixels = palette[indices][..., :1] if gray else palette[indices]
    return (np.ascontiguousarray(pixels),
            FileMode("P", 1 if gray else 3, palette=palette.tobytes(), used=tuple(int(u) for u in used),
                     icc_profile=icc))


def image_from_pixels(pixels, file_mode):
    """The Pillow image of `file_mode`'s mode with the pixel values `pixels` (uint8 [H, W, C]).

    ValueError if the pixels do not fit the mode (wrong channels; for "1"
    values other than 0 / 255; for "P" colours that no used palette entry has).
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != file_mode.channels:
        raise ValueError(f"image_from_pixels: expected uint8 [H, W, {file_mode.channels}] for mode "
                         f"{file_mode.mode}, got {pixels.dtype} {pixels.shape}.")
    mode = file_mode.mode
    if mode == "1":
        if not np.isin(pixels, (0, 255)).all():
            raise ValueError("image_from_pixels: a bilevel image needs values 0 and 255 only.")
        image = Image.fromarray(pixels[..., 0] > 127)
    elif mode == "P":
        image = Image.fromarray(_palette_indices(pixels, file_mode), "P")
        image.putpalette(file_mode.palette, "RGB")
    elif mode in ("LA", "RGBA"):
        alpha = np.full(pixels.shape[:2] + (1,), file_mode.alpha, np.uint8)
        image = Image.fromarray(np.concatenate([pixels, alpha], axis=-1), mode)
    else:
        image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    if file_mode.icc_profile:
        image.info["icc_profile"] = file_mode.icc_profile
    return image


def _palette_indices(pixels, file_mode):
    """Palette indices [H, W] of the used entries whose colours the pixels have (ValueError if one has none)."""
    palette = np.frombuffer(file_mode.palette, np.uint8).reshape(-1, 3)
    used = np.array(file_mode.used, np.int64)
    channels = pixels.shape[-1]
    key = lambda colours: (colours.astype(np.int64) * (1 << np.arange(0, 8 * channels, 8))).sum(-1)
    colour_keys = key(palette[used][:, :channels])
    order = np.argsort(colour_keys)
    pixel_keys = key(pixels)
    position = np.clip(np.searchsorted(colour_keys[order], pixel_keys), 0, len(used) - 1)
    if not (colour_keys[order][position] == pixel_keys).all():
        raise ValueError("image_from_pixels: the pixels have colours that are not in the palette.")
    return used[order][position].astype(np.uint8)


def luma(pixels):
    """ITU-R 601-2 luma of RGB pixels uint8 [H, W, 3] -> uint8 [H, W] (Pillow's "L" conversion, as `load_image`)."""
    return np.array(Image.fromarray(np.ascontiguousarray(pixels), "RGB").convert("L"), np.uint8)


def write_image_file(path, pixels, file_mode):
    """Write `image_from_pixels(pixels, file_mode)` as a PNG file, atomically (a temporary name, then a rename)."""
    image = image_from_pixels(pixels, file_mode)
    options = {"icc_profile": file_mode.icc_profile} if file_mode.icc_profile else {}
    with atomic_path(path, suffix=".png", owner="write_image_file") as temporary:
        image.save(temporary, format="PNG", **options)
    return os.fspath(path)
