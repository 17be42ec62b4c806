"""The paper's training recipe (section 3) as one call, `train`, built from small steps.

RIDE is trained by SGD with momentum 0.9 and batches of 50 patches; the
learning rate decreases over stages from 1 to 1e-4; the patch size grows over
the stages (a curriculum: 8 x 8 up to 22 x 22 for natural images, 20 x 20 to
40 x 40 for textures); after each stage the MCGSM alone is fine-tuned by
L-BFGS (up to 500 iterations) on the hidden states of a fixed sample of
pixels; training stops early when the validation rate gets worse; images are
augmented by horizontal and vertical flips.  Here the default optimizer is
Adam (`ride_tf.defaults` says why); `optimizer="sgd"` is the paper's.

The steps of one run (`_Run`): check the arguments (`check_train_arguments`),
resume from a checkpoint or adapt the whitening, fit the MCGSM baseline and
start from it, then per stage: reset the optimizer, fit, fine-tune, score,
roll back a non-finite stage, keep the best weights, checkpoint; finally
restore the best weights.  The best-weights selection compares one score per
candidate (the start from the baseline and every stage), measured on
`SELECTION[0]` when there are validation images, else on the held-out
fine-tuning pixels, else (no fine-tuning) on the training patches.
"""
import dataclasses
import json
import math
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from ride_tf import discrete
from ride_tf.checks import (NonFiniteError, check_bool, check_choice, check_images, check_integer, check_number,
                            check_verbose)
from ride_tf.defaults import OBJECTIVES, OPTIMIZERS, TRAINING
from ride_tf.model import RIDE
from ride_tf.training.callbacks import StopAt
from ride_tf.training.checkpoint import TrainingCheckpoint
from ride_tf.training.patches import as_image_list, patch_dataset, sample_patches
from ride_tf.training.schedule import default_learning_rates, make_optimizer

__all__ = ["TrainingStage", "fit_mcgsm", "fit_baseline", "validation_scores", "check_train_arguments", "train",
           "SELECTION"]

# What the best-weights selection measures its score on, in order of preference.
SELECTION = ("validation images", "held-out fine-tuning pixels", "training patches")


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
    score: float = float("nan")          # what the best-weights selection compared (larger is better) ...
    selected_on: str = ""                # ... and what it was measured on (one of `SELECTION`)


def fit_mcgsm(model, images, max_iter=TRAINING["finetune_max_iter"], num_samples=TRAINING["finetune_samples"],
              objective=None, seed=0, verbose=0, max_seconds=None):
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


def fit_baseline(model, images, max_iter=TRAINING["finetune_max_iter"], num_samples=TRAINING["finetune_samples"],
                 objective=None, seed=0, verbose=0, max_seconds=None):
    """The MCGSM baseline of `model`: a RIDE(num_layers=0) with the same neighbourhood and MCGSM size,
    whitening copied from `model` (adapted first if needed), fitted by L-BFGS (`fit_mcgsm`) on
    `images` (e.g. patches).  Returns (baseline, FinetuneResult)."""
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
    if images is None:
        return None, float("nan")
    rate = _mean_over(images, lambda im: model.log_likelihood_rate(im, seed=seed))
    code_length = float("nan")
    if objective == "discrete":
        def per_pixel(im):
            im = check_images(im, model.num_channels)
            return discrete.float_code_length_bits(model, im) / (im.shape[1] * im.shape[2] * im.shape[3])
        code_length = _mean_over(images, per_pixel)
    return rate, code_length


def check_train_arguments(model, images, *, patch_sizes, learning_rates, epochs_per_stage, num_patches, batch_size,
                          optimizer, momentum, clipnorm, finetune_max_iter, finetune_samples, patience, seed,
                          objective, baseline, baseline_max_iter, time_budget, checkpoint_dir, resume, verbose):
    """Validate `train`'s arguments (ValueError naming the argument), all but the model and images by keyword;
    returns (images as a list, learning rates, objective, settings dict of the run: what a resumed run must
    match)."""
    owner = "train"
    if not isinstance(model, RIDE):
        raise ValueError(f"train: model must be a ride_tf.RIDE, got {type(model).__name__}.")
    images = as_image_list(images, model.num_channels)
    check_choice(owner, "optimizer", optimizer, OPTIMIZERS)
    patch_sizes = list(patch_sizes)
    if len(patch_sizes) == 0:
        raise ValueError("train: patch_sizes is empty.")
    for k, size in enumerate(patch_sizes):
        check_integer(owner, f"patch_sizes[{k}]", size, 1)
    learning_rates = (default_learning_rates(optimizer, len(patch_sizes)) if learning_rates is None
                      else list(learning_rates))
    if len(learning_rates) != len(patch_sizes):
        raise ValueError(f"train: {len(patch_sizes)} patch sizes but {len(learning_rates)} learning rates.")
    for k, rate in enumerate(learning_rates):
        check_number(owner, f"learning_rates[{k}]", rate, low=0.0, low_open=True)
    for name, value in [("num_patches", num_patches), ("batch_size", batch_size),
                        ("epochs_per_stage", epochs_per_stage), ("patience", patience),
                        ("finetune_samples", finetune_samples)]:
        check_integer(owner, name, value, 1)
    check_integer(owner, "finetune_max_iter", finetune_max_iter or 0, 0)
    if baseline_max_iter is not None:
        check_integer(owner, "baseline_max_iter", baseline_max_iter, 0)
    check_integer(owner, "seed", seed, 0)
    check_number(owner, "momentum", momentum, low=0.0, high=1.0, high_open=True)
    if clipnorm is not None:
        check_number(owner, "clipnorm", clipnorm, low=0.0, low_open=True)
    check_verbose(owner, verbose)
    if num_patches < batch_size:
        raise ValueError(f"train: num_patches ({num_patches}) must be at least batch_size ({batch_size}); "
                         "a stage would have no complete batch.")
    check_bool(owner, "resume", resume)
    if resume and checkpoint_dir is None:
        raise ValueError("train: resume=True needs the checkpoint_dir of the run to resume.")
    objective = check_choice(owner, "objective", model.objective if objective is None else objective, OBJECTIVES)
    if objective == "discrete" and any(im.dtype != np.uint8 for im in images):
        raise ValueError("train: objective='discrete' needs uint8 images (the probability of 8-bit values).")
    if time_budget is not None and not (isinstance(time_budget, (int, float, np.integer, np.floating))
                                        and not isinstance(time_budget, bool)
                                        and np.isfinite(time_budget) and time_budget > 0):
        raise ValueError(f"train: time_budget must be a positive number of seconds, got {time_budget!r}.")
    if isinstance(baseline, RIDE):
        if baseline.num_layers != 0:
            raise ValueError("train: baseline must be a RIDE with num_layers=0.")
    elif baseline not in ("auto", True, False, None):
        raise ValueError(f"train: baseline must be 'auto', True, False, None or a RIDE(num_layers=0), "
                         f"got {baseline!r}.")
    settings = dict(patch_sizes=[int(p) for p in patch_sizes], learning_rates=[float(v) for v in learning_rates],
                    epochs_per_stage=int(epochs_per_stage), num_patches=int(num_patches),
                    batch_size=int(batch_size), seed=int(seed), objective=objective,
                    finetune_max_iter=int(finetune_max_iter or 0), finetune_samples=int(finetune_samples),
                    patience=int(patience), model_config=_config_for_checkpoint(model))
    return images, learning_rates, objective, settings


class _Run:
    """The state of one `train` call; its methods are the recipe's steps, in the order `train` calls them."""

    def __init__(self, model, images, validation_images, settings, *, optimizer, momentum, clipnorm, verbose,
                 callbacks, on_stage_end, baseline, baseline_max_iter, time_budget, checkpoint_dir):
        self.model, self.images, self.validation_images = model, images, validation_images
        self.settings, self.verbose = settings, verbose
        self.callbacks, self.on_stage_end = list(callbacks or []), on_stage_end
        self.baseline, self.baseline_max_iter, self.time_budget = baseline, baseline_max_iter, time_budget
        self.checkpoint = None if checkpoint_dir is None else TrainingCheckpoint(checkpoint_dir)
        self.checkpoint_dir = checkpoint_dir
        self.objective, self.seed = settings["objective"], settings["seed"]
        self.patch_sizes, self.learning_rates = settings["patch_sizes"], settings["learning_rates"]
        self.started = time.monotonic()
        self.stages, self.best_score, self.best_weights, self.since_best = [], -np.inf, None, 0
        self.base_rate, self.base_code = float("nan"), float("nan")
        self.first_stage, self.first_epoch, self.finished = 0, 0, False
        self.baseline_result = None
        self.optimizer = make_optimizer(optimizer, self.learning_rates[0], momentum, clipnorm)
        self.selected_on = (SELECTION[0] if validation_images is not None
                            else SELECTION[1] if settings["finetune_max_iter"] else SELECTION[2])

    def log(self, text):
        if self.verbose:
            print(text)

    # ------------------------------------------------------------------ start
    def restore(self):
        """Load the checkpoint of the run to resume (checking its settings); False if there is none."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return False
        state, weights, best_weights, optimizer_variables = self.checkpoint.load()
        if state.get("kind", "train") != "train":
            raise ValueError(f"train: {self.checkpoint_dir!r} holds the checkpoint of a plain `fit` "
                             "(FitCheckpoint), not of `train`; use another directory.")
        saved = state["settings"]
        different = sorted(k for k in self.settings if saved.get(k) != _jsonable_setting(self.settings[k]))
        if different:
            raise ValueError(f"train: the checkpoint in {self.checkpoint_dir!r} was written with other settings "
                             f"({', '.join(different)}); resume with the same call, or start afresh.")
        self.model.set_weights(weights)
        self.model.compile(optimizer=self.optimizer)
        self.stages = [TrainingStage(**{k: (float(v) if k in _FLOAT_FIELDS else v) for k, v in s.items()})
                       for s in state["stages"]]
        self.best_weights = best_weights
        self.best_score, self.since_best = float(state["best_rate"]), int(state["since_best"])
        self.base_rate, self.base_code = float(state["base_rate"]), float(state["base_code"])
        self.first_stage, self.first_epoch = len(self.stages), int(state["epochs_done"])
        self.finished = bool(state["finished"])
        self.started -= float(state["seconds"])
        if self.first_epoch:
            self.optimizer.build(self.model.trainable_variables)
            for variable, value in zip(self.optimizer.variables, optimizer_variables):
                variable.assign(value)
        self.log(f"resumed from {self.checkpoint_dir}: {len(self.stages)} stage(s) done"
                 + (f", {self.first_epoch} epoch(s) of stage {self.first_stage + 1}" if self.first_epoch else "")
                 + (" (the run had finished)" if self.finished else ""))
        return True

    def prepare(self):
        """Adapt the whitening (from the baseline's, or from pooled patches) and draw the fine-tuning patches."""
        model, sizes, samples = self.model, self.patch_sizes, self.settings["finetune_samples"]
        if not model.whitening.is_adapted:
            if isinstance(self.baseline, RIDE):
                model.whitening.set_weights(self.baseline.whitening.get_weights())
            else:
                pooled = sample_patches(self.images, max(sizes), max(64, samples // max(sizes) ** 2),
                                        model.num_channels, seed=self.seed)
                model.adapt(pooled, seed=self.seed)
        self.finetune_patches = sample_patches(self.images, max(sizes), max(1, math.ceil(samples / max(sizes) ** 2)),
                                               model.num_channels, seed=self.seed + 1)

    def fit_baseline(self):
        """Fit (or take) the MCGSM baseline and score it; start the model from it when its MCGSM reads the inputs."""
        model, baseline = self.model, self.baseline
        if baseline == "auto":
            baseline = model.mcgsm_reads_inputs
        if baseline is None or baseline is False:
            return
        if baseline is True:
            max_iter = TRAINING["finetune_max_iter"] if self.baseline_max_iter is None else self.baseline_max_iter
            baseline, self.baseline_result = fit_baseline(
                model, self.finetune_patches, max_iter=max_iter, num_samples=self.settings["finetune_samples"],
                objective=self.objective, seed=self.seed, verbose=self.verbose,
                max_seconds=None if self.time_budget is None else self.time_budget / 4)
            self.log(f"baseline MCGSM: {self.baseline_result.iterations} L-BFGS iterations, held-out pixels "
                     f"{self.baseline_result.validation_rate:.4f} bit/px")
        base_rate, self.base_code = validation_scores(baseline, self.validation_images, self.objective, self.seed)
        self.base_rate = float("nan") if base_rate is None else base_rate
        if model.mcgsm_reads_inputs or model.num_layers == 0:
            model.initialize_from_baseline(baseline)
            # The start is the first candidate: training can only keep improvements on the baseline.
            if self.validation_images is not None:
                rate, code = validation_scores(model, self.validation_images, self.objective, self.seed)
                score = -code if self.objective == "discrete" else rate
            else:   # the stages' score: the held-out fine-tuning pixels (the same pixels, same seed)
                score = self.baseline_result.validation_rate if self.baseline_result is not None else -np.inf
            if np.isfinite(score):
                self.best_score, self.best_weights = score, model.get_weights()
            self.log(f"started from the baseline: score {score:.4f} bit/px on the {self.selected_on}")

    # ------------------------------------------------------------------ stages
    def save(self, epochs_done=0, done=False):
        if self.checkpoint is None:
            return
        state = dict(kind="train", settings=self.settings, stages=self.stages, best_rate=self.best_score,
                     since_best=self.since_best, base_rate=self.base_rate, base_code=self.base_code,
                     epochs_done=epochs_done, finished=done, seconds=time.monotonic() - self.started)
        self.checkpoint.write(state, self.model.get_weights(), self.best_weights,
                              [v.numpy() for v in self.optimizer.variables] if epochs_done else None)

    def budget_spent(self, stage_start):
        """Whether the run's time budget is used up at `stage_start` (time.monotonic()); never without a budget."""
        return self.time_budget is not None and self.started + self.time_budget - stage_start <= 0

    def stage_deadline(self, stage, stage_start):
        """When the stage must end (time.monotonic()): an equal share of what remains of the budget for each stage
        left; None without a budget.  Call it only while the budget is not spent (`budget_spent`)."""
        if self.time_budget is None:
            return None
        remaining = self.started + self.time_budget - stage_start
        return stage_start + remaining / (len(self.patch_sizes) - stage)

    def reset_optimizer(self, learning_rate, resumed_epochs):
        # Momentum carried over from a larger learning rate would undo the L-BFGS
        # fine-tuning in the first steps of the next stage: start every stage at rest.
        self.optimizer.learning_rate.assign(learning_rate)
        for slot in self.optimizer.variables if self.optimizer.built and not resumed_epochs else []:
            if not slot.path.endswith("learning_rate"):      # momenta, Adam's moments, iteration count
                slot.assign(tf.zeros_like(slot))

    def fit_stage(self, stage, patch_size, resumed_epochs, stage_start, deadline):
        """Fit, fine-tune and score one stage: (train rate, fine-tuning rate, validation rate or None, code length)."""
        model, settings = self.model, self.settings
        epochs, finetune_max_iter = settings["epochs_per_stage"], settings["finetune_max_iter"]
        ds = patch_dataset(self.images, patch_size, settings["num_patches"], settings["batch_size"],
                           model.num_channels, seed=self.seed + 100 + stage)
        fit_callbacks = list(self.callbacks)
        if deadline is not None:
            fit_callbacks.append(StopAt(stage_start + (0.75 if finetune_max_iter else 1.0) * (deadline - stage_start)))
        if self.checkpoint is not None and epochs > 1:
            fit_callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: self.save(epochs_done=epoch + 1) if epoch + 1 < epochs else None))
        # The patches are shuffled by the pipeline (seeded); shuffle=False says so to Keras.
        history = model.fit(ds, epochs=epochs, initial_epoch=resumed_epochs, verbose=self.verbose,
                            callbacks=fit_callbacks, shuffle=False)
        train_rate = float(history.history["bits_per_pixel"][-1])
        finetune_rate = float("nan")
        if finetune_max_iter:
            max_seconds = None if deadline is None else max(0.0, deadline - time.monotonic())
            # NaN hidden states after a diverged fit raise NonFiniteError here.
            result = model.finetune(self.finetune_patches, max_iter=finetune_max_iter,
                                    num_samples=settings["finetune_samples"], seed=self.seed,
                                    verbose=self.verbose, objective=self.objective, max_seconds=max_seconds)
            finetune_rate = result.validation_rate
        bad = model.non_finite_weights()
        if bad:
            raise NonFiniteError(f"the weights became non-finite ({', '.join(bad[:3])})")
        validation, code_length = validation_scores(model, self.validation_images, self.objective, self.seed)
        return train_rate, finetune_rate, validation, code_length

    def score(self, train_rate, finetune_rate, validation, code_length):
        """The selection score of a stage (larger is better): on `self.selected_on`."""
        if self.selected_on == SELECTION[0]:
            return -code_length if self.objective == "discrete" else validation
        return finetune_rate if self.selected_on == SELECTION[1] else train_rate

    def run_stage(self, stage, patch_size, learning_rate, stage_start, deadline):
        """One stage: fit, fine-tune, score (rolled back if non-finite), select, checkpoint, report; the stage."""
        model = self.model
        resumed_epochs = self.first_epoch if stage == self.first_stage else 0
        self.reset_optimizer(learning_rate, resumed_epochs)
        good_weights = model.get_weights()                    # what a failed stage is rolled back to
        self.log(f"stage {stage + 1}/{len(self.patch_sizes)}: patches {patch_size}x{patch_size}, "
                 f"learning rate {learning_rate:.3g}")
        error = ""
        try:
            train_rate, finetune_rate, validation, code_length = self.fit_stage(stage, patch_size, resumed_epochs,
                                                                                stage_start, deadline)
        except NonFiniteError as failure:        # a non-finite loss (NonFiniteLossError), weights, states or rates
            error = str(failure).strip().splitlines()[0][:300]
            model.set_weights(good_weights)
            train_rate = finetune_rate = code_length = float("nan")
            validation = None if self.validation_images is None else float("nan")
            self.log(f"stage {stage + 1}: non-finite values ({error}); rolled back to the weights the stage "
                     "started from")
        score = self.score(train_rate, finetune_rate, validation, code_length)
        kept = bool(np.isfinite(score) and score > self.best_score)
        if kept:
            self.best_score, self.best_weights, self.since_best = score, model.get_weights(), 0
        else:
            self.since_best += 1
        result = TrainingStage(stage, patch_size, float(learning_rate), train_rate, finetune_rate,
                               float("nan") if validation is None else validation, kept,
                               baseline_validation_rate=self.base_rate, validation_code_length=code_length,
                               baseline_validation_code_length=self.base_code,
                               seconds=time.monotonic() - self.started, rolled_back=bool(error), error=error,
                               score=float(score), selected_on=self.selected_on)
        self.stages.append(result)
        self.save(done=self.since_best >= self.settings["patience"] or stage == len(self.patch_sizes) - 1)
        self.report(result)
        if self.on_stage_end is not None:
            self.on_stage_end(model, result)
        return result

    def report(self, stage):
        parts = [f"stage {stage.stage + 1}: train {stage.train_rate:.4f}"]
        if np.isfinite(stage.finetune_rate):
            parts.append(f"fine-tuned (held-out pixels) {stage.finetune_rate:.4f}")
        if self.validation_images is not None:
            parts.append(f"validation {stage.validation_rate:.4f}")
            if np.isfinite(self.base_rate):
                parts[-1] += f" (baseline {self.base_rate:.4f})"
        line = ", ".join(parts) + " bit/px"
        if self.objective == "discrete" and self.validation_images is not None:
            line += (f"; validation code length {stage.validation_code_length:.4f} bit/px "
                     f"(baseline {self.base_code:.4f})")
        line += f"; selection score {stage.score:.4f} on the {stage.selected_on}" + (" (best so far)" if stage.kept else "")
        self.log(line)

    def select(self):
        """Put the best candidate's weights in the model (or warn that none was finite)."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        elif self.stages:
            warnings.warn("train: no stage improved on the start (every stage was rolled back or had a non-finite "
                          "score); the model keeps its last finite weights.", RuntimeWarning, stacklevel=3)


def train(model, images, validation_images=None, patch_sizes=TRAINING["patch_sizes"], learning_rates=None,
          epochs_per_stage=TRAINING["epochs_per_stage"], num_patches=TRAINING["num_patches"],
          batch_size=TRAINING["batch_size"], optimizer=TRAINING["optimizer"], momentum=TRAINING["momentum"],
          clipnorm=TRAINING["clipnorm"], finetune_max_iter=TRAINING["finetune_max_iter"],
          finetune_samples=TRAINING["finetune_samples"], patience=TRAINING["patience"], seed=TRAINING["seed"],
          verbose=1, callbacks=None, on_stage_end=None, objective=None, baseline="auto", baseline_max_iter=None,
          time_budget=None, checkpoint_dir=None, resume=False):
    """Train `model` (a `ride_tf.RIDE`) with the paper's recipe; returns the list of `TrainingStage`s.

    Stage s: `epochs_per_stage` epochs of `optimizer` (default Adam, see
    `ride_tf.defaults`; "sgd" is the paper's SGD with momentum 0.9), batch
    50, learning rate `learning_rates[s]` (default decreasing geometrically
    over the stages from `ride_tf.defaults.LEARNING_RATES`: Adam 3e-3 to
    1e-4, SGD 0.1 to 1e-3), on `num_patches` random flipped patches of size
    `patch_sizes[s]`; then L-BFGS fine-tuning of the MCGSM (up to
    `finetune_max_iter` iterations) on a fixed sample of pixels; then the
    stage's score.  Early stopping: when the score has not improved for
    `patience` stages, training stops; the best candidate's weights are
    restored at the end in any case.  `clipnorm` bounds each gradient's norm
    (None disables it).  The conditional whitening is adapted first if the
    model has not been.  The score (`TrainingStage.score`, `selected_on`) is
    the density rate of `validation_images` (minus their exact code length
    with objective="discrete"); without validation images, the rate on the
    held-out fine-tuning pixels; when fine-tuning is off, the training rate.
    `callbacks` are passed to every stage's `fit`; `on_stage_end(model,
    stage)` is called with each finished `TrainingStage`.

    objective: "density" (the paper's: log-density of dequantized pixels) or
      "discrete" (the exact log-probability of the 8-bit values: Keras fit on
      `RIDE(objective="discrete")`'s loss, the exact code length, and discrete
      L-BFGS fine-tuning; the images must be uint8).  Default: the model's
      objective (the model's `objective` is set to it).
    baseline: the MCGSM baseline (`fit_baseline`, a num_layers=0 RIDE of the
      same neighbourhood and MCGSM size, fitted by L-BFGS for up to
      `baseline_max_iter` iterations, default 500 as the paper's MCGSM, with
      early stopping, on the fine-tuning pixels, on the same objective; with a
      `time_budget`, for at most a quarter of it) is fitted first and its
      validation numbers are reported at every stage.  When the model's MCGSM
      reads the inputs (`skip_inputs=True`, the default), the model starts from the
      baseline (`RIDE.initialize_from_baseline`), and that start is the first
      candidate of the best-weights selection, so the result is never worse
      than the baseline on the selection's data.  "auto" (default): only for
      models with `skip_inputs=True`; True: always (the paper's architecture
      gets the report only); False or None: no baseline; or a fitted
      `RIDE(num_layers=0)` to use.
    checkpoint_dir: a directory where the run's state is written after every
      epoch and every stage (`ride_tf.training.checkpoint`: weights, best
      weights, optimizer variables, finished stages, early-stopping state), atomically.
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
    images, learning_rates, objective, settings = check_train_arguments(
        model, images, patch_sizes=patch_sizes, learning_rates=learning_rates, epochs_per_stage=epochs_per_stage,
        num_patches=num_patches, batch_size=batch_size, optimizer=optimizer, momentum=momentum, clipnorm=clipnorm,
        finetune_max_iter=finetune_max_iter, finetune_samples=finetune_samples, patience=patience, seed=seed,
        objective=objective, baseline=baseline, baseline_max_iter=baseline_max_iter, time_budget=time_budget,
        checkpoint_dir=checkpoint_dir, resume=resume, verbose=verbose)
    model.objective = objective
    run = _Run(model, images, validation_images, settings, optimizer=optimizer, momentum=momentum,
               clipnorm=clipnorm, verbose=verbose, callbacks=callbacks, on_stage_end=on_stage_end,
               baseline=baseline, baseline_max_iter=baseline_max_iter, time_budget=time_budget,
               checkpoint_dir=checkpoint_dir)
    resumed = resume and run.restore()
    run.prepare()
    if not resumed:
        run.fit_baseline()
        model.compile(optimizer=run.optimizer)
    stage_start = time.monotonic()
    for stage, (patch_size, learning_rate) in enumerate(zip(run.patch_sizes, learning_rates)):
        if run.finished or stage < run.first_stage:
            continue
        if run.budget_spent(stage_start):
            break
        run.run_stage(stage, patch_size, learning_rate, stage_start, run.stage_deadline(stage, stage_start))
        stage_start = time.monotonic()
        if run.since_best >= settings["patience"]:
            run.log(f"early stopping after stage {stage + 1}")
            break
    run.select()
    return run.stages


_FLOAT_FIELDS = {f.name for f in dataclasses.fields(TrainingStage) if f.type in (float, "float")}


def _config_for_checkpoint(model):
    config = dict(model.get_config())
    config.pop("name", None)
    config.pop("trainable", None)
    config.pop("dtype", None)
    return _jsonable_setting(config)


def _jsonable_setting(value):
    return json.loads(json.dumps(value, default=str))
