"""`ride-tf export MODEL DIR [--version N]`: a SavedModel for TF Serving in DIR/N (`ride_tf.export`); with --codec,
the model's integer model file instead (`ride_tf.codec.model_file`), what the codec codes with."""
from ride_tf.cli.common import CommandError, check_output_file, positive_int

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    export = commands.add_parser("export", help="export a model as a SavedModel for TF Serving, or its integer "
                                 "model for the codec (--codec)", formatter_class=formatter,
                                 description="Write DIR/N, a SavedModel with the signatures serving_default, "
                                 "log_likelihood_rate, log_prob, pixel_log_prob, compressed_size and sample.  With "
                                 "--codec, write the model's integer model to the file OUTPUT (NAME.integer.npz): "
                                 "compress, decompress and size take it as --model and run without TensorFlow.")
    export.add_argument("model", help="a .keras model file")
    export.add_argument("directory", metavar="DIR_OR_OUTPUT",
                        help="the model's base directory (TF Serving's base_path), or with --codec the file to write")
    export.add_argument("--version", type=positive_int, help="version number (default: the next one)")
    export.add_argument("--codec", action="store_true",
                        help="write the integer model file (derived exactly from the float weights) instead")
    export.set_defaults(run=run)
    return export


def run(args):
    if args.codec:
        from ride_tf.codec import integer_model_of_file, save_integer_model
        from ride_tf.io import check_model_path

        if args.version is not None:
            raise CommandError("--version numbers SavedModels; an integer model file has none")
        check_output_file(args.directory)
        try:
            integer = integer_model_of_file(check_model_path(args.model), cache=False)
            path = save_integer_model(integer, args.directory, source=dict(keras_file=args.model))
        except ValueError as error:
            raise CommandError(str(error).splitlines()[0]) from None
        print(f"wrote the integer model {path} (fingerprint {integer.fingerprint.hex()})")
        return
    from ride_tf.export import export_command

    try:
        target = export_command(args.model, args.directory, args.version)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(f"wrote the SavedModel {target}")
