"""The reliability issue's photo training: a 1- or 2-layer RIDE on 87 gray 128 x 128 photo crops.

The run that aborted once (issue "Reliability and scale", section 2): RIDE with
32 units trained by `ride_tf.training.train` on the 87 non-overlapping 128 x 128
tiles of scikit-image's camera, astronaut, coffee, chelsea, coins, rocket and
moon in gray (16 + 16 + 12 + 6 + 6 + 15 + 16), validated on the last two, with

    train(model, images, validation_images=images[-2:], patch_sizes=(8, 12, 16, 22),
          optimizer="adam", num_patches=10_000, finetune_max_iter=100,
          finetune_samples=30_000, patience=2)

Then the paper's cell (eq. 6, forget biases 0, the paper's architecture) was
the default; it aborted with non-finite log-likelihoods after a stage.  This
script runs the same call with any cell, forget bias and architecture, and
reports every stage (rolled back or not, with the error) and the density rate
of the validation crops:

    python examples/photo_crops.py --layers 2                                   # today's defaults
    python examples/photo_crops.py --layers 2 --cell paper --forget-bias 0 --paper-architecture   # as then
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "coins", "rocket", "moon")


def photo_tiles(size=128):
    """The non-overlapping size x size tiles of PHOTOS in gray, row by row: uint8 [87, size, size, 1] for 128."""
    from ride_tf.pretrained import load_photo

    tiles = []
    for name in PHOTOS:
        image = load_photo(name, 1, crop=False)
        for top in range(0, image.shape[0] - size + 1, size):
            for left in range(0, image.shape[1] - size + 1, size):
                tiles.append(image[top:top + size, left:left + size])
    return np.stack(tiles)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cell", default="stable", choices=("stable", "paper"))
    parser.add_argument("--forget-bias", type=float, default=None,
                        help="initial forget-gate bias (default: the cell's, stable 0, paper -1)")
    parser.add_argument("--paper-architecture", action="store_true", help="skip_inputs=False (no baseline start)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the stages as JSON here")
    args = parser.parse_args(argv)

    import keras

    from ride_tf import RIDE
    from ride_tf.training import train

    images = photo_tiles()
    print(f"{len(images)} tiles of 128 x 128; validation: the last 2", flush=True)
    keras.utils.set_random_seed(args.seed)
    model = RIDE(num_layers=args.layers, num_hiddens=32, cell=args.cell, skip_inputs=not args.paper_architecture)
    if args.forget_bias is not None:
        for layer in model.slstms:
            layer.forget_bias = args.forget_bias
    started = time.monotonic()
    stages = train(model, images, validation_images=images[-2:], patch_sizes=(8, 12, 16, 22), optimizer="adam",
                   num_patches=10_000, finetune_max_iter=100, finetune_samples=30_000, patience=2, seed=args.seed,
                   verbose=1)
    seconds = time.monotonic() - started
    rate = float(np.mean(model.log_likelihood_rate(images[-2:], seed=0)))
    finite = all(np.isfinite(w).all() for w in model.get_weights())
    print(f"\n{'stage':>5} {'patch':>5} {'train':>8} {'finetune':>8} {'valid':>8} {'kept':>5}  rolled back")
    for s in stages:
        print(f"{s.stage + 1:5d} {s.patch_size:5d} {s.train_rate:8.3f} {s.finetune_rate:8.3f} "
              f"{s.validation_rate:8.3f} {str(s.kept):>5}  {s.error if s.rolled_back else '-'}")
    print(f"validation crops: {rate:.3f} bit/px (density rate); weights finite: {finite}; {seconds / 60:.1f} min")
    if args.output:
        from ride_tf.io import atomic_write_json

        atomic_write_json(args.output, dict(settings=vars(args), seconds=seconds, validation_rate=rate,
                                            weights_finite=finite,
                                            stages=[{k: (v if not isinstance(v, float) or np.isfinite(v) else str(v))
                                                     for k, v in vars(s).items()} for s in stages]))


if __name__ == "__main__":
    main()
