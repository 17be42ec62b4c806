"""The paper's texture-synthesis experiment (section 3.4, Figure 3) on scikit-image's textures.

The paper used 640 x 640 Brodatz textures, each split into sixteen 160 x 160
regions: 15 for training and one randomly chosen region held out; RIDE was
trained on patches growing from 20 x 20 to 40 x 40 pixels, and Figure 3 shows
samples of an MCGSM and of RIDE next to the real textures.

Here the textures are the ones scikit-image ships (and loads offline):
`brick`, `grass` and `gravel`, 512 x 512 grayscale, each split into sixteen
128 x 128 regions; one region per texture (a seeded random index, recorded)
is held out, the other 15 are the training set.  For each texture it trains

  * the MCGSM image model (num_layers=0, 5 px neighbourhood), fitted by L-BFGS,
  * RIDE (`--layers` spatial LSTM layers of `--hiddens` units, 5 px
    neighbourhood) with the texture curriculum (`ride_tf.training.train`,
    patches 20 x 20 to 40 x 40, Adam, L-BFGS fine-tuning of the MCGSM after
    every stage, early stopping on crops of two training regions),

prints the held-out log-likelihood rates (bit/px over every pixel and over
the paper's valid region) of both models as a markdown table, writes a JSON
record and, per texture, a PNG panel: the real held-out region, a sample of
the MCGSM and a sample of RIDE (`--sample-size` pixels square), plus the
marginal histograms of the three.

The rates are measured on a single 128 x 128 region per texture, so they are
noisy estimates.  The defaults are a reduced run (the paper trained for up
to 6 epochs of patches with more hidden units, on a GPU) that finishes the
three textures in about half an hour on a busy 2-core CPU; every size is a flag.

    python examples/textures.py --output runs/textures
"""
import argparse
import dataclasses
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
from ride_tf.io import atomic_savefig, atomic_write_json, atomic_write_text  # noqa: E402
from ride_tf.training import TEXTURE_PATCH_SIZES, train  # noqa: E402

# scikit-image's offline textures (512 x 512 uint8 grayscale).  Its other
# offline images are scenes, objects or text, not textures.
TEXTURES = ("brick", "grass", "gravel")


def load_texture(name):
    """A scikit-image texture as uint8 [H, W]."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 3:
        import skimage.color
        import skimage.util

        image = skimage.util.img_as_ubyte(skimage.color.rgb2gray(image))
    return image.astype(np.uint8)


def split_regions(image, grid=4):
    """The image cut into grid x grid equal regions, uint8 [grid * grid, h, w], row by row."""
    h, w = image.shape[0] // grid, image.shape[1] // grid
    return np.stack([image[i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(grid) for j in range(grid)])


def train_mcgsm(train_images, args):
    model = RIDE(num_layers=0, num_components=args.components, num_scales=4, num_features=args.features,
                 nb_size=args.nb_size)
    model.adapt(train_images)
    result = model.finetune(train_images, max_iter=args.lbfgs_iter, num_samples=args.samples, verbose=0)
    return model, dict(lbfgs_iterations=result.iterations, train_rate=result.train_rate,
                       validation_rate=result.validation_rate, converged=bool(result.converged))


def train_ride(train_images, validation, args):
    model = RIDE(num_layers=args.layers, num_hiddens=args.hiddens, num_components=args.components,
                 num_scales=4, num_features=args.features, nb_size=args.nb_size, cell=args.cell)
    model.adapt(train_images)
    stages = train(model, train_images, validation_images=validation, patch_sizes=args.patch_sizes,
                   learning_rates=args.learning_rates, optimizer=args.optimizer, num_patches=args.patches,
                   finetune_max_iter=args.finetune_iter, finetune_samples=args.finetune_samples,
                   patience=2, seed=args.seed, verbose=0)
    return model, [dataclasses.asdict(s) for s in stages]


def real_crop(image, regions_grid, index, size):
    """A size x size crop of the real texture: the held-out region's top-left corner if it fits
    in the region, else a crop of the whole texture around the region."""
    h = image.shape[0] // regions_grid
    top, left = (index // regions_grid) * h, (index % regions_grid) * h
    if size <= h:
        return image[top:top + size, left:left + size], "held-out region"
    top = min(max(0, top - (size - h) // 2), image.shape[0] - size)
    left = min(max(0, left - (size - h) // 2), image.shape[1] - size)
    return image[top:top + size, left:left + size], "texture around the held-out region"


def texture_panel(name, panels, path, histogram=True):
    """One row: the images of `panels` = [(title, uint8 [H, W])] in grayscale, and their histograms."""
    columns = len(panels) + int(histogram)
    fig, axes = plt.subplots(1, columns, figsize=(3.2 * columns, 3.6), constrained_layout=True)
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if histogram:
        ax = axes[-1]
        bins = np.arange(0, 257, 4)
        for (title, image), colour in zip(panels, ["black", "tab:blue", "tab:red", "tab:green"]):
            ax.hist(image.ravel(), bins=bins, density=True, histtype="step", color=colour, linewidth=1.3,
                    label=title.split("\n")[0])
        ax.set_xlim(0, 255)
        ax.set_yticks([])
        ax.set_xlabel("intensity")
        ax.set_title("marginal histograms", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
        ax.set_box_aspect(1)
    fig.suptitle(name, fontsize=12)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--textures", nargs="+", default=list(TEXTURES),
                        help="scikit-image data function names")
    parser.add_argument("--grid", type=int, default=4, help="regions per side (16 regions of 128 x 128)")
    parser.add_argument("--layers", type=int, default=1, help="spatial LSTM layers of RIDE")
    parser.add_argument("--hiddens", type=int, default=32)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--nb-size", type=int, default=5, help="neighbourhood width of both models")
    parser.add_argument("--cell", choices=["stable", "paper"], default="stable")
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=list(TEXTURE_PATCH_SIZES))
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=None,
                        help="one per stage (default: ride_tf.training.DEFAULT_LEARNING_RATES)")
    parser.add_argument("--patches", type=int, default=5000, help="RIDE's patches per stage")
    parser.add_argument("--lbfgs-iter", type=int, default=300, help="L-BFGS iterations of the MCGSM")
    parser.add_argument("--samples", type=int, default=100_000, help="pixels the MCGSM is fitted on")
    parser.add_argument("--finetune-iter", type=int, default=50, help="RIDE's L-BFGS iterations per stage")
    parser.add_argument("--finetune-samples", type=int, default=30_000)
    parser.add_argument("--sample-size", type=int, default=128, help="side of the samples in the panels")
    parser.add_argument("--output", default="runs/textures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    # The held-out region of every texture: a seeded random index in 0..grid^2-1, row by row.
    held_out = np.random.default_rng(args.seed).integers(args.grid ** 2, size=len(args.textures))

    start = time.time()
    results = []
    for name, index in zip(args.textures, held_out):
        index = int(index)
        image = load_texture(name)
        regions = split_regions(image, args.grid)
        test = regions[index:index + 1]
        train_images = np.delete(regions, index, axis=0)
        # Early stopping looks at crops of two training regions (never the held-out one).
        validation = train_images[-2:, :64, :64]
        row = dict(texture=name, image_shape=list(image.shape), region_shape=list(regions.shape[1:]),
                   held_out_index=index, held_out_row_col=[index // args.grid, index % args.grid],
                   num_train_regions=len(train_images))
        print(f"{name}: {image.shape[0]} x {image.shape[1]}, {len(regions)} regions of "
              f"{regions.shape[1]} x {regions.shape[2]}, held out region {index} "
              f"(row {index // args.grid}, column {index % args.grid})", flush=True)

        t0 = time.time()
        models = {}
        models["mcgsm"], row["mcgsm_fit"] = train_mcgsm(train_images, args)
        row["mcgsm_minutes"] = (time.time() - t0) / 60
        t0 = time.time()
        models["ride"], row["ride_stages"] = train_ride(train_images, validation, args)
        row["ride_minutes"] = (time.time() - t0) / 60

        panels = [real_crop(image, args.grid, index, args.sample_size)]
        panels = [(f"real ({panels[0][1]})", panels[0][0])]
        for kind, label in [("mcgsm", "MCGSM"), ("ride", f"RIDE ({args.layers} layer" + "s" * (args.layers > 1) + ")")]:
            model = models[kind]
            row[f"{kind}_rate"] = float(model.log_likelihood_rate(test, seed=1)[0])
            row[f"{kind}_rate_valid"] = float(model.log_likelihood_rate(test, seed=1, region="valid")[0])
            t0 = time.time()
            sample = model.sample(1, args.sample_size, args.sample_size, seed=args.seed + 7)[0, :, :, 0]
            row[f"{kind}_sample_seconds"] = time.time() - t0
            row[f"{kind}_sample_mean_std"] = [float(sample.mean()), float(sample.std())]
            panels.append((f"{label} sample\n{row[f'{kind}_rate']:.3f} bit/px held out", sample))
            print(f"  {label:22s} {row[f'{kind}_rate']:.3f} bit/px (valid region {row[f'{kind}_rate_valid']:.3f})"
                  f"   ({(time.time() - start) / 60:.1f} min)", flush=True)
        row["real_mean_std"] = [float(test.mean()), float(test.std())]
        path = os.path.join(args.output, f"textures_{name}.png")
        texture_panel(f"{name} (scikit-image), {args.sample_size} x {args.sample_size} px", panels, path)
        row["panel"] = path
        row["minutes"] = (time.time() - start) / 60
        results.append(row)
        atomic_write_json(os.path.join(args.output, "textures_results.json"),   # after every texture
                          dict(args=vars(args), results=results))

    table = ["| Texture | held-out region | MCGSM, all pixels | RIDE, all pixels "
             "| MCGSM, valid region | RIDE, valid region |", "|---|---|---|---|---|---|"] + [
        f"| {r['texture']} | {r['held_out_index']} | {r['mcgsm_rate']:.3f} | {r['ride_rate']:.3f} "
        f"| {r['mcgsm_rate_valid']:.3f} | {r['ride_rate_valid']:.3f} |" for r in results]
    print(f"\nHeld-out log-likelihood rates [bit/px] (MCGSM: {args.components} components, "
          f"{args.nb_size} px; RIDE: {args.layers} layer(s), {args.hiddens} hidden units, {args.nb_size} px)\n")
    print("\n".join(table))
    atomic_write_text(os.path.join(args.output, "textures_table.md"), "\n".join(table) + "\n")
    print(f"\nwrote {args.output}/textures_table.md, textures_results.json, "
          + ", ".join(f"textures_{r['texture']}.png" for r in results)
          + f" ({(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
