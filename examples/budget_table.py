"""Models at a fixed wall-clock training budget: held-out density rate and exact code length, next to codecs.

For each data set, each model is trained within the same budget of seconds
(`--budget`, the README's table uses 600 on the 2-core machine) and scored on
the held-out images:

  * density rate [bit/px], larger is better: the log-likelihood rate of the
    dequantized pixels (every pixel, `RIDE.log_likelihood_rate`, noise seed 0);
  * code length [bit/px], smaller is better: the exact ideal code length of the
    8-bit values, sum -log2 P(k_ij | k_<ij) / pixels
    (`ride_tf.compressed_size_bits`; the codec writes within a fraction
    of a percent of it);

next to PNG (level 9), WebP lossless, JPEG-XL lossless (effort 9) and lzma on
the same images (`benchmarks/bench_codec.py`'s settings).

Models (`--models`):
  gaussian      the Gaussian linear predictor of the 5 px neighbourhood (the
                whitening alone; no training);
  mcgsm5/mcgsm9 the MCGSM image model (RIDE num_layers=0) with a 5 or 9 px
                wide neighbourhood, fitted by L-BFGS (`ride_tf.training.fit_mcgsm`)
                until the budget is spent or early stopping;
  ride1/ride2   RIDE with 1 or 2 spatial LSTM layers (5 px), trained by
                `ride_tf.training.train` (Adam, the curriculum, L-BFGS
                fine-tuning, best stage by validation) with `time_budget`.
                `--architectures` chooses "skip" (skip_inputs=True: the MCGSM
                reads [h, x^, e] and RIDE starts from the fitted MCGSM, whose
                L-BFGS fit is part of the budget) and/or "paper" (the paper's
                architecture, from scratch).

Objectives (`--objectives`): "density" trains on the density of dequantized
pixels (the paper), "discrete" on the exact probability of the 8-bit values
(Keras fit and L-BFGS on the code length).  Both are scored both ways.

Data sets (`--sets`):
  dead_leaves       the project's dead-leaves benchmark (noise std 0.02):
                    training images from its training split, held-out images
                    from its test split;
  flat_dead_leaves  the same generator without noise (noise_std=0): flat,
                    hard-edged leaves;
  textures          scikit-image's brick, grass and gravel: one model on the
                    non-held-out 128 x 128 regions, scored on the held-out
                    regions (`ride_tf.pretrained.HELD_OUT`);
  photos            trained on the scikit-image photos of
                    `ride_tf.pretrained.TRAINING_IMAGES` (gray), scored on the
                    held-out photos camera, coffee and chelsea (gray).
Validation (best stage, early stopping): separate training-split images for
the dead leaves; random crops of the training images for textures and photos.

    python examples/budget_table.py --budget 600 --output runs/budget_table.json     # the README's table
    python examples/budget_table.py --quick                                             # a few minutes' check
    python examples/budget_table.py --render runs/a.json runs/b.json                   # one table from several runs

`--quick`: small models (8 components, 16 units), a budget of 120 s, 64 x 64
(dead leaves) or 128 x 128 (photos) crops of the held-out images, fewer
training images, models mcgsm5 and ride1; any flag given explicitly wins.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

SETS = ("dead_leaves", "flat_dead_leaves", "textures", "photos")
MODELS = ("gaussian", "mcgsm5", "mcgsm9", "ride1", "ride2")
OBJECTIVES = ("density", "discrete")
ARCHITECTURES = ("skip", "paper")
CODECS = ("PNG", "WebP lossless", "JPEG-XL lossless", "lzma")

FULL = dict(budget=600.0, models="gaussian,mcgsm5,mcgsm9,ride1,ride2", components=32, features=32, hiddens=32,
            train_images=200, test_images=10, test_crop=0, photo_crop=0, num_patches=10_000,
            finetune_samples=50_000, finetune_iter=500)
QUICK = dict(budget=120.0, models="mcgsm5,ride1", components=8, features=16, hiddens=16,
             train_images=20, test_images=2, test_crop=64, photo_crop=128, num_patches=2_000,
             finetune_samples=10_000, finetune_iter=100)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small models and images, 120 s per model")
    parser.add_argument("--budget", type=float, help="training seconds per model (default 600; quick 120)")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {SETS}")
    parser.add_argument("--models", help=f"comma-separated, of {MODELS}")
    parser.add_argument("--objectives", default="density,discrete", help=f"comma-separated, of {OBJECTIVES}")
    parser.add_argument("--architectures", default="skip",
                        help=f"RIDE architectures, comma-separated, of {ARCHITECTURES}")
    parser.add_argument("--components", type=int, help="MCGSM components (default 32; quick 8)")
    parser.add_argument("--features", type=int, help="MCGSM features (default 32; quick 16)")
    parser.add_argument("--hiddens", type=int, help="spatial LSTM units (default 32; quick 16)")
    parser.add_argument("--train-images", type=int, help="dead-leaves training images (default 200; quick 20)")
    parser.add_argument("--test-images", type=int, help="dead-leaves held-out images (default 10; quick 2)")
    parser.add_argument("--test-crop", type=int, help="crop held-out dead leaves to this size (0: whole)")
    parser.add_argument("--photo-crop", type=int, help="centre-crop held-out photos to this size (0: whole)")
    parser.add_argument("--num-patches", type=int, help="patches per RIDE epoch")
    parser.add_argument("--finetune-samples", type=int, help="pixels of the L-BFGS fits")
    parser.add_argument("--finetune-iter", type=int, help="most L-BFGS iterations per RIDE stage")
    parser.add_argument("--no-codecs", action="store_true", help="skip PNG, WebP, JPEG-XL and lzma")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: TensorFlow's default, all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name, allowed in [("sets", SETS), ("models", MODELS), ("objectives", OBJECTIVES),
                          ("architectures", ARCHITECTURES)]:
        values = [v for v in getattr(args, name).split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            parser.error(f"--{name}: {bad or 'nothing'} not in {allowed}")
        setattr(args, name, values)
    return args


# ------------------------------------------------------------------ the data
def _centre_crop(image, size):
    if not size:
        return image
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top:top + size, left:left + size]


def load_set(name, args):
    """(training images: list of uint8 [H, W, 1], validation images, held-out images {name: uint8 [H, W, 1]})."""
    from ride_tf import data as image_data, pretrained
    from ride_tf.training import sample_patches

    if name in ("dead_leaves", "flat_dead_leaves"):
        config = dict(image_data.DEAD_LEAVES_BENCHMARK)
        if name == "flat_dead_leaves":
            config["noise_std"] = 0.0
        config.pop("num_images")
        num_test = image_data.DEAD_LEAVES_BENCHMARK_NUM_TEST
        first_test = image_data.DEAD_LEAVES_BENCHMARK["num_images"] - num_test
        train = image_data.dead_leaves(args.train_images + 2, first_index=0, **config)[..., None]
        test = image_data.dead_leaves(args.test_images, first_index=first_test, **config)[..., None]
        validation = [_centre_crop(im, 64) for im in train[-2:]]
        held_out = {f"{name}[{first_test + k}]": _centre_crop(im, args.test_crop) for k, im in enumerate(test)}
        return list(train[:-2]), validation, held_out
    if name == "textures":
        train, held_out = [], {}
        for texture in pretrained.TEXTURES:
            index = pretrained.HELD_OUT["texture_regions"][texture]
            for k, region in enumerate(pretrained.texture_regions(texture)):
                if k == index:
                    held_out[f"{texture}[{k}]"] = region
                else:
                    train.append(region)
        validation = list(sample_patches(train, 64, 3, seed=args.seed + 7))
        return train, validation, held_out
    if name == "photos":
        train = [pretrained.load_photo(p, 1) for p in pretrained.TRAINING_IMAGES]
        held_out = {p: _centre_crop(pretrained.load_photo(p, 1, crop=False), args.photo_crop)
                    for p in pretrained.HELD_OUT["photos"]}
        validation = list(sample_patches(train, 96, 3, seed=args.seed + 7))
        return train, validation, held_out
    raise ValueError(name)


# ---------------------------------------------------------------- the scores
def scores(model, held_out, seed=0):
    """{image: (density rate, code length)} in bit/px and their means."""
    from ride_tf import codec

    per_image = {}
    for name, image in held_out.items():
        rate = float(model.log_likelihood_rate(image[None], seed=seed)[0])
        code_length = float(codec.compressed_size_bits(model, image[None])[0]) / image.size
        per_image[name] = (rate, code_length)
    rates, lengths = zip(*per_image.values())
    return float(np.mean(rates)), float(np.mean(lengths)), per_image


def codec_scores(held_out):
    """{codec: mean bit/px} over the held-out images (each codec checked to decode losslessly)."""
    from bench_codec import reference_sizes

    sizes = {codec: [] for codec in CODECS}
    for image in held_out.values():
        found = reference_sizes(np.ascontiguousarray(image[..., 0]))
        for codec in CODECS:
            sizes[codec].append(8.0 * found[codec] / image[..., 0].size)
    return {codec: float(np.mean(v)) for codec, v in sizes.items()}


# -------------------------------------------------------------- the training
def patch_sizes(set_name):
    from ride_tf.training import NATURAL_IMAGE_PATCH_SIZES, TEXTURE_PATCH_SIZES

    return TEXTURE_PATCH_SIZES[:4] if set_name == "textures" else NATURAL_IMAGE_PATCH_SIZES


def fit_model(kind, objective, architecture, train_images, validation, set_name, args):
    """Build and train one model within the budget; returns (model, description, seconds, details)."""
    import keras

    from ride_tf import RIDE
    from ride_tf.training import fit_mcgsm, sample_patches, train

    keras.utils.set_random_seed(args.seed)
    started = time.monotonic()
    sizes = patch_sizes(set_name)
    pooled = sample_patches(train_images, max(sizes), max(64, args.finetune_samples // max(sizes) ** 2),
                            seed=args.seed + 1)
    details = {}
    if kind == "gaussian":
        model = RIDE(num_layers=0, nb_size=5, num_components=1, num_scales=1, num_features=1)
        model.adapt(pooled, seed=args.seed)
        model.mcgsm.set_standard_normal()
        description = "Gaussian linear predictor, 5 px"
    elif kind.startswith("mcgsm"):
        nb_size = int(kind[len("mcgsm"):])
        model = RIDE(num_layers=0, nb_size=nb_size, num_components=args.components, num_scales=4,
                     num_features=args.features, objective=objective)
        model.adapt(pooled, seed=args.seed)
        result = fit_mcgsm(model, pooled, max_iter=100_000, num_samples=args.finetune_samples, seed=args.seed,
                           objective=objective, max_seconds=args.budget - (time.monotonic() - started))
        details = dict(lbfgs_iterations=result.iterations, converged=result.converged)
        description = f"MCGSM, {nb_size} px"
    else:
        layers = int(kind[len("ride"):])
        model = RIDE(num_layers=layers, num_hiddens=args.hiddens, nb_size=5, num_components=args.components,
                     num_scales=4, num_features=args.features, skip_inputs=architecture == "skip",
                     objective=objective)
        stages = train(model, train_images, validation_images=validation, patch_sizes=sizes,
                       epochs_per_stage=10_000, num_patches=args.num_patches, optimizer="adam",
                       finetune_max_iter=args.finetune_iter, finetune_samples=args.finetune_samples,
                       patience=len(sizes), seed=args.seed, verbose=0,
                       time_budget=args.budget - (time.monotonic() - started))
        details = dict(stages=[{k: v for k, v in vars(s).items()} for s in stages])
        description = (f"RIDE, {layers} layer{'s' if layers > 1 else ''}, {args.hiddens} units"
                       + (", from the MCGSM" if architecture == "skip" else ", paper"))
    return model, description, time.monotonic() - started, details


def run_set(set_name, args, results):
    train_images, validation, held_out = load_set(set_name, args)
    pixels = sum(im[..., 0].size for im in held_out.values())
    print(f"\n== {set_name}: {len(train_images)} training images, {len(held_out)} held-out images "
          f"({pixels} pixels), budget {args.budget:.0f} s per model", flush=True)
    entry = dict(held_out={k: list(v.shape[:2]) for k, v in held_out.items()}, rows=[])
    if not args.no_codecs:
        entry["codecs"] = codec_scores(held_out)
    results["sets"][set_name] = entry
    for kind in args.models:
        objectives = [None] if kind == "gaussian" else args.objectives
        architectures = args.architectures if kind.startswith("ride") else [None]
        for architecture in architectures:
            for objective in objectives:
                model, description, seconds, details = fit_model(kind, objective or "density", architecture,
                                                                 train_images, validation, set_name, args)
                rate, code_length, per_image = scores(model, held_out, args.seed)
                row = dict(model=kind, architecture=architecture, objective=objective, description=description,
                           density_rate=rate, code_length=code_length, train_seconds=seconds,
                           per_image=per_image, **details)
                entry["rows"].append(row)
                print(f"{description:45s} trained for {objective or '-':8s} density rate {rate:7.3f}  "
                      f"code length {code_length:6.3f} bit/px  ({seconds:.0f} s)", flush=True)
                if args.output:
                    write_json(args.output, results)


def write_json(path, results):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=float)
    os.replace(tmp, path)


def table(results):
    """Markdown: one table per data set."""
    lines = []
    for set_name, entry in results["sets"].items():
        lines += [f"\n**{set_name}** ({len(entry['held_out'])} held-out images)\n",
                  "| model | trained for | density rate [bit/px] (larger is better) | "
                  "code length [bit/px] (smaller is better) | training [s] |",
                  "|---|---|---|---|---|"]
        for row in entry["rows"]:
            lines.append(f"| {row['description']} | {row['objective'] or '-'} | {row['density_rate']:.3f} | "
                         f"{row['code_length']:.3f} | {row['train_seconds']:.0f} |")
        for codec, bits in entry.get("codecs", {}).items():
            lines.append(f"| {codec} | - | - | {bits:.3f} | - |")
    return "\n".join(lines)


MODEL_LABELS = {"gaussian": "Gaussian", "mcgsm5": "MCGSM 5 px", "mcgsm9": "MCGSM 9 px", "ride1": "RIDE 1 layer",
                "ride2": "RIDE 2 layers"}


def combined_tables(results_list):
    """Markdown: code length and density rate, a row per (set, objective), a column per model and codec.

    Then the issue's targets, each checked: RIDE (1 and 2 layers) at least
    +0.05 bit/px of density rate above the MCGSM of its neighbourhood (5 px),
    two layers at least as good as one, the best code length below JPEG-XL
    lossless (textures, photos) and below lzma (flat dead leaves).
    """
    merged = {}   # (set, objective) -> ({model: row}, codecs); a later file's row of a model replaces an earlier one
    for results in results_list:
        for set_name, entry in results["sets"].items():
            objectives = sorted({r["objective"] for r in entry["rows"] if r["objective"]})
            for objective in objectives or [None]:
                by_model, codecs = merged.setdefault((set_name, objective), ({}, {}))
                by_model.update({r["model"]: r for r in entry["rows"]
                                 if r["objective"] in (objective, None) and r.get("architecture") in (None, "skip")})
                codecs.update(entry.get("codecs", {}))
    # A set's Gaussian row (no objective) from a file without trained models joins the set's other rows.
    for (set_name, objective), (by_model, codecs) in list(merged.items()):
        others = [key for key in merged if key[0] == set_name and key[1] is not None]
        if objective is None and others:
            for key in others:
                merged[key][0].update({m: r for m, r in by_model.items() if m not in merged[key][0]})
                merged[key][1].update({c: v for c, v in codecs.items() if c not in merged[key][1]})
            del merged[(set_name, objective)]
    rows = [(set_name, objective, by_model, codecs) for (set_name, objective), (by_model, codecs) in merged.items()]
    models = [m for m in MODELS if any(m in r[2] for r in rows)]
    codecs = [c for c in CODECS if any(c in r[3] for r in rows)]
    lines = ["| code length [bit/px], smaller is better | trained for | "
             + " | ".join(MODEL_LABELS[m] for m in models) + " | " + " | ".join(codecs) + " |",
             "|---|---|" + "---|" * (len(models) + len(codecs))]
    for set_name, objective, by_model, found in rows:
        best = min([by_model[m]["code_length"] for m in models if m in by_model] + list(found.values()))
        cells = [by_model[m]["code_length"] if m in by_model else None for m in models]
        cells += [found.get(c) for c in codecs]
        lines.append(f"| {set_name.replace('_', ' ')} | {objective or '-'} | " + " | ".join(
            "-" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in cells) + " |")
    lines += ["", "| density rate [bit/px], larger is better | trained for | "
              + " | ".join(MODEL_LABELS[m] for m in models) + " |", "|---|---|" + "---|" * len(models)]
    for set_name, objective, by_model, _ in rows:
        values = [by_model[m]["density_rate"] if m in by_model else None for m in models]
        best = max(v for v in values if v is not None)
        lines.append(f"| {set_name.replace('_', ' ')} | {objective or '-'} | " + " | ".join(
            "-" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in values) + " |")
    lines += ["", "Targets:"]
    for set_name, objective, by_model, found in rows:
        label = f"{set_name.replace('_', ' ')} ({objective or '-'})"
        checks = []
        # The score a model was trained for, larger is better: density rate, or minus the code length.
        if objective == "discrete":
            score, unit = (lambda row: -row["code_length"]), "bit/px of code length"
        else:
            score, unit = (lambda row: row["density_rate"]), "bit/px of density rate"
        if "mcgsm5" in by_model:
            for ride in ("ride1", "ride2"):
                if ride in by_model:
                    gain = score(by_model[ride]) - score(by_model["mcgsm5"])
                    checks.append(f"{MODEL_LABELS[ride]} {gain:+.3f} {unit} over the MCGSM 5 px "
                                  f"({'met' if gain >= 0.05 else 'NOT met'}: +0.05)")
        if "ride1" in by_model and "ride2" in by_model:
            gain = score(by_model["ride2"]) - score(by_model["ride1"])
            checks.append(f"2 layers {gain:+.3f} against 1 ({'met' if gain >= 0 else 'NOT met'})")
        reference = {"textures": "JPEG-XL lossless", "photos": "JPEG-XL lossless",
                     "flat_dead_leaves": "lzma"}.get(set_name)
        if reference in found and by_model:
            candidates = [(m, r) for m, r in by_model.items() if m.startswith("ride")] or list(by_model.items())
            model, row = min(candidates, key=lambda item: item[1]["code_length"])
            checks.append(f"{MODEL_LABELS[model]} code length {row['code_length']:.3f} against {reference} "
                          f"{found[reference]:.3f} ({'met' if row['code_length'] < found[reference] else 'NOT met'})")
        lines.append(f"- {label}: " + "; ".join(checks))
    return "\n".join(lines)


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--render":
        if len(argv) < 2:
            raise SystemExit("--render: give the JSON files written by --output")
        results_list = []
        for path in argv[1:]:
            try:
                with open(path) as stream:
                    results_list.append(json.load(stream))
            except (OSError, ValueError) as error:
                raise SystemExit(f"--render: cannot read {path}: {error}")
        print(combined_tables(results_list))
        return
    args = parse_args(argv)
    from ride_tf.runtime import quiet_tensorflow

    tf = quiet_tensorflow()  # after argparse, so that --help is fast

    if args.threads < 0:
        raise SystemExit("--threads: must be >= 0")
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    started = time.time()
    results = dict(command=" ".join([os.path.basename(sys.argv[0])] + argv),
                   settings={k: v for k, v in vars(args).items()}, sets={})
    for set_name in args.sets:
        run_set(set_name, args, results)
    results["total_seconds"] = time.time() - started
    if args.output:
        write_json(args.output, results)
    print(table(results))
    print(f"\ntotal {results['total_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
