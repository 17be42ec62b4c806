"""Train a RIDE on the photograph corpus of `examples/build_corpus.py` (issue J): resumable, with a time budget.

Data: the training pictures of the corpus (OUT/gray/train/*.png or
OUT/rgb/train/*.png: the photographs of the corpus's sources, downscaled),
never its held-out or evaluation pictures.  Most of the corpus's pixels are
astronomical pictures (stellarium-data); `--share stellarium=F` gives the
pictures whose names start with "stellarium" the share F of the training
pixels, by cutting each to a centred window of the same fraction of its area
(the objects are centred; their dark surroundings go first), so that the
terrestrial photographs, which the models are meant for, are not drowned.
Early stopping and the selection of the best stage look at 96 x 96 centre
crops of eight training photographs of the other sources.

Recipe: `ride_tf.training.train` (the paper's: stages of random flipped
patches of growing size, L-BFGS fine-tuning of the MCGSM after every stage)
with Adam, `--time-budget` seconds of wall-clock time shared by the stages,
the run's state checkpointed after every epoch and stage in
`--checkpoint-dir` (rerun the same command with `--resume` after an
interruption).  With `--discrete-iter N` the MCGSM is then fine-tuned for
the exact code length of the 8-bit values (`objective="discrete"`, L-BFGS),
and kept only if that lowers the code length of the validation crops.

Scores (written to `--record`): on the held-out pictures and the evaluation
pictures of the corpus, the density rate (bit/px, larger is better) and the
exact code length (bit/px, smaller is better, `ride_tf.discrete.pixel_log_mass`).

    nice -n 5 python examples/train_corpus.py --channels 1 --layers 1 --hiddens 64 --time-budget 3600 \\
        --threads 1 --checkpoint-dir runs/corpus/g1x64 --output runs/corpus/g1x64.keras \\
        --record runs/corpus/g1x64.json
"""
import argparse
import dataclasses
import datetime
import glob
import math
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered



def read_pictures(folder, channels):
    """{name: uint8 [H, W, C]} of the PNG files in `folder`."""
    from ride_tf.data.files import read_image_file

    pictures = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.png"))):
        pixels, _ = read_image_file(path)
        if pixels.shape[-1] != channels:
            raise SystemExit(f"{path}: {pixels.shape[-1]} channel(s), expected {channels}")
        pictures[os.path.basename(path)[:-4]] = pixels
    if not pictures:
        raise SystemExit(f"{folder}: no PNG files (run examples/build_corpus.py first)")
    return pictures


def centre_window(image, fraction):
    """The centred window of `image` [H, W, C] holding about `fraction` of its area, both sides scaled alike."""
    scale = min(1.0, float(np.sqrt(fraction)))
    height, width = (max(1, int(round(n * scale))) for n in image.shape[:2])
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top:top + height, left:left + width]


def limit_shares(pictures, shares):
    """`pictures` with the pictures of each name prefix in `shares` {prefix: F} cut to centred windows so that
    they hold the share F of all pixels (never enlarged); the others unchanged."""
    pictures = dict(pictures)
    for prefix, share in shares.items():
        chosen = [name for name in pictures if name.startswith(prefix)]
        own = sum(pictures[n].shape[0] * pictures[n].shape[1] for n in chosen)
        rest = sum(im.shape[0] * im.shape[1] for name, im in pictures.items() if name not in chosen)
        if own and rest and share < 1:
            fraction = share / (1 - share) * rest / own
            for name in chosen:
                pictures[name] = centre_window(pictures[name], fraction)
    return pictures


def validation_crops(pictures, size=96, count=8, exclude=()):
    """Centre crops of `count` training photographs spread over the list (texture regions and the pictures
    whose names start with a prefix in `exclude` are skipped)."""
    photos = [name for name in pictures if "-brick-" not in name and "-grass-" not in name
              and "-gravel-" not in name and min(pictures[name].shape[:2]) >= size
              and not name.startswith(tuple(exclude))]
    chosen = photos[::max(1, len(photos) // count)][:count]
    crops = []
    for name in chosen:
        image = pictures[name]
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append(image[top:top + size, left:left + size])
    return chosen, np.stack(crops)


def scores(model, pictures):
    """{name: {shape, rate, code_length}}: density rate (seed 1) and exact code length in bit/px of each picture."""
    from ride_tf import discrete

    out = {}
    for name, image in pictures.items():
        batch = image[np.newaxis]
        bits = -discrete.pixel_log_mass(model, batch).sum() / np.log(2.0)
        out[name] = dict(shape=list(image.shape), rate=float(model.log_likelihood_rate(batch, seed=1)[0]),
                         code_length=float(bits / image.size))
    return out


def mean_code_length(model, images):
    from ride_tf import discrete

    return float(np.mean([-discrete.pixel_log_mass(model, im[np.newaxis]).mean() / np.log(2.0) / im.shape[-1]
                          for im in images]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="/work/corpus", help="the output folder of build_corpus.py")
    parser.add_argument("--channels", type=int, choices=[1, 3], default=1)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hiddens", type=int, default=32)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--scales", type=int, default=4)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--nb-size", type=int, default=5)
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[8, 12, 16, 22])
    parser.add_argument("--patches", type=int, default=20_000, help="patches per epoch")
    parser.add_argument("--finetune-iter", type=int, default=200, help="L-BFGS iterations after every stage")
    parser.add_argument("--finetune-samples", type=int, default=100_000)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--time-budget", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument("--discrete-iter", type=int, default=0,
                        help="L-BFGS iterations on the exact code length at the end (0: none)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow intra- and inter-op threads")
    parser.add_argument("--init", help="a .keras model to continue training (its configuration and weights; no "
                        "baseline fit): e.g. a model of an earlier run, trained further with new stages")
    parser.add_argument("--learning-rates", type=float, nargs="+", help="one per stage (default: Adam 3e-3 to 1e-4)")
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--output", required=True, help="the .keras file to write")
    parser.add_argument("--record", required=True, help="the JSON record to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share", nargs="*", default=[], metavar="PREFIX=F",
                        help="the share F (0-1) of the training pixels for the pictures whose names start with PREFIX "
                        "(e.g. stellarium=0.3): each is cut to a centred window; they give no validation crops")
    args = parser.parse_args(argv)
    shares = {}
    for item in args.share:
        prefix, _, value = item.partition("=")
        try:
            shares[prefix] = float(value)
        except ValueError:
            raise SystemExit(f"--share {item}: expected PREFIX=F with 0 < F < 1") from None
        if not (prefix and 0 < shares[prefix] < 1):
            raise SystemExit(f"--share {item}: expected PREFIX=F with 0 < F < 1")

    import keras
    import tensorflow as tf

    from ride_tf import RIDE, load_model
    from ride_tf.io import atomic_save_model, atomic_write_json
    from ride_tf.training import sample_patches, train, validation_scores

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    start = time.time()
    kind = "gray" if args.channels == 1 else "rgb"
    training = limit_shares(read_pictures(os.path.join(args.corpus, kind, "train"), args.channels), shares)
    held_out = read_pictures(os.path.join(args.corpus, kind, "held_out"), args.channels)
    evaluation_folder = os.path.join(args.corpus, "eval", kind)
    evaluation = read_pictures(evaluation_folder, args.channels) if os.path.isdir(evaluation_folder) else {}
    chosen, validation = validation_crops(training, exclude=tuple(shares))
    pixels = sum(im.shape[0] * im.shape[1] for im in training.values())
    print(f"{kind}: {len(training)} training pictures ({pixels / 1e6:.2f} Mpx); validation crops of "
          f"{', '.join(chosen)}; {len(held_out)} held out, {len(evaluation)} for evaluation", flush=True)

    if args.init:
        model = load_model(args.init)
        if model.num_channels != args.channels:
            raise SystemExit(f"{args.init}: a {model.num_channels}-channel model, not {args.channels}")
    else:
        model = RIDE(num_channels=args.channels, num_hiddens=args.hiddens, num_layers=args.layers,
                     num_components=args.components, num_scales=args.scales, num_features=args.features,
                     nb_size=args.nb_size)
    initial = None
    if args.init:         # the model it starts from is a candidate too: kept unless a stage does better
        initial = (validation_scores(model, validation)[0], model.get_weights())
        print(f"starting from {args.init}: validation {initial[0]:.4f} bit/px", flush=True)
    stages = train(model, list(training.values()), validation_images=validation, patch_sizes=args.patch_sizes,
                   learning_rates=args.learning_rates, baseline=False if args.init else "auto",
                   num_patches=args.patches, epochs_per_stage=1000, finetune_max_iter=args.finetune_iter,
                   finetune_samples=args.finetune_samples, patience=args.patience, seed=args.seed,
                   time_budget=args.time_budget, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                   verbose=2)
    if initial is not None and not any(s.kept and s.score > initial[0] for s in stages):
        model.set_weights(initial[1])
        print("no stage improved on the model it started from; kept that model", flush=True)
    # A resumed run: the stages' clock includes the time before the interruption, this process's does not.
    stage_clock = max((s.seconds for s in stages if math.isfinite(s.seconds)), default=0.0)
    train_minutes = max(time.time() - start, stage_clock) / 60
    discrete = None
    if args.discrete_iter:
        before = mean_code_length(model, validation)
        weights = model.get_weights()
        patches = sample_patches(list(training.values()), 64, max(8, args.finetune_samples // 64 ** 2 * 4),
                                 args.channels, seed=args.seed + 7)
        result = model.finetune(patches, max_iter=args.discrete_iter,
                                num_samples=args.finetune_samples, objective="discrete", seed=args.seed + 7,
                                verbose=0)
        after = mean_code_length(model, validation)
        if not after < before:
            model.set_weights(weights)
        discrete = dict(iterations=result.iterations, validation_code_length_before=before,
                        validation_code_length_after=after, kept=bool(after < before))
        print(f"discrete fine-tuning: validation code length {before:.4f} -> {after:.4f} bit/px "
              f"({'kept' if after < before else 'not kept'})", flush=True)
    atomic_save_model(model, args.output)
    record = dict(command="python " + " ".join([os.path.relpath(__file__, ROOT)] + (argv or sys.argv[1:])),
                  args=vars(args), config=model.get_config(), training_pictures=list(training),
                  validation_crops=chosen, pixels=pixels,
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  machine=f"{platform.machine()}, {os.cpu_count()} CPU cores", train_minutes=train_minutes,
                  stages=[dataclasses.asdict(s) for s in stages], discrete_finetune=discrete,
                  held_out=scores(model, held_out), evaluation=scores(model, evaluation),
                  units="rate: density, bit/px (per channel), larger is better; code_length: exact ideal code "
                        "length of the 8-bit values, bit/px (per channel), smaller is better")
    for part in ("held_out", "evaluation"):
        values = record[part].values()
        if values:
            record[f"{part}_mean"] = dict(rate=float(np.mean([v["rate"] for v in values])),
                                          code_length=float(np.mean([v["code_length"] for v in values])))
            print(f"{part}: mean rate {record[part + '_mean']['rate']:.4f}, code length "
                  f"{record[part + '_mean']['code_length']:.4f} bit/px", flush=True)
    record["total_minutes"] = (time.time() - start) / 60
    atomic_write_json(args.record, record)
    print(f"wrote {args.output} and {args.record} ({record['total_minutes']:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
