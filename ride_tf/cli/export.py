"""`ride-tf export MODEL DIR [--version N]`: a SavedModel for TF Serving in DIR/N (`ride_tf.export`)."""
from ride_tf.cli.common import CommandError, positive_int

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    export = commands.add_parser("export", help="export a model as a SavedModel for TF Serving",
                                 formatter_class=formatter,
                                 description="Write DIR/N, a SavedModel with the signatures serving_default, "
                                 "log_likelihood_rate, log_prob, pixel_log_prob, compressed_size and sample.")
    export.add_argument("model", help="a .keras model file")
    export.add_argument("directory", help="the model's base directory (TF Serving's base_path)")
    export.add_argument("--version", type=positive_int, help="version number (default: the next one)")
    export.set_defaults(run=run)
    return export


def run(args):
    from ride_tf.export import export_command

    try:
        target = export_command(args.model, args.directory, args.version)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(f"wrote the SavedModel {target}")
