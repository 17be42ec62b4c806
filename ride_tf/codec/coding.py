"""The coder: an integer model's tables (`ride_tf.codec.integer`) driving the interleaved rANS coder.

Order: the pixels are coded front by front in the wavefront order of the
sampler (front t = (r + 1) i + j, `ride_tf.geometry`), within a front
channel by channel, and within a channel in rounds of at most `lanes`
pixels, pixel (i, j) on rANS lane i mod lanes (`steps`): the rows of a
front are consecutive, so the pixels of a round have distinct lanes.

Encoding is one batched pass over the known image (teacher forcing): the
integer model's cumulative tables at every pixel's value and the next bin
give its (start, frequency), band by band of rows (`IntegerCoder.code_band`,
the spatial LSTM states passed from band to band), and the rANS coder codes
them in the order above.

Decoding keeps the wavefront order.  For each front, `IntegerCoder.front`
gathers nothing itself: the caller passes the front's causal windows (from
the image decoded so far) and the LSTM states of the two earlier fronts that
hold the pixels' left and upper neighbours, and gets the front's states and
its mixtures; then, per channel, `window` gives each pixel's cumulative
table on `WINDOW` bins around its mixture's mean, the rANS slots are looked
up there, and the rare pixels whose slot lies outside their window get their
full 257-entry table (`full`).  Both sides compute the same integers, so the
decoder reproduces the encoder's tables exactly; `tests/test_coding.py` checks
it table for table.
"""
import math

import numpy as np
import tensorflow as tf
import threadpoolctl

from ride_tf import geometry
from ride_tf.codec.integer import NUMPY, TENSORFLOW, TOTAL, WINDOW, integer_model

_NUM_BINS = 256
from ride_tf.codec.rans import RansDecoder, RansEncoder

__all__ = ["IntegerCoder", "coder_for_model", "num_lanes", "steps", "encode", "decode", "code_length_bits",
           "pixel_code_length_bits", "wavefront_pass", "front_intervals", "MAX_LANES", "PIXELS_PER_BAND"]

MAX_LANES = 32
# Pixels per band of the encoder's batched pass (bounds its memory).
PIXELS_PER_BAND = 1 << 16


def num_lanes(height, width, channels):
    """The rANS lanes of an image: one per 8192 values, at most 32 and at most one per row (each lane costs 8
    bytes of final state, about 0.008 bit per value)."""
    return int(max(1, min(MAX_LANES, height, (height * width * channels) // 8192)))


def steps(height, width, channels, nb_size, lanes):
    """The coding order: (order, boundaries), `order` the flat indices (i * W + j) * C + channel of every value
    in coding order, `boundaries` the starts of the rANS steps in it (and its length at the end)."""
    r = geometry.radius(nb_size)
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    t = (r + 1) * i + j
    first_row = np.maximum(0, -((width - 1 - t) // (r + 1)))             # i_lo of the pixel's front
    rounds = (i - first_row) // lanes
    t, rounds, flat = (np.repeat(a.reshape(-1, 1), channels, axis=1) for a in (t, rounds, i * width + j))
    channel = np.broadcast_to(np.arange(channels), t.shape)
    values = flat * channels + channel
    order = np.lexsort((values.reshape(-1), rounds.reshape(-1), channel.reshape(-1), t.reshape(-1)))
    key = np.stack([t.reshape(-1)[order], channel.reshape(-1)[order], rounds.reshape(-1)[order]])
    change = np.nonzero(np.any(key[:, 1:] != key[:, :-1], axis=0))[0] + 1
    return values.reshape(-1)[order], np.concatenate([[0], change, [len(order)]])


_CODERS = {}


def coder_for_model(model):
    """The `IntegerCoder` of `model`'s current weights (its integer model derived, its band function traced, once)."""
    integer = integer_model(model)
    if _CODERS.get(id(model), (None,))[0] is not integer:
        _CODERS[id(model)] = (integer, IntegerCoder(integer))
    return _CODERS[id(model)][1]


class IntegerCoder:
    """An integer model with the traced band function of the encoder (the decoder runs the model in NumPy)."""

    def __init__(self, integer):
        self.integer = model = integer
        self.channels, self.r, self.units = model.num_channels, model.radius, model.units
        self.num_layers = model.num_layers
        band = [tf.TensorSpec([None, None, model.num_channels], tf.uint8), tf.TensorSpec([], tf.int32),
                tf.TensorSpec([], tf.int32)] + [tf.TensorSpec([None, model.units], tf.float64)] * (2 * model.num_layers)
        self.band = tf.function(self._band, input_signature=band)

    def _band(self, window, row0, width, *top):
        """(start, freq [h, W, C], per layer the band's last row h, c [W, U]) of rows row0 .. of an image.

        window: uint8 [h + r, W + 2r, C], the band's rows and the r rows above, padded as `pad_images`.
        top: per layer the states h, c [W, U] of the row above the band (zeros for the first band)."""
        from ride_tf.neighbourhoods import extract_neighbourhoods

        model, ops = self.integer, TENSORFLOW
        values = tf.cast(window[None], tf.float64)
        windows, pixels = extract_neighbourhoods(values, model.nb_size)
        shape = tf.shape(pixels)
        outside = geometry.outside_indicators(row0 + tf.range(shape[1]), tf.range(shape[2]), width, model.nb_size,
                                              tf.float64)
        u = model.centred_inputs(windows, outside[None], ops)
        h, last = u, []
        for layer in range(self.num_layers):
            step = lambda x, hl, cl, hu, cu, layer=layer: model.cell_step(layer, x, hl, cl, hu, cu, ops)
            h, c = _scan(h, model.units, step, top[2 * layer][None], top[2 * layer + 1][None])
            last += [h[0, -1], c[0, -1]]
        v = model.mcgsm_inputs(h, u, ops)
        weights, means = model.mixture(tf.reshape(v, [-1, v.shape[-1]]), tf.reshape(u, [-1, u.shape[-1]]), ops)
        known = tf.gather(tf.reshape(pixels, [-1, self.channels]), list(model.order), axis=-1)
        start, freq = model.intervals(weights, means, known, ops)
        out = tf.concat([shape[1:3], [self.channels]], 0)
        return (tf.reshape(start, out), tf.reshape(freq, out)) + tuple(last)

    def intervals(self, image):
        """(start, freq) int64 [H, W, C] of every value of a uint8 image [H, W, C], band by band; the channels in
        coding order (the c-th is channel `integer.order[c]`)."""
        height, width, channels = image.shape
        r = self.r
        padded = np.pad(image, [(r, 0), (r, r), (0, 0)])
        band_rows = max(1, PIXELS_PER_BAND // width)
        top = [np.zeros((width, self.units))] * (2 * self.num_layers)
        start = np.empty((height, width, channels), np.int64)
        freq = np.empty_like(start)
        for row0 in range(0, height, band_rows):
            rows = min(band_rows, height - row0)
            out = self.band(padded[row0:row0 + rows + r], np.int32(row0), np.int32(width), *top)
            start[row0:row0 + rows] = out[0].numpy()
            freq[row0:row0 + rows] = out[1].numpy()
            top = [t.numpy() for t in out[2:]]
        return start, freq


def _scan(u, units, step, h_top, c_top):
    """diagonal_scan of one band with the states of the row above it (the left column is the image border)."""
    from ride_tf.nn.spatial_lstm import diagonal_scan

    return diagonal_scan(u, units, step, return_cells=True, boundary=(h_top, c_top, None, None))


def encode(coder, image):
    """The rANS stream (bytes) of a uint8 image [H, W, C] under `coder`'s integer model."""
    height, width, channels = image.shape
    start, freq = coder.intervals(image)
    lanes = num_lanes(height, width, channels)
    order, boundaries = steps(height, width, channels, coder.integer.nb_size, lanes)
    lane = (order // channels // width) % lanes
    start, freq = start.reshape(-1)[order], freq.reshape(-1)[order]
    encoder = RansEncoder(lanes, TOTAL)
    for a, b in zip(boundaries[:-1], boundaries[1:]):
        encoder.step(lane[a:b], start[a:b], freq[a:b])
    return encoder.finish()


def pixel_code_length_bits(coder, image):
    """The ideal code length of every pixel of a uint8 image [H, W, C] in bits, float64 [H, W]: the sum over
    its channels of log2(TOTAL / freq)."""
    _, freq = coder.intervals(image)
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
            h, c = model.cell_step(layer, h, left[2 * layer][rows + 1], left[2 * layer + 1][rows + 1],
                                   up[2 * layer][rows], up[2 * layer + 1][rows], ops)
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


def decode(coder, data, height, width):
    """The uint8 image [H, W, C] whose rANS stream `encode` wrote (`RansError` if the stream does not decode).

    Front by front in NumPy (`wavefront_pass`: the integer model's `NUMPY`
    arithmetic, the same integers as the encoder's TensorFlow graph).  A
    pixel's value is the bin b with F(b) <= slot < F(b + 1), slot its lane's
    rANS slot: the coarse table of its window (every STEP-th edge) gives the
    block, one more evaluation of the STEP - 1 edges inside it gives the bin
    (STEP + WINDOW / STEP edges of the table in all); a slot outside the
    window is found by halving the rest of the range.
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
            value[escaped], low[escaped], high[escaped] = _bisect(lambda bins: table(bins, escaped), slots[escaped],
                                                                  start[escaped], coarse[escaped])
        decoder.advance(lanes, low.astype(np.int64), (high - low).astype(np.int64))
        return value

    # The front's matrix products are small: BLAS threads only cost (tens of times more on a busy machine).
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        image = wavefront_pass(coder, height, width, choose)
    decoder.check_finished()
    return image


def _bisect(table, slots, start, coarse):
    """(bin, F(bin), F(bin + 1)) holding each slot outside its window, by halving the range below or above it."""
    below = slots < coarse[:, 0]
    low_bin = np.where(below, 0, start + WINDOW)
    high_bin = np.where(below, start, _NUM_BINS)
    low = np.where(below, 0.0, coarse[:, -1])
    high = np.where(below, coarse[:, 0], float(TOTAL))
    while (high_bin - low_bin > 1).any():
        middle = (low_bin + high_bin) // 2
        at_middle = table(middle[:, None])[:, 0]
        up = slots >= at_middle
        low_bin, low = np.where(up, middle, low_bin), np.where(up, at_middle, low)
        high_bin, high = np.where(up, high_bin, middle), np.where(up, high, at_middle)
    return low_bin, low, high


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
