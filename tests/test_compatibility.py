"""Old import paths of moved code keep working: each names the same object as its new home."""
import importlib
import warnings

import pytest

MOVED = {
    "ride_tf.whitening": ("ride_tf.nn.whitening", ["ConditionalWhitening", "NotAdaptedError"]),
    "ride_tf.spatial_lstm": ("ride_tf.nn.spatial_lstm", ["SpatialLSTM", "CELLS", "DEFAULT_FORGET_BIAS"]),
    "ride_tf.mcgsm": ("ride_tf.nn.mcgsm", ["MCGSM", "MAX_LOG_SCALE"]),
    "ride_tf.distributions": ("ride_tf.nn.distributions", ["MCGSMDistribution"]),
    "ride_tf.finetune": ("ride_tf.training.finetune", ["finetune_mcgsm", "FinetuneResult"]),
    "ride_tf.checkpoint": ("ride_tf.training.checkpoint", ["TrainingCheckpoint", "FitCheckpoint"]),
    "ride_tf.sampling": ("ride_tf.wavefront.sampling", ["draws", "sample", "wavefront_sample", "sampler_graph", "ONE_MINUS"]),
    "ride_tf.inpainting": ("ride_tf.wavefront.inpainting", ["inpaint", "block_grid", "FLIPS"]),
    "ride_tf.datasets": ("ride_tf.data", ["dead_leaves", "dead_leaves_benchmark", "load_image", "load_bsds300",
                                          "read_iml", "gaussian_autoregressive", "DEAD_LEAVES_BENCHMARK"]),
    "ride_tf.data": ("ride_tf.data.streaming", ["image_files", "write_tfrecords", "streaming_patches"]),
    "ride_tf.training": ("ride_tf.training.recipe", ["train", "TrainingStage", "fit_baseline"]),
    "ride_tf.preprocessing": ("ride_tf.checks", ["check_images", "check_integer", "check_seed"]),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_import_path_gives_the_same_objects(old):
    new, names = MOVED[old]
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), (old, name)


def test_the_top_level_names_are_the_package_objects():
    import ride_tf
    from ride_tf.model import RIDE, load_model

    assert ride_tf.RIDE is RIDE and ride_tf.load_model is load_model
    assert callable(ride_tf.pretrained) and ride_tf.compress.__module__ == "ride_tf.codec.api"
    assert set(ride_tf.__all__) <= set(dir(ride_tf))


def test_the_deprecated_model_loader_still_loads_and_says_what_to_use():
    from ride_tf import io
    from ride_tf.model import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert io.load_ride_model is load_model
    assert any(issubclass(w.category, DeprecationWarning) and "ride_tf.load_model" in str(w.message)
               for w in caught)
