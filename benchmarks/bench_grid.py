"""JPEG's grid in decoded photographs: what a pixel's place in the 8 x 8 grid does to its code length, and what
fitting the experts' priors per place would buy (issue 30; docs/colour.md, "JPEG's grid in decoded photographs").

1. Mean code length of the pixels at each place (i mod 8, j mod 8) over the image's mean, from the integer
   model's per-pixel code lengths (`IntegerCoder.intervals`): at place (0, 0), at even rows and columns, at odd
   rows and columns, and the most over the least costly place.
2. The gray model on the image's three RCT planes: the code length, estimated from the per-pixel expert masses of
   every pixel (`IntegerCoder.experts`), with the experts' priors fitted per class of places
   (`adapt.fit_prior_shift`, one byte per expert, class and plane counted), over the code length without shifts.

    python benchmarks/bench_grid.py --json docs/records/bench_grid.json
"""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import skimage.data  # noqa: E402

from ride_tf.codec import adapt, as_integer_model, coding, planes  # noqa: E402
from ride_tf.codec.integer import ARG, NUMPY, PRIOR_SHIFT_BITS  # noqa: E402

IMAGES = {
    "retina crop": lambda: np.ascontiguousarray(skimage.data.retina()[200:1224, 200:1224]),
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "astronaut": skimage.data.astronaut,
}


def place_table(bits):
    """[8, 8]: the mean of `bits` [H, W] at each place (i mod 8, j mod 8) over the mean of whole blocks."""
    height, width = bits.shape[0] // 8 * 8, bits.shape[1] // 8 * 8
    bits = bits[:height, :width]
    return np.array([[bits[i::8, j::8].mean() for j in range(8)] for i in range(8)]) / bits.mean()


def place_classes(height, width):
    """{name: int [H W]}: the classes of places whose priors are fitted apart."""
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return {"one shift": np.zeros(height * width, int), "row and column parity": ((i % 2) * 2 + j % 2).ravel(),
            "block's first row or column": ((i % 8 == 0) * 2 + (j % 8 == 0)).ravel(),
            "64 places": ((i % 8) * 8 + j % 8).ravel()}


def code_length_bits(integer, logits, masses, shift):
    """Sum over pixels of -log2 sum_k w_k(shift) P_k (weights at 2^-20, masses at 2^-24)."""
    unit = float(1 << (ARG - PRIOR_SHIFT_BITS))
    weights = integer.weights(np.clip(logits + shift * unit, -float(1 << 20), float(1 << 20)), NUMPY)
    return float(-np.log2(np.maximum((weights * masses).sum(axis=1) / 2.0 ** 44, 2.0 ** -60)).sum())


def adaptation_table(gray, image):
    """{class: code length with priors fitted per class / without}, the shifts' bytes included."""
    coder = coding.coder_for(gray)
    totals = {}
    for plane in planes.split(image):
        logits, masses = (a.astype(np.float64) for a in coder.experts(plane, 1))
        none = np.zeros(gray.num_experts, np.int64)
        totals["none"] = totals.get("none", 0.0) + code_length_bits(gray, logits, masses, none)
        for name, classes in place_classes(*plane.shape[:2]).items():
            bits = 8.0 * gray.num_experts * len(np.unique(classes))
            for c in np.unique(classes):
                pick = classes == c
                shift = adapt.fit_prior_shift(gray, logits[pick], masses[pick])
                bits += code_length_bits(gray, logits[pick], masses[pick], shift)
            totals[name] = totals.get(name, 0.0) + bits
    return {name: total / totals["none"] for name, total in totals.items() if name != "none"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=list(IMAGES))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    rgb, gray = as_integer_model("rgb"), as_integer_model("gray")
    out = {}
    for name in args.images:
        image = np.ascontiguousarray(IMAGES[name]()[..., :3])
        table = place_table(coding.pixel_code_length_bits(coding.coder_for(rgb), image))
        row = {"place (0, 0)": table[0, 0], "even rows and columns": table[::2, ::2].mean(),
               "odd rows and columns": table[1::2, 1::2].mean(), "most / least": table.max() / table.min()}
        row["priors per class / none"] = adaptation_table(gray, image)
        out[name] = row
        print(f"{name} {image.shape}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "priors per class / none")
              + "; priors per class / none: " + ", ".join(f"{k} {v:.4f}" for k, v in row["priors per class / none"].items()),
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(["python"] + sys.argv), "images": out}, f, indent=1,
                      default=float)


if __name__ == "__main__":
    main()
