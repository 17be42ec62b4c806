"""The building blocks of RIDE as Keras layers (paper eqs. 3-7).

    whitening       `ConditionalWhitening`: x^, y^ of (neighbourhood, pixel) pairs (eq. 7)
    spatial_lstm    `SpatialLSTMCell` (eq. 6 and its stable form) and `SpatialLSTM`, which runs it over an image
    mcgsm           `MCGSM`, the factorized mixture of conditional Gaussian scale mixtures (eqs. 3-5)
    distributions   `MCGSMDistribution`, the MCGSM's conditional distribution of a pixel (TFP)
"""
from ride_tf.lazy_imports import lazy_exports

_EXPORTS = {
    "ConditionalWhitening": "ride_tf.nn.whitening", "NotAdaptedError": "ride_tf.nn.whitening",
    "SpatialLSTM": "ride_tf.nn.spatial_lstm", "SpatialLSTMCell": "ride_tf.nn.spatial_lstm",
    "MCGSM": "ride_tf.nn.mcgsm", "MCGSMDistribution": "ride_tf.nn.distributions",
    **{name: f"ride_tf.nn.{name}" for name in ("whitening", "spatial_lstm", "mcgsm", "distributions")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
