"""The spatial LSTM: moved to `ride_tf.nn.spatial_lstm`; this module keeps the old import path working."""
from ride_tf.nn.spatial_lstm import (  # noqa: F401
    SpatialLSTM, SpatialLSTMCell, CELLS, DEFAULT_FORGET_BIAS, LEGACY_CELL, GATES)

__all__ = ["SpatialLSTM", "SpatialLSTMCell", "CELLS", "DEFAULT_FORGET_BIAS", "LEGACY_CELL", "GATES"]
