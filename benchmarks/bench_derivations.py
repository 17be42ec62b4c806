"""The two derivations of a shipped model's integer model side by side (issue 29, fourth stop): what the 16-bit
products cost in file size, and what they buy in speed.

Derivation 2 (`ride_tf.codec.derive`, the shipped NAME.integer.npz) keeps every weight that reads an LSTM state
within 16 bits, so that the C kernels compute those products as 16-bit multiply-adds with 32-bit sums;
derivation 1 (ride_tf/pretrained/derivation-1/NAME.integer.npz, what files written before hold) does not, and
its products run in float64.  Both are loaded with NumPy alone.

1. Sizes: the exact code length (`ride_tf.compressed_size_bits`) of every picture of --folder under both, bit
   per sub-pixel, per picture and over the folder (total bits / total sub-pixels).
2. Speed: encode and decode of --image (default: the 1024 x 1024 crop of scikit-image's retina that
   `bench_codec_runtime.py` uses, or camera for a gray model) in this process, 1 thread and every core, the two
   models interleaved --repeats times (encode, then decode, derivation 1 then 2, each round), so that both see
   the same spells of a busy machine; best and median pixels per second and the ratios; every file decoded
   and checked bit for bit.

    python benchmarks/bench_derivations.py --model rgb --folder /work/corpus/eval/rgb \\
        --json docs/records/bench_derivations_rgb.json
    python benchmarks/bench_derivations.py --model gray --folder /work/corpus/eval/gray --speed-only
"""
import argparse
import glob
import os
import sys
import time

import numpy as np
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ride_tf import codec, pretrained  # noqa: E402
from ride_tf.codec import native, registry  # noqa: E402
from ride_tf.io import atomic_write_json  # noqa: E402


def read_image(path, channels):
    """uint8 [H, W, channels] of an image file (a colour file's first channel for a gray model)."""
    from PIL import Image

    image = np.asarray(Image.open(path))
    image = image[..., None] if image.ndim == 2 else image[..., :3]
    return np.ascontiguousarray(image[..., :1] if channels == 1 else image)


def size_table(models, paths, channels):
    """{picture: {derivation: bit per sub-pixel}} and the folder's totals."""
    rows, totals, count = {}, {d: 0.0 for d in models}, 0
    for path in tqdm(paths, desc="sizes", unit="picture", file=sys.stderr):
        image = read_image(path, channels)
        if channels == 3 and image.shape[-1] != 3:
            continue
        row = {}
        for derivation, model in models.items():
            bits = float(codec.compressed_size_bits(model, [image])[0])
            row[derivation] = bits / image.size
            totals[derivation] += bits
        rows[os.path.basename(path)] = row
        count += image.size
    return rows, {d: bits / max(count, 1) for d, bits in totals.items()}


def speed_table(models, image, repeats, threads):
    """{f"{what}, {n} thread(s)": {derivation: [pixels per second, ...]}}, interleaved."""
    pixels = image.shape[0] * image.shape[1]
    data = {d: codec.compress(model, image) for d, model in models.items()}
    if any(codec.compress(model, image, threads=threads) != data[d] for d, model in models.items()):
        raise AssertionError(f"{threads} threads wrote other bytes than 1")
    table = {}
    for count in sorted({1, threads}):
        label = f"{count} thread{'s' * (count > 1)}"
        for _ in range(repeats):
            for derivation, model in models.items():
                start = time.perf_counter()
                codec.compress(model, image, threads=count)
                table.setdefault(f"encode, {label}", {}).setdefault(derivation, []).append(
                    pixels / (time.perf_counter() - start))
                start = time.perf_counter()
                decoded = codec.decompress(model, data[derivation], threads=count)
                table.setdefault(f"decode, {label}", {}).setdefault(derivation, []).append(
                    pixels / (time.perf_counter() - start))
                if not np.array_equal(decoded.reshape(image.shape), image):
                    raise AssertionError(f"derivation {derivation}: the decoded image differs")
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rgb", help="a shipped model's name")
    parser.add_argument("--folder", help="pictures whose exact sizes to compare (PNG files)")
    parser.add_argument("--image", help="the picture to time (default: retina's 1 Mpx crop, camera for gray)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=native.default_threads())
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()
    models = {1: registry.shipped_model(args.model, 1), 2: registry.shipped_model(args.model, 2)}
    channels = models[2].num_channels
    record = dict(command="python " + " ".join(sys.argv), model=args.model,
                  fingerprints={d: m.fingerprint.hex() for d, m in models.items()},
                  passes={d: native.native_model(m).passes for d, m in models.items()})
    if args.folder and not args.speed_only:
        paths = sorted(glob.glob(os.path.join(args.folder, "*.png")))
        rows, totals = size_table(models, paths, channels)
        print(f"exact code length, bit per sub-pixel, {len(rows)} pictures of {args.folder}:")
        for name, row in rows.items():
            print(f"  {name:40s} derivation 1 {row[1]:.5f}  derivation 2 {row[2]:.5f}  ratio {row[2] / row[1]:.5f}")
        print(f"  {'all (total bits / total sub-pixels)':40s} derivation 1 {totals[1]:.5f}  derivation 2 "
              f"{totals[2]:.5f}  ratio {totals[2] / totals[1]:.5f}")
        record.update(sizes=rows, totals=totals)
    if args.image:
        image = read_image(args.image, channels)
    elif channels == 3:
        import skimage.data

        image = np.ascontiguousarray(skimage.data.retina()[200:1224, 200:1224])
    else:
        image = pretrained.load_photo("camera", 1, crop=False)
    speeds = speed_table(models, image, args.repeats, args.threads)
    print(f"\npixels per second, {image.shape[1]} x {image.shape[0]}, {args.repeats} interleaved rounds "
          f"(best / median), the C kernels' {native.native_model(models[2]).isa} variant:")
    for what, row in speeds.items():
        best = {d: max(v) for d, v in row.items()}
        median = {d: float(np.median(v)) for d, v in row.items()}
        print(f"  {what:20s} derivation 1 {best[1]:10,.0f} / {median[1]:10,.0f}   derivation 2 {best[2]:10,.0f} / "
              f"{median[2]:10,.0f}   ratio {best[2] / best[1]:.3f} / {median[2] / median[1]:.3f}")
    record.update(image_shape=list(image.shape), pixels_per_second=speeds)
    if args.json:
        atomic_write_json(args.json, record)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
