"""Regression tests of issue #10, section 1: inputs are checked on every path, with an error naming the problem.

Each test is one defect found by trying the package as a new user would: the
Keras path (`model(x)`, `fit`, `evaluate`) accepting any floats, other integer
dtypes and NaN; `MCGSM.log_prob` broadcasting a y of the wrong shape; `adapt`
storing infinite whitening weights; models used before `adapt`; arguments
coerced instead of refused; the README's own example.
"""
import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import ride_tf
from ride_tf import MCGSM, RIDE, SpatialLSTM, codec, data
from ride_tf.checks import NonFiniteError
from ride_tf.model import NonFiniteLossError
from ride_tf.nn.whitening import NotAdaptedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_ride(cell="stable", adapt=True, seed=0):
    keras.utils.set_random_seed(seed)
    model = RIDE(num_layers=1, num_hiddens=4, num_components=2, num_scales=2, num_features=3, cell=cell)
    if adapt:
        model.adapt(data.dead_leaves(4, size=16, seed=0, noise_std=0.02))
    return model


@pytest.fixture(scope="module")
def model():
    model = tiny_ride()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


@pytest.fixture(scope="module")
def images():
    return data.dead_leaves(4, size=12, seed=1, noise_std=0.02)[..., None]


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


# ------------------------------------------------------------------ the Keras path
@pytest.mark.parametrize("case, message", [
    ("float_0_255", r"must lie in \[0, 1\]"),
    ("negative", r"must lie in \[0, 1\]"),
    ("int16", "dtype int16 is not supported"),
    ("int32", "dtype int32 is not supported"),
    ("bool", "dtype bool is not supported"),
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
    ("rank5", "rank 5"),
    ("rank2", "rank 2"),
    ("three_channels", "channel"),
])
def test_calling_the_model_refuses_bad_images(model, images, case, message):
    floats = (images.astype(np.float32) + 0.5) / 256
    bad = {
        "float_0_255": images.astype(np.float32),
        "negative": floats - 0.5,
        "int16": images.astype(np.int16),
        "int32": images.astype(np.int32),
        "bool": images > 128,
        "nan": np.where(np.arange(floats.size).reshape(floats.shape) == 7, np.nan, floats).astype(np.float32),
        "inf": np.where(np.arange(floats.size).reshape(floats.shape) == 7, np.inf, floats).astype(np.float32),
        "rank5": floats[None],
        "rank2": floats[0, ..., 0],
        "three_channels": np.repeat(floats, 3, axis=-1),
    }[case]
    with pytest.raises(ValueError, match=message):
        model(bad)
    # The same checks inside a traced function (as in fit): assert ops, or a ValueError while tracing.
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=message):
        tf.function(model)(tf.constant(bad))


def test_valid_images_still_pass_the_keras_path(model, images):
    floats = (images.astype(np.float32) + 0.5) / 256
    assert model(images).shape == (4, 12, 12)
    np.testing.assert_allclose(tf.function(model)(tf.constant(floats)).numpy(), model(floats).numpy(), rtol=1e-5,
                               atol=1e-5)
    assert model(floats[..., 0]).shape == (4, 12, 12)         # [N, H, W] for a gray model
    assert model(np.zeros((1, 3, 3, 1), np.float32)).shape == (1, 3, 3)
    assert model(np.ones((1, 3, 3, 1), np.float64)).shape == (1, 3, 3)


def test_fit_refuses_nan_and_leaves_the_weights_alone(model, images):
    floats = (images.astype(np.float32) + 0.5) / 256
    floats[1, 3, 4, 0] = np.nan
    before = weights_of(model)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
        model.fit(floats, batch_size=4, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_evaluate_and_fit_refuse_0_to_255_floats_and_other_integer_dtypes(model, images):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"must lie in \[0, 1\]"):
        model.evaluate(images.astype(np.float32), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="dtype int16"):
        model.fit(tf.data.Dataset.from_tensor_slices(images.astype(np.int16)).batch(4), epochs=1, verbose=0)


def test_fit_and_evaluate_still_work_on_uint8_and_floats(model, images):
    """fit on uint8 optimises the density of the pixels dequantized with the step's noise, and evaluate on floats
    reports their rate: both equal the NumPy-facing rates of the same floats (to float32 round-off)."""
    from ride_tf.model import TRAINING_NOISE_SALT
    from ride_tf.quantization import dequantize

    step = int(model.optimizer.iterations.numpy())
    dequantized = dequantize(images, seed=tf.constant([TRAINING_NOISE_SALT, step], tf.int64)).numpy()
    expected_loss = -model.log_likelihood_rate(dequantized).mean()        # at the weights before the step
    history = model.fit(images, batch_size=4, epochs=1, shuffle=False, verbose=0)     # one step: the 4 images
    assert history.history["loss"] == [pytest.approx(expected_loss, rel=1e-5, abs=1e-5)]
    assert int(model.optimizer.iterations.numpy()) == step + 1
    floats = (images.astype(np.float32) + 0.5) / 256
    result = model.evaluate(floats, batch_size=4, verbose=0, return_dict=True)
    assert result["bits_per_pixel"] == pytest.approx(model.log_likelihood_rate(floats).mean(), rel=1e-5, abs=1e-5)


def test_a_non_finite_loss_stops_fit_with_a_message_naming_the_spatial_lstm(images):
    paper = tiny_ride(cell="paper")
    paper.compile(optimizer="sgd")
    paper.slstms[0].kernel.assign(np.full(paper.slstms[0].kernel.shape, np.nan, np.float32))
    before = [w.copy() for w in paper.get_weights()]
    # The graph's check, raised as a type of its own: an InvalidArgumentError and a NonFiniteError.
    with pytest.raises(NonFiniteLossError, match="loss is not finite: the spatial LSTM") as failure:
        paper.fit(images, batch_size=4, epochs=1, verbose=0)
    assert isinstance(failure.value, tf.errors.InvalidArgumentError) and isinstance(failure.value, NonFiniteError)
    # The failed step applied nothing: every weight is as before (the NaN kernel included).
    for got, want in zip(paper.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(FloatingPointError, match=r"1 of the model's weights are not finite \(\S*spatial_lstm\S*/kernel\)"):
        paper.pixel_log_prob(images)


# ------------------------------------------------------------ models never adapted
def test_a_model_that_was_never_adapted_is_refused_everywhere(images):
    fresh = tiny_ride(adapt=False)
    assert not fresh.whitening.is_adapted
    message = r"adapt\(images\)"
    for call in [lambda: fresh.log_likelihood_rate(images), lambda: fresh.pixel_log_prob(images),
                 lambda: fresh.log_prob(images), lambda: fresh.gaussian_log_likelihood_rate(images),
                 lambda: fresh.sample_features(images, 10), lambda: fresh.sample(1, 4, 4, seed=0),
                 lambda: codec.compressed_size_bits(fresh, images),
                 lambda: ride_tf.codec.compress(fresh, images[0]),
                 lambda: fresh.inpaint(images[0], np.eye(12, dtype=bool), num_sweeps=0, verbose=0),
                 lambda: fresh(images), lambda: ride_tf.ensemble_log_likelihood_rate(fresh, images)]:
        with pytest.raises(NotAdaptedError, match=message):
            call()
    fresh.compile(optimizer="sgd")
    with pytest.raises(tf.errors.InvalidArgumentError, match="conditional whitening has not been fitted"):
        fresh.fit(images, batch_size=4, epochs=1, verbose=0)
    # Bad input is still reported as bad input first.
    with pytest.raises(ValueError, match="channel"):
        fresh.log_likelihood_rate(np.repeat(images, 3, -1))
    # Once adapted, everything works (`finetune` and `training.train` adapt a fresh model themselves).
    fresh.adapt(images)
    assert np.isfinite(fresh.log_likelihood_rate(images)).all()


def test_export_refuses_a_model_that_was_never_adapted(tmp_path):
    with pytest.raises(NotAdaptedError):
        ride_tf.export_saved_model(tiny_ride(adapt=False), str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------- adapt
@pytest.mark.parametrize("case", ["constant", "ramp", "constant_colour_channel"])
def test_adapt_refuses_degenerate_images_instead_of_storing_infinite_weights(case):
    channels = 3 if case == "constant_colour_channel" else 1
    model = RIDE(num_channels=channels, num_layers=0, num_components=2, num_scales=2, num_features=3)
    rng = np.random.default_rng(0)
    if case == "constant":
        images = np.full((2, 16, 16), 0.5, np.float32)
    elif case == "ramp":      # every pixel is exactly its left neighbour + 1/64
        images = np.broadcast_to((np.arange(16) / 64.0)[None, None, :], (2, 16, 16)).astype(np.float32)
    else:
        images = rng.random((2, 16, 16, 3)).astype(np.float32)
        images[..., 2] = 0.25
    with pytest.raises(ValueError, match="constant|predictable"):
        model.adapt(images)
    assert not model.whitening.is_adapted
    np.testing.assert_array_equal(model.whitening.output_whitening.numpy(), np.eye(channels))
    with pytest.raises(NotAdaptedError):
        model.log_likelihood_rate(np.zeros((1, 8, 8, channels), np.uint8))


def test_adapt_accepts_constant_uint8_images_which_are_dequantized_with_noise():
    model = RIDE(num_layers=0, num_components=2, num_scales=2, num_features=3)
    model.adapt(np.full((2, 16, 16), 128, np.uint8))
    assert all(np.isfinite(w).all() for w in model.whitening.get_weights())
    assert np.isfinite(model.log_likelihood_rate(np.full((1, 8, 8), 128, np.uint8))).all()


# --------------------------------------------------------------- MCGSM.log_prob
def test_mcgsm_log_prob_refuses_a_y_of_the_wrong_shape_instead_of_broadcasting():
    layer = MCGSM(2, 2, 3)
    layer.build((None, 4))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    good = layer.log_prob(x, np.zeros((5, 1), np.float32))
    assert good.shape == (5,)
    for y in [np.zeros(5, np.float32), np.zeros((5, 2), np.float32), np.zeros((4, 1), np.float32),
              np.zeros((1, 5, 1), np.float32), np.float32(0.0)]:
        with pytest.raises(ValueError, match="shape"):
            layer.log_prob(x, y)
    with pytest.raises(ValueError, match="event size"):
        layer(x).log_prob(np.zeros(5, np.float32))          # the distribution: y [M] for event size 1
    # With shapes only known at run time, an assert op refuses it.
    spec = tf.TensorSpec([None, None], tf.float32)
    graph = tf.function(layer.log_prob, input_signature=[spec, spec])
    np.testing.assert_allclose(graph(x, np.zeros((5, 1), np.float32)).numpy(), good.numpy(), rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="y must have shape"):
        graph(x, np.zeros((1, 1), np.float32))


# ---------------------------------------------------------- arguments not coerced
@pytest.mark.parametrize("make", [
    lambda: RIDE(num_features=2.5), lambda: RIDE(extended="False"), lambda: RIDE(num_hiddens=2.0),
    lambda: RIDE(num_channels="1"), lambda: RIDE(cell=None), lambda: RIDE(nb_size=True),
    lambda: SpatialLSTM(units=0), lambda: SpatialLSTM(units=3.0), lambda: SpatialLSTM(4, extended=1),
    lambda: SpatialLSTM(4, forget_bias="-1"), lambda: MCGSM(num_components=2.0), lambda: MCGSM(2, num_scales="4"),
    lambda: data.dead_leaves(1, size="16"), lambda: data.dead_leaves(1, size=(16.0, 16)),
    lambda: data.dead_leaves(2.0, size=16), lambda: data.dead_leaves(1, size=16, antialias="False"),
    lambda: data.dead_leaves(1, size=16, seed=-1), lambda: data.dead_leaves(1, size=16, max_radius="64"),
    lambda: data.dead_leaves(1, size=16, noise_std="0.1"), lambda: data.dead_leaves_benchmark("test", 1.0),
    lambda: data.gaussian_autoregressive(1, 4.0),
])
def test_arguments_of_the_wrong_type_are_refused_not_coerced(make):
    with pytest.raises(ValueError):
        make()


def test_dead_leaves_with_a_huge_max_radius_refuses_before_allocating():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="max_radius"):
        data.dead_leaves(1, size=16, max_radius=1e6)
    with pytest.raises(ValueError, match="max_radius"):
        data.dead_leaves(1, size=16, max_radius=1e300)
    assert time.perf_counter() - start < 1.0
    # A large max_radius that fits is still drawn, and max_disks can bound the work.
    assert data.dead_leaves(1, size=16, max_radius=1e3).shape == (1, 16, 16)
    assert data.dead_leaves(1, size=16, max_radius=1e6, max_disks=1000).shape == (1, 16, 16)


# ---------------------------------------------------------------- the README's example
README_EXAMPLE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import ride_tf
    from ride_tf import RIDE, data

    images = data.dead_leaves(8, size=24, seed=0, noise_std=0.02)
    train_images, test_images = images[:6], images[6:]
    mcgsm = RIDE(num_layers=0, num_components=2, num_features=3)
    mcgsm.adapt(train_images)
    print(mcgsm.log_likelihood_rate(test_images).mean(), "bit/px")

    model = RIDE(num_layers=1, num_hiddens=4, num_components=2, num_features=3)
    ride_tf.training.train(model, train_images[:-2], validation_images=train_images[-2:], optimizer="adam",
                           patch_sizes=(8,), num_patches=50, finetune_max_iter=0, verbose=0)
    model.save({path!r})
    samples = model.sample(2, 6, 7, seed=0)
    print(samples.shape, ride_tf.ensemble_log_likelihood_rate(model, test_images).shape)
""")


def test_the_readme_example_runs_from_import_ride_tf_alone(tmp_path):
    """`import ride_tf` then `ride_tf.training.train(...)`, in a fresh interpreter (the README's example, shortened)."""
    script = tmp_path / "readme.py"
    script.write_text(README_EXAMPLE.format(root=ROOT, path=str(tmp_path / "ride.keras")))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bit/px" in out.stdout and "(2, 6, 7, 1) (2,)" in out.stdout
    assert keras.models.load_model(str(tmp_path / "ride.keras")).whitening.is_adapted


def test_geometry_and_helpers_refuse_bad_arguments():
    from ride_tf import geometry
    from ride_tf.preprocessing import to_bits_per_pixel
    from ride_tf.nn.whitening import ConditionalWhitening

    images = np.zeros((1, 4, 5, 1))
    for index in (8, -1, 2.0, True, "1"):
        with pytest.raises(ValueError, match="index"):
            geometry.dihedral(images, index)
        with pytest.raises(ValueError, match="index"):
            geometry.inverse_dihedral(images, index)
    for nb_size in (3.0, 4, 1, "5", None):
        with pytest.raises(ValueError, match="nb_size"):
            geometry.radius(nb_size)
    for eps in ("1e-10", 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            ConditionalWhitening(eps=eps)
    with pytest.raises(ValueError, match="num_channels"):
        to_bits_per_pixel(1.0, 0)


# ---------------------------------------- every argument of the public API, named (issue #16)
def _public_calls(model):
    images = data.dead_leaves(2, size=12, seed=1)
    from ride_tf import ensemble, training
    from ride_tf.training import finetune

    return [
        ("finetune validation_fraction 1.5", lambda: model.finetune(images, validation_fraction=1.5, verbose=0),
         "validation_fraction must be finite and >= 0 and < 1, got 1.5"),
        ("finetune validation_fraction -0.1", lambda: model.finetune(images, validation_fraction=-0.1, verbose=0),
         "validation_fraction must be"),
        ("finetune num_samples 0", lambda: model.finetune(images, num_samples=0, verbose=0),
         "finetune: num_samples must be an integer >= 1, got 0"),
        ("finetune objective", lambda: model.finetune(images, objective="bits", verbose=0),
         "finetune: objective must be one of"),
        ("finetune_mcgsm max_iter", lambda: finetune.finetune_mcgsm(model.mcgsm, np.zeros((9, 15)), np.zeros((9, 1)),
                                                                  max_iter=-1), "max_iter must be an integer >= 0"),
        ("finetune_mcgsm patience", lambda: finetune.finetune_mcgsm(model.mcgsm, np.zeros((9, 15)), np.zeros((9, 1)),
                                                                  patience=0), "patience must be an integer >= 1"),
        ("adapt max_pairs", lambda: model.adapt(images, max_pairs=0), "adapt: max_pairs must be an integer >= 1"),
        ("adapt seed", lambda: model.adapt(images, seed=-3), "adapt: seed must be an integer"),
        ("pixel_log_prob verbose", lambda: model.pixel_log_prob(images, verbose=7), "verbose must be one of"),
        ("pixel_log_prob region", lambda: model.pixel_log_prob(images, region="inner"), "region must be one of"),
        ("log_likelihood_rate noise", lambda: model.log_likelihood_rate(images, noise="no"), "noise must be True or False"),
        ("compressed_size verbose", lambda: ride_tf.compressed_size_bits(model, images, verbose=-1),
         "verbose must be one of"),
        ("compress metadata", lambda: ride_tf.compress(model, images[0], metadata="mode L"), "metadata must be bytes"),
        ("ensemble models", lambda: ensemble.ensemble_log_prob(["not a model"], images), "models[0] must be a ride_tf.RIDE"),
        ("ensemble seed", lambda: ensemble.ensemble_log_prob(model, images, seed=1.5), "seed must be"),
        ("train optimizer", lambda: training.train(model, images, optimizer="rmsprop", verbose=0),
         "train: optimizer must be one of"),
        ("train finetune_samples", lambda: training.train(model, images, finetune_samples=0, verbose=0),
         "train: finetune_samples must be an integer >= 1"),
        ("train momentum", lambda: training.train(model, images, momentum=1.0, verbose=0), "train: momentum must be"),
        ("train verbose", lambda: training.train(model, images, verbose=3), "train: verbose must be one of"),
        ("train model", lambda: training.train("model.keras", images), "train: model must be a ride_tf.RIDE"),
        ("patch_dataset flips", lambda: training.patch_dataset(images, 8, 10, flips="yes"), "flips must be True or False"),
        ("make_optimizer learning_rate", lambda: training.make_optimizer("adam", 0.0), "learning_rate must be"),
        ("PatchCurriculum patch_sizes", lambda: training.PatchCurriculum(images, patch_sizes=(8, 0)),
         "patch_sizes[1] must be an integer >= 1"),
        ("FinetuneMCGSM num_samples", lambda: training.FinetuneMCGSM(images, num_samples=0), "num_samples must be"),
        ("sample_patches patch_size", lambda: training.sample_patches(images, 0, 4), "patch_size must be an integer"),
    ]


@pytest.mark.parametrize("index", range(25))
def test_every_public_argument_is_checked_with_a_message_naming_it(model, index):
    calls = _public_calls(model)
    assert len(calls) == 25
    name, call, message = calls[index]
    with pytest.raises((ValueError, TypeError)) as error:
        call()
    assert message in str(error.value), (name, str(error.value))
