"""The `ride-tf` command line (also `python -m ride_tf`), one module per subcommand.

    ride-tf train IMAGES... --output model.keras      train RIDE with the paper's recipe
    ride-tf evaluate [model.keras] IMAGES...          bit/px per image and the mean
    ride-tf sample model.keras --size HxW -n N --output DIR
    ride-tf inpaint model.keras IMAGE MASK --output OUT
    ride-tf size IMAGES... [--model model.keras]      exact compressed size (bits, bit/px)
    ride-tf compress IN.png OUT.ride [--model ...]    lossless compression with the model
    ride-tf decompress IN.ride OUT.png [--model ...]
    ride-tf export model.keras DIR [--version N]      SavedModel for TF Serving in DIR/N

`size`, `compress` and `evaluate` use the shipped model that matches each
image file (`ride_tf.pretrained`: "gray" for gray images, "rgb" for colour)
when no model is given; a model of the other kind is refused with a message
that says how to code the image (`--to-gray` codes a colour image's luma and
says so).  `compress` reads files exactly and `decompress` writes back their
mode; modes without an exact 8-bit gray or RGB form are refused
(`ride_tf.data.files.EXACT_MODES`).

The arguments are parsed before TensorFlow is imported, so `--help` and usage
errors answer at once; a subcommand that needs the float model then imports
TensorFlow without its start-up lines (`ride_tf.runtime.quiet_tensorflow`).  A problem with the input (a missing file, a file that is
not an image, a file that is not a ride-tf model, bad option values) prints
one line, ``ride-tf: error: ...``, and exits with status 1 (2 for usage
errors); no traceback.  `size` and `evaluate` measure many files
(`ride_tf.cli.batch`): a file that fails is reported on its own line, the
others are measured, and the exit status is 1 when any failed.  Every option's help shows its default, taken from
`ride_tf.defaults`.
"""
import argparse
import sys

from ride_tf import runtime
from ride_tf.cli import compress, decompress, evaluate, export, inpaint, sample, size, train
from ride_tf.cli.common import CommandError, HelpFormatter, UsageError

__all__ = ["main", "build_parser", "CommandError", "SUBCOMMANDS"]

SUBCOMMANDS = (train, evaluate, sample, inpaint, size, compress, decompress, export)


def build_parser():
    parser = argparse.ArgumentParser(prog="ride-tf", formatter_class=HelpFormatter,
                                     description="RIDE (Theis & Bethge 2015): train, evaluate, sample and inpaint "
                                     "with spatial-LSTM image models; exact sizes and lossless compression.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(commands, HelpFormatter)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "needs_tensorflow", True):
        runtime.quiet_tensorflow()
    try:
        status = args.run(args)
    except UsageError as error:
        print(f"ride-tf: error: {error}", file=sys.stderr)
        return 2
    except CommandError as error:
        print(f"ride-tf: error: {error}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, FloatingPointError, MemoryError) as error:
        # The package's own checks (ValueError naming the argument), files that cannot be
        # written (OSError), a model that overflows: one line, no traceback.
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"ride-tf: error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ride-tf: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
