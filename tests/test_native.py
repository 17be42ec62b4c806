"""Tests of the compiled coding path (`ride_tf.codec.native`, the C kernels of `kernels.c`): every kernel computes
the integer model's own NumPy integers, the native encoder's tables equal the reference encoder's, the native
decoder gives back every image, and bad arguments raise instead of touching memory."""
import copy

import numpy as np
import pytest

from ride_tf import RIDE, codec, data as image_data
from ride_tf.codec import coding, native
from ride_tf.codec.integer import NUMPY, TOTAL
from ride_tf.codec.rans import RansEncoder, RansError
from test_discrete import colour_dead_leaves, small_ride


def variant(kind):
    """Small models of every kind the integer model knows (cells, layers, architectures, colour orders)."""
    if kind == "gray, 1 layer":
        return small_ride(1, 1)
    if kind == "gray, 2 layers":
        return small_ride(1, 2, seed=1)
    if kind == "gray, MCGSM only":
        return small_ride(1, 0, seed=2)
    if kind == "colour, 1 layer":
        return small_ride(3, 1, seed=3)
    if kind == "colour, order B R G":
        model = small_ride(3, 1, seed=4)
        model.coding_order = (2, 0, 1)
        return model
    config = dict(num_channels=1, num_hiddens=5, num_layers=2, num_components=3, num_scales=2, num_features=4)
    if kind == "paper cell, extended, no skip inputs":
        config.update(cell="paper", extended=True, skip_inputs=False)
    model = RIDE(**config)
    model.adapt(image_data.dead_leaves(4, size=20, seed=5))
    rng = np.random.default_rng(6)
    for v in model.trainable_variables:
        v.assign(v.numpy() + 0.3 * rng.standard_normal(v.shape))
    return model


KINDS = ["gray, 1 layer", "gray, 2 layers", "gray, MCGSM only", "colour, 1 layer", "colour, order B R G",
         "paper cell, extended, no skip inputs"]


def images_for(channels):
    rng = np.random.default_rng(channels)
    if channels == 3:
        leaves = colour_dead_leaves(1, 21)[0, :, :17]
        return [leaves, rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), np.full((4, 13, 3), 200, np.uint8),
                np.zeros((1, 1, 3), np.uint8), rng.integers(0, 256, (9, 2, 3), dtype=np.uint8)]
    leaves = image_data.dead_leaves(1, size=(19, 23), seed=2)[0][..., None]
    return [leaves, rng.integers(0, 256, (11, 7, 1), dtype=np.uint8), np.full((5, 16, 1), 255, np.uint8),
            np.array([[[3]]], np.uint8), rng.integers(0, 256, (2, 30, 1), dtype=np.uint8),
            rng.integers(0, 256, (30, 2, 1), dtype=np.uint8)]


def test_the_kernels_are_built():
    """`make test` installs the package with its C kernels; without them the codec silently encodes about two and
    decodes three to five times more slowly (docs/codec.md), so the test suite insists on them."""
    assert native.AVAILABLE, native.IMPORT_ERROR


@pytest.mark.parametrize("kind", KINDS)
def test_native_encoder_tables_equal_the_reference_encoders_and_the_decoders(kind):
    """(start, freq) of every value of photo-like, noise, constant, 1 x 1 and narrow images: the native encoder
    (anti-diagonals of the whole image, C kernels) equals the reference encoder (bands of rows, NumPy and XLA)
    and the decoder's front-by-front pass, integer for integer."""
    model = variant(kind)
    coder = coding.coder_for(codec.integer_model(model))
    for image in images_for(model.num_channels):
        start, freq = coder.intervals(image, engine="native")
        ref_start, ref_freq = coder.intervals(image, engine="reference")
        np.testing.assert_array_equal(start, ref_start, err_msg=f"{kind} {image.shape}")
        np.testing.assert_array_equal(freq, ref_freq, err_msg=f"{kind} {image.shape}")
        front_start, front_freq = coding.front_intervals(coder, image)
        np.testing.assert_array_equal(start, front_start)
        np.testing.assert_array_equal(freq, front_freq)
        assert freq.min() >= 1 and (start + freq).max() <= TOTAL
    with pytest.raises(ValueError, match="engine must be one of"):
        coder.intervals(image, engine="fast")


@pytest.mark.parametrize("kind", KINDS)
def test_native_decoder_gives_back_every_image_as_the_numpy_decoder_does(kind):
    model = variant(kind)
    coder = coding.coder_for(codec.integer_model(model))
    for image in images_for(model.num_channels):
        data = coding.encode(coder, image)
        height, width = image.shape[:2]
        decoded = coding.decode_native(coder, data, height, width)
        np.testing.assert_array_equal(decoded, image, err_msg=f"{kind} {image.shape}")
        np.testing.assert_array_equal(coding.decode(coder, data, height, width), decoded)


@pytest.mark.parametrize("kind", ["gray, 2 layers", "colour, order B R G"])
def test_both_table_arithmetics_give_the_reference_tables_and_pixels(kind):
    """The kernels compute the cumulative tables in float64 (vectorised) when the model's bounds keep every term
    below 2^52, else in int64.  Every test model and every shipped one takes float64; a model whose means may
    reach 2^44 (the same model, its means' clip widened, so the same integers) takes int64.  Both give the
    reference encoder's (start, freq) and the NumPy decoder's pixels, integer for integer."""
    integer = codec.integer_model(variant(kind))
    wide = copy.copy(integer)
    wide.means = copy.copy(integer.means)
    wide.means.low, wide.means.high = -2.0 ** 44, 2.0 ** 44
    assert native.NativeModel(integer).table_arithmetic == "float64"
    assert native.NativeModel(wide).table_arithmetic == "int64"
    for name in ("gray", "rgb"):
        assert native.native_model(codec.as_integer_model(name)).table_arithmetic == "float64", name
    for model in (integer, wide):
        coder = coding.coder_for(model)
        for image in images_for(model.num_channels):
            start, freq = coder.intervals(image, engine="native")
            ref_start, ref_freq = coder.intervals(image, engine="reference")
            np.testing.assert_array_equal(start, ref_start)
            np.testing.assert_array_equal(freq, ref_freq)
            data = coding.encode(coder, image)
            height, width = image.shape[:2]
            decoded = coding.decode_native(coder, data, height, width)
            np.testing.assert_array_equal(decoded, image)
            np.testing.assert_array_equal(coding.decode(coder, data, height, width), decoded)


def test_the_cell_and_mixture_kernels_compute_the_integer_models_numpy_integers():
    """One line of 40 pixels with random integer inputs in their full ranges: h, c of every layer (both cells)
    and the mixture's weights and means equal `IntegerModel.cell_step_numpy` and `IntegerModel.mixture`."""
    rng = np.random.default_rng(0)
    for kind in ("gray, 2 layers", "paper cell, extended, no skip inputs", "colour, 1 layer"):
        model = variant(kind)
        integer = codec.integer_model(model)
        nm = native.native_model(integer)
        n, units = 40, integer.units
        height, width, slots = n, 3 * n + 1, integer.radius + 2
        line = (0, 3 * (n - 1), 3, n)          # pixel p at (p, 3 (n - 1) - 3 p): distinct rows
        for layer in range(integer.num_layers):
            bound = 2 ** 15 * (64 if integer.cell == "paper" else 1)
            x = rng.integers(-2 ** 12, 2 ** 12, (n, nm.layer_weights[layer].shape[0])).astype(np.float64)
            ring_h = rng.integers(-2 ** 15, 2 ** 15 + 1, (height + 1, slots, units)).astype(np.float64)
            ring_c = rng.integers(-bound, bound + 1, (height + 1, slots, units)).astype(np.float64)
            rows, cols = np.arange(n), 3 * (n - 1) - 3 * np.arange(n)
            left = (rows + 1, (cols - 1) % slots)
            up = (rows, cols % slots)
            c_left, c_up = ring_c[left].copy(), ring_c[up].copy()
            inputs = x.shape[1] - units * (4 if integer.extended else 2)
            if integer.extended:                    # the products of an extended cell read the memories too
                x[:, inputs + 2 * units:inputs + 3 * units], x[:, inputs + 3 * units:] = c_left, c_up
            a = x @ nm.layer_weights[layer]
            out = np.zeros((n, units))
            native.kernels.cell(nm.capsule, layer, a, a.shape[1], ring_h, ring_c, height, width, slots, line, out,
                                units, 0)
            h_ref, c_ref = integer.cell_step_numpy(layer, x[:, :inputs], x[:, inputs:inputs + units], c_left,
                                                   x[:, inputs + units:inputs + 2 * units], c_up)
            np.testing.assert_array_equal(out, h_ref, err_msg=kind)
            np.testing.assert_array_equal(ring_c[rows + 1, cols % slots], c_ref, err_msg=kind)
            np.testing.assert_array_equal(ring_h[rows + 1, cols % slots], h_ref, err_msg=kind)
        u = np.concatenate([rng.integers(-2 ** 12, 2 ** 12, (n, integer.num_inputs)),
                            rng.integers(0, 2, (n, integer.num_offsets))], 1).astype(np.float64)
        h = rng.integers(-2 ** 15, 2 ** 15 + 1, (n, units)).astype(np.float64)
        v = integer.mcgsm_inputs(h, u, NUMPY)
        weights, means = integer.mixture(v, u, NUMPY)
        z = v if integer.reads_inputs else np.concatenate([v, u[:, :integer.num_inputs]], 1)
        native_weights, native_means = nm.mixture(z)
        np.testing.assert_array_equal(native_weights, weights, err_msg=kind)
        np.testing.assert_array_equal(native_means, means, err_msg=kind)
        assert (native_weights.sum(axis=1) == 2 ** 20).all()


def product_inputs(integer, product, n, rng):
    """Inputs [n, D] of product `product` (the LSTM layers, then the mixture) at their bounds: states h of
    exactly -2^15 and 2^15 (tanh's saturation) among random ones, inputs c of the values 0 and 255 (the extreme
    centred values) and outside the image (0), indicators 0 and 1, memories within the cell's bound."""
    units, inputs, offsets = integer.units, integer.num_inputs, integer.num_offsets
    memory = 2 ** 15 * (64 if integer.cell == "paper" else 1)

    def states(count):
        return rng.choice([-2 ** 15, 2 ** 15, 0, rng.integers(-2 ** 15, 2 ** 15 + 1)], (n, count),
                          p=[0.2, 0.3, 0.1, 0.4]).astype(np.float64)

    def centred():
        values = rng.choice([0, 255, 128], (n, inputs)).astype(np.float64)
        c = (2 * values + 1) * 8 - integer.input_mean
        return np.where(rng.random((n, inputs)) < 0.1, 0.0, c)

    def indicators():
        return (rng.random((n, offsets)) < 0.3).astype(np.float64)

    extended = [rng.integers(-memory, memory + 1, (n, 2 * units)).astype(np.float64)] if integer.extended else []
    if product < integer.num_layers:
        first = [centred(), indicators()] if product == 0 else [states(units)]
        return np.concatenate(first + [states(2 * units)] + extended, 1)
    parts = [states(units)] if integer.num_layers else []
    parts += [centred(), indicators()] if integer.reads_inputs else [centred()]
    return np.concatenate(parts, 1)


@pytest.mark.parametrize("derivation", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_the_products_16_bit_passes_give_the_float64_products_at_the_inputs_bounds(kind, derivation):
    """kernels.products, the products that encode_image and decode_image compute (states in 16-bit passes, the
    inputs c in two 16-bit halves, the indicators row by row, the rest in float64), equals x @ W in float64 integer
    for integer, for inputs at their bounds, in every instruction set's kernels; derivation 2 gives every layer
    and the mixture a 16-bit pass over its states."""
    integer = codec.integer_model(variant(kind), derivation)
    nm = native.NativeModel(integer)
    rng = np.random.default_rng(derivation)
    units, first = integer.units, integer.num_inputs + integer.num_offsets
    state_rows = ([(first, first + 2 * units)] + [(0, 3 * units)] * (integer.num_layers - 1) + [(0, units)]
                  if integer.num_layers else [])
    for product, weights in enumerate(nm.layer_weights + [nm.mixture_weights]):
        if derivation == 2 and product < len(state_rows):
            assert (product, *state_rows[product], 1.0) in nm.passes, (kind, nm.passes)
        x = product_inputs(integer, product, 45, rng)          # 45: five blocks of 8 rows and 5 single rows
        out = np.empty((x.shape[0], weights.shape[1]))
        native.kernels.products(nm.capsule, product, x, x.shape[0], out)
        np.testing.assert_array_equal(out, x @ weights, err_msg=f"{kind}: product {product}")
    for product, r0, _, _ in nm.passes:
        for bad in (2 ** 15 + 1, 0.5):
            x = product_inputs(integer, product, 3, rng)
            x[1, r0] = bad
            with pytest.raises(ValueError, match="within the bound of its 16-bit pass"):
                native.kernels.products(nm.capsule, product, x, 3, np.empty((3, 8 * x.shape[1])))


def test_a_16_bit_pass_needs_every_column_to_qualify():
    """Weights whose first column fits one 16-bit pass but not two halves (small negative weights: large low
    halves), and whose second column fits neither: the state rows get no pass, and the products stay float64's."""
    integer = copy.deepcopy(codec.integer_model(variant("gray, 1 layer")))
    first, units = integer.num_inputs + integer.num_offsets, integer.units
    weights = integer.layers[0].weights
    weights[first:first + 2 * units, 0] = -1.0                 # sum |V| 2^15 < 2^31; low halves 8191 each
    weights[first:first + 2 * units, 1] = 20000.0              # too wide for one pass and for two
    nm = native.NativeModel(integer)
    assert not [p for p in nm.passes if p[0] == 0 and p[1] == first], nm.passes
    x = product_inputs(integer, 0, 24, np.random.default_rng(3))
    out = np.empty((24, nm.layer_weights[0].shape[1]))
    native.kernels.products(nm.capsule, 0, x, 24, out)
    np.testing.assert_array_equal(out, x @ nm.layer_weights[0])


def test_the_rans_kernel_writes_the_reference_encoders_bytes_and_refuses_what_it_refuses():
    rng = np.random.default_rng(2)
    lanes, steps = 5, 300
    bounds, lane_list = [0], []
    for _ in range(steps):
        k = int(rng.integers(1, lanes + 1))
        lane_list.append(rng.permutation(lanes)[:k])
        bounds.append(bounds[-1] + k)
    lane = np.concatenate(lane_list)
    freq = rng.integers(1, 5000, len(lane))
    freq[::7] = 1                                            # rare symbols: words are emitted
    start = rng.integers(0, TOTAL - freq + 1)
    reference = RansEncoder(lanes, TOTAL)
    reference.extend(lane, start, freq, bounds)
    data = native.encode_steps(lane, start, freq, bounds, lanes)
    assert data == reference.finish() and len(data) > 8 * lanes + 4 * 10
    step = next(k for k in range(steps) if bounds[k + 1] - bounds[k] >= 2)
    bad_lanes = lane.copy()
    bad_lanes[bounds[step] + 1] = bad_lanes[bounds[step]]   # two symbols of one step on one lane
    with pytest.raises(ValueError, match="distinct lanes"):
        native.encode_steps(bad_lanes, start, freq, bounds, lanes)
    with pytest.raises(ValueError, match="distinct lanes"):
        native.encode_steps(np.full(len(lane), lanes), start, freq, bounds, lanes)
    zero = freq.copy()
    zero[3] = 0
    with pytest.raises(ValueError, match="freq >= 1"):
        native.encode_steps(lane, start, zero, bounds, lanes)
    with pytest.raises(ValueError, match="boundaries"):
        native.encode_steps(lane, start, freq, bounds[:-1], lanes)


def test_the_fronts_kernel_writes_the_reference_encoders_bytes_of_the_coding_order():
    """`encode_fronts` walks the coding order itself; its stream equals the reference encoder's on the order that
    `coding.steps` builds, for images narrower than a front, rounds that wrap around the lanes, 1 and 3 channels."""
    rng = np.random.default_rng(3)
    cases = [(1, 1, 1, 5, 1), (3, 2, 1, 3, 1), (7, 3, 3, 5, 2), (9, 11, 3, 5, 2), (16, 17, 1, 7, 5),
             (13, 40, 3, 5, 7), (40, 33, 1, 3, 32)]
    for height, width, channels, nb_size, lanes in cases:
        freq = rng.integers(1, 5000, (height, width, channels))
        freq.reshape(-1)[::5] = 1                            # rare symbols: words are emitted
        start = rng.integers(0, TOTAL - freq + 1)
        order, boundaries = coding.steps(height, width, channels, nb_size, lanes)
        reference = RansEncoder(lanes, TOTAL)
        reference.extend((order // channels // width) % lanes, start.reshape(-1)[order], freq.reshape(-1)[order],
                         boundaries)
        expected = reference.finish()
        assert native.encode_fronts(start, freq, nb_size, lanes) == expected, (height, width, channels, lanes)
        assert len(expected) >= 8 * lanes + 4 * (height * width * channels // 5) // 2
    zero = np.ones((4, 4, 1), np.int64)
    zero[1, 2, 0] = 0
    with pytest.raises(ValueError, match="freq >= 1"):
        native.encode_fronts(np.zeros_like(zero), zero, 5, 2)
    with pytest.raises(ValueError, match="one shape"):
        native.encode_fronts(np.zeros((4, 4, 1), np.int64), np.ones((4, 4, 3), np.int64), 5, 2)


def test_truncated_and_corrupted_streams_raise_or_fail_the_checks():
    """A stream cut short raises RansError (never reads past its end); a stream with a flipped word either raises
    or decodes to another image (the container's checksum then refuses it, `test_codec.py`)."""
    model = variant("gray, 1 layer")
    coder = coding.coder_for(codec.integer_model(model))
    image = images_for(1)[0]
    data = coding.encode(coder, image)
    height, width = image.shape[:2]
    with pytest.raises(RansError):
        coding.decode_native(coder, data[:-4], height, width)
    with pytest.raises(RansError):
        coding.decode_native(coder, data[:-3], height, width)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    try:
        decoded = coding.decode_native(coder, bytes(flipped), height, width)
    except RansError:
        return
    assert not np.array_equal(decoded, image)


def test_kernel_arguments_are_checked_before_any_memory_is_touched():
    """Wrong dtypes, short buffers and lines of pixels that leave the image raise TypeError / ValueError."""
    model = variant("gray, 1 layer")
    nm = native.native_model(codec.integer_model(model))
    image = np.zeros((4, 5, 1), np.uint8)
    out = np.zeros((4, nm.width_u))
    native.kernels.inputs(nm.capsule, image, 4, 5, (0, 4, 3, 2), False, out, nm.width_u, 0)
    with pytest.raises(ValueError, match="leaves the image"):
        native.kernels.inputs(nm.capsule, image, 4, 5, (0, 4, 1, 6), False, out, nm.width_u, 0)
    with pytest.raises(ValueError, match="outside its buffer"):
        native.kernels.inputs(nm.capsule, image, 4, 5, (0, 4, 1, 4), False, out[:2], nm.width_u, 0)
    with pytest.raises(TypeError, match="dtype"):
        native.kernels.inputs(nm.capsule, image.astype(np.int64), 4, 5, (0, 4, 3, 2), False, out, nm.width_u, 0)
    with pytest.raises(ValueError, match="holds"):
        native.kernels.inputs(nm.capsule, image[:1], 4, 5, (0, 4, 3, 2), False, out, nm.width_u, 0)
    with pytest.raises(TypeError):
        native.kernels.cell(nm.capsule, 0, np.zeros((2, 5 * nm.units), np.float32), 5 * nm.units,
                            np.zeros((5, 4, nm.units)), np.zeros((5, 4, nm.units)), 4, 5, 4, (0, 4, 3, 2), None, 0, 0)
    with pytest.raises(ValueError, match="layer"):
        native.kernels.cell(nm.capsule, 3, np.zeros((2, 5 * nm.units)), 5 * nm.units, np.zeros((5, 4, nm.units)),
                            np.zeros((5, 4, nm.units)), 4, 5, 4, (0, 4, 3, 2), None, 0, 0)
    with pytest.raises(ValueError, match="holds"):
        native.kernels.cell(nm.capsule, 0, np.zeros((2, 5 * nm.units)), 5 * nm.units, np.zeros((2, 4, nm.units)),
                            np.zeros((5, 4, nm.units)), 4, 5, 4, (0, 4, 3, 2), None, 0, 0)


def test_models_outside_the_kernels_range_are_coded_on_the_reference_path():
    """An integer model whose width shifts leave [0, 62], or with more than 1,024 experts, is not `usable` (so the
    codec's automatic choices take the reference path): NativeModel and the C constructor refuse it with a message,
    as they refuse missing and empty constants."""
    model = variant("gray, 1 layer")
    integer = codec.integer_model(model)
    assert native.usable(integer)
    odd = copy.copy(integer)
    odd.width_shifts = integer.width_shifts - 40
    odd.width_shifts_t = np.ascontiguousarray(odd.width_shifts.T)
    assert not native.usable(odd)
    with pytest.raises(ValueError, match="width shifts"):
        native.NativeModel(odd)
    many = copy.copy(integer)              # float64 sums of the weights stay exact up to 1,024 experts
    many.num_experts = native.MAX_EXPERTS + 1
    assert native.MAX_EXPERTS == 1024 and not native.usable(many)
    dim_v = integer.responses.weights.shape[0]
    constants = native.model_constants(odd, integer.gate.weights[dim_v:])
    with pytest.raises(ValueError, match="width shift"):
        native.kernels.model(constants)
    good = native.model_constants(integer, integer.gate.weights[dim_v:])
    native.kernels.model(good)
    with pytest.raises(ValueError, match="empty"):
        native.kernels.model(dict(good, tanh=good["tanh"][:0]))
    with pytest.raises(TypeError, match="dtype"):
        native.kernels.model(dict(good, phi=good["phi"].astype(np.float64)))
    del good["phi"]
    with pytest.raises(KeyError, match="phi"):
        native.kernels.model(good)
