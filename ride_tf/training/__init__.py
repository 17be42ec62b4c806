"""Training: the paper's recipe and its parts.

    recipe       `train`, the recipe as one call, from small steps; `TrainingStage`; the MCGSM baseline
    patches      random flipped patches of in-memory images (`sample_patches`, `patch_dataset`)
    schedule     optimizers and learning-rate schedules
    callbacks    `PatchCurriculum`, `FinetuneMCGSM`, `StopAt` for plain `model.fit`
    finetune     L-BFGS fitting of the MCGSM with early stopping
    checkpoint   a run's state on disk: `TrainingCheckpoint`, `FitCheckpoint` (resumable `fit`)

The names are imported on first use.
"""
from ride_tf.defaults import NATURAL_IMAGE_PATCH_SIZES, TEXTURE_PATCH_SIZES  # noqa: F401
from ride_tf.lazy_imports import lazy_exports

_EXPORTS = {
    **{name: "ride_tf.training.recipe" for name in (
        "train", "TrainingStage", "fit_mcgsm", "fit_baseline", "validation_scores", "check_train_arguments",
        "SELECTION")},
    **{name: "ride_tf.training.patches" for name in ("sample_patches", "patch_dataset", "as_image_list")},
    **{name: "ride_tf.training.schedule" for name in (
        "paper_learning_rates", "default_learning_rates", "make_optimizer", "DEFAULT_LEARNING_RATES")},
    **{name: "ride_tf.training.callbacks" for name in ("PatchCurriculum", "FinetuneMCGSM", "StopAt")},
    **{name: "ride_tf.training.finetune" for name in (
        "finetune_model", "finetune_mcgsm", "finetune_mcgsm_discrete", "discrete_mean_log_mass", "FinetuneResult")},
    **{name: "ride_tf.training.checkpoint" for name in ("TrainingCheckpoint", "FitCheckpoint", "CHECKPOINT_VERSION")},
    **{name: f"ride_tf.training.{name}" for name in (
        "recipe", "patches", "schedule", "callbacks", "finetune", "checkpoint")},
}
__all__ = sorted(_EXPORTS) + ["NATURAL_IMAGE_PATCH_SIZES", "TEXTURE_PATCH_SIZES"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
