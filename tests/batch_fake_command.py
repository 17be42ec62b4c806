"""A stand-in for `ride_tf.cli.size` in the tests of `ride_tf.cli.batch` (no model, no TensorFlow).

An "image" is a text file "H W C" (its bits: H * W * C * 1.5); "bad" is refused, "crash" ends the worker
process; prepare fails when options.fail_prepare is set.
"""
import os

from ride_tf.cli.common import CommandError

FIELDS = ("path", "height", "width", "channels", "bits", "bytes", "bits_per_pixel", "note")


def prepare(options):
    if getattr(options, "fail_prepare", False):
        raise CommandError("broken.keras: not a ride-tf model file")
    return {"prepared in": os.getpid()}


def measure(path, options, models):
    try:
        with open(path) as stream:
            text = stream.read().strip()
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    if text == "crash":
        os._exit(3)
    if text == "bad":
        raise CommandError(f"{path}: a refused file")
    height, width, channels = (int(v) for v in text.split())
    bits = height * width * channels * 1.5
    return dict(path=path, height=height, width=width, channels=channels, bits=bits, bytes=bits / 8,
                bits_per_pixel=bits / (height * width * channels), note="")


def table_header(options, width):
    return f"{'image':{width}s}  bits"


def table_line(row, width):
    return f"{row['path']:{width}s}  {row['bits']:.1f}"


def table_footer(summary, width):
    return []


def json_report(options, rows, errors, summary):
    return dict(images=rows, errors=errors, summary=summary)
