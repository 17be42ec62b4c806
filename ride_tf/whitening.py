"""The conditional whitening: moved to `ride_tf.nn.whitening`; this module keeps the old import path working."""
from ride_tf.nn.whitening import ConditionalWhitening, NotAdaptedError, MIN_RESIDUAL_VARIANCE  # noqa: F401

__all__ = ["ConditionalWhitening", "NotAdaptedError", "MIN_RESIDUAL_VARIANCE"]
