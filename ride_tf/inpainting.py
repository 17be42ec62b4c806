"""Inpainting: moved to `ride_tf.wavefront.inpainting`; this module keeps the old import path working."""
from ride_tf.wavefront.inpainting import (  # noqa: F401
    inpaint, block_grid, block_windows, block_schedule, FLIPS, MAX_GROUP)

__all__ = ["inpaint", "block_grid", "block_windows", "block_schedule", "FLIPS", "MAX_GROUP"]
