"""`ride-tf size IMAGES... [--model M]`: the exact compressed size of image files (what `compress` writes).

One image is measured by `measure(path, options, models)` after `prepare(options)` has run once in the
process; `ride_tf.cli.batch` runs them over files, folders and lists, in worker processes for --jobs.
"""
import sys

from ride_tf.cli import batch
from ride_tf.cli.common import (ADAPT_HELP, COLOUR_HELP, MODEL_HELP, PALETTE_HELP, PALETTE_NAME, PALETTE_TRIES,
                               THREADS_HELP, CommandError, coded_candidates, coding_note, load_integer_model,
                               palette_choice, positive_int, read_exact)
from ride_tf.defaults import COLOUR_CODING, COLOUR_CODINGS, COLOUR_MODES, PALETTE_CODINGS

__all__ = ["add_parser", "run", "prepare", "measure", "FIELDS"]


def add_parser(commands, formatter):
    size = commands.add_parser("size", help="exact compressed size of image files", formatter_class=formatter,
                               description="The exact ideal code length of each image under the model: "
                               "sum over all pixels of -log2 P(8-bit value | earlier pixels).  Without --model "
                               "each image is measured with the shipped model for its mode (gray or rgb).  The "
                               "palette coder's size is its payload's (what `compress` writes, less the header).  "
                               "Files, folders and lists of many files: a row per image as it is measured, a "
                               "summary at the end; a file that fails gets a row with its error and the others "
                               "are measured (exit status 1 if any failed).")
    batch.add_arguments(size)
    size.add_argument("--model", help=MODEL_HELP)
    size.add_argument("--mode", choices=COLOUR_MODES, help="use the shipped model of this mode")
    size.add_argument("--colour", choices=COLOUR_CODINGS, default=COLOUR_CODING, help=COLOUR_HELP)
    size.add_argument("--to-gray", action="store_true",
                      help="measure colour images by their luma with a gray model (said in the output)")
    size.add_argument("--palette", choices=PALETTE_CODINGS, help=PALETTE_HELP)
    size.add_argument("--threads", type=positive_int, help=THREADS_HELP + "; with --jobs N, cores / N each")
    size.add_argument("--adapt", action="store_true", help=ADAPT_HELP)
    size.set_defaults(run=run, needs_tensorflow=False)
    return size


def run(args):
    args.palette = palette_choice(args)
    return batch.run(args, sys.modules[__name__])


# ------------------------------------------------ what ride_tf.cli.batch calls
FIELDS = ("path", "height", "width", "channels", "mode", "model", "bits", "bytes", "bits_per_pixel", "note")


def prepare(options):
    """Once per process: the cache of integer models `measure` uses, with the model of --model loaded
    (CommandError if it cannot be).  No TensorFlow (unless a .keras file's integer model must be derived)."""
    models = {}
    if options.model and options.palette != "only":
        models[options.model] = load_integer_model(options.model)
    return models


def measure(path, options, models):
    """The exact size of one image file: a row of FIELDS (bits: what `compress` writes, less the header and the
    rANS lanes' few bytes); CommandError for a file that cannot be read or is refused.  `models`: `prepare`'s."""
    import numpy as np

    from ride_tf import codec

    if options.palette == "only":
        image, file_mode = read_exact(path)
        names, notes, sizes = [PALETTE_NAME], [""], []
        try:
            alternative = codec.compress_palette(image)
        except ValueError as error:
            raise CommandError(f"{path}: {error}") from None
    else:
        candidates = coded_candidates(path, options.model, options.mode, options.to_gray, models,
                                      colour=options.colour)
        image, file_mode = candidates[0].pixels, candidates[0].file_mode
        names, notes, sizes = [], [], []
        try:
            codings = codec.codings_to_try([(c.model, c.colour_transform) for c in candidates], image)
            for integer, transform, packed, index in codings:
                sizes.append(float(codec.compressed_size_bits(integer, image[np.newaxis], colour_transform=transform,
                                                              threads=options.threads, packed=packed)[0]))
                names.append(candidates[index].model_name)
                notes.append(coding_note(candidates[index].note, transform, packed))
            integer, transform, packed, index = codings[min(range(len(sizes)), key=sizes.__getitem__)]
            if options.adapt and integer.num_channels == 1:      # as `compress_best`: the shortest coding, adapted
                sizes.append(float(codec.compressed_size_bits(integer, image[np.newaxis], colour_transform=transform,
                                                              threads=options.threads, packed=packed,
                                                              adapted=True)[0]))
                names.append(candidates[index].model_name)
                notes.append(coding_note(candidates[index].note, transform, packed, True))
        except ValueError as error:
            raise CommandError(f"{path}: {error}") from None
        alternative = codec.palette_alternative(image, min(sizes), PALETTE_TRIES[options.palette])
        if alternative is not None:
            names.append(PALETTE_NAME), notes.append(candidates[0].note)
    if alternative is not None:     # the payload: what `compress` writes, less the header
        sizes.append(8.0 * (len(alternative) - codec.read_header(alternative).size))
    index = min(range(len(sizes)), key=sizes.__getitem__)     # what `compress` keeps
    bits, note = sizes[index], notes[index]
    if len(sizes) > 1:
        note = "; ".join([n for n in [note] if n] + ["the shortest of: " + ", ".join(
            f"{name} {b / image.size:.4f}" for name, b in zip(names, sizes))])
    return dict(path=path, height=image.shape[0], width=image.shape[1], channels=image.shape[2],
                mode=file_mode.mode, model=names[index], bits=bits, bytes=bits / 8,
                bits_per_pixel=bits / image.size, note=note)


def table_header(options, width):
    return (f"{'image':{width}s}  {'exact size [bytes]':>18s}  {'bit/px':>7s}  model   (ideal code length; "
            "bit/px per channel for colour; smaller is better)")


def table_line(row, width):
    note = f"  ({row['note']})" if row["note"] else ""
    return f"{row['path']:{width}s}  {row['bytes']:18.1f}  {row['bits_per_pixel']:7.4f}  {row['model']}{note}"


def table_footer(summary, width):
    return []


def json_report(options, rows, errors, summary):
    return dict(model=options.model or "shipped", images=rows, errors=errors, summary=summary)
