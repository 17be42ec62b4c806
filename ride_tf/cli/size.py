"""`ride-tf size IMAGES... [--model M]`: the exact compressed size of image files (what `compress` writes)."""
import json

from ride_tf.cli.common import (ADAPT_HELP, COLOUR_HELP, MODEL_HELP, PALETTE_HELP, PALETTE_NAME, PALETTE_TRIES, THREADS_HELP,
                               CommandError, coded_candidates, coding_note, palette_choice, positive_int, read_exact)
from ride_tf.defaults import COLOUR_CODING, COLOUR_CODINGS, COLOUR_MODES, PALETTE_CODINGS

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    size = commands.add_parser("size", help="exact compressed size of image files", formatter_class=formatter,
                               description="The exact ideal code length of each image under the model: "
                               "sum over all pixels of -log2 P(8-bit value | earlier pixels).  Without --model "
                               "each image is measured with the shipped model for its mode (gray or rgb).  The "
                               "palette coder's size is its payload's (what `compress` writes, less the header).")
    size.add_argument("images", nargs="+", help="image files")
    size.add_argument("--model", help=MODEL_HELP)
    size.add_argument("--mode", choices=COLOUR_MODES, help="use the shipped model of this mode")
    size.add_argument("--colour", choices=COLOUR_CODINGS, default=COLOUR_CODING, help=COLOUR_HELP)
    size.add_argument("--to-gray", action="store_true",
                      help="measure colour images by their luma with a gray model (said in the output)")
    size.add_argument("--palette", choices=PALETTE_CODINGS, help=PALETTE_HELP)
    size.add_argument("--json", action="store_true", help="print JSON")
    size.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    size.add_argument("--adapt", action="store_true", help=ADAPT_HELP)
    size.set_defaults(run=run, needs_tensorflow=False)
    return size


def run(args):
    import numpy as np

    from ride_tf import codec

    args.palette = palette_choice(args)
    models, rows = {}, []
    for path in args.images:
        if args.palette == "only":
            image, file_mode = read_exact(path)
            names, notes, sizes = [PALETTE_NAME], [""], []
            try:
                alternative = codec.compress_palette(image)
            except ValueError as error:
                raise CommandError(f"{path}: {error}") from None
        else:
            candidates = coded_candidates(path, args.model, args.mode, args.to_gray, models, colour=args.colour)
            image, file_mode = candidates[0].pixels, candidates[0].file_mode
            names, notes, sizes = [], [], []
            try:
                codings = codec.codings_to_try([(c.model, c.colour_transform) for c in candidates], image)
                for integer, transform, packed, index in codings:
                    sizes.append(float(codec.compressed_size_bits(integer, image[np.newaxis], colour_transform=transform,
                                                                  threads=args.threads, packed=packed)[0]))
                    names.append(candidates[index].model_name)
                    notes.append(coding_note(candidates[index].note, transform, packed))
                integer, transform, packed, index = codings[min(range(len(sizes)), key=sizes.__getitem__)]
                if args.adapt and integer.num_channels == 1:      # as `compress_best`: the shortest coding, adapted
                    sizes.append(float(codec.compressed_size_bits(integer, image[np.newaxis], colour_transform=transform,
                                                                  threads=args.threads, packed=packed,
                                                                  adapted=True)[0]))
                    names.append(candidates[index].model_name)
                    notes.append(coding_note(candidates[index].note, transform, packed, True))
            except ValueError as error:
                raise CommandError(f"{path}: {error}") from None
            alternative = codec.palette_alternative(image, min(sizes), PALETTE_TRIES[args.palette])
            if alternative is not None:
                names.append(PALETTE_NAME), notes.append(candidates[0].note)
        if alternative is not None:     # the payload: what `compress` writes, less the header
            sizes.append(8.0 * (len(alternative) - codec.read_header(alternative).size))
        index = min(range(len(sizes)), key=sizes.__getitem__)     # what `compress` keeps
        bits, note = sizes[index], notes[index]
        if len(sizes) > 1:
            note = "; ".join([n for n in [note] if n] + ["the shortest of: " + ", ".join(
                f"{name} {b / image.size:.4f}" for name, b in zip(names, sizes))])
        rows.append(dict(path=path, height=image.shape[0], width=image.shape[1], channels=image.shape[2],
                         mode=file_mode.mode, model=names[index], bits=bits, bytes=bits / 8,
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
