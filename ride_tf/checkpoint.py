"""Training checkpoints: moved to `ride_tf.training.checkpoint`; this module keeps the old import path working."""
from ride_tf.training.checkpoint import TrainingCheckpoint, FitCheckpoint, CHECKPOINT_VERSION  # noqa: F401

__all__ = ["TrainingCheckpoint", "FitCheckpoint", "CHECKPOINT_VERSION"]
