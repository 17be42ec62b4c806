"""`ride-tf train IMAGES... --output model.keras`: train RIDE with the paper's recipe (`ride_tf.training.train`)."""
import os

from ride_tf.cli.common import (CommandError, int_at_least, non_negative_int, positive_float, positive_int,
                                read_for_model)
from ride_tf.defaults import CELLS, COLOUR_MODES, MODEL, OBJECTIVES, OPTIMIZERS, TEXTURE_PATCH_SIZES, TRAINING

__all__ = ["add_parser", "run"]


def add_parser(commands, formatter):
    train = commands.add_parser("train", help="train a model on image files", formatter_class=formatter,
                                description="Train RIDE with the paper's recipe (curriculum of patch sizes, "
                                "L-BFGS fine-tuning of the MCGSM after each stage, early stopping) and save it. "
                                "The stages are selected on --validation images, or, without them, on "
                                "held-out pixels of the training images.")
    train.add_argument("images", nargs="+", help="training image files")
    train.add_argument("--output", required=True, help="the .keras file to write")
    train.add_argument("--mode", choices=COLOUR_MODES, default="gray", help="read the images as")
    train.add_argument("--validation", nargs="+", help="validation image files for early stopping and selection "
                       "(default: held-out pixels of the training images)")
    train.add_argument("--layers", type=non_negative_int, default=MODEL["num_layers"],
                       help="spatial LSTM layers (0: the MCGSM image model)")
    train.add_argument("--hiddens", type=positive_int, default=MODEL["num_hiddens"], help="units per spatial LSTM")
    train.add_argument("--components", type=positive_int, default=MODEL["num_components"], help="MCGSM components")
    train.add_argument("--scales", type=positive_int, default=MODEL["num_scales"],
                       help="MCGSM scales per component")
    train.add_argument("--features", type=positive_int, default=MODEL["num_features"],
                       help="MCGSM quadratic features")
    train.add_argument("--nb-size", type=positive_int, default=MODEL["nb_size"], help="neighbourhood width, odd")
    train.add_argument("--cell", choices=CELLS, default=MODEL["cell"], help="spatial LSTM cell")
    train.add_argument("--paper-architecture", action="store_true",
                       help="the MCGSM reads the top LSTM state alone (otherwise also the whitened inputs, "
                       "and training starts from the fitted MCGSM)")
    train.add_argument("--objective", choices=OBJECTIVES, default=MODEL["objective"],
                       help="train on the density of dequantized pixels or on the exact code length of the "
                       "8-bit values")
    train.add_argument("--patch-sizes", type=positive_int, nargs="+",
                       help="the curriculum, one patch size per stage (default: "
                       + " ".join(map(str, TRAINING["patch_sizes"])) + ")")
    train.add_argument("--textures", action="store_true",
                       help="the texture curriculum " + " ".join(map(str, TEXTURE_PATCH_SIZES)))
    train.add_argument("--patches", type=int_at_least(TRAINING["batch_size"]), default=TRAINING["num_patches"],
                       help=f"patches per stage, at least one batch of {TRAINING['batch_size']}")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=TRAINING["optimizer"],
                       help="adam, or the paper's sgd with momentum")
    train.add_argument("--learning-rates", type=positive_float, nargs="+",
                       help="one per stage (default: geometric, adam 3e-3 to 1e-4, sgd 0.1 to 1e-3)")
    train.add_argument("--finetune-iter", type=non_negative_int, default=TRAINING["finetune_max_iter"],
                       help="L-BFGS iterations after each stage")
    train.add_argument("--finetune-samples", type=positive_int, default=TRAINING["finetune_samples"],
                       help="pixels for L-BFGS")
    train.add_argument("--patience", type=positive_int, default=TRAINING["patience"],
                       help="early-stopping patience in stages")
    train.add_argument("--time-budget", type=positive_float, default=None, metavar="SECONDS",
                       help="wall-clock seconds for the whole run (baseline fit included), shared by the stages")
    train.add_argument("--seed", type=non_negative_int, default=TRAINING["seed"],
                       help="seed of patches, flips and samples")
    train.add_argument("--logdir", help="write TensorBoard summaries here (bit/px per step and stage, samples)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--checkpoint-dir", help="write the run's state here after every epoch and stage")
    train.add_argument("--resume", action="store_true",
                       help="continue the run whose state is in --checkpoint-dir (e.g. after a crash)")
    train.set_defaults(run=run)
    return train


def run(args):
    from ride_tf import training
    from ride_tf.io import atomic_save_model
    from ride_tf.model import RIDE

    if not args.output.endswith(".keras"):
        raise CommandError(f"--output must name a .keras file, got {args.output!r}")
    if os.path.isdir(args.output):
        raise CommandError(f"{args.output}: is a directory; --output must name a .keras file")
    if args.resume and not args.checkpoint_dir:
        raise CommandError("--resume needs --checkpoint-dir, the directory of the run to resume")
    num_channels = 3 if args.mode == "rgb" else 1
    images = [read_for_model(path, num_channels) for path in args.images]
    validation = [read_for_model(path, num_channels) for path in args.validation] if args.validation else None
    patch_sizes = args.patch_sizes or (TEXTURE_PATCH_SIZES if args.textures else TRAINING["patch_sizes"])
    smallest = min(min(im.shape[:2]) for im in images)
    if max(patch_sizes) > smallest:
        raise CommandError(f"the largest patch size {max(patch_sizes)} exceeds the smallest training image side "
                           f"({smallest} px); pass smaller --patch-sizes")
    if args.learning_rates and len(args.learning_rates) != len(patch_sizes):
        raise CommandError(f"{len(patch_sizes)} patch sizes but {len(args.learning_rates)} learning rates")
    try:
        model = RIDE(num_channels=num_channels, num_hiddens=args.hiddens, num_layers=args.layers,
                     num_components=args.components, num_scales=args.scales, num_features=args.features,
                     nb_size=args.nb_size, cell=args.cell, skip_inputs=not args.paper_architecture,
                     objective=args.objective)
    except ValueError as error:
        raise CommandError(str(error)) from None
    callbacks, on_stage_end = None, None
    if args.logdir:
        logger = SummaryLogger(args.logdir, args.seed)
        callbacks, on_stage_end = [logger.callback()], logger.on_stage_end
    if not args.quiet and validation is None:
        print("no --validation images: the stages are selected on held-out pixels of the training images")
    stages = training.train(model, images, validation_images=validation, patch_sizes=patch_sizes,
                            learning_rates=args.learning_rates, num_patches=args.patches,
                            optimizer=args.optimizer, finetune_max_iter=args.finetune_iter,
                            finetune_samples=args.finetune_samples, patience=args.patience, seed=args.seed,
                            verbose=0 if args.quiet else 1, callbacks=callbacks, on_stage_end=on_stage_end,
                            checkpoint_dir=args.checkpoint_dir, resume=args.resume, objective=args.objective,
                            time_budget=args.time_budget)
    from_baseline = model.mcgsm_reads_inputs    # then the start, the fitted MCGSM, is a valid result too
    if (not any(s.kept for s in stages) and not from_baseline) or model.non_finite_weights():
        raise CommandError("training produced no stage with a finite score; nothing was saved")
    atomic_save_model(model, args.output)       # under a temporary name, then renamed
    if not any(s.kept for s in stages):
        print(f"saved {args.output} (no stage improved on the fitted MCGSM it started from; saved that start)")
        return
    best = max((s for s in stages if s.kept), key=lambda s: s.stage)
    print(f"saved {args.output} (stage {best.stage + 1} of {len(stages)} kept: score {best.score:.4f} bit/px "
          f"on the {best.selected_on}; training patches {best.train_rate:.4f} bit/px)")


class SummaryLogger:
    """TensorBoard summaries: bit/px per training step and per stage, and samples after every stage."""

    def __init__(self, logdir, seed):
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(logdir)
        self.step = 0
        self.seed = seed

    def callback(self):
        import keras
        import tensorflow as tf

        logger = self

        class PerStep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                logger.step += 1
                if logs and "bits_per_pixel" in logs:
                    with logger.writer.as_default():
                        tf.summary.scalar("train/bits_per_pixel", float(logs["bits_per_pixel"]), step=logger.step)

        return PerStep()

    def on_stage_end(self, model, stage):
        import numpy as np
        import tensorflow as tf

        with self.writer.as_default():
            for name in ("train_rate", "finetune_rate", "validation_rate", "score"):
                value = getattr(stage, name)
                if np.isfinite(value):
                    tf.summary.scalar(f"stage/{name}", value, step=stage.stage + 1)
            samples = model.sample(4, 64, 64, seed=self.seed)
            tf.summary.image("stage/samples", samples, step=stage.stage + 1, max_outputs=4)
        self.writer.flush()
