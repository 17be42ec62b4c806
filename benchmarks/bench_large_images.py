"""Memory and time of whole-image likelihoods on large images (tiled evaluation).

`RIDE.pixel_log_prob` evaluates images larger than its pixel budget in tiles
that pass their spatial LSTM states on (`RIDE.tile_log_prob`), so the memory
it needs beyond the model does not grow with the image.  For every size, a
fresh process builds the model (RIDE, one 64-unit layer by default), warms it
up on a small image, records its resident memory, evaluates one image of
that size and reports the peak resident memory above that baseline, the time,
and the rate.  The last column checks the tiled result against an untiled
evaluation of the image's top-left 256 x 256 crop, on its columns 0..255-r
(their conditionals read no pixel right of the crop, so they are the same).

    .venv/bin/python benchmarks/bench_large_images.py                  # 256, 1024, 2048
    .venv/bin/python benchmarks/bench_large_images.py --sizes 512 4096
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered


def rss_mb():
    """Current resident memory of this process (VmRSS), MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(size, hiddens, layers):
    import numpy as np

    from ride_tf import RIDE, data

    model = RIDE(num_layers=layers, num_hiddens=hiddens)
    model.adapt(data.dead_leaves(4, size=64, seed=0, noise_std=0.02))
    image = data.dead_leaves(1, size=size, seed=1, noise_std=0.02)
    model.pixel_log_prob(image[:, :300, :600], noise=False)     # traces the tiled and untiled graphs
    model.pixel_log_prob(image[:, :64, :64], noise=False)
    baseline = rss_mb()
    start = time.perf_counter()
    pixel_map = model.pixel_log_prob(image, noise=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    crop, r = min(size, 256), model.radius
    reference = model.pixel_log_prob(image[:, :crop, :crop], noise=False)
    # Columns < crop - r see no pixel right of the crop, so their conditionals are the same.
    difference = float(np.abs(pixel_map[:, :crop, :crop - r] - reference[:, :, :crop - r]).max())
    return dict(size=size, seconds=seconds, baseline_mb=baseline, peak_above_baseline_mb=peak - baseline,
                pixels_per_second=size * size / seconds, rate=float(pixel_map.mean() / np.log(2.0)),
                max_difference_to_untiled=difference)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--hiddens", type=int, default=64)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.hiddens, args.layers)))
        return
    print(f"RIDE {args.layers} layer(s) of {args.hiddens} units; one image per size, each in a fresh process")
    print(f"{'size':>11s} {'seconds':>8s} {'pixels/s':>9s} {'model+TF MB':>12s} {'peak above MB':>14s} "
          f"{'|tiled - untiled|':>18s}")
    for size in args.sizes:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run([sys.executable, __file__, "--child", str(size), "--hiddens", str(args.hiddens),
                              "--layers", str(args.layers)], capture_output=True, text=True, env=env)
        if out.returncode:
            print(f"{size} failed:\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{size:5d}x{size:<5d} {r['seconds']:8.1f} {r['pixels_per_second']:9.0f} {r['baseline_mb']:12.0f} "
              f"{r['peak_above_baseline_mb']:14.0f} {r['max_difference_to_untiled']:18.2e}")


if __name__ == "__main__":
    main()
