"""`make demo`: RIDE next to its MCGSM baseline on the project's dead-leaves benchmark.

Generates a part of the dead-leaves benchmark (ride_tf.data), fits
  * the Gaussian linear predictor (conditional whitening alone),
  * the MCGSM image model (num_layers=0, L-BFGS), and
  * a small RIDE (one spatial LSTM, the paper's recipe shortened, with Adam),
prints each model's held-out density rate over every pixel (and over the
paper's valid region), its bound 8 - rate on a lossless code, and the exact
code length of the 8-bit values (`ride_tf.compressed_size_bits`),
writes a figure of a test image next to RIDE's per-pixel code length (with
a colour bar in bit/px) and a figure of test crops and samples drawn from the
MCGSM and from RIDE (rows labelled).  A few minutes on a 2-core
CPU; sizes are flags.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ride_tf import RIDE, codec, compressed_size_bits, data  # noqa: E402
from ride_tf.io import atomic_savefig  # noqa: E402
from ride_tf.training import train  # noqa: E402


def code_length_picture(image, code_length_bits, model_name, image_name, path):
    """The test image next to its per-pixel code length in bit/px under the model, with a colour bar, a title
    naming the image and the model, and the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 4.4), constrained_layout=True)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"{image_name} (8-bit gray)")
    shown = axes[1].imshow(code_length_bits, cmap="magma", vmin=0, vmax=max(8.0, float(code_length_bits.max())))
    axes[1].set_title(f"code length under {model_name}\nmean {code_length_bits.mean():.3f} bit/px")
    for axis in axes:
        axis.set_xlabel("column")
        axis.set_ylabel("row")
    figure.colorbar(shown, ax=axes[1], label="bit/px (exact code length of the 8-bit value)")
    atomic_savefig(figure, path, dpi=100)
    plt.close(figure)


def samples_picture(rows, labels, path):
    """Rows of uint8 [N, H, W, 1] images, one labelled row each (e.g. test crops, MCGSM samples, RIDE samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(images) for images in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(2 * columns, 2.1 * len(rows)), squeeze=False,
                                constrained_layout=True)
    for row, (images, label) in enumerate(zip(rows, labels)):
        for column in range(columns):
            axis = axes[row][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(images):
                axis.imshow(images[column][..., 0], cmap="gray", vmin=0, vmax=255)
            if column == 0:
                axis.set_ylabel(label)
    atomic_savefig(figure, path, dpi=100)
    plt.close(figure)


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
    train_images = data.dead_leaves_benchmark("train", args.train_images)
    test_images = data.dead_leaves_benchmark("test", args.test_images)
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
    code_lengths = codec.pixel_code_lengths(ride, test_images[:1])[0]
    code_length_picture(test_images[0], code_lengths, f"RIDE (1 layer, {args.hiddens} units)",
                        "dead-leaves test image 0", picture)
    print(f"\nper-pixel code length of test image 0 under RIDE: {picture}")
    samples = os.path.join(args.output, "samples.png")
    samples_picture([test_images[1:5, :96, :96, None], mcgsm.sample(4, 96, 96, seed=args.seed),
                     ride.sample(4, 96, 96, seed=args.seed)],
                    ["test crops", "MCGSM samples", "RIDE samples"], samples)
    print(f"test crops (top), samples of the MCGSM (middle) and of RIDE (bottom): {samples}")
    print(f"total time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
