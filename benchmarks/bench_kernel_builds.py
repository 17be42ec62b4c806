"""Two builds of the C kernels side by side: decoding speed in alternating processes, with a gauge of the machine.

The 2-core development machine is a virtual machine whose cores run at a speed that changes from minute to minute
(a fixed loop of Python takes 0.13 s in one minute and 0.17 s in the next, more when both cores are busy), so that
a build measured after another can look faster or slower by 30% for no reason of its own.  This script alternates
the builds, a new process each time, and before every pair times a fixed loop of pure Python in one process and
in two processes at once (the gauge: seconds, lower is a faster machine), so that a reader can see which rounds ran
in a busy spell.

    python setup.py build_ext --inplace && cp ride_tf/codec/kernels*.so /tmp/before.so   # (on the old commit)
    python benchmarks/bench_kernel_builds.py /tmp/before.so ride_tf/codec/kernels*.so --threads 2 --rounds 5

Each process compresses the image once with the build under test (same bytes with any build, checked), then times
--repeats decodes with --threads threads and checks the pixels.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import hashlib, importlib.util, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("ride_tf.codec.kernels", sys.argv[1])
kernels = importlib.util.module_from_spec(spec)
sys.modules["ride_tf.codec.kernels"] = kernels
spec.loader.exec_module(kernels)
sys.path.insert(0, sys.argv[6])
from ride_tf import codec
from ride_tf.codec import native
assert native.kernels is kernels, "the build under test is not the one that runs"
import skimage.data
image = {"retina": lambda: np.ascontiguousarray(skimage.data.retina()[200:1224, 200:1224]),
         "camera": lambda: skimage.data.camera()}[sys.argv[2]]()
data = codec.compress(sys.argv[3], image, threads=1)
speeds = []
for _ in range(int(sys.argv[5])):
    start = time.perf_counter()
    back = codec.decompress(data, threads=int(sys.argv[4]))
    speeds.append(image.shape[0] * image.shape[1] / (time.perf_counter() - start))
    assert np.array_equal(back, image), "the pixels that came back differ"
print(hashlib.sha256(data).hexdigest(), *speeds)
"""

GAUGE = "import time; s = time.perf_counter(); sum(i * i for i in range(3_000_000)); print(time.perf_counter() - s)"


def gauge():
    """Seconds of the fixed loop in one process, and the slower of two processes running it at once."""
    one = float(subprocess.run([sys.executable, "-c", GAUGE], capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen([sys.executable, "-c", GAUGE], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    two = max(float(p.communicate()[0]) for p in pair)
    return one, two


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs=2, help="two kernels .so files (A, then B)")
    parser.add_argument("--image", choices=["retina", "camera"], default="retina",
                        help="retina: 1024 x 1024 colour (default); camera: 512 x 512 gray")
    parser.add_argument("--model", default=None, help="shipped model (default: rgb for retina, gray for camera)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="pairs of processes (A, B)")
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per process")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    for path in args.builds:
        if not os.path.isfile(path):
            parser.error(f"no such build: {path}")
    model = args.model or ("rgb" if args.image == "retina" else "gray")
    speeds = {path: [] for path in args.builds}
    digests, rounds = set(), []
    for k in range(args.rounds):
        one, two = gauge()
        row = {"gauge_one_process_s": one, "gauge_two_processes_s": two}
        for label, path in zip("AB", args.builds):
            out = subprocess.run([sys.executable, "-c", WORKER, os.path.abspath(path), args.image, model,
                                  str(args.threads), str(args.repeats), ROOT],
                                 capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                sys.exit(f"build {label} ({path}) failed:\n{out.stderr[-2000:]}")
            digest, *values = out.stdout.split()[-1 - args.repeats:]
            digests.add(digest)
            speeds[path] += [float(v) for v in values]
            row[label] = [round(float(v)) for v in values]
        rounds.append(row)
        print(f"round {k + 1}: gauge {one:.3f} / {two:.3f} s   A {row['A']}   B {row['B']}", flush=True)
    if len(digests) != 1:
        sys.exit("the two builds wrote different files")
    summary = {}
    for label, path in zip("AB", args.builds):
        values = speeds[path]
        summary[label] = {"build": path, "median_px_per_s": round(statistics.median(values)),
                          "best_px_per_s": round(max(values)), "runs": len(values)}
        print(f"{label} {path}: median {statistics.median(values):,.0f} px/s, best {max(values):,.0f} "
              f"({len(values)} decodes, {args.threads} threads, {args.image}, {model})")
    print(f"B / A: median {summary['B']['median_px_per_s'] / summary['A']['median_px_per_s']:.3f}, "
          f"best {summary['B']['best_px_per_s'] / summary['A']['best_px_per_s']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"image": args.image, "model": model, "threads": args.threads, "summary": summary,
                       "rounds": rounds, "date": time.strftime("%Y-%m-%d %H:%M")}, f, indent=1)


if __name__ == "__main__":
    main()
