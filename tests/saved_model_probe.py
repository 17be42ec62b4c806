"""Runs an exported ride-tf SavedModel the ways a deployment does; started by test_export.py in a subprocess.

    python saved_model_probe.py SAVED_MODEL REFERENCE.npz OUTPUT_DIR EXPORT_DIR

Importing `ride_tf` or `tensorflow_probability` raises ImportError in this
process, as on a serving machine that has neither.  It runs every signature
through

  * `tf.saved_model.load` (TF2),
  * the session-based loader that TF Serving and saved_model_cli use, fed the
    requests of export/rest_client.py (both JSON formats, decoded as TF Serving
    decodes them) and export/grpc_client.py (TensorProtos), through
    `Session._do_run`, which like TF Serving's C++ Session::Run feeds the
    tensors without comparing their dtype or shape with the signature,
  * `saved_model_cli show --all` and `saved_model_cli run` (its entry point,
    called in this process to save TensorFlow's start-up per signature),
  * grpc_client.predict against an in-process PredictionService backed by the
    session (when tensorflow-serving-api is installed),

and bad requests through each.  It writes OUTPUT_DIR/results.npz (outputs,
keyed "route/signature/output"), errors.json ("route/case": [error type,
message], or null when no error was raised) and meta.json (the SignatureDefs,
the `show --all` text, what could not be imported).
"""
import contextlib
import io
import json
import os
import sys
import time
import traceback

import numpy as np

BLOCKED = ("ride_tf", "tensorflow_probability")


class _Blocker:
    """A sys.meta_path finder that refuses the packages of a training machine."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on this serving machine (blocked by the test)")
        return None


sys.meta_path.insert(0, _Blocker())

import tensorflow as tf  # noqa: E402

SAVED, REFERENCE, OUT, EXPORT_DIR = sys.argv[1:5]
sys.path.insert(0, EXPORT_DIR)
import grpc_client  # noqa: E402
import rest_client  # noqa: E402

reference = np.load(REFERENCE)
images = reference["images"]
sample_args = {name: int(reference[f"sample_{name}"]) for name in ("num_samples", "height", "width", "seed")}
results, errors, meta = {}, {}, {}


def error_of(function):
    """[error type, message] of what `function` raises, or None."""
    try:
        function()
    except Exception as error:   # the test wants to see every kind
        return [type(error).__name__, getattr(error, "message", None) or str(error)]
    return None


@contextlib.contextmanager
def section(name):
    """Record a crash of one part as an error, so that the others still run; time each part."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        errors[f"crash/{name}"] = ["crash", traceback.format_exc()]
    meta.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 2)


def store(route, signature, outputs):
    for key, value in outputs.items():
        results[f"{route}/{signature}/{key}"] = np.asarray(value)


for package in BLOCKED:
    meta[f"import {package}"] = error_of(lambda: __import__(package))

# ------------------------------------------------------------------ TF2 loader
with section("tf2"):
    loaded = tf.saved_model.load(SAVED)
    meta["tf2_signatures"] = sorted(loaded.signatures)
    for signature in loaded.signatures:
        function = loaded.signatures[signature]
        if signature == "sample":
            store("tf2", signature, function(**{k: tf.constant(v, tf.int32) for k, v in sample_args.items()}))
        else:
            store("tf2", signature, function(images=tf.constant(images)))
    rate, sample_fn, log_prob = (loaded.signatures[s] for s in ("log_likelihood_rate", "sample", "log_prob"))
    scalars = lambda n, h, w, s: {k: tf.constant(v, tf.int32) for k, v in
                                  zip(("num_samples", "height", "width", "seed"), (n, h, w, s))}
    for case, function in {
        "empty_batch": lambda: log_prob(images=tf.constant(images[:0])),
        "too_small_for_rate": lambda: rate(images=tf.constant(images[:, :2, :4])),
        "zero_samples": lambda: sample_fn(**scalars(0, 5, 5, 1)),
        "negative_height": lambda: sample_fn(**scalars(1, -3, 5, 1)),
        "zero_width": lambda: sample_fn(**scalars(1, 5, 0, 1)),
        "too_many_pixels": lambda: sample_fn(**scalars(1, 5000, 5000, 0)),
        "float_images": lambda: rate(images=tf.constant(images.astype(np.float32) / 255)),
        "int32_images": lambda: rate(images=tf.constant(images.astype(np.int32))),
        "rank3_images": lambda: rate(images=tf.constant(images[..., 0])),
    }.items():
        errors[f"tf2/{case}"] = error_of(function)

# ------------------------------------------------------- session-based loader
graph = tf.Graph()
session = tf.compat.v1.Session(graph=graph)
with section("session"):
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], SAVED)
    signature_defs = {}
    for name, signature_def in meta_graph.signature_def.items():
        if name.startswith("__"):
            continue
        signature_defs[name] = {
            kind: {key: [tf.dtypes.as_dtype(info.dtype).name,
                         None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]]
                   for key, info in getattr(signature_def, kind).items()}
            for kind in ("inputs", "outputs")}
    meta["signature_defs"] = signature_defs


def session_run(signature, feeds):
    """Run one signature as TF Serving does: the fed arrays go to Session::Run unconverted."""
    signature_def = meta_graph.signature_def[signature]
    names = sorted(signature_def.outputs)
    fetches = [graph.get_tensor_by_name(signature_def.outputs[n].name) for n in names]
    feed_dict = {graph.get_tensor_by_name(signature_def.inputs[k].name).ref(): v for k, v in feeds.items()}
    return dict(zip(names, session._do_run(None, [], fetches, feed_dict, None, None)))


def matches_signature(signature, arrays):
    """[] if the arrays' names, dtypes and shapes fit the SignatureDef, else the mismatches."""
    expected = signature_defs[signature]["inputs"]
    problems = [] if set(arrays) == set(expected) else [f"names {sorted(arrays)} != {sorted(expected)}"]
    for name, array in arrays.items():
        dtype, shape = expected.get(name, (None, None))
        if array.dtype.name != dtype:
            problems.append(f"{name}: dtype {array.dtype.name} != {dtype}")
        if shape is not None and (array.ndim != len(shape) or
                                  any(d != -1 and d != a for d, a in zip(shape, array.shape))):
            problems.append(f"{name}: shape {array.shape} does not fit {shape}")
    return problems


def decode_json_request(signature, body):
    """A REST body decoded as TF Serving decodes it: JSON numbers -> arrays of the signature's dtypes."""
    body = json.loads(json.dumps(body))
    dtypes = {name: spec[0] for name, spec in signature_defs[signature]["inputs"].items()}
    if "instances" in body:
        (name,) = dtypes    # one named input: each instance is that input's value
        return {name: np.asarray(body["instances"], dtype=dtypes[name])}
    return {name: np.asarray(value, dtype=dtypes[name]) for name, value in body["inputs"].items()}


with section("clients"):
    mismatches = {}
    for signature in signature_defs:
        formats = ["inputs"] if signature == "sample" else ["inputs", "instances"]
        for layout in formats:
            if signature == "sample":
                body = rest_client.build_request("sample", **sample_args)
            else:
                body = rest_client.build_request(signature, images, layout=layout)
            feeds = decode_json_request(signature, body)
            mismatches[f"rest_{layout}/{signature}"] = matches_signature(signature, feeds)
            store(f"rest_{layout}", signature, session_run(signature, feeds))
        if signature == "sample":
            protos = grpc_client.build_inputs("sample", **sample_args)
        else:
            protos = grpc_client.build_inputs(signature, images)
        feeds = {name: tf.make_ndarray(proto) for name, proto in protos.items()}
        mismatches[f"grpc/{signature}"] = matches_signature(signature, feeds)
        mismatches[f"grpc/{signature}/proto dtypes"] = [
            name for name, proto in protos.items()
            if tf.dtypes.as_dtype(proto.dtype).name != signature_defs[signature]["inputs"][name][0]]
        store("grpc", signature, session_run(signature, feeds))
    meta["request_mismatches"] = mismatches

with section("session_bad_requests"):
    int32 = np.int32
    for case, (signature, feeds) in {
        "float_images": ("log_likelihood_rate", {"images": images.astype(np.float32) / 255}),
        "int32_images": ("log_prob", {"images": images.astype(np.int32)}),
        "rank3_images": ("pixel_log_prob", {"images": images[..., 0]}),
        "rank5_images": ("log_likelihood_rate", {"images": images[..., None]}),
        "three_channels": ("log_likelihood_rate", {"images": np.repeat(images, 3, axis=-1)}),
        "empty_batch": ("log_prob", {"images": images[:0]}),
        "empty_image": ("pixel_log_prob", {"images": images[:, :0]}),
        "empty_image_bits": ("compressed_size", {"images": images[:, :, :0]}),
        "too_small_for_rate": ("serving_default", {"images": images[:, :2, :4]}),
        "zero_samples": ("sample", dict(num_samples=int32(0), height=int32(4), width=int32(4), seed=int32(0))),
        "negative_width": ("sample", dict(num_samples=int32(1), height=int32(4), width=int32(-2), seed=int32(0))),
        "vector_num_samples": ("sample", dict(num_samples=np.array([2], int32), height=int32(4), width=int32(4),
                                              seed=int32(0))),
    }.items():
        errors[f"session/{case}"] = error_of(lambda: session_run(signature, feeds))
    # A request the checks let through still runs afterwards (no state was damaged).
    store("session_after_errors", "log_prob", session_run("log_prob", {"images": images}))

# ------------------------------------------------------------ saved_model_cli
with section("saved_model_cli"):
    from tensorflow.python.tools import saved_model_cli

    def cli(*argv):
        """saved_model_cli's entry point (what the console script calls), in this process; returns stdout."""
        sys.argv = ["saved_model_cli", *argv]
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            try:
                saved_model_cli.main()
            except SystemExit as stop:
                if stop.code not in (None, 0):
                    raise RuntimeError(f"saved_model_cli exited with {stop.code}") from None
        return stdout.getvalue()

    meta["show_all"] = cli("show", "--dir", SAVED, "--all")
    literal = json.dumps(images.tolist(), separators=(",", ":"))
    for signature in signature_defs:
        if signature == "sample":
            expression = ";".join(f"{k}={v}" for k, v in sample_args.items())
        else:
            expression = f"images={literal}"
        outdir = os.path.join(OUT, "cli", signature)
        cli("run", "--dir", SAVED, "--tag_set", "serve", "--signature_def", signature, "--input_exprs", expression,
            "--outdir", outdir)
        store("cli", signature, {name[:-4]: np.load(os.path.join(outdir, name)) for name in os.listdir(outdir)})
    errors["cli/zero_samples"] = error_of(lambda: cli(
        "run", "--dir", SAVED, "--tag_set", "serve", "--signature_def", "sample",
        "--input_exprs", "num_samples=0;height=4;width=4;seed=0"))

# ----------------------------------- grpc_client against an in-process server
with section("grpc_server"):
    try:
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as error:
        meta["grpc_server"] = f"skipped: {error}"
    else:
        from concurrent import futures

        class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
            """Predict as TF Serving runs it: signature lookup, TensorProtos in, Session::Run, TensorProtos out."""

            def Predict(self, request, context):
                signature = request.model_spec.signature_name or "serving_default"
                feeds = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
                try:
                    outputs = session_run(signature, feeds)
                except tf.errors.InvalidArgumentError as error:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
                response = predict_pb2.PredictResponse()
                response.model_spec.CopyFrom(request.model_spec)
                for name, value in outputs.items():
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
                return response

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(), server)
        port = server.add_insecure_port("localhost:0")
        server.start()
        target = f"localhost:{port}"
        store("grpc_server", "serving_default",
              grpc_client.predict(target, "ride", "serving_default", grpc_client.build_inputs(images=images)))
        store("grpc_server", "sample",
              grpc_client.predict(target, "ride", "sample", grpc_client.build_inputs("sample", **sample_args)))
        errors["grpc_server/zero_samples"] = error_of(lambda: grpc_client.predict(
            target, "ride", "sample", grpc_client.build_inputs("sample", num_samples=0, height=4, width=4)))
        server.stop(None)
        meta["grpc_server"] = "ran"

np.savez(os.path.join(OUT, "results.npz"), **results)
with open(os.path.join(OUT, "errors.json"), "w") as file:
    json.dump(errors, file, indent=1)
with open(os.path.join(OUT, "meta.json"), "w") as file:
    json.dump(meta, file, indent=1)
