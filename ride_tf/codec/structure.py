"""Structure that a density of intensities cannot express, coded exactly beside the model: equal channels, and
histograms with gaps.

A RIDE models 8-bit values as bins of continuous intensities, so some
structure of real files costs it bits that it need not:

* **Equal channels** (colour_transform="equal"): an RGB file whose three
  channels are equal (a gray picture saved as RGB) is coded as one gray
  plane and written back as three.  For a gray model it replaces the
  reversible colour transform, whose first plane is the same gray plane
  and whose other two planes are constant: never longer.
* **Gaps in the histogram** (packed=True): a channel that uses only some of
  the 256 values (a scan, a picture whose contrast was stretched, a halved
  and doubled one) is coded as the indices of its values in the table of
  the values it uses; the table, 256 bits per channel, is in the file.  The
  model then codes a dense image, which costs what the same picture costs
  with its values remapped to a dense range, plus the table.

A coding is (colour_transform, packed, adapted), colour_transform one of
None (the model's own channels), "rct" (`ride_tf.codec.planes`) or "equal",
adapted: a one-channel model's priors fitted to each plane
(`ride_tf.codec.adapt`); a file carries `coding_fingerprint(model_fingerprint,
colour_transform, packed, adapted)` in its header, so that only the same
model and coding decode it (the plain and "rct" codings keep the
fingerprints files had before).  The payload of a packed coding starts with
the tables (32 bytes per channel of the image as it is coded, after
"equal"), then, if adapted, the shifts (one byte per expert and plane), then
the coding's streams.
`compress_best` tries "equal" where the channels are equal and packing
where `worth_packing` finds gaps, and keeps the shortest file.
"""
import hashlib

import numpy as np

from ride_tf.codec import planes

__all__ = ["COLOUR_TRANSFORMS", "TABLE_BYTES", "channels_equal", "used_values", "worth_packing", "pack", "unpack",
           "table_bytes", "read_tables", "coding_fingerprint", "codings_for", "match", "coded_channels",
           "PackingError"]

# The colour transforms: a colour image coded by a gray model.
COLOUR_TRANSFORMS = planes.TRANSFORMS + ("equal",)
TABLE_BYTES = 32                      # 256 bits: which values a channel uses
# Packing is tried where a channel's histogram has at least this many structural gaps (`worth_packing`).
MIN_GAPS = 4


class PackingError(ValueError):
    """Tables that do not fit their image (a damaged file)."""


def channels_equal(image):
    """Whether a uint8 image [H, W, 3] has three equal channels (a gray picture stored as RGB)."""
    return image.ndim == 3 and image.shape[-1] == 3 and bool(
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def coded_channels(image, colour_transform):
    """The image as its coding sees it before packing: its first channel for "equal", else itself."""
    if colour_transform == "equal":
        if not channels_equal(image):
            raise ValueError("colour_transform='equal' codes an RGB image whose three channels are equal; this "
                             "image's are not.")
        return np.ascontiguousarray(image[..., :1])
    return image


def used_values(image):
    """bool [C, 256]: which values each channel of a uint8 image [H, W, C] uses."""
    flat = image.reshape(-1, image.shape[-1])
    return np.stack([np.bincount(flat[:, c], minlength=256) > 0 for c in range(flat.shape[1])])


def worth_packing(image):
    """Whether packing may pay for a uint8 image [H, W, C]: some channel's histogram has at least `MIN_GAPS`
    structural gaps, runs of unused values between two values each used at least a quarter as often as a used
    value on average (the gaps of a picture halved and doubled, or of a scan; not the sparse tails of a small
    image's histogram, which packing would only shift)."""
    flat = image.reshape(-1, image.shape[-1])
    for c in range(flat.shape[1]):
        counts = np.bincount(flat[:, c], minlength=256)
        used = np.flatnonzero(counts)
        frequent = counts[used] >= max(2.0, flat.shape[0] / (4 * len(used)))
        gaps = (np.diff(used) > 1) & frequent[:-1] & frequent[1:]       # between consecutive used values
        if np.count_nonzero(gaps) >= MIN_GAPS:
            return True
    return False


def pack(image, used):
    """The indices uint8 [H, W, C] of an image's values in each channel's table `used` (bool [C, 256])."""
    ranks = np.cumsum(used, axis=1) - 1                                 # [C, 256]: a used value's index
    channels = np.arange(image.shape[-1])
    return ranks[channels, image].astype(np.uint8)


def unpack(indices, used):
    """The values of `pack`'s indices (PackingError for an index beyond its channel's table)."""
    out = np.empty_like(indices)
    for c in range(indices.shape[-1]):
        values = np.flatnonzero(used[c]).astype(np.uint8)
        if indices[..., c].size and int(indices[..., c].max()) >= len(values):
            raise PackingError("an index beyond its channel's table of values.")
        out[..., c] = values[indices[..., c]]
    return out


def table_bytes(used):
    """The tables `used` (bool [C, 256]) as bytes, 32 per channel (bit v of channel c's bytes: value v used)."""
    return np.packbits(used, axis=1, bitorder="little").tobytes()


def read_tables(payload, channels):
    """(used bool [C, 256], the rest of the payload) of a packed coding's payload; PackingError if damaged."""
    size = TABLE_BYTES * channels
    if len(payload) < size:
        raise PackingError(f"the payload has {len(payload)} bytes, less than its {size} bytes of value tables.")
    used = np.unpackbits(np.frombuffer(bytes(payload[:size]), np.uint8).reshape(channels, TABLE_BYTES), axis=1,
                         bitorder="little").astype(bool)
    if not used.any(axis=1).all():
        raise PackingError("a channel's table of values is empty.")
    return used, payload[size:]


def coding_fingerprint(model_fingerprint, colour_transform=None, packed=False, adapted=False):
    """16 bytes identifying (model, coding): the model's own fingerprint for the plain coding,
    `planes.fingerprint` for "rct", and a SHA-256 of the coding's name and the model's fingerprint otherwise
    (`adapted`: the priors shifted per plane, `ride_tf.codec.adapt`)."""
    if not packed and not adapted and colour_transform is None:
        return bytes(model_fingerprint)
    if not packed and not adapted and colour_transform in planes.TRANSFORMS:
        return planes.fingerprint(model_fingerprint, colour_transform)
    name = f"{colour_transform or 'none'}{' packed' if packed else ''}{' adapted' if adapted else ''}"
    return hashlib.sha256(b"ride-tf coding " + name.encode() + b" " + bytes(model_fingerprint)).digest()[:16]


def codings_for(model_channels, image_channels):
    """The (colour_transform, packed, adapted) codings a model of `model_channels` channels has for images of
    `image_channels` channels (adapted: one-channel models only)."""
    transforms = [None] if model_channels == image_channels else []
    if model_channels == 1 and image_channels == 3:
        transforms += list(COLOUR_TRANSFORMS)
    return [(transform, packed, adapted) for transform in transforms for packed in (False, True)
            for adapted in ((False, True) if model_channels == 1 else (False,))]


def match(model_fingerprint, model_channels, fingerprint, image_channels):
    """The (colour_transform, packed, adapted) coding of a model whose file header holds `fingerprint` for an
    image of `image_channels` channels, or None when the model did not write it."""
    return next((coding for coding in codings_for(model_channels, image_channels)
                 if coding_fingerprint(model_fingerprint, *coding) == bytes(fingerprint)), None)
