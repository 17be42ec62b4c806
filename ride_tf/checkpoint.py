"""The state of a training run on disk, so that a killed run resumes where it was (`train(..., resume=True)`).

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

import numpy as np

from ride_tf.io import atomic_write_bytes, atomic_write_json

__all__ = ["TrainingCheckpoint", "CHECKPOINT_VERSION"]

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
