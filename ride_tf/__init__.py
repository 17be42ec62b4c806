"""ride_tf: RIDE, the recurrent image density estimator (Theis & Bethge, NIPS 2015), in TensorFlow/Keras.

Importing the package is cheap and has no side effects: the names below are
imported on first use (``ride_tf.RIDE``, ``from ride_tf import RIDE``), so the
command line answers ``--help`` without starting TensorFlow, and the codec
(`ride_tf.codec`) runs without it.  Model files (``.keras``) load with
`ride_tf.load_model`, or with ``keras.models.load_model`` once
`ride_tf.model` is imported (its classes register with Keras then, as any
Keras custom class does).  The command line and the examples filter
TensorFlow's start-up lines in their own entry points (`ride_tf.runtime`).

Layers, bottom to top (docs/architecture.md):
  checks, defaults, lazy_imports, runtime, io     no TensorFlow
  data                                            data sets, image files, streaming
  quantization, geometry, preprocessing,          the data protocol, pixel geometry
  neighbourhoods
  nn                                              whitening, spatial LSTM, MCGSM (eqs. 3-7)
  model, evaluation                               `RIDE` and its NumPy-facing maps and rates
  wavefront, discrete, ensemble                   sampling, inpainting, exact sizes, ensembles
  training, codec, export, pretrained             the recipe, the lossless codec, SavedModels, shipped models
  cli                                             `ride-tf`
"""
from ride_tf.lazy_imports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "RIDE": "ride_tf.model",
    "load_model": "ride_tf.model",
    "MCGSM": "ride_tf.nn.mcgsm",
    "MCGSMDistribution": "ride_tf.nn.distributions",
    "SpatialLSTM": "ride_tf.nn.spatial_lstm",
    "SpatialLSTMCell": "ride_tf.nn.spatial_lstm",
    "ConditionalWhitening": "ride_tf.nn.whitening",
    "finetune_mcgsm": "ride_tf.training.finetune",
    "FinetuneResult": "ride_tf.training.finetune",
    "ensemble_log_likelihood_rate": "ride_tf.ensemble",
    "ensemble_log_prob": "ride_tf.ensemble",
    "export_saved_model": "ride_tf.export",
    "compress": "ride_tf.codec.api",
    "compress_best": "ride_tf.codec.api",
    "compress_palette": "ride_tf.codec.api",
    "decompress": "ride_tf.codec.api",
    "CodecError": "ride_tf.codec.format",
    "compressed_size_bits": "ride_tf.codec.api",
    **{name: f"ride_tf.{name}" for name in (
        "checks", "codec", "data", "defaults", "discrete", "ensemble", "evaluation", "export",
        "geometry", "io", "nn", "pretrained", "quantization", "training", "wavefront")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
