"""`ride-tf size IMAGES... [--model M]`: the exact compressed size of image files (what `compress` writes)."""
import json

from ride_tf.cli.common import COLOUR_HELP, MODEL_HELP, CommandError, coded_candidates
from ride_tf.defaults import COLOUR_CODING, COLOUR_CODINGS, COLOUR_MODES

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    size = commands.add_parser("size", help="exact compressed size of image files", formatter_class=formatter,
                               description="The exact ideal code length of each image under the model: "
                               "sum over all pixels of -log2 P(8-bit value | earlier pixels).  Without --model "
                               "each image is measured with the shipped model for its mode (gray or rgb).")
    size.add_argument("images", nargs="+", help="image files")
    size.add_argument("--model", help=MODEL_HELP)
    size.add_argument("--mode", choices=COLOUR_MODES, help="use the shipped model of this mode")
    size.add_argument("--colour", choices=COLOUR_CODINGS, default=COLOUR_CODING, help=COLOUR_HELP)
    size.add_argument("--to-gray", action="store_true",
                      help="measure colour images by their luma with a gray model (said in the output)")
    size.add_argument("--json", action="store_true", help="print JSON")
    size.set_defaults(run=run)
    return size


def run(args):
    import numpy as np

    from ride_tf.discrete import compressed_size_bits

    models, rows = {}, []
    for path in args.images:
        candidates = coded_candidates(path, args.model, args.mode, args.to_gray, models, colour=args.colour)
        sizes = []
        for coded in candidates:
            try:
                sizes.append(float(compressed_size_bits(coded.model, coded.pixels[np.newaxis],
                                                        verbose=0 if args.json else 1,
                                                        colour_transform=coded.colour_transform)[0]))
            except ValueError as error:
                raise CommandError(f"{path}: {error}") from None
        index = min(range(len(sizes)), key=sizes.__getitem__)     # what `compress --colour best` keeps
        coded, bits, image = candidates[index], sizes[index], candidates[index].pixels
        note = coded.note
        if len(candidates) > 1:
            note = "; ".join([n for n in [note] if n] + ["the shorter of: " + ", ".join(
                f"{c.model_name} {b / image.size:.4f}" for c, b in zip(candidates, sizes))])
        rows.append(dict(path=path, height=image.shape[0], width=image.shape[1], channels=image.shape[2],
                         mode=coded.file_mode.mode, model=coded.model_name, bits=bits, bytes=bits / 8,
                         bits_per_pixel=bits / image.size, note=note))
    if args.json:
        print(json.dumps(dict(model=args.model or "shipped", images=rows), indent=1))
        return
    width = max(len(r["path"]) for r in rows)
    print(f"{'image':{width}s}  {'exact size [bytes]':>18s}  {'bit/px':>7s}  model   (ideal code length; "
          "bit/px per channel for colour; smaller is better)")
    for r in rows:
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['path']:{width}s}  {r['bytes']:18.1f}  {r['bits_per_pixel']:7.4f}  {r['model']}{note}")
