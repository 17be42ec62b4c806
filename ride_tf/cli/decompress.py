"""`ride-tf decompress IN.ride OUT.png [--model M] [--decoder D]`: the image that `compress` wrote, in its mode, as PNG."""
import os

from ride_tf.cli.common import CommandError, check_output_file, load_model, shipped_model_for_file
from ride_tf.defaults import DECODERS

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    decompress = commands.add_parser("decompress", help="decompress a .ride file to PNG", formatter_class=formatter,
                                     description="Decode a file written by `ride-tf compress` with the same "
                                     "model; the PNG has the pixels and the mode of the compressed image.")
    decompress.add_argument("input", help="compressed file (.ride)")
    decompress.add_argument("output", help="PNG file to write")
    decompress.add_argument("--model", help="the .keras model, or the name of the shipped model, that compressed "
                            "the file (default: the shipped "
                            "model that wrote it, found by the fingerprint in the file's header; files of the palette "
                            "coder need none)")
    decompress.add_argument("--decoder", choices=DECODERS, default=DECODERS[0],
                            help="native: the C kernels (the fastest); numpy: front by front, the reference; "
                            "compiled: the decoding loop compiled by XLA (a few seconds to compile); auto: native "
                            "where the kernels are built, else compiled from 2^20 values. The same pixels. Files of "
                            "the palette coder: native or auto the C coder, the others its Python reference")
    decompress.set_defaults(run=run)
    return decompress


def run(args):
    from ride_tf import codec
    from ride_tf.data.files import FileMode, write_image_file

    check_output_file(args.output)
    if not os.path.isfile(args.input):
        raise CommandError(f"{args.input}: no such file")
    with open(args.input, "rb") as stream:
        data = stream.read()
    try:
        header = codec.read_header(data)
        if codec.is_palette_file(header):
            model = None                # the palette coder needs no model
        else:
            model = load_model(args.model) if args.model else shipped_model_for_file(header, args.input)
        image = codec.decompress(model, data, decoder=args.decoder)
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
