"""Benchmark: the spatial LSTM against its matrix-product roofline.

For each case, the spatial LSTM's time is compared with plain matrix
products doing the same number of useful FLOPs: forward, one
``tf.matmul`` of [pixels, D + 2U] x [D + 2U, 5U] (= 2 * pixels * (D + 2U)
* 5U FLOPs); forward + backward, three such products (forward, gradient
w.r.t. the inputs, gradient w.r.t. the weights).  The ratio
roofline_time / lstm_time is printed (1.0 would be as fast as one big
matmul).

Every measurement runs in its own process (two benchmarks in one process
slow each other down), in ``tf.function`` graph mode without XLA, with
warm-up and the median of several repeats.  Device placement is automatic,
so the script runs unchanged on a GPU.

    .venv/bin/python benchmarks/bench_spatial_lstm.py
    .venv/bin/python benchmarks/bench_spatial_lstm.py --intra 1 --inter 2
    .venv/bin/python benchmarks/bench_spatial_lstm.py --cases fwd_u64 --repeats 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (batch, H, W, D, U, backward, target ratio)
CASES = {
    "fwd_u64": (8, 256, 256, 12, 64, False, 0.33),
    "fwd_u128": (8, 256, 256, 12, 128, False, 0.6),
    "train_u64": (50, 22, 22, 12, 64, True, 0.35),
}


def _worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if REPO not in sys.path:
        sys.path.append(REPO)
    import numpy as np
    import tensorflow as tf

    if args.intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    if args.inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)

    batch, height, width, depth, units, backward, _ = CASES[args.case]
    pixels = batch * height * width
    rng = np.random.default_rng(0)
    on_gpu = bool(tf.config.list_logical_devices("GPU"))

    if args.worker == "lstm":
        from ride_tf.spatial_lstm import SpatialLSTM

        layer = SpatialLSTM(units, parallel_loops=args.loops)
        layer.build((None, None, None, depth))
        x = tf.constant(rng.standard_normal((batch, height, width, depth)), tf.float32)
        spec = [tf.TensorSpec([None, None, None, depth], tf.float32)]
        if backward:
            r = tf.constant(rng.standard_normal((batch, height, width, units)), tf.float32)

            @tf.function(input_signature=spec, jit_compile=False)
            def fn(x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(layer(x) * r)
                return tape.gradient(loss, layer.trainable_variables)
        else:
            @tf.function(input_signature=spec, jit_compile=False)
            def fn(x):
                return layer(x)
        call = lambda: fn(x)
    else:
        k = depth + 2 * units
        a = tf.constant(rng.standard_normal((pixels, k)), tf.float32)
        w = tf.constant(rng.standard_normal((k, 5 * units)), tf.float32)
        g = tf.constant(rng.standard_normal((pixels, 5 * units)), tf.float32)
        if backward:
            @tf.function(jit_compile=False)
            def fn(a, w, g):
                return (tf.matmul(a, w), tf.matmul(g, w, transpose_b=True),
                        tf.matmul(a, g, transpose_a=True))
        else:
            @tf.function(jit_compile=False)
            def fn(a, w, g):
                return tf.matmul(a, w)
        call = lambda: fn(a, w, g)

    def run_once():
        t0 = time.perf_counter()
        out = call()
        if on_gpu:
            tf.test.experimental.sync_devices()
        else:
            tf.nest.map_structure(lambda t: t.numpy(), out)  # (no copy on CPU)
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        run_once()
    times = [run_once() for _ in range(args.repeats)]
    print(json.dumps({"median_s": float(np.median(times)), "times": times}))


def _measure(case, what, args):
    """Runs one worker process; returns its list of times (seconds)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", what, "--case", case,
           "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    for opt in ("intra", "inter", "loops"):
        if getattr(args, opt) is not None:
            cmd += [f"--{opt}", str(getattr(args, opt))]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["times"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated subset of: " + ", ".join(CASES))
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process")
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating (lstm, roofline) process pairs per case; the medians "
                        "are over all their timed calls (the machine's speed may drift)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--intra", type=int, default=None, help="intra-op threads (default: TF's)")
    p.add_argument("--inter", type=int, default=None, help="inter-op threads (default: TF's)")
    p.add_argument("--loops", type=int, default=None,
                   help="SpatialLSTM parallel_loops (default: the layer's choice)")
    p.add_argument("--worker", choices=["lstm", "roofline"], help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)

    print(f"threads: intra={args.intra or 'default'} inter={args.inter or 'default'}; "
          f"loops={args.loops or 'default'}; median of {args.rounds} x {args.repeats} calls "
          f"({args.warmup} warm-up per process)")
    header = f"{'case':<40} {'lstm ms':>10} {'roofline ms':>12} {'ratio':>7} {'target':>7}"
    print(header)
    print("-" * len(header))
    for case in args.cases.split(","):
        batch, height, width, depth, units, backward, target = CASES[case]
        times = {"lstm": [], "roofline": []}
        for _ in range(args.rounds):
            for what in ("lstm", "roofline"):
                times[what] += _measure(case, what, args)
        t_lstm = statistics.median(times["lstm"])
        t_roof = statistics.median(times["roofline"])
        ratio = t_roof / t_lstm
        desc = (f"{case}: {batch}x{height}x{width} D={depth} U={units} "
                f"{'fwd+bwd' if backward else 'fwd'}")
        print(f"{desc:<40} {t_lstm * 1e3:>10.1f} {t_roof * 1e3:>12.1f} {ratio:>7.3f} "
              f"{target:>7.2f}{'' if ratio >= target else '  (below)'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
