"""Train the pretrained models that ship with ride_tf (`ride_tf.pretrained("gray")`, `"rgb"`).

Data (see `ride_tf.pretrained`): the scikit-image photos that load offline
(`TRAINING_IMAGES`; for --channels 3 the colour ones, `COLOUR_PHOTOS`), photos
larger than 640 px on a side centre-cropped to 640, plus (gray) 15 of the 16
128 x 128 regions of each of scikit-image's textures brick, grass and gravel.
Held out, flips included (`HELD_OUT`): the photos camera, coffee and chelsea
and one region per texture.  Early stopping looks at crops of training
photos, never at the held-out images.

Recipe: the paper's (`ride_tf.training.train`): stages of random flipped
patches growing from 8 x 8 to 22 x 22 (the natural-image curriculum), Adam
with a geometrically decreasing learning rate (SGD diverges more easily with
this package's loss, see `ride_tf.training.DEFAULT_LEARNING_RATES`; `--optimizer
sgd` is the paper's), L-BFGS fine-tuning of the MCGSM after every stage,
early stopping.

Writes the model atomically (a temporary file, then a rename) to `--output`
(default ride_tf/pretrained/<gray|rgb>.keras), a small JSON record beside it
(the package's description of the model) and the full record to
`--record` (default docs/pretrained_<name>.json): data, command, time,
stages, held-out rates in bit/px over every pixel and over the valid region.

    nice -n 19 python examples/train_pretrained.py --channels 1
"""
import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ride_tf import RIDE  # noqa: E402
from ride_tf import io, pretrained  # noqa: E402
from ride_tf.training import NATURAL_IMAGE_PATCH_SIZES, sample_patches, train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Progress(keras.callbacks.Callback):
    """One line every `every` training steps: step, running bit/px, minutes since the start."""

    def __init__(self, start, every=100):
        super().__init__()
        self.start, self.every, self.step = start, every, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            rate = (logs or {}).get("bits_per_pixel", float("nan"))
            print(f"  step {self.step}: {float(rate):.4f} bit/px  ({(time.time() - self.start) / 60:.1f} min)",
                  flush=True)


def atomic_write_model(model, path):
    """model.save to a temporary .keras file in the same folder, then rename over `path`."""
    io.atomic_save_model(model, path)


def atomic_write_json(record, path):
    io.atomic_write_json(path, record)


def evaluate(model, images, seed=1):
    """{name: {full, valid, gaussian}} held-out rates in bit/px (uniform dequantization noise, `seed`)."""
    out = {}
    for name, image in images.items():
        batch = image[np.newaxis]
        out[name] = dict(shape=list(image.shape),
                         full=float(model.log_likelihood_rate(batch, seed=seed)[0]),
                         valid=float(model.log_likelihood_rate(batch, seed=seed, region="valid")[0]),
                         gaussian=float(model.gaussian_log_likelihood_rate(batch, seed=seed)[0]))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, choices=[1, 3], default=1)
    parser.add_argument("--name", default=None, help="model name (default gray or rgb)")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hiddens", type=int, default=32)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--scales", type=int, default=4)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--nb-size", type=int, default=5)
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=list(NATURAL_IMAGE_PATCH_SIZES),
                        help="one stage per patch size")
    parser.add_argument("--patches", type=int, default=25_000, help="patches per stage (batches of 50)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=None, help="one per stage")
    parser.add_argument("--lbfgs-iter", type=int, default=100, help="L-BFGS iterations after every stage")
    parser.add_argument("--finetune-samples", type=int, default=50_000)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--output", default=None, help="model file (default ride_tf/pretrained/<name>.keras)")
    parser.add_argument("--record", default=None, help="JSON record (default docs/pretrained_<name>.json)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    name = args.name or ("gray" if args.channels == 1 else "rgb")
    output = args.output or os.path.join(ROOT, "ride_tf", "pretrained", f"{name}.keras")
    if not output.endswith(".keras"):
        parser.error("--output must end in .keras")
    record_path = args.record or os.path.join(ROOT, "docs", f"pretrained_{name}.json")
    keras.utils.set_random_seed(args.seed)
    start = time.time()

    train_images = pretrained.training_images(args.channels)
    test_images = pretrained.held_out_images(args.channels)
    # Early stopping: 64 x 64 centre crops of six training photos (never held-out data).
    photos = [n for n in train_images if "[" not in n]
    validation = []
    for n in photos[::max(1, len(photos) // 6)][:6]:
        im = train_images[n]
        top, left = (im.shape[0] - 64) // 2, (im.shape[1] - 64) // 2
        validation.append(im[top:top + 64, left:left + 64])
    num_pixels = sum(im.shape[0] * im.shape[1] for im in train_images.values())
    print(f"{name}: {len(train_images)} training images ({num_pixels / 1e6:.2f} Mpx), held out: "
          + ", ".join(test_images), flush=True)

    model = RIDE(num_channels=args.channels, num_hiddens=args.hiddens, num_layers=args.layers,
                 num_components=args.components, num_scales=args.scales, num_features=args.features,
                 nb_size=args.nb_size)
    # The conditional whitening, from about 1M (neighbourhood, pixel) pairs of 64 x 64 training crops.
    model.adapt(sample_patches(list(train_images.values()), 64, 300, args.channels, seed=args.seed), seed=args.seed)
    def on_stage_end(model, stage):
        # Checkpoint: the best model so far replaces the output file (atomically) after every
        # stage that improved, so an interrupted run still leaves a usable model.
        if stage.kept:
            atomic_write_model(model, output)
        print(f"  stage {stage.stage + 1} done ({(time.time() - start) / 60:.1f} min)"
              + (f", checkpoint {output}" if stage.kept else ""), flush=True)

    stages = train(model, list(train_images.values()), validation_images=validation,
                   patch_sizes=args.patch_sizes, learning_rates=args.learning_rates, optimizer=args.optimizer,
                   num_patches=args.patches, finetune_max_iter=args.lbfgs_iter,
                   finetune_samples=args.finetune_samples, patience=args.patience, seed=args.seed, verbose=2,
                   callbacks=[Progress(start)], on_stage_end=on_stage_end)
    train_minutes = (time.time() - start) / 60
    atomic_write_model(model, output)
    print(f"wrote {output} ({os.path.getsize(output) / 1e6:.2f} MB) after {train_minutes:.1f} min", flush=True)

    results = evaluate(model, test_images)
    for n, r in results.items():
        print(f"  held out {n:12s} {r['full']:.3f} bit/px (valid region {r['valid']:.3f}; Gaussian predictor "
              f"{r['gaussian']:.3f})", flush=True)
    photo_names = [n for n in results if "[" not in n]
    mean_photos = float(np.mean([results[n]["full"] for n in photo_names]))
    mean_photos_valid = float(np.mean([results[n]["valid"] for n in photo_names]))
    data = dict(training_images=list(train_images), held_out=list(test_images),
                max_side=pretrained.MAX_SIDE, texture_grid=pretrained.TEXTURE_GRID,
                scikit_image_functions="skimage.data.<name>(); colour converted by skimage.color.rgb2gray "
                                       "for the gray model; stereo_motorcycle: left view")
    description = (f"RIDE for 8-bit {'grayscale' if args.channels == 1 else 'RGB'} photos "
                   f"({args.layers} layer, {args.hiddens} units, {args.components} x {args.scales} experts); "
                   f"trained on {len(train_images)} offline scikit-image "
                   f"{'photos and texture regions' if args.channels == 1 else 'colour photos'}; held-out "
                   f"photos ({', '.join(photo_names)}) {mean_photos:.3f} bit/px"
                   f"{' per channel' if args.channels == 3 else ''}")
    record = dict(name=name, description=description, config=model.get_config(),
                  command="python " + " ".join([os.path.relpath(__file__, ROOT)] + (argv or sys.argv[1:])),
                  args=vars(args), data=data,
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
                  train_minutes=train_minutes, total_minutes=(time.time() - start) / 60,
                  stages=[dataclasses.asdict(s) for s in stages], held_out_rates=results,
                  held_out_photos_mean=dict(full=mean_photos, valid=mean_photos_valid),
                  rate_units="bit/px (per channel for colour), log-likelihood rate, larger is better; "
                             "uniform dequantization noise, seed 1")
    atomic_write_json(record, record_path)
    short = {k: record[k] for k in ("name", "description", "config", "command", "date", "train_minutes",
                                    "held_out_rates", "held_out_photos_mean", "rate_units")}
    atomic_write_json(short, output[:-len(".keras")] + ".json")
    print(f"wrote {record_path} and {output[:-len('.keras')]}.json ({record['total_minutes']:.1f} min)")


if __name__ == "__main__":
    main()
