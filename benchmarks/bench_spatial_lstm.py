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
    .venv/bin/python benchmarks/bench_spatial_lstm.py --wait-quiet 150 --roofline-rows 65536

See benchmarks/README.md for the options and measured numbers.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (batch, H, W, D, U, backward, target ratio)
CASES = {
    "fwd_u64": (8, 256, 256, 12, 64, False, 0.33),
    "fwd_u128": (8, 256, 256, 12, 128, False, 0.6),
    "train_u64": (50, 22, 22, 12, 64, True, 0.5),       # issue J: at least 0.5 of the roofline
}


def _worker(args):
    if REPO not in sys.path:
        sys.path.append(REPO)
    import numpy as np

    from ride_tf.runtime import quiet_tensorflow

    tf = quiet_tensorflow()     # TensorFlow without its start-up lines (TF_CPP_MIN_LOG_LEVEL=2 unless set)

    if args.intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    if args.inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)

    batch, height, width, depth, units, backward, _ = CASES[args.case]
    pixels = batch * height * width
    rng = np.random.default_rng(0)
    on_gpu = bool(tf.config.list_logical_devices("GPU"))

    if args.worker == "lstm":
        from ride_tf.nn.spatial_lstm import SpatialLSTM

        import keras

        keras.utils.set_random_seed(0)
        layer = SpatialLSTM(units, parallel_loops=args.loops, cell=args.cell)
        layer.build((None, None, None, depth))
        # Forget-gate biases -1 keep the memory states finite on 256 x 256
        # images (with f_left + f_up > 1, c grows exponentially along the
        # diagonals and overflows).
        layer.bias.assign(np.concatenate([np.zeros(3 * units), -np.ones(2 * units)]))
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
        scale = 1.0
        if args.roofline_rows and args.roofline_rows < pixels:
            # Peak-rate variant: time a block of R rows, scale to all pixels.
            scale = pixels / args.roofline_rows
            pixels = args.roofline_rows
        tf.random.set_seed(0)
        a = tf.random.normal((pixels, k))
        w = tf.random.normal((k, 5 * units))
        g = tf.random.normal((pixels, 5 * units)) if backward else None
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
    if args.worker == "lstm":
        scale = 1.0

    if args.worker == "lstm":
        out = tf.nest.flatten(call())
        assert all(np.isfinite(t.numpy()).all() for t in out), "non-finite LSTM output"

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
    n_calls = args.repeats if scale == 1.0 else max(args.repeats, int(round(args.repeats * scale)))
    times = [run_once() * scale for _ in range(n_calls)]
    print(json.dumps({"median_s": float(np.median(times)), "times": times}))


def _busy_seconds():
    """CPU seconds used by all processes of the machine so far (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _wait_quiet(max_wait):
    """Waits (at most max_wait seconds) until the machine has been idle for
    3 s (< 0.1 cores busy); returns whether it was."""
    if max_wait <= 0 or _busy_seconds() is None:
        return False
    end = time.time() + max_wait
    quiet = 0
    while time.time() < end:
        b0 = _busy_seconds()
        time.sleep(1.0)
        quiet = quiet + 1 if _busy_seconds() - b0 < 0.1 else 0
        if quiet >= 3:
            return True
    return False


def _measure(case, what, args):
    """Runs one worker process; returns (its list of times in seconds, the
    CPU load of *other* processes during it, in cores, or None)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", what, "--case", case,
           "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    for opt in ("intra", "inter", "loops", "roofline_rows", "cell"):
        if getattr(args, opt) is not None:
            cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    env = dict(os.environ)
    _wait_quiet(args.wait_quiet)
    busy0, own0, t0 = _busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    busy1, own1, t1 = _busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
    other = None
    if busy0 is not None:
        own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
        other = max(0.0, (busy1 - busy0) - own) / (t1 - t0)
    return json.loads(line)["times"], other


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated subset of: " + ", ".join(CASES))
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process")
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating (lstm, roofline) process pairs per case; the medians "
                        "are over all their timed calls (the machine's speed may drift)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each measurement, wait up to S seconds for the machine to "
                        "be idle (shared machines)")
    p.add_argument("--intra", type=int, default=None, help="intra-op threads (default: TF's)")
    p.add_argument("--inter", type=int, default=None, help="inter-op threads (default: TF's)")
    p.add_argument("--loops", type=int, default=None,
                   help="SpatialLSTM parallel_loops (default: the layer's choice)")
    p.add_argument("--roofline-rows", type=int, default=None, metavar="R",
                   help="time the roofline's products on R rows and scale to all pixels "
                        "(the peak matmul rate, without the memory traffic of one huge "
                        "product); default: one product over all pixels")
    p.add_argument("--cell", choices=["stable", "paper"], default="stable", help="the spatial LSTM cell")
    p.add_argument("--worker", choices=["lstm", "roofline"], help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)

    print(f"threads: intra={args.intra or 'default'} inter={args.inter or 'default'}; "
          f"roofline: {f'{args.roofline_rows}-row blocks' if args.roofline_rows else 'one product'}; "
          f"loops={args.loops or 'default'}; cell={args.cell}; median of {args.rounds} x {args.repeats} calls "
          f"({args.warmup} warm-up per process)")
    header = (f"{'case':<40} {'lstm ms':>10} {'roofline ms':>12} {'ratio':>7} {'target':>7}"
              f" {'other load':>11}")
    print(header)
    print("-" * len(header))
    for case in args.cases.split(","):
        batch, height, width, depth, units, backward, target = CASES[case]
        times = {"lstm": [], "roofline": []}
        others = []
        for _ in range(args.rounds):
            for what in ("lstm", "roofline"):
                t, other = _measure(case, what, args)
                times[what] += t
                if other is not None:
                    others.append(other)
        t_lstm = statistics.median(times["lstm"])
        t_roof = statistics.median(times["roofline"])
        ratio = t_roof / t_lstm
        desc = (f"{case}: {batch}x{height}x{width} D={depth} U={units} "
                f"{'fwd+bwd' if backward else 'fwd'}")
        load = f"{max(others):.2f}" if others else "n/a"
        print(f"{desc:<40} {t_lstm * 1e3:>10.1f} {t_roof * 1e3:>12.1f} {ratio:>7.3f} "
              f"{target:>7.2f} {load:>11}{'' if ratio >= target else '  (below target)'}",
              flush=True)
    print("other load: the most CPU cores that other processes of the machine used during "
          "one of the case's measurements (> 0.1: the numbers are disturbed).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
