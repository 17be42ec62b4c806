"""Two builds of the C kernels side by side: decoding speed in pairs of decodes seconds apart, with a gauge of the
machine.

The 2-core development machine is a virtual machine whose cores change speed from minute to minute (a fixed loop
of pure Python took 0.12 s in one minute and 0.24 s in another on 8 December 2026), so that a build timed after
another can look 30% faster or slower for no reason of its own.  This script starts one worker process per build
(each loads its build in place of the installed kernels, compresses the image and checks that both builds wrote
the same bytes), then asks them for one decode each, in the order A B, then B A, and so on: the two decodes of a
pair run seconds apart, on the same machine state, and the ratio of their times is what the builds differ by.
It reports the median of the ratios over the pairs, each build's median and best speed, and before every
--gauge-every pairs a fixed loop of pure Python in one process and in two at once (seconds, lower is a faster
machine), so that a reader can see which pairs ran in a busy spell.

    cp ride_tf/codec/kernels*.so /tmp/before.so          # built on the commit before
    python setup.py build_ext --inplace
    python benchmarks/bench_kernel_builds.py /tmp/before.so ride_tf/codec/kernels*.so --threads 2 --pairs 12

Every decode's pixels are checked against the image.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A worker: load the build, compress the image once (print the file's digest), then decode once per line read
# from standard input and print the seconds.
WORKER = r"""
import hashlib, importlib.util, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("ride_tf.codec.kernels", sys.argv[1])
kernels = importlib.util.module_from_spec(spec)
sys.modules["ride_tf.codec.kernels"] = kernels
spec.loader.exec_module(kernels)
sys.path.insert(0, sys.argv[5])
from ride_tf import codec
from ride_tf.codec import native
assert native.kernels is kernels, "the build under test is not the one that runs"
import skimage.data
image = {"retina": lambda: np.ascontiguousarray(skimage.data.retina()[200:1224, 200:1224]),
         "camera": lambda: skimage.data.camera()}[sys.argv[2]]()
data = codec.compress(sys.argv[3], image, threads=1)
codec.decompress(data, threads=int(sys.argv[4]))
print(hashlib.sha256(data).hexdigest(), image.shape[0] * image.shape[1], flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    back = codec.decompress(data, threads=int(sys.argv[4]))
    seconds = time.perf_counter() - start
    assert np.array_equal(np.reshape(back, image.shape), image), "the pixels that came back differ"
    print(seconds, flush=True)
"""

GAUGE = "import time; s = time.perf_counter(); sum(i * i for i in range(3_000_000)); print(time.perf_counter() - s)"


def gauge():
    """Seconds of the fixed loop in one process, and the slower of two processes running it at once."""
    one = float(subprocess.run([sys.executable, "-c", GAUGE], capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen([sys.executable, "-c", GAUGE], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    two = max(float(p.communicate()[0]) for p in pair)
    return one, two


class Worker:
    """A process that decodes the image with one build, once per request."""

    def __init__(self, build, image, model, threads):
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, os.path.abspath(build), image, model,
                                         str(threads), ROOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, cwd=ROOT)
        self.build = build
        line = self.process.stdout.readline().split()
        if len(line) != 2:
            self.close()
            sys.exit(f"the worker of {build} did not start (see its error above)")
        self.digest, self.pixels = line[0], int(line[1])

    def decode(self):
        """Seconds of one decode."""
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            sys.exit(f"the worker of {self.build} stopped")
        return float(answer)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs=2, help="two kernels .so files (A, then B)")
    parser.add_argument("--image", choices=["retina", "camera"], default="retina",
                        help="retina: 1024 x 1024 colour (default); camera: 512 x 512 gray")
    parser.add_argument("--model", default=None, help="shipped model (default: rgb for retina, gray for camera)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=12, help="pairs of decodes, A B then B A, ...")
    parser.add_argument("--gauge-every", type=int, default=4, help="time the machine before every this many pairs")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    for path in args.builds:
        if not os.path.isfile(path):
            parser.error(f"no such build: {path}")
    if args.pairs < 1 or args.threads < 1 or args.gauge_every < 1:
        parser.error("--pairs, --threads and --gauge-every must be at least 1")
    model = args.model or ("rgb" if args.image == "retina" else "gray")
    workers = [Worker(path, args.image, model, args.threads) for path in args.builds]
    try:
        if workers[0].digest != workers[1].digest:
            sys.exit("the two builds wrote different files")
        seconds, ratios, gauges = ([], []), [], []
        for k in range(args.pairs):
            if k % args.gauge_every == 0:
                gauges.append(gauge())
                print(f"gauge before pair {k + 1}: {gauges[-1][0]:.3f} s in one process, {gauges[-1][1]:.3f} s in "
                      "two at once", flush=True)
            order = (0, 1) if k % 2 == 0 else (1, 0)
            pair = {}
            for index in order:
                pair[index] = workers[index].decode()
                seconds[index].append(pair[index])
            ratios.append(pair[1] / pair[0])
            print(f"pair {k + 1}: A {workers[0].pixels / pair[0]:,.0f}  B {workers[1].pixels / pair[1]:,.0f} px/s  "
                  f"B time / A time {ratios[-1]:.3f}", flush=True)
    finally:
        for worker in workers:
            worker.close()
    pixels = workers[0].pixels
    summary = {label: {"build": path, "median_px_per_s": round(pixels / statistics.median(values)),
                       "best_px_per_s": round(pixels / min(values)), "decodes": len(values)}
               for label, path, values in zip("AB", args.builds, seconds)}
    for label in "AB":
        row = summary[label]
        print(f"{label} {row['build']}: median {row['median_px_per_s']:,} px/s, best {row['best_px_per_s']:,}")
    print(f"B time / A time over {args.pairs} pairs ({args.threads} threads, {args.image}, {model}): median "
          f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"image": args.image, "model": model, "threads": args.threads, "summary": summary,
                       "time_ratios_b_over_a": [round(r, 4) for r in ratios],
                       "median_time_ratio_b_over_a": round(statistics.median(ratios), 4),
                       "gauges_one_two_processes_s": [[round(g, 4) for g in pair] for pair in gauges],
                       "date": time.strftime("%Y-%m-%d %H:%M")}, f, indent=1)


if __name__ == "__main__":
    main()
