"""ride_tf: RIDE, the recurrent image density estimator (Theis & Bethge, NIPS 2015), in TensorFlow/Keras.

Importing the package is cheap: the names below are imported on first use
(``ride_tf.RIDE``, ``from ride_tf import RIDE``), so the command line answers
``--help`` without starting TensorFlow, and TensorFlow's start-up lines are
filtered (`ride_tf.runtime`).  Model files (``.keras``) load with
`ride_tf.load_model` or ``keras.models.load_model`` (the classes register
with Keras when Keras is imported, `ride_tf.runtime.register_models_with_keras`).

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
import os

from ride_tf.lazy_imports import lazy_exports
from ride_tf.runtime import quiet_tensorflow_import, register_models_with_keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
quiet_tensorflow_import()

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
    "compressed_size_bits": "ride_tf.discrete",
    **{name: f"ride_tf.{name}" for name in (
        "checks", "codec", "data", "datasets", "defaults", "discrete", "ensemble", "evaluation", "export",
        "geometry", "io", "nn", "pretrained", "quantization", "training", "wavefront")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
register_models_with_keras()
