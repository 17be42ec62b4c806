"""Palette coding: screenshots, plots and other synthetic images, which a density of intensities codes badly.

    payload = encode(image)                 # uint8 [H, W, C] with at most MAX_COLOURS distinct colours
    image = decode(payload, H, W, C)

RIDE's experts are densities of dequantized intensities: on a screenshot its
flat pixels cost 0.1-0.3 bit each and its text and edges 4-7 bit
(docs/pretrained.md), several times what JPEG-XL's palettes and pattern
coding spend.  This coder is the model such images need: the image's
distinct colours form a palette (sorted), and each pixel's palette index s
is coded in raster order by binary decisions, each with a probability mixed
from context models of its causal neighbourhood (logistic mixing, as in the
PAQ family of coders):

1. The candidates: the distinct indices among the neighbours W, N, NW, NE,
   WW, NN (in that order, those inside the image).  For each candidate c in
   turn, the bit [s == c] is coded; the first 1 ends the pixel.
2. Escape (no candidate matched): the B = max(1, bit length of P - 1) bits of
   s, most significant first, each in the context of the bits before it.

Each decision d (a candidate's rank and which neighbours hold it, or a tree
node) has a probability p_m = P(bit = 1) from each of the `MODELS` context
models: an adaptive probability in a hashed table (p += (y - p) / (n + 1.5)
after its n-th update, n at most 255), indexed by the decision and that
model's neighbourhood (from nothing to the 12 nearest causal pixels).  The
mixer of the decision's kind (a candidate's rank and neighbour mask, or an
escape bit's position) combines them in the logistic domain,

    p_mix = squash(sum_m w_m stretch(p_m) / 2^16),   w_m += stretch(p_m) (y - p_mix) / 2^10  (y, p in 1/4096),

an adaptive probability map of the same kind refines it (p_apm: 33 entries
per kind, interpolated at stretch(p_mix)), and the binary arithmetic coder
codes the bit with p = (p_mix + 3 p_apm) / 4.  A pattern seen before (a
glyph, a border, a gradient's next step) is found by the larger contexts and
costs a small fraction of a bit.  The constants (the rates, the neighbour
sets) were chosen on the two synthetic screenshots of
`benchmarks/bench_models.py` and checked on three others (docs/codec.md).

Everything is integer arithmetic (tables of 12-bit probabilities, 22-bit
adaptive probabilities, 32-bit hashes, a 32-bit carry-less binary arithmetic
coder, the squash function interpolated from 33 integers), so encoder and
decoder agree on every machine.  This module is the reference;
`ride_tf.codec.palette_kernels` (C, `palette.c`) computes the same bytes
about a hundred times faster and is used where it is built.

Payload: the number of colours P (u32, big endian), the length of the palette
block (u32), the palette block (zlib of the sorted colours' differences as
LEB128 integers, a colour being sum_c value_c 256^c), then the arithmetic
coder's bytes (none when P = 1).
"""
import hashlib
import struct
import zlib
from array import array

import numpy as np

from ride_tf.checks import check_choice
from ride_tf.runtime import native_setting

__all__ = ["MAX_COLOURS", "SYNTHETIC_FLAT_SHARE", "FEW_COLOURS", "flat_share", "looks_synthetic", "trial_rate",
           "worth_trying", "TRIAL_ROWS", "TRIAL_MIN_ROWS", "TRIAL_MARGIN", "MODELS", "NEIGHBOURS", "CANDIDATES",
           "ENGINES", "FINGERPRINT", "colours", "num_colours", "applicable", "encode", "decode", "encode_indices",
           "decode_indices", "available", "squash", "stretch", "table_bits", "PaletteError"]


class PaletteError(ValueError):
    """A palette payload that does not decode: truncated, corrupted, or not the palette coder's."""

# At most this many distinct colours (12-bit indices); images with more are photographs, RIDE's domain.
MAX_COLOURS = 4096
# `looks_synthetic`: the share of pixels that repeat a neighbour, or the number of colours, from which the palette
# coder is worth its time (on photographs it loses to RIDE and codes at about 0.3 Mpx/s).
SYNTHETIC_FLAT_SHARE = 0.8
FEW_COLOURS = 16
# `worth_trying` on images that do not look synthetic: the palette coder's rate on a band of the middle rows (a
# TRIAL_ROWS-th of them, at least TRIAL_MIN_ROWS) against TRIAL_MARGIN times the rival's rate.
TRIAL_ROWS = 16
TRIAL_MIN_ROWS = 32
TRIAL_MARGIN = 1.1
# The 12 causal neighbours (di, dj): W, N, NW, NE, WW, NN, then NWW, NNW, NNE, NEE, WWW, NNN.
NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0),
              (-1, -2), (-2, -1), (-2, 1), (-1, 2), (0, -3), (-3, 0))
ENGINES = ("auto", "native", "reference")
CANDIDATES = 6                   # the first six neighbours propose candidates
# Each context model: the neighbours (positions in NEIGHBOURS) its hash reads; "pattern" reads which of the
# first six neighbours are equal to which.
MODELS = ((), (0,), (0, 1), (0, 1, 2, 3), (0, 1, 2, 3, 4, 5), tuple(range(12)), (1, 5, 11), "pattern")
FINGERPRINT = hashlib.sha256(b"ride-tf palette coder 1").digest()[:16]

_PROB_BITS = 22                  # adaptive probabilities p / 2^22, with a count n of updates
_COUNT_LIMIT = 255
_RATE = [(1 << 17) // (2 * n + 3) for n in range(_COUNT_LIMIT + 1)]      # 2^16 / (n + 1.5)
_LEARNING_RATE = 1
_APM_RATE = 7
_WEIGHT_LIMIT = 1 << 24          # mixer weights are clipped to [-2^24, 2^24]: sums stay far below 2^63
# The kinds of decision (a mixer weight set and an APM row each): a candidate's rank and which of the six
# neighbours hold it (rank 64 + mask), then the escape's bit positions.
_KINDS = CANDIDATES * 64 + 12
_MASK32 = 0xFFFFFFFF
_HEADER = struct.Struct(">II")


def _squash_table():
    """squash(d) = 4096 / (1 + e^-d/256) for d in [-2047, 2047], interpolated from 33 integers (PAQ's)."""
    knots = (1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994, 3348, 3607,
             3785, 3901, 3975, 4024, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094)
    table = []
    for d in range(-2047, 2048):
        w, k = d & 127, (d >> 7) + 16
        table.append((knots[k] * (128 - w) + knots[k + 1] * w + 64) >> 7)
    return table


_SQUASH = _squash_table()


def _stretch_table():
    """stretch(p) = squash's inverse on 12-bit probabilities: the smallest d with squash(d) >= p."""
    table, p = [0] * 4096, 0
    for d in range(-2047, 2048):
        value = _SQUASH[d + 2047]
        while p <= value:
            table[p] = d
            p += 1
    for q in range(p, 4096):
        table[q] = 2047
    return table


_STRETCH = _stretch_table()


def squash(d):
    """4096 / (1 + e^(-d / 256)) in integers, d clipped to [-2047, 2047]."""
    return _SQUASH[min(max(d, -2047), 2047) + 2047]


def stretch(p):
    """ln(p / (1 - p)) 256 in integers for a 12-bit probability p: the smallest d with squash(d) >= p."""
    return _STRETCH[min(max(p, 0), 4095)]


def table_bits(height, width):
    """log2 of each context model's table size: about four slots per pixel, 2^12 to 2^22."""
    return min(22, max(12, (height * width).bit_length() + 2))


def _hash(h, value):
    return ((h + value + 1) * 0x9E3779B1) & _MASK32


def available():
    """Whether the C version (`ride_tf.codec.palette_kernels`) is built and not disabled (RIDE_TF_NATIVE=0)."""
    if native_setting() == "0":
        return False
    try:
        from ride_tf.codec import palette_kernels  # noqa: F401
    except ImportError:
        return False
    return True


def _codes(image):
    """Each pixel's colour code sum_c value_c 256^c, int64 [H, W], of a uint8 image [H, W, C]."""
    image = np.asarray(image)
    codes = np.zeros(image.shape[:2], np.int64)
    for c in range(image.shape[2]):
        codes |= image[..., c].astype(np.int64) << (8 * c)
    return codes


def colours(image):
    """(palette, indices): the sorted distinct colours of a uint8 image [H, W, C] as int64 codes
    sum_c value_c 256^c, and each pixel's index into them, int32 [H, W]."""
    palette, indices = np.unique(_codes(image), return_inverse=True)
    return palette, indices.reshape(np.shape(image)[:2]).astype(np.int32)


def num_colours(image):
    """The number of distinct colours of a uint8 image [H, W, C] (counted in 2^24 flags for colour, so that a
    photograph's count costs no sort)."""
    image = np.asarray(image)
    codes = _codes(image).ravel()
    if image.shape[2] <= 3:
        return int(np.count_nonzero(np.bincount(codes, minlength=1)))
    return len(np.unique(codes))


def flat_share(image):
    """The share of the pixels of a uint8 image [H, W, C] that equal their left or their upper neighbour."""
    x = np.asarray(image)
    repeats = np.zeros(x.shape[:2], bool)
    repeats[:, 1:] |= (x[:, 1:] == x[:, :-1]).all(-1)
    repeats[1:] |= (x[1:] == x[:-1]).all(-1)
    return float(repeats.mean())


def looks_synthetic(image):
    """Whether the palette coder is worth trying on a uint8 image [H, W, C]: `applicable`, and at least
    SYNTHETIC_FLAT_SHARE of its pixels repeat a neighbour (`flat_share`) or it has at most FEW_COLOURS colours.
    Measured: screenshots and plots 0.94-0.99, the corpus's photographs 0.05-0.67 (docs/codec.md)."""
    count = num_colours(image)
    return count <= MAX_COLOURS and _synthetic(image, count)


def _synthetic(image, count):
    """`looks_synthetic` for an image of `count` <= MAX_COLOURS colours."""
    return count <= FEW_COLOURS or flat_share(image) >= SYNTHETIC_FLAT_SHARE


def trial_rate(image, engine="auto"):
    """The palette coder's bits per value (bits / (h W C)) on a band of h rows in the middle of a uint8 image
    [H, W, C] of at most MAX_COLOURS colours, h = max(H / TRIAL_ROWS, TRIAL_MIN_ROWS) (all rows if fewer): a
    quick estimate of its rate on the whole (an overestimate where the models would have learnt from the
    rows above)."""
    image = np.asarray(image)
    rows = min(image.shape[0], max(-(-image.shape[0] // TRIAL_ROWS), TRIAL_MIN_ROWS))
    top = (image.shape[0] - rows) // 2
    band = np.ascontiguousarray(image[top:top + rows])
    return 8 * len(encode(band, engine)) / band.size


def worth_trying(image, rival_bits):
    """Whether the palette coder may beat a rival's file of `rival_bits` bits on a uint8 image [H, W, C]: it
    is `applicable` and `looks_synthetic`, or its `trial_rate` is below TRIAL_MARGIN times the rival's rate
    (dead-leaves images: flat share 0.71-0.77, palette coder 10-12% below JPEG-XL and 28-31% below the gray
    photo model; docs/codec.md).  Costs one coding of a sixteenth of the image where it does not look
    synthetic."""
    image = np.asarray(image)
    count = num_colours(image)
    if count > MAX_COLOURS:
        return False
    return _synthetic(image, count) or trial_rate(image) < TRIAL_MARGIN * rival_bits / image.size


def applicable(image):
    """Whether `encode` takes this uint8 image [H, W, C]: at most MAX_COLOURS distinct colours."""
    return num_colours(image) <= MAX_COLOURS


class _Coder:
    """The binary arithmetic coder (32-bit, carry-less, PAQ's): P(bit = 1) = p / 4096, 1 <= p <= 4095."""

    def __init__(self, data=None):
        self.low, self.high = 0, _MASK32
        self.out = bytearray()
        self.data, self.position, self.x = data, 0, 0
        if data is not None:
            for _ in range(4):
                self.x = (self.x << 8) | self._byte()

    def _byte(self):
        value = self.data[self.position] if self.position < len(self.data) else 0
        self.position += 1
        return value

    def code(self, bit, p):
        """Encode `bit` (encoder) or return the decoded bit (decoder; `bit` ignored)."""
        middle = self.low + ((self.high - self.low) >> 12) * p
        if self.data is not None:
            bit = 1 if self.x <= middle else 0
        if bit:
            self.high = middle
        else:
            self.low = middle + 1
        while (self.low ^ self.high) & 0xFF000000 == 0:
            if self.data is None:
                self.out.append(self.high >> 24)
            else:
                self.x = ((self.x << 8) & _MASK32) | self._byte()
            self.low = (self.low << 8) & _MASK32
            self.high = ((self.high << 8) & _MASK32) | 255
        return bit

    def finish(self):
        self.out += struct.pack(">I", self.low)
        return bytes(self.out)


class _APM:
    """The adaptive probability map: p' = the entry of 33 interpolated at stretch(p) in the row of the decision's
    kind; the nearer of the two entries learns the bit at rate 2^-_APM_RATE."""

    def __init__(self):
        row = [squash((j - 16) * 128) * 16 for j in range(33)]
        self.table = array("i", row * _KINDS)

    def refine(self, p, kind):
        s = _STRETCH[p] + 2048
        low, w = s >> 7, s & 127
        base = 33 * kind + low
        self.entry = base + (w >> 6)
        return (self.table[base] * (128 - w) + self.table[base + 1] * w) >> 11

    def update(self, bit):
        target = (bit << 16) + (bit << _APM_RATE) - 2 * bit
        self.table[self.entry] += (target - self.table[self.entry]) >> _APM_RATE


class _Predictor:
    """The context models, the mixers and their updates; the same calls on both sides."""

    def __init__(self, height, width, num_colours):
        self.bits = table_bits(height, width)
        self.shift = 32 - self.bits
        self.tables = [array("I", [1 << (_PROB_BITS + 9)]) * (1 << self.bits) for _ in MODELS]
        self.weights = [[(1 << 16) // len(MODELS)] * (len(MODELS) + 1) for _ in range(_KINDS)]
        self.slots = [0] * len(MODELS)
        self.inputs = [0] * (len(MODELS) + 1)
        self.escape_bits = max(1, (num_colours - 1).bit_length())
        self.apm = _APM()

    def contexts(self, neighbours):
        """The hash of each model's neighbourhood for this pixel (`neighbours`: the 12 indices, P outside)."""
        hashes = []
        for k, model in enumerate(MODELS):
            h = k + 1
            if model == "pattern":
                for a in range(CANDIDATES):
                    for b in range(a):
                        h = _hash(h, int(neighbours[a] == neighbours[b]))
            else:
                for position in model:
                    h = _hash(h, neighbours[position])
            hashes.append(h)
        return hashes

    def predict(self, hashes, decision, kind):
        """P(bit = 1) in 1/4096 for `decision` (an integer naming it) with the pixel's context `hashes`."""
        total = 0
        weights = self.weights[kind]
        for m, h in enumerate(hashes):
            slot = (_hash(h, decision) * 0x2545F491 & _MASK32) >> self.shift
            self.slots[m] = slot
            stretched = _STRETCH[self.tables[m][slot] >> (_PROB_BITS + 10 - 12)]
            self.inputs[m] = stretched
            total += weights[m] * stretched
        self.inputs[-1] = 256
        total += weights[-1] * 256
        self.mixed = min(max(squash(total >> 16), 1), 4095)
        self.kind = kind
        self.p = min(max((self.mixed + 3 * self.apm.refine(self.mixed, kind)) >> 2, 1), 4095)
        return self.p

    def update(self, bit):
        self.apm.update(bit)
        error = ((bit << 12) - self.mixed) * _LEARNING_RATE
        weights = self.weights[self.kind]
        for m in range(len(self.inputs)):
            weights[m] = min(max(weights[m] + ((self.inputs[m] * error) >> 10), -_WEIGHT_LIMIT), _WEIGHT_LIMIT)
        target = bit << _PROB_BITS
        for m, slot in enumerate(self.slots):
            table = self.tables[m]
            state = table[slot]
            n, p = state & 1023, state >> 10
            p += ((target - p) * _RATE[n]) >> 16
            table[slot] = (p << 10) | min(n + 1, _COUNT_LIMIT)


def _neighbours(indices, i, j, outside):
    """The palette indices of pixel (i, j)'s 12 causal neighbours (NEIGHBOURS), `outside` for those outside."""
    width = len(indices[0])
    return [indices[i + di][j + dj] if 0 <= i + di and 0 <= j + dj < width else outside
            for di, dj in NEIGHBOURS]


def _code_indices(indices, height, width, num_colours, coder):
    """Run the model over the pixels in raster order; `indices` is read (encoder) or filled (decoder)."""
    predictor = _Predictor(height, width, num_colours)
    decoding = coder.data is not None
    for i in range(height):
        row = indices[i]
        for j in range(width):
            neighbours = _neighbours(indices, i, j, num_colours)
            hashes = predictor.contexts(neighbours)
            value = None if decoding else row[j]
            seen = []
            for a in range(CANDIDATES):
                candidate = neighbours[a]
                if candidate == num_colours or candidate in seen:
                    continue
                mask = sum(1 << b for b in range(CANDIDATES) if neighbours[b] == candidate)
                rank = len(seen)
                seen.append(candidate)
                p = predictor.predict(hashes, (rank << 6) | mask, (rank << 6) | mask)
                bit = coder.code(int(value == candidate) if not decoding else 0, p)
                predictor.update(bit)
                if bit:
                    value = candidate
                    break
            else:
                node = 1
                for level in range(predictor.escape_bits):
                    shift = predictor.escape_bits - 1 - level
                    p = predictor.predict(hashes, (1 << 16) | node, CANDIDATES * 64 + level)
                    bit = coder.code((value >> shift) & 1 if not decoding else 0, p)
                    predictor.update(bit)
                    node = (node << 1) | bit
                value = node - (1 << predictor.escape_bits)
                if decoding and value >= num_colours:
                    raise PaletteError("corrupted palette stream: a palette index beyond the palette.")
            row[j] = value


def encode_indices(indices, num_colours, engine="auto"):
    """The arithmetic coder's bytes of palette indices int [H, W] (each < num_colours, 2 <= num_colours <=
    MAX_COLOURS); `engine` as for `encode`."""
    indices = np.ascontiguousarray(indices, np.int32)
    height, width = indices.shape
    if _native(engine):
        from ride_tf.codec import palette_kernels
        return palette_kernels.encode(indices.tobytes(), height, width, int(num_colours))
    if not 2 <= num_colours <= MAX_COLOURS or indices.min() < 0 or indices.max() >= num_colours:
        raise ValueError(f"palette coder: indices must lie in [0, {num_colours}) with 2 <= colours <= "
                         f"{MAX_COLOURS}.")
    coder = _Coder()
    _code_indices(indices.tolist(), height, width, int(num_colours), coder)
    return coder.finish()


def decode_indices(data, height, width, num_colours, engine="auto"):
    """The palette indices int32 [H, W] of `encode_indices`'s bytes; PaletteError if they are not such bytes."""
    if _native(engine):
        from ride_tf.codec import palette_kernels
        try:
            raw = palette_kernels.decode(bytes(data), height, width, int(num_colours))
        except ValueError as error:
            raise PaletteError(str(error)) from None
        return np.frombuffer(raw, np.int32).reshape(height, width).copy()
    rows = [[0] * width for _ in range(height)]
    _code_indices(rows, height, width, int(num_colours), _Coder(bytes(data)))
    return np.array(rows, np.int32).reshape(height, width)


def _palette_block(palette):
    out, previous = bytearray(), -1
    for code in palette.tolist():
        delta = code - previous - 1
        while True:
            byte, delta = delta & 127, delta >> 7
            out.append(byte | (128 if delta else 0))
            if not delta:
                break
        previous = code
    return zlib.compress(bytes(out), 9)


def _read_palette(block, num_colours, channels):
    try:
        raw = zlib.decompress(block)
    except zlib.error as error:
        raise PaletteError(f"corrupted palette: {error}") from None
    palette, previous, position = [], -1, 0
    for _ in range(num_colours):
        delta, shift = 0, 0
        while True:
            if position >= len(raw) or shift > 28:
                raise PaletteError("corrupted palette: its block ends early.")
            byte = raw[position]
            position += 1
            delta |= (byte & 127) << shift
            shift += 7
            if not byte & 128:
                break
        previous += delta + 1
        palette.append(previous)
    if position != len(raw) or palette[-1] >= 1 << (8 * channels):
        raise PaletteError("corrupted palette: its block does not hold the announced colours.")
    return np.array(palette, np.int64)


def encode(image, engine="auto"):
    """The payload of a uint8 image [H, W, C] with at most MAX_COLOURS distinct colours (ValueError otherwise).

    `engine`: "native" (C), "reference" (this module) or "auto" (native where built); the same bytes.
    """
    image = np.asarray(image)
    palette, indices = colours(image)
    if len(palette) > MAX_COLOURS:
        raise ValueError(f"palette coding: the image has {len(palette)} distinct colours, more than "
                         f"{MAX_COLOURS}.")
    block = _palette_block(palette)
    stream = b"" if len(palette) == 1 else encode_indices(indices, len(palette), engine)
    return _HEADER.pack(len(palette), len(block)) + block + stream


def decode(payload, height, width, channels, engine="auto"):
    """The uint8 image [H, W, C] of `encode`'s payload; PaletteError if the payload is not one."""
    payload = bytes(payload)
    if len(payload) < _HEADER.size:
        raise PaletteError("the palette payload is shorter than its header.")
    num_colours, block_size = _HEADER.unpack(payload[:_HEADER.size])
    if not 1 <= num_colours <= MAX_COLOURS or _HEADER.size + block_size > len(payload):
        raise PaletteError(f"corrupted palette header ({num_colours} colours, a block of {block_size} bytes).")
    palette = _read_palette(payload[_HEADER.size:_HEADER.size + block_size], num_colours, channels)
    stream = payload[_HEADER.size + block_size:]
    if num_colours == 1:
        indices = np.zeros((height, width), np.int32)
    else:
        indices = decode_indices(stream, height, width, num_colours, engine)
    codes = palette[indices]
    return np.stack([(codes >> (8 * c)) & 255 for c in range(channels)], -1).astype(np.uint8)


def _native(engine):
    """Whether `engine` ("auto", "native" or "reference") codes with the C version; ValueError if it cannot."""
    check_choice("palette coding", "engine", engine, ENGINES)
    if engine == "native" and not available():
        raise ValueError("palette coding: engine='native' needs the C kernels (ride_tf.codec.palette_kernels), "
                         "which are not built here (or RIDE_TF_NATIVE=0).")
    return engine == "native" or (engine == "auto" and available())
