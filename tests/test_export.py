"""Tests of the SavedModel export (`ride_tf.export`) and the deployment material in export/.

A tiny model is exported once per session.  `saved_model_probe.py` runs it in
one subprocess where `ride_tf` and TensorFlow Probability cannot be imported:
through `tf.saved_model.load`, through the session-based loader that TF Serving
and saved_model_cli use (fed the requests of export/rest_client.py and
export/grpc_client.py), through saved_model_cli, and through an in-process
gRPC PredictionService.  The tests below check what it recorded against the
Python API's numbers, computed here.
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from ride_tf import RIDE, data
from ride_tf.codec import compressed_size_bits
from ride_tf.export import SIGNATURES, _versions, export_command, export_saved_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT_DIR = os.path.join(ROOT, "export")
sys.path.insert(0, EXPORT_DIR)
import grpc_client  # noqa: E402
import rest_client  # noqa: E402
import ride_signatures  # noqa: E402

SAMPLE = dict(num_samples=2, height=6, width=7, seed=5)
IMAGE_SIGNATURES = [s for s in SIGNATURES if s != "sample"]
ROUTES = ["tf2", "rest_inputs", "rest_instances", "grpc", "cli"]


def tiny_model():
    keras.utils.set_random_seed(0)
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=4)
    model.adapt(data.dead_leaves(4, size=24, seed=1, noise_std=0.02))
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:       # non-trivial gates and mixtures
        v.assign(v.numpy() + 0.3 * rng.standard_normal(v.shape))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The model, its .keras file, `ride-tf export`'s DIR/N, the Python API's numbers and the probe's records."""
    folder = tmp_path_factory.mktemp("export")
    model = tiny_model()
    model.save(str(folder / "model.keras"))
    base = folder / "models" / "ride"
    os.makedirs(base / "3")                    # an existing version: the next one is 4
    saved = export_command(str(folder / "model.keras"), str(base))

    images = data.dead_leaves(3, size=(10, 13), seed=2, noise_std=0.02)[..., None]
    reference = {"images": images, **{f"sample_{k}": v for k, v in SAMPLE.items()}}
    rate = model.log_likelihood_rate(images, noise=False)
    rate_valid = model.log_likelihood_rate(images, noise=False, region="valid")
    for name in ("serving_default", "log_likelihood_rate"):
        reference[f"{name}/rate"], reference[f"{name}/rate_valid"] = rate, rate_valid
    reference["log_prob/log_prob"] = model.log_prob(images, noise=False)
    reference["pixel_log_prob/pixel_log_prob"] = model.pixel_log_prob(images, noise=False)
    reference["compressed_size/bits"] = compressed_size_bits(model, images)
    reference["sample/images"] = model.sample(SAMPLE["num_samples"], SAMPLE["height"], SAMPLE["width"],
                                              seed=SAMPLE["seed"])
    np.savez(folder / "reference.npz", **reference)

    out = folder / "probe"
    out.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    process = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "saved_model_probe.py"), saved,
                              str(folder / "reference.npz"), str(out), EXPORT_DIR],
                             capture_output=True, text=True, env=env, cwd=str(folder), timeout=600)
    assert process.returncode == 0, process.stderr[-4000:]
    with open(out / "errors.json") as file:
        errors = json.load(file)
    crashes = {k: v[1] for k, v in errors.items() if k.startswith("crash/")}
    assert not crashes, "\n".join(crashes.values())
    with open(out / "meta.json") as file:
        meta = json.load(file)
    return dict(model=model, folder=folder, base=base, saved=saved, reference=reference, errors=errors,
                meta=meta, results=dict(np.load(out / "results.npz")))


# ------------------------------------------------------------------ writing
def test_export_command_writes_the_next_version_atomically(exported):
    base = exported["base"]
    assert exported["saved"] == str(base / "4")
    assert os.path.isfile(base / "4" / "saved_model.pb") and os.path.isdir(base / "4" / "variables")
    assert sorted(os.listdir(base)) == ["3", "4"]               # no temporary directory left behind
    assert _versions(str(base)) == [3, 4]


def test_export_command_refuses_bad_input(exported, tmp_path):
    folder = exported["folder"]
    with pytest.raises(ValueError, match="version 4 already exists"):
        export_command(str(folder / "model.keras"), str(exported["base"]), version=4)
    with pytest.raises(ValueError, match="no such model file"):
        export_command(str(tmp_path / "missing.keras"), str(tmp_path / "out"))
    (tmp_path / "bad.keras").write_text("not a model")
    with pytest.raises(ValueError, match="not a ride-tf model file"):
        export_command(str(tmp_path / "bad.keras"), str(tmp_path / "out"))
    for version in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="version must be a positive integer"):
            export_command(str(folder / "model.keras"), str(tmp_path / "out"), version=version)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        export_command(str(folder / "model.keras"), str(tmp_path / "file"))
    assert not (tmp_path / "out").exists()


def test_export_saved_model_refuses_other_models_and_used_directories(exported, tmp_path):
    with pytest.raises(ValueError, match="model must be a ride_tf.RIDE"):
        export_saved_model(keras.Sequential([keras.layers.Dense(1)]), str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(ValueError, match="exists and is not an empty directory"):
        export_saved_model(exported["model"], str(tmp_path / "b"))
    with pytest.raises(ValueError, match="max_sample_pixels"):
        export_saved_model(exported["model"], str(tmp_path / "c"), max_sample_pixels=0)


# ------------------------------------------------------- the signature defs
EXPECTED_SIGNATURES = {
    "log_likelihood_rate": ({"images": ["uint8", [-1, -1, -1, 1]]},
                            {"rate": ["float32", [-1]], "rate_valid": ["float32", [-1]]}),
    "log_prob": ({"images": ["uint8", [-1, -1, -1, 1]]}, {"log_prob": ["float64", [-1]]}),
    "pixel_log_prob": ({"images": ["uint8", [-1, -1, -1, 1]]}, {"pixel_log_prob": ["float32", [-1, -1, -1]]}),
    "compressed_size": ({"images": ["uint8", [-1, -1, -1, 1]]}, {"bits": ["float64", [-1]]}),
    "sample": ({name: ["int32", []] for name in ("num_samples", "height", "width", "seed")},
               {"images": ["uint8", [-1, -1, -1, 1]]}),
}
EXPECTED_SIGNATURES["serving_default"] = EXPECTED_SIGNATURES["log_likelihood_rate"]


def test_signature_defs_have_the_documented_names_dtypes_and_shapes(exported):
    defs = exported["meta"]["signature_defs"]
    assert set(defs) == set(SIGNATURES) == set(exported["meta"]["tf2_signatures"])
    for name, (inputs, outputs) in EXPECTED_SIGNATURES.items():
        assert defs[name] == {"inputs": inputs, "outputs": outputs}, name
    # The clients' table agrees with the export.
    for name in defs:
        table_inputs, table_outputs = ride_signatures.SIGNATURES[name]
        assert {k: v[0] for k, v in defs[name]["inputs"].items()} == {k: v[0] for k, v in table_inputs.items()}
        assert {k: len(v[1]) for k, v in defs[name]["inputs"].items()} == {k: v[1] for k, v in
                                                                          table_inputs.items()}
        assert {k: v[0] for k, v in defs[name]["outputs"].items()} == table_outputs


def test_saved_model_cli_show_lists_every_signature(exported):
    text = exported["meta"]["show_all"]
    for name, (inputs, outputs) in EXPECTED_SIGNATURES.items():
        block = text.split(f"signature_def['{name}']:")[1].split("signature_def[")[0]
        for key, (dtype, shape) in {**inputs, **outputs}.items():
            dtype_name = {"uint8": "DT_UINT8", "int32": "DT_INT32", "float32": "DT_FLOAT",
                          "float64": "DT_DOUBLE"}[dtype]
            shape_text = "()" if not shape else "(" + ", ".join(str(d) for d in shape) + ")"
            assert f"['{key}'] tensor_info:\n        dtype: {dtype_name}\n        shape: {shape_text}" in block, \
                (name, key, block)
        assert "Method name is: tensorflow/serving/predict" in block


# ------------------------------------------------- the numbers of each route
def test_the_probe_could_not_import_ride_tf_or_tfp(exported):
    for package in ("ride_tf", "tensorflow_probability"):
        assert exported["meta"][f"import {package}"][0] in ("ImportError", "ModuleNotFoundError")


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_gives_the_python_api_numbers(exported, route):
    """Rates to 1e-5 bit/px, log-probs and maps to float32 round-off, samples identical."""
    results, reference = exported["results"], exported["reference"]
    for signature in SIGNATURES:
        if route == "rest_instances" and signature == "sample":
            continue                                  # scalar inputs have no row format
        for output in EXPECTED_SIGNATURES[signature][1]:
            got, want = results[f"{route}/{signature}/{output}"], reference[f"{signature}/{output}"]
            assert got.dtype.name == EXPECTED_SIGNATURES[signature][1][output][0], (signature, output)
            assert got.shape == want.shape, (signature, output)
            if signature == "sample":
                np.testing.assert_array_equal(got, want)
            elif output.startswith("rate"):
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
            elif output == "bits":
                np.testing.assert_allclose(got, want, rtol=1e-9)      # float64 throughout
            else:
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert reference["sample/images"].std() > 5          # the samples are not trivial


def test_client_requests_match_the_signature_defs(exported):
    mismatches = exported["meta"]["request_mismatches"]
    assert len(mismatches) == 4 * len(IMAGE_SIGNATURES) + 3
    assert all(problems == [] for problems in mismatches.values()), mismatches


def test_grpc_client_against_a_prediction_service(exported):
    if exported["meta"]["grpc_server"] != "ran":
        pytest.skip(exported["meta"]["grpc_server"])
    results, reference = exported["results"], exported["reference"]
    np.testing.assert_allclose(results["grpc_server/serving_default/rate"], reference["serving_default/rate"],
                               rtol=0, atol=1e-5)
    np.testing.assert_array_equal(results["grpc_server/sample/images"], reference["sample/images"])
    kind, message = exported["errors"]["grpc_server/zero_samples"]
    assert kind == "RuntimeError" and message.startswith("INVALID_ARGUMENT: ")
    assert "sample: num_samples must be >= 1, got] [0]" in message


# ------------------------------------------------------------ bad requests
BAD_REQUESTS = {
    # case: what the message must contain (all are INVALID_ARGUMENT)
    "float_images": "Expects arg[0] to be uint8 but float is provided",
    "int32_images": "Expects arg[0] to be uint8 but int32 is provided",
    "rank3_images": "[3,10,13] is not compatible with expected shape [?,?,?,1]",
    "rank5_images": "[3,10,13,1,1] is not compatible with expected shape [?,?,?,1]",
    "three_channels": "[3,10,13,3] is not compatible with expected shape [?,?,?,1]",
    "empty_batch": "log_prob: the batch is empty",
    "empty_image": "pixel_log_prob: images must be at least 1 x 1 pixels, got] [0] [x] [13]",
    "empty_image_bits": "compressed_size: images must be at least 1 x 1 pixels, got] [10] [x] [0]",
    "too_small_for_rate": "log_likelihood_rate: images must be at least 3 x 5 pixels (the valid region",
    "zero_samples": "sample: num_samples must be >= 1, got] [0]",
    "negative_width": "sample: width must be >= 1, got] [-2]",
    "vector_num_samples": "[1] is not compatible with expected shape []",
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_fail_with_invalid_argument_as_in_tf_serving(exported, case):
    """Through Session::Run, which like TF Serving checks neither dtype nor shape before the graph."""
    kind, message = exported["errors"][f"session/{case}"]
    assert kind == "InvalidArgumentError", (kind, message)
    assert BAD_REQUESTS[case] in message, message


def test_bad_requests_through_the_tf2_loader_and_saved_model_cli(exported):
    errors = exported["errors"]
    expected = {
        "empty_batch": "log_prob: the batch is empty",
        "too_small_for_rate": "images must be at least 3 x 5 pixels",
        "zero_samples": "num_samples must be >= 1",
        "negative_height": "sample: height must be >= 1, got] [-3]",
        "zero_width": "sample: width must be >= 1, got] [0]",
        "too_many_pixels": "sample: num_samples x height x width =] [25000000] [pixels exceeds the limit of "
                           "this export, 16777216",
    }
    for case, text in expected.items():
        kind, message = errors[f"tf2/{case}"]
        assert kind == "InvalidArgumentError" and text in message, (case, message)
    for case, text in [("float_images", "was expected to be a uint8 tensor but is a float tensor"),
                       ("int32_images", "was expected to be a uint8 tensor but is a int32 tensor"),
                       ("rank3_images", "[3,10,13] is not compatible with expected shape [?,?,?,1]")]:
        kind, message = errors[f"tf2/{case}"]
        assert kind == "InvalidArgumentError" and text in message, (case, message)
    kind, message = errors["cli/zero_samples"]
    assert kind == "InvalidArgumentError" and "sample: num_samples must be >= 1" in message
    # After the failed requests the same session still answers.
    np.testing.assert_allclose(exported["results"]["session_after_errors/log_prob/log_prob"],
                               exported["reference"]["log_prob/log_prob"], rtol=1e-5)


# ------------------------------------------------------ the clients alone
def test_rest_requests_and_responses(exported):
    images = exported["reference"]["images"]
    body = rest_client.build_request("log_prob", images[..., 0])            # [N, H, W] gets C = 1
    assert body == {"signature_name": "log_prob", "inputs": {"images": images.tolist()}}
    assert rest_client.build_request(images=images, layout="instances")["instances"] == images.tolist()
    assert rest_client.build_request("sample", num_samples=2, height=3, width=4, seed=-1) == {
        "signature_name": "sample", "inputs": {"num_samples": 2, "height": 3, "width": 4, "seed": -1}}
    for kwargs, text in [(dict(signature="sample", num_samples=2, height=3, width=4, layout="instances"),
                          "only the 'inputs' format"),
                         (dict(signature="nope", images=images), "unknown signature"),
                         (dict(signature="log_prob"), "needs images"),
                         (dict(images=images.astype(np.float32)), "must be uint8"),
                         (dict(signature="sample", num_samples=2.0, height=3, width=4), "must be an integer"),
                         (dict(signature="sample", num_samples=1, height=2 ** 31, width=4), "int32")]:
        with pytest.raises(ValueError, match=text):
            rest_client.build_request(**kwargs)
    assert rest_client.predict_url("http://h:8501/", "ride", 4) == "http://h:8501/v1/models/ride/versions/4:predict"
    # TF Serving's response formats (api_rest.md): one output is not keyed by name.
    rates = rest_client.parse_response("serving_default", {"outputs": {"rate": [1.5, 2], "rate_valid": [1, 2]}})
    assert rates["rate"].dtype == np.float32 and rates["rate_valid"].tolist() == [1, 2]
    rows = rest_client.parse_response("serving_default", {"predictions": [{"rate": 1, "rate_valid": 2},
                                                                          {"rate": 3, "rate_valid": 4}]},
                                      layout="instances")
    assert rows["rate"].tolist() == [1, 3] and rows["rate_valid"].tolist() == [2, 4]
    assert rest_client.parse_response("log_prob", {"outputs": [1.0, 2.0]})["log_prob"].dtype == np.float64
    assert rest_client.parse_response("sample", {"outputs": [[[[3]]]]})["images"].dtype == np.uint8
    with pytest.raises(RuntimeError, match="sample: num_samples"):
        rest_client.parse_response("sample", {"error": "assertion failed: [sample: num_samples must be >= 1"})


def test_clients_read_image_files(exported, tmp_path):
    from PIL import Image

    images = exported["reference"]["images"]
    paths = []
    for k, image in enumerate(images):
        paths.append(str(tmp_path / f"im{k}.png"))
        Image.fromarray(image[..., 0]).save(paths[-1])
    np.testing.assert_array_equal(ride_signatures.load_images(paths), images)
    assert ride_signatures.load_images(paths[:1], mode="rgb").shape == (1, 10, 13, 3)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="one size"):
        ride_signatures.load_images(paths + [str(tmp_path / "small.png")])
    with pytest.raises(ValueError, match="no such file"):
        ride_signatures.load_images([str(tmp_path / "missing.png")])
    protos = grpc_client.build_inputs("pixel_log_prob", images)
    assert list(protos) == ["images"] and [d.size for d in protos["images"].tensor_shape.dim] == [3, 10, 13, 1]


def test_models_config_is_a_model_server_config():
    text_format = pytest.importorskip("google.protobuf.text_format")
    config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    with open(os.path.join(EXPORT_DIR, "models.config")) as file:
        config = text_format.Parse(file.read(), config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "ride" and model.base_path == "/models/ride" and model.model_platform == "tensorflow"
    assert list(model.model_version_policy.specific.versions) == [1]
