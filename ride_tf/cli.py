"""The `ride-tf` command line (also `python -m ride_tf`).

    ride-tf train IMAGES... --output model.keras      train RIDE with the paper's recipe
    ride-tf evaluate model.keras IMAGES...            bit/px per image and the mean
    ride-tf sample model.keras --size HxW -n N --output DIR
    ride-tf inpaint model.keras IMAGE MASK --output OUT
    ride-tf size IMAGES... [--model model.keras]      exact compressed size (bits, bit/px)
    ride-tf compress IN.png OUT.ride [--model ...]    lossless compression with the model
    ride-tf decompress IN.ride OUT.png [--model ...]
    ride-tf export model.keras DIR [--version N]      SavedModel for TF Serving in DIR/N

`size`, `compress` and `decompress` use the shipped pretrained model
(`ride_tf.pretrained`: "gray", or "rgb" for colour where it ships) when no
`--model` is given.

Images are ordinary files (PNG, JPEG, TIFF, ...), read as 8-bit grayscale or
RGB to match the model; models are `.keras` files written by `train` (or by
`RIDE.save`).  `ride-tf SUBCOMMAND --help` lists every option.  A problem with
the input (a missing file, a file that is not an image, a file that is not a
ride-tf model, bad option values) prints one line, ``ride-tf: error: ...``, and
exits with status 1 (2 for usage errors); no traceback.
"""
import argparse
import json
import math
import os
import sys

__all__ = ["main", "build_parser"]


class CommandError(Exception):
    """A problem with the user's input: printed as one line, exit status 1."""


# --------------------------------------------------------------- helpers
def _size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 256x256), got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1x1, got {text!r}")
    return height, width


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


_positive_float.__name__ = "number"


def _load_images(paths, num_channels):
    from ride_tf.datasets import load_image

    mode = "rgb" if num_channels == 3 else "gray"
    if num_channels not in (1, 3):
        raise CommandError(f"the model has {num_channels} channels; image files give 1 (gray) or 3 (rgb)")
    images = []
    for path in paths:
        try:
            images.append(load_image(path, mode=mode))
        except FileNotFoundError:
            raise CommandError(f"{path}: no such file") from None
        except (ValueError, OSError) as error:
            raise CommandError(str(error).splitlines()[0]) from None
    return images


def load_model(path):
    """A `RIDE` from a .keras file, or a CommandError that says why not."""
    from ride_tf.io import load_ride_model

    try:
        model = load_ride_model(path)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if not model.whitening.is_adapted:
        raise CommandError(f"{path}: the model's whitening was never fitted (an untrained model); "
                           "train it with `ride-tf train`")
    return model


def _check_output_file(path):
    """Refuse an output path that cannot become a file, before any work is done."""
    if os.path.isdir(path) or path.endswith(os.sep):
        raise CommandError(f"{path}: is a directory; the output must name a file")


def _write_png(array, path):
    """Write uint8 [H, W] or [H, W, 3] as PNG under a temporary name, then rename (no half-written files)."""
    from ride_tf.io import atomic_write_png

    _check_output_file(path)
    atomic_write_png(array, path)


def _image_for_file(image):
    """[H, W, C] uint8 -> what Pillow writes ([H, W] for one channel)."""
    return image[..., 0] if image.shape[-1] == 1 else image


# ------------------------------------------------------------ subcommands
def _train(args):
    import numpy as np

    from ride_tf import training
    from ride_tf.io import atomic_save_model
    from ride_tf.model import RIDE

    if not args.output.endswith(".keras"):
        raise CommandError(f"--output must name a .keras file, got {args.output!r}")
    if os.path.isdir(args.output):
        raise CommandError(f"{args.output}: is a directory; --output must name a .keras file")
    if args.resume and not args.checkpoint_dir:
        raise CommandError("--resume needs --checkpoint-dir, the directory of the run to resume")
    num_channels = 3 if args.mode == "rgb" else 1
    images = _load_images(args.images, num_channels)
    validation = _load_images(args.validation, num_channels) if args.validation else None
    patch_sizes = args.patch_sizes or (training.TEXTURE_PATCH_SIZES if args.textures
                                       else training.NATURAL_IMAGE_PATCH_SIZES)
    smallest = min(min(im.shape[:2]) for im in images)
    if max(patch_sizes) > smallest:
        raise CommandError(f"the largest patch size {max(patch_sizes)} exceeds the smallest training image side "
                           f"({smallest} px); pass smaller --patch-sizes")
    if args.learning_rates and len(args.learning_rates) != len(patch_sizes):
        raise CommandError(f"{len(patch_sizes)} patch sizes but {len(args.learning_rates)} learning rates")
    try:
        model = RIDE(num_channels=num_channels, num_hiddens=args.hiddens, num_layers=args.layers,
                     num_components=args.components, num_scales=args.scales, num_features=args.features,
                     nb_size=args.nb_size, cell=args.cell, skip_inputs=not args.paper_architecture,
                     objective=args.objective)
    except ValueError as error:
        raise CommandError(str(error)) from None
    callbacks, on_stage_end = None, None
    if args.logdir:
        logger = _SummaryLogger(args.logdir, args.seed)
        callbacks, on_stage_end = [logger.callback()], logger.on_stage_end
    verbose = 0 if args.quiet else 1
    stages = training.train(model, images, validation_images=validation, patch_sizes=patch_sizes,
                            learning_rates=args.learning_rates, num_patches=args.patches,
                            optimizer=args.optimizer, finetune_max_iter=args.finetune_iter,
                            finetune_samples=args.finetune_samples, patience=args.patience, seed=args.seed,
                            verbose=verbose, callbacks=callbacks, on_stage_end=on_stage_end,
                            checkpoint_dir=args.checkpoint_dir, resume=args.resume, objective=args.objective)
    from_baseline = model.mcgsm_reads_inputs    # then the start, the fitted MCGSM, is a valid result too
    if (not any(s.kept for s in stages) and not from_baseline) or \
            model.non_finite_weights():
        raise CommandError("training produced no stage with a finite validation rate; nothing was saved")
    atomic_save_model(model, args.output)       # under a temporary name, then renamed
    if not any(s.kept for s in stages):
        print(f"saved {args.output} (no stage improved on the fitted MCGSM it started from; saved that start)")
        return
    best = max((s for s in stages if s.kept), key=lambda s: s.stage)
    rates = [f"{name} {value:.4f} bit/px" for name, value in
             [("validation", best.validation_rate), ("fine-tuning held-out", best.finetune_rate),
              ("training", best.train_rate)] if np.isfinite(value)]
    print(f"saved {args.output} (stage {best.stage + 1} of {len(stages)} kept: {', '.join(rates)})")


class _SummaryLogger:
    """TensorBoard summaries: bit/px per training step and per stage, and samples after every stage."""

    def __init__(self, logdir, seed):
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(logdir)
        self.step = 0
        self.seed = seed

    def callback(self):
        import keras
        import tensorflow as tf

        logger = self

        class PerStep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                logger.step += 1
                if logs and "bits_per_pixel" in logs:
                    with logger.writer.as_default():
                        tf.summary.scalar("train/bits_per_pixel", float(logs["bits_per_pixel"]), step=logger.step)

        return PerStep()

    def on_stage_end(self, model, stage):
        import numpy as np
        import tensorflow as tf

        with self.writer.as_default():
            for name in ("train_rate", "finetune_rate", "validation_rate"):
                value = getattr(stage, name)
                if np.isfinite(value):
                    tf.summary.scalar(f"stage/{name}", value, step=stage.stage + 1)
            samples = model.sample(4, 64, 64, seed=self.seed)
            tf.summary.image("stage/samples", samples, step=stage.stage + 1, max_outputs=4)
        self.writer.flush()


def _evaluate(args):
    import numpy as np

    from ride_tf.ensemble import ensemble_log_likelihood_rate

    if args.ensemble and args.region != "full":
        raise CommandError("--ensemble scores every pixel; it cannot be combined with --region valid")
    model = load_model(args.model)
    images = _load_images(args.images, model.num_channels)
    rows = []
    for path, image in zip(args.images, images):
        batch = image[np.newaxis]
        try:
            if args.ensemble:
                rate = float(ensemble_log_likelihood_rate(model, batch, seed=args.seed)[0])
            else:
                rate = float(model.log_likelihood_rate(batch, seed=args.seed, region=args.region,
                                                       verbose=0 if args.json else 1)[0])
        except ValueError as error:
            raise CommandError(f"{path}: {error}") from None
        rows.append(dict(path=path, height=image.shape[0], width=image.shape[1], bits_per_pixel=rate))
    mean = float(np.mean([r["bits_per_pixel"] for r in rows]))
    if args.json:
        print(json.dumps(dict(model=args.model, region=args.region, ensemble=args.ensemble, images=rows,
                              mean_bits_per_pixel=mean), indent=1))
        return
    width = max(len(r["path"]) for r in rows)
    what = "ensemble of 8 rotations/flips" if args.ensemble else f"region {args.region}"
    print(f"{'image':{width}s}  rate [bit/px] ({what}; larger is better)")
    for r in rows:
        print(f"{r['path']:{width}s}  {r['bits_per_pixel']:.4f}")
    print(f"{'mean':{width}s}  {mean:.4f}")


def _sample(args):
    model = load_model(args.model)
    height, width = args.size
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CommandError(f"{args.output}: exists and is not a directory (--output names a directory)")
    images = model.sample(args.num, height, width, seed=args.seed, batch_size=args.batch_size)
    os.makedirs(args.output, exist_ok=True)
    for k, image in enumerate(images):
        path = os.path.join(args.output, f"sample_{k:03d}.png")
        _write_png(_image_for_file(image), path)
    print(f"wrote {len(images)} samples of {height} x {width} to {args.output}")


def _inpaint(args):
    import numpy as np

    _check_output_file(args.output)
    model = load_model(args.model)
    (image,) = _load_images([args.image], model.num_channels)
    (mask,) = _load_images([args.mask], 1)
    if mask.shape[:2] != image.shape[:2]:
        raise CommandError(f"{args.mask}: the mask is {mask.shape[0]} x {mask.shape[1]} but the image is "
                           f"{image.shape[0]} x {image.shape[1]}")
    missing = mask > 127
    if not missing.any():
        raise CommandError(f"{args.mask}: the mask marks no missing pixel (white = missing)")
    try:
        filled, acceptance = model.inpaint(image, missing, num_sweeps=args.sweeps, seed=args.seed)
    except ValueError as error:
        raise CommandError(str(error)) from None
    filled = np.asarray(filled)
    filled = filled.reshape(image.shape[:2] + (-1,))
    _write_png(_image_for_file(filled), args.output)
    print(f"wrote {args.output} ({int(missing.sum())} pixels filled, acceptance rate {acceptance:.3f})")


def _pretrained_for(num_channels, what):
    from ride_tf import pretrained

    name = {1: "gray", 3: "rgb"}.get(num_channels)
    if name not in pretrained.available():
        raise CommandError(f"{what}: no pretrained model for {num_channels}-channel images ships with ride-tf; "
                           "pass --model")
    return pretrained.load(name)


def _model_or_pretrained(args, mode):
    if args.model:
        return load_model(args.model)
    return _pretrained_for(3 if mode == "rgb" else 1, "--model not given")


def _size_command(args):
    import numpy as np

    from ride_tf.discrete import compressed_size_bits

    model = _model_or_pretrained(args, args.mode)
    images = _load_images(args.images, model.num_channels)
    rows = []
    for path, image in zip(args.images, images):
        image = image.reshape(image.shape[0], image.shape[1], -1)
        try:
            bits = float(compressed_size_bits(model, image[np.newaxis], verbose=0 if args.json else 1)[0])
        except ValueError as error:
            raise CommandError(f"{path}: {error}") from None
        values = image.size
        rows.append(dict(path=path, height=image.shape[0], width=image.shape[1], channels=image.shape[2],
                         bits=bits, bytes=bits / 8, bits_per_pixel=bits / values))
    if args.json:
        print(json.dumps(dict(model=args.model or "pretrained", images=rows), indent=1))
        return
    width = max(len(r["path"]) for r in rows)
    print(f"{'image':{width}s}  {'exact size [bytes]':>18s}  {'bit/px':>7s}   (ideal code length; smaller is better)")
    for r in rows:
        print(f"{r['path']:{width}s}  {r['bytes']:18.1f}  {r['bits_per_pixel']:7.4f}")


def _write_bytes(data, path):
    from ride_tf.io import atomic_write_bytes

    _check_output_file(path)
    atomic_write_bytes(path, data)


def _compress_command(args):
    from ride_tf import codec

    _check_output_file(args.output)
    model = _model_or_pretrained(args, args.mode)
    (image,) = _load_images([args.input], model.num_channels)
    image = image.reshape(image.shape[0], image.shape[1], -1)
    try:
        data = codec.compress(model, image)
    except ValueError as error:
        raise CommandError(f"{args.input}: {error}") from None
    _write_bytes(data, args.output)
    print(f"wrote {args.output}: {len(data)} bytes, {8 * len(data) / image.size:.4f} bit/px "
          f"({image.shape[0]} x {image.shape[1]} x {image.shape[2]})")


def _decompress_command(args):
    from ride_tf import codec

    _check_output_file(args.output)
    if not os.path.isfile(args.input):
        raise CommandError(f"{args.input}: no such file")
    with open(args.input, "rb") as stream:
        data = stream.read()
    try:
        header = codec.read_header(data)
        model = load_model(args.model) if args.model else _pretrained_for(header.channels, args.input)
        image = codec.decompress(model, data)
    except codec.CodecError as error:
        raise CommandError(f"{args.input}: {error}") from None
    _write_png(_image_for_file(image), args.output)
    print(f"wrote {args.output} ({image.shape[0]} x {image.shape[1]} x {image.shape[2]})")


def _export_command(args):
    from ride_tf.export import export_command

    try:
        target = export_command(args.model, args.directory, args.version)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(f"wrote the SavedModel {target}")


# ------------------------------------------------------------------ parser
def build_parser():
    parser = argparse.ArgumentParser(prog="ride-tf", description="RIDE (Theis & Bethge 2015): train, evaluate, "
                                     "sample and inpaint with spatial-LSTM image models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    train = commands.add_parser("train", help="train a model on image files",
                                description="Train RIDE with the paper's recipe (curriculum of patch sizes, "
                                "L-BFGS fine-tuning of the MCGSM after each stage, early stopping) and save it.")
    train.add_argument("images", nargs="+", help="training image files")
    train.add_argument("--output", required=True, help="the .keras file to write")
    train.add_argument("--mode", choices=["gray", "rgb"], default="gray", help="read images as (default gray)")
    train.add_argument("--validation", nargs="+", help="validation image files for early stopping")
    train.add_argument("--layers", type=_non_negative_int, default=1, help="spatial LSTM layers (0: MCGSM)")
    train.add_argument("--hiddens", type=_positive_int, default=64, help="units per spatial LSTM (64)")
    train.add_argument("--components", type=_positive_int, default=32, help="MCGSM components (32)")
    train.add_argument("--scales", type=_positive_int, default=4, help="MCGSM scales per component (4)")
    train.add_argument("--features", type=_positive_int, default=32, help="MCGSM quadratic features (32)")
    train.add_argument("--nb-size", type=_positive_int, default=5, help="neighbourhood width, odd (5)")
    train.add_argument("--cell", choices=["stable", "paper"], default="stable", help="spatial LSTM cell")
    train.add_argument("--paper-architecture", action="store_true",
                       help="the MCGSM reads the top LSTM state alone (default: also the whitened inputs, "
                       "and training starts from the fitted MCGSM)")
    train.add_argument("--objective", choices=["density", "discrete"], default="density",
                       help="train on the density of dequantized pixels (default) or on the exact code "
                       "length of the 8-bit values")
    train.add_argument("--patch-sizes", type=_positive_int, nargs="+", help="curriculum (default 8 12 16 22)")
    train.add_argument("--textures", action="store_true", help="texture curriculum 20 25 30 35 40")
    train.add_argument("--patches", type=_int_at_least(50), default=10_000,
                       help="patches per stage, at least one batch of 50 (10000)")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="(adam)")
    train.add_argument("--learning-rates", type=_positive_float, nargs="+", help="one per stage")
    train.add_argument("--finetune-iter", type=_non_negative_int, default=100,
                       help="L-BFGS iterations after each stage (100)")
    train.add_argument("--finetune-samples", type=_positive_int, default=50_000, help="pixels for L-BFGS")
    train.add_argument("--patience", type=_positive_int, default=2, help="early-stopping patience in stages")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--logdir", help="write TensorBoard summaries here (bit/px per step and stage, samples)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--checkpoint-dir", help="write the run's state here after every epoch and stage")
    train.add_argument("--resume", action="store_true",
                       help="continue the run whose state is in --checkpoint-dir (e.g. after a crash)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="log-likelihood rate of image files",
                                   description="Log-likelihood rate in bit/px (larger is better) of each image "
                                   "and the mean; uint8 pixels are dequantized with seeded uniform noise.")
    evaluate.add_argument("model", help="a .keras model file")
    evaluate.add_argument("images", nargs="+", help="image files")
    evaluate.add_argument("--region", choices=["full", "valid"], default="full",
                          help="every pixel (full) or the paper's valid region")
    evaluate.add_argument("--ensemble", action="store_true", help="average over the 8 rotations and flips")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.add_argument("--seed", type=_non_negative_int, default=0, help="dequantization noise seed")
    evaluate.set_defaults(run=_evaluate)

    sample = commands.add_parser("sample", help="draw images from a model",
                                 description="Ancestral samples (wavefront order), written as PNG files.")
    sample.add_argument("model", help="a .keras model file")
    sample.add_argument("--size", type=_size, required=True, help="HxW, e.g. 256x256")
    sample.add_argument("-n", "--num", type=_positive_int, default=1, help="number of samples (1)")
    sample.add_argument("--output", required=True, help="directory for sample_000.png, ...")
    sample.add_argument("--seed", type=_non_negative_int, default=0)
    sample.add_argument("--batch-size", type=_positive_int, help="samples per graph call (default all)")
    sample.set_defaults(run=_sample)

    inpaint = commands.add_parser("inpaint", help="fill missing pixels of an image",
                                  description="Fill the pixels marked white in MASK by Metropolis-within-Gibbs "
                                  "sampling from the model's posterior (paper section 3.4).")
    inpaint.add_argument("model", help="a .keras model file")
    inpaint.add_argument("image", help="the image file")
    inpaint.add_argument("mask", help="mask image file of the same size: white (> 127) = missing")
    inpaint.add_argument("--output", required=True, help="PNG file to write")
    inpaint.add_argument("--sweeps", type=_non_negative_int, default=100, help="Gibbs sweeps (100)")
    inpaint.add_argument("--seed", type=_non_negative_int, default=0)
    inpaint.set_defaults(run=_inpaint)

    model_help = "a .keras model file (default: the shipped pretrained model)"
    size = commands.add_parser("size", help="exact compressed size of image files",
                               description="The exact ideal code length of each image under the model: "
                               "sum over all pixels of -log2 P(8-bit value | earlier pixels).")
    size.add_argument("images", nargs="+", help="image files")
    size.add_argument("--model", help=model_help)
    size.add_argument("--mode", choices=["gray", "rgb"], default="gray",
                      help="with the pretrained models: read images as (default gray)")
    size.add_argument("--json", action="store_true", help="print JSON")
    size.set_defaults(run=_size_command)

    compress = commands.add_parser("compress", help="losslessly compress an image file",
                                   description="Range-code the image's 8-bit values with the model's "
                                   "probabilities (ride_tf.codec).")
    compress.add_argument("input", help="image file (PNG, ...)")
    compress.add_argument("output", help="compressed file to write (.ride)")
    compress.add_argument("--model", help=model_help)
    compress.add_argument("--mode", choices=["gray", "rgb"], default="gray",
                          help="with the pretrained models: read the image as (default gray)")
    compress.set_defaults(run=_compress_command)

    decompress = commands.add_parser("decompress", help="decompress a .ride file to PNG",
                                     description="Decode a file written by `ride-tf compress` with the same model.")
    decompress.add_argument("input", help="compressed file (.ride)")
    decompress.add_argument("output", help="PNG file to write")
    decompress.add_argument("--model", help=model_help)
    decompress.set_defaults(run=_decompress_command)

    export = commands.add_parser("export", help="export a model as a SavedModel for TF Serving",
                                 description="Write DIR/N, a SavedModel with the signatures serving_default, "
                                 "log_likelihood_rate, log_prob, pixel_log_prob, compressed_size and sample.")
    export.add_argument("model", help="a .keras model file")
    export.add_argument("directory", help="the model's base directory (TF Serving's base_path)")
    export.add_argument("--version", type=_positive_int, help="version number (default: the next one)")
    export.set_defaults(run=_export_command)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except CommandError as error:
        print(f"ride-tf: error: {error}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, FloatingPointError, MemoryError) as error:
        # The package's own checks (ValueError naming the argument), files that cannot be
        # written (OSError), a model that overflows: one line, no traceback.
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"ride-tf: error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ride-tf: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
