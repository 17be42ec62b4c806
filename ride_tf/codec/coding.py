"""The coding graph: the model's probability tables of every pixel, in wavefront order, for the range coder."""
import threading

import numpy as np
import tensorflow as tf

from ride_tf import discrete
from ride_tf.evaluation import traced
from ride_tf.wavefront import Wavefront

__all__ = ["WINDOW", "run_coder"]

# Bins of the window coded first around each pixel's mixture mean (see `coding_graph`).
WINDOW = 16


class _Coder:
    """The entropy coder the traced graph calls back (set for the length of one compress/decompress)."""

    def __init__(self):
        self.code = None
        self.lock = threading.Lock()

    def __call__(self, channel, table, known):
        if len(table) == 0:
            return np.zeros(0, np.int32)
        return np.asarray(self.code(int(channel), table.astype(np.float64), known), np.int32)


def _coding_graph(model):
    """The codec's traced graph for `model`: (known uint8 [H, W, C]) -> the coded image uint8 [H, W, C].

    One `tf.while_loop` over the wavefronts; for each front and channel the
    256-bin tables of the front's pixels go to the coder (`tf.numpy_function`),
    which returns the channel's values (the known ones when encoding, the
    decoded ones when decoding); they enter the canvas at their bin centres.
    """
    channels = model.num_channels
    dtype = model.compute_dtype
    coder = _Coder()

    def code_channel(c, log_weights, mean, std, known):
        """Code one channel of the front's pixels: a window of WINDOW bins with two escapes, then the
        escaped pixels with their full tables restricted to the escaped tail; returns the values [n]."""
        start = discrete.window_start(log_weights, mean, WINDOW)
        table = discrete.window_table(log_weights, mean, std, start, WINDOW, tf.float32)     # [n, W + 2]
        known_symbol = tf.clip_by_value(known - start + 1, 0, WINDOW + 1)
        symbol = tf.ensure_shape(tf.numpy_function(coder, [c, table, known_symbol], tf.int32, stateful=True),
                                 [None])
        value = start + symbol - 1
        escape = (symbol == 0) | (symbol == WINDOW + 1)

        def code_escaped():
            escaped = tf.where(escape)[:, 0]
            full = discrete.bin_table(tf.gather(log_weights, escaped), tf.gather(mean, escaped), std, tf.float32)
            bins = tf.range(discrete.NUM_BINS)[None, :]
            start_escaped = tf.gather(start, escaped)[:, None]
            tail = tf.where(tf.gather(symbol, escaped)[:, None] == 0, bins < start_escaped,
                            bins >= start_escaped + WINDOW)
            tail_value = tf.ensure_shape(tf.numpy_function(
                coder, [c, tf.where(tail, full, tf.zeros_like(full)), tf.gather(known, escaped)], tf.int32,
                stateful=True), [None])
            return tf.tensor_scatter_nd_update(value, escaped[:, None], tail_value)

        return tf.cond(tf.reduce_any(escape), code_escaped, lambda: value)

    def run(known):
        front = Wavefront(model)
        constants = discrete.mixture_constants(model, tf.float32)

        def body(t, pixels, h, x_hat):
            mixture = discrete.intensity_mixture(model, h, x_hat, constants, tf.float32)
            known_front = tf.cast(tf.gather_nd(known, pixels), tf.int32)                  # [n, C]
            log_weights = mixture.log_weights
            values, previous = [], tf.zeros_like(mixture.means[:, 0, :])
            for c in range(channels):
                mean, std = discrete.channel_moments(mixture, c, previous)
                value = code_channel(c, log_weights, mean, std, known_front[:, c])
                values.append(value)
                if c + 1 < channels:
                    log_weights += discrete.channel_log_mass(mixture, c, value, previous)
                    previous = tf.tensor_scatter_nd_update(
                        tf.transpose(previous), [[c]], discrete.bin_centres(value)[None])
                    previous = tf.transpose(previous)
            centres = discrete.bin_centres(tf.stack(values, axis=1))
            return tf.cast(centres, dtype)[:, None, :]

        canvas = tf.zeros(tf.concat([[1], tf.shape(known)], 0), dtype)
        image = front.run(canvas, body)[0]
        return tf.cast(tf.floor(image * discrete.NUM_BINS), tf.uint8)

    return traced(model, "codec", run, [tf.TensorSpec([None, None, channels], tf.uint8)]), coder


_CODERS = {}


def run_coder(model, known, code):
    """Run the codec's graph with `code(channel, table [n, 256] float64, known [n]) -> values [n]`."""
    if model not in _CODERS:
        _CODERS[model] = _coding_graph(model)
    graph, coder = _CODERS[model]
    with coder.lock:
        coder.code = code
        try:
            return graph(known).numpy()
        finally:
            coder.code = None


