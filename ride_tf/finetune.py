"""L-BFGS fitting of an MCGSM on fixed inputs, with early stopping on held-out pixels.

The paper trains the MCGSM image model, and fine-tunes RIDE's MCGSM after each
training stage, with L-BFGS (up to 500 iterations) on the hidden states of a
fixed sample of pixels.  Here the objective is the mean negative
log-likelihood of the training pixels; L-BFGS runs in chunks of `check_every`
iterations (continuing its state), after each of which the held-out pixels
are scored: the best parameters seen are kept, and the run stops once the
held-out score has not improved for `patience` chunks.
"""
import dataclasses
import weakref

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["finetune_mcgsm", "FinetuneResult"]

# Traced L-BFGS functions per MCGSM layer, so that repeated fine-tuning (after
# every training stage) does not trace the optimizer again.
_FUNCTIONS = weakref.WeakKeyDictionary()


def _lbfgs_functions(mcgsm, num_correction_pairs):
    key = (num_correction_pairs,)
    cache = _FUNCTIONS.setdefault(mcgsm, {})
    if key in cache:
        return cache[key]
    variables = mcgsm.trainable_variables
    shapes = [v.shape for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    data_spec = [tf.TensorSpec([None, mcgsm.dim_in], tf.float32), tf.TensorSpec([None, mcgsm.dim_out], tf.float32)]

    def assign(theta):
        for v, part, shape in zip(variables, tf.split(theta, sizes), shapes):
            v.assign(tf.reshape(part, shape))

    def mean_log_prob(x, y):
        return tf.reduce_mean(mcgsm(x).log_prob(y))

    def objective(x, y):
        def value_and_gradients(theta):
            assign(theta)
            with tf.GradientTape() as tape:
                loss = -mean_log_prob(x, y)
            grads = tape.gradient(loss, variables)
            return loss, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
        return value_and_gradients

    options = dict(num_correction_pairs=num_correction_pairs, tolerance=0.0, f_relative_tolerance=1e-9)

    @tf.function(reduce_retracing=True)
    def run_chunk(previous, max_iterations, x, y):
        return tfp.optimizer.lbfgs_minimize(objective(x, y), initial_position=None,
                                            previous_optimizer_results=previous,
                                            max_iterations=max_iterations, **options)

    @tf.function(input_signature=[tf.TensorSpec([sum(sizes)], tf.float32)] + data_spec)
    def start(theta, x, y):
        return tfp.optimizer.lbfgs_minimize(objective(x, y), initial_position=theta, max_iterations=0,
                                            **options)

    evaluate = tf.function(mean_log_prob, input_signature=data_spec)
    cache[key] = (run_chunk, start, evaluate, assign)
    return cache[key]



@dataclasses.dataclass
class FinetuneResult:
    """What `finetune_mcgsm` did.  Rates are log-likelihood rates in bit/px (larger is better)."""
    iterations: int
    train_rate: float
    validation_rate: float
    initial_validation_rate: float
    history: list  # (iteration, train_rate, validation_rate) after each chunk
    converged: bool


def finetune_mcgsm(mcgsm, inputs, outputs, max_iter=500, validation_fraction=0.1, check_every=25,
                   patience=2, seed=0, verbose=1, rate_offset=0.0, rate_divisor=np.log(2.0),
                   num_correction_pairs=10):
    """Fit `mcgsm`'s variables to (inputs [M, dim_in], outputs [M, dim_out]) by L-BFGS.

    Args:
      mcgsm: a built `ride_tf.MCGSM`; its variables are updated in place (to the
        best held-out parameters seen).
      inputs, outputs: NumPy arrays of pairs; a `validation_fraction` of them is
        held out for early stopping (0 disables early stopping).
      max_iter: the most L-BFGS iterations.
      rate_offset, rate_divisor: reported rates are (log p + rate_offset) /
        rate_divisor, e.g. log|det W| and C ln 2 for bit/px of whitened pixels.
    """
    inputs = np.asarray(inputs, np.float32)
    outputs = np.asarray(outputs, np.float32).reshape(len(inputs), -1)
    if len(inputs) < 2:
        raise ValueError(f"finetune_mcgsm: need at least 2 samples, got {len(inputs)}.")
    if not (np.isfinite(inputs).all() and np.isfinite(outputs).all()):
        raise ValueError("finetune_mcgsm: inputs or outputs contain NaN or infinite values.")
    order = np.random.default_rng(seed).permutation(len(inputs))
    num_val = int(round(validation_fraction * len(inputs)))
    val_idx, train_idx = order[:num_val], order[num_val:]
    x_train, y_train = tf.constant(inputs[train_idx]), tf.constant(outputs[train_idx])
    x_val, y_val = tf.constant(inputs[val_idx]), tf.constant(outputs[val_idx])

    run_chunk, start, evaluate, assign = _lbfgs_functions(mcgsm, num_correction_pairs)
    variables = mcgsm.trainable_variables
    to_rate = lambda log_prob: (float(log_prob) + rate_offset) / rate_divisor

    theta = tf.concat([tf.reshape(v, [-1]) for v in variables], 0)
    best_theta = theta
    initial_val = to_rate(evaluate(x_val, y_val)) if num_val else float("nan")
    best_val, since_best, history = initial_val, 0, []
    state = start(theta, x_train, y_train)
    bar = keras.utils.Progbar(max_iter, verbose=verbose, unit_name="iteration",
                               stateful_metrics=["train_bpp", "val_bpp"])
    iterations = 0
    while iterations < max_iter:
        target = min(max_iter, iterations + check_every)
        state = run_chunk(state, tf.constant(target), x_train, y_train)
        assign(state.position)  # the line search leaves its last trial point in the variables
        done = int(state.num_iterations)
        train_rate = to_rate(-state.objective_value)
        val_rate = to_rate(evaluate(x_val, y_val)) if num_val else float("nan")
        history.append((done, train_rate, val_rate))
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
    train_rate = to_rate(evaluate(x_train, y_train))
    final_val = to_rate(evaluate(x_val, y_val)) if num_val else float("nan")
    return FinetuneResult(iterations=iterations, train_rate=train_rate, validation_rate=final_val,
                          initial_validation_rate=initial_val, history=history,
                          converged=bool(state.converged))
