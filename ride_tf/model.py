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
import weakref

import keras
import numpy as np
import tensorflow as tf

from ride_tf import discrete, evaluation, geometry
from ride_tf.checks import NonFiniteError, check_bool, check_choice, check_integer
from ride_tf.defaults import CELLS, INPAINTING, MODEL, OBJECTIVES, REGION, REGIONS, TRAINING
from ride_tf.io import check_model_path
from ride_tf.neighbourhoods import extract_neighbourhoods, pad_images
from ride_tf.nn.mcgsm import MCGSM
from ride_tf.nn.spatial_lstm import LEGACY_CELL, SpatialLSTM
from ride_tf.nn.whitening import ConditionalWhitening
from ride_tf.preprocessing import check_image_tensor
from ride_tf.quantization import dequantize, to_bits_per_pixel
from ride_tf.training.finetune import finetune_model
from ride_tf.wavefront import inpainting, sampling

__all__ = ["RIDE", "REGIONS", "OBJECTIVES", "load_model", "NonFiniteLossError"]

# First half of the stateless seed of the dequantization noise in `fit` (the second: the optimizer's step).
TRAINING_NOISE_SALT = 0x5249444554

# Per model, a bool variable that the loss check of `fit`'s graph sets before it fails (`RIDE.assert_finite_loss`),
# so that `RIDE.fit` tells that failure from other InvalidArgumentErrors by state, not by the error's text.
_LOSS_NOT_FINITE = weakref.WeakKeyDictionary()


class NonFiniteLossError(tf.errors.InvalidArgumentError, NonFiniteError):
    """`fit` (or a loss computed eagerly) met a loss that is not finite; the failing step applied no update.

    An `InvalidArgumentError`, as the graph's check raised it, and a `ride_tf.checks.NonFiniteError`."""

    def __init__(self, message):
        super().__init__(None, None, message)


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

    def __init__(self, num_channels=MODEL["num_channels"], num_hiddens=MODEL["num_hiddens"],
                 num_layers=MODEL["num_layers"], num_components=MODEL["num_components"],
                 num_scales=MODEL["num_scales"], num_features=MODEL["num_features"], nb_size=MODEL["nb_size"],
                 extended=MODEL["extended"], cell=MODEL["cell"], skip_inputs=MODEL["skip_inputs"],
                 objective=MODEL["objective"], coding_order=MODEL["coding_order"], **kwargs):
        super().__init__(**kwargs)
        for name, value, low in [("num_channels", num_channels, 1), ("num_hiddens", num_hiddens, 1),
                                 ("num_layers", num_layers, 0), ("num_components", num_components, 1),
                                 ("num_scales", num_scales, 1), ("nb_size", nb_size, 3)]:
            check_integer("RIDE", name, value, low)
        if nb_size % 2 == 0:
            raise ValueError(f"RIDE: nb_size must be odd, got {nb_size}.")
        if num_features is not None:
            check_integer("RIDE", "num_features", num_features, 1)
        check_bool("RIDE", "extended", extended)
        check_choice("RIDE", "cell", cell, CELLS)
        check_bool("RIDE", "skip_inputs", skip_inputs)
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
        self.coding_order = coding_order

        policy = self.dtype_policy          # e.g. RIDE(dtype="float64"): every layer computes in it
        self.whitening = ConditionalWhitening(name="whitening", dtype=policy)
        self.slstms = [SpatialLSTM(self.num_hiddens, extended=self.extended, cell=cell,
                                   name=f"spatial_lstm_{l}", dtype=policy)
                       for l in range(self.num_layers)]
        self.mcgsm = MCGSM(self.num_components, self.num_scales, self.num_features,
                           dim_out=self.num_channels, name="mcgsm", dtype=policy)
        self.bits_per_pixel_tracker = keras.metrics.Mean(name="bits_per_pixel")
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
        if self.coding_order != tuple(range(self.num_channels)):    # only when set: older versions read the rest
            config["coding_order"] = list(self.coding_order)
        return config

    def non_finite_weights(self):
        """The paths of the weights that hold a NaN or an infinity (an empty list for a sound model)."""
        return [v.path for v in self.weights if not np.isfinite(np.asarray(v.numpy(), np.float64)).all()]


    def require_finite_weights(self, owner):
        """Raise `NonFiniteError`, a ValueError (naming `owner` and the variables), if any weight is NaN or infinite."""
        bad = self.non_finite_weights()
        if bad:
            raise NonFiniteError(f"{owner}: {len(bad)} of the model's {len(self.weights)} weights are not finite "
                             f"({_name_some(bad)}); nothing was written. "
                             "Restore good weights first (train() rolls back non-finite stages; a "
                             "FitCheckpoint holds the last finished epoch).")

    def non_finite_cause(self):
        """Which of the model's parts can make its log-likelihoods non-finite, judged from its weights."""
        bad = self.non_finite_weights()
        if bad:
            return f"{len(bad)} of the model's weights are not finite ({_name_some(bad)})"
        if self.num_layers and self.cell == "paper":
            return ("the weights are finite, so the spatial LSTM's memory cells overflowed (cell='paper' is "
                    "unbounded where f_left + f_up > 1; the 'stable' cell cannot overflow)")
        return "the weights are finite; an expert's scale or weight overflowed float32"

    def fit(self, x=None, *args, callbacks=None, initial_epoch=0, **kwargs):
        """Keras `Model.fit`; a callback with `restore_for_fit` (`ride_tf.training.checkpoint.FitCheckpoint`)
        first restores its checkpoint, and fit continues after the epochs it had finished.  A tf.data
        dataset is taken as it is (shuffle=False by default: Keras ignores the argument for datasets and
        says so in a warning).  A step whose loss is not finite stops fit with `NonFiniteLossError` (an
        InvalidArgumentError; under a distribution strategy, TensorFlow's InvalidArgumentError itself)."""
        for callback in callbacks or []:
            if hasattr(callback, "restore_for_fit"):
                initial_epoch = max(initial_epoch, callback.restore_for_fit(self))
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)
        flag = self._loss_not_finite_flag()
        try:
            return super().fit(x, *args, callbacks=callbacks, initial_epoch=initial_epoch, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            if flag is not None and bool(flag.numpy()):
                raise NonFiniteLossError(self._non_finite_loss_message()) from error
            raise

    def _loss_not_finite_flag(self):
        """The variable that the loss check sets (created here, eagerly, before `fit` traces its step); None under
        a distribution strategy, where the check's error stays TensorFlow's own."""
        if tf.distribute.has_strategy() or self.distribute_strategy is not tf.distribute.get_strategy():
            return None
        if self not in _LOSS_NOT_FINITE:
            with tf.init_scope():
                _LOSS_NOT_FINITE[self] = tf.Variable(False, trainable=False, name="loss_not_finite")
        return _LOSS_NOT_FINITE[self]

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
        check_choice("RIDE", "objective", value, OBJECTIVES)
        if value != getattr(self, "_objective", value):
            # the traced Keras step functions hold the old loss
            self.train_function = self.test_function = self.predict_function = None
        self._objective = value

    @property
    def coding_order(self):
        """The order in which a pixel's channels are coded (exact sizes, the codec): a tuple of channel indices.

        The density does not depend on it (the MCGSM models a pixel's channels
        jointly); the discrete likelihood and the codec code channel
        coding_order[0] first, then coding_order[1] given it, and so on.
        Default: 0, 1, ..., C - 1.  Settable on a built model."""
        return self._coding_order

    @coding_order.setter
    def coding_order(self, value):
        identity = tuple(range(self.num_channels))
        order = identity if value is None else value
        if (isinstance(order, (str, bytes)) or not hasattr(order, "__iter__")
                or sorted(int(c) if isinstance(c, (int, np.integer)) and not isinstance(c, bool) else -1
                          for c in order) != list(identity)):
            raise ValueError(f"RIDE: coding_order must be a permutation of {identity}, got {value!r}.")
        order = tuple(int(c) for c in order)
        if order != getattr(self, "_coding_order", order):
            # traced graphs of the discrete likelihood (and the Keras steps of objective="discrete") hold the old order
            evaluation.forget_traced(self)
            self.train_function = self.test_function = self.predict_function = None
        self._coding_order = order

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
        self.mcgsm.transplant(baseline.mcgsm)
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
                return tf.cast(discrete.log_mass_map(self, images, dtype=self.compute_dtype), self.compute_dtype)
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

        The loss's gradient waits for the assert too, so the step that fails applies no update.  Eagerly:
        `NonFiniteLossError`; in `fit`'s graph the check first sets the model's flag, from which `fit` raises
        `NonFiniteLossError` instead of the assert's InvalidArgumentError.
        """
        finite = tf.math.is_finite(loss)
        if tf.executing_eagerly():
            if not bool(finite):
                raise NonFiniteLossError(self._non_finite_loss_message())
            return loss
        # The flag is set before the check fails: `fit` reads it to raise NonFiniteLossError.
        flag = _LOSS_NOT_FINITE.get(self)
        with tf.control_dependencies([] if flag is None else [flag.assign(tf.logical_not(finite))]):
            check = tf.debugging.assert_equal(finite, True, message=self._non_finite_loss_message())

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

    def _non_finite_loss_message(self):
        """What a loss that is not finite says: its likely cause for this model."""
        if self.num_layers and self.cell == "paper":
            cause = ("the spatial LSTM's memory cells overflowed (cell='paper' is unbounded where "
                     "f_left + f_up > 1; cell='stable' cannot overflow) or the weights became non-finite")
        else:
            cause = "the weights became non-finite (a learning rate too large?)"
        return f"RIDE: the loss is not finite: {cause}."

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
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras 3 reduces the logs of several workers with strategy.reduce(MEAN, axis=0), which
            # fails on scalars (tensorflow/tensorflow#72388): give it [1]-shaped values.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    # ------------------------------------------------------- NumPy-facing API (`ride_tf.evaluation`)
    def pixel_log_prob(self, images, noise=True, seed=None, region=REGION, verbose=0):
        """Per-pixel log-likelihoods in nats, NumPy [N, H, W] (region="valid": [N, H - r, W - 2r]).

        Every pixel has a conditional (`ride_tf.geometry`); region="valid"
        keeps the paper's protocol, the pixels whose whole window lies inside
        the image (rows r..H-1, columns r..W-1-r).  uint8 input is dequantized
        with uniform noise (`seed` makes it repeatable; `noise=False` uses bin
        centres); float input in [0, 1] is used as is.  Images larger than the
        memory budget are evaluated in tiles (same numbers up to round-off);
        `verbose=1` shows a progress bar.
        """
        return evaluation.pixel_log_prob(self, images, noise, seed, region, verbose)

    def log_prob(self, images, noise=True, seed=None, region=REGION, verbose=0):
        """Per-image log-likelihood in nats over the region's pixels, [N]."""
        return evaluation.log_prob(self, images, noise, seed, region, verbose)

    def log_likelihood_rate(self, images, noise=True, seed=None, region=REGION, verbose=0):
        """Per-image log-likelihood rate in bit per pixel (and channel) over the region, [N]."""
        return evaluation.log_likelihood_rate(self, images, noise, seed, region, verbose)

    def gaussian_log_likelihood_rate(self, images, noise=True, seed=None, region=REGION):
        """Rate in bit/px of the Gaussian linear predictor with the same neighbourhood (the whitening alone)."""
        return evaluation.gaussian_log_likelihood_rate(self, images, noise, seed, region)

    def adapt(self, images, max_pairs=1_000_000, seed=0):
        """Fit the conditional whitening from about `max_pairs` random (neighbourhood, pixel) pairs of the
        valid region of `images` (uint8 images are dequantized with noise seeded by `seed`); returns self."""
        return evaluation.adapt(self, images, max_pairs, seed)

    def sample_features(self, images, num_samples, seed=0):
        """Hidden states and whitened pixels of a random sample of pixels, NumPy (h [M, dim_h], y^ [M, C])."""
        return evaluation.sample_features(self, images, num_samples, seed)

    def sample_discrete_features(self, images, num_samples, seed=0):
        """MCGSM inputs, whitened neighbourhoods and 8-bit values of a random sample of pixels of uint8
        images (contexts at bin centres): (h [M, dim_h], x^ [M, P * C], values int32 [M, C])."""
        return evaluation.sample_discrete_features(self, images, num_samples, seed)

    def sample(self, num_samples=None, height=None, width=None, seed=None, continuous=False, images=None,
               mask=None, batch_size=None):
        """Ancestral samples, uint8 [N, H, W, C] (floats in [0, 1) with continuous=True).

        One traced `tf.while_loop` over the (r + 1)(H - 1) + W wavefronts; with
        `images` and `mask`, pixels where the mask is False are kept and the
        others drawn conditioned on them.  Deterministic for a given seed,
        whatever the batch size.  See `ride_tf.wavefront.sampling.sample`.
        """
        return sampling.sample(self, num_samples, height, width, seed=seed, continuous=continuous, images=images,
                               mask=mask, batch_size=batch_size)

    def inpaint(self, image, mask, num_sweeps=INPAINTING["num_sweeps"], seed=None, verbose=1, num_candidates=5,
                block_size=5, stride=3, window_size=19, callback=None):
        """Fill the missing pixels (mask True) of one image by sampling the posterior; (filled, acceptance_rate).

        Metropolis within Gibbs (paper section 3.4, eq. 9): the best of 5
        conditional ancestral samples, then `num_sweeps` sweeps of ancestral
        proposals for overlapping 5 x 5 blocks, accepted on a 19 x 19 window
        around each block, with random flips between sweeps.  `filled` has the
        image's shape and dtype, known pixels unchanged.  See `ride_tf.wavefront.inpainting.inpaint`.
        """
        return inpainting.inpaint(self, image, mask, num_sweeps=num_sweeps, seed=seed, verbose=verbose,
                                  num_candidates=num_candidates, block_size=block_size, stride=stride,
                                  window_size=window_size, callback=callback)

    def finetune(self, images, max_iter=TRAINING["finetune_max_iter"], num_samples=TRAINING["finetune_samples"],
                 validation_fraction=0.1, seed=0, verbose=1, objective=None, **kwargs):
        """Fit the MCGSM alone by L-BFGS on a fixed random sample of pixels; returns the `FinetuneResult`.

        With num_layers = 0 this trains the whole MCGSM image model, the paper's
        way; for RIDE it is the fine-tuning step after each training stage.
        objective: "density" (the log-density of dequantized pixels) or
        "discrete" (log P(k) of the 8-bit values of uint8 images); default:
        the model's `objective`.  `max_iter` and `num_samples` default to `train`'s fine-tuning
        (`ride_tf.defaults.TRAINING`).  See `ride_tf.training.finetune.finetune_model`.
        """
        return finetune_model(self, images, max_iter=max_iter, num_samples=num_samples,
                              validation_fraction=validation_fraction, seed=seed, verbose=verbose,
                              objective=objective, **kwargs)


def _multi_worker(strategy):
    """Whether `strategy` is a MultiWorkerMirroredStrategy over a cluster of more than one task."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return False
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs) > 1


def _name_some(paths):
    return ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")


def load_model(path):
    """A `RIDE` from a .keras file, or ValueError saying why not (missing, not a file, not a Keras file,
    or a Keras model that is not a RIDE).  The one loader of the command line and `export`."""
    path = check_model_path(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:   # Keras raises many kinds for foreign or damaged files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a ride-tf model file ({reason[:200]})") from None
    if not isinstance(model, RIDE):
        raise ValueError(f"{path}: a Keras model, but not a ride-tf RIDE model ({type(model).__name__})")
    return model
