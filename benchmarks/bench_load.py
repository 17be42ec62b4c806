"""Load: a stream of 256 x 256 images through the Python API and the exported SavedModel, memory over the stream.

One run, one model (default `ride_tf.pretrained("gray")`, or a `.keras` file
with `--model`), `--num-images` uint8 dead-leaves images of 256 x 256
generated on the fly, `--batch-size` at a time (`ride_tf.data.dead_leaves`
with `first_index`, so the stream is never held in memory and both routes see
the same images).  Routes:

  * `python`: `model.log_likelihood_rate(batch, noise=False)`;
  * `savedmodel`: `tf.saved_model.load(dir).signatures["log_likelihood_rate"]
    (images=tf.constant(batch))["rate"]` on the SavedModel written by
    `ride_tf.export.export_saved_model(model, dir)` (the process running this
    route loads only the SavedModel, not the `.keras` model).

Each route runs in its own fresh process, one after the other, so that its
peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is its own.  After every
chunk (one batch) the process records the current RSS (`VmRSS` of
/proc/self/status) and the peak; the table shows them after 10 %, 50 % and
100 % of the stream and the growth of the current RSS from 10 % to 100 %
(flat memory: growth near 0).  Throughput is images per second of the model
calls over the whole stream (the first chunk, with tracing, included; the
image generation is not timed) and, in brackets, without the first chunk.
The two routes' rates on the first chunk must agree to 1e-5 bit/px.

    .venv/bin/python benchmarks/bench_load.py                          # 2000 images, batches of 16
    .venv/bin/python benchmarks/bench_load.py --num-images 64 --batch-size 8   # quick
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import numpy as np  # noqa: E402

from bench_large_images import rss_mb  # noqa: E402  (the script's folder is on sys.path)

ROUTES = ("python", "savedmodel")
SIZE = 256
SEED = 2024
TOLERANCE = 1e-5


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # kB on Linux


def load_model(path):
    import keras
    import ride_tf

    if path is None:
        return ride_tf.pretrained("gray")
    return keras.models.load_model(path, compile=False)


def chunk(start, count):
    """Images start .. start+count-1 of the stream: uint8 [count, 256, 256, 1]."""
    from ride_tf import data

    return data.dead_leaves(count, size=SIZE, seed=SEED, first_index=start)[..., None]


def run_route(args):
    """Child process: evaluate the stream through one route, print one JSON line."""
    import tensorflow as tf

    if args.child == "python":
        model = load_model(args.model)

        def evaluate(batch):
            return np.asarray(model.log_likelihood_rate(batch, noise=False))
    else:
        signature = tf.saved_model.load(args.saved_model).signatures["log_likelihood_rate"]

        def evaluate(batch):
            return signature(images=tf.constant(batch))["rate"].numpy()

    samples, first_rates = [], None
    model_seconds = generate_seconds = first_seconds = 0.0
    done = 0
    start_rss = rss_mb()
    while done < args.num_images:
        count = min(args.batch_size, args.num_images - done)
        tic = time.perf_counter()
        batch = chunk(done, count)
        generate_seconds += time.perf_counter() - tic
        tic = time.perf_counter()
        rates = evaluate(batch)
        seconds = time.perf_counter() - tic
        model_seconds += seconds
        if first_rates is None:
            first_rates, first_seconds = rates.tolist(), seconds
            if not np.all(np.isfinite(rates)):
                raise FloatingPointError(f"{args.child}: non-finite rates on the first chunk")
        done += count
        del batch, rates
        samples.append((done, rss_mb(), peak_rss_mb()))
    print(json.dumps({"route": args.child, "images": done, "model_seconds": model_seconds,
                      "first_seconds": first_seconds, "first_count": min(args.batch_size, done),
                      "generate_seconds": generate_seconds, "start_rss": start_rss,
                      "samples": samples, "first_rates": first_rates}), flush=True)


def at_fraction(samples, total, fraction):
    """The first sample taken once `fraction` of the stream was evaluated."""
    for sample in samples:
        if sample[0] >= fraction * total:
            return sample
    return samples[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=None, help="a .keras file (default: ride_tf.pretrained('gray'))")
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    parser.add_argument("--child", choices=ROUTES, help=argparse.SUPPRESS)
    parser.add_argument("--saved-model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.num_images < 1 or args.batch_size < 1:
        parser.error("--num-images and --batch-size must be >= 1")
    if args.child:
        return run_route(args)

    workdir = tempfile.mkdtemp(prefix="bench_load_")
    try:
        model = load_model(args.model)
        name = args.model or 'ride_tf.pretrained("gray")'
        print(f"model {name}: {model.num_layers} layer(s), {model.num_hiddens} units, "
              f"{model.count_params()} parameters", flush=True)
        print(f"stream: {args.num_images} dead-leaves images of {SIZE} x {SIZE} uint8, "
              f"generated on the fly in batches of {args.batch_size}; each route in a fresh process", flush=True)
        saved_model = os.path.join(workdir, "saved_model")
        if "savedmodel" in args.routes:
            from ride_tf.export import export_saved_model

            export_saved_model(model, saved_model)
        del model
        results = {}
        for route in args.routes:
            command = [sys.executable, os.path.abspath(__file__), "--child", route,
                       "--num-images", str(args.num_images), "--batch-size", str(args.batch_size),
                       "--saved-model", saved_model]
            if args.model:
                command += ["--model", args.model]
            tic = time.perf_counter()
            completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)
            if completed.returncode != 0:
                raise SystemExit(f"route {route} failed (exit status {completed.returncode})")
            results[route] = json.loads(completed.stdout.strip().splitlines()[-1])
            print(f"  {route}: done in {time.perf_counter() - tic:.0f} s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'route':<11} {'images/s':>8} {'(w/o 1st)':>9}   {'RSS MB at 10%':>13} {'50%':>7} {'100%':>7}"
          f"   {'growth 10->100%':>15}   {'peak RSS MB':>11}")
    for route, result in results.items():
        samples, total = result["samples"], result["images"]
        rate = total / result["model_seconds"]
        rest = result["model_seconds"] - result["first_seconds"]
        rest_rate = (total - result["first_count"]) / rest if rest > 0 else float("nan")
        r10, r50, r100 = (at_fraction(samples, total, f) for f in (0.1, 0.5, 1.0))
        print(f"{route:<11} {rate:8.2f} {rest_rate:9.2f}   {r10[1]:13.0f} {r50[1]:7.0f} {r100[1]:7.0f}"
              f"   {r100[1] - r10[1]:+12.1f} MB   {samples[-1][2]:11.0f}")
    print("peak RSS (ru_maxrss) at 10/50/100%: " + "; ".join(
        f"{route} " + " / ".join(f"{at_fraction(r['samples'], r['images'], f)[2]:.0f}" for f in (0.1, 0.5, 1.0))
        + " MB" for route, r in results.items()))
    print("image generation (untimed above): " + "; ".join(
        f"{route} {r['generate_seconds']:.0f} s" for route, r in results.items()))
    if len(results) == 2:
        a, b = (np.array(results[route]["first_rates"]) for route in ROUTES)
        difference = float(np.max(np.abs(a - b)))
        status = "OK" if difference <= TOLERANCE else "MISMATCH"
        print(f"first chunk: max |python - savedmodel| rate = {difference:.2e} bit/px "
              f"(tolerance {TOLERANCE:g}) {status}; mean rate {a.mean():.4f} bit/px")
        if difference > TOLERANCE:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
