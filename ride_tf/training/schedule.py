"""Optimizers and learning-rate schedules of the training recipe (the defaults: `ride_tf.defaults`)."""
import keras
import numpy as np

from ride_tf.checks import check_choice, check_integer, check_number
from ride_tf.defaults import LEARNING_RATES, OPTIMIZERS

__all__ = ["paper_learning_rates", "default_learning_rates", "make_optimizer", "DEFAULT_LEARNING_RATES"]

# (start, stop) of the geometric schedule per optimizer; see `ride_tf.defaults` for the measurements.
DEFAULT_LEARNING_RATES = LEARNING_RATES


def paper_learning_rates(num_stages, start=1.0, stop=1e-4):
    """Learning rates decreasing geometrically from `start` to `stop` over the stages.

    The paper's values (1 to 1e-4) belong to its Caffe loss scaling; with this
    package's loss (mean negative log-likelihood in bit/px) SGD at 1.0 diverged
    on dead leaves, so `train` starts lower by default (see DEFAULT_LEARNING_RATES).
    """
    if num_stages == 1:
        return [start]
    return list(np.geomspace(start, stop, num_stages))


def default_learning_rates(optimizer, num_stages):
    """The default schedule of `train`: `num_stages` rates from DEFAULT_LEARNING_RATES[optimizer]."""
    check_choice("train", "optimizer", optimizer, OPTIMIZERS)
    return paper_learning_rates(check_integer("train", "the number of stages", num_stages, 1),
                                *DEFAULT_LEARNING_RATES[optimizer])


def make_optimizer(name, learning_rate, momentum=0.9, clipnorm=1.0):
    """'sgd' (with momentum, the paper's choice) or 'adam', with gradient-norm clipping."""
    check_number("make_optimizer", "learning_rate", learning_rate, low=0.0, low_open=True)
    check_number("make_optimizer", "momentum", momentum, low=0.0, high=1.0, high_open=True)
    if clipnorm is not None:
        check_number("make_optimizer", "clipnorm", clipnorm, low=0.0, low_open=True)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, clipnorm=clipnorm)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}.")
