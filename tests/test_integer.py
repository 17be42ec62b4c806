"""Tests of the integer model (`ride_tf.codec.integer`): exact arithmetic, deterministic derivation, tables that
are distributions, and sizes within 0.5% of the float model's."""
import numpy as np
import pytest
import tensorflow as tf

import ride_tf
from ride_tf import discrete, pretrained
from ride_tf import codec
from ride_tf.codec.derive import derive, integer_model, quantize_linear
from ride_tf.codec.graph import TENSORFLOW
from ride_tf.codec.integer import NUMPY, TOTAL
from test_discrete import colour_dead_leaves, small_ride


def test_quantized_linear_maps_are_close_and_every_sum_is_exact():
    """Worst-case accumulations stay below 2^52, and the outputs round the float map's to the output grid."""
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 3, (40, 7)) * np.logspace(-3, 2, 40)[:, None]
    bias = rng.normal(0, 1, 7)
    exponents = np.array([12] * 20 + [0] * 5 + [15] * 15)
    bounds = np.array([2 ** 12] * 20 + [1] * 5 + [2 ** 15] * 15)
    layer = quantize_linear(weights, bias, exponents, bounds, 10, 1 << 30)
    worst = (np.abs(layer.weights) * bounds[:, None]).sum(0) + np.abs(layer.bias)
    assert worst.max() < 2.0 ** 52
    x = np.stack([rng.integers(-b, b + 1, 200) for b in bounds], axis=1).astype(np.float64)
    y = layer(x, NUMPY)
    exact = (x * np.ldexp(1.0, -exponents)) @ weights + bias
    assert np.abs(y / 1024 - exact).max() < 2 / 1024          # one output step (floor) plus rounding
    np.testing.assert_array_equal(layer(tf.constant(x), TENSORFLOW).numpy(), y)


def test_narrow_rows_get_16_bit_weights_whose_worst_case_sums_fit_32_bits():
    """quantize_linear(narrow=...): every weight of a marked row fits 16 bits (|V| < 2^15) and each column's worst
    case over the marked rows, sum B |V|, stays below 2^31, while the unmarked rows keep float64's range; the map
    errs by at most its weights' rounding (half a unit of 2^-q_j per unit of input) plus one output step, and a
    marked row bounded above 2^15 is refused."""
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 1, (60, 9)) * np.logspace(-2, 2, 60)[:, None]
    bias = rng.normal(0, 1, 9)
    exponents = np.array([12] * 20 + [0] * 8 + [15] * 32)
    bounds = np.array([2 ** 12] * 20 + [1] * 8 + [2 ** 15] * 32)
    narrow = exponents == 15
    layer = quantize_linear(weights, bias, exponents, bounds, 10, 1 << 30, narrow=narrow)
    marked = np.abs(layer.weights[narrow])
    assert marked.max() < 2 ** 15
    assert (marked * bounds[narrow, None]).sum(0).max() < 2 ** 31
    assert np.abs(layer.weights[~narrow]).max() >= 2 ** 15          # the other rows are not narrowed
    assert ((np.abs(layer.weights) * bounds[:, None]).sum(0) + np.abs(layer.bias)).max() < 2.0 ** 52
    x = np.stack([rng.integers(-b, b + 1, 300) for b in bounds], axis=1).astype(np.float64)
    exact = (x * np.ldexp(1.0, -exponents)) @ weights + bias
    rounding = 0.5 * np.abs(x).sum(1, keepdims=True) * layer.scale / 1024 + np.abs(layer.scale) / 2048  # 2^-q_j
    assert (np.abs(layer(x, NUMPY) / 1024 - exact) <= rounding + 2 / 1024).all()
    with pytest.raises(ValueError, match="at most 2\\^15"):
        quantize_linear(weights, bias, exponents, np.where(narrow, 2 ** 16, bounds), 10, 1 << 30, narrow=narrow)


def test_derivation_1_is_the_earlier_derivation_and_2_narrows_only_the_states():
    """derive(model, 1) gives the integers of the earlier derivation (the state rows' weights beyond 16 bits);
    derive(model, 2) differs only where weights read states: the same configuration, and the expert constants
    (widths, colour regressions, logit factors) integer for integer."""
    model = small_ride(num_layers=1)
    first, second = derive(model, 1), derive(model, 2)
    assert second.fingerprint == derive(model).fingerprint != first.fingerprint
    assert first.config() == second.config()
    for key in ("inverse_widths", "width_shifts", "regressions", "logit_factor", "logit_offset", "input_mean"):
        np.testing.assert_array_equal(first.named_arrays()[key], second.named_arrays()[key], err_msg=key)
    inputs = first.num_inputs + first.num_offsets
    states = np.abs(second.layers[0].weights[inputs:inputs + 2 * second.units])
    assert states.max() < 2 ** 15 and (states * 2 ** 15).sum(0).max() < 2 ** 31
    assert np.abs(first.layers[0].weights[inputs:]).max() >= 2 ** 15
    with pytest.raises(ValueError, match="derivation must be one of"):
        derive(model, 3)


def test_the_derivation_is_deterministic_and_the_fingerprint_follows_the_weights():
    model = small_ride(num_layers=1)
    first, second = derive(model), derive(model)
    assert first.fingerprint == second.fingerprint
    assert all(np.array_equal(a, b) for a, b in zip(first.arrays(), second.arrays()))
    assert integer_model(model) is integer_model(model)
    model.mcgsm.priors.assign(model.mcgsm.priors.numpy() + 1e-3)
    assert integer_model(model).fingerprint != first.fingerprint


@pytest.mark.parametrize("channels, layers, cell", [(1, 1, "stable"), (1, 0, "stable"), (3, 1, "stable"),
                                                    (1, 2, "paper")])
def test_every_table_is_a_distribution_over_the_256_values(channels, layers, cell):
    """F(0) = 0, F(256) = TOTAL and every value has frequency >= 1, for random models and pixels, in both
    arithmetics (TensorFlow and NumPy give the same integers, and so do the coders' lean NumPy versions
    `cell_step_numpy` and `cumulative_numpy`)."""
    import keras

    from ride_tf import RIDE

    keras.utils.set_random_seed(1)
    model = RIDE(num_channels=channels, num_hiddens=5, num_layers=layers, num_components=3, num_scales=2,
                 num_features=4, cell=cell)
    model.adapt(colour_dead_leaves(4, 20) if channels == 3 else ride_tf.data.dead_leaves(4, size=20, seed=2))
    integer = derive(model)
    rng = np.random.default_rng(2)
    m = 50
    u = integer.centred_inputs(rng.integers(0, 256, (m, integer.num_inputs)).astype(np.float64),
                               (rng.random((m, integer.num_offsets)) < 0.2).astype(np.float64), NUMPY)
    h = u
    for layer in range(layers):
        states = [rng.integers(-2 ** 15, 2 ** 15, (m, integer.units)).astype(np.float64) for _ in range(4)]
        h_tf, c_tf = integer.cell_step(layer, tf.constant(h), *map(tf.constant, states), TENSORFLOW)
        h_lean, c_lean = integer.cell_step_numpy(layer, h, *states)
        h, c = integer.cell_step(layer, h, *states, NUMPY)
        np.testing.assert_array_equal(h_tf.numpy(), h)
        np.testing.assert_array_equal(c_tf.numpy(), c)
        np.testing.assert_array_equal(h_lean, h)
        np.testing.assert_array_equal(c_lean, c)
        assert np.abs(h).max() <= 2 ** 15 and np.abs(c).max() <= 2 ** 15 * (64 if cell == "paper" else 1)
    v = integer.mcgsm_inputs(h, u, NUMPY)
    weights, means = integer.mixture(v, u, NUMPY)
    weights_tf, means_tf = integer.mixture(tf.constant(v), tf.constant(u), TENSORFLOW)
    np.testing.assert_array_equal(weights_tf.numpy(), weights)
    np.testing.assert_array_equal(means_tf.numpy(), means)
    assert (weights.sum(axis=1) == 2 ** 20).all() and weights.min() >= 0
    previous = rng.integers(0, 256, (m, channels)).astype(np.float64)
    bins = np.repeat(np.arange(257, dtype=np.float64)[None], m, 0)
    for channel in range(channels):
        channel_weights, mean = integer.channel_mixture(weights, means, previous, channel, NUMPY)
        table = integer.cumulative(channel_weights, mean, channel, bins, NUMPY)
        assert (table[:, 0] == 0).all() and (table[:, -1] == TOTAL).all()
        assert (np.diff(table, axis=1) >= 1).all()
        table_tf = integer.cumulative(tf.constant(channel_weights), tf.constant(mean), channel, tf.constant(bins),
                                      TENSORFLOW)
        np.testing.assert_array_equal(table_tf.numpy(), table)
        np.testing.assert_array_equal(integer.cumulative_numpy(channel_weights, mean, channel,
                                                               bins.astype(np.int64)), table)


@pytest.mark.parametrize("name, photo, crop", [("gray", "camera", 96), ("gray", "coffee", 96),
                                               ("rgb", "coffee", 64)])
def test_the_integer_model_costs_at_most_half_a_percent_against_the_float_model(name, photo, crop):
    """The exact size under the integer model's tables is within 0.5% of the float model's (shipped models,
    held-out photos)."""
    model = pretrained(name)
    image = pretrained.load_photo(photo, 3 if name == "rgb" else 1, crop=False)
    top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
    image = image[top:top + crop, left:left + crop][None]
    integer_bits = codec.compressed_size_bits(model, image)[0]
    float_bits = discrete.float_code_length_bits(model, image)[0]
    assert abs(integer_bits / float_bits - 1) <= 0.005, (integer_bits, float_bits)
