"""The decoder as one XLA-compiled TensorFlow loop: every front, round and rANS step in a single graph.

`ride_tf.codec.coding.decode` in NumPy spends most of its time on the
Python overhead of many small arrays (thousands of fronts, each with a few
rounds of at most `lanes` pixels).  Here the same computation is one
`tf.while_loop` over the fronts, compiled by XLA into a single program per
image shape, with an inner loop over the rounds of a front:

* a front of n <= N pixels (N the longest front of the image) is computed
  at the fixed size N, its pixels i_lo + 0 .. N - 1, the rows past i_hi
  masked: their values are never written and their rANS lanes never move;
* the LSTM states of the last `up_lag` fronts are kept per row (H + 2 rows:
  row 0 is the image's upper border, row H + 1 takes the masked writes);
* per channel, the window of each pixel (`WINDOW` bins around its mixture's
  mean) is tabulated at every `STEP`-th edge for the whole front, and each
  round of pixels on distinct lanes reads its slots, finds its bins (the
  3 inner edges of the block, or F at every 16th edge and the 15 inside the
  block for a slot outside the window) and advances the rANS states,
  reading the new 32-bit words in increasing lane order.

Every quantity is an exact integer (float64 integers from the integer
model's TensorFlow arithmetic, int64 rANS states below 2^61), so XLA's
fusion and reordering change nothing: the decoder computes the encoder's
tables, checked against the NumPy decoder in `tests/test_compiled.py`.
A stream that does not decode (a slot outside its symbol, too few words, a
final state other than the start) sets an error flag, and `decode` raises
`RansError`.
"""
import numpy as np
import tensorflow as tf

from ride_tf import geometry
from ride_tf.codec.coding import BLOCK, STEP, num_lanes
from ride_tf.codec.graph import TENSORFLOW
from ride_tf.codec.integer import NUM_BINS, TOTAL, WINDOW
from ride_tf.codec.rans import RansError, WORD_BITS, state_bound

__all__ = ["CompiledDecoder", "decode", "max_front_length"]


def max_front_length(height, width, nb_size):
    """N: the most pixels on one front of an H x W image (min(H, ceil(W / (r + 1))))."""
    step = geometry.radius(nb_size) + 1
    return int(min(height, -(-width // step)))


class CompiledDecoder:
    """The compiled decoding loop of one integer model (one XLA program per image shape and lane count)."""

    def __init__(self, integer):
        self.integer = integer
        self._function = tf.function(self._decode, jit_compile=True, reduce_retracing=False)
        self.shapes = set()              # the (H, W) of the programs built

    def __call__(self, states, words, height, width, lanes):
        """(image uint8 [H, W, C], words read, final states [lanes], error) of a stream's final states and words."""
        image, position, final, error = self._function(
            tf.constant(states, tf.int64), tf.constant(words, tf.int64), tf.zeros([height, width, lanes, 0], tf.bool))
        self.shapes.add((height, width))
        return image.numpy(), int(position), final.numpy(), bool(error)

    # The empty tensor `shape` [H, W, lanes, 0] carries the static sizes XLA needs (one program per shape).
    def _decode(self, states, words, shape):
        model, ops = self.integer, TENSORFLOW
        height, width, lanes, _ = shape.shape
        channels, r, units, layers = model.num_channels, model.radius, model.units, model.num_layers
        n_max = max_front_length(height, width, model.nb_size)
        rounds = -(-n_max // lanes)
        offsets = np.array(geometry.causal_offsets(model.nb_size))
        up_lag = geometry.front_index(1, 0, model.nb_size)
        left_lag = geometry.front_index(0, 1, model.nb_size)
        num_fronts = geometry.num_fronts(height, width, model.nb_size)
        low_state = tf.constant(int(state_bound(TOTAL)), tf.int64)
        total = tf.constant(TOTAL, tf.int64)
        num_words = tf.shape(words, out_type=tf.int64)[0]
        natural = tf.constant(model.order, tf.int32)
        coarse_bins = tf.constant(np.arange(0, WINDOW + 1, STEP), tf.float64)
        inner_bins = tf.constant(np.arange(1, STEP), tf.float64)
        block_bins = tf.constant(np.arange(0, NUM_BINS + 1, BLOCK), tf.float64)
        block_inner = tf.constant(np.arange(1, BLOCK), tf.float64)

        def table(weights, mean, channel, bins):
            return model.cumulative(weights, mean, channel, bins, ops)

        def pick(edges, slots):
            """The block b with edges[b] <= slot < edges[b + 1] among len - 1 blocks, and its two edges."""
            count = tf.reduce_sum(tf.cast(edges[:, 1:] <= slots[:, None], tf.int32), axis=1)
            block = tf.minimum(count, edges.shape[1] - 2)
            return block, tf.gather(edges, block, batch_dims=1), tf.gather(edges, block + 1, batch_dims=1)

        def round_body(k, rans, position, error, values, front):
            rows, valid, weights, mean, start, coarse, channel = front
            part = tf.minimum(k * lanes + tf.range(lanes), n_max - 1)
            active = tf.gather(valid, part) & (k * lanes + tf.range(lanes) < n_max)
            lane = tf.cast(tf.gather(rows, part) % lanes, tf.int64)
            w, m, s, c = (tf.gather(x, part) for x in (weights, mean, start, coarse))
            x = tf.gather(rans, lane)
            slots = tf.cast(x % total, tf.float64)
            block, _, _ = pick(c, slots)
            first = s + STEP * tf.cast(block, tf.float64)
            fine = tf.concat([tf.gather(c, block, batch_dims=1)[:, None], table(w, m, channel, first[:, None] + inner_bins),
                              tf.gather(c, block + 1, batch_dims=1)[:, None]], axis=1)
            offset, low, high = pick(fine, slots)
            value = first + tf.cast(offset, tf.float64)
            outside = active & ((slots < c[:, 0]) | (slots >= c[:, -1]))

            def escape():
                blocks = table(w, m, channel, tf.broadcast_to(block_bins, [lanes, block_bins.shape[0]]))
                b, _, _ = pick(blocks, slots)
                b_first = tf.cast(BLOCK * b, tf.float64)
                edges = tf.concat([tf.gather(blocks, b, batch_dims=1)[:, None],
                                   table(w, m, channel, b_first[:, None] + block_inner),
                                   tf.gather(blocks, b + 1, batch_dims=1)[:, None]], axis=1)
                o, lo, hi = pick(edges, slots)
                return b_first + tf.cast(o, tf.float64), lo, hi

            e_value, e_low, e_high = tf.cond(tf.reduce_any(outside), escape, lambda: (value, low, high))
            value = tf.where(outside, e_value, value)
            low, high = tf.where(outside, e_low, low), tf.where(outside, e_high, high)
            start_i, freq_i = tf.cast(low, tf.int64), tf.cast(high - low, tf.int64)
            slot_i = x % total
            error |= tf.reduce_any(active & ((slot_i < start_i) | (slot_i >= start_i + freq_i) | (freq_i < 1)))
            new = freq_i * (x // total) + slot_i - start_i
            read = active & (new < low_state)
            # Words go to the reading lanes in increasing lane order.
            earlier = tf.cast(read[None, :] & (lane[None, :] < lane[:, None]), tf.int64)
            rank = position + tf.reduce_sum(earlier, axis=1)
            error |= tf.reduce_any(read & (rank >= num_words))
            word = tf.gather(words, tf.minimum(rank, tf.maximum(num_words - 1, 0)))
            new = tf.where(read, new * (1 << WORD_BITS) + word, new)
            position += tf.reduce_sum(tf.cast(read, tf.int64))
            rans = _scatter_lanes(rans, lane, active, new)
            values = tf.tensor_scatter_nd_update(values, tf.where(active, part, n_max)[:, None], value)
            return k + 1, rans, position, error, values

        def front_body(t, canvas, history, rans, position, error):
            i_lo, i_hi = geometry.front_rows(t, height, width, model.nb_size)
            rows = i_lo + tf.range(n_max)
            valid = rows <= i_hi
            rows = tf.minimum(rows, height - 1)
            cols = tf.clip_by_value(t - (r + 1) * rows, 0, width - 1)
            di, dj = tf.constant(offsets[:, 0], tf.int32), tf.constant(offsets[:, 1], tf.int32)
            at_rows = rows[:, None] + di[None, :]
            at_cols = cols[:, None] + dj[None, :]
            windows = tf.gather_nd(canvas, tf.stack([at_rows + r, at_cols + r], -1))         # [N, P, C]
            windows = tf.reshape(windows, [n_max, -1])
            outside = tf.cast((at_rows < 0) | (at_cols < 0) | (at_cols >= width), tf.float64)
            u = model.centred_inputs(windows, outside, ops)
            h = u
            left, up = history[up_lag - left_lag], history[0]
            new_states = []
            target = tf.where(valid, rows + 1, height + 1)[:, None]
            for layer in range(layers):
                h, c = model.cell_step(layer, h, tf.gather(left[2 * layer], rows + 1),
                                       tf.gather(left[2 * layer + 1], rows + 1), tf.gather(up[2 * layer], rows),
                                       tf.gather(up[2 * layer + 1], rows), ops)
                zero = tf.zeros([height + 2, units], tf.float64)
                new_states += [tf.tensor_scatter_nd_update(zero, target, h),
                               tf.tensor_scatter_nd_update(zero, target, c)]
            if layers:
                history = tf.concat([history[1:], tf.stack(new_states)[None]], 0)
            weights, means = model.mixture(model.mcgsm_inputs(h, u, ops), u, ops)
            values = tf.zeros([n_max, channels], tf.float64)
            for channel in range(channels):
                channel_weights, mean = model.channel_mixture(weights, means, values, channel, ops)
                start = model.window_start(channel_weights, mean, ops)
                coarse = table(channel_weights, mean, channel, start[:, None] + coarse_bins)
                column = tf.zeros([n_max + 1], tf.float64)              # the last entry takes masked writes
                front = (rows, valid, channel_weights, mean, start, coarse, channel)
                _, rans, position, error, column = tf.while_loop(
                    lambda k, *a: k < rounds, lambda k, *a: round_body(k, *a, front),
                    (tf.constant(0), rans, position, error, column))
                values = tf.concat([values[:, :channel], column[:n_max, None], values[:, channel + 1:]], 1)
            where = tf.stack([tf.where(valid, rows + r, height + r), cols + r], -1)
            pixels = tf.gather(values, tf.argsort(natural), axis=1)                     # back in the natural order
            canvas = tf.tensor_scatter_nd_update(canvas, where, pixels)
            return t + 1, canvas, history, rans, position, error

        canvas = tf.zeros([height + r + 1, width + 2 * r, channels], tf.float64)     # the last row takes masked writes
        history = tf.zeros([up_lag, max(2 * layers, 1), height + 2, units], tf.float64)
        _, canvas, _, rans, position, error = tf.while_loop(
            lambda t, *a: t < num_fronts, front_body,
            (tf.constant(0), canvas, history, states, tf.constant(0, tf.int64), tf.constant(False)))
        image = tf.cast(canvas[r:r + height, r:r + width], tf.uint8)
        return image, position, rans, error


def _scatter_lanes(rans, lane, active, new):
    """rans with rans[lane[k]] = new[k] where active (the lanes of a round are distinct)."""
    lanes = rans.shape[0]
    hit = tf.cast(lane[:, None] == tf.range(lanes, dtype=tf.int64)[None, :], tf.int64) * tf.cast(active, tf.int64)[:, None]
    return rans * (1 - tf.reduce_sum(hit, 0)) + tf.reduce_sum(hit * new[:, None], 0)


def decoder_for(coder):
    """The `CompiledDecoder` of `coder`'s integer model (built once per integer model, kept on the coder)."""
    if getattr(coder, "compiled_decoder", None) is None:
        coder.compiled_decoder = CompiledDecoder(coder.integer)
    return coder.compiled_decoder


def is_compiled(coder, height, width):
    """Whether `decode` has already built the program for H x W images with `coder` in this process."""
    decoder = getattr(coder, "compiled_decoder", None)
    return decoder is not None and (height, width) in decoder.shapes


def decode(coder, data, height, width):
    """The uint8 image [H, W, C] of a stream of `coding.encode`, by the compiled loop (`RansError` if it does not
    decode): the same pixels as `coding.decode`, for every stream."""
    integer = coder.integer
    decoder = decoder_for(coder)
    lanes = num_lanes(height, width, integer.num_channels)
    data = bytes(data)
    head = 8 * lanes
    if len(data) < head or (len(data) - head) % 4:
        raise RansError(f"the coded stream has {len(data)} bytes, not {head} bytes of states plus 32-bit words.")
    states = np.frombuffer(data[:head], "<u8").astype(np.int64)
    words = np.frombuffer(data[head:], "<u4").astype(np.int64)
    low = int(state_bound(TOTAL))
    if (states < low).any() or (states >= low << WORD_BITS).any():
        raise RansError("a final state lies outside the state interval.")
    image, position, final, error = decoder(states, words, height, width, lanes)
    if error or position != len(words) or (final != low).any():
        raise RansError("the coded stream did not decode (corrupted, or decoded with other tables).")
    return image
