"""Would coding each image in its best orientation pay?  The exact code length under the 8 rotations and flips.

RIDE codes in raster order with a causal neighbourhood above and to the left, so a picture whose statistics
differ by direction may code shorter turned or flipped (the paper's ensembles average over these 8 maps).  For
every picture of a set, the exact code length (`ride_tf.compressed_size_bits`, without TensorFlow) of the
picture in each of the 8 orientations (k quarter turns, then a left-right flip for the last four); printed: the
best orientation's length over the picture's own, and for the set the sum of the best over the sum of the own.
A coder choosing per image would pay 3 bits for the choice and 8 encodes (or a cheaper guess of the best).

    python benchmarks/bench_orientation.py --model rgb --folder /work/corpus/eval/rgb \
        --json docs/records/bench_orientation_rgb_eval.json
"""
import argparse
import json
import os
import sys

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import folder_images  # noqa: E402

from ride_tf import codec  # noqa: E402
from ride_tf.codec import api  # noqa: E402


def orientation(image, index):
    """The picture [H, W, C] after index % 4 quarter turns, then flipped left-right when index >= 4."""
    turned = np.rot90(image, index % 4, axes=(0, 1))
    return np.ascontiguousarray(turned[:, ::-1] if index >= 4 else turned)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="rgb", help="a shipped model's name or a model file")
    parser.add_argument("--folder", required=True, help="a folder of PNG pictures (those of the model's channels)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", help="write the per-image code lengths (bits, 8 orientations) here")
    args = parser.parse_args()
    integer = api.as_integer_model(args.model, "bench_orientation")
    images = folder_images(args.folder, integer.num_channels)
    if not images:
        parser.error(f"no {integer.num_channels}-channel PNG pictures in {args.folder}")
    rows = {}
    for name, image in tqdm(images.items(), disable=not sys.stderr.isatty()):
        rows[name] = [float(codec.compressed_size_bits(integer, [orientation(image, k)], threads=args.threads)[0])
                      for k in range(8)]
        bits = rows[name]
        print(f"{name:32s} best / own {min(bits) / bits[0]:.4f}  best orientation {int(np.argmin(bits))}",
              flush=True)
    own, best = sum(b[0] for b in rows.values()), sum(min(b) for b in rows.values())
    print(f"{len(rows)} pictures: the best orientations' sum / the pictures' own {best / own:.4f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"command": " ".join(sys.argv), "model": args.model, "bits": rows,
                       "best_over_own": best / own}, file, indent=1)


if __name__ == "__main__":
    main()
