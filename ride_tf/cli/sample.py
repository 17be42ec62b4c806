"""`ride-tf sample MODEL --size HxW -n N --output DIR`: ancestral samples written as PNG files."""
import os

from ride_tf.cli.common import CommandError, image_size, load_model, non_negative_int, positive_int

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    sample = commands.add_parser("sample", help="draw images from a model", formatter_class=formatter,
                                 description="Ancestral samples (wavefront order), written as PNG files.")
    sample.add_argument("model", help="a .keras model file")
    sample.add_argument("--size", type=image_size, required=True, help="HxW, e.g. 256x256")
    sample.add_argument("-n", "--num", type=positive_int, default=1, help="number of samples")
    sample.add_argument("--output", required=True, help="directory for sample_000.png, ...")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="the same seed gives the same images")
    sample.add_argument("--batch-size", type=positive_int, help="samples per graph call (default: all)")
    sample.set_defaults(run=run)
    return sample


def run(args):
    from ride_tf.io import atomic_write_png

    model = load_model(args.model)
    height, width = args.size
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CommandError(f"{args.output}: exists and is not a directory (--output names a directory)")
    images = model.sample(args.num, height, width, seed=args.seed, batch_size=args.batch_size)
    os.makedirs(args.output, exist_ok=True)
    for k, image in enumerate(images):
        atomic_write_png(image, os.path.join(args.output, f"sample_{k:03d}.png"))
    print(f"wrote {len(images)} samples of {height} x {width} to {args.output}")
