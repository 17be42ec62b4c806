"""The paper's training recipe (section 3), as one call and as Keras callbacks.

RIDE is trained by SGD with momentum 0.9 and batches of 50 patches; the
learning rate decreases over stages from 1 to 1e-4; the patch size grows over
the stages (a curriculum: 8 x 8 up to 22 x 22 for natural images, 20 x 20 to
40 x 40 for textures); after each stage the MCGSM alone is fine-tuned by
L-BFGS (up to 500 iterations) on the hidden states of a fixed sample of
pixels; training stops early when the validation rate gets worse; images are
augmented by horizontal and vertical flips.

Patches travel as uint8 and are dequantized inside the model (fresh uniform
noise every step), so the pipeline is light and exact to the data protocol.
"""
import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from ride_tf.preprocessing import check_images

__all__ = ["sample_patches", "patch_dataset", "paper_learning_rates", "make_optimizer", "PatchCurriculum",
           "FinetuneMCGSM", "TrainingStage", "train"]

NATURAL_IMAGE_PATCH_SIZES = (8, 12, 16, 22)
TEXTURE_PATCH_SIZES = (20, 25, 30, 35, 40)


def _as_image_list(images, num_channels, name="images"):
    """A batch array [N, H, W(, C)] or a list of [H, W(, C)] arrays -> list of [H, W, C] uint8/float arrays."""
    if isinstance(images, (list, tuple)):
        return [check_images(np.asarray(im)[np.newaxis], num_channels, name=f"{name}[{k}]")[0]
                for k, im in enumerate(images)]
    return list(check_images(images, num_channels, name=name))


def sample_patches(images, patch_size, num_patches, num_channels=1, seed=0):
    """Random square crops: NumPy [num_patches, P, P, C] of the images' dtype.

    `images` is a batch [N, H, W(, C)] or a list of images of different sizes;
    crops are drawn uniformly over images (weighted by their number of crop
    positions) and positions.
    """
    images = _as_image_list(images, num_channels)
    sizes = np.array([(im.shape[0] - patch_size + 1) * (im.shape[1] - patch_size + 1) for im in images])
    if (sizes <= 0).all():
        raise ValueError(f"sample_patches: every image is smaller than the patch size {patch_size}.")
    sizes = np.maximum(sizes, 0)
    rng = np.random.default_rng(seed)
    which = rng.choice(len(images), size=num_patches, p=sizes / sizes.sum())
    patches = np.empty((num_patches, patch_size, patch_size, num_channels), images[0].dtype)
    for k, i in enumerate(which):
        im = images[i]
        top = rng.integers(0, im.shape[0] - patch_size + 1)
        left = rng.integers(0, im.shape[1] - patch_size + 1)
        patches[k] = im[top:top + patch_size, left:left + patch_size]
    return patches


def _flip(patch):
    patch = tf.image.random_flip_left_right(patch)
    return tf.image.random_flip_up_down(patch)


def patch_dataset(images, patch_size, num_patches, batch_size=50, num_channels=1, flips=True, seed=0,
                  drop_remainder=True):
    """A tf.data pipeline of random patches [batch, P, P, C] with optional random flips.

    One pass over it is one epoch of `num_patches` patches (drawn once, with
    `seed`); it is shuffled every pass.
    """
    patches = sample_patches(images, patch_size, num_patches, num_channels, seed)
    ds = tf.data.Dataset.from_tensor_slices(patches).shuffle(len(patches), seed=seed,
                                                             reshuffle_each_iteration=True)
    if flips:
        ds = ds.map(_flip, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def paper_learning_rates(num_stages, start=1.0, stop=1e-4):
    """Learning rates decreasing geometrically from `start` to `stop` over the stages.

    The paper's values (1 to 1e-4) belong to its Caffe loss scaling; with this
    package's loss (mean negative log-likelihood in bit/px) SGD at 1.0 diverged
    on dead leaves, so `train` starts lower by default (see DEFAULT_LEARNING_RATES).
    """
    if num_stages == 1:
        return [start]
    return list(np.geomspace(start, stop, num_stages))


# (start, stop) of the default geometric learning-rate schedule of `train`, per
# optimizer.  Measured on dead leaves (RIDE, 1 layer, 32 units, 600 steps of
# 16 x 16 patches; held-out bit/px): SGD 1.0 -> 0.69 (diverging; NaN without
# clipping), SGD 0.1 -> 2.84, Adam 1e-3 -> 2.83, Adam 3e-3 -> 2.90.
DEFAULT_LEARNING_RATES = {"sgd": (0.1, 1e-3), "adam": (3e-3, 1e-4)}


def make_optimizer(name, learning_rate, momentum=0.9, clipnorm=1.0):
    """'sgd' (with momentum, the paper's choice) or 'adam', with gradient-norm clipping."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, clipnorm=clipnorm)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}.")


class PatchCurriculum(keras.callbacks.Callback):
    """Curriculum of patch sizes and learning rates for plain `model.fit`.

    Use `curriculum.dataset()` as fit's data and the curriculum itself as a
    callback: at the start of epoch e it switches to `patch_sizes[e]` (the
    last one afterwards) and sets the optimizer's learning rate to
    `learning_rates[e]`.  Each epoch draws `num_patches` fresh patches.
    """

    def __init__(self, images, patch_sizes=NATURAL_IMAGE_PATCH_SIZES, learning_rates=None,
                 num_patches=5000, batch_size=50, num_channels=1, flips=True, seed=0):
        super().__init__()
        self.images = _as_image_list(images, num_channels)
        self.patch_sizes = list(patch_sizes)
        self.learning_rates = (paper_learning_rates(len(self.patch_sizes), *DEFAULT_LEARNING_RATES["sgd"])
                               if learning_rates is None else list(learning_rates))
        self.num_patches, self.batch_size = int(num_patches), int(batch_size)
        self.num_channels, self.flips, self.seed = num_channels, flips, seed
        self.epoch = 0

    @property
    def patch_size(self):
        return self.patch_sizes[min(self.epoch, len(self.patch_sizes) - 1)]

    def _generate(self):
        patches = sample_patches(self.images, self.patch_size, self.num_patches, self.num_channels,
                                 seed=self.seed + self.epoch)
        for start in range(0, len(patches) - self.batch_size + 1, self.batch_size):
            yield patches[start:start + self.batch_size]

    def dataset(self):
        dtype = tf.as_dtype(self.images[0].dtype)
        spec = tf.TensorSpec([self.batch_size, None, None, self.num_channels], dtype)
        ds = tf.data.Dataset.from_generator(self._generate, output_signature=spec)
        if self.flips:
            ds = ds.map(lambda b: tf.map_fn(_flip, b))
        return ds.prefetch(2)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        lr = self.learning_rates[min(epoch, len(self.learning_rates) - 1)]
        self.model.optimizer.learning_rate.assign(lr)


class FinetuneMCGSM(keras.callbacks.Callback):
    """After every epoch, fine-tune the MCGSM alone by L-BFGS on a fixed sample of pixels.

    The pixels are those of `patches` (uint8/float [M, P, P, C]), fixed at
    construction, so every epoch fine-tunes on the same data.
    """

    def __init__(self, patches, max_iter=500, num_samples=20_000, seed=0, verbose=0):
        super().__init__()
        self.patches, self.max_iter, self.num_samples = patches, max_iter, num_samples
        self.seed, self.verbose = seed, verbose
        self.results = []

    def on_epoch_end(self, epoch, logs=None):
        result = self.model.finetune(self.patches, max_iter=self.max_iter, num_samples=self.num_samples,
                                     seed=self.seed, verbose=self.verbose)
        self.results.append(result)
        if logs is not None:
            logs["finetune_bits_per_pixel"] = result.validation_rate


@dataclasses.dataclass
class TrainingStage:
    """One stage of `train`: its settings and the rates it reached (bit/px, larger is better)."""
    stage: int
    patch_size: int
    learning_rate: float
    train_rate: float
    finetune_rate: float
    validation_rate: float
    kept: bool


def train(model, images, validation_images=None, patch_sizes=NATURAL_IMAGE_PATCH_SIZES,
          learning_rates=None, epochs_per_stage=1, num_patches=10_000, batch_size=50, optimizer="sgd",
          momentum=0.9, clipnorm=1.0, finetune_max_iter=500, finetune_samples=50_000, patience=1, seed=0,
          verbose=1, callbacks=None, on_stage_end=None):
    """Train `model` (a `ride_tf.RIDE`) with the paper's recipe; returns the list of `TrainingStage`s.

    Stage s: `epochs_per_stage` epochs of SGD (momentum 0.9, batch 50, learning
    rate `learning_rates[s]`, default decreasing geometrically over the stages
    from DEFAULT_LEARNING_RATES: 0.1 to 1e-3 for SGD; `optimizer="adam"` uses
    Adam, 3e-3 to 1e-4) on `num_patches` random flipped patches of size
    `patch_sizes[s]`; then L-BFGS
    fine-tuning of the MCGSM (up to `finetune_max_iter` iterations) on a fixed
    sample of pixels; then the validation rate.  Early stopping: when the
    validation rate has not improved for `patience` stages, training stops
    and the best weights are restored (the best are restored at the end in
    any case).  `clipnorm` bounds each gradient's norm (None disables it): the
    paper's learning rate of 1 otherwise diverges on some data.  The
    conditional whitening is adapted first if the model has not been.
    Without validation images, the rate on the held-out fine-tuning pixels is
    used (or the training rate, when fine-tuning is off).  `callbacks` are
    passed to every stage's `fit`; `on_stage_end(model, stage)` is called with
    each finished `TrainingStage` (e.g. to log summaries or save samples).
    """
    num_channels = model.num_channels
    images = _as_image_list(images, num_channels)
    if optimizer not in DEFAULT_LEARNING_RATES:   # before the schedule is looked up by its name
        raise ValueError(f"train: optimizer must be one of {sorted(DEFAULT_LEARNING_RATES)}, got {optimizer!r}.")
    learning_rates = (paper_learning_rates(len(patch_sizes), *DEFAULT_LEARNING_RATES[optimizer])
                      if learning_rates is None else list(learning_rates))
    if len(learning_rates) != len(patch_sizes):
        raise ValueError(f"train: {len(patch_sizes)} patch sizes but {len(learning_rates)} learning rates.")
    if not model.whitening.is_adapted:
        pooled = sample_patches(images, max(patch_sizes), max(64, finetune_samples // max(patch_sizes) ** 2),
                                num_channels, seed=seed)
        model.adapt(pooled, seed=seed)
    pixels_per_patch = max(patch_sizes) ** 2        # every pixel of a patch is modelled
    finetune_patches = sample_patches(images, max(patch_sizes),
                                      max(1, math.ceil(finetune_samples / pixels_per_patch)),
                                      num_channels, seed=seed + 1)

    optimizer = make_optimizer(optimizer, learning_rates[0], momentum, clipnorm)
    model.compile(optimizer=optimizer)

    def validation_rate():
        if validation_images is None:
            return None
        if isinstance(validation_images, (list, tuple)):
            return float(np.mean([model.log_likelihood_rate(im[np.newaxis], seed=seed)[0]
                                  for im in validation_images]))
        return float(np.mean(model.log_likelihood_rate(validation_images, seed=seed)))

    stages, best_rate, best_weights, since_best = [], -np.inf, None, 0
    for stage, (patch_size, lr) in enumerate(zip(patch_sizes, learning_rates)):
        # Momentum carried over from a larger learning rate would undo the L-BFGS
        # fine-tuning in the first steps of the next stage: start every stage at rest.
        optimizer.learning_rate.assign(lr)
        for slot in optimizer.variables if optimizer.built else []:
            if not slot.path.endswith("learning_rate"):      # momenta, Adam's moments, iteration count
                slot.assign(tf.zeros_like(slot))
        ds = patch_dataset(images, patch_size, num_patches, batch_size, num_channels, seed=seed + 100 + stage)
        if verbose:
            print(f"stage {stage + 1}/{len(patch_sizes)}: patches {patch_size}x{patch_size}, "
                  f"learning rate {lr:.3g}")
        history = model.fit(ds, epochs=epochs_per_stage, verbose=verbose, callbacks=callbacks)
        train_rate = float(history.history["bits_per_pixel"][-1])
        finetune_rate = float("nan")
        if finetune_max_iter:
            result = model.finetune(finetune_patches, max_iter=finetune_max_iter, num_samples=finetune_samples,
                                    seed=seed, verbose=verbose)
            finetune_rate = result.validation_rate
        val = validation_rate()
        score = val if val is not None else (finetune_rate if np.isfinite(finetune_rate) else train_rate)
        kept = bool(np.isfinite(score) and score > best_rate)
        if kept:
            best_rate, best_weights, since_best = score, model.get_weights(), 0
        else:
            since_best += 1
        stages.append(TrainingStage(stage, patch_size, float(lr), train_rate, finetune_rate,
                                    float("nan") if val is None else val, kept))
        if verbose:
            print(f"stage {stage + 1}: train {train_rate:.4f}, fine-tuned {finetune_rate:.4f}, "
                  f"validation {val if val is not None else float('nan'):.4f} bit/px")
        if on_stage_end is not None:
            on_stage_end(model, stages[-1])
        if since_best >= patience:
            if verbose:
                print(f"early stopping after stage {stage + 1}")
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    return stages
