"""RIDE, the recurrent image density estimator (paper section 2.3), and its MCGSM baseline.

    p(x) = prod_ij p(x_ij | x_<ij),     p(x_ij | x_<ij) = MCGSM(y^_ij | h_ij) |det W|

Pipeline for every modelled pixel ij (see `ride_tf.neighbourhoods` for which
pixels those are):

    causal neighbourhood x_ij, pixel y_ij
      -> conditional whitening (x^_ij, y^_ij)                      (eq. 7)
      -> L stacked spatial LSTMs over the grid of x^: h_ij          (eq. 6)
      -> factorized MCGSM p(y^_ij | h_ij) + log|det W|              (eqs. 3-5)

With num_layers = 0 the MCGSM conditions on x^_ij directly: the paper's MCGSM
image model.  Because every LSTM state h_ij depends only on neighbourhoods of
pixels (i', j') with i' <= i and j' <= j, the likelihood of pixel ij depends
only on pixels before it in raster order.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from ride_tf.mcgsm import MCGSM
from ride_tf.neighbourhoods import extract_neighbourhoods, num_inputs
from ride_tf.preprocessing import check_images, dequantize, prepare_images
from ride_tf.spatial_lstm import SpatialLSTM
from ride_tf.whitening import ConditionalWhitening

__all__ = ["RIDE"]

# Pixels evaluated per graph call by the NumPy-facing methods (bounds memory).
_PIXELS_PER_BATCH = 1 << 17


@keras.saving.register_keras_serializable(package="ride_tf")
class RIDE(keras.Model):
    """Recurrent image density estimator.

    Args:
      num_channels: channels per pixel (1 grayscale, 3 colour: a joint
        3-dimensional MCGSM; rates are per pixel and channel).
      num_hiddens: units of each spatial LSTM.
      num_layers: number of stacked spatial LSTMs; 0 gives the MCGSM image model.
      num_components, num_scales, num_features: the MCGSM's C, S and F.
      nb_size: odd width of the causal neighbourhood (5 gives 12 inputs/channel).
      extended: spatial LSTMs also read the neighbouring memory cells.

    Inputs everywhere: uint8 images (dequantized with uniform noise, see
    `ride_tf.preprocessing`) or floats in [0, 1]; [N, H, W, C] or [N, H, W].
    `call(images)` returns the per-pixel log-likelihood map in nats
    [N, H - r, W - 2r] for float (or uint8, dequantized in-graph) tensors; Keras
    `fit`/`evaluate` minimise/report the negative log-likelihood in bit/px and
    report `bits_per_pixel`, the log-likelihood rate (the paper's number,
    larger is better).
    """

    def __init__(self, num_channels=1, num_hiddens=64, num_layers=1, num_components=32, num_scales=4,
                 num_features=32, nb_size=5, extended=False, **kwargs):
        super().__init__(**kwargs)
        for name, value, low in [("num_channels", num_channels, 1), ("num_hiddens", num_hiddens, 1),
                                 ("num_layers", num_layers, 0), ("num_components", num_components, 1),
                                 ("num_scales", num_scales, 1), ("nb_size", nb_size, 3)]:
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"RIDE: {name} must be an integer >= {low}, got {value!r}.")
        if nb_size % 2 == 0:
            raise ValueError(f"RIDE: nb_size must be odd, got {nb_size}.")
        self.num_channels = int(num_channels)
        self.num_hiddens = int(num_hiddens)
        self.num_layers = int(num_layers)
        self.num_components = int(num_components)
        self.num_scales = int(num_scales)
        self.num_features = None if num_features is None else int(num_features)
        self.nb_size = int(nb_size)
        self.extended = bool(extended)

        self.whitening = ConditionalWhitening(name="whitening")
        self.slstms = [SpatialLSTM(self.num_hiddens, extended=self.extended, name=f"spatial_lstm_{l}")
                       for l in range(self.num_layers)]
        self.mcgsm = MCGSM(self.num_components, self.num_scales, self.num_features,
                           dim_out=self.num_channels, name="mcgsm")
        self.bits_per_pixel_tracker = keras.metrics.Mean(name="bits_per_pixel")
        self._graph_functions = {}
        self.build((None, None, None, self.num_channels))

    # ----------------------------------------------------------------- Keras
    def build(self, input_shape):
        dim_in = num_inputs(self.nb_size, self.num_channels)
        self.whitening.build((None, dim_in), (None, self.num_channels))
        for lstm in self.slstms:
            lstm.build((None, None, None, dim_in))
            dim_in = self.num_hiddens
        self.mcgsm.build((None, dim_in))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(num_channels=self.num_channels, num_hiddens=self.num_hiddens,
                      num_layers=self.num_layers, num_components=self.num_components,
                      num_scales=self.num_scales, num_features=self.num_features,
                      nb_size=self.nb_size, extended=self.extended)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def radius(self):
        return self.nb_size // 2

    def whitened_pairs(self, images):
        """images [N, H, W, C] float -> (x^ [N, H', W', Dx], y^ [N, H', W', C])."""
        inputs, outputs = extract_neighbourhoods(images, self.nb_size)
        return self.whitening(inputs, outputs)

    def hidden_states(self, x_hat):
        """The MCGSM's inputs: the top spatial LSTM's states, or x^ itself when num_layers = 0."""
        h = x_hat
        for lstm in self.slstms:
            h = lstm(h)
        return h

    def conditional_distribution(self, h):
        """The MCGSM's distribution of the whitened pixels y^ given the hidden states."""
        return self.mcgsm(h)

    def call(self, images, training=False):
        """Per-pixel log-likelihood map in nats, [N, H - r, W - 2r]."""
        images = tf.convert_to_tensor(images)
        if images.dtype == tf.uint8:
            images = dequantize(images)
        images = tf.cast(images, self.compute_dtype)
        x_hat, y_hat = self.whitened_pairs(images)
        log_prob = self.conditional_distribution(self.hidden_states(x_hat)).log_prob(y_hat)
        return log_prob + tf.cast(self.whitening.log_det_jacobian, log_prob.dtype)

    def rate_from_log_prob_map(self, log_prob_map):
        """[N, H', W'] nats -> [N] log-likelihood rate in bit per pixel (and channel)."""
        return tf.reduce_mean(log_prob_map, axis=[1, 2]) / (self.num_channels * math.log(2.0))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Negative log-likelihood in bit/px, averaged over the (per-replica) batch.

        Divided by the number of replicas under a distribution strategy, so that
        the summed gradients are those of the global mean.
        """
        loss = -tf.reduce_mean(self.rate_from_log_prob_map(y_pred))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.bits_per_pixel_tracker.update_state(self.rate_from_log_prob_map(y_pred))
        return self.get_metrics_result()

    # ------------------------------------------------------- NumPy-facing API
    def _graph(self, name, fn):
        """One traced tf.function per method, for any batch and image size."""
        if name not in self._graph_functions:
            spec = tf.TensorSpec([None, None, None, self.num_channels], tf.float32)
            self._graph_functions[name] = tf.function(fn, input_signature=[spec], reduce_retracing=True)
        return self._graph_functions[name]

    def _batches(self, images, noise, seed):
        """Validated, dequantized images as memory-bounded batches (views), and their number of modelled pixels."""
        images = prepare_images(images, self.num_channels, self.nb_size, noise=noise, seed=seed)
        per_batch = max(1, _PIXELS_PER_BATCH // (images.shape[1] * images.shape[2]))
        batches = [images[i:i + per_batch] for i in range(0, len(images), per_batch)]
        num_pixels = len(images) * (images.shape[1] - self.radius) * (images.shape[2] - 2 * self.radius)
        return batches, num_pixels

    def _log_prob_map(self, name, fn, images, noise, seed):
        """Run the traced `fn` (images -> [n, H', W'] log-likelihoods) over all batches."""
        batches, _ = self._batches(images, noise, seed)
        graph = self._graph(name, fn)
        return np.concatenate([graph(batch).numpy() for batch in batches])

    def _rate(self, log_prob_map):
        """NumPy [N, H', W'] nats -> [N] bit per pixel (and channel), accumulated in float64."""
        return log_prob_map.astype(np.float64).mean(axis=(1, 2)) / (self.num_channels * math.log(2.0))

    def pixel_log_prob(self, images, noise=True, seed=None):
        """Per-pixel log-likelihoods in nats, NumPy [N, H - r, W - 2r].

        Modelled pixels are rows r..H-1, columns r..W-1-r (r = nb_size // 2):
        those whose whole causal window lies inside the image. uint8 input is
        dequantized with uniform noise (`seed` makes it repeatable; `noise=False`
        uses bin centres); float input in [0, 1] is used as is.
        """
        log_prob_map = self._log_prob_map("pixel_log_prob", lambda im: self(im, training=False),
                                          images, noise, seed)
        bad = ~np.isfinite(log_prob_map)
        if bad.any():
            # Every expert is a Gaussian, so a finite model gives finite log-likelihoods: this is
            # an overflow (e.g. memory cells growing along the diagonals when f_left + f_up > 1).
            raise FloatingPointError(
                f"pixel_log_prob: {int(bad.sum())} of {bad.size} log-likelihoods are not finite; the "
                "model's weights are non-finite or its spatial LSTM states overflowed on images of "
                f"{np.shape(images)[1]} x {np.shape(images)[2]} pixels.")
        return log_prob_map

    def log_prob(self, images, noise=True, seed=None):
        """Per-image log-likelihood in nats over the modelled pixels, [N]."""
        return self.pixel_log_prob(images, noise, seed).astype(np.float64).sum(axis=(1, 2))

    def log_likelihood_rate(self, images, noise=True, seed=None):
        """Per-image log-likelihood rate in bit per pixel (and channel), [N]."""
        return self._rate(self.pixel_log_prob(images, noise, seed))

    def gaussian_log_likelihood_rate(self, images, noise=True, seed=None):
        """Rate in bit/px of the Gaussian linear predictor with the same neighbourhood (the whitening alone)."""
        def gaussian_map(im):
            _, y_hat = self.whitened_pairs(im)
            log_prob = (-0.5 * tf.reduce_sum(tf.square(y_hat), -1)
                        - 0.5 * self.num_channels * math.log(2 * math.pi))
            return log_prob + tf.cast(self.whitening.log_det_jacobian, log_prob.dtype)
        return self._rate(self._log_prob_map("gaussian", gaussian_map, images, noise, seed))

    def _sample_rows(self, images, fn, num_samples, seed):
        """Apply `fn` (images -> tensors of rows, one row per modelled pixel) batch by batch
        and keep each row with probability num_samples / (number of modelled pixels),
        so that memory stays bounded however many images there are."""
        batches, num_pixels = self._batches(images, noise=True, seed=seed)
        rng = np.random.default_rng(seed)
        fraction = min(1.0, num_samples / num_pixels)
        kept = []
        for batch in batches:
            outputs = [t.numpy() for t in fn(batch)]
            keep = rng.random(len(outputs[0])) < fraction
            kept.append([t[keep] for t in outputs])
        return [np.concatenate(parts) for parts in zip(*kept)]

    def adapt(self, images, max_pairs=1_000_000, seed=0):
        """Fit the conditional whitening from (neighbourhood, pixel) pairs of `images`.

        Uses about `max_pairs` randomly chosen pairs (uint8 images are
        dequantized with noise seeded by `seed`).
        """
        def pairs(im):
            inputs, outputs = extract_neighbourhoods(im, self.nb_size)
            return (tf.reshape(inputs, [-1, inputs.shape[-1]]), tf.reshape(outputs, [-1, self.num_channels]))
        inputs, outputs = self._sample_rows(images, self._graph("pairs", pairs), max_pairs, seed)
        self.whitening.adapt(inputs, outputs)
        return self

    def sample_features(self, images, num_samples, seed=0):
        """Hidden states and whitened pixels of a random sample of modelled pixels.

        Returns NumPy (h [M, dim_h], y^ [M, C]) with M about num_samples (binomial),
        drawn uniformly over all modelled pixels of `images`.
        """
        def features(im):
            x_hat, y_hat = self.whitened_pairs(im)
            h = self.hidden_states(x_hat)
            return (tf.reshape(h, [-1, h.shape[-1]]), tf.reshape(y_hat, [-1, self.num_channels]))
        return tuple(self._sample_rows(images, self._graph("features", features), num_samples, seed))

    def finetune(self, images, max_iter=500, num_samples=100_000, validation_fraction=0.1, seed=0,
                 verbose=1, **kwargs):
        """Fit the MCGSM alone by L-BFGS on a fixed random sample of pixels (see `ride_tf.finetune`).

        With num_layers = 0 this trains the whole MCGSM image model, the paper's
        way; for RIDE it is the fine-tuning step after each training stage.
        Returns the `FinetuneResult`.
        """
        from ride_tf.finetune import finetune_mcgsm

        if not self.whitening.is_adapted:
            self.adapt(images, seed=seed)
        h, y_hat = self.sample_features(images, num_samples, seed=seed)
        return finetune_mcgsm(self.mcgsm, h, y_hat, max_iter=max_iter,
                              validation_fraction=validation_fraction, seed=seed, verbose=verbose,
                              rate_offset=float(self.whitening.log_det_jacobian.numpy()),
                              rate_divisor=self.num_channels * math.log(2.0), **kwargs)
