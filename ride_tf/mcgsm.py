"""The MCGSM layer: moved to `ride_tf.nn.mcgsm`; this module keeps the old import path working."""
from ride_tf.nn.mcgsm import (  # noqa: F401
    MCGSM, MAX_LOG_SCALE, IntensityMixture)

__all__ = ["MCGSM", "MAX_LOG_SCALE", "IntensityMixture"]
