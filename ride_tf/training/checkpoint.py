"""The state of a training run on disk, so that a killed run resumes where it was.

Two users: `ride_tf.training.train(..., checkpoint_dir=, resume=True)` (the
recipe) and `FitCheckpoint`, a Keras callback that makes a plain `model.fit`
resumable (with or without the project's `PatchCurriculum` and
`FinetuneMCGSM` callbacks).

A checkpoint directory holds

    state.json              what the run has done: settings, finished stages
                            (`TrainingStage`s), best score, early-stopping
                            counter, baseline numbers, the stage in progress
                            and how many of its epochs are done
    weights-<n>.npz         the model's weights (whitening included), the best
                            weights so far and the optimizer's variables

Every write goes through a temporary name and a rename (`ride_tf.io`): the
weights file of generation n first, then state.json naming it, then the
previous generation's weights are removed.  A process killed at any moment
leaves a state.json that names a complete weights file.
"""
import dataclasses
import io
import json
import os
import shutil

import keras
import numpy as np

from ride_tf.checks import check_verbose
from ride_tf.io import atomic_write_bytes, atomic_write_json

__all__ = ["TrainingCheckpoint", "FitCheckpoint", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


class TrainingCheckpoint:
    """A directory with the state of one `ride_tf.training.train` run."""

    def __init__(self, directory):
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"TrainingCheckpoint: directory must be a path, got {type(directory).__name__}.")
        self.directory = os.fspath(directory)
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"TrainingCheckpoint: {self.directory!r} exists and is not a directory.")
        self.state_path = os.path.join(self.directory, "state.json")

    def exists(self):
        return os.path.isfile(self.state_path)

    def write(self, state, model_weights, best_weights=None, optimizer_variables=None):
        """Write one generation: the arrays first, then state.json (a dict of JSON values) naming them."""
        os.makedirs(self.directory, exist_ok=True)
        previous = self._read_state().get("weights_file") if self.exists() else None
        generation = int(self._read_state().get("generation", 0)) + 1 if self.exists() else 1
        arrays = {f"model_{k}": np.asarray(w) for k, w in enumerate(model_weights)}
        arrays.update({f"best_{k}": np.asarray(w) for k, w in enumerate(best_weights or [])})
        arrays.update({f"optimizer_{k}": np.asarray(w) for k, w in enumerate(optimizer_variables or [])})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        weights_file = f"weights-{generation}.npz"
        atomic_write_bytes(os.path.join(self.directory, weights_file), buffer.getvalue())
        state = dict(state, version=CHECKPOINT_VERSION, generation=generation, weights_file=weights_file,
                     num_model_weights=len(model_weights), num_best_weights=len(best_weights or []),
                     num_optimizer_variables=len(optimizer_variables or []))
        atomic_write_json(self.state_path, _jsonable(state))
        if previous and previous != weights_file:
            try:
                os.remove(os.path.join(self.directory, previous))
            except FileNotFoundError:
                pass

    def _read_state(self):
        try:
            with open(self.state_path) as stream:
                return json.load(stream)
        except (OSError, ValueError) as error:
            raise ValueError(f"TrainingCheckpoint: cannot read {self.state_path} ({error}).") from None

    def load(self):
        """(state dict, model weights, best weights or None, optimizer variables); ValueError if damaged."""
        state = self._read_state()
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"TrainingCheckpoint: {self.state_path} has version {state.get('version')!r}, "
                             f"this ride-tf reads version {CHECKPOINT_VERSION}.")
        path = os.path.join(self.directory, state["weights_file"])
        try:
            with np.load(path) as arrays:
                model = [arrays[f"model_{k}"] for k in range(state["num_model_weights"])]
                best = [arrays[f"best_{k}"] for k in range(state["num_best_weights"])]
                optimizer = [arrays[f"optimizer_{k}"] for k in range(state["num_optimizer_variables"])]
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"TrainingCheckpoint: the weights file {path} is missing or damaged ({error}).") from None
        return state, model, best or None, optimizer


class FitCheckpoint(keras.callbacks.Callback):
    """Resumable `model.fit`: the training state after every epoch, written atomically, restored on the next run.

        checkpoint = FitCheckpoint("runs/fit-checkpoint")
        curriculum = PatchCurriculum(images, patch_sizes=(8, 12, 16, 22))
        model.fit(curriculum.dataset(), epochs=4,
                  callbacks=[curriculum, FinetuneMCGSM(patches), checkpoint])
        # Killed (even by SIGKILL)?  Run the same lines again: fit continues
        # after the last finished epoch.

    What is saved (`TrainingCheckpoint`, one generation per save): the
    model's weights (whitening and its `adapted` flag included), the
    optimizer's variables (step count, learning rate, moments) and the
    number of finished epochs, with the logs of every epoch so far
    (`history`, which spans the interrupted runs too).  A run resumed by
    `fit` starts at the first unfinished epoch; `PatchCurriculum` then picks
    that epoch's patch size and learning rate, and its patches and flips,
    the fine-tuning sample of `FinetuneMCGSM` and RIDE's dequantization
    noise in `fit` (seeded by the optimizer's step count) are the ones the
    uninterrupted run drew.  So at most one epoch of work is lost, and the
    result is the uninterrupted run's up to multithreaded float32 round-off.

    The state of an epoch is written when the next epoch begins, after every
    callback's `on_epoch_end` (the MCGSM fine-tuning included), whatever the
    order of the callbacks, and when training ends.  A finished run's
    checkpoint stays (unless `delete_on_end`), so running the same script
    again changes nothing.  The state of other callbacks (e.g. the counters
    of `keras.callbacks.EarlyStopping`) is not saved.

    Args:
      directory: where the checkpoint lives (created; one run per directory).
      delete_on_end: remove the checkpoint when `fit` returns normally.
      verbose: 1 prints a line when a run is resumed.
    """

    def __init__(self, directory, delete_on_end=False, verbose=1):
        super().__init__()
        self.checkpoint = TrainingCheckpoint(directory)
        if not isinstance(delete_on_end, (bool, np.bool_)):
            raise TypeError(f"FitCheckpoint: delete_on_end must be a bool, got {delete_on_end!r}.")
        self.delete_on_end, self.verbose = bool(delete_on_end), check_verbose("FitCheckpoint", verbose, (0, 1))
        self.history = {}
        self._first_epoch = self._epochs_done = 0
        self._logs = None             # the last finished epoch's logs, not yet in `history`
        self._restored = False        # set by `restore_for_fit`, at the start of every fit

    @property
    def directory(self):
        return self.checkpoint.directory

    def restore_for_fit(self, model):
        """Load the checkpoint, if any, into `model` and return the number of finished epochs (0 without one).

        `RIDE.fit` calls this before Keras's fit starts and passes the result
        as `initial_epoch`, so the resumed run starts at the first unfinished
        epoch.  Restores the weights, the optimizer's variables (the model must
        be compiled) and the history; refuses checkpoints of `train`, of other
        models and of other optimizers (ValueError).
        """
        self.history, self._first_epoch, self._epochs_done, self._logs = {}, 0, 0, None
        self._restored = True
        if not self.checkpoint.exists():
            return 0
        state, weights, _, optimizer_values = self.checkpoint.load()
        if state.get("kind") != "fit":
            raise ValueError(f"FitCheckpoint: {self.directory!r} holds the checkpoint of a `train` run, "
                             "not of `fit`; use another directory.")
        own = model.get_weights()
        if [tuple(w.shape) for w in own] != [tuple(np.shape(w)) for w in weights]:
            raise ValueError(f"FitCheckpoint: the checkpoint in {self.directory!r} holds {len(weights)} weights "
                             f"of other shapes than this model's {len(own)}; it was written by another model.")
        optimizer = model.optimizer
        if optimizer_values:
            if optimizer is None:
                raise ValueError("FitCheckpoint: compile the model (with the optimizer of the interrupted run) "
                                 "before fit.")
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            if [tuple(v.shape) for v in optimizer.variables] != [tuple(np.shape(v)) for v in optimizer_values]:
                raise ValueError(f"FitCheckpoint: the checkpoint in {self.directory!r} holds the state of another "
                                 f"optimizer than {type(optimizer).__name__}; compile the model as before.")
        model.set_weights(weights)
        for variable, value in zip(optimizer.variables if optimizer_values else [], optimizer_values):
            variable.assign(value)
        self.history = {k: [float(x) for x in v] for k, v in state.get("history", {}).items()}
        self._first_epoch = self._epochs_done = int(state["epochs_done"])
        if self.verbose:
            print(f"FitCheckpoint: resumed from {self.directory} after {self._first_epoch} finished epoch(s)")
        return self._first_epoch

    def on_train_begin(self, logs=None):
        if not self._restored:
            raise ValueError("FitCheckpoint: the model's fit did not restore the checkpoint; use it with a "
                             "ride_tf.RIDE, whose fit passes the resumed epoch to Keras.")

    def on_epoch_begin(self, epoch, logs=None):
        if epoch > self._first_epoch:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done = epoch + 1
        self._logs = logs             # the same dict later callbacks add to; read when saved

    def on_train_end(self, logs=None):
        self._restored = False
        if self._epochs_done > self._first_epoch:
            self._save()
        if self.delete_on_end:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _save(self):
        if self._logs is not None:
            for name, value in self._logs.items():
                value = np.asarray(value, np.float64)
                if value.size == 1:
                    self.history.setdefault(name, []).append(float(value.reshape(())))
            self._logs = None
        optimizer = self.model.optimizer
        values = [v.numpy() for v in optimizer.variables] if optimizer is not None and optimizer.built else []
        self.checkpoint.write(dict(kind="fit", epochs_done=self._epochs_done, history=self.history),
                              self.model.get_weights(), optimizer_variables=values)


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else str(value)      # NaN and inf as strings, restored by float()
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value
