"""The codec without TensorFlow (issue 29): the command line's wall time and the coder's speed on every core, side by
side with JPEG-XL lossless in one run.

1. Wall time of `ride-tf compress` and `ride-tf decompress` (each a new process: Python's start, the imports, the
   shipped integer model's loading and checks, the coding, the file), median of --repeats runs, on a 64 x 64 and
   a 512 x 512 gray photo (camera), beside the same work by JPEG-XL lossless e9 in a new process (imagecodecs),
   and beside `python -c "import tensorflow"`, the start-up every command paid before.
2. Pixels per second of encode and decode in this process (the C kernels; median of --repeats runs after an
   untimed one) with 1 thread and with every core, and the speed-up, on camera (512 x 512, "gray") and on a
   1 Mpx colour photograph (1024 x 1024 of scikit-image's retina, "rgb" jointly and "gray" by planes), beside
   JPEG-XL e9 in this process; each file decoded and checked bit for bit, and the files of 1 thread and of
   every core compared byte for byte.

    python benchmarks/bench_codec_runtime.py --json docs/records/bench_codec_runtime.json

Run it on a quiet machine: the threads' speed-up needs idle cores.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ride_tf import codec, pretrained  # noqa: E402
from ride_tf.codec import native  # noqa: E402
from ride_tf.io import atomic_write_json  # noqa: E402


def median_wall(command, repeats, env=None):
    """Median wall seconds of running `command` (a list) as a new process, `repeats` times after one untimed run."""
    times = []
    for k in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
        if k:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


JXL_SCRIPT = """
import sys, numpy as np, imagecodecs
from PIL import Image
if sys.argv[1] == "encode":
    open(sys.argv[3], "wb").write(imagecodecs.jpegxl_encode(np.asarray(Image.open(sys.argv[2])), lossless=True,
                                                            effort=9))
else:
    Image.fromarray(np.asarray(imagecodecs.jpegxl_decode(open(sys.argv[2], "rb").read()))).save(sys.argv[3])
"""


def start_up_table(repeats):
    """{image: {what: seconds}}: the command line's and JPEG-XL's wall times, and TensorFlow's import."""
    from PIL import Image

    camera = pretrained.load_photo("camera", 1, crop=False)[..., 0]
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, image in (("64 x 64 gray", camera[200:264, 200:264]), ("512 x 512 gray", camera)):
            png, ride, back, jxl = (os.path.join(folder, name) for name in ("in.png", "in.ride", "out.png", "in.jxl"))
            Image.fromarray(image).save(png)
            cli = [sys.executable, "-m", "ride_tf"]
            row = {"ride-tf compress": median_wall(cli + ["compress", png, ride], repeats, env),
                   "ride-tf decompress": median_wall(cli + ["decompress", ride, back], repeats, env)}
            if not np.array_equal(np.asarray(Image.open(back)), image):
                raise AssertionError("ride-tf decompress did not give back the image")
            script = [sys.executable, "-c", JXL_SCRIPT]
            row["JPEG-XL e9 encode"] = median_wall(script + ["encode", png, jxl], repeats, env)
            row["JPEG-XL e9 decode"] = median_wall(script + ["decode", jxl, back], repeats, env)
            row["ride-tf file bytes"] = os.path.getsize(ride)
            row["JPEG-XL file bytes"] = os.path.getsize(jxl)
            out[label] = row
    out["python -c 'import tensorflow'"] = median_wall([sys.executable, "-c", "import tensorflow"], repeats)
    out["python -c 'import numpy, PIL.Image'"] = median_wall([sys.executable, "-c", "import numpy, PIL.Image"],
                                                             repeats)
    return out


def timed(call, repeats, first=None):
    """(median seconds of `repeats` calls, the last result), after one untimed call (traces, kernels per shape);
    the first call's seconds go to first["seconds"] when `first` is a dict.  Also bench_codec.py's."""
    start = time.perf_counter()
    result = call()
    if first is not None:
        first["seconds"] = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def speed_table(repeats, threads):
    """{image (coding): {what: pixels per second or ratio}} of the coder with 1 and `threads` threads."""
    import imagecodecs
    import skimage.data

    camera = pretrained.load_photo("camera", 1, crop=False)
    retina = np.ascontiguousarray(skimage.data.retina()[200:1224, 200:1224])
    table = {}
    for label, image, model, transform in (("camera 512 x 512 (gray)", camera, "gray", None),
                                           ("retina 1024 x 1024 (rgb, joint)", retina, "rgb", None),
                                           ("retina 1024 x 1024 (gray, planes)", retina, "gray", "rct")):
        pixels = image.shape[0] * image.shape[1]
        row = {}
        for count in (1, threads):
            seconds, data = timed(lambda: codec.compress(model, image, colour_transform=transform, threads=count),
                                  repeats)
            row[f"encode, {count} thread{'s' * (count > 1)}"] = pixels / seconds
            seconds, decoded = timed(lambda: codec.decompress(data, threads=count), repeats)
            row[f"decode, {count} thread{'s' * (count > 1)}"] = pixels / seconds
            if not np.array_equal(decoded.reshape(image.shape), image):
                raise AssertionError(f"{label}: the decoded image differs")
            if count == 1:
                single = data
            elif data != single:
                raise AssertionError(f"{label}: {count} threads wrote other bytes than 1")
        plain = image[..., 0] if image.shape[-1] == 1 else image
        seconds, jxl = timed(lambda: imagecodecs.jpegxl_encode(plain, lossless=True, effort=9), repeats)
        row["JPEG-XL e9 encode"] = pixels / seconds
        seconds, back = timed(lambda: imagecodecs.jpegxl_decode(jxl), repeats)
        row["JPEG-XL e9 decode"] = pixels / seconds
        row["encode speed-up"] = row[f"encode, {threads} threads"] / row["encode, 1 thread"]
        row["decode speed-up"] = row[f"decode, {threads} threads"] / row["decode, 1 thread"]
        row["RIDE bit/px"] = 8 * len(single) / image.size
        row["JPEG-XL e9 bit/px"] = 8 * len(jxl) / image.size
        table[label] = row
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=native.default_threads(), help="the 'every core' count")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()
    startup = start_up_table(args.repeats)
    print("wall time of a whole command, process start included (median of "
          f"{args.repeats} runs), seconds:")
    for label, row in startup.items():
        if isinstance(row, dict):
            print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" if "bytes" not in k else f"{k} {v}" for k, v in row.items()))
        else:
            print(f"  {label}: {row:.3f}")
    speeds = speed_table(args.repeats, args.threads)
    print(f"\npixels per second in one process (median of {args.repeats} runs), the C kernels' "
          f"{native.native_model(codec.as_integer_model('gray')).isa} variant:")
    columns = list(next(iter(speeds.values())))
    print(f"{'':36s}" + "".join(f"{c:>20s}" for c in columns))
    for label, row in speeds.items():
        print(f"{label:36s}" + "".join(f"{row[c]:20.3f}" if ("speed-up" in c or "bit/px" in c) else f"{row[c]:20,.0f}"
                                       for c in columns))
    if args.json:
        atomic_write_json(args.json, dict(command="python " + " ".join(sys.argv), cores=os.cpu_count(),
                                          threads=args.threads, start_up_seconds=startup, pixels_per_second=speeds))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
