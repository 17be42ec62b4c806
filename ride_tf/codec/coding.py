"""The coder: an integer model's tables (`ride_tf.codec.integer`) driving the interleaved rANS coder.

Order: the pixels are coded front by front in the wavefront order of the
sampler (front t = (r + 1) i + j, `ride_tf.geometry`), within a front
channel by channel, and within a channel in rounds of at most `lanes`
pixels, pixel (i, j) on rANS lane i mod lanes (`steps`): the rows of a
front are consecutive, so the pixels of a round have distinct lanes.

Encoding is one batched pass over the known image (teacher forcing): the
integer model's cumulative tables at every pixel's value and the next bin
give its (start, frequency) (`IntegerCoder.intervals`), and the rANS coder
codes them in the order above (`encode`).  Where the C kernels are built
(`ride_tf.codec.native`) both steps run there; the reference pass here runs
the LSTM band by band of rows and the mixtures chunk by chunk, in NumPy.

Decoding keeps the wavefront order: `decode_native` (the C kernels), and
`decode`, the reference, front by front in NumPy (`wavefront_pass`): each
front's inputs from the image decoded so far, its LSTM states from those of
the fronts that hold the pixels' left and upper neighbours, its mixtures,
then per channel and round the cumulative tables around each mixture's mean
where the lanes' rANS slots are looked up.  Every path computes the same
integers, so the decoder reproduces the encoder's tables exactly;
`tests/test_coding.py` and `tests/test_native.py` check it table for table.
"""
import concurrent.futures
import math

import numpy as np
import threadpoolctl

from ride_tf import geometry
from ride_tf.checks import check_choice
from ride_tf.codec import native
from ride_tf.codec.integer import NUM_BINS, NUMPY, TOTAL, WINDOW
from ride_tf.codec.rans import RansDecoder, RansEncoder


__all__ = ["IntegerCoder", "coder_for", "num_lanes", "steps", "encode", "decode", "decode_native",
           "code_length_bits", "pixel_code_length_bits", "wavefront_pass", "front_intervals", "ENGINES", "MAX_LANES",
           "PIXELS_PER_BAND", "STEP", "BLOCK"]

# The encoder's engines (`IntegerCoder.intervals`): the C kernels, the NumPy/XLA reference, or the first where it
# can run.
ENGINES = ("auto", "native", "reference")

MAX_LANES = 32
# Pixels per band of rows of the encoder's batched pass (bounds its memory: about 1 KB per pixel).
PIXELS_PER_BAND = 1 << 16


def num_lanes(height, width, channels):
    """The rANS lanes of an image: one per 8192 values, at most 32 and at most one per row (each lane costs 8
    bytes of final state, about 0.008 bit per value)."""
    return int(max(1, min(MAX_LANES, height, (height * width * channels) // 8192)))


def _starts(counts):
    """Where each of consecutive segments of these lengths starts: the exclusive cumulative sum."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def steps(height, width, channels, nb_size, lanes):
    """The coding order: (order, boundaries), `order` the flat indices (i * W + j) * C + channel of every value
    in coding order, `boundaries` the starts of the rANS steps in it (and its length at the end).

    Front by front (t = (r + 1) i + j), channel by channel, the front's pixels in increasing row i (and so in
    increasing flat index: a front holds more than one pixel only when W > r + 1), cut into rounds of `lanes`
    pixels, one rANS step each.  Built segment by segment, without sorting."""
    step = geometry.radius(nb_size) + 1
    t = np.arange(geometry.num_fronts(height, width, nb_size))
    i_lo = np.maximum(0, -((width - 1 - t) // step))
    count = np.maximum(0, np.minimum(height - 1, t // step) - i_lo + 1)           # pixels of each front
    pixel_start = _starts(count)
    # every pixel, front by front and row by row
    front = np.repeat(t, count)
    i = np.repeat(i_lo, count) + np.arange(height * width) - np.repeat(pixel_start, count)
    flat = i * width + front - step * i
    # segments (front, channel): the front's pixels again for each channel
    seg_count = np.repeat(count, channels)
    seg_pixel = np.repeat(pixel_start, channels)
    seg_channel = np.tile(np.arange(channels), len(t))
    seg_start = _starts(seg_count)
    within = np.arange(height * width * channels) - np.repeat(seg_start, seg_count)
    order = flat[np.repeat(seg_pixel, seg_count) + within] * channels + np.repeat(seg_channel, seg_count)
    # a step starts at every lanes-th value of a segment
    seg_rounds = -(-seg_count // lanes)
    round_in_seg = np.arange(seg_rounds.sum()) - np.repeat(_starts(seg_rounds), seg_rounds)
    boundaries = np.repeat(seg_start, seg_rounds) + round_in_seg * lanes
    return order, np.concatenate([boundaries, [height * width * channels]])


_CODERS = {}
# Coders kept per process (their integer models and the C kernels' copies of them).
MAX_CODERS = 16


def coder_for(integer):
    """The `IntegerCoder` of an `IntegerModel`, built once per model (by fingerprint) and kept."""
    key = integer.fingerprint
    if key not in _CODERS:
        if len(_CODERS) >= MAX_CODERS:
            del _CODERS[next(iter(_CODERS))]
        _CODERS[key] = IntegerCoder(integer)
    return _CODERS[key]


class IntegerCoder:
    """An integer model with the encoder's batched pass: every pixel's (start, freq) from a known image.

    `intervals` runs it with the C kernels where they are built
    (`ride_tf.codec.native`); the reference pass, described here, has two
    parts, both in NumPy.  The spatial LSTM runs along the anti-diagonals of
    bands of rows (`scan_states`; float64 BLAS products of integers), the
    states of a band's last row carried into the next band.  The mixture and
    the tables at each pixel's value run on chunks of `CHUNK` pixels.  Both
    compute exact integers, so neither the BLAS nor the chunking changes a
    table (`tests/test_coding.py` checks them against the decoder's).
    """

    CHUNK = 1 << 12

    def __init__(self, integer):
        self.integer = model = integer
        self.channels, self.r, self.units = model.num_channels, model.radius, model.units
        self.num_layers = model.num_layers
        self.offsets = np.array(geometry.causal_offsets(model.nb_size))
        self.compiled_decoder = None           # `ride_tf.codec.compiled.decoder_for` builds it when first used

    def centred_inputs(self, padded, rows, cols):
        """u = [c, e] [n, P C + P] of pixels (rows, cols) [n] of an image padded as `pad_images` (r rows above,
        r columns each side), float64 [H + r, W + 2r, C]."""
        r, width = self.r, padded.shape[1] - 2 * self.r
        di, dj = self.offsets[:, 0], self.offsets[:, 1]
        values = padded[rows[:, None] + r + di, cols[:, None] + r + dj].reshape(len(rows), -1)
        outside = ((rows[:, None] + di < 0) | (cols[:, None] + dj < 0) | (cols[:, None] + dj >= width))
        return self.integer.centred_inputs(values, outside.astype(np.float64), NUMPY)

    def scan_states(self, u, top):
        """The top layer's states h [h, W, U] of a band of rows with inputs u [h, W, D], along its anti-diagonals
        (every layer in the same sweep), and the states (h, c) of the band's last row per layer (`top` for the
        next band; `top` here: per layer (h, c) [W, U] of the row above, zeros for the first band)."""
        model, units = self.integer, self.units
        rows, width = u.shape[:2]
        state = [[np.zeros((rows + 1, units)), np.zeros((rows + 1, units))] for _ in range(self.num_layers)]
        out = np.empty((rows, width, units))
        last = [[np.empty((width, units)), np.empty((width, units))] for _ in range(self.num_layers)]
        for d in range(rows + width - 1):
            i = np.arange(max(0, d - width + 1), min(rows - 1, d) + 1)
            j = d - i
            x = u[i, j]
            for layer, (h_state, c_state) in enumerate(state):
                if d < width:                     # row 0's upper neighbour: the row above the band
                    h_state[0], c_state[0] = top[layer][0][d], top[layer][1][d]
                x, c = model.cell_step_numpy(layer, x, h_state[i + 1], c_state[i + 1], h_state[i], c_state[i])
                h_state[i + 1], c_state[i + 1] = x, c
                if i[-1] == rows - 1:
                    last[layer][0][j[-1]], last[layer][1][j[-1]] = x[-1], c[-1]
            out[i, j] = x
        return out, last

    def bands(self, image):
        """The reference pass's bands of rows of a uint8 image [H, W, C], top to bottom: (first pixel, MCGSM inputs
        v [n, dim], inputs u [n, P C + P]) of each band's n pixels, row-major (the LSTM run along the band's
        anti-diagonals, the states of its last row carried into the next)."""
        height, width, _ = image.shape
        r = self.r
        padded = np.pad(image.astype(np.float64), [(r, 0), (r, r), (0, 0)])
        band_rows = max(1, PIXELS_PER_BAND // width)
        top = [[np.zeros((width, self.units)), np.zeros((width, self.units))] for _ in range(self.num_layers)]
        for row0 in range(0, height, band_rows):
            rows = min(band_rows, height - row0)
            i, j = np.meshgrid(np.arange(row0, row0 + rows), np.arange(width), indexing="ij")
            u = self.centred_inputs(padded, i.reshape(-1), j.reshape(-1))
            h = None
            if self.num_layers:
                h, top = self.scan_states(u.reshape(rows, width, -1), top)
                h = h.reshape(rows * width, -1)
            yield row0 * width, self.integer.mcgsm_inputs(h, u, NUMPY), u

    def intervals(self, image, engine="auto", threads=None):
        """(start, freq) int64 [H, W, C] of every value of a uint8 image [H, W, C]; the channels in coding order
        (the c-th is channel `integer.order[c]`).

        `engine`: "native" (the C kernels, `ride_tf.codec.native`, on `threads` threads, None: every core), "reference"
        (NumPy, band by band, `bands`) or "auto" (native where it is built): the same integers."""
        check_choice("IntegerCoder.intervals", "engine", engine, ENGINES)
        if engine == "native" or (engine == "auto" and native.usable(self.integer)):
            return native.native_model(self.integer).intervals(image, threads)
        model = self.integer
        height, width, channels = image.shape
        known = image[:, :, list(model.order)].astype(np.float64).reshape(-1, channels)
        start = np.empty((height * width, channels), np.int64)
        freq = np.empty_like(start)

        def mixtures(first, v, u):
            for a in range(0, len(u), self.CHUNK):
                b = min(len(u), a + self.CHUNK)
                weights, means = model.mixture(v[a:b], u[a:b], NUMPY)
                chunk_start, chunk_freq = model.intervals(weights, means, known[first + a:first + b], NUMPY)
                start[first + a:first + b] = chunk_start
                freq[first + a:first + b] = chunk_freq

        # A band's mixtures (NumPy, which releases the GIL in its loops) run on a second thread while the next
        # band's LSTM scan runs here.
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"), \
                concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = [pool.submit(mixtures, *band) for band in self.bands(image)]
            for future in pending:
                future.result()
        return start.reshape(height, width, channels), freq.reshape(height, width, channels)

    def experts(self, image, stride, engine="auto", threads=None):
        """(logits, masses) int64 [S, K] of the pixels of every `stride`-th row of a uint8 image [H, W, 1]
        (S = ceil(H / stride) W, row-major) under a one-channel model: each pixel's gate logits and each expert's
        mass of its value, PHI_k(v + 1) - PHI_k(v) at 2^-24 (`ride_tf.codec.adapt` fits the priors to them).
        `engine`, `threads` as for `intervals`: the same integers."""
        check_choice("IntegerCoder.experts", "engine", engine, ENGINES)
        model = self.integer
        if model.num_channels != 1:
            raise ValueError("IntegerCoder.experts: a one-channel model is needed.")
        if engine == "native" or (engine == "auto" and native.usable(model)):
            return native.native_model(model).experts(image, stride, threads)
        height, width, _ = image.shape
        values = image.reshape(-1).astype(np.float64)
        logits, masses = [], []
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            for first, v, u in self.bands(image):
                rows = np.arange(first, first + len(u)) // width
                keep = np.nonzero(rows % stride == 0)[0]
                if len(keep):
                    logits.append(model.logits(v[keep], NUMPY))
                    _, means = model.mixture(v[keep], u[keep], NUMPY)
                    value = values[first + keep]
                    phi = model.expert_cdf(means[..., 0], 0, np.stack([value, value + 1.0], 1), NUMPY)   # [n, 2, K]
                    masses.append(phi[:, 1] - phi[:, 0])
        return (np.concatenate(logits).astype(np.int64), np.concatenate(masses).astype(np.int64))


def encode(coder, image, engine="auto", threads=None):
    """The rANS stream (bytes) of a uint8 image [H, W, C] under `coder`'s integer model.  `engine` and `threads` as
    in `IntegerCoder.intervals` (the same bytes either way)."""
    height, width, channels = image.shape
    start, freq = coder.intervals(image, engine, threads)
    lanes = num_lanes(height, width, channels)
    if engine != "reference" and native.AVAILABLE:
        return native.encode_fronts(start, freq, coder.integer.nb_size, lanes)
    order, boundaries = steps(height, width, channels, coder.integer.nb_size, lanes)
    lane = (order // channels // width) % lanes
    start, freq = start.reshape(-1)[order], freq.reshape(-1)[order]
    encoder = RansEncoder(lanes, TOTAL)
    encoder.extend(lane, start, freq, boundaries)
    return encoder.finish()


def pixel_code_length_bits(coder, image, threads=None):
    """The ideal code length of every pixel of a uint8 image [H, W, C] in bits, float64 [H, W]: the sum over
    its channels of log2(TOTAL / freq)."""
    _, freq = coder.intervals(image, threads=threads)
    return np.sum(math.log2(TOTAL) - np.log2(freq.astype(np.float64)), axis=-1)


def code_length_bits(coder, image):
    """The ideal code length in bits of a uint8 image [H, W, C]: sum of log2(TOTAL / freq) (float64)."""
    return float(pixel_code_length_bits(coder, image).sum())


# The decoder's first table: F at every STEP-th edge of a window of WINDOW bins around each pixel's mean.
STEP = 4


def wavefront_pass(coder, height, width, choose):
    """The decoder's pass, front by front in NumPy; `choose` picks the values of each round of pixels.

    For every front, channel and round of pixels on distinct lanes:
    choose(lanes, table, start, coarse, where) -> values [m] (float64), where
    table(bins [m, E], index=slice(None)) gives the round's cumulative tables
    F (of the pixels `index`) at bins b (0..256: F(0) = 0, F(256) = TOTAL),
    start [m] is the first bin of each pixel's
    window (WINDOW bins around the mixture's mean), coarse [m, WINDOW / STEP
    + 1] its table at every STEP-th edge of the window (computed for the
    whole front at once), and where = (rows, columns, coded channel) of the
    pixels.  Returns the image uint8 [H, W, C].  The decoder chooses by the
    rANS slots (`decode`); `front_intervals` by the known image.
    """
    model, ops = coder.integer, NUMPY
    channels, r, units = model.num_channels, model.radius, model.units
    lanes = num_lanes(height, width, channels)
    offsets = np.array(geometry.causal_offsets(model.nb_size))
    canvas = np.zeros((height + r, width + 2 * r, channels), np.float64)
    up_lag, left_lag = geometry.front_index(1, 0, model.nb_size), geometry.front_index(0, 1, model.nb_size)
    zeros = lambda: [np.zeros((height + 1, units)) for _ in range(2 * model.num_layers)]
    history = [zeros() for _ in range(up_lag)]            # states of the last fronts, newest last, rows + 1
    coarse_bins = np.arange(0, WINDOW + 1, STEP, dtype=np.int64)[None, :]
    natural = np.array(model.order)[None, :]
    for t in range(geometry.num_fronts(height, width, model.nb_size)):
        i_lo, i_hi = geometry.front_rows(t, height, width, model.nb_size)
        rows = np.arange(i_lo, i_hi + 1)
        cols = t - (r + 1) * rows
        n = len(rows)
        if n == 0:            # images narrower than r + 1 columns have fronts without pixels
            history = history[1:] + [zeros()]
            continue
        windows = canvas[rows[:, None] + r + offsets[:, 0], cols[:, None] + r + offsets[:, 1]].reshape(n, -1)
        outside = ((rows[:, None] + offsets[:, 0] < 0) | (cols[:, None] + offsets[:, 1] < 0)
                   | (cols[:, None] + offsets[:, 1] >= width)).astype(np.float64)
        u = model.centred_inputs(windows, outside, ops)
        left, up, new = history[-left_lag], history[-up_lag], zeros()
        h = u
        for layer in range(model.num_layers):
            h, c = model.cell_step_numpy(layer, h, left[2 * layer][rows + 1], left[2 * layer + 1][rows + 1],
                                         up[2 * layer][rows], up[2 * layer + 1][rows])
            new[2 * layer][rows + 1], new[2 * layer + 1][rows + 1] = h, c
        history = history[1:] + [new]
        weights, means = model.mixture(model.mcgsm_inputs(h, u, ops), u, ops)
        values = np.zeros((n, channels))
        lane = rows % lanes
        for channel in range(channels):
            channel_weights, mean = model.channel_mixture(weights, means, values, channel, ops)
            start = model.window_start(channel_weights, mean, ops).astype(np.int64)
            coarse = model.cumulative_numpy(channel_weights, mean, channel, start[:, None] + coarse_bins)
            for a in range(0, n, lanes):
                part = slice(a, min(n, a + lanes))
                w, m = channel_weights[part], mean[part]
                table = lambda bins, index=slice(None), w=w, m=m: model.cumulative_numpy(w[index], m[index], channel,
                                                                                         bins)
                values[part, channel] = choose(lane[part], table, start[part], coarse[part],
                                               (rows[part], cols[part], channel))
        canvas[rows[:, None] + r, cols[:, None] + r, natural] = values           # back in the natural order
    return canvas[r:, r:r + width].astype(np.uint8)


def decode_native(coder, data, height, width, threads=None):
    """`decode` with the C kernels (`ride_tf.codec.native`) on `threads` threads (None: every core): the same
    pixels for every stream, `RansError` for the same streams; RuntimeError if the kernels are not built."""
    native.require("decode_native")
    lanes = num_lanes(height, width, coder.integer.num_channels)
    return native.native_model(coder.integer).decode(data, height, width, lanes, threads)


def decode(coder, data, height, width):
    """The uint8 image [H, W, C] whose rANS stream `encode` wrote (`RansError` if the stream does not decode).

    Front by front in NumPy (`wavefront_pass`: the integer model's `NUMPY`
    arithmetic, the same integers as the encoder's TensorFlow graph).  A
    pixel's value is the bin b with F(b) <= slot < F(b + 1), slot its lane's
    rANS slot: the coarse table of its window (every STEP-th edge) gives the
    block, one more evaluation of the STEP - 1 edges inside it gives the bin
    (STEP + WINDOW / STEP edges of the table in all); a slot outside the
    window is found by F at every 16th edge of its table, then the 15 edges inside the block.
    """
    decoder = RansDecoder(data, num_lanes(height, width, coder.integer.num_channels), TOTAL)
    inner = np.arange(1, STEP, dtype=np.int64)[None, :]

    def choose(lanes, table, start, coarse, where):
        slots = decoder.slots(lanes)
        m = len(slots)
        here = np.arange(m)
        block = np.minimum((coarse[:, 1:] <= slots[:, None]).sum(axis=1), WINDOW // STEP - 1)
        first = start + STEP * block
        fine = np.concatenate([coarse[here, block][:, None], table(first[:, None] + inner),
                               coarse[here, block + 1][:, None]], axis=1)              # F at first .. first + STEP
        offset = np.minimum((fine[:, 1:] <= slots[:, None]).sum(axis=1), STEP - 1)
        value, low, high = first + offset, fine[here, offset], fine[here, offset + 1]
        outside = (slots < coarse[:, 0]) | (slots >= coarse[:, -1])
        if outside.any():
            escaped = np.nonzero(outside)[0]
            value[escaped], low[escaped], high[escaped] = _search_blocks(lambda bins: table(bins, escaped),
                                                                       slots[escaped])
        decoder.advance(lanes, low.astype(np.int64), (high - low).astype(np.int64))
        return value

    # The front's matrix products are small: BLAS threads only cost (tens of times more on a busy machine).
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        image = wavefront_pass(coder, height, width, choose)
    decoder.check_finished()
    return image


# The decoder's search for a slot outside its window: F at every BLOCK-th edge, then the edges inside the block.
BLOCK = 16
_BLOCK_EDGES = np.arange(0, NUM_BINS + 1, BLOCK, dtype=np.int64)[None, :]
_BLOCK_INNER = np.arange(1, BLOCK, dtype=np.int64)[None, :]


def _search_blocks(table, slots):
    """(bin, F(bin), F(bin + 1)) holding each slot, in two lookups of the pixels' tables: F at every 16th edge
    gives the block, the 15 edges inside it the bin."""
    m = len(slots)
    here = np.arange(m)
    blocks = table(np.repeat(_BLOCK_EDGES, m, axis=0))
    block = np.minimum((blocks[:, 1:] <= slots[:, None]).sum(axis=1), NUM_BINS // BLOCK - 1)
    first = BLOCK * block
    fine = np.concatenate([blocks[here, block][:, None], table(first[:, None] + _BLOCK_INNER),
                           blocks[here, block + 1][:, None]], axis=1)
    offset = np.minimum((fine[:, 1:] <= slots[:, None]).sum(axis=1), BLOCK - 1)
    return first + offset, fine[here, offset], fine[here, offset + 1]


def front_intervals(coder, image):
    """(start, freq) int64 [H, W, C] of a known uint8 image [H, W, C] by the decoder's own pass and arithmetic
    (channels in coding order): what `IntegerCoder.intervals` computes in one batched pass, for checking."""
    height, width, channels = image.shape
    start = np.zeros((height, width, channels), np.int64)
    freq = np.zeros_like(start)

    def choose(lanes, table, window_start, coarse, where):
        rows, cols, channel = where
        value = image[rows, cols, coder.integer.order[channel]].astype(np.int64)
        edges = table(np.stack([value, value + 1], axis=1))
        start[rows, cols, channel] = edges[:, 0]
        freq[rows, cols, channel] = edges[:, 1] - edges[:, 0]
        grid = table(window_start[:, None] + np.arange(0, WINDOW + 1, STEP, dtype=np.int64)[None, :])
        if not np.array_equal(grid, coarse):
            raise AssertionError("front_intervals: the front's coarse table differs from the round's")
        return value

    wavefront_pass(coder, height, width, choose)
    return start, freq
