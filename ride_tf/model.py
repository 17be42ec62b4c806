"""RIDE, the recurrent image density estimator (paper section 2.3), and its MCGSM baseline.

    p(x) = prod_ij p(x_ij | x_<ij),     p(x_ij | x_<ij) = MCGSM(y^_ij | h_ij) |det W|

Every pixel ij of an H x W image is modelled (see `ride_tf.geometry` for the
padding and the outside-the-image indicators e_ij):

    causal neighbourhood x_ij (padded), pixel y_ij
      -> conditional whitening (x^_ij, y^_ij), unknown inputs at their mean (eq. 7)
      -> u_ij = [x^_ij, e_ij]
      -> L stacked spatial LSTMs over the H x W grid of u: h_ij            (eq. 6)
      -> factorized MCGSM p(y^_ij | h_ij) + log|det W|                    (eqs. 3-5)

With num_layers = 0 the MCGSM conditions on u_ij directly: the paper's MCGSM
image model (inside the valid region, where e_ij = 0, it is exactly eqs. 3-5
on x^).  Every LSTM state h_ij depends only on the inputs of pixels (i', j')
with i' <= i and j' <= j, so the likelihood of pixel ij depends only on pixels
before it in raster order.  The whitening is an invertible affine map of y_ij
for any x_ij, so every conditional is normalised, the border ones included.

Regions: ``region="full"`` (default) scores all H x W pixels;
``region="valid"`` scores the paper's protocol, rows r..H-1 and columns
r..W-1-r, on the same model (the same conditionals, cut out of the full map).
"""
import math

import keras
import numpy as np
import tensorflow as tf

from ride_tf import geometry
from ride_tf.mcgsm import MCGSM
from ride_tf.neighbourhoods import extract_neighbourhoods, pad_images
from ride_tf.preprocessing import check_images, check_integer, dequantize, prepare_images, to_bits_per_pixel
from ride_tf.spatial_lstm import CELLS, LEGACY_CELL, SpatialLSTM
from ride_tf.whitening import ConditionalWhitening
from ride_tf.preprocessing import check_bool, check_image_tensor, check_seed  # noqa: E402  (input checks)

__all__ = ["RIDE", "REGIONS", "OBJECTIVES"]

REGIONS = ("full", "valid")
# First half of the stateless seed of the dequantization noise in `fit` (the second: the optimizer's step).
TRAINING_NOISE_SALT = 0x5249444554

# What Keras fit/evaluate optimise on uint8 input: the density of dequantized
# pixels (the paper's rate) or the probability of the 8-bit values (code length).
OBJECTIVES = ("density", "discrete")

# Pixels evaluated per graph call by the NumPy-facing methods (bounds memory):
# whole images are batched up to this many pixels, larger images are cut into
# tiles of about this many pixels that pass their LSTM states on.
_PIXELS_PER_BATCH = 1 << 17
_TILE_WIDTH = 512


def _check_region(region):
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}.")
    return region


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
      cell: "stable" (default: memory bounded by 1 for any weights and image
        size) or "paper" (eq. 6 as written); see `ride_tf.spatial_lstm`.
      skip_inputs: True (default): the MCGSM reads [h, u], the top LSTM
        state next to the model inputs u = [x^, e] (a skip connection).  Such
        a RIDE contains its MCGSM baseline: `initialize_from_baseline` puts it
        exactly at a fitted num_layers=0 model's likelihood, and
        `ride_tf.training.train` starts it there.  False: the MCGSM reads h
        alone, the paper's architecture.  No effect when num_layers = 0.
        Files saved before the option existed load with False.
      objective: what Keras `fit`/`evaluate` optimise/report on uint8 input:
        "density" (default; the log-density of dequantized pixels, the paper's
        rate) or "discrete" (log P(k_ij | k_<ij) of the 8-bit values with the
        contexts at bin centres, `ride_tf.discrete`; the loss is then the exact
        code length in bit/px).  Float input is always scored by its density.
        Settable on a built model (`model.objective = "discrete"`).

    Inputs everywhere: uint8 images (dequantized with uniform noise, see
    `ride_tf.preprocessing`) or floats in [0, 1]; [N, H, W, C] or [N, H, W],
    any H, W >= 1.  `call(images)` returns the per-pixel log-likelihood map in
    nats [N, H, W] for float (or uint8, dequantized in-graph) tensors; Keras
    `fit`/`evaluate` minimise/report the negative log-likelihood in bit/px over
    all pixels and report `bits_per_pixel`, the log-likelihood rate (the
    paper's number, larger is better).
    """

    def __init__(self, num_channels=1, num_hiddens=64, num_layers=1, num_components=32, num_scales=4,
                 num_features=32, nb_size=5, extended=False, cell="stable", skip_inputs=True,
                 objective="density", **kwargs):
        super().__init__(**kwargs)
        for name, value, low in [("num_channels", num_channels, 1), ("num_hiddens", num_hiddens, 1),
                                 ("num_layers", num_layers, 0), ("num_components", num_components, 1),
                                 ("num_scales", num_scales, 1), ("nb_size", nb_size, 3)]:
            check_integer("RIDE", name, value, low)
        if nb_size % 2 == 0:
            raise ValueError(f"RIDE: nb_size must be odd, got {nb_size}.")
        if num_features is not None:
            check_integer("RIDE", "num_features", num_features, 1)
        if not isinstance(extended, (bool, np.bool_)):
            raise ValueError(f"RIDE: extended must be True or False, got {extended!r}.")
        if cell not in CELLS:
            raise ValueError(f"RIDE: cell must be one of {CELLS}, got {cell!r}.")
        if not isinstance(skip_inputs, (bool, np.bool_)):
            raise ValueError(f"RIDE: skip_inputs must be True or False, got {skip_inputs!r}.")
        self.num_channels = int(num_channels)
        self.num_hiddens = int(num_hiddens)
        self.num_layers = int(num_layers)
        self.num_components = int(num_components)
        self.num_scales = int(num_scales)
        self.num_features = None if num_features is None else int(num_features)
        self.nb_size = int(nb_size)
        self.extended = bool(extended)
        self.cell = cell
        self.skip_inputs = bool(skip_inputs)
        self.objective = objective

        policy = self.dtype_policy          # e.g. RIDE(dtype="float64"): every layer computes in it
        self.whitening = ConditionalWhitening(name="whitening", dtype=policy)
        self.slstms = [SpatialLSTM(self.num_hiddens, extended=self.extended, cell=cell,
                                   name=f"spatial_lstm_{l}", dtype=policy)
                       for l in range(self.num_layers)]
        self.mcgsm = MCGSM(self.num_components, self.num_scales, self.num_features,
                           dim_out=self.num_channels, name="mcgsm", dtype=policy)
        self.bits_per_pixel_tracker = keras.metrics.Mean(name="bits_per_pixel")
        self._graph_functions = {}
        self.build((None, None, None, self.num_channels))

    # ----------------------------------------------------------------- Keras
    def build(self, input_shape):
        dim_x = geometry.num_inputs(self.nb_size, self.num_channels)
        self.whitening.build((None, dim_x), (None, self.num_channels))
        dim_in = self.input_dim
        for lstm in self.slstms:
            lstm.build((None, None, None, dim_in))
            dim_in = self.num_hiddens
        if self.mcgsm_reads_inputs:
            dim_in += self.input_dim
        self.mcgsm.build((None, dim_in))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(num_channels=self.num_channels, num_hiddens=self.num_hiddens,
                      num_layers=self.num_layers, num_components=self.num_components,
                      num_scales=self.num_scales, num_features=self.num_features,
                      nb_size=self.nb_size, extended=self.extended, cell=self.cell,
                      skip_inputs=self.skip_inputs, objective=self.objective)
        return config

    def non_finite_weights(self):
        """The paths of the weights that hold a NaN or an infinity (an empty list for a sound model)."""
        return [v.path for v in self.weights if not np.isfinite(np.asarray(v.numpy(), np.float64)).all()]

    @staticmethod
    def _name_some(paths):
        return ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")

    def require_finite_weights(self, owner):
        """Raise ValueError (naming `owner` and the variables) if any weight is NaN or infinite."""
        bad = self.non_finite_weights()
        if bad:
            raise ValueError(f"{owner}: {len(bad)} of the model's {len(self.weights)} weights are not finite "
                             f"({self._name_some(bad)}); nothing was written. "
                             "Restore good weights first (train() rolls back non-finite stages; a "
                             "FitCheckpoint holds the last finished epoch).")

    def non_finite_cause(self):
        """Which of the model's parts can make its log-likelihoods non-finite, judged from its weights."""
        bad = self.non_finite_weights()
        if bad:
            return f"{len(bad)} of the model's weights are not finite ({self._name_some(bad)})"
        if self.num_layers and self.cell == "paper":
            return ("the weights are finite, so the spatial LSTM's memory cells overflowed (cell='paper' is "
                    "unbounded where f_left + f_up > 1; the 'stable' cell cannot overflow)")
        return "the weights are finite; an expert's scale or weight overflowed float32"

    def save(self, filepath, *args, **kwargs):
        """Keras `Model.save`, refusing a model whose weights are not finite (a saved model is never NaN)."""
        self.require_finite_weights("RIDE.save")
        return super().save(filepath, *args, **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("cell", LEGACY_CELL)   # models saved before `cell` existed are eq. 6
        config.setdefault("skip_inputs", False)  # ... and before `skip_inputs`, the paper's MCGSM on h
        config.setdefault("objective", "density")
        return cls(**config)

    @property
    def objective(self):
        """"density" or "discrete": what `fit`/`evaluate` use on uint8 input (see the class docstring)."""
        return self._objective

    @objective.setter
    def objective(self, value):
        if value not in OBJECTIVES:
            raise ValueError(f"RIDE: objective must be one of {OBJECTIVES}, got {value!r}.")
        if value != getattr(self, "_objective", value):
            # the traced Keras step functions hold the old loss
            self.train_function = self.test_function = self.predict_function = None
        self._objective = value

    @property
    def mcgsm_reads_inputs(self):
        """Whether the MCGSM reads [h, u] (`skip_inputs` with at least one spatial LSTM)."""
        return self.skip_inputs and self.num_layers > 0

    @property
    def radius(self):
        return self.nb_size // 2

    @property
    def input_dim(self):
        """Size of u_ij = [x^_ij, e_ij]: P * C whitened inputs and P outside indicators."""
        return geometry.num_inputs(self.nb_size, self.num_channels) + geometry.num_indicators(self.nb_size)

    # ------------------------------------------------------------ the graph
    def input_features(self, x, outside):
        """u = [x^, e]: the model's inputs from neighbourhoods x [..., P * C] and indicators e [..., P].

        Inputs outside the image (e = 1) are replaced by their mean before the
        whitening; x^ is u[..., :P * C].  The model graph, the sampler and the
        tiles all build u here.
        """
        outside = tf.cast(outside, self.compute_dtype)
        x_hat = self.whitening.whiten_inputs(x, tf.repeat(outside, self.num_channels, axis=-1))
        return tf.concat([x_hat, outside], axis=-1)

    def region_inputs(self, window, row0, col0, width):
        """Model inputs and whitened pixels of a rectangle of pixels.

        Args:
          window: float [N, h + r, w + 2r, C], rows row0 .. row0 + h + r - 1 and
            columns col0 .. col0 + w + 2r - 1 of the *padded* image
            (`pad_images`); image pixel (i, j) is padded pixel (i + r, j + r).
          row0, col0: image coordinates of the rectangle's top-left pixel.
          width: the image width W (for the outside indicators).

        Returns:
          u: [N, h, w, input_dim] = [x^, e], and y^: [N, h, w, C].
        """
        x, y = extract_neighbourhoods(window, self.nb_size)
        shape = tf.shape(y)
        rows = row0 + tf.range(shape[1])
        cols = col0 + tf.range(shape[2])
        outside = geometry.outside_indicators(rows, cols, width, self.nb_size, x.dtype)   # [h, w, P]
        outside = tf.broadcast_to(outside, tf.concat([shape[:1], tf.shape(outside)], 0))  # [N, h, w, P]
        u = self.input_features(x, outside)
        x_hat = u[..., :geometry.num_inputs(self.nb_size, self.num_channels)]
        return u, self.whitening.whiten_outputs(x_hat, y)

    def whitened_pairs(self, images):
        """images [N, H, W, C] float -> (u [N, H, W, input_dim], y^ [N, H, W, C]) for every pixel."""
        images = tf.convert_to_tensor(images)
        return self.region_inputs(pad_images(images, self.nb_size), 0, 0, tf.shape(images)[2])

    def hidden_states(self, u):
        """The MCGSM's inputs: the top spatial LSTM's states (next to u with `skip_inputs`), or u when num_layers = 0."""
        h = u
        for lstm in self.slstms:
            h = lstm(h)
        return self.mcgsm_inputs(h, u)

    def mcgsm_inputs(self, h, u):
        """The MCGSM's inputs from the top LSTM states h and the model inputs u: [h, u] with `skip_inputs`, else h."""
        if self.mcgsm_reads_inputs:
            return tf.concat([h, tf.cast(u, h.dtype)], axis=-1)
        return h

    def initialize_from_baseline(self, baseline):
        """Start at a fitted MCGSM baseline: copy its whitening and MCGSM, zeros for the rows of h.

        `baseline` is a `RIDE(num_layers=0)` with the same num_channels,
        nb_size, num_components, num_scales and number of MCGSM features.
        This model must read the inputs (`skip_inputs=True`, or num_layers = 0).
        The MCGSM's rows for u = [x^, e] (its gate features, linear features
        and predictors) get the baseline's values and the rows for the LSTM
        states h get zeros; the priors, scales, feature weights, Cholesky
        factors and means are copied.  The MCGSM then ignores h, so this
        model's likelihood equals the baseline's (to float round-off), and
        training can only move it from there.  The spatial LSTMs keep their
        weights.  Returns self.
        """
        if not isinstance(baseline, RIDE) or baseline.num_layers != 0:
            raise ValueError("initialize_from_baseline: the baseline must be a RIDE with num_layers=0.")
        if self.num_layers and not self.skip_inputs:
            raise ValueError("initialize_from_baseline: this RIDE's MCGSM reads only the LSTM states; "
                             "build it with skip_inputs=True so that it can start at the baseline.")
        for name in ("num_channels", "nb_size", "num_components", "num_scales"):
            if getattr(self, name) != getattr(baseline, name):
                raise ValueError(f"initialize_from_baseline: {name} is {getattr(self, name)} here but "
                                 f"{getattr(baseline, name)} in the baseline.")
        if self.mcgsm.num_features != baseline.mcgsm.num_features:
            raise ValueError(f"initialize_from_baseline: the MCGSM has {self.mcgsm.num_features} features "
                             f"here but {baseline.mcgsm.num_features} in the baseline.")
        self.whitening.set_weights(baseline.whitening.get_weights())
        mine, base = self.mcgsm, baseline.mcgsm
        for name in ("priors", "scales", "feature_weights", "cholesky_factors", "means"):
            getattr(mine, name).assign(getattr(base, name).numpy())
        offset = mine.dim_in - base.dim_in          # the rows of h come first: inputs [h, u]
        features = np.zeros(mine.features.shape, np.float32)
        features[offset:] = base.features.numpy()
        predictors = np.zeros(mine.predictors.shape, np.float32)
        predictors[..., offset:] = base.predictors.numpy()
        linear = np.zeros(mine.linear_features.shape, np.float32)
        linear[:, offset:] = base.linear_features.numpy()
        mine.features.assign(features)
        mine.predictors.assign(predictors)
        mine.linear_features.assign(linear)
        return self

    def conditional_distribution(self, h):
        """The MCGSM's distribution of the whitened pixels y^ given the hidden states."""
        return self.mcgsm(h)

    def _pixel_log_prob(self, h, y_hat):
        log_prob = self.conditional_distribution(h).log_prob(y_hat)
        return log_prob + tf.cast(self.whitening.log_det_jacobian, log_prob.dtype)

    def log_density_head(self, h, u, y_hat, y):
        """The per-pixel output of `call`: log p(y_ij | x_<ij) in nats, [N, H, W].

        Every per-pixel map of the model is a head(h, u, y^, y) like this one
        (h the MCGSM's inputs, u = [x^, e], y^ the whitened pixels, y the
        pixels, each [N, H, W, ...]): the batched and tiled evaluation takes
        any of them (`pixel_map`), e.g. the discrete likelihood of
        `ride_tf.discrete`.
        """
        return self._pixel_log_prob(h, y_hat)

    def forward(self, images):
        """Float images [N, H, W, C] -> (h, u, y^, y) of every pixel (the arguments of a head)."""
        u, y_hat = self.whitened_pairs(images)
        return self.hidden_states(u), u, y_hat, images

    def call(self, images, training=False):
        """Per-pixel log-likelihood map in nats, [N, H, W] (every pixel).

        uint8 images: with objective="density" the log-density of the pixels
        dequantized with fresh uniform noise (in a training step, noise
        seeded by the optimizer's step count: `_training_noise_seed`); with objective="discrete" the
        log-probability log P(k_ij | k_<ij) of the 8-bit values (contexts at
        bin centres, `ride_tf.discrete.log_mass_map`).
        """
        images = self.checked_input(images)
        if images.dtype == tf.uint8:
            if self.objective == "discrete":
                from ride_tf.discrete import log_mass_map

                return tf.cast(log_mass_map(self, images, dtype=self.compute_dtype), self.compute_dtype)
            images = dequantize(images, seed=self._training_noise_seed() if training is True else None)
        images = tf.cast(images, self.compute_dtype)
        return self.log_density_head(*self.forward(images))

    def _training_noise_seed(self):
        """Seed of the dequantization noise in a training step: (TRAINING_NOISE_SALT, optimizer step).

        The noise of step t is then a function of t, so a run resumed from a
        checkpoint (which restores the optimizer's step count) draws the
        noise the uninterrupted run drew.  None (fresh noise) without an
        optimizer.
        """
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None:
            return None
        return tf.stack([tf.constant(TRAINING_NOISE_SALT, tf.int64), tf.cast(optimizer.iterations, tf.int64)])

    def tile_log_prob(self, window, row0, col0, width, states, head=None):
        """`call` for one tile of a large image, continuing the LSTM states of its neighbours.

        window, row0, col0, width: as in `region_inputs` (a tile of h x w pixels).
        states: per layer (h_top, c_top [N, w, U], h_left, c_left [N, h, U]),
          the states of the row above and the column left of the tile (zeros at
          the image border).
        head: the per-pixel output (default `log_density_head`).
        Returns (head's map [N, h, w], per layer (h, c) of the tile, [N, h, w, U]).
        """
        head = self.log_density_head if head is None else head
        u, y_hat = self.region_inputs(window, row0, col0, width)
        h, tile_states = u, []
        for lstm, (h_top, c_top, h_left, c_left) in zip(self.slstms, states):
            h, c = lstm.run_region(h, h_top, c_top, h_left, c_left)
            tile_states.append((h, c))
        r = self.radius
        y = window[:, r:, r:tf.shape(window)[2] - r]
        return head(self.mcgsm_inputs(h, u), u, y_hat, y), tile_states

    def checked_input(self, images):
        """The Keras path's input check (`call`, so `model(x)`, `fit`, `evaluate`, `predict`).

        uint8 or float images [N, H, W, C] (or [N, H, W] for one channel);
        dtype, rank and channels are checked when the graph is built
        (ValueError), float values (finite, in [0, 1]) and that the model was
        adapted by assert ops in the graph (eagerly: ValueError /
        `NotAdaptedError`); see `ride_tf.preprocessing.check_image_tensor`.
        """
        images = check_image_tensor(images, self.num_channels)
        adapted = self.whitening.assert_adapted("RIDE")
        if adapted is None:
            return images
        with tf.control_dependencies([adapted]):
            return tf.identity(images)

    def assert_finite_loss(self, loss):
        """The loss, with an assert op that stops `fit`/`evaluate` with a clear message when it is not finite.

        The loss's gradient waits for the assert too, so the step that fails applies no update.
        """
        if self.num_layers and self.cell == "paper":
            cause = ("the spatial LSTM's memory cells overflowed (cell='paper' is unbounded where "
                     "f_left + f_up > 1; cell='stable' cannot overflow) or the weights became non-finite")
        else:
            cause = "the weights became non-finite (a learning rate too large?)"
        if tf.executing_eagerly():
            if not bool(tf.math.is_finite(loss)):
                raise FloatingPointError(f"RIDE: the loss is not finite: {cause}.")
            return loss
        check = tf.debugging.assert_equal(tf.math.is_finite(loss), True,
                                          message=f"RIDE: the loss is not finite: {cause}")

        # Every gradient flows from d loss, so making it wait for the check keeps the optimizer from
        # applying a non-finite step: a failed step leaves the weights as they were.
        @tf.custom_gradient
        def checked(value):
            with tf.control_dependencies([check]):
                out = tf.identity(value)

            def grad(upstream):
                with tf.control_dependencies([check]):
                    return tf.identity(upstream)
            return out, grad
        return checked(loss)

    def rate_from_log_prob_map(self, log_prob_map):
        """[N, H', W'] nats -> [N] log-likelihood rate in bit per pixel (and channel)."""
        return to_bits_per_pixel(tf.reduce_mean(log_prob_map, axis=[1, 2]), self.num_channels)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Negative log-likelihood in bit/px, averaged over the (per-replica) batch.

        With objective="discrete" and uint8 input, y_pred holds log P(k) and
        the loss is the exact code length in bit/px.

        Divided by the number of replicas under a distribution strategy, so that
        the summed gradients are those of the global mean.
        """
        loss = self.assert_finite_loss(-tf.reduce_mean(self.rate_from_log_prob_map(y_pred)))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.bits_per_pixel_tracker.update_state(self.rate_from_log_prob_map(y_pred))
        logs = self.get_metrics_result()
        strategy = tf.distribute.get_strategy()
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode()):
            # Keras 3 reduces the logs of several workers with strategy.reduce(MEAN, axis=0), which
            # fails on scalars (tensorflow/tensorflow#72388): give it [1]-shaped values.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    # ------------------------------------------------------- NumPy-facing API
    def _graph(self, name, fn, signature=None):
        """One traced tf.function per method, for any batch and image size."""
        if name not in self._graph_functions:
            if signature is None:
                signature = [tf.TensorSpec([None, None, None, self.num_channels], tf.float32)]
            self._graph_functions[name] = tf.function(fn, input_signature=signature, reduce_retracing=True)
        return self._graph_functions[name]

    def _prepare(self, images, noise, seed, region="full", adapted=True):
        """Validated, dequantized float32 images [N, H, W, C] (NumPy).

        With `adapted`, a model whose whitening was never fitted is refused
        (`NotAdaptedError`) after the arguments have been checked."""
        nb_size = self.nb_size if _check_region(region) == "valid" else None
        noise = check_bool("RIDE", "noise", noise)
        seed = check_seed("RIDE", seed)
        images = prepare_images(images, self.num_channels, nb_size, noise=noise, seed=seed)
        if adapted:
            self.whitening.require_adapted("RIDE")
        return images

    def _batches(self, images):
        """Memory-bounded batches (views) of prepared images."""
        per_batch = max(1, _PIXELS_PER_BATCH // (images.shape[1] * images.shape[2]))
        return [images[i:i + per_batch] for i in range(0, len(images), per_batch)]

    def _tiled_map(self, image, name, head, verbose):
        """head's map [1, H, W] of one large image [1, H, W, C], tile by tile in raster order.

        Each tile's LSTMs start from the states of the row above and the column
        to the left (`tile_log_prob`), so the result is the untiled map up to
        float32 round-off, in memory bounded by the tile size (plus one row of
        states per layer)."""
        _, height, width, _ = image.shape
        r, units, num_layers = self.radius, self.num_hiddens, self.num_layers
        tile_w = min(width, _TILE_WIDTH)
        tile_h = max(1, min(height, _PIXELS_PER_BATCH // tile_w))
        padded = np.pad(image, [(0, 0), (r, 0), (r, r), (0, 0)])
        state_spec = [tf.TensorSpec([None, None, units], tf.float32)] * (4 * num_layers)
        spec = [tf.TensorSpec([None, None, None, self.num_channels], tf.float32)] + \
            [tf.TensorSpec([], tf.int32)] * 3 + state_spec

        def tile_fn(window, row0, col0, width, *flat):
            states = [flat[4 * l:4 * l + 4] for l in range(num_layers)]
            log_prob, tile_states = self.tile_log_prob(window, row0, col0, width, states, head)
            out = [log_prob]
            for h, c in tile_states:
                out += [h[:, -1], c[:, -1], h[:, :, -1], c[:, :, -1]]  # bottom row, right column
            return out

        graph = self._graph("tile_" + name, tile_fn, spec)
        zeros = lambda n: np.zeros((1, n, units), np.float32)
        bottom = [[zeros(width), zeros(width)] for _ in range(num_layers)]     # states above the tile row
        out = None
        tiles = [(i, j) for i in range(0, height, tile_h) for j in range(0, width, tile_w)]
        bar = keras.utils.Progbar(len(tiles), verbose=verbose, unit_name="tile")
        for k, (i, j) in enumerate(tiles):
            h_rows, w_cols = min(tile_h, height - i), min(tile_w, width - j)
            if j == 0:
                left = [[zeros(h_rows), zeros(h_rows)] for _ in range(num_layers)]
            flat = []
            for l in range(num_layers):
                flat += [bottom[l][0][:, j:j + w_cols], bottom[l][1][:, j:j + w_cols], left[l][0], left[l][1]]
            window = padded[:, i:i + h_rows + r, j:j + w_cols + 2 * r]
            result = [t.numpy() for t in graph(window, i, j, width, *flat)]
            if out is None:
                out = np.empty((1, height, width), result[0].dtype)
            out[:, i:i + h_rows, j:j + w_cols] = result[0]
            for l in range(num_layers):
                h_bottom, c_bottom, h_right, c_right = result[1 + 4 * l:5 + 4 * l]
                bottom[l][0][:, j:j + w_cols], bottom[l][1][:, j:j + w_cols] = h_bottom, c_bottom
                left[l] = [h_right, c_right]
            bar.update(k + 1)
        return out

    def _log_prob_map(self, name, fn, images, verbose=0):
        """Run the traced `fn` (images -> [n, H, W] log-likelihoods) over memory-bounded batches."""
        graph = self._graph(name, fn)
        batches = self._batches(images)
        bar = keras.utils.Progbar(len(batches), verbose=verbose if len(batches) > 1 else 0, unit_name="batch")
        out = []
        for k, batch in enumerate(batches):
            out.append(graph(batch).numpy())
            bar.update(k + 1)
        return np.concatenate(out)

    def pixel_map(self, images, name, head, verbose=0):
        """head(h, u, y^, y) for every pixel of prepared float images [N, H, W, C], NumPy [N, H, W].

        Whole images are batched in memory-bounded graph calls; images of more
        than `_PIXELS_PER_BATCH` pixels are evaluated tile by tile (same
        numbers up to round-off).  `name` keys the traced graphs of `head`.
        """
        height, width = images.shape[1:3]
        if height * width > _PIXELS_PER_BATCH:
            return np.concatenate([self._tiled_map(images[n:n + 1], name, head, verbose)
                                   for n in range(len(images))])
        return self._log_prob_map(name, lambda im: head(*self.forward(im)), images, verbose)

    def _crop(self, log_prob_map, region):
        if region == "valid":
            rows, cols = geometry.valid_slices(self.nb_size)
            return log_prob_map[:, rows, cols]
        return log_prob_map

    def _rate(self, log_prob_map):
        """NumPy [N, H', W'] nats -> [N] bit per pixel (and channel), accumulated in float64."""
        return to_bits_per_pixel(log_prob_map.astype(np.float64).mean(axis=(1, 2)), self.num_channels)

    def pixel_log_prob(self, images, noise=True, seed=None, region="full", verbose=0):
        """Per-pixel log-likelihoods in nats, NumPy [N, H, W] (region="valid": [N, H - r, W - 2r]).

        Every pixel has a conditional (`ride_tf.geometry`); region="valid"
        keeps the paper's protocol, the pixels whose whole window lies inside
        the image (rows r..H-1, columns r..W-1-r).  uint8 input is dequantized
        with uniform noise (`seed` makes it repeatable; `noise=False` uses bin
        centres); float input in [0, 1] is used as is.  Images larger than the
        memory budget are evaluated in tiles (same numbers up to round-off);
        `verbose=1` shows a progress bar.
        """
        images = self._prepare(images, noise, seed, region)
        height, width = images.shape[1:3]
        log_prob_map = self.pixel_map(images, "pixel_log_prob", self.log_density_head, verbose)
        bad = ~np.isfinite(log_prob_map)
        if bad.any():
            # Every expert is a Gaussian, so a finite model gives finite log-likelihoods: this is
            # an overflow (e.g. memory cells of the "paper" cell growing along the diagonals).
            raise FloatingPointError(
                f"pixel_log_prob: {int(bad.sum())} of {bad.size} log-likelihoods are not finite on images of "
                f"{height} x {width} pixels: {self.non_finite_cause()}.")
        return self._crop(log_prob_map, region)

    def log_prob(self, images, noise=True, seed=None, region="full", verbose=0):
        """Per-image log-likelihood in nats over the region's pixels, [N]."""
        return self.pixel_log_prob(images, noise, seed, region, verbose).astype(np.float64).sum(axis=(1, 2))

    def log_likelihood_rate(self, images, noise=True, seed=None, region="full", verbose=0):
        """Per-image log-likelihood rate in bit per pixel (and channel) over the region, [N]."""
        return self._rate(self.pixel_log_prob(images, noise, seed, region, verbose))

    def gaussian_log_likelihood_rate(self, images, noise=True, seed=None, region="full"):
        """Rate in bit/px of the Gaussian linear predictor with the same neighbourhood (the whitening alone)."""
        def gaussian_map(im):
            _, y_hat = self.whitened_pairs(im)
            log_prob = (-0.5 * tf.reduce_sum(tf.square(y_hat), -1)
                        - 0.5 * self.num_channels * math.log(2 * math.pi))
            return log_prob + tf.cast(self.whitening.log_det_jacobian, log_prob.dtype)
        images = self._prepare(images, noise, seed, region)
        return self._rate(self._crop(self._log_prob_map("gaussian", gaussian_map, images), region))

    def _sample_rows(self, images, fn, num_samples, seed, region, adapted=True):
        """Apply `fn` (images -> tensors of rows, one row per pixel of `region`) batch by batch
        and keep each row with probability num_samples / (number of such pixels),
        so that memory stays bounded however many images there are."""
        num_samples = check_integer("RIDE", "the number of samples", num_samples, 1)
        images = self._prepare(images, True, seed, region, adapted)
        height, width = images.shape[1:3]
        if region == "valid":
            height, width = geometry.valid_shape(height, width, self.nb_size)
        num_pixels = len(images) * height * width
        rng = np.random.default_rng(seed)
        fraction = min(1.0, num_samples / num_pixels)
        kept = []
        for batch in self._batches(images):
            outputs = [t.numpy() for t in fn(batch)]
            keep = rng.random(len(outputs[0])) < fraction
            kept.append([t[keep] for t in outputs])
        return [np.concatenate(parts) for parts in zip(*kept)]

    def adapt(self, images, max_pairs=1_000_000, seed=0):
        """Fit the conditional whitening from (neighbourhood, pixel) pairs of `images`.

        Uses about `max_pairs` randomly chosen pairs of the valid region (whole
        neighbourhoods inside the image; uint8 images are dequantized with noise
        seeded by `seed`).
        """
        def pairs(im):
            inputs, outputs = extract_neighbourhoods(im, self.nb_size)
            return (tf.reshape(inputs, [-1, inputs.shape[-1]]), tf.reshape(outputs, [-1, self.num_channels]))
        inputs, outputs = self._sample_rows(images, self._graph("pairs", pairs), max_pairs, seed, "valid",
                                            adapted=False)
        self.whitening.adapt(inputs, outputs)
        return self

    def sample_features(self, images, num_samples, seed=0):
        """Hidden states and whitened pixels of a random sample of pixels (every pixel is a candidate).

        Returns NumPy (h [M, dim_h], y^ [M, C]) with M about num_samples (binomial),
        drawn uniformly over all pixels of `images`.
        """
        def features(im):
            u, y_hat = self.whitened_pairs(im)
            h = self.hidden_states(u)
            return (tf.reshape(h, [-1, h.shape[-1]]), tf.reshape(y_hat, [-1, self.num_channels]))
        return tuple(self._sample_rows(images, self._graph("features", features), num_samples, seed, "full"))

    def sample(self, num_samples=None, height=None, width=None, seed=None, continuous=False, images=None,
               mask=None, batch_size=None):
        """Ancestral samples, uint8 [N, H, W, C] (floats in [0, 1) with continuous=True).

        One traced `tf.while_loop` over the (r + 1)(H - 1) + W wavefronts; with
        `images` and `mask`, pixels where the mask is False are kept and the
        others drawn conditioned on them.  Deterministic for a given seed,
        whatever the batch size.  See `ride_tf.sampling.sample`.
        """
        from ride_tf.sampling import sample

        return sample(self, num_samples, height, width, seed=seed, continuous=continuous, images=images,
                      mask=mask, batch_size=batch_size)

    def inpaint(self, image, mask, num_sweeps=100, seed=None, verbose=1, num_candidates=5, block_size=5,
                stride=3, window_size=19, callback=None):
        """Fill the missing pixels (mask True) of one image by sampling the posterior; (filled, acceptance_rate).

        Metropolis within Gibbs (paper section 3.4, eq. 9): the best of 5
        conditional ancestral samples, then `num_sweeps` sweeps of ancestral
        proposals for overlapping 5 x 5 blocks, accepted on a 19 x 19 window
        around each block, with random flips between sweeps.  `filled` has the
        image's shape and dtype, known pixels unchanged.  See `ride_tf.inpainting.inpaint`.
        """
        from ride_tf.inpainting import inpaint

        return inpaint(self, image, mask, num_sweeps=num_sweeps, seed=seed, verbose=verbose,
                       num_candidates=num_candidates, block_size=block_size, stride=stride,
                       window_size=window_size, callback=callback)

    def sample_discrete_features(self, images, num_samples, seed=0):
        """MCGSM inputs, whitened neighbourhoods and 8-bit values of a random sample of pixels of uint8 images.

        The contexts are the bin centres of the values (what a decoder
        knows, `ride_tf.discrete`).  Returns NumPy (h [M, dim_h],
        x^ [M, P * C], values int32 [M, C]), M about num_samples, drawn
        uniformly over all pixels: the data of the discrete fine-tuning.
        """
        from ride_tf.discrete import bin_centres

        images = check_images(images, self.num_channels)
        if images.dtype != np.uint8:
            raise ValueError("sample_discrete_features: the discrete likelihood is defined for 8-bit "
                             f"images; pass uint8 values (got {images.dtype}).")
        images = bin_centres(images).numpy()          # floats are used as given by _sample_rows
        num_inputs = geometry.num_inputs(self.nb_size, self.num_channels)

        def features(im):
            u, _ = self.whitened_pairs(im)
            h = self.hidden_states(u)
            values = tf.cast(tf.floor(im * 256.0), tf.int32)
            return (tf.reshape(h, [-1, h.shape[-1]]), tf.reshape(u[..., :num_inputs], [-1, num_inputs]),
                    tf.reshape(values, [-1, self.num_channels]))
        graph = self._graph("discrete_features", features)
        return tuple(self._sample_rows(images, graph, num_samples, seed, "full"))

    def finetune(self, images, max_iter=500, num_samples=100_000, validation_fraction=0.1, seed=0,
                 verbose=1, objective=None, **kwargs):
        """Fit the MCGSM alone by L-BFGS on a fixed random sample of pixels (see `ride_tf.finetune`).

        With num_layers = 0 this trains the whole MCGSM image model, the paper's
        way; for RIDE it is the fine-tuning step after each training stage.
        objective: "density" (the log-density of dequantized pixels) or
        "discrete" (log P(k) of the 8-bit values of uint8 images,
        `finetune_mcgsm_discrete`); default: the model's `objective`.
        Returns the `FinetuneResult`.
        """
        from ride_tf.finetune import finetune_mcgsm, finetune_mcgsm_discrete

        objective = self.objective if objective is None else objective
        if objective not in OBJECTIVES:
            raise ValueError(f"finetune: objective must be one of {OBJECTIVES}, got {objective!r}.")
        if not self.whitening.is_adapted:
            self.adapt(images, seed=seed)
        if objective == "discrete":
            h, x_hat, values = self.sample_discrete_features(images, num_samples, seed=seed)
            return finetune_mcgsm_discrete(self, h, x_hat, values, max_iter=max_iter,
                                           validation_fraction=validation_fraction, seed=seed,
                                           verbose=verbose, **kwargs)
        h, y_hat = self.sample_features(images, num_samples, seed=seed)
        return finetune_mcgsm(self.mcgsm, h, y_hat, max_iter=max_iter,
                              validation_fraction=validation_fraction, seed=seed, verbose=verbose,
                              rate_offset=float(self.whitening.log_det_jacobian.numpy()),
                              rate_divisor=self.num_channels * math.log(2.0), **kwargs)
