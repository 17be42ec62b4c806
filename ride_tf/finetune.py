"""L-BFGS fitting of the MCGSM: moved to `ride_tf.training.finetune`; this module keeps the old import path working."""
from ride_tf.training.finetune import (  # noqa: F401
    finetune_model, finetune_mcgsm, finetune_mcgsm_discrete, discrete_mean_log_mass, FinetuneResult)

__all__ = ["finetune_model", "finetune_mcgsm", "finetune_mcgsm_discrete", "discrete_mean_log_mass", "FinetuneResult"]
