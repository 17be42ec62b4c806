"""`ride-tf evaluate [MODEL.keras] IMAGES...`: log-likelihood rate in bit/px of image files, and the mean."""
import json

from ride_tf.cli.common import CommandError, coded_image, non_negative_int
from ride_tf.defaults import COLOUR_MODES, REGION, REGIONS

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    evaluate = commands.add_parser("evaluate", help="log-likelihood rate of image files", formatter_class=formatter,
                                   description="Log-likelihood rate in bit/px (larger is better) of each image "
                                   "and the mean; uint8 pixels are dequantized with seeded uniform noise.  The "
                                   "first argument is the model file unless it is an image file; without a "
                                   "model, each image is scored by the shipped model for its mode (gray or rgb).")
    evaluate.add_argument("images", nargs="+", metavar="[MODEL] IMAGES",
                          help="a .keras model file (optional), then image files")
    evaluate.add_argument("--model", help="a .keras model file (instead of the first argument)")
    evaluate.add_argument("--mode", choices=COLOUR_MODES, help="use the shipped model of this mode")
    evaluate.add_argument("--to-gray", action="store_true",
                          help="score colour images by their luma with a gray model (said in the output)")
    evaluate.add_argument("--region", choices=REGIONS, default=REGION,
                          help="every pixel (full) or the paper's valid region")
    evaluate.add_argument("--ensemble", action="store_true", help="average over the 8 rotations and flips")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.add_argument("--seed", type=non_negative_int, default=0, help="dequantization noise seed")
    evaluate.set_defaults(run=run)
    return evaluate


def split_model_argument(paths, model):
    """(model path or None, image paths): the first positional argument is the model unless it is an image file."""
    from ride_tf.data.files import is_image_file

    if model is None and len(paths) > 1 and not is_image_file(paths[0]):
        return paths[0], paths[1:]
    return model, paths


def run(args):
    import numpy as np

    from ride_tf.ensemble import ensemble_log_likelihood_rate

    if args.ensemble and args.region != "full":
        raise CommandError("--ensemble scores every pixel; it cannot be combined with --region valid")
    model_path, paths = split_model_argument(args.images, args.model)
    models, rows = {}, []
    for path in paths:
        coded = coded_image(path, model_path, args.mode, args.to_gray, models)
        batch = coded.pixels[np.newaxis]
        try:
            if args.ensemble:
                rate = float(ensemble_log_likelihood_rate(coded.model, batch, seed=args.seed)[0])
            else:
                rate = float(coded.model.log_likelihood_rate(batch, seed=args.seed, region=args.region,
                                                             verbose=0 if args.json else 1)[0])
        except ValueError as error:
            raise CommandError(f"{path}: {error}") from None
        rows.append(dict(path=path, height=batch.shape[1], width=batch.shape[2], channels=batch.shape[3],
                         mode=coded.file_mode.mode, model=coded.model_name, bits_per_pixel=rate,
                         note=coded.note))
    mean = float(np.mean([r["bits_per_pixel"] for r in rows]))
    if args.json:
        print(json.dumps(dict(model=model_path or "shipped", region=args.region, ensemble=args.ensemble,
                              images=rows, mean_bits_per_pixel=mean), indent=1))
        return
    width = max(len(r["path"]) for r in rows)
    what = "ensemble of 8 rotations/flips" if args.ensemble else f"region {args.region}"
    print(f"{'image':{width}s}  rate [bit/px] ({what}; larger is better)  model")
    for r in rows:
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['path']:{width}s}  {r['bits_per_pixel']:13.4f}  {r['model']}{note}")
    print(f"{'mean':{width}s}  {mean:13.4f}")
