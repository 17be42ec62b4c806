"""Tests of ride_tf.nn.spatial_lstm (SpatialLSTMCell, SpatialLSTM) (eq. 6 of Theis & Bethge 2015)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ride_tf.nn.spatial_lstm import SpatialLSTM, SpatialLSTMCell, diagonal_scan


# ----------------------------------------------------------------- reference
def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def naive_slstm(x, kernel, bias, units, extended, cell="stable"):
    """Eq. 6 (cell="paper") or the stable cell in raster order, one pixel at a time, in float64 NumPy.

    Returns h, c of shape [B, H, W, units]."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    bias = np.asarray(bias, np.float64)
    b, height, width, _ = x.shape
    u = units
    h = np.zeros((b, height, width, u))
    c = np.zeros((b, height, width, u))
    zero = np.zeros((b, u))
    for i in range(height):
        for j in range(width):
            h_left, c_left = (h[:, i, j - 1], c[:, i, j - 1]) if j > 0 else (zero, zero)
            h_up, c_up = (h[:, i - 1, j], c[:, i - 1, j]) if i > 0 else (zero, zero)
            parts = [x[:, i, j], h_left, h_up] + ([c_left, c_up] if extended else [])
            a = np.concatenate(parts, axis=-1) @ kernel + bias
            g = np.tanh(a[:, :u])
            o = _sigmoid(a[:, u:2 * u])
            if cell == "paper":
                ig = _sigmoid(a[:, 2 * u:3 * u])
                f_left = _sigmoid(a[:, 3 * u:4 * u])
                f_up = _sigmoid(a[:, 4 * u:])
            else:   # softmax over (a_i, a_l, a_u, 0)
                e = np.exp(a[:, 2 * u:])
                norm = 1.0 + e[:, :u] + e[:, u:2 * u] + e[:, 2 * u:]
                ig, f_left, f_up = e[:, :u] / norm, e[:, u:2 * u] / norm, e[:, 2 * u:] / norm
            c[:, i, j] = g * ig + c_left * f_left + c_up * f_up
            h[:, i, j] = np.tanh(c[:, i, j] * o)
    return h, c


def make_layer(units, depth, extended=False, seed=0, dtype=None, **kwargs):
    """A built layer with large random weights (non-trivial gates)."""
    kw = dict(kwargs)
    if dtype is not None:
        kw["dtype"] = dtype
    layer = SpatialLSTM(units, extended=extended, **kw)
    layer.build((None, None, None, depth))
    rng = np.random.default_rng(seed)
    layer.kernel.assign(rng.normal(0.0, 0.8, layer.kernel.shape))
    layer.bias.assign(rng.normal(0.0, 1.0, layer.bias.shape))
    return layer


def rand(shape, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


# --------------------------------------------------------------------- tests
def test_variables_and_contract():
    layer = make_layer(5, 3)
    assert tuple(layer.kernel.shape) == (3 + 2 * 5, 25)
    assert tuple(layer.bias.shape) == (25,)
    assert layer.kernel.path.endswith("kernel") and layer.bias.path.endswith("bias")
    ext = make_layer(5, 3, extended=True)
    assert tuple(ext.kernel.shape) == (3 + 4 * 5, 25)
    assert layer.supports_jit is False
    from keras.src.trainers.trainer import model_supports_jit

    model = keras.Sequential([keras.Input((None, None, 3)), layer])
    assert model_supports_jit(model) is False


@pytest.mark.parametrize("cell", ["stable", "paper"])
@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("size", [(5, 7), (7, 4)])
def test_matches_naive_raster_loop(extended, size, cell):
    height, width = size
    layer = make_layer(4, 3, extended=extended, seed=height, cell=cell)
    x = rand((3, height, width, 3), seed=width)
    h = layer(x).numpy()
    h_ref, c_ref = naive_slstm(x, layer.kernel.numpy(), layer.bias.numpy(), 4, extended, cell)
    assert h.shape == (3, height, width, 4)
    np.testing.assert_allclose(h, h_ref, atol=1e-5, rtol=0)
    # The gates are non-trivial: states are far from 0 and from saturation.
    assert (0.2 if cell == "paper" else 0.05) < np.abs(h_ref).mean() < 0.9
    assert np.abs(c_ref).max() > (1.0 if cell == "paper" else 0.5)
    # The memory states too, through run_region.
    h2, c2 = layer.run_region(x)
    np.testing.assert_allclose(h2.numpy(), h_ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(c2.numpy(), c_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loops", [1, 2, 3, 5])
def test_parallel_loops_do_not_change_results(loops):
    layer = make_layer(4, 2, parallel_loops=loops, seed=3)
    x = rand((4, 5, 6, 2), seed=4)
    h_ref, _ = naive_slstm(x, layer.kernel.numpy(), layer.bias.numpy(), 4, False)
    np.testing.assert_allclose(layer(x).numpy(), h_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(1, 6), (6, 1), (1, 1)])
@pytest.mark.parametrize("extended", [False, True])
def test_single_row_or_column(size, extended):
    layer = make_layer(3, 2, extended=extended, seed=5)
    x = rand((2,) + size + (2,), seed=6)
    h_ref, _ = naive_slstm(x, layer.kernel.numpy(), layer.bias.numpy(), 3, extended)
    np.testing.assert_allclose(layer(x).numpy(), h_ref, atol=1e-5, rtol=0)


def test_one_trace_serves_all_image_sizes():
    layer = make_layer(4, 2, seed=7)
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32)])
    for shape in [(2, 5, 7, 2), (3, 8, 3, 2), (1, 1, 4, 2)]:
        x = rand(shape, seed=sum(shape))
        h_ref, _ = naive_slstm(x, layer.kernel.numpy(), layer.bias.numpy(), 4, False)
        np.testing.assert_allclose(fn(x).numpy(), h_ref, atol=1e-5, rtol=0)
    assert fn.experimental_get_tracing_count() == 1
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, None, None, 4]


# ------------------------------------------------ the driver against the cell's step
def step_loop(layer, x, boundary=None):
    """An independent reference: a Python loop over the pixels in raster order, one call of the cell's `step`
    per pixel (the batch as its M cells), states outside the region from `boundary` (h_top, c_top [B, W, U],
    h_left, c_left [B, H, U]) or zeros.  Returns h, c [B, H, W, U] (differentiable: tf ops only)."""
    batch, height, width, _ = x.shape
    zero = tf.zeros((batch, layer.units), x.dtype)
    h_top, c_top, h_left, c_left = boundary if boundary is not None else (None,) * 4
    h, c = {}, {}
    for i in range(height):
        for j in range(width):
            if j > 0:
                hl, cl = h[i, j - 1], c[i, j - 1]
            else:
                hl, cl = (zero, zero) if h_left is None else (h_left[:, i], c_left[:, i])
            if i > 0:
                hu, cu = h[i - 1, j], c[i - 1, j]
            else:
                hu, cu = (zero, zero) if h_top is None else (h_top[:, j], c_top[:, j])
            h[i, j], c[i, j] = layer.cell.step(x[:, i, j], hl, cl, hu, cu)
    stack = lambda s: tf.stack([tf.stack([s[i, j] for j in range(width)], 1) for i in range(height)], 1)
    return stack(h), stack(c)


@pytest.mark.parametrize("cell", ["stable", "paper"])
@pytest.mark.parametrize("extended", [False, True])
def test_layer_equals_a_python_loop_over_the_cells_step(cell, extended):
    layer = make_layer(3, 2, extended=extended, seed=50, cell=cell, dtype="float64")
    x = tf.constant(rand((2, 4, 5, 2), seed=51, dtype=np.float64))
    h_ref, c_ref = step_loop(layer, x)
    np.testing.assert_allclose(layer(x).numpy(), h_ref.numpy(), rtol=0, atol=1e-13)
    h, c = layer.run_region(x)
    np.testing.assert_allclose(h.numpy(), h_ref.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(c.numpy(), c_ref.numpy(), rtol=0, atol=1e-13)
    boundary = [tf.constant(rand((2, n, 3), seed=52 + k, dtype=np.float64) * 0.5) for k, n in enumerate((5, 5, 4, 4))]
    h_ref, c_ref = step_loop(layer, x, boundary)
    h, c = layer.run_region(x, *boundary)
    np.testing.assert_allclose(h.numpy(), h_ref.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(c.numpy(), c_ref.numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("cell", ["stable", "paper"])
@pytest.mark.parametrize("extended", [False, True])
def test_hand_written_gradient_equals_autodiff_of_the_step(cell, extended):
    """The layer's backward pass (`backward_step` over the diagonals in reverse) against TensorFlow's automatic
    differentiation of `step_loop`: the gradients of the kernel, the bias, the inputs and the four boundary
    states agree to 1e-10 of their largest entry (float64).  With the tape in the traced function (as in
    Keras' fit: the forward loop keeps the cell's derivatives), for both cells, extended or not; for one of
    them also eagerly and with an eager tape around the traced function (the backward pass then runs the
    forward loop again), and for `call` (no boundary, no memory output)."""
    layer = make_layer(3, 2, extended=extended, seed=60, cell=cell, dtype="float64")
    x = tf.constant(rand((2, 4, 5, 2), seed=61, dtype=np.float64))
    boundary = [tf.constant(rand((2, n, 3), seed=62 + k, dtype=np.float64) * 0.5) for k, n in enumerate((5, 5, 4, 4))]
    r_h, r_c = (tf.constant(rand((2, 4, 5, 3), seed=seed, dtype=np.float64)) for seed in (66, 67))
    names = ["kernel", "bias", "inputs", "h_top", "c_top", "h_left", "c_left"]

    def gradients(run, n=7):
        with tf.GradientTape() as tape:
            tape.watch([x] + boundary)
            loss = run()
        return tape.gradient(loss, ([layer.kernel, layer.bias, x] + boundary)[:n])

    def check(got, want):
        for g, w, name in zip(got, want, names):
            assert np.abs(w).max() > 1e-3, name
            np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=1e-10 * np.abs(w).max(), err_msg=name)

    region_loss = lambda h, c: tf.reduce_sum(h * r_h) + tf.reduce_sum(c * r_c)
    region = lambda: region_loss(*layer.run_region(x, *boundary))
    reference = [g.numpy() for g in gradients(lambda: region_loss(*step_loop(layer, x, boundary)))]
    check(tf.function(lambda: gradients(region))(), reference)
    if cell == "stable" and not extended:
        check(gradients(region), reference)
        check(gradients(tf.function(region)), reference)
        image = lambda: tf.reduce_sum(layer(x) * r_h)
        image_reference = gradients(lambda: tf.reduce_sum(step_loop(layer, x)[0] * r_h), 3)
        check(tf.function(lambda: gradients(image, 3))(), image_reference)


@pytest.mark.parametrize("cell", ["stable", "paper"])
@pytest.mark.parametrize("extended", [False, True])
def test_backward_step_is_the_vector_jacobian_product_of_step(cell, extended):
    layer = make_layer(3, 2, extended=extended, seed=70, cell=cell, dtype="float64")
    args = [tf.constant(rand((6, n), seed=71 + k, dtype=np.float64)) for k, n in enumerate((2, 3, 3, 3, 3))]
    dh, dc = (tf.constant(rand((6, 3), seed=seed, dtype=np.float64)) for seed in (77, 78))
    with tf.GradientTape() as tape:
        tape.watch(args)
        h, c = layer.cell.step(*args)
        loss = tf.reduce_sum(h * dh) + tf.reduce_sum(c * dc)
    want = tape.gradient(loss, [layer.kernel, layer.bias] + args)
    kernel = tf.convert_to_tensor(layer.kernel)
    h2, c2, derivatives = layer.cell.step(*args, derivatives=True)
    np.testing.assert_array_equal(h2.numpy(), h.numpy())
    np.testing.assert_array_equal(c2.numpy(), c.numpy())
    da, _, (dh_left, dh_up, dc_left, dc_up) = layer.cell.backward_step(derivatives[1:], dh, dc,
                                                                        layer.cell.backward_weights(kernel))
    da = tf.concat(da, axis=-1)
    got = [tf.matmul(derivatives[0], da, transpose_a=True), tf.reduce_sum(da, 0),
           tf.matmul(da, kernel[:2], transpose_b=True),
           dh_left, dc_left, dh_up, dc_up]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=0, atol=1e-13)


def test_float64_policy():
    layer = make_layer(3, 2, dtype="float64", seed=8)
    x = rand((2, 4, 3, 2), dtype=np.float64)
    h = layer(x)
    assert h.dtype == tf.float64 and layer.kernel.dtype == "float64"
    h_ref, _ = naive_slstm(x, layer.kernel.numpy(), layer.bias.numpy(), 3, False)
    np.testing.assert_allclose(h.numpy(), h_ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cell", ["stable", "paper"])
@pytest.mark.parametrize("extended", [False, True])
def test_gradients_match_finite_differences(extended, cell):
    units, depth = 3, 2
    layer = make_layer(units, depth, extended=extended, dtype="float64", seed=9, cell=cell)
    x0 = tf.constant(rand((2, 3, 4, depth), seed=10, dtype=np.float64))
    r = tf.constant(rand((2, 3, 4, units), seed=11, dtype=np.float64))
    k0, b0 = layer.kernel.numpy(), layer.bias.numpy()

    @tf.function(input_signature=[tf.TensorSpec(x0.shape, tf.float64),
                                  tf.TensorSpec(k0.shape, tf.float64),
                                  tf.TensorSpec(b0.shape, tf.float64)])
    def loss_fn(x, k, b):
        layer.kernel.assign(k)
        layer.bias.assign(b)
        return tf.reduce_sum(layer(x) * r)

    with tf.GradientTape() as tape:
        tape.watch(x0)
        loss = tf.reduce_sum(layer(x0) * r)
    gx, gk, gb = [t.numpy() for t in tape.gradient(loss, [x0, layer.kernel, layer.bias])]

    eps = 1e-6
    args = [x0.numpy(), k0, b0]
    grads = [gx, gk, gb]
    rng = np.random.default_rng(12)
    for which in range(3):
        # Every entry of x and bias; 40 random entries of the kernel.
        flat = np.arange(args[which].size)
        if which == 1:
            flat = rng.choice(flat, 40, replace=False)
        numeric = []
        for idx in flat:
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[which].flat[idx] += eps
            minus[which].flat[idx] -= eps
            numeric.append((loss_fn(*plus).numpy() - loss_fn(*minus).numpy()) / (2 * eps))
        analytic = grads[which].ravel()[flat]
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
        assert np.abs(analytic).max() > 1e-2


def test_causality():
    height, width, depth = 5, 6, 2
    layer = make_layer(3, depth, seed=13)
    x = tf.constant(rand((2, height, width, depth), seed=14))
    for k, l in [(2, 3), (0, 0), (4, 5), (3, 0)]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            h = layer(x)
            out = tf.reduce_sum(h[1, k, l])
        g = np.abs(tape.gradient(out, x).numpy()).sum(-1)  # [B, H, W]
        assert np.all(g[0] == 0.0)  # other batch elements
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        future = (rows > k) | (cols > l)
        assert np.all(g[1][future] == 0.0)
        assert g[1, k, l] > 0.0
        assert np.all(g[1][~future] > 0.0)  # every (i <= k, j <= l) influences h_kl


def test_step_agrees_with_layer():
    for extended in (False, True):
        layer = make_layer(4, 3, extended=extended, seed=15)
        x = rand((2, 5, 6, 3), seed=16)
        h, c = [t.numpy() for t in layer.run_region(x)]
        zero = np.zeros((2, 4), np.float32)
        for i, j in [(2, 3), (0, 0), (0, 4), (3, 0), (4, 5)]:
            h_left, c_left = (h[:, i, j - 1], c[:, i, j - 1]) if j > 0 else (zero, zero)
            h_up, c_up = (h[:, i - 1, j], c[:, i - 1, j]) if i > 0 else (zero, zero)
            hs, cs = layer.step(tf.constant(x[:, i, j]), h_left, c_left, h_up, c_up)
            np.testing.assert_allclose(hs.numpy(), h[:, i, j], atol=1e-5, rtol=0)
            np.testing.assert_allclose(cs.numpy(), c[:, i, j], atol=1e-5, rtol=1e-5)
            # Pre-split weights give the same numbers.
            hw, _ = layer.step(tf.constant(x[:, i, j]), h_left, c_left, h_up, c_up,
                               weights=layer.gate_weights())
            np.testing.assert_allclose(hw.numpy(), hs.numpy(), atol=1e-6, rtol=0)


def test_run_region_with_boundary_states():
    layer = make_layer(3, 2, extended=True, seed=17)
    x = rand((2, 6, 7, 2), seed=18)
    h, c = [t.numpy() for t in layer.run_region(x)]
    # Bottom-right block given the row above it and the column left of it.
    hb, cb = layer.run_region(x[:, 2:, 3:], h_top=h[:, 1, 3:], c_top=c[:, 1, 3:],
                              h_left=h[:, 2:, 2], c_left=c[:, 2:, 2])
    np.testing.assert_allclose(hb.numpy(), h[:, 2:, 3:], atol=1e-5, rtol=0)
    np.testing.assert_allclose(cb.numpy(), c[:, 2:, 3:], atol=1e-5, rtol=1e-5)
    # Top block boundary only (left column of the image has zero states).
    hb, _ = layer.run_region(x[:, 4:], h_top=h[:, 3], c_top=c[:, 3])
    np.testing.assert_allclose(hb.numpy(), h[:, 4:], atol=1e-5, rtol=0)
    # Single pixel region: equals step.
    hp, _ = layer.run_region(x[:, 3:4, 5:6], h_top=h[:, 2, 5:6], c_top=c[:, 2, 5:6],
                             h_left=h[:, 3:4, 4], c_left=c[:, 3:4, 4])
    np.testing.assert_allclose(hp.numpy(), h[:, 3:4, 5:6], atol=1e-5, rtol=0)


def test_config_round_trip():
    layer = make_layer(6, 3, extended=True, seed=19, kernel_initializer="orthogonal")
    config = layer.get_config()
    assert config["units"] == 6 and config["extended"] is True
    assert "kernel_initializer" in config and "bias_initializer" in config
    clone = SpatialLSTM.from_config(config)
    assert clone.units == 6 and clone.extended is True
    assert isinstance(clone.kernel_initializer, keras.initializers.Orthogonal)
    clone.build((None, None, None, 3))
    clone.set_weights(layer.get_weights())
    x = rand((2, 4, 5, 3), seed=20)
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())


def test_model_save_and_load(tmp_path):
    inputs = keras.Input((None, None, 3))
    hidden = SpatialLSTM(5, extended=True, name="slstm")(inputs)
    outputs = keras.layers.Dense(2)(hidden)
    model = keras.Model(inputs, outputs)
    model.get_layer("slstm").kernel.assign(rand(model.get_layer("slstm").kernel.shape, seed=21))
    x = rand((2, 6, 4, 3), seed=22)
    y = model(x).numpy()
    path = str(tmp_path / "x.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("slstm"), SpatialLSTM)
    np.testing.assert_array_equal(loaded(x).numpy(), y)
    # Sequential too, other image size after reload.
    seq = keras.Sequential([keras.Input((None, None, 3)), SpatialLSTM(4)])
    x2 = rand((1, 3, 8, 3), seed=23)
    y2 = seq(x2).numpy()
    seq.save(str(tmp_path / "s.keras"))
    np.testing.assert_array_equal(keras.models.load_model(str(tmp_path / "s.keras"))(x2).numpy(), y2)


def test_fit_one_step():
    """Trains inside model.fit (graph mode, jit_compile='auto')."""
    model = keras.Sequential([keras.Input((None, None, 2)), SpatialLSTM(3), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = rand((4, 5, 5, 2), seed=24)
    y = rand((4, 5, 5, 1), seed=25)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before
    assert model.jit_compile is False


# ------------------------------------------------------------------ stability
def adversarial_layer(cell, units=3, depth=2):
    """Forget-gate biases of +5 and a large kernel: f_left + f_up ~ 2 for the paper's cell."""
    layer = SpatialLSTM(units, cell=cell)
    layer.build((None, None, None, depth))
    rng = np.random.default_rng(30)
    layer.kernel.assign(rng.normal(0.0, 3.0, layer.kernel.shape))
    bias = rng.normal(0.0, 1.0, layer.bias.shape)
    bias[3 * units:] = 5.0
    layer.bias.assign(bias)
    return layer


def test_stable_cell_memory_is_bounded_on_a_1024_image_whatever_the_weights():
    """|c| <= 1 (the docstring's bound) on 1024 x 1024 pixels with adversarial weights; eq. 6 overflows."""
    x = rand((1, 1024, 1024, 2), seed=31) * 3.0
    memory = lambda layer: tf.function(lambda x: layer.run_region(x)[1])(x).numpy()   # (traced: 2047 diagonals)
    c = memory(adversarial_layer("stable"))
    assert np.isfinite(c).all()
    assert np.abs(c).max() <= 1.0
    c_paper = memory(adversarial_layer("paper"))
    # The same weights in the paper's cell: the memory runs away and overflows float32.
    assert (~np.isfinite(c_paper)).mean() > 0.5
    assert np.nanmax(np.abs(c_paper[np.isfinite(c_paper)])) > 1e30


def test_cell_argument_is_checked_serialized_and_legacy_configs_load_as_eq6():
    layer = SpatialLSTM(4, cell="paper")
    assert layer.get_config()["cell"] == "paper"
    assert SpatialLSTM.from_config(SpatialLSTM(4).get_config()).cell_type == "stable"
    legacy = SpatialLSTM(4).get_config()
    del legacy["cell"]                     # saved before the argument existed: eq. 6
    assert SpatialLSTM.from_config(legacy).cell_type == "paper"
    bad = [(dict(cell="convex"), "cell"), (dict(units=0), "units"), (dict(units=2.5), "units"),
           (dict(extended="False"), "extended"), (dict(forget_bias="-1"), "forget_bias"),
           (dict(forget_bias=float("nan")), "forget_bias"), (dict(kernel_initializer="nope"), "kernel_initializer"),
           (dict(bias_initializer=3), "bias_initializer"), (dict(kernel_initializer=None), "kernel_initializer")]
    loops = [(dict(parallel_loops=0), "parallel_loops"), (dict(parallel_loops=1.0), "parallel_loops")]
    for kwargs, word in bad + loops:
        with pytest.raises(ValueError, match=f"SpatialLSTM: {word}"):
            SpatialLSTM(**dict(dict(units=3), **kwargs))
    for kwargs, word in bad:
        with pytest.raises(ValueError, match=f"SpatialLSTMCell: {word}"):
            SpatialLSTMCell(**dict(dict(units=3), **kwargs))
    step = lambda x, hl, cl, hu, cu: (hl, cl)
    for kwargs, word in [(dict(units=0), "units"), (dict(num_loops=0), "num_loops"),
                         (dict(return_cells=1), "return_cells")]:
        with pytest.raises(ValueError, match=f"diagonal_scan: {word}"):
            diagonal_scan(**dict(dict(x=np.zeros((1, 2, 2, 1)), units=3, step=step), **kwargs))


def test_the_layer_holds_its_cell_as_cell_and_reads_its_attributes():
    layer = SpatialLSTM(4, extended=True, cell="paper", forget_bias=-2.0, kernel_initializer="orthogonal", name="slstm")
    assert isinstance(layer.cell, SpatialLSTMCell) and layer.lstm_cell is layer.cell
    assert layer.cell_type == layer.cell.cell_type == "paper"
    assert (layer.units, layer.extended, layer.forget_bias) == (4, True, -2.0)
    assert layer.kernel_initializer is layer.cell.kernel_initializer
    layer.build((None, None, None, 3))
    assert layer.kernel is layer.cell.kernel and layer.bias is layer.cell.bias and layer.input_dim == 3
    assert [v.path for v in layer.weights] == ["slstm/cell/kernel", "slstm/cell/bias"]


def test_files_with_the_cell_under_its_earlier_name_load(tmp_path):
    """Files saved when the layer held its cell as `lstm_cell` (the shipped models) keep loading."""
    import io
    import zipfile

    import h5py

    model = keras.Sequential([keras.Input((None, None, 3)), SpatialLSTM(4, name="slstm")])
    model.layers[0].kernel.assign(rand(model.layers[0].kernel.shape, seed=40))
    x = rand((1, 3, 4, 3), seed=41)
    path, old = str(tmp_path / "new.keras"), str(tmp_path / "old.keras")
    model.save(path)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "model.weights.h5":
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as weights:
                    weights.move("layers/spatial_lstm/cell", "layers/spatial_lstm/lstm_cell")
                data = buffer.getvalue()
            target.writestr(name, data)
    for file in (path, old):
        np.testing.assert_array_equal(keras.models.load_model(file)(x).numpy(), model(x).numpy())


def test_paper_cell_starts_with_forget_biases_of_minus_one_and_its_memory_does_not_grow():
    """Issue #10: with forget biases 0 a fresh eq. 6 layer overflows on a 256 x 256 image; -1 keeps |c| small."""
    units = 8
    paper, stable = SpatialLSTM(units, cell="paper"), SpatialLSTM(units)
    for layer in (paper, stable):
        layer.build((None, None, None, 24))
    expected = np.zeros(5 * units, np.float32)
    expected[3 * units:] = -1.0                              # f_left and f_up
    np.testing.assert_array_equal(paper.bias.numpy(), expected)
    np.testing.assert_array_equal(stable.bias.numpy(), np.zeros(5 * units))      # unchanged: it cannot grow
    assert "forget_bias" not in paper.get_config()
    chosen = SpatialLSTM.from_config(SpatialLSTM(units, cell="paper", forget_bias=-2.0).get_config())
    chosen.build((None, None, None, 24))
    assert chosen.forget_bias == -2.0 and chosen.bias.numpy()[-1] == -2.0
    x = tf.constant(np.random.default_rng(0).standard_normal((1, 256, 256, 24)), tf.float32)
    keras.utils.set_random_seed(0)
    fresh = SpatialLSTM(units, cell="paper")
    _, c = fresh.run_region(x)
    assert np.isfinite(c.numpy()).all() and np.abs(c.numpy()).max() < 3.0
    keras.utils.set_random_seed(0)
    zero = SpatialLSTM(units, cell="paper", forget_bias=0.0)
    _, c_zero = zero.run_region(x)
    assert not np.isfinite(c_zero.numpy()).all()          # what the initialisation avoids
