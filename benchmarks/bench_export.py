"""Throughput of the exported `log_likelihood_rate` signature next to the Python API, and sizes on disk.

One run, one model (RIDE with one spatial LSTM of 64 units by default, the
README's model size; whitening adapted to dead leaves, other weights at their
initial values: speed does not depend on them), images of 256 x 256 in
batches of 1 and 16:

  * Python API: `model.log_likelihood_rate(images, noise=False)` (NumPy in
    and out; it evaluates at most 2^17 pixels per graph call, 2 images of
    256 x 256);
  * SavedModel, TF2: the `log_likelihood_rate` signature of
    `tf.saved_model.load` (the whole batch in one call);
  * SavedModel, session: the same signature through the session-based loader
    that TF Serving uses (`tf.compat.v1.saved_model.loader.load`,
    `Session.run`), without TF Serving's network and (de)serialisation.

Each is warmed up once (tracing, graph optimisation), then the three are timed
in turn, `--repeats` rounds (so that a drift in the machine's speed affects
them alike); the median is reported as images per second, with its ratio to
the Python API at the same batch size.  The SavedModel's size on disk is printed
next to the `.keras` file's.

    .venv/bin/python benchmarks/bench_export.py
    .venv/bin/python benchmarks/bench_export.py --hiddens 16 --size 64 --repeats 2    # quick
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ride_tf import RIDE, data  # noqa: E402
from ride_tf.export import export_saved_model  # noqa: E402


def directory_size(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def median_seconds(functions, repeats):
    """Median seconds of each function, timed round-robin so that a drift in the machine's speed hits all alike."""
    for function in functions:
        function()                                # warm-up: tracing and graph optimisation
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, record in zip(functions, times):
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return [float(np.median(record)) for record in times]


def session_runner(path):
    """The signature through the session-based loader (as TF Serving): uint8 batch -> rates."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    signature = meta_graph.signature_def["log_likelihood_rate"]
    images = graph.get_tensor_by_name(signature.inputs["images"].name)
    rate = graph.get_tensor_by_name(signature.outputs["rate"].name)
    return lambda batch: session.run(rate, {images: batch})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hiddens", type=int, default=64)
    parser.add_argument("--size", type=int, default=256, help="image side (256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    model = RIDE(num_layers=args.layers, num_hiddens=args.hiddens)
    model.adapt(data.dead_leaves(4, size=64, seed=1, noise_std=0.02))
    images = data.dead_leaves(max(args.batches), size=args.size, seed=2, noise_std=0.02)[..., None]
    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "model.keras")
        saved_path = os.path.join(folder, "saved_model")
        model.save(keras_path)
        start = time.perf_counter()
        export_saved_model(model, saved_path)
        export_seconds = time.perf_counter() - start
        keras_bytes, saved_bytes = os.path.getsize(keras_path), directory_size(saved_path)
        variables_bytes = directory_size(os.path.join(saved_path, "variables"))
        graph_bytes = os.path.getsize(os.path.join(saved_path, "saved_model.pb"))

        loaded = tf.saved_model.load(saved_path)
        tf2 = loaded.signatures["log_likelihood_rate"]
        session = session_runner(saved_path)
        first = images[:1]
        python_rate = model.log_likelihood_rate(first, noise=False)
        for name, rate in [("TF2", tf2(images=tf.constant(first))["rate"].numpy()), ("session", session(first))]:
            gap = float(np.max(np.abs(rate - python_rate)))
            assert gap < 1e-4, f"{name}: the exported rate differs from the Python API's by {gap}"

        routes = [("Python API log_likelihood_rate", lambda b: model.log_likelihood_rate(b, noise=False)),
                  ("SavedModel, tf.saved_model.load", lambda b: tf2(images=tf.constant(b))["rate"].numpy()),
                  ("SavedModel, session (as TF Serving)", session)]
        print(f"RIDE {args.layers} layer(s), {args.hiddens} units, {model.count_params()} parameters; "
              f"images of {args.size} x {args.size}")
        print(f"{'route':38s} {'batch':>5s} {'images/s':>9s} {'vs Python API':>14s}")
        for batch_size in args.batches:
            batch = images[:batch_size]
            seconds = median_seconds([lambda f=function: f(batch) for _, function in routes], args.repeats)
            for (name, _), time_taken in zip(routes, seconds):
                print(f"{name:38s} {batch_size:5d} {batch_size / time_taken:9.2f} {seconds[0] / time_taken:14.2f}")
        print(f"size on disk: .keras {keras_bytes / 1e3:.0f} kB; SavedModel {saved_bytes / 1e3:.0f} kB "
              f"(saved_model.pb {graph_bytes / 1e3:.0f} kB, variables {variables_bytes / 1e3:.0f} kB); "
              f"export took {export_seconds:.1f} s")


if __name__ == "__main__":
    main()
