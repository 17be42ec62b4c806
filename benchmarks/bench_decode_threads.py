"""The decoder's threads alone and on a busy machine: decode camera (512 x 512, the shipped "gray") with 1 thread,
with every core, and as --copies processes at once each using every core (more coding threads than cores, as when
several decodes or other work share the machine), pixels per second of each decode (median of --repeats decodes
after an untimed one, each process loading its model first).

    python benchmarks/bench_decode_threads.py

Waiting threads spin a while at the decoder's barriers and then sleep; on a machine with more runnable threads
than cores a long spin without yielding would take the core from the thread being waited for (docs/codec.md,
"Decoding faster").
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ride_tf import codec, pretrained  # noqa: E402
from ride_tf.codec import native  # noqa: E402

DECODE = """
import os, sys, time
import numpy as np
from ride_tf import codec
data = open(sys.argv[1], "rb").read()
threads, repeats, go = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
image = codec.decompress(data, threads=threads)
open(go + "." + sys.argv[5], "w").close()                 # ready: the model is loaded
while not all(os.path.exists(go + "." + str(k)) for k in range(int(sys.argv[6]))):
    time.sleep(0.001)
times = []
for _ in range(repeats):
    start = time.perf_counter()
    codec.decompress(data, threads=threads)
    times.append(time.perf_counter() - start)
print(image.shape[0] * image.shape[1] / float(np.median(times)))
"""


def decode_rates(path, threads, repeats, copies):
    """Pixels per second of each of `copies` processes decoding `path` at once on `threads` threads."""
    with tempfile.TemporaryDirectory() as folder:
        go = os.path.join(folder, "ready")
        processes = [subprocess.Popen([sys.executable, "-c", DECODE, path, str(threads), str(repeats), go, str(k),
                                       str(copies)], stdout=subprocess.PIPE, text=True,
                                      env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT) for k in range(copies)]
        rates = []
        for process in processes:
            out, _ = process.communicate()
            if process.returncode:
                raise RuntimeError("a decoding process failed")
            rates.append(float(out.strip()))
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--copies", type=int, default=2, help="processes decoding at once in the busy case")
    args = parser.parse_args()
    cores = native.default_threads()
    camera = pretrained.load_photo("camera", 1, crop=False)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "camera.ride")
        with open(path, "wb") as f:
            f.write(codec.compress("gray", camera))
        if not np.array_equal(codec.decompress(open(path, "rb").read()).reshape(camera.shape), camera):
            raise AssertionError("camera did not decode")
        print(f"camera 512 x 512, pixels per second of each decode (median of {args.repeats}), {cores} cores:")
        print(f"  1 thread, alone: {decode_rates(path, 1, args.repeats, 1)[0]:,.0f}")
        print(f"  {cores} threads, alone: {decode_rates(path, cores, args.repeats, 1)[0]:,.0f}")
        rates = decode_rates(path, cores, args.repeats, args.copies)
        print(f"  {cores} threads, {args.copies} processes at once: " + ", ".join(f"{r:,.0f}" for r in rates)
              + f" (sum {sum(rates):,.0f})")


if __name__ == "__main__":
    main()
