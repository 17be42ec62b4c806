"""ride_tf: RIDE, the recurrent image density estimator (Theis & Bethge, NIPS 2015), in TensorFlow/Keras.

Modules, bottom to top:
  datasets, preprocessing, neighbourhoods, whitening   data and the paper's data protocol
  distributions, mcgsm, spatial_lstm                   the building blocks (eqs. 3-7)
  geometry                                             padding, wavefronts, the eight dihedral maps
  model                                                `RIDE` (and its MCGSM baseline)
  sampling, inpainting, ensemble                       wavefront sampling, inpainting, ensembles (8 rotations/flips)
  finetune, training, cli                              L-BFGS fine-tuning, the training recipe, `ride-tf`
  wavefront, discrete, codec                           exact compressed sizes and the lossless codec
  export                                               SavedModel export for TF Serving
  pretrained                                           shipped trained models: `ride_tf.pretrained("gray")`
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ride_tf import codec, datasets, discrete, geometry, pretrained, training  # noqa: E402
from ride_tf.codec import CodecError, compress, decompress  # noqa: E402
from ride_tf.discrete import compressed_size_bits  # noqa: E402
from ride_tf.ensemble import ensemble_log_likelihood_rate, ensemble_log_prob  # noqa: E402
from ride_tf.distributions import MCGSMDistribution  # noqa: E402
from ride_tf.export import export_saved_model  # noqa: E402
from ride_tf.finetune import FinetuneResult, finetune_mcgsm  # noqa: E402
from ride_tf.mcgsm import MCGSM  # noqa: E402
from ride_tf.model import RIDE  # noqa: E402
from ride_tf.spatial_lstm import SpatialLSTM  # noqa: E402
from ride_tf.whitening import ConditionalWhitening  # noqa: E402

__version__ = "0.1.0"
__all__ = ["RIDE", "MCGSM", "MCGSMDistribution", "SpatialLSTM", "ConditionalWhitening",
           "finetune_mcgsm", "FinetuneResult", "datasets", "geometry", "pretrained", "training",
           "ensemble_log_likelihood_rate", "ensemble_log_prob", "export_saved_model",
           "codec", "discrete", "compress", "decompress", "CodecError", "compressed_size_bits"]
