"""`ride-tf inpaint MODEL IMAGE MASK --output OUT`: fill the masked pixels by Metropolis-within-Gibbs sampling."""
from ride_tf.cli.common import CommandError, check_output_file, load_model, non_negative_int, read_for_model
from ride_tf.defaults import INPAINTING

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    inpaint = commands.add_parser("inpaint", help="fill missing pixels of an image", formatter_class=formatter,
                                  description="Fill the pixels marked white in MASK by Metropolis-within-Gibbs "
                                  "sampling from the model's posterior (paper section 3.4).")
    inpaint.add_argument("model", help="a .keras model file")
    inpaint.add_argument("image", help="the image file")
    inpaint.add_argument("mask", help="mask image file of the same size: white (> 127) = missing")
    inpaint.add_argument("--output", required=True, help="PNG file to write")
    inpaint.add_argument("--sweeps", type=non_negative_int, default=INPAINTING["num_sweeps"], help="Gibbs sweeps")
    inpaint.add_argument("--seed", type=non_negative_int, default=0, help="the same seed gives the same result")
    inpaint.set_defaults(run=run)
    return inpaint


def run(args):
    import numpy as np

    from ride_tf.io import atomic_write_png

    check_output_file(args.output)
    model = load_model(args.model)
    image = read_for_model(args.image, model.num_channels)
    mask = read_for_model(args.mask, 1)[..., 0]
    if mask.shape[:2] != image.shape[:2]:
        raise CommandError(f"{args.mask}: the mask is {mask.shape[0]} x {mask.shape[1]} but the image is "
                           f"{image.shape[0]} x {image.shape[1]}")
    missing = mask > 127
    if not missing.any():
        raise CommandError(f"{args.mask}: the mask marks no missing pixel (white = missing)")
    try:
        filled, acceptance = model.inpaint(image, missing, num_sweeps=args.sweeps, seed=args.seed)
    except ValueError as error:
        raise CommandError(str(error)) from None
    atomic_write_png(np.asarray(filled).reshape(image.shape), args.output)
    print(f"wrote {args.output} ({int(missing.sum())} pixels filled, acceptance rate {acceptance:.3f})")
