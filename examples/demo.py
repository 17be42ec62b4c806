"""`make demo`: RIDE next to its MCGSM baseline on the project's dead-leaves benchmark.

Generates a part of the dead-leaves benchmark (ride_tf.datasets), fits
  * the Gaussian linear predictor (conditional whitening alone),
  * the MCGSM image model (num_layers=0, L-BFGS), and
  * a small RIDE (one spatial LSTM, the paper's recipe shortened, with Adam),
prints each model's held-out density rate over every pixel (and over the
paper's valid region), its bound 8 - rate on a lossless code, and the exact
code length of the 8-bit values (`ride_tf.compressed_size_bits`),
writes a PNG of a test image next to RIDE's per-pixel code length, and a PNG
of samples drawn from the MCGSM and from RIDE.  A few minutes on a 2-core
CPU; sizes are flags.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ride_tf import RIDE, compressed_size_bits, datasets  # noqa: E402
from ride_tf.io import atomic_write_png  # noqa: E402
from ride_tf.training import train  # noqa: E402


def code_length_picture(image, pixel_log_prob, path):
    """Test image (left) and per-pixel code length 8 - log2 p in bits (right, dark = cheap), every pixel."""
    bits = 8.0 - pixel_log_prob / np.log(2.0)
    scaled = np.clip(bits / 10.0 * 255.0, 0, 255).astype(np.uint8)
    atomic_write_png(np.concatenate([image, scaled], axis=1), path)


def samples_picture(rows, path, gap=4):
    """Rows of uint8 [N, H, W, 1] samples side by side, separated by white gaps."""
    strips = []
    for images in rows:
        tiles = []
        for im in images[..., 0]:
            tiles += [im, np.full((im.shape[0], gap), 255, np.uint8)]
        strips += [np.concatenate(tiles[:-1], axis=1), np.full((gap, sum(t.shape[1] for t in tiles[:-1])), 255,
                                                              np.uint8)]
    atomic_write_png(np.concatenate(strips[:-1], axis=0), path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=60)
    parser.add_argument("--test-images", type=int, default=8)
    parser.add_argument("--hiddens", type=int, default=32)
    parser.add_argument("--patches", type=int, default=25000, help="patches per training stage")
    parser.add_argument("--output", default="runs/demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    start = time.time()
    train_images = datasets.dead_leaves_benchmark("train", args.train_images)
    test_images = datasets.dead_leaves_benchmark("test", args.test_images)
    print(f"dead-leaves benchmark: {len(train_images)} training and {len(test_images)} test images "
          f"of {train_images.shape[1]} x {train_images.shape[2]} ({time.time() - start:.1f} s)")

    rows = []
    print("\n== MCGSM image model (num_layers=0), L-BFGS ==")
    mcgsm = RIDE(num_layers=0, num_components=16, num_scales=4, num_features=32)
    mcgsm.adapt(train_images)
    rows.append(("Gaussian linear predictor (same neighbourhood)",
                 mcgsm.gaussian_log_likelihood_rate(test_images, seed=1).mean(),
                 mcgsm.gaussian_log_likelihood_rate(test_images, seed=1, region="valid").mean(), None))
    mcgsm.finetune(train_images, max_iter=300, num_samples=100_000, verbose=1)
    rows.append(("MCGSM, 16 comp., 5 px neighbourhood", mcgsm.log_likelihood_rate(test_images, seed=1).mean(),
                 mcgsm.log_likelihood_rate(test_images, seed=1, region="valid").mean(),
                 compressed_size_bits(mcgsm, test_images).sum() / test_images.size))

    print(f"\n== RIDE, 1 layer, {args.hiddens} hidden units: Adam stages + L-BFGS fine-tuning ==")
    ride = RIDE(num_layers=1, num_hiddens=args.hiddens, num_components=16, num_scales=4, num_features=32)
    ride.adapt(train_images)
    train(ride, train_images, validation_images=train_images[-2:, :64, :64], patch_sizes=(8, 12, 16, 22),
          optimizer="adam", num_patches=args.patches, finetune_max_iter=100,
          finetune_samples=30_000, patience=2, seed=args.seed, verbose=2)
    ride_map = ride.pixel_log_prob(test_images, seed=1)
    r = ride.radius
    rows.append((f"RIDE, 1 layer, {args.hiddens} hid.", ride_map.mean() / np.log(2.0),
                 ride_map[:, r:, r:-r].mean() / np.log(2.0),
                 compressed_size_bits(ride, test_images).sum() / test_images.size))

    print(f"\nHeld-out scores on {len(test_images)} test images: density rate (larger is better), its bound "
          "8 - rate on a code, and the exact code length of the 8-bit values (smaller is better), in bit/px:")
    print(f"{'model':50s} {'density rate':>13s} {'8 - rate':>9s} {'code length':>12s} {'rate, valid region':>19s}")
    for name, rate, valid, code_length in rows:
        exact = "-" if code_length is None else f"{code_length:.3f}"
        print(f"{name:50s} {rate:13.3f} {8 - rate:9.3f} {exact:>12s} {valid:19.3f}")
    picture = os.path.join(args.output, "code_length.png")
    code_length_picture(test_images[0], ride_map[0], picture)
    print(f"\nper-pixel code length of test image 0 under RIDE: {picture}")
    samples = os.path.join(args.output, "samples.png")
    samples_picture([test_images[1:5, :96, :96, None], mcgsm.sample(4, 96, 96, seed=args.seed),
                     ride.sample(4, 96, 96, seed=args.seed)], samples)
    print(f"test crops (top), samples of the MCGSM (middle) and of RIDE (bottom): {samples}")
    print(f"total time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
