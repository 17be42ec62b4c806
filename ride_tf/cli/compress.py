"""`ride-tf compress IN OUT.ride [--model M]`: lossless compression of an image file."""
from ride_tf.cli.common import (ADAPT_HELP, COLOUR_HELP, MODEL_HELP, PALETTE_HELP, PALETTE_NAME, PALETTE_TRIES, THREADS_HELP,
                               CommandError, check_output_file, coded_candidates, coding_note, palette_choice,
                               positive_int, read_exact)
from ride_tf.defaults import COLOUR_CODING, COLOUR_CODINGS, COLOUR_MODES, PALETTE_CODINGS

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    compress = commands.add_parser("compress", help="losslessly compress an image file", formatter_class=formatter,
                                   description="Range-code the image's 8-bit values with the model's "
                                   "probabilities (ride_tf.codec).  `decompress` gives back the same pixels and "
                                   "the same image mode (gray, RGB, bilevel, palette, constant alpha); files with "
                                   "other modes (16-bit, varying alpha, CMYK, ...) are refused.  Without --model "
                                   "the shipped model for the image's mode is used.")
    compress.add_argument("input", help="image file (PNG, ...)")
    compress.add_argument("output", help="compressed file to write (.ride)")
    compress.add_argument("--model", help=MODEL_HELP)
    compress.add_argument("--mode", choices=COLOUR_MODES, help="use the shipped model of this mode")
    compress.add_argument("--colour", choices=COLOUR_CODINGS, default=COLOUR_CODING, help=COLOUR_HELP)
    compress.add_argument("--to-gray", action="store_true",
                          help="code a colour image's luma with a gray model (not lossless: said in the output)")
    compress.add_argument("--palette", choices=PALETTE_CODINGS, help=PALETTE_HELP)
    compress.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    compress.add_argument("--adapt", action="store_true", help=ADAPT_HELP)
    compress.set_defaults(run=run, needs_tensorflow=False)
    return compress


def run(args):
    from ride_tf import codec
    from ride_tf.io import atomic_write_bytes

    check_output_file(args.output)
    args.palette = palette_choice(args)
    if args.palette == "only":
        image, file_mode = read_exact(args.input)
        try:
            data = codec.compress_palette(image, metadata=file_mode.to_bytes())
        except ValueError as error:
            raise CommandError(f"{args.input}: {error}") from None
        name, notes = PALETTE_NAME, []
    else:
        candidates = coded_candidates(args.input, args.model, args.mode, args.to_gray, colour=args.colour)
        image, file_mode = candidates[0].pixels, candidates[0].file_mode
        try:
            files = codec.compress_tries([(c.model, c.colour_transform) for c in candidates], image,
                                         metadata=file_mode.to_bytes(), threads=args.threads, adapt=args.adapt,
                                         palette=PALETTE_TRIES[args.palette])
        except ValueError as error:
            raise CommandError(f"{args.input}: {error}") from None
        data, index, coding = min(files, key=lambda f: len(f[0]))
        coded = candidates[index if index < len(candidates) else 0]     # the palette coder: candidates[0]'s pixels
        name = PALETTE_NAME if coding is None else coded.model_name
        note = coded.note if coding is None else coding_note(coded.note, *coding)
        notes = [note] if note else []
        if len(files) > 1:
            notes.append(f"the shortest of {len(files)} codings")
    atomic_write_bytes(args.output, data)
    note = "".join(f"; {n}" for n in notes)
    print(f"wrote {args.output}: {len(data)} bytes, {8 * len(data) / image.size:.4f} bit/px "
          f"({image.shape[0]} x {image.shape[1]} x {image.shape[2]}, mode {file_mode.mode}, {name}{note})")
