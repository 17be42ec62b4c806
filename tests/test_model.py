"""The RIDE model: shapes, the data protocol, causality, bad input, Keras integration, training."""
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ride_tf import RIDE, data as image_data
from ride_tf.training import patch_dataset, sample_patches, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_ride(num_layers=1, num_channels=1, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    config = dict(num_channels=num_channels, num_hiddens=8, num_layers=num_layers, num_components=4,
                  num_scales=2, num_features=6, nb_size=5)
    config.update(kwargs)
    return RIDE(**config)


@pytest.fixture(scope="module")
def leaves():
    images = image_data.dead_leaves(14, size=48, seed=7, noise_std=0.02)
    return images[:10], images[10:]


def randomize(model, scale=0.5, seed=1):
    """Give every trainable variable non-trivial random values (for causality checks)."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(np.float32))


# --------------------------------------------------------------- the protocol
def test_pixel_log_prob_shape_sum_and_rate(leaves):
    model = small_ride(num_layers=1)
    model.adapt(leaves[0])
    images = leaves[1][:2, :20, :17]
    pixel_map = model.pixel_log_prob(images, noise=False)
    assert pixel_map.shape == (2, 20, 17)                       # every pixel
    np.testing.assert_allclose(model.log_prob(images, noise=False), pixel_map.sum(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(model.log_likelihood_rate(images, noise=False),
                               pixel_map.mean(axis=(1, 2)) / math.log(2), rtol=1e-6)
    # The paper's protocol: the same conditionals, cut out of the full map.
    valid = model.pixel_log_prob(images, noise=False, region="valid")
    assert valid.shape == (2, 20 - 2, 17 - 4)
    np.testing.assert_array_equal(valid, pixel_map[:, 2:, 2:-2])
    np.testing.assert_allclose(model.log_likelihood_rate(images, noise=False, region="valid"),
                               valid.mean(axis=(1, 2)) / math.log(2), rtol=1e-6)
    with pytest.raises(ValueError, match="region"):
        model.log_prob(images, region="interior")


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (6, 1), (2, 3)])
def test_images_smaller_than_the_window_are_modelled(leaves, size):
    """Every pixel has a conditional, so any size >= 1 x 1 has a likelihood; region='valid' needs a window."""
    model = small_ride(num_layers=2)
    model.adapt(leaves[0])
    images = leaves[1][:2, :size[0], :size[1]]
    pixel_map = model.pixel_log_prob(images, noise=False)
    assert pixel_map.shape == (2,) + size and np.isfinite(pixel_map).all()
    with pytest.raises(ValueError, match="smaller than the causal neighbourhood"):
        model.pixel_log_prob(images, region="valid")


def test_tiled_evaluation_equals_the_untiled_map(leaves, monkeypatch):
    """Large images are cut into tiles that pass their LSTM states on: the same map up to round-off."""
    from ride_tf import evaluation

    model = small_ride(num_layers=2, extended=True)
    model.adapt(leaves[0])
    randomize(model, scale=0.2)
    images = leaves[1][:2, :37, :45]
    whole = model.pixel_log_prob(images, noise=False)
    monkeypatch.setattr(evaluation, "PIXELS_PER_BATCH", 150)   # tiles of 10 x 13 pixels
    monkeypatch.setattr(evaluation, "TILE_WIDTH", 13)
    tiled = model.pixel_log_prob(images, noise=False)
    assert tiled.shape == whole.shape == (2, 37, 45)
    np.testing.assert_allclose(tiled, whole, atol=2e-5 * np.abs(whole).max(), rtol=0)
    assert np.abs(tiled - whole).max() < 1e-3


def test_dequantization_is_seedable_and_matches_float_input(leaves):
    model = small_ride(num_layers=0)
    model.adapt(leaves[0])
    images = leaves[1][:2]
    a = model.log_prob(images, seed=3)
    b = model.log_prob(images, seed=3)
    c = model.log_prob(images, seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    # uint8 without noise is exactly the bin centres (k + 0.5) / 256 given as floats.
    centres = (images.astype(np.float32) + 0.5) / 256.0
    np.testing.assert_allclose(model.log_prob(images, noise=False), model.log_prob(centres), rtol=1e-6)


def test_training_noise_is_a_function_of_the_optimizer_step(leaves):
    """In a training step, uint8 input is dequantized with noise seeded by optimizer.iterations (resumable fit)."""
    model = small_ride(num_layers=0)
    model.adapt(leaves[0])
    images = tf.constant(leaves[1][:2, :12, :12, None])
    fresh = [model(images).numpy() for _ in range(2)]             # no optimizer: fresh noise every call
    assert np.abs(fresh[0] - fresh[1]).max() > 1e-3
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    step0 = [model(images, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(step0[0], step0[1])
    model.optimizer.iterations.assign_add(1)
    step1 = model(images, training=True).numpy()
    assert np.abs(step1 - step0[0]).max() > 1e-3
    model.optimizer.iterations.assign(0)
    np.testing.assert_array_equal(model(images, training=True).numpy(), step0[0])
    assert np.abs(model(images).numpy() - step0[0]).max() > 1e-3   # evaluation keeps fresh noise


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 3, 16, 16), np.uint8), "channel"),
    (np.zeros((16, 16), np.uint8), "rank 2"),
    (np.zeros((1, 2, 16, 16, 1), np.uint8), "rank 5"),
    (np.full((1, 8, 8), np.nan, np.float32), "NaN or infinite"),
    (np.full((1, 8, 8), np.inf, np.float32), "NaN or infinite"),
    (np.full((1, 8, 8), 1.5, np.float32), "must lie in \\[0, 1\\]"),
    (np.full((1, 8, 8), -0.1, np.float32), "must lie in \\[0, 1\\]"),
    (np.zeros((1, 8, 8), np.uint16), "dtype uint16 is not supported"),
    (np.zeros((0, 8, 8), np.uint8), "empty"),
])
def test_bad_input_is_refused_with_a_clear_error(images, message):
    model = small_ride(num_layers=0)
    with pytest.raises(ValueError, match=message):
        model.log_prob(images)


def test_non_finite_likelihoods_raise_instead_of_answering_nan(leaves):
    model = small_ride(num_layers=1)
    model.adapt(leaves[0])
    model.mcgsm.priors.assign(np.full(model.mcgsm.priors.shape, np.nan, np.float32))
    with pytest.raises(FloatingPointError, match="not finite .*1 of the model's weights are not finite .*priors"):
        model.log_likelihood_rate(leaves[1][:1])


@pytest.mark.parametrize("kwargs", [dict(nb_size=4), dict(nb_size=1), dict(num_layers=-1),
                                    dict(num_components=0), dict(num_channels=2.5), dict(num_features=2.5),
                                    dict(extended="False"), dict(cell="lstm"), dict(num_layers=0, cell="lstm")])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        small_ride(**kwargs)


# ----------------------------------------------------------------- causality
@pytest.mark.parametrize("num_layers", [0, 1, 2])
def test_likelihood_of_a_pixel_depends_only_on_earlier_pixels(num_layers):
    """d log p(x_kl | .) / d x_ij == 0 exactly for (i, j) after (k, l) in raster order, borders included."""
    model = small_ride(num_layers=num_layers, seed=num_layers)
    model.adapt(np.random.default_rng(1).random((2, 16, 16)).astype(np.float32))
    randomize(model)
    height, width, r = 9, 11, 2
    image = tf.constant(np.random.default_rng(0).random((1, height, width, 1)), tf.float32)
    raster = np.arange(height * width).reshape(height, width)
    for k, l in [(5, 4), (8, 7), (0, 0), (0, 5), (1, 10), (4, 0), (8, 10), (3, 1)]:
        with tf.GradientTape() as tape:
            tape.watch(image)
            log_prob = model(image)[0, k, l]
        grad = tape.gradient(log_prob, image).numpy()[0, :, :, 0]
        after = raster > raster[k, l]
        assert np.all(grad[after] == 0.0), (num_layers, k, l)
        assert grad[k, l] != 0.0
        before = raster < raster[k, l]
        window = np.zeros_like(before)
        window[max(k - r, 0):k + 1, max(l - r, 0):l + r + 1] = True
        # It depends on every pixel of its (clipped) causal window.
        assert np.count_nonzero(grad[before & window]) == np.count_nonzero(before & window)
        if num_layers and k > 2 and l > 2:
            # Through the recurrence the pixel sees beyond its 3 x 5 window.
            assert np.count_nonzero(grad[before & ~window]) > 0


@pytest.mark.parametrize("pixel", [(0, 0), (0, 4), (1, 6), (3, 0), (4, 6), (3, 3)])
def test_border_conditionals_are_normalised(leaves, pixel):
    """Integral of p(x_kl | x_<kl) over x_kl (1-D quadrature) is 1, for border and interior pixels."""
    model = small_ride(num_layers=2, seed=3)
    model.adapt(leaves[0])
    randomize(model, scale=0.3, seed=4)
    k, l = pixel
    base = (leaves[1][0, :5, :7].astype(np.float32) + 0.5) / 256.0
    grid = np.linspace(-3.0, 4.0, 14001).astype(np.float32)
    images = np.repeat(base[np.newaxis, :, :, np.newaxis], len(grid), axis=0)
    images[:, k, l, 0] = grid
    # The grid leaves [0, 1], which `model(x)` refuses: the same graph without the input check.
    density = np.exp(model.log_density_head(*model.forward(tf.constant(images))).numpy()[:, k, l]
                     .astype(np.float64))
    integral = np.trapezoid(density, grid)
    assert abs(integral - 1.0) < 2e-3, integral
    assert density[0] < 1e-4 * density.max() and density[-1] < 1e-4 * density.max()


# ------------------------------------------------------------- Keras support
def test_save_and_load_give_identical_log_likelihoods(tmp_path, leaves):
    model = small_ride(num_layers=2, extended=True)
    model.adapt(leaves[0])
    randomize(model, scale=0.1)
    path = str(tmp_path / "ride.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, RIDE) and loaded.num_layers == 2 and loaded.extended
    images = leaves[1][:2, :24, :24]
    np.testing.assert_array_equal(model.log_prob(images, noise=False), loaded.log_prob(images, noise=False))
    assert loaded.whitening.is_adapted


def test_a_model_with_non_finite_weights_is_never_saved_or_exported(tmp_path, leaves):
    from ride_tf.export import export_saved_model
    from ride_tf.io import atomic_save_model

    model = small_ride(num_layers=1)
    model.adapt(leaves[0])
    model.save(str(tmp_path / "good.keras"))
    assert model.non_finite_weights() == []
    means = model.mcgsm.means.numpy()
    means[0, 0] = np.nan
    model.mcgsm.means.assign(means)
    assert model.non_finite_weights() == [model.mcgsm.means.path]
    for save in (model.save, lambda path: atomic_save_model(model, path)):
        with pytest.raises(ValueError, match="1 of the model's .* weights are not finite .*means"):
            save(str(tmp_path / "bad.keras"))
    with pytest.raises(ValueError, match="export_saved_model: 1 of the model's"):
        export_saved_model(model, str(tmp_path / "exported"))
    assert sorted(os.listdir(tmp_path)) == ["good.keras"]          # nothing else written, not even a temporary


def test_evaluate_reports_the_log_likelihood_rate(leaves):
    model = small_ride(num_layers=1)
    model.adapt(leaves[0])
    model.compile(optimizer="sgd")
    patches = (sample_patches(leaves[1], 16, 20, seed=0).astype(np.float32) + 0.5) / 256.0
    result = model.evaluate(patches, batch_size=10, verbose=0, return_dict=True)
    expected = model.log_likelihood_rate(patches).mean()
    assert result["bits_per_pixel"] == pytest.approx(expected, abs=1e-4)
    assert result["loss"] == pytest.approx(-expected, abs=1e-4)


def test_short_training_run_improves_held_out_rate(leaves):
    train_images, test_images = leaves
    model = small_ride(num_layers=1)
    model.adapt(train_images)
    before = model.log_likelihood_rate(test_images, seed=0).mean()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(patch_dataset(train_images, 16, 1000, batch_size=25), epochs=2, verbose=0)
    after = model.log_likelihood_rate(test_images, seed=0).mean()
    assert after > before + 0.1, (before, after)


def test_training_recipe_keeps_the_best_candidate(leaves):
    """The final model scores the best of all candidates: the start from the fitted baseline and every stage.

    Which candidate wins depends on multithreaded round-off; the property does not."""
    train_images, test_images = leaves
    model = small_ride(num_layers=1)
    validation = test_images[:2, :24, :24]
    stages = train(model, train_images, validation_images=validation, patch_sizes=(12, 12),
                   learning_rates=(0.1, 0.01), num_patches=200, finetune_max_iter=20,
                   finetune_samples=3000, patience=2, verbose=0)
    assert len(stages) == 2
    assert all(np.isfinite([s.train_rate, s.finetune_rate, s.validation_rate]).all() for s in stages)
    assert all(s.selected_on == "validation images" and s.score == s.validation_rate for s in stages)
    start = stages[0].baseline_validation_rate            # the model starts exactly at its fitted baseline
    assert np.isfinite(start)
    best = max([start] + [s.validation_rate for s in stages])
    final = model.log_likelihood_rate(validation, seed=0).mean()
    assert final == pytest.approx(best, abs=1e-4)
    # A stage is kept exactly when it beats every earlier candidate (clear cases: the start's own score
    # is the model's rate at the baseline, equal to the baseline's to float round-off).
    so_far = start
    for stage in stages:
        if abs(stage.validation_rate - so_far) > 1e-4:
            assert stage.kept == (stage.validation_rate > so_far)
        so_far = max(so_far, stage.validation_rate)


def test_colour_model_is_a_joint_three_channel_mcgsm():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (3, 20, 20, 1))
    images = np.clip(base + rng.integers(-10, 10, (3, 20, 20, 3)), 0, 255).astype(np.uint8)
    model = small_ride(num_layers=1, num_channels=3)
    assert model.mcgsm.dim_out == 3 and model.mcgsm.dim_in == 8 + 12 * 3 + 12   # [h, u] (skip_inputs)
    assert model.whitening.input_dim == 12 * 3
    assert model.slstms[0].input_dim == 12 * 3 + 12      # whitened inputs and outside indicators
    model.adapt(images)
    pixel_map = model.pixel_log_prob(images, noise=False)
    assert pixel_map.shape == (3, 20, 20)
    np.testing.assert_allclose(model.log_likelihood_rate(images, noise=False),
                               pixel_map.mean(axis=(1, 2)) / (3 * math.log(2)), rtol=1e-6)
    with pytest.raises(ValueError, match="3 channel"):
        model.log_prob(images[..., :1])


# ---------------------------------------------------- the MCGSM image model
def test_mcgsm_image_model_beats_the_gaussian_linear_predictor(leaves):
    """num_layers=0 trained by L-BFGS: clearly better held-out rate than the Gaussian predictor."""
    train_images, test_images = leaves
    keras.utils.set_random_seed(0)
    model = RIDE(num_layers=0, num_components=8, num_scales=4, num_features=12)
    model.adapt(train_images)
    result = model.finetune(train_images, max_iter=100, num_samples=20_000, verbose=0)
    assert result.validation_rate > result.initial_validation_rate
    gaussian = model.gaussian_log_likelihood_rate(test_images, seed=0).mean()
    mcgsm = model.log_likelihood_rate(test_images, seed=0).mean()
    assert mcgsm > gaussian + 0.15, (mcgsm, gaussian)


# ------------------------------------------------------ distribution strategy
MIRRORED_SCRIPT = textwrap.dedent("""
    import sys, json
    sys.path.insert(0, {root!r})
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ride_tf import RIDE
    from ride_tf.training import sample_patches
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32)).astype(np.uint8)
    patches = (sample_patches(images, 12, 32, seed=1).astype(np.float32) + 0.5) / 256.0

    def run(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = RIDE(num_hiddens=6, num_layers=1, num_components=3, num_scales=2, num_features=4)
            model.adapt(images, seed=0)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        ds = tf.data.Dataset.from_tensor_slices(patches).batch(16)
        history = model.fit(ds, epochs=3, verbose=0, shuffle=False)
        return history.history["loss"], [float(np.abs(w).sum()) for w in model.get_weights()]

    one = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    two = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print(json.dumps(dict(one=one, two=two)))
""")


def test_mirrored_strategy_gives_the_same_loss_as_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT.format(root=ROOT))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    result = json.loads(out.stdout.strip().splitlines()[-1])
    (loss_one, weights_one), (loss_two, weights_two) = result["one"], result["two"]
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-4)
    np.testing.assert_allclose(weights_two, weights_one, rtol=1e-4)
    assert loss_one[-1] < loss_one[0]


def test_curriculum_and_finetune_callbacks_with_plain_fit(leaves):
    """PatchCurriculum switches patch size and learning rate per epoch; FinetuneMCGSM runs after each."""
    from ride_tf.training import FinetuneMCGSM, PatchCurriculum

    train_images, _ = leaves
    model = small_ride(num_layers=1)
    model.adapt(train_images)
    model.compile(optimizer=keras.optimizers.SGD(1.0, momentum=0.9))
    curriculum = PatchCurriculum(train_images, patch_sizes=(8, 12), learning_rates=(0.05, 0.01),
                                 num_patches=50, batch_size=25)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((curriculum.patch_size, round(float(self.model.optimizer.learning_rate.numpy()), 6)))

    finetune = FinetuneMCGSM(sample_patches(train_images, 12, 10, seed=0), max_iter=5, num_samples=1000)
    history = model.fit(curriculum.dataset(), epochs=3, callbacks=[curriculum, finetune, Spy()], verbose=0)
    sizes = sorted(set(seen))
    assert sizes == [(8, 0.05), (12, 0.01)]
    assert [s for s, _ in seen].count(8) == 2 and [s for s, _ in seen].count(12) == 4
    assert len(finetune.results) == 3
    assert np.isfinite(history.history["finetune_bits_per_pixel"]).all()


def test_training_recipe_refuses_unknown_settings(leaves):
    model = small_ride(num_layers=1)
    with pytest.raises(ValueError, match="optimizer"):
        train(model, leaves[0], optimizer="rmsprop", verbose=0)
    with pytest.raises(ValueError, match="learning rates"):
        train(model, leaves[0], patch_sizes=(8, 12), learning_rates=(0.1,), verbose=0)


def test_make_optimizer_builds_the_named_optimizer_with_clipping():
    from ride_tf.training import make_optimizer

    sgd, adam = make_optimizer("sgd", 0.1), make_optimizer("adam", 3e-3, clipnorm=2.0)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9 and sgd.clipnorm == 1.0
    assert isinstance(adam, keras.optimizers.Adam) and adam.clipnorm == 2.0
    assert float(adam.learning_rate.numpy()) == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="'sgd' or 'adam'"):
        make_optimizer("rmsprop", 0.1)


# ------------------------------------------------------------------ stability
def adversarial_ride(cell):
    """A RIDE whose spatial LSTM has forget-gate biases of +5 and a large kernel (f_left + f_up ~ 2)."""
    model = small_ride(num_layers=1, num_hiddens=3, cell=cell, seed=5)
    lstm = model.slstms[0]
    rng = np.random.default_rng(40)
    lstm.kernel.assign(rng.normal(0.0, 3.0, lstm.kernel.shape))
    bias = rng.normal(0.0, 1.0, lstm.bias.shape)
    bias[3 * 3:] = 5.0
    lstm.bias.assign(bias)
    return model


def test_stable_cell_gives_finite_likelihoods_on_1024_images_where_eq6_overflows(leaves):
    image = image_data.dead_leaves(1, size=1024, seed=11, noise_std=0.02)
    stable = adversarial_ride("stable")
    stable.adapt(leaves[0])
    pixel_map = stable.pixel_log_prob(image, noise=False)
    assert pixel_map.shape == (1, 1024, 1024) and np.isfinite(pixel_map).all()
    paper = adversarial_ride("paper")
    paper.set_weights(stable.get_weights())
    with pytest.raises(FloatingPointError, match="the weights are finite, so the spatial LSTM's memory cells "
                                                  "overflowed"):
        paper.pixel_log_prob(image[:, :256, :256], noise=False)


def test_the_coding_order_is_checked_saved_and_loaded(tmp_path):
    model = small_ride(num_layers=1, num_channels=3)
    assert model.coding_order == (0, 1, 2) and "coding_order" not in model.get_config()
    for bad in [(0, 1), (0, 0, 1), "012", (0, 1, 3), (0.0, 1, 2)]:
        with pytest.raises(ValueError, match="coding_order must be a permutation"):
            model.coding_order = bad
    model.coding_order = [1, 0, 2]
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert keras.models.load_model(path).coding_order == (1, 0, 2)
