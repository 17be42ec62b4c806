"""The paper's dead-leaves experiment (Table 3 and Figure 2) on this project's benchmark.

Trains, on the training part of `ride_tf.data.dead_leaves_benchmark`,
  * the MCGSM image model (num_layers=0) for several neighbourhood widths,
  * RIDE with 1 layer for several neighbourhood widths, and with more layers,
evaluates every model on held-out benchmark images, prints a table in the shape
of the paper's Table 3 (model, bit/px over every pixel and over the paper's
valid region) and draws the neighbourhood sweep of its Figure 2 (MCGSM vs RIDE
against neighbourhood width) as a PNG.  `--cell` picks the spatial LSTM cell
(the default "stable", or the paper's eq. 6).

The paper's scale (900 images, 64-128 hidden units, 8 epochs per model, Caffe
on a GPU) is far beyond a 2-core CPU; the defaults are a reduced run that
finishes in well under an hour there, and every size is a flag.

    python examples/dead_leaves.py --output runs/dead_leaves
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

from ride_tf import RIDE, data, ensemble_log_likelihood_rate, evaluation  # noqa: E402
from ride_tf.io import atomic_save_model, atomic_savefig, atomic_write_json, atomic_write_text  # noqa: E402
from ride_tf.training import train  # noqa: E402


def line_plot(series, path, xlabel, ylabel, title=None, size=(6.0, 4.2)):
    """A matplotlib line plot (the paper's Figure 2): series = {name: (xs, ys)}, one line with markers each."""
    fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    markers = ["o", "s", "^", "D"]
    for k, (name, (x, y)) in enumerate(series.items()):
        ax.plot(x, y, marker=markers[k % len(markers)], linewidth=2, markersize=6, label=name)
    xs = sorted({float(a) for x, _ in series.values() for a in x})
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{a:g}" for a in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def train_mcgsm(train_images, nb_size, args):
    model = RIDE(num_layers=0, num_components=args.components, num_scales=4, num_features=32, nb_size=nb_size)
    model.adapt(train_images)
    model.finetune(train_images, max_iter=args.lbfgs_iter, num_samples=args.samples, verbose=0)
    return model


def train_ride(train_images, validation, nb_size, num_layers, args):
    model = RIDE(num_layers=num_layers, num_hiddens=args.hiddens, num_components=args.components,
                 num_scales=4, num_features=32, nb_size=nb_size, cell=args.cell)
    model.adapt(train_images)
    train(model, train_images, validation_images=validation, patch_sizes=args.patch_sizes,
          learning_rates=args.learning_rates, optimizer=args.optimizer, num_patches=args.patches,
          finetune_max_iter=args.finetune_iter,
          finetune_samples=args.finetune_samples, patience=2, verbose=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=100)
    parser.add_argument("--test-images", type=int, default=20)
    parser.add_argument("--hiddens", type=int, default=32)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--mcgsm-sizes", type=int, nargs="*", default=[3, 5, 7, 9])
    parser.add_argument("--ride-sizes", type=int, nargs="*", default=[3, 5, 7],
                        help="neighbourhood widths of the 1-layer RIDEs")
    parser.add_argument("--deep-layers", type=int, nargs="*", default=[2],
                        help="also train RIDE with these numbers of layers (5 px neighbourhood)")
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[8, 12, 16, 22])
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=None,
                        help="one per stage (default: ride_tf.training.DEFAULT_LEARNING_RATES)")
    parser.add_argument("--patches", type=int, default=5000, help="patches per stage")
    parser.add_argument("--lbfgs-iter", type=int, default=500, help="L-BFGS iterations of the MCGSMs")
    parser.add_argument("--samples", type=int, default=200_000, help="pixels the MCGSMs are fitted on")
    parser.add_argument("--finetune-iter", type=int, default=100, help="RIDE's L-BFGS iterations per stage")
    parser.add_argument("--finetune-samples", type=int, default=50_000)
    parser.add_argument("--cell", choices=["stable", "paper"], default="stable",
                        help="the spatial LSTM cell of the RIDEs")
    parser.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                        help="skip the ensembles (EoRIDE) of the deep RIDEs over the 8 rotations and flips")
    parser.add_argument("--output", default="runs/dead_leaves")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    start = time.time()
    train_images = data.dead_leaves_benchmark("train", args.train_images)
    test_images = data.dead_leaves_benchmark("test", args.test_images)
    # Validation for early stopping: crops of the last training images (never the test set).
    validation = train_images[-4:, :64, :64]
    results = []

    def record(name, kind, nb_size, model):
        atomic_save_model(model, os.path.join(args.output, f"{kind}_{nb_size}px.keras"))
        pixel_map = model.pixel_log_prob(test_images, seed=1)
        rate = float(evaluation.rate(model, pixel_map).mean())
        valid = float(evaluation.rate(model, evaluation.crop(model, pixel_map, "valid")).mean())
        results.append(dict(model=name, kind=kind, nb_size=nb_size, rate=rate, rate_valid=valid,
                            minutes=(time.time() - start) / 60))
        print(f"{name:40s} {rate:.3f} bit/px (valid region {valid:.3f})   "
              f"({results[-1]['minutes']:.1f} min)", flush=True)

    gaussian = RIDE(num_layers=0, nb_size=5)
    gaussian.adapt(train_images)
    results.append(dict(model="Gaussian linear predictor, 5 px", kind="gaussian", nb_size=5,
                        rate=float(gaussian.gaussian_log_likelihood_rate(test_images, seed=1).mean()),
                        rate_valid=float(gaussian.gaussian_log_likelihood_rate(test_images, seed=1,
                                                                               region="valid").mean())))
    print(f"{results[-1]['model']:40s} {results[-1]['rate']:.3f} bit/px "
          f"(valid region {results[-1]['rate_valid']:.3f})", flush=True)
    for nb_size in args.mcgsm_sizes:
        record(f"MCGSM, {args.components} comp., {nb_size} px", "mcgsm", nb_size,
               train_mcgsm(train_images, nb_size, args))
    for nb_size in args.ride_sizes:
        record(f"RIDE ({args.cell}), {args.hiddens} hid., 1 layer, {nb_size} px", "ride1", nb_size,
               train_ride(train_images, validation, nb_size, 1, args))
    for num_layers in args.deep_layers:
        model = train_ride(train_images, validation, 5, num_layers, args)
        record(f"RIDE ({args.cell}), {args.hiddens} hid., {num_layers} layers, 5 px", f"ride{num_layers}", 5,
               model)
        if args.ensemble:
            # EoRIDE (paper section 3.1): the mixture over the 8 rotations and flips, every pixel.
            rate = float(ensemble_log_likelihood_rate(model, test_images, seed=1).mean())
            results.append(dict(model=f"EoRIDE ({args.cell}), {args.hiddens} hid., {num_layers} layers, 5 px",
                                kind=f"eoride{num_layers}", nb_size=5, rate=rate, rate_valid=float("nan"),
                                minutes=(time.time() - start) / 60))
            print(f"{results[-1]['model']:40s} {rate:.3f} bit/px   ({results[-1]['minutes']:.1f} min)", flush=True)

    table = ["| Model | all pixels [bit/px] | valid region [bit/px] |", "|---|---|---|"] + [
        f"| {r['model']} | {r['rate']:.3f} | " + (f"{r['rate_valid']:.3f} |" if np.isfinite(r["rate_valid"])
                                                  else "(every pixel only) |") for r in results]
    print("\n" + "\n".join(table))
    atomic_write_text(os.path.join(args.output, "table.md"), "\n".join(table) + "\n")
    atomic_write_json(os.path.join(args.output, "results.json"), dict(args=vars(args), results=results))
    series = {}
    for kind, label in [("mcgsm", "MCGSM"), ("ride1", "RIDE, 1 layer")]:
        points = sorted((r["nb_size"], r["rate_valid"]) for r in results if r["kind"] == kind)
        if points:
            series[label] = ([p[0] for p in points], [p[1] for p in points])
    if series:
        line_plot(series, os.path.join(args.output, "neighbourhood_sweep.png"),
                  "neighbourhood width [px]", "log-likelihood rate, valid region [bit/px]",
                  title="Dead leaves: held-out rate against neighbourhood width")
    print(f"\nwrote {args.output}/table.md, results.json, neighbourhood_sweep.png "
          f"({(time.time() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
