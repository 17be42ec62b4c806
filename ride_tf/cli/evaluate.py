"""`ride-tf evaluate [MODEL.keras] IMAGES...`: log-likelihood rate in bit/px of image files, and the mean.

One image is scored by `measure(path, options, models)` after `prepare(options)` has run once in the
process; `ride_tf.cli.batch` runs them over files, folders and lists, in worker processes for --jobs.
"""
import sys

from ride_tf.cli import batch
from ride_tf.cli.common import CommandError, coded_image, load_model, non_negative_int
from ride_tf.defaults import COLOUR_MODES, REGION, REGIONS

__all__ = ["add_parser", "run", "split_model_argument", "prepare", "measure", "FIELDS"]


def add_parser(commands, formatter):
    evaluate = commands.add_parser("evaluate", help="log-likelihood rate of image files", formatter_class=formatter,
                                   description="Log-likelihood rate in bit/px (larger is better) of each image "
                                   "and the mean; uint8 pixels are dequantized with seeded uniform noise.  The "
                                   "first argument is the model file unless it is an image file or a folder; "
                                   "without a model, each image is scored by the shipped model for its mode (gray "
                                   "or rgb).  Files, folders and lists of many files: a row per image as it is "
                                   "scored, a summary at the end; a file that fails gets a row with its error and "
                                   "the others are scored (exit status 1 if any failed).")
    batch.add_arguments(evaluate, "[MODEL] IMAGES", "a .keras model file (optional), then image files or folders")
    evaluate.add_argument("--model", help="a .keras model file (instead of the first argument)")
    evaluate.add_argument("--mode", choices=COLOUR_MODES, help="use the shipped model of this mode")
    evaluate.add_argument("--to-gray", action="store_true",
                          help="score colour images by their luma with a gray model (said in the output)")
    evaluate.add_argument("--region", choices=REGIONS, default=REGION,
                          help="every pixel (full) or the paper's valid region")
    evaluate.add_argument("--ensemble", action="store_true", help="average over the 8 rotations and flips")
    evaluate.add_argument("--seed", type=non_negative_int, default=0,
                          help="dequantization noise seed, the same for every image (an image's rate does not "
                          "depend on the other images, their order or --jobs)")
    evaluate.set_defaults(run=run, needs_tensorflow=False)
    return evaluate


def split_model_argument(paths, model, more=False):
    """(model path or None, image paths): the first positional argument is the model unless it is an image file
    or a folder, or the only input (`more`: --from-list gives inputs too)."""
    import os

    from ride_tf.data.files import is_image_file

    if model is None and (len(paths) > 1 or (paths and more)) and not (is_image_file(paths[0])
                                                                       or os.path.isdir(paths[0])):
        return paths[0], paths[1:]
    return model, paths


def run(args):
    if args.ensemble and args.region != "full":
        raise CommandError("--ensemble scores every pixel; it cannot be combined with --region valid")
    args.model, paths = split_model_argument(args.images, args.model, more=bool(args.from_list))
    return batch.run(args, sys.modules[__name__], paths)


# ------------------------------------------------ what ride_tf.cli.batch calls
FIELDS = ("path", "height", "width", "channels", "mode", "model", "bits_per_pixel", "note")


def prepare(options):
    """Once per process: the cache of models `measure` uses, with the model of --model (or the first argument)
    loaded (CommandError if it cannot be)."""
    from ride_tf import runtime

    runtime.quiet_tensorflow()
    return {options.model: load_model(options.model)} if options.model else {}


def measure(path, options, models):
    """The density rate of one image file in bit/px: a row of FIELDS; CommandError for a file that cannot be read
    or is refused.  The noise is drawn from --seed for this image alone.  `models`: `prepare`'s."""
    import numpy as np

    from ride_tf.ensemble import ensemble_log_likelihood_rate

    coded = coded_image(path, options.model, options.mode, options.to_gray, models)
    batch_ = coded.pixels[np.newaxis]
    try:
        if options.ensemble:
            rate = float(ensemble_log_likelihood_rate(coded.model, batch_, seed=options.seed)[0])
        else:
            rate = float(coded.model.log_likelihood_rate(batch_, seed=options.seed, region=options.region,
                                                         verbose=options.verbose)[0])
    except ValueError as error:
        raise CommandError(f"{path}: {error}") from None
    return dict(path=path, height=batch_.shape[1], width=batch_.shape[2], channels=batch_.shape[3],
                mode=coded.file_mode.mode, model=coded.model_name, bits_per_pixel=rate, note=coded.note)


def table_header(options, width):
    what = "ensemble of 8 rotations/flips" if options.ensemble else f"region {options.region}"
    return f"{'image':{width}s}  rate [bit/px] ({what}; larger is better)  model"


def table_line(row, width):
    note = f"  ({row['note']})" if row["note"] else ""
    return f"{row['path']:{width}s}  {row['bits_per_pixel']:13.4f}  {row['model']}{note}"


def table_footer(summary, width):
    mean = summary.as_dict()["mean_bits_per_pixel"]
    return [] if mean is None else [f"{'mean':{width}s}  {mean:13.4f}"]


def json_report(options, rows, errors, summary):
    return dict(model=options.model or "shipped", region=options.region, ensemble=options.ensemble, images=rows,
                mean_bits_per_pixel=summary["mean_bits_per_pixel"], errors=errors, summary=summary)
