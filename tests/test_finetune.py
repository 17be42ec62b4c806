"""ride_tf.training.finetune: the L-BFGS loop's wall-clock budget."""
import time

import numpy as np

from ride_tf import MCGSM
from ride_tf.training.finetune import finetune_mcgsm


def data(seed=0, num=4000, dim_in=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, dim_in)).astype(np.float32)
    y = (x @ rng.normal(size=(dim_in, 1)) * 0.5 + rng.standard_t(3, size=(num, 1))).astype(np.float32)
    return x, y


def fitted(max_seconds, max_iter=200, check_every=5):
    layer = MCGSM(num_components=3, num_scales=2, num_features=4)
    layer.build((None, 6))
    x, y = data()
    started = time.monotonic()
    result = finetune_mcgsm(layer, x, y, max_iter=max_iter, check_every=check_every, patience=1000, verbose=0,
                            max_seconds=max_seconds)
    return result, time.monotonic() - started


def test_a_chunk_that_would_pass_the_deadline_is_not_started():
    """max_seconds=0: the first chunk runs, no other; no budget: as many chunks as max_iter allows."""
    result, _ = fitted(max_seconds=0.0)
    assert result.iterations == 5 and len(result.history) == 1
    unlimited, _ = fitted(max_seconds=None, max_iter=20)
    assert unlimited.iterations == 20 or unlimited.converged
    assert len(unlimited.history) >= 2


def test_the_budget_is_kept_from_the_second_chunk_on():
    """With a budget of about 3 chunks' time, the loop stops before it (the chunk time is measured, not guessed)."""
    _, seconds = fitted(max_seconds=0.0)         # one chunk, with the set-up and the final evaluation
    budget = max(3.0 * seconds, 0.5)
    result, spent = fitted(max_seconds=budget, max_iter=10_000)
    assert 1 <= len(result.history) < 10_000 // 5
    assert spent < budget + 2.0 * seconds + 1.0, (spent, budget, seconds)
