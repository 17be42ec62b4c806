"""L-BFGS fitting of an MCGSM on fixed inputs, with early stopping on held-out pixels.

The paper trains the MCGSM image model, and fine-tunes RIDE's MCGSM after each
training stage, with L-BFGS (up to 500 iterations) on the hidden states of a
fixed sample of pixels.  Here the objective is the mean negative
log-likelihood of the training pixels; L-BFGS runs in chunks of `check_every`
iterations (continuing its state), after each of which the held-out pixels
are scored: the best parameters seen are kept, and the run stops once the
held-out score has not improved for `patience` chunks.

`finetune_mcgsm_discrete` is the same fit on the discrete likelihood of 8-bit
values: per pixel (h, x^, k) with the context at bin centres, the loss is
-mean log P(k | h, x^) (`ride_tf.discrete.log_mass` of
`ride_tf.discrete.intensity_mixture`), the exact code length in nats per pixel.
"""
import dataclasses
import math
import time
import weakref

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ride_tf import discrete
from ride_tf.quantization import LN2
from ride_tf.checks import NonFiniteError, check_choice, check_fraction, check_integer, check_number
from ride_tf.defaults import OBJECTIVES, TRAINING
from ride_tf.evaluation import per_model_function

__all__ = ["finetune_model", "finetune_mcgsm", "finetune_mcgsm_discrete", "discrete_mean_log_mass",
           "FinetuneResult"]

# Traced L-BFGS functions per MCGSM layer, so that repeated fine-tuning (after
# every training stage) does not trace the optimizer again.
_FUNCTIONS = weakref.WeakKeyDictionary()


def discrete_mean_log_mass(model, h, x_hat, values):
    """mean log P(k | h, x^) in nats of pixels with MCGSM inputs h [M, dim_h], whitened neighbourhoods
    x^ [M, P * C] and 8-bit values k [M, C]: the discrete fine-tuning objective (negated).

    Computed in float32 (the exact sizes of `ride_tf.discrete` use float64; the
    two agree to about 1e-6 relative), which makes L-BFGS steps 2-3 times as fast.
    """
    mixture = discrete.intensity_mixture(model, h, x_hat, dtype=tf.float32)
    return tf.reduce_mean(discrete.log_mass(mixture, discrete.coding_values(model, values)))


def _lbfgs_functions(mcgsm, num_correction_pairs, mean_log_prob=None, data_spec=None, kind="density"):
    """Traced (first_chunk, run_chunk, evaluate, assign) for L-BFGS on `mcgsm`'s variables.

    mean_log_prob(*data) is the objective to maximise over data tuples of
    `data_spec` (default: the MCGSM's mean log-density of (x, y^) pairs).
    first_chunk(theta, max_iterations, data) runs L-BFGS from the parameters
    theta; run_chunk(state, max_iterations, data) continues from its state
    (traced on its first call: a fit of at most one chunk traces the
    optimizer once).  Each is traced once per MCGSM for any number of pixels.
    """
    key = (kind, num_correction_pairs)
    cache = _FUNCTIONS.setdefault(mcgsm, {})
    if key in cache:
        return cache[key]
    variables = mcgsm.trainable_variables
    shapes = [v.shape for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    if mean_log_prob is None:
        data_spec = (tf.TensorSpec([None, mcgsm.dim_in], tf.float32),
                     tf.TensorSpec([None, mcgsm.dim_out], tf.float32))

        def mean_log_prob(x, y):
            return tf.reduce_mean(mcgsm(x).log_prob(y))
    data_spec = tuple(data_spec)

    def assign(theta):
        for v, part, shape in zip(variables, tf.split(theta, sizes), shapes):
            v.assign(tf.reshape(part, shape))

    theta_spec = tf.TensorSpec([sum(sizes)], tf.float32)

    # Traced once and called from every place of the L-BFGS graph that evaluates the objective
    # (tracing it at each place costs minutes for the discrete objective).
    @tf.function(input_signature=[theta_spec, data_spec], experimental_attributes={"_noinline": True})
    def loss_and_gradients(theta, data):
        assign(theta)
        with tf.GradientTape() as tape:
            loss = -mean_log_prob(*data)
        grads = tape.gradient(loss, variables)
        return loss, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    def objective(data):
        return lambda theta: loss_and_gradients(theta, data)

    options = dict(num_correction_pairs=num_correction_pairs, tolerance=0.0, f_relative_tolerance=1e-9)

    def first_chunk(theta, max_iterations, data):
        return tfp.optimizer.lbfgs_minimize(objective(data), initial_position=theta, max_iterations=max_iterations,
                                            **options)

    def continue_chunk(previous, max_iterations, data):
        return tfp.optimizer.lbfgs_minimize(objective(data), initial_position=None,
                                            previous_optimizer_results=previous,
                                            max_iterations=max_iterations, **options)

    # One trace each for any number of pixels (every fine-tuning draws its own sample), counted per MCGSM
    # (`per_model_function`); the optimizer's state has the shapes of what the first chunk returns.
    iterations_spec = tf.TensorSpec([], tf.int32)
    first_chunk = per_model_function(first_chunk, input_signature=[theta_spec, iterations_spec, data_spec])
    continued = []

    def run_chunk(previous, max_iterations, data):
        if not continued:
            state_spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype),
                                               first_chunk.get_concrete_function().structured_outputs)
            continued.append(per_model_function(continue_chunk,
                                                input_signature=[state_spec, iterations_spec, data_spec]))
        return continued[0](previous, max_iterations, data)

    evaluate = per_model_function(lambda data: mean_log_prob(*data), input_signature=[data_spec])
    cache[key] = (first_chunk, run_chunk, evaluate, assign)
    return cache[key]



@dataclasses.dataclass
class FinetuneResult:
    """What `finetune_mcgsm` did.  Rates are log-likelihood rates in bit/px (larger is better).

    objective "density": the density rate of the (whitened) pixels, the
    paper's number; "discrete" (`finetune_mcgsm_discrete`): the mean log2 P(k)
    per pixel and channel, i.e. minus the exact code length (the
    `*_code_length` properties give it as a positive number of bit/px,
    smaller is better).
    """
    iterations: int
    train_rate: float
    validation_rate: float
    initial_validation_rate: float
    history: list  # (iteration, train_rate, validation_rate) after each chunk
    converged: bool
    objective: str = "density"

    @property
    def validation_code_length(self):
        """Exact code length in bit/px of the held-out pixels (objective "discrete"; NaN otherwise)."""
        return -self.validation_rate if self.objective == "discrete" else float("nan")

    @property
    def train_code_length(self):
        """Exact code length in bit/px of the training pixels (objective "discrete"; NaN otherwise)."""
        return -self.train_rate if self.objective == "discrete" else float("nan")


def _check_fit_arguments(owner, max_iter, validation_fraction, check_every, patience, num_correction_pairs,
                         max_seconds):
    check_integer(owner, "max_iter", max_iter, 0)
    check_fraction(owner, "validation_fraction", validation_fraction)
    check_integer(owner, "check_every", check_every, 1)
    check_integer(owner, "patience", patience, 1)
    check_integer(owner, "num_correction_pairs", num_correction_pairs, 1)
    if max_seconds is not None:
        check_number(owner, "max_seconds", max_seconds, low=0.0)


def finetune_model(model, images, max_iter=TRAINING["finetune_max_iter"], num_samples=TRAINING["finetune_samples"],
                   validation_fraction=0.1, seed=0, verbose=1, objective=None, **kwargs):
    """Fit a RIDE's MCGSM alone by L-BFGS on a fixed random sample of pixels of `images` (`RIDE.finetune`).

    The whitening is adapted first if it never was.  objective "density"
    (the log-density of dequantized pixels, `finetune_mcgsm`) or "discrete"
    (log P(k) of the 8-bit values of uint8 images, `finetune_mcgsm_discrete`);
    default: the model's `objective`.  `num_samples` pixels (about; at least
    1) are drawn uniformly over all pixels; `validation_fraction` in [0, 1)
    of them are held out for early stopping.  Other keyword arguments go to
    the fitting function.  Returns the `FinetuneResult`.
    """
    objective = check_choice("finetune", "objective", model.objective if objective is None else objective,
                             OBJECTIVES)
    check_integer("finetune", "num_samples", num_samples, 1)
    check_fraction("finetune", "validation_fraction", validation_fraction)
    if not model.whitening.is_adapted:
        model.adapt(images, seed=seed)
    if objective == "discrete":
        h, x_hat, values = model.sample_discrete_features(images, num_samples, seed=seed)
        return finetune_mcgsm_discrete(model, h, x_hat, values, max_iter=max_iter,
                                       validation_fraction=validation_fraction, seed=seed, verbose=verbose,
                                       **kwargs)
    h, y_hat = model.sample_features(images, num_samples, seed=seed)
    return finetune_mcgsm(model.mcgsm, h, y_hat, max_iter=max_iter, validation_fraction=validation_fraction,
                          seed=seed, verbose=verbose, rate_offset=float(model.whitening.log_det_jacobian.numpy()),
                          rate_divisor=model.num_channels * math.log(2.0), **kwargs)


def _split(arrays, validation_fraction, seed):
    """Random (train, validation) tuples of tf constants from arrays of equal length."""
    order = np.random.default_rng(seed).permutation(len(arrays[0]))
    num_val = int(round(validation_fraction * len(arrays[0])))
    val_idx, train_idx = order[:num_val], order[num_val:]
    return tuple(tf.constant(a[train_idx]) for a in arrays), tuple(tf.constant(a[val_idx]) for a in arrays)


def _run_lbfgs(mcgsm, functions, train_data, val_data, max_iter, check_every, patience, verbose, to_rate,
               objective, max_seconds):
    """The chunked L-BFGS loop with early stopping on the held-out data; returns the FinetuneResult."""
    first_chunk, run_chunk, evaluate, assign = functions
    variables = mcgsm.trainable_variables
    num_val = int(val_data[0].shape[0])
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    theta = tf.concat([tf.reshape(v, [-1]) for v in variables], 0)
    best_theta = theta
    initial_val = to_rate(evaluate(val_data)) if num_val else float("nan")
    best_val, since_best, history, state = initial_val, 0, [], None
    bar = keras.utils.Progbar(max_iter, verbose=verbose, unit_name="iteration",
                               stateful_metrics=["train_bpp", "val_bpp"])
    iterations, chunk_seconds = 0, 0.0
    while iterations < max_iter:
        # A chunk (check_every iterations and a held-out evaluation) that would end after the deadline, judged
        # by the last chunk's time, is not started; the first chunk always runs.
        if deadline is not None and iterations and time.monotonic() + chunk_seconds > deadline:
            break
        chunk_start = time.monotonic()
        target = min(max_iter, iterations + check_every)
        state = (first_chunk(theta, tf.constant(target), train_data) if state is None
                 else run_chunk(state, tf.constant(target), train_data))
        assign(state.position)  # the line search leaves its last trial point in the variables
        done = int(state.num_iterations)
        train_rate = to_rate(-state.objective_value)
        val_rate = to_rate(evaluate(val_data)) if num_val else float("nan")
        history.append((done, train_rate, val_rate))
        chunk_seconds = time.monotonic() - chunk_start
        bar.update(done, [("train_bpp", train_rate), ("val_bpp", val_rate)])
        stalled = done == iterations
        iterations = done
        if not num_val or val_rate > best_val or not np.isfinite(best_val):
            best_val, best_theta, since_best = val_rate, state.position, 0
        else:
            since_best += 1
        if bool(state.converged) or bool(state.failed) or stalled or since_best >= patience:
            break
    if verbose and iterations < max_iter:
        bar.update(iterations, finalize=True)
    assign(best_theta)
    train_rate = to_rate(evaluate(train_data))
    final_val = to_rate(evaluate(val_data)) if num_val else float("nan")
    return FinetuneResult(iterations=iterations, train_rate=train_rate, validation_rate=final_val,
                          initial_validation_rate=initial_val, history=history,
                          converged=state is not None and bool(state.converged), objective=objective)


def finetune_mcgsm(mcgsm, inputs, outputs, max_iter=TRAINING["finetune_max_iter"], validation_fraction=0.1,
                   check_every=25, patience=2, seed=0, verbose=1, rate_offset=0.0, rate_divisor=LN2,
                   num_correction_pairs=10, max_seconds=None):
    """Fit `mcgsm`'s variables to (inputs [M, dim_in], outputs [M, dim_out]) by L-BFGS.

    Args:
      mcgsm: a built `ride_tf.MCGSM`; its variables are updated in place (to the
        best held-out parameters seen).
      inputs, outputs: NumPy arrays of pairs; a `validation_fraction` of them is
        held out for early stopping (0 disables early stopping).
      max_iter: the most L-BFGS iterations.
      rate_offset, rate_divisor: reported rates are (log p + rate_offset) /
        rate_divisor, e.g. log|det W| and C ln 2 for bit/px of whitened pixels.
      max_seconds: seconds of wall-clock time (None: no limit): a chunk of `check_every` iterations
        that would end later, judged by the last chunk's duration, is not started (the first always runs).
    """
    _check_fit_arguments("finetune_mcgsm", max_iter, validation_fraction, check_every, patience,
                         num_correction_pairs, max_seconds)
    inputs = np.asarray(inputs, np.float32)
    outputs = np.asarray(outputs, np.float32).reshape(len(inputs), -1)
    if len(inputs) < 2:
        raise ValueError(f"finetune_mcgsm: need at least 2 samples, got {len(inputs)}.")
    if not (np.isfinite(inputs).all() and np.isfinite(outputs).all()):
        raise NonFiniteError("finetune_mcgsm: inputs or outputs contain NaN or infinite values.")
    train_data, val_data = _split((inputs, outputs), validation_fraction, seed)
    functions = _lbfgs_functions(mcgsm, num_correction_pairs)
    to_rate = lambda log_prob: (float(log_prob) + rate_offset) / rate_divisor
    return _run_lbfgs(mcgsm, functions, train_data, val_data, max_iter, check_every, patience, verbose,
                      to_rate, "density", max_seconds)


def finetune_mcgsm_discrete(model, h, x_hat, values, max_iter=TRAINING["finetune_max_iter"],
                            validation_fraction=0.1, check_every=25, patience=2, seed=0, verbose=1,
                            num_correction_pairs=10, max_seconds=None):
    """Fit `model.mcgsm` by L-BFGS on the discrete likelihood of 8-bit values.

    Args:
      model: a `ride_tf.RIDE` (its whitening gives the intensities' affine map).
      h: [M, dim_h] the MCGSM's inputs, x_hat: [M, P * C] the whitened
        neighbourhoods, values: [M, C] the pixels' 8-bit values, all computed
        with the contexts at bin centres (`RIDE.sample_discrete_features`).
      The loss is -mean log P(k | h, x^) (`discrete_mean_log_mass`), the exact
      code length in nats per pixel; the reported rates are its negation in
      bit/px (`FinetuneResult`, objective "discrete").  The other arguments
      are those of `finetune_mcgsm`.
    """
    _check_fit_arguments("finetune_mcgsm_discrete", max_iter, validation_fraction, check_every, patience,
                         num_correction_pairs, max_seconds)
    h = np.asarray(h, np.float32)
    x_hat = np.asarray(x_hat, np.float32).reshape(len(h), -1)
    values = np.asarray(values).reshape(len(h), -1)
    if len(h) < 2:
        raise ValueError(f"finetune_mcgsm_discrete: need at least 2 samples, got {len(h)}.")
    if not (np.isfinite(h).all() and np.isfinite(x_hat).all()):
        raise NonFiniteError("finetune_mcgsm_discrete: h or x_hat contain NaN or infinite values.")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("finetune_mcgsm_discrete: values must be 8-bit values 0..255.")
    values = values.astype(np.int32)
    mcgsm = model.mcgsm
    spec = (tf.TensorSpec([None, mcgsm.dim_in], tf.float32), tf.TensorSpec([None, x_hat.shape[1]], tf.float32),
            tf.TensorSpec([None, mcgsm.dim_out], tf.int32))
    functions = _lbfgs_functions(mcgsm, num_correction_pairs,
                                 lambda *data: discrete_mean_log_mass(model, *data), spec, kind="discrete")
    train_data, val_data = _split((h, x_hat, values), validation_fraction, seed)
    divisor = model.num_channels * math.log(2.0)
    return _run_lbfgs(mcgsm, functions, train_data, val_data, max_iter, check_every, patience, verbose,
                      lambda log_prob: float(log_prob) / divisor, "discrete", max_seconds)
