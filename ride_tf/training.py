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
import json
import math
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from ride_tf.checkpoint import TrainingCheckpoint
from ride_tf.preprocessing import check_images, check_integer, check_number

__all__ = ["sample_patches", "patch_dataset", "paper_learning_rates", "make_optimizer", "PatchCurriculum",
           "FinetuneMCGSM", "TrainingStage", "fit_mcgsm", "fit_baseline", "validation_scores", "train"]

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
    patch_size = check_integer("sample_patches", "patch_size", patch_size, 1)
    num_patches = check_integer("sample_patches", "num_patches", num_patches, 1)
    images = _as_image_list(images, num_channels)
    sizes = np.array([max(im.shape[0] - patch_size + 1, 0) * max(im.shape[1] - patch_size + 1, 0)
                      for im in images])
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


def _flip(patch, seed):
    """Random left-right and up-down flips, a function of `seed` [2] (repeatable in any process)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    patch = tf.image.stateless_random_flip_left_right(patch, seeds[0])
    return tf.image.stateless_random_flip_up_down(patch, seeds[1])


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
        flip_seeds = tf.data.Dataset.random(seed=seed).batch(2)      # one seed pair per patch, repeatable
        ds = tf.data.Dataset.zip((ds, flip_seeds)).map(_flip, num_parallel_calls=tf.data.AUTOTUNE)
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
            flip_seeds = tf.data.Dataset.random(seed=self.seed).batch(2 * self.batch_size)
            ds = tf.data.Dataset.zip((ds, flip_seeds)).map(
                lambda b, s: tf.map_fn(lambda args: _flip(*args), (b, tf.reshape(s, [-1, 2])),
                                       fn_output_signature=spec.dtype))
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
    """One stage of `train`: its settings and what it reached.

    Rates are density rates in bit/px (log-density of dequantized pixels, the
    paper's number, larger is better); code lengths are exact code lengths of
    the 8-bit values in bit/px (`ride_tf.discrete`, smaller is better),
    measured when the objective is "discrete" (NaN otherwise).  With
    objective="discrete", `train_rate` and `finetune_rate` are minus the
    code length of the training patches and of the held-out fine-tuning
    pixels.  The baseline's numbers (the MCGSM that `train` fitted or was
    given, NaN without one) stand next to the model's at every stage.
    """
    stage: int
    patch_size: int
    learning_rate: float
    train_rate: float
    finetune_rate: float
    validation_rate: float
    kept: bool
    baseline_validation_rate: float = float("nan")
    validation_code_length: float = float("nan")
    baseline_validation_code_length: float = float("nan")
    seconds: float = float("nan")        # wall-clock time since `train` started, at the stage's end
    rolled_back: bool = False            # the stage produced non-finite values and was undone
    error: str = ""                      # what went wrong, for a rolled-back stage


class _StopAt(keras.callbacks.Callback):
    """Stops `fit` after the first batch that ends later than `deadline` (time.monotonic())."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True


def fit_mcgsm(model, images, max_iter=500, num_samples=50_000, objective=None, seed=0, verbose=0,
              max_seconds=None):
    """Fit a model's MCGSM by L-BFGS (`RIDE.finetune`); the MCGSM image model's training (num_layers=0).

    objective="discrete" first fits the density (with up to half of
    `max_seconds`: its L-BFGS steps cost a fraction of the discrete ones) and
    then continues on the exact probability of the 8-bit values from there;
    the discrete fit keeps its start unless the held-out code length improves.
    Returns the last `FinetuneResult`.
    """
    objective = model.objective if objective is None else objective
    started = time.monotonic()
    kwargs = dict(max_iter=max_iter, num_samples=num_samples, seed=seed, verbose=verbose)
    result = model.finetune(images, objective="density",
                            max_seconds=None if max_seconds is None or objective == "density" else max_seconds / 2,
                            **kwargs)
    if objective == "discrete":
        remaining = None if max_seconds is None else max(0.0, max_seconds - (time.monotonic() - started))
        result = model.finetune(images, objective="discrete", max_seconds=remaining, **kwargs)
    return result


def fit_baseline(model, images, max_iter=500, num_samples=50_000, objective=None, seed=0, verbose=0,
                 max_seconds=None):
    """The MCGSM baseline of `model`: a RIDE(num_layers=0) with the same neighbourhood and MCGSM size,
    whitening copied from `model` (adapted first if needed), fitted by L-BFGS (`fit_mcgsm`) on
    `images` (e.g. patches).  Returns (baseline, FinetuneResult)."""
    from ride_tf.model import RIDE

    objective = model.objective if objective is None else objective
    if not model.whitening.is_adapted:
        model.adapt(images, seed=seed)
    baseline = RIDE(num_channels=model.num_channels, num_layers=0, num_components=model.num_components,
                    num_scales=model.num_scales, num_features=model.mcgsm.num_features,
                    nb_size=model.nb_size, objective=objective, dtype=model.dtype_policy)
    baseline.whitening.set_weights(model.whitening.get_weights())
    result = fit_mcgsm(baseline, images, max_iter=max_iter, num_samples=num_samples, objective=objective,
                       seed=seed, verbose=verbose, max_seconds=max_seconds)
    return baseline, result


def _mean_over(images, fn):
    """Mean of fn(batch)[:] over a batch array or a list of single images (fn: uint8/float [n, ...] -> [n])."""
    if isinstance(images, (list, tuple)):
        return float(np.mean([fn(np.asarray(im)[np.newaxis])[0] for im in images]))
    return float(np.mean(fn(images)))


def validation_scores(model, images, objective="density", seed=0):
    """(density rate, code length) in bit/px, means over `images`; the code length only for
    objective="discrete" (NaN otherwise; it needs uint8 images)."""
    from ride_tf import discrete

    if images is None:
        return None, float("nan")
    rate = _mean_over(images, lambda im: model.log_likelihood_rate(im, seed=seed))
    code_length = float("nan")
    if objective == "discrete":
        def per_pixel(im):
            im = check_images(im, model.num_channels)
            return discrete.compressed_size_bits(model, im) / (im.shape[1] * im.shape[2] * im.shape[3])
        code_length = _mean_over(images, per_pixel)
    return rate, code_length


def train(model, images, validation_images=None, patch_sizes=NATURAL_IMAGE_PATCH_SIZES,
          learning_rates=None, epochs_per_stage=1, num_patches=10_000, batch_size=50, optimizer="sgd",
          momentum=0.9, clipnorm=1.0, finetune_max_iter=500, finetune_samples=50_000, patience=1, seed=0,
          verbose=1, callbacks=None, on_stage_end=None, objective=None, baseline="auto", baseline_max_iter=None,
          time_budget=None, checkpoint_dir=None, resume=False):
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

    objective: "density" (the paper's: log-density of dequantized pixels) or
      "discrete" (the exact log-probability of the 8-bit values: Keras fit on
      `RIDE(objective="discrete")`'s loss, the exact code length, and discrete
      L-BFGS fine-tuning; the images must be uint8); the best stage is then
      chosen by the validation code length.  Default: the model's objective
      (the model's `objective` is set to it).
    baseline: the MCGSM baseline (`fit_baseline`, a num_layers=0 RIDE of the
      same neighbourhood and MCGSM size, fitted by L-BFGS for up to
      `baseline_max_iter` iterations, default 500 as the paper's MCGSM, with
      early stopping, on the fine-tuning pixels, on the same objective; with a
      `time_budget`, for at most a quarter of it) is fitted first and its
      validation numbers are reported at every stage.  When the model's MCGSM
      reads the inputs (`skip_inputs=True`, the default), the model starts from the
      baseline (`RIDE.initialize_from_baseline`), and the baseline's weights
      are the first candidate of the best-weights selection, so the result is
      never worse than the baseline on the validation images.  "auto"
      (default): only for models with `skip_inputs=True`; True: always (the
      paper's architecture gets the report only); False or None: no
      baseline; or a fitted `RIDE(num_layers=0)` to use.
    checkpoint_dir: a directory where the run's state is written after every
      epoch and every stage (`ride_tf.checkpoint`: weights, best weights,
      optimizer variables, finished stages, early-stopping state), atomically.
    resume: continue the run whose state is in `checkpoint_dir` (the same
      call, e.g. after the process was killed): finished stages are not
      redone, a stage in progress continues after its last finished epoch,
      and at most one epoch of work is lost.  Patches, flips, shuffling and
      fine-tuning samples are functions of `seed` and the stage, so the
      result is that of an uninterrupted run up to multithreaded float32
      round-off (with epochs_per_stage > 1, a stage resumed mid-way shuffles
      its later epochs differently).  Without a checkpoint the run starts
      afresh; a checkpoint of other settings raises ValueError.
    Faults: a stage whose loss, weights or validation become non-finite is
      rolled back to the weights it started from, reported
      (`TrainingStage.rolled_back`, `error`) and counts as a stage without
      improvement; the run goes on.
    time_budget: seconds of wall-clock time for the whole run (baseline fit
      included), or None.  What remains after the baseline fit is shared
      equally by the stages; within a stage, `fit` stops once 3/4 of its
      share has passed and the fine-tuning once all of it has (each after the
      batch or L-BFGS chunk running at that time).  With a budget, set
      `epochs_per_stage` large enough that a stage fills its share.
    """
    from ride_tf.model import OBJECTIVES, RIDE

    started = time.monotonic()
    num_channels = model.num_channels
    images = _as_image_list(images, num_channels)
    if optimizer not in DEFAULT_LEARNING_RATES:   # before the schedule is looked up by its name
        raise ValueError(f"train: optimizer must be one of {sorted(DEFAULT_LEARNING_RATES)}, got {optimizer!r}.")
    learning_rates = (paper_learning_rates(len(patch_sizes), *DEFAULT_LEARNING_RATES[optimizer])
                      if learning_rates is None else list(learning_rates))
    if len(learning_rates) != len(patch_sizes):
        raise ValueError(f"train: {len(patch_sizes)} patch sizes but {len(learning_rates)} learning rates.")
    for k, rate in enumerate(learning_rates):
        check_number("train", f"learning_rates[{k}]", rate, low=0.0, low_open=True)
    for name, value in [("num_patches", num_patches), ("batch_size", batch_size),
                        ("epochs_per_stage", epochs_per_stage), ("patience", patience)]:
        check_integer("train", name, value, 1)
    if len(patch_sizes) == 0:
        raise ValueError("train: patch_sizes is empty.")
    for k, size in enumerate(patch_sizes):
        check_integer("train", f"patch_sizes[{k}]", size, 1)
    if num_patches < batch_size:
        raise ValueError(f"train: num_patches ({num_patches}) must be at least batch_size ({batch_size}); "
                         "a stage would have no complete batch.")
    if resume and checkpoint_dir is None:
        raise ValueError("train: resume=True needs the checkpoint_dir of the run to resume.")
    objective = model.objective if objective is None else objective
    if objective not in OBJECTIVES:
        raise ValueError(f"train: objective must be one of {OBJECTIVES}, got {objective!r}.")
    if objective == "discrete" and any(im.dtype != np.uint8 for im in images):
        raise ValueError("train: objective='discrete' needs uint8 images (the probability of 8-bit values).")
    if time_budget is not None and not (np.isfinite(time_budget) and time_budget > 0):
        raise ValueError(f"train: time_budget must be a positive number of seconds, got {time_budget!r}.")
    if isinstance(baseline, RIDE):
        if baseline.num_layers != 0:
            raise ValueError("train: baseline must be a RIDE with num_layers=0.")
    elif baseline not in ("auto", True, False, None):
        raise ValueError(f"train: baseline must be 'auto', True, False, None or a RIDE(num_layers=0), "
                         f"got {baseline!r}.")
    model.objective = objective
    checkpoint = None if checkpoint_dir is None else TrainingCheckpoint(checkpoint_dir)
    settings = dict(patch_sizes=[int(p) for p in patch_sizes], learning_rates=[float(v) for v in learning_rates],
                    epochs_per_stage=int(epochs_per_stage), num_patches=int(num_patches),
                    batch_size=int(batch_size), seed=int(seed), objective=objective,
                    finetune_max_iter=int(finetune_max_iter or 0), finetune_samples=int(finetune_samples),
                    patience=int(patience), model_config=_config_for_checkpoint(model))
    restored = None
    if resume and checkpoint.exists():
        restored = checkpoint.load()
        if restored[0].get("kind", "train") != "train":
            raise ValueError(f"train: {checkpoint_dir!r} holds the checkpoint of a plain `fit` (FitCheckpoint), "
                             "not of `train`; use another directory.")
        saved = restored[0]["settings"]
        different = sorted(k for k in settings if saved.get(k) != _jsonable_setting(settings[k]))
        if different:
            raise ValueError(f"train: the checkpoint in {checkpoint_dir!r} was written with other settings "
                             f"({', '.join(different)}); resume with the same call, or start afresh.")
        model.set_weights(restored[1])
    # A restored run has its whitening (and its baseline start) in the restored weights.
    if restored is None and not model.whitening.is_adapted:
        if isinstance(baseline, RIDE):
            model.whitening.set_weights(baseline.whitening.get_weights())
        else:
            pooled = sample_patches(images, max(patch_sizes),
                                    max(64, finetune_samples // max(patch_sizes) ** 2), num_channels, seed=seed)
            model.adapt(pooled, seed=seed)
    pixels_per_patch = max(patch_sizes) ** 2        # every pixel of a patch is modelled
    finetune_patches = sample_patches(images, max(patch_sizes),
                                      max(1, math.ceil(finetune_samples / pixels_per_patch)),
                                      num_channels, seed=seed + 1)

    if baseline == "auto":
        baseline = model.mcgsm_reads_inputs
    baseline_result = None
    if restored is not None:
        baseline = None                              # its numbers are in the checkpoint
    if baseline is True:
        max_iter = 500 if baseline_max_iter is None else baseline_max_iter
        baseline, baseline_result = fit_baseline(
            model, finetune_patches, max_iter=max_iter, num_samples=finetune_samples, objective=objective,
            seed=seed, verbose=verbose, max_seconds=None if time_budget is None else time_budget / 4)
        if verbose:
            print(f"baseline MCGSM: {baseline_result.iterations} L-BFGS iterations, held-out pixels "
                  f"{baseline_result.validation_rate:.4f} bit/px")
    elif not baseline:
        baseline = None

    optimizer = make_optimizer(optimizer, learning_rates[0], momentum, clipnorm)
    model.compile(optimizer=optimizer)

    stages, best_rate, best_weights, since_best = [], -np.inf, None, 0
    base_rate, base_code = validation_scores(baseline, validation_images, objective, seed) \
        if baseline is not None else (None, float("nan"))
    first_stage, first_epoch, finished = 0, 0, False
    if restored is not None:
        state, _, best_weights, optimizer_variables = restored
        stages = [TrainingStage(**{k: (float(v) if k in _FLOAT_FIELDS else v) for k, v in s.items()})
                  for s in state["stages"]]
        best_rate, since_best = float(state["best_rate"]), int(state["since_best"])
        base_rate, base_code = float(state["base_rate"]), float(state["base_code"])
        first_stage, first_epoch, finished = len(stages), int(state["epochs_done"]), bool(state["finished"])
        started -= float(state["seconds"])
        if first_epoch:
            optimizer.build(model.trainable_variables)
            for variable, value in zip(optimizer.variables, optimizer_variables):
                variable.assign(value)
        if verbose:
            print(f"resumed from {checkpoint_dir}: {len(stages)} stage(s) done"
                  + (f", {first_epoch} epoch(s) of stage {first_stage + 1}" if first_epoch else "")
                  + (" (the run had finished)" if finished else ""))
    elif baseline is not None and (model.mcgsm_reads_inputs or model.num_layers == 0):
        model.initialize_from_baseline(baseline)
        # The start is the first candidate: training can only keep improvements on the baseline.
        if validation_images is not None:
            start_rate, start_code = validation_scores(model, validation_images, objective, seed)
            start_score = -start_code if objective == "discrete" else start_rate
        else:   # the stages' score: the held-out fine-tuning pixels (the same pixels, same seed)
            start_score = baseline_result.validation_rate if baseline_result is not None else -np.inf
        if np.isfinite(start_score):
            best_rate, best_weights = start_score, model.get_weights()
        if verbose:
            print(f"started from the baseline: validation score {start_score:.4f} bit/px")
    if base_rate is None:
        base_rate = float("nan")

    def save(epochs_done=0, done=False):
        if checkpoint is None:
            return
        state = dict(kind="train", settings=settings, stages=stages, best_rate=best_rate, since_best=since_best,
                     base_rate=base_rate, base_code=base_code, epochs_done=epochs_done, finished=done,
                     seconds=time.monotonic() - started)
        checkpoint.write(state, model.get_weights(), best_weights,
                        [v.numpy() for v in optimizer.variables] if epochs_done else None)

    stage_start = time.monotonic()
    for stage, (patch_size, lr) in enumerate(zip(patch_sizes, learning_rates)):
        if finished or stage < first_stage:
            continue
        resumed_epochs = first_epoch if stage == first_stage else 0
        stage_deadline = None
        if time_budget is not None:
            remaining = started + time_budget - stage_start
            if remaining <= 0:
                break
            stage_deadline = stage_start + remaining / (len(patch_sizes) - stage)
        # Momentum carried over from a larger learning rate would undo the L-BFGS
        # fine-tuning in the first steps of the next stage: start every stage at rest.
        optimizer.learning_rate.assign(lr)
        for slot in optimizer.variables if optimizer.built and not resumed_epochs else []:
            if not slot.path.endswith("learning_rate"):      # momenta, Adam's moments, iteration count
                slot.assign(tf.zeros_like(slot))
        good_weights = model.get_weights()                    # what a failed stage is rolled back to
        ds = patch_dataset(images, patch_size, num_patches, batch_size, num_channels, seed=seed + 100 + stage)
        if verbose:
            print(f"stage {stage + 1}/{len(patch_sizes)}: patches {patch_size}x{patch_size}, "
                  f"learning rate {lr:.3g}")
        fit_callbacks = list(callbacks or [])
        if stage_deadline is not None:
            share = stage_deadline - stage_start
            fit_callbacks.append(_StopAt(stage_start + (0.75 if finetune_max_iter else 1.0) * share))
        if checkpoint is not None and epochs_per_stage > 1:
            fit_callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: save(epochs_done=epoch + 1) if epoch + 1 < epochs_per_stage
                else None))
        error = ""
        try:
            history = model.fit(ds, epochs=epochs_per_stage, initial_epoch=resumed_epochs, verbose=verbose,
                                callbacks=fit_callbacks)
            train_rate = float(history.history["bits_per_pixel"][-1])
            finetune_rate = float("nan")
            if finetune_max_iter:
                max_seconds = None if stage_deadline is None else max(0.0, stage_deadline - time.monotonic())
                try:
                    result = model.finetune(finetune_patches, max_iter=finetune_max_iter,
                                            num_samples=finetune_samples, seed=seed, verbose=verbose,
                                            objective=objective, max_seconds=max_seconds)
                except ValueError as failure:      # NaN hidden states after a diverged fit
                    if "NaN" in str(failure) or "finite" in str(failure):
                        raise FloatingPointError(f"fine-tuning: {failure}") from None
                    raise
                finetune_rate = result.validation_rate
            bad = model.non_finite_weights()
            if bad:
                raise FloatingPointError(f"the weights became non-finite ({', '.join(bad[:3])})")
            val, code_length = validation_scores(model, validation_images, objective, seed)
        except (FloatingPointError, tf.errors.InvalidArgumentError) as failure:
            if isinstance(failure, tf.errors.InvalidArgumentError) and "not finite" not in str(failure):
                raise
            error = str(failure).strip().splitlines()[0][:300]
            model.set_weights(good_weights)
            train_rate = finetune_rate = float("nan")
            val, code_length = (None if validation_images is None else float("nan")), float("nan")
            if verbose:
                print(f"stage {stage + 1}: non-finite values ({error}); rolled back to the weights the stage "
                      "started from")
        if val is None:
            score = finetune_rate if np.isfinite(finetune_rate) else train_rate
        else:
            score = -code_length if objective == "discrete" else val
        kept = bool(np.isfinite(score) and score > best_rate)
        if kept:
            best_rate, best_weights, since_best = score, model.get_weights(), 0
        else:
            since_best += 1
        stage_start = time.monotonic()
        stages.append(TrainingStage(stage, patch_size, float(lr), train_rate, finetune_rate,
                                    float("nan") if val is None else val, kept,
                                    baseline_validation_rate=base_rate, validation_code_length=code_length,
                                    baseline_validation_code_length=base_code,
                                    seconds=stage_start - started, rolled_back=bool(error), error=error))
        save(done=since_best >= patience or stage == len(patch_sizes) - 1)
        if verbose:
            line = (f"stage {stage + 1}: train {train_rate:.4f}, fine-tuned {finetune_rate:.4f}, "
                    f"validation {val if val is not None else float('nan'):.4f} bit/px "
                    f"(baseline {base_rate:.4f})")
            if objective == "discrete":
                line += f"; validation code length {code_length:.4f} bit/px (baseline {base_code:.4f})"
            print(line)
        if on_stage_end is not None:
            on_stage_end(model, stages[-1])
        if since_best >= patience:
            if verbose:
                print(f"early stopping after stage {stage + 1}")
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    elif stages:
        warnings.warn("train: no stage improved on the start (every stage was rolled back or had a non-finite "
                      "score); the model keeps its last finite weights.", RuntimeWarning, stacklevel=2)
    return stages


_FLOAT_FIELDS = {f.name for f in dataclasses.fields(TrainingStage) if f.type in (float, "float")}


def _config_for_checkpoint(model):
    config = dict(model.get_config())
    config.pop("name", None)
    config.pop("trainable", None)
    config.pop("dtype", None)
    return _jsonable_setting(config)


def _jsonable_setting(value):
    return json.loads(json.dumps(value, default=str))
