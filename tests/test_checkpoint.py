"""Training that survives faults: checkpoints, resuming after SIGKILL, rolled-back stages (`ride_tf.training.checkpoint`)."""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from ride_tf import RIDE, data, training
from ride_tf.training.checkpoint import TrainingCheckpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN = textwrap.dedent("""
    import os, signal, sys, json
    sys.path.insert(0, {root!r})
    import numpy as np, keras
    from ride_tf import RIDE, data, training

    class KillAt(keras.callbacks.Callback):
        '''SIGKILL in the middle of stage `stage`'s epoch (after `batch` batches).'''
        def __init__(self, stage, batch):
            super().__init__()
            self.stage, self.batch, self.calls = stage, batch, 0
        def on_train_begin(self, logs=None):
            self.calls += 1
        def on_train_batch_end(self, batch, logs=None):
            if self.calls == self.stage + 1 and batch == self.batch:
                os.kill(os.getpid(), signal.SIGKILL)

    def run(checkpoint_dir=None, resume=False, kill=None):
        keras.utils.set_random_seed(0)
        model = RIDE(num_hiddens=4, num_layers=1, num_components=2, num_scales=2, num_features=3)
        images = data.dead_leaves(6, size=24, seed=1)
        stages = training.train(model, images[:5], validation_images=images[5:], patch_sizes=(8, 10, 12),
                                num_patches=40, batch_size=10, optimizer="adam", finetune_max_iter=5,
                                finetune_samples=2000, patience=5, verbose=0, seed=3,
                                checkpoint_dir=checkpoint_dir, resume=resume,
                                callbacks=[KillAt(*kill)] if kill else None)
        return model, stages

    if __name__ == "__main__":
        directory, mode = sys.argv[1], sys.argv[2]
        if mode == "killed":                    # dies in the middle of the second stage
            run(directory, resume=True, kill=(1, 1))
        model, stages = run(directory, resume=True)
        np.savez(os.path.join(directory, "final.npz"), *model.get_weights())
        print(json.dumps([s.kept for s in stages]))
""")


def kill_resume_and_rerun(tmp_path, source):
    """Run the script `source` with mode "killed" (it SIGKILLs itself), then "resume" in a new process, then its
    `run()` uninterrupted in this process.

    Returns (the checkpoint's state after the kill, the resumed run's last line of output as JSON, its final
    weights, what the uninterrupted `run()` returned).
    """
    script = tmp_path / "run.py"
    script.write_text(source.format(root=ROOT))
    directory = tmp_path / "checkpoint"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    killed = subprocess.run([sys.executable, str(script), str(directory), "killed"], capture_output=True,
                            text=True, env=env, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]          # SIGKILL
    state = json.loads((directory / "state.json").read_text())
    resumed = subprocess.run([sys.executable, str(script), str(directory), "resume"], capture_output=True,
                             text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    namespace = {}
    exec(compile(source.format(root=ROOT), "run", "exec"), namespace)
    uninterrupted = namespace["run"]()
    with np.load(directory / "final.npz") as final:
        weights = [final[f"arr_{k}"] for k in range(len(final.files))]
    return state, json.loads(resumed.stdout.strip().splitlines()[-1]), weights, uninterrupted


def test_a_run_killed_mid_epoch_resumes_and_matches_an_uninterrupted_run(tmp_path):
    state, kept, weights, (model, stages) = kill_resume_and_rerun(tmp_path, RUN)
    assert len(state["stages"]) == 1 and not state["finished"]      # stage 1 was saved, stage 2 was not
    assert len(weights) == len(model.get_weights())
    for got, want in zip(weights, model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)
    assert kept == [s.kept for s in stages]
    # Only the newest weights file is kept, and no temporary file is left behind.
    assert sorted(os.listdir(tmp_path / "checkpoint")) == ["final.npz", "state.json",
                                                           f"weights-{state['generation'] + 2}.npz"]


def test_resuming_a_finished_run_changes_nothing_and_other_settings_are_refused(tmp_path):
    keras.utils.set_random_seed(0)
    model = RIDE(num_hiddens=3, num_layers=1, num_components=2, num_scales=2, num_features=3)
    images = data.dead_leaves(4, size=20, seed=2)
    kwargs = dict(patch_sizes=(8, 10), num_patches=20, batch_size=10, finetune_max_iter=0, verbose=0,
                  checkpoint_dir=tmp_path / "run")
    stages = training.train(model, images, **kwargs)
    weights = model.get_weights()
    again = training.train(model, images, resume=True, **kwargs)
    assert [s.kept for s in again] == [s.kept for s in stages]
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="other settings.*patch_sizes"):
        training.train(model, images, resume=True, **dict(kwargs, patch_sizes=(8, 12)))
    with pytest.raises(ValueError, match="checkpoint_dir"):
        training.train(model, images, resume=True, patch_sizes=(8,), num_patches=20, batch_size=10)
    with pytest.raises(ValueError, match="num_patches"):
        training.train(model, images, patch_sizes=(8,), num_patches=5, batch_size=10)


def test_a_stage_with_non_finite_values_is_rolled_back_and_the_run_goes_on(tmp_path):
    keras.utils.set_random_seed(0)
    model = RIDE(num_hiddens=3, num_layers=1, num_components=2, num_scales=2, num_features=3)
    images = data.dead_leaves(4, size=20, seed=2)

    class Poison(keras.callbacks.Callback):
        """Makes the weights NaN in the second stage after its first batch (the next batch's loss is not
        finite: NonFiniteLossError), and in the third at its end (the weights' check: NonFiniteError)."""
        calls = 0

        def on_train_begin(self, logs=None):
            Poison.calls += 1

        def poison(self):
            self.model.mcgsm.means.assign(np.full(self.model.mcgsm.means.shape, np.nan))

        def on_train_batch_end(self, batch, logs=None):
            if Poison.calls == 2 and batch == 0:
                self.poison()

        def on_train_end(self, logs=None):
            if Poison.calls == 3:
                self.poison()

    stages = training.train(model, images, patch_sizes=(8, 8, 8, 10), num_patches=20, batch_size=10,
                            finetune_max_iter=0, patience=4, verbose=0, callbacks=[Poison()],
                            checkpoint_dir=tmp_path / "run")
    assert [s.rolled_back for s in stages] == [False, True, True, False]
    assert "loss is not finite" in stages[1].error and not stages[1].kept
    assert "non-finite" in stages[2].error and not stages[2].kept
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(model.log_likelihood_rate(images, seed=0)).all()


def test_checkpoint_files_are_complete_or_absent(tmp_path):
    checkpoint = TrainingCheckpoint(tmp_path / "c")
    assert not checkpoint.exists()
    checkpoint.write({"stages": [], "note": float("nan")}, [np.ones(3)], [np.zeros(2)], [np.arange(4.0)])
    checkpoint.write({"stages": [1]}, [np.full(3, 2.0)])
    state, model, best, optimizer = checkpoint.load()
    assert state["stages"] == [1] and state["generation"] == 2
    np.testing.assert_array_equal(model[0], np.full(3, 2.0))
    assert best is None and optimizer == []
    assert sorted(os.listdir(tmp_path / "c")) == ["state.json", "weights-2.npz"]
    os.remove(tmp_path / "c" / "weights-2.npz")
    with pytest.raises(ValueError, match="missing or damaged"):
        checkpoint.load()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        TrainingCheckpoint(tmp_path / "file")


FIT_RUN = textwrap.dedent("""
    import os, signal, sys, json
    sys.path.insert(0, {root!r})
    import numpy as np, keras
    from ride_tf import RIDE, data, training
    from ride_tf.training.checkpoint import FitCheckpoint

    class KillAt(keras.callbacks.Callback):
        '''SIGKILL after batch `batch` of epoch `epoch`.'''
        def __init__(self, epoch, batch):
            super().__init__()
            self.kill_epoch, self.batch, self.epoch = epoch, batch, None
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == self.kill_epoch and batch == self.batch:
                os.kill(os.getpid(), signal.SIGKILL)

    def run(directory=None, kill=None):
        keras.utils.set_random_seed(0)
        model = RIDE(num_hiddens=4, num_layers=1, num_components=2, num_scales=2, num_features=3)
        images = data.dead_leaves(5, size=24, seed=1)
        model.adapt(images, seed=0)
        model.compile(optimizer=training.make_optimizer("adam", 3e-3))
        curriculum = training.PatchCurriculum(images, patch_sizes=(8, 10, 12), learning_rates=(3e-3, 1e-3, 3e-4),
                                              num_patches=40, batch_size=10, seed=3)
        finetune = training.FinetuneMCGSM(training.sample_patches(images, 12, 20, seed=4), max_iter=5,
                                          num_samples=2000, seed=3)
        # The checkpoint first: it must save after the fine-tuning all the same.
        callbacks = ([FitCheckpoint(directory, verbose=0)] if directory else []) + [curriculum, finetune]
        callbacks += [KillAt(*kill)] if kill else []
        history = model.fit(curriculum.dataset(), epochs=3, callbacks=callbacks, verbose=0)
        return model, callbacks[0].history if directory else history.history

    if __name__ == "__main__":
        directory, mode = sys.argv[1], sys.argv[2]
        if mode == "killed":                    # dies in the middle of the second epoch
            run(directory, kill=(1, 1))
        model, history = run(directory)
        np.savez(os.path.join(directory, "final.npz"), *model.get_weights())
        print(json.dumps(history["loss"]))
""")


def test_plain_fit_with_the_project_callbacks_killed_mid_epoch_resumes_and_matches(tmp_path):
    """FitCheckpoint: fit + PatchCurriculum + FinetuneMCGSM, SIGKILLed in epoch 2, resumed, equals a run without kill."""
    state, losses, weights, (model, history) = kill_resume_and_rerun(tmp_path, FIT_RUN)
    assert state["kind"] == "fit" and state["epochs_done"] == 1           # epoch 1 saved, epoch 2 lost
    assert len(weights) == len(model.get_weights())
    for got, want in zip(weights, model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert len(losses) == 3                                                # the history spans both runs
    np.testing.assert_allclose(losses, history["loss"], rtol=1e-4)


def test_fit_checkpoint_refuses_other_models_and_train_checkpoints(tmp_path):
    from ride_tf.training.checkpoint import FitCheckpoint

    keras.utils.set_random_seed(0)
    images = data.dead_leaves(3, size=16, seed=2)

    def fit(model, directory, epochs=1):
        model.adapt(images, seed=0)
        model.compile(optimizer=training.make_optimizer("adam", 1e-3))
        return model.fit(images[:2], epochs=epochs, batch_size=2, verbose=0,
                         callbacks=[FitCheckpoint(directory, verbose=0)])

    small = dict(num_layers=1, num_components=2, num_scales=2, num_features=3)
    model = RIDE(num_hiddens=3, **small)
    fit(model, tmp_path / "fit", epochs=2)
    weights = model.get_weights()
    assert len(fit(model, tmp_path / "fit", epochs=2).history.get("loss", [])) == 0   # finished: nothing to do
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="another model"):
        fit(RIDE(num_hiddens=4, **small), tmp_path / "fit")
    training.train(RIDE(num_hiddens=3, **small), images, patch_sizes=(8,), num_patches=10, batch_size=10,
                   finetune_max_iter=0, verbose=0, checkpoint_dir=tmp_path / "train")
    with pytest.raises(ValueError, match="checkpoint of a `train` run"):
        fit(RIDE(num_hiddens=3, **small), tmp_path / "train")
    with pytest.raises(ValueError, match="plain `fit`"):
        training.train(RIDE(num_hiddens=3, **small), images, patch_sizes=(8,), num_patches=10, batch_size=10,
                       finetune_max_iter=0, verbose=0, checkpoint_dir=tmp_path / "fit", resume=True)
    with pytest.raises(TypeError, match="delete_on_end"):
        FitCheckpoint(tmp_path / "x", delete_on_end="yes")
