"""The paper's inpainting experiment (section 3.4, Figure 4) on a scikit-image texture.

A 512 x 512 grayscale texture (`--texture`: gravel, brick or grass, all
shipped with scikit-image) is split into sixteen 128 x 128 regions; one
(`--held-out`, by default a seeded random one) is held out and RIDE is
trained on the other 15 with the texture curriculum (`ride_tf.training.train`,
patches 20 x 20 to 40 x 40, Adam, L-BFGS fine-tuning of the MCGSM after each
stage) -- or loaded with `--model file.keras`.  A 71 x 71 hole is cut in the
middle of the held-out region and filled by Metropolis within Gibbs sampling
of RIDE's posterior (`RIDE.inpaint`: the best of 5 ancestral samples, then
`--sweeps` sweeps over overlapping 5 x 5 blocks accepted on 19 x 19 windows,
random flips between sweeps; the paper ran 100 sweeps).

Prints the model's rate on the held-out region, the acceptance rate, the
timings, and the log-likelihood of the region with the true and with the
inpainted hole; writes a PNG panel original | masked | filled and a JSON
record to `--output`, and the trained model (when it trains one).

The defaults are a small run for a busy 2-core CPU: 5.5 minutes there (4 to
train RIDE with 32 units, 1.2 for 20 sweeps; acceptance rate about 2 %).
The paper trained larger models for longer on a GPU and ran 100 sweeps.

    python examples/inpainting.py --output runs/inpainting
    python examples/inpainting.py --model runs/inpainting/model.keras --sweeps 100
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ride_tf import RIDE  # noqa: E402
from ride_tf.io import atomic_save_model, atomic_savefig, atomic_write_json  # noqa: E402
from ride_tf.training import TEXTURE_PATCH_SIZES, train  # noqa: E402

TEXTURES = ("gravel", "brick", "grass")


def texture_regions(name, grid=4):
    """scikit-image's texture `name` (uint8 [512, 512]) cut into grid x grid regions: [grid^2, h, w]."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"texture {name!r}: expected a uint8 grayscale image, got {image.dtype} {image.shape}.")
    h, w = image.shape[0] // grid, image.shape[1] // grid
    return np.stack([image[i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(grid) for j in range(grid)])


def central_hole(shape, size):
    """bool [H, W]: a size x size square in the middle of the image."""
    if size >= min(shape):
        raise ValueError(f"a hole of {size} x {size} pixels does not fit in an image of {shape}.")
    mask = np.zeros(shape, bool)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    mask[top:top + size, left:left + size] = True
    return mask


def panel(original, mask, filled, path, title):
    """Original | masked (hole in red) | filled, side by side."""
    masked = np.ma.masked_array(original, mask)
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("red")
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.6))
    for ax, image, name in zip(axes, [original, masked, filled], ["original", "masked", "filled"]):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


def train_model(regions, args):
    keras.utils.set_random_seed(args.seed)
    model = RIDE(num_hiddens=args.hiddens, num_layers=args.layers, num_components=args.components,
                 num_scales=4, num_features=args.features, nb_size=5)
    stages = train(model, list(regions), patch_sizes=args.patch_sizes, optimizer="adam",
                   num_patches=args.patches, finetune_max_iter=args.finetune_iter,
                   finetune_samples=args.finetune_samples, seed=args.seed, verbose=2)
    return model, stages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texture", choices=TEXTURES, default="gravel")
    parser.add_argument("--held-out", type=int, default=None, help="index of the held-out region (0..15); "
                        "default: drawn with --seed")
    parser.add_argument("--model", default=None, help="a saved RIDE (.keras) to use instead of training one")
    parser.add_argument("--hiddens", type=int, default=32)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=list(TEXTURE_PATCH_SIZES))
    parser.add_argument("--patches", type=int, default=2000, help="training patches per stage")
    parser.add_argument("--finetune-iter", type=int, default=50, help="L-BFGS iterations of the MCGSM per stage")
    parser.add_argument("--finetune-samples", type=int, default=20_000)
    parser.add_argument("--hole", type=int, default=71, help="side of the square hole (the paper's 71)")
    parser.add_argument("--sweeps", type=int, default=20, help="Gibbs sweeps (the paper ran 100)")
    parser.add_argument("--output", default="runs/inpainting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)

    regions = texture_regions(args.texture)
    held_out = (int(np.random.default_rng(args.seed).integers(len(regions))) if args.held_out is None
                else args.held_out)
    if not 0 <= held_out < len(regions):
        parser.error(f"--held-out must lie in 0..{len(regions) - 1}, got {held_out}.")
    training = np.delete(regions, held_out, axis=0)
    test = regions[held_out]
    print(f"{args.texture}: {len(training)} training regions of {test.shape[0]} x {test.shape[1]}, "
          f"region {held_out} held out")

    record = dict(texture=args.texture, held_out=held_out, hole=args.hole, sweeps=args.sweeps, seed=args.seed)
    start = time.time()
    if args.model:
        model = keras.models.load_model(args.model)
        record["model"] = args.model
    else:
        model, stages = train_model(training, args)
        path = os.path.join(args.output, "model.keras")
        atomic_save_model(model, path)
        record.update(model=path, stages=[vars(s) for s in stages],
                      config=dict(hiddens=args.hiddens, layers=args.layers, components=args.components,
                                  features=args.features, patches=args.patches, patch_sizes=args.patch_sizes,
                                  finetune_iter=args.finetune_iter))
    record["train_seconds"] = time.time() - start
    rate = float(model.log_likelihood_rate(test[None], seed=args.seed)[0])
    record["held_out_bits_per_pixel"] = rate
    print(f"model ready in {record['train_seconds']:.0f} s; held-out region: {rate:.3f} bit/px")

    mask = central_hole(test.shape, args.hole)
    start = time.time()
    filled, acceptance = model.inpaint(test, mask, num_sweeps=args.sweeps, seed=args.seed, verbose=1)
    seconds = time.time() - start
    record.update(inpaint_seconds=seconds, acceptance_rate=acceptance)
    print(f"inpainted a {args.hole} x {args.hole} hole with {args.sweeps} sweeps in {seconds:.0f} s "
          f"({seconds / max(args.sweeps, 1):.1f} s/sweep incl. initialisation); acceptance rate {acceptance:.3f}")

    # log p of the whole region (bin centres) with the true and with the inpainted hole.
    log_p = model.log_prob(np.stack([test, filled]), noise=False)
    record.update(log_prob_original=float(log_p[0]), log_prob_filled=float(log_p[1]))
    print(f"log p(region) in nats: original {log_p[0]:.1f}, inpainted {log_p[1]:.1f} "
          f"({(log_p[1] - log_p[0]) / mask.sum() / np.log(2):+.3f} bit per hole pixel)")

    png = os.path.join(args.output, f"inpainting_{args.texture}.png")
    panel(test, mask, filled, png, f"RIDE ({model.num_layers} layer(s), {model.num_hiddens} units), "
          f"{args.texture} region {held_out}, {args.hole} x {args.hole} hole, {args.sweeps} sweeps, "
          f"acceptance {acceptance:.2f}")
    atomic_write_json(os.path.join(args.output, "inpainting.json"), record, indent=2)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
