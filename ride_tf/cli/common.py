"""What the subcommands of `ride-tf` share: errors, option types, models, reading and writing image files.

Nothing here imports TensorFlow at module level, so that `ride-tf --help` and
usage errors answer at once; the float model stack is imported when a command
needs it (train, evaluate, sample, inpaint, export), and the codec's commands
(size, compress, decompress) run on integer models without it
(`ride_tf.codec`), deriving one from a .keras file once (then cached).
"""
import argparse
import math
import os

__all__ = ["CommandError", "UsageError", "HelpFormatter", "image_size", "int_at_least", "positive_int",
           "non_negative_int", "positive_float", "load_model", "load_integer_model", "shipped_model", "check_output_file", "read_exact",
           "read_for_model", "coded_image", "coded_candidates", "coding_note", "CodedImage", "MODEL_HELP",
           "COLOUR_HELP", "PALETTE_HELP", "PALETTE_NAME", "PALETTE_TRIES", "THREADS_HELP", "ADAPT_HELP", "palette_choice"]

MODEL_HELP = ("a .keras model file (its integer model derived once, then cached), an integer model file "
              "(.integer.npz, `ride-tf export --codec`), or the name of a shipped model (gray, rgb, gray-small, ...; "
              "default: the shipped model for the image's mode, gray or rgb)")
THREADS_HELP = "threads that code one image (default: every core; the file does not depend on it)"
COLOUR_HELP = ("how a colour file is coded: joint (the rgb model, a pixel's channels one after the other), planes "
               "(a gray model on the planes of a reversible colour transform) or best (both, with the shipped "
               "models, keeping the shorter: twice the time; with --model or --mode, joint)")

PALETTE_HELP = ("the palette coder (no model; images of at most 4096 colours, such as screenshots and plots, where it "
                "beats the models): auto tries it beside the model, keeping the shorter, where it may win (the image "
                "looks synthetic, or its rate on a band of the image is close to the model's), always wherever the "
                "image has few enough colours, never not at all, only codes with it alone (default: auto, or never "
                "with --model or --mode, which name the model to measure)")
PALETTE_NAME = "palette coder"
# The --palette choices beside a model as `ride_tf.codec.palette_alternative`'s `palette` ("only" codes without one).
PALETTE_TRIES = {"auto": "auto", "always": True, "never": False}


class CommandError(Exception):
    """A problem with the user's input: printed as one line, exit status 1."""


class UsageError(CommandError):
    """Options that do not go together, found after parsing: printed as one line, exit status 2 (as argparse's)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default ("(default: ...)"); options without one say what happens
    without them in their own words."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# ------------------------------------------------------------ option types
def image_size(text):
    """"HxW" -> (H, W), both >= 1."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 256x256), got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1x1, got {text!r}")
    return height, width


def int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


positive_float.__name__ = "number"


# ------------------------------------------------------------------ models
def load_model(path):
    """A `RIDE` from a .keras file, or the shipped model of that name (`ride_tf.pretrained.available()`) when no
    such file exists; a CommandError that says why not."""
    from ride_tf import pretrained
    from ride_tf.model import load_model as load

    if not os.path.exists(path) and path in pretrained.available():
        return pretrained.load(path)
    try:
        model = load(path)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if not model.whitening.is_adapted:
        raise CommandError(f"{path}: the model's whitening was never fitted (an untrained model); "
                           "train it with `ride-tf train`")
    return model


def load_integer_model(path):
    """The integer model (`ride_tf.codec.IntegerModel`) of a .keras file (derived once, then cached), an integer
    model file, or a shipped model's name; a CommandError that says why not."""
    from ride_tf import codec

    try:
        return codec.as_integer_model(path, "--model")
    except (ValueError, TypeError) as error:
        raise CommandError(str(error).splitlines()[0]) from None


def shipped_model(num_channels, what, integer=False):
    """The shipped model for images of `num_channels` channels ("gray" or "rgb"), its float model or (integer=True)
    its integer model, or a CommandError."""
    from ride_tf import pretrained
    from ride_tf.codec import registry

    name = {1: "gray", 3: "rgb"}.get(num_channels)
    if name not in (registry.shipped_names() if integer else pretrained.available()):
        raise CommandError(f"{what}: no shipped model for {num_channels}-channel images comes with ride-tf; "
                           "pass --model")
    return registry.shipped_model(name) if integer else pretrained.load(name)


def check_output_file(path):
    """Refuse an output path that cannot become a file, before any work is done."""
    if os.path.isdir(path) or path.endswith(os.sep):
        raise CommandError(f"{path}: is a directory; the output must name a file")


# ------------------------------------------------------------- image files
def _image_error(path, error):
    if isinstance(error, FileNotFoundError):
        return CommandError(f"{path}: no such file")
    return CommandError(str(error).splitlines()[0])


def read_exact(path):
    """(pixels uint8 [H, W, C], FileMode) of an image file, exactly (`ride_tf.data.files.read_image_file`), or a
    CommandError naming the file and the problem (e.g. its mode, when it has no exact 8-bit form)."""
    from ride_tf.data.files import read_image_file

    try:
        return read_image_file(path)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise _image_error(path, error) from None


def read_for_model(path, num_channels):
    """An image file converted to the model's channels (gray luma or RGB), uint8 [H, W, C], for training and
    sampling conditions (`ride_tf.data.files.load_image`); CommandError if unreadable."""
    from ride_tf.data.files import load_image

    if num_channels not in (1, 3):
        raise CommandError(f"the model has {num_channels} channels; image files give 1 (gray) or 3 (rgb)")
    try:
        image = load_image(path, mode="rgb" if num_channels == 3 else "gray")
    except (FileNotFoundError, ValueError, OSError) as error:
        raise _image_error(path, error) from None
    return image.reshape(image.shape[0], image.shape[1], -1)


class CodedImage:
    """An image file as a model codes it: pixels [H, W, C], their FileMode, the model (a RIDE, or an integer model
    for the codec's commands), and a note for the output line ("" unless the pixels were converted, e.g.
    "converted to gray")."""

    def __init__(self, path, pixels, file_mode, model, model_name, note="", colour_transform=None):
        self.path, self.pixels, self.file_mode = path, pixels, file_mode
        self.model, self.model_name, self.note = model, model_name, note
        self.colour_transform = colour_transform      # "rct": a colour image coded by planes with a gray model


def coded_image(path, model_path=None, mode=None, to_gray=False, models=None, colour="joint", integer=False):
    """Read `path` exactly and pick the model that codes it losslessly, or refuse (CommandError).

    model_path: a .keras file, or None for the shipped models; mode: "gray"
    or "rgb" to name a shipped model, or None to take the one that matches
    the file; to_gray: a colour file may be converted to its luma for a gray
    model (said in the note); colour: "planes" codes a colour file's planes
    of the reversible colour transform with a gray model (the shipped one
    unless model_path names one), "joint" with an rgb model.  `models` caches
    loaded models by name.  integer=True: integer models (the codec's
    commands, no TensorFlow), else float models (RIDE).
    """
    from ride_tf.data.files import FileMode, luma

    pixels, file_mode = read_exact(path)
    channels = pixels.shape[-1]
    models = {} if models is None else models
    if channels == 3 and colour == "planes" and not to_gray and mode != "rgb":
        return _coded_by_planes(path, pixels, file_mode, model_path, models, integer)
    if model_path:
        name = model_path
        if name not in models:
            models[name] = load_integer_model(model_path) if integer else load_model(model_path)
        wanted = models[name].num_channels
    else:
        wanted = {"gray": 1, "rgb": 3}.get(mode, channels)
        name = {1: "shipped gray model", 3: "shipped rgb model"}.get(wanted, f"{wanted} channels")
    note = ""
    if wanted != channels:
        what = f"{path} is a {'colour' if channels == 3 else 'grayscale'} image (mode {file_mode.mode})"
        given = f"the model {model_path}" if model_path else f"--mode {mode}"
        if channels == 3 and wanted == 1 and to_gray:
            pixels, file_mode = luma(pixels)[..., None], FileMode("L", 1, icc_profile=file_mode.icc_profile)
            note = "converted to gray (its luma): decompress gives the gray image, not the colours"
        elif channels == 3 and wanted == 1:
            raise CommandError(f"{what}, but {given} codes gray images; omit --model/--mode to use the shipped "
                               "colour model, pass a colour model, or pass --to-gray to code its luma (the "
                               "colours are lost)")
        else:
            raise CommandError(f"{what}, but {given} codes {wanted}-channel images; omit --model/--mode to use "
                               "the shipped model for its mode, or pass a model with "
                               f"{channels} channel(s)")
    if name not in models:
        models[name] = shipped_model(wanted, "--model not given", integer)
    return CodedImage(path, pixels, file_mode, models[name], name, note)


def _coded_by_planes(path, pixels, file_mode, model_path, models, integer):
    """A colour image coded by the planes of the reversible colour transform with a gray model."""
    name = model_path or "shipped gray model"
    if name not in models:
        if model_path:
            models[name] = load_integer_model(model_path) if integer else load_model(model_path)
        else:
            models[name] = shipped_model(1, "--model not given", integer)
    if models[name].num_channels != 1:
        raise CommandError(f"{path}: --colour planes codes a colour image's planes with a gray model, but "
                           f"{model_path} has {models[name].num_channels} channels")
    return CodedImage(path, pixels, file_mode, models[name], name, "colour planes (RCT), each coded by the gray "
                      "model", colour_transform="rct")


def coded_candidates(path, model_path=None, mode=None, to_gray=False, models=None, colour="best"):
    """The ways `compress` / `size` try for an image file: a list of CodedImage (`coded_image`'s arguments), with
    integer models.

    colour "best" on a colour file with the shipped models (no --model, no
    --mode, no --to-gray) gives two: joint with the rgb model and planes
    with the gray model, of which the commands keep the shorter; otherwise
    (and "best" with --model or --mode, which name one model) the one
    `coded_image` picks, "best" standing for "joint" there.
    """
    models = {} if models is None else models
    first = coded_image(path, model_path, mode, to_gray, models, colour="joint" if colour == "best" else colour,
                        integer=True)
    if (colour == "best" and first.pixels.shape[-1] == 3 and first.colour_transform is None and not first.note
            and model_path is None and mode is None):
        return [first, _coded_by_planes(path, first.pixels, first.file_mode, None, models, True)]
    return [first]


def coding_note(note, colour_transform, packed, adapted=False):
    """The output line's note for a coding (`ride_tf.codec.codings_to_try`): the candidate's own note, with what
    the coding does where it is not the candidate's plain one."""
    parts = [note] if note and colour_transform != "equal" else []
    if colour_transform == "equal":
        parts.append("three equal channels, coded once by the gray model")
    if packed:
        parts.append("values coded as indices in each channel's table of used values")
    if adapted:
        parts.append("the model's priors fitted to the image")
    return "; ".join(parts)


ADAPT_HELP = ("also try the shortest coding with the model's priors fitted to the image (one-channel models: gray "
              "images and colour planes; the shifts are stored in the file; about twice the time)")


def palette_choice(args):
    """The --palette choice of a command: as given, else "auto" (or "never" when --model or --mode names a model);
    --palette only with an option that chooses a model is refused (it codes without one)."""
    given = [name for name, value in (("--model", args.model), ("--mode", args.mode), ("--to-gray", args.to_gray))
             if value]
    if args.palette == "only" and given:
        raise CommandError(f"--palette only codes the image's own pixels without a model; drop {', '.join(given)}")
    if args.palette is None:
        return "never" if args.model or args.mode else "auto"
    return args.palette

