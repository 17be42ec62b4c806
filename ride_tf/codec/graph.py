"""The integer model's arithmetic as TensorFlow ops: exact tables inside graphs, on any device.

`ride_tf.codec.integer` writes its arithmetic against an `ops` object; here
is the TensorFlow one (`TENSORFLOW`: float64 tensors holding integers, with
the same exactness argument as NumPy's), used by the XLA-compiled decoder
(`ride_tf.codec.compiled`) and by the SavedModels' exact sizes
(`ride_tf.export`), and `code_images`, the whole-image pass in one graph.
The coder's runtime does not need this module (nor TensorFlow).
"""
import math

import tensorflow as tf

from ride_tf import geometry
from ride_tf.codec.integer import TOTAL
from ride_tf.neighbourhoods import extract_neighbourhoods, pad_images
from ride_tf.nn.spatial_lstm import diagonal_scan

__all__ = ["TENSORFLOW", "TensorFlowOps", "code_images", "code_length_bits"]


class TensorFlowOps:
    """The integer model's arithmetic on float64 tensors (in graphs, on any device)."""
    float = staticmethod(lambda x: tf.cast(x, tf.float64))
    constant = staticmethod(lambda x: tf.constant(x, tf.float64))
    matmul = staticmethod(tf.matmul)
    floor = staticmethod(tf.floor)
    clip = staticmethod(tf.clip_by_value)
    maximum = staticmethod(tf.maximum)
    where = staticmethod(tf.where)
    reshape = staticmethod(tf.reshape)
    concat = staticmethod(lambda parts, axis: tf.concat(parts, axis))
    stack = staticmethod(lambda parts, axis: tf.stack(parts, axis))
    split = staticmethod(lambda x, n: tf.split(x, n, axis=-1))
    repeat = staticmethod(lambda x, n, axis: tf.repeat(x, n, axis=axis))
    max = staticmethod(lambda x, axis: tf.reduce_max(x, axis=axis, keepdims=True))
    sum = staticmethod(lambda x, axis: tf.reduce_sum(x, axis=axis, keepdims=True))

    @staticmethod
    def clipped_gather(table, index):
        """table[clip(index, 0, len - 1)] for float64 integer indices."""
        index = tf.clip_by_value(index, 0.0, float(len(table) - 1))
        return tf.gather(tf.constant(table), tf.cast(index, tf.int32))

    @staticmethod
    def mix(phi, weights):
        """sum_k weights[m, k] phi[m, e, k] -> [m, e] (integer sums below 2^53: exact in any order)."""
        return tf.reduce_sum(weights[:, None, :] * phi, axis=-1)

    @staticmethod
    def standardised_index(edges, mean, inverse_width, shift, inverse_width_scaled, offset):
        """floor((edges[m, e] - mean[m, k]) G_k / 2^s_k) + offset, [m, e, k]: the standardised distances at 2^-10
        (G 2^-s is exact, so is the product)."""
        return tf.floor((edges[:, :, None] - mean[:, None, :]) * tf.constant(inverse_width_scaled)) + offset

    @staticmethod
    def floordiv(a, b):
        """Integer floor division of float64 integers (in int64, exact)."""
        return tf.cast(tf.math.floordiv(tf.cast(a, tf.int64), tf.cast(b, tf.int64)), tf.float64)

    @staticmethod
    def first_largest(x):
        """1 at the first largest entry of each row of x [M, K], else 0 (float64)."""
        num = tf.shape(x)[-1]
        index = tf.range(num)
        first = tf.reduce_min(tf.where(x == tf.reduce_max(x, axis=-1, keepdims=True), index, num), axis=-1,
                              keepdims=True)
        return tf.cast(tf.equal(index, first), tf.float64)


TENSORFLOW = TensorFlowOps()


def code_images(model, values):
    """(start, freq) [N, H, W, C] float64 of uint8 images [N, H, W, C] under the integer model `model`, channels in
    coding order (TensorFlow; the whole images at once)."""
    ops = TENSORFLOW
    images = tf.cast(values, tf.float64)
    windows, _ = extract_neighbourhoods(pad_images(images, model.nb_size), model.nb_size)
    shape = tf.shape(images)
    outside = geometry.outside_indicators(tf.range(shape[1]), tf.range(shape[2]), shape[2], model.nb_size,
                                          tf.float64)
    u = model.centred_inputs(windows, tf.broadcast_to(outside, tf.concat([shape[:1], tf.shape(outside)], 0)), ops)
    h = u
    for layer in range(model.num_layers):
        step = lambda x, hl, cl, hu, cu, layer=layer: model.cell_step(layer, x, hl, cl, hu, cu, ops)
        h, _ = diagonal_scan(h, model.units, step)
    v = model.mcgsm_inputs(h, u, ops)
    weights, means = model.mixture(tf.reshape(v, [-1, v.shape[-1]]), tf.reshape(u, [-1, u.shape[-1]]), ops)
    known = tf.gather(tf.reshape(images, [-1, model.num_channels]), list(model.order), axis=-1)
    start, freq = model.intervals(weights, means, known, ops)
    out_shape = tf.concat([shape[:3], [model.num_channels]], 0)
    return tf.reshape(start, out_shape), tf.reshape(freq, out_shape)


def code_length_bits(model, values):
    """The exact code length under the integer model `model` of every pixel in bits, float64 [N, H, W]: sum over channels of log2(TOTAL / f)."""
    _, freq = code_images(model, values)
    return tf.reduce_sum(math.log2(TOTAL) - tf.math.log(freq) / math.log(2.0), axis=-1)
