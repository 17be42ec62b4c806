"""`ride-tf decompress IN.ride OUT.png [--model M] [--decoder D]`: the image that `compress` wrote, in its mode, as PNG."""
import os

from ride_tf.cli.common import THREADS_HELP, CommandError, check_output_file, load_integer_model, positive_int
from ride_tf.defaults import DECODERS

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    decompress = commands.add_parser("decompress", help="decompress a .ride file to PNG", formatter_class=formatter,
                                     description="Decode a file written by `ride-tf compress` with the same "
                                     "model; the PNG has the pixels and the mode of the compressed image.")
    decompress.add_argument("input", help="compressed file (.ride)")
    decompress.add_argument("output", help="PNG file to write")
    decompress.add_argument("--model", help="the model that compressed the file: a .keras file, its integer model "
                            "file or the name of a shipped model (default: the shipped or cached model that wrote it, "
                            "found by the fingerprint in the file's header; files of the palette coder need none)")
    decompress.add_argument("--decoder", choices=DECODERS, default=DECODERS[0],
                            help="native: the C kernels (the fastest); numpy: front by front, the reference; "
                            "compiled: the decoding loop compiled by XLA (needs TensorFlow; a few seconds to "
                            "compile); auto: native where the kernels are built, else numpy. The same pixels. Files "
                            "of the palette coder: native or auto the C coder, the others its Python reference")
    decompress.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    decompress.set_defaults(run=run, needs_tensorflow=False)
    return decompress


def run(args):
    from ride_tf import codec, runtime
    from ride_tf.data.files import FileMode, write_image_file

    check_output_file(args.output)
    if not os.path.isfile(args.input):
        raise CommandError(f"{args.input}: no such file")
    with open(args.input, "rb") as stream:
        data = stream.read()
    if args.decoder == "compiled":
        runtime.quiet_tensorflow()          # the XLA decoder
    try:
        header = codec.read_header(data)
        model = load_integer_model(args.model) if args.model and not codec.is_palette_file(header) else None
        image = codec.decompress(model, data, decoder=args.decoder, threads=args.threads)
    except ValueError as error:             # CodecError, or a decoder that is not built here
        raise CommandError(f"{args.input}: {error}") from None
    try:
        file_mode = (FileMode.from_bytes(header.metadata) if header.metadata
                     else FileMode("L" if header.channels == 1 else "RGB", header.channels))
    except ValueError as error:
        raise CommandError(f"{args.input}: the image mode in the header is damaged ({error})") from None
    try:
        write_image_file(args.output, image, file_mode)
    except ValueError as error:
        raise CommandError(f"{args.input}: {error}") from None
    print(f"wrote {args.output} ({image.shape[0]} x {image.shape[1]}, mode {file_mode.mode})")
