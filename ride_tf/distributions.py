"""The MCGSM's distribution: moved to `ride_tf.nn.distributions`; this module keeps the old import path working."""
from ride_tf.nn.distributions import MCGSMDistribution  # noqa: F401

__all__ = ["MCGSMDistribution"]
