"""Property-based tests (hypothesis) of the public API over random shapes, dtypes and values (issue #10).

For every input drawn, a function either returns its documented result (the
right shape and dtype, finite, in range) or raises a ValueError or TypeError
raised by ride_tf itself, never another exception, NaN or a hang.  The model
is tiny and built once; the runs are derandomized (the same examples on every
run, so CI is reproducible) and few, so that the file takes well under a
minute on two cores.
"""
import math
import os
import traceback

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ride_tf import RIDE, codec, data as image_data, preprocessing

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ride_tf")
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FAST = settings(max_examples=60, **SETTINGS)
MODEL = settings(max_examples=40, **SETTINGS)
SLOW = settings(max_examples=10, **SETTINGS)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    model = RIDE(num_layers=1, num_hiddens=3, num_components=2, num_scales=2, num_features=3, nb_size=3)
    model.adapt(image_data.dead_leaves(3, size=12, seed=0, noise_std=0.02))
    return model


def outcome(function, *args, **kwargs):
    """(result, None), or (None, error) for a ValueError/TypeError raised inside ride_tf; anything else fails."""
    try:
        result = function(*args, **kwargs)
        event("documented result")
        return result, None
    except (ValueError, TypeError) as error:
        event("ValueError/TypeError")
        frames = traceback.extract_tb(error.__traceback__)
        assert str(error), f"{type(error).__name__} without a message"
        assert any(os.path.abspath(f.filename).startswith(PACKAGE) for f in frames[-1:]), (
            f"{type(error).__name__} raised outside ride_tf ({frames[-1].filename}): {error}")
        return None, error


# ------------------------------------------------------------------ strategies
# Most examples are valid (so the documented results are exercised); the others break one thing.
VALID_DTYPES = [np.uint8, np.uint8, np.float32, np.float64, np.float16]
OTHER_DTYPES = [np.int16, np.int32, np.uint16, np.int8, np.bool_, np.complex64]


def unit_floats(dtype):
    return st.floats(0.0, 1.0, width=8 * min(np.dtype(dtype).itemsize, 8))


@st.composite
def image_arrays(draw, max_side=7, channels=1, dtypes=VALID_DTYPES):
    """Images for a `channels`-channel model, [N, H, W(, C)]; about a third of them broken in one way."""
    defect = draw(st.sampled_from([None] * 6 + ["dtype", "values", "rank", "channels", "empty"]))
    others = [d for d in VALID_DTYPES + OTHER_DTYPES if d not in dtypes]
    dtype = np.dtype(draw(st.sampled_from(others if defect == "dtype" else dtypes)))
    n, height, width = draw(st.integers(1, 3)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if defect == "empty":
        height, width = draw(st.sampled_from([(0, width), (height, 0), (0, 0)]))
    shape = (n, height, width) + ((channels,) if channels > 1 or draw(st.booleans()) else ())
    if defect == "channels":
        shape = (n, height, width, draw(st.sampled_from([c for c in (1, 2, 3, 4) if c != channels])))
    if defect == "rank":
        shape = draw(st.sampled_from([(height,), (height, width), (n, 1, height, width, channels)]))
    if dtype.kind == "f":
        elements = unit_floats(dtype)
        if defect == "values":
            elements = st.one_of(st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 1.5, 255.0]), elements)
    else:
        elements = None
    images = draw(hnp.arrays(dtype, shape, elements=elements))
    if defect == "values" and dtype.kind == "f" and images.size:        # at least one bad value
        images.flat[draw(st.integers(0, images.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -0.25, 2.0]))
    return images


def maybe_broken(valid, broken):
    """Mostly `valid`, sometimes `broken` (hypothesis' one_of picks each branch alike)."""
    return st.one_of(valid, valid, valid, valid, broken)


@st.composite
def arguments(draw, **choices):
    """Keyword arguments {name: value}; each `choices[name]` is (valid strategy, broken strategy), and at
    most one argument (in about half of the examples) is drawn from its broken strategy."""
    names = sorted(choices)
    broken = draw(st.sampled_from([None] * len(names) + names))
    return {name: draw(choices[name][1] if name == broken else choices[name][0]) for name in names}


seeds = maybe_broken(st.one_of(st.none(), st.integers(0, 2 ** 40)),
                     st.sampled_from([-1, 2.5, "1", True, 2 ** 70]))


# --------------------------------------------------------------- the model's likelihoods
@MODEL
@given(images=image_arrays(), noise=maybe_broken(st.booleans(), st.sampled_from(["no", 0, None])), seed=seeds,
       region=maybe_broken(st.sampled_from(["full", "valid"]), st.sampled_from(["all", None, "FULL"])))
def test_log_likelihood_rate_and_pixel_log_prob(model, images, noise, seed, region):
    rate, error = outcome(model.log_likelihood_rate, images, noise=noise, seed=seed, region=region)
    pixel_map, map_error = outcome(model.pixel_log_prob, images, noise=noise, seed=seed, region=region)
    assert (error is None) == (map_error is None), (error, map_error)
    if error is not None:
        return
    assert images.dtype in (np.uint8, np.float16, np.float32, np.float64)
    n, height, width = images.shape[:3]
    r = model.radius
    expected = (n, height, width) if region == "full" else (n, height - r, width - 2 * r)
    assert pixel_map.shape == expected and np.isfinite(pixel_map).all()
    assert rate.shape == (n,) and np.isfinite(rate).all()


bad_sizes = st.sampled_from([0, -1, 2.5, "3", None, True])


@MODEL
@given(kwargs=arguments(num_samples=(st.integers(1, 3), bad_sizes), height=(st.integers(1, 6), bad_sizes),
                        width=(st.integers(1, 6), bad_sizes),
                        seed=(st.one_of(st.none(), st.integers(0, 2 ** 40)), st.sampled_from([-1, 2.5, "1", 2 ** 70])),
                        continuous=(st.booleans(), st.sampled_from([1, "yes", None]))))
def test_sample(model, kwargs):
    samples, error = outcome(model.sample, **kwargs)
    num_samples, height, width, continuous = (kwargs[k] for k in ("num_samples", "height", "width", "continuous"))
    if error is not None:
        return
    assert samples.shape == (num_samples, height, width, 1)
    if continuous:
        assert samples.dtype == np.float32 and np.isfinite(samples).all()
        assert samples.min() >= 0.0 and samples.max() < 1.0
    else:
        assert samples.dtype == np.uint8


@MODEL
@given(images=image_arrays(max_side=6, dtypes=[np.uint8]))
def test_compressed_size_bits(model, images):
    bits, error = outcome(codec.compressed_size_bits, model, images)
    if error is not None:
        return
    assert images.dtype == np.uint8
    assert bits.shape == (images.shape[0],) and np.isfinite(bits).all() and (bits > 0).all()


@SLOW
@given(image=maybe_broken(hnp.arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 5))),
                          image_arrays(max_side=5).map(lambda a: a[0] if a.ndim >= 3 else a)))
def test_codec_round_trip(model, image):
    data, error = outcome(codec.compress, model, image)
    if error is not None:
        return
    decoded = codec.decompress(model, data)
    np.testing.assert_array_equal(decoded, image.reshape(image.shape[0], image.shape[1], -1))
    # A damaged file is refused with the codec's error, never decoded silently into another image.
    with pytest.raises(codec.CodecError):
        codec.decompress(model, data[:-1])


# ------------------------------------------------------------------ datasets
@FAST
@given(kwargs=arguments(
    num_images=(st.integers(0, 2), st.sampled_from([-1, 1.0, "2", None])),
    size=(st.one_of(st.integers(1, 12), st.tuples(st.integers(1, 9), st.integers(1, 9))),
          st.sampled_from([0, -3, "16", 4.0, (3, 4, 5), (0, 4), (4.0, 4), None])),
    min_radius=(st.floats(0.3, 8.0), st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e-9, "1"])),
    max_radius=(st.floats(0.5, 64.0), st.sampled_from([1e7, 1e300, math.inf, math.nan, -2.0])),
    exponent=(st.floats(-4.0, 6.0), st.sampled_from([math.nan, -300.0, 300.0, "3"])),
    noise_std=(st.floats(0.0, 0.2), st.sampled_from([-0.1, math.nan, "0"])),
    antialias=(st.booleans(), st.sampled_from(["False", 0, None])),
    dtype=(st.sampled_from([np.uint8, np.float32, np.float64, "uint8"]), st.sampled_from([np.int16, "no-such", None])),
    seed=(st.integers(0, 2 ** 32), st.sampled_from([-1, 1.5]))))
def test_dead_leaves_arguments(kwargs):
    images, error = outcome(image_data.dead_leaves, **kwargs)
    num_images, size, dtype = kwargs["num_images"], kwargs["size"], kwargs["dtype"]
    if error is not None:
        return
    height, width = (size, size) if isinstance(size, int) else size
    assert not (isinstance(num_images, bool) or isinstance(size, bool))
    assert images.shape == (num_images, height, width) and images.dtype == np.dtype(dtype)
    if images.dtype.kind == "f":
        assert np.isfinite(images).all() and images.min(initial=0) >= 0 and images.max(initial=0) <= 1


# ------------------------------------------------------------------ preprocessing
@FAST
@given(images=st.one_of(image_arrays(), image_arrays(channels=3)), channels=st.sampled_from([1, 3]),
       nb_size=st.sampled_from([None, 3, 5]), noise=st.booleans(), seed=seeds)
def test_prepare_images(images, channels, nb_size, noise, seed):
    prepared, error = outcome(preprocessing.prepare_images, images, channels, nb_size, noise=noise, seed=seed)
    if error is not None:
        return
    assert prepared.dtype == np.float32 and prepared.ndim == 4 and prepared.shape[-1] == channels
    assert prepared.shape[0] == images.shape[0] and prepared.shape[0] >= 1
    assert np.isfinite(prepared).all() and prepared.min(initial=0) >= 0 and prepared.max(initial=0) <= 1


@FAST
@given(images=image_arrays(), seed=seeds, noise=maybe_broken(st.booleans(), st.sampled_from([None, "no"])))
def test_dequantize_and_quantize(images, seed, noise):
    floats, error = outcome(preprocessing.dequantize, images, noise=noise, seed=seed)
    if error is None:
        floats = floats.numpy()
        assert images.dtype == np.uint8 and floats.shape == images.shape
        assert np.isfinite(floats).all() and floats.min(initial=0) >= 0 and floats.max(initial=0) <= 1
        centres = preprocessing.dequantize(images, noise=False).numpy()
        np.testing.assert_array_equal(preprocessing.quantize(centres), images)
    values, error = outcome(preprocessing.quantize, images)
    if error is None:
        assert values.dtype == np.uint8 and values.shape == images.shape


@FAST
@given(value=st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=2), st.none(),
                       st.booleans()),
       low=st.integers(-1, 2))
def test_check_integer(value, low):
    result, error = outcome(preprocessing.check_integer, "owner", "n", value, low)
    if error is None:
        assert isinstance(result, int) and result >= low and not isinstance(value, (bool, float, str))
    else:
        assert "owner: n must be an integer" in str(error)
