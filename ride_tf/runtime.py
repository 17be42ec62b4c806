"""TensorFlow's start-up, without its start-up log lines (no TensorFlow import here).

TensorFlow 2.21 writes informational lines while its libraries load
("oneDNN custom operations are on ...", "Could not find cuda drivers ...",
each twice, after "WARNING: All log messages before absl::InitializeLog() is
called are written to STDERR"), before any setting such as
TF_CPP_MIN_LOG_LEVEL is read.  `quiet_tensorflow_import` arranges that the
first ``import tensorflow`` of the process runs with the C-level stderr
(file descriptor 2) going to a temporary file; afterwards every captured
line except those informational ones (absl's "I...." lines and that banner)
is written to stderr again, in order, so warnings and errors of the import
still reach the user.  The devices are listed inside that window too; on a
machine without a GPU the CUDA build's "failed call to cuInit" error, which
only says that there is no GPU driver, is dropped as well.  `ride_tf` installs it when it is imported; importing
TensorFlow before `ride_tf` leaves TensorFlow's own behaviour.

Later C++ log lines are governed by TF_CPP_MIN_LOG_LEVEL, which ride_tf sets
to 2 (errors only) unless the environment sets it.
"""
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

__all__ = ["quiet_tensorflow_import", "is_startup_line", "register_models_with_keras"]

_STARTUP_LINE = re.compile(r"^(I\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog)")
# What the CUDA build of TensorFlow reports, as an error, on a machine without a GPU driver.
_NO_GPU_LINE = re.compile(r"^E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit")


def is_startup_line(line, has_gpu=True):
    """Whether a line of TensorFlow's stderr is one of the informational lines it writes while loading
    (with has_gpu=False also the CUDA build's "failed call to cuInit" on a machine without a GPU)."""
    return bool(_STARTUP_LINE.match(line) or (not has_gpu and _NO_GPU_LINE.match(line)))


def _quiet_exec(loader, module):
    """loader.exec_module(module) with fd 2 captured and re-emitted without TensorFlow's start-up lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()
    except (OSError, ValueError, AttributeError):     # no real file descriptor 2: import as usual
        return loader.exec_module(module)
    os.dup2(capture.fileno(), 2)
    has_gpu = True
    try:
        loader.exec_module(module)
        # The devices are set up here rather than at the first op, so that what they log is filtered too.
        has_gpu = bool(module.config.list_physical_devices("GPU"))
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        kept, previous = [], ""
        for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
            # cpu_feature_guard's message continues on a line of its own.
            continued = "cpu_feature_guard" in previous and line.startswith("To enable the following instructions")
            if not (is_startup_line(line, has_gpu) or continued):
                kept.append(line)
            previous = line
        capture.close()
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _WrappedLoader(importlib.abc.Loader):
    """A module's own loader, with `exec_module` run through `run(loader, module)`."""

    def __init__(self, loader, run):
        self.loader, self.run = loader, run

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.run(self.loader, module)


class _OnceFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level module `name` once, with its loader wrapped by `run`; then steps aside."""

    def __init__(self, name, run):
        self.name, self.run = name, run

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _WrappedLoader(spec.loader, self.run)
        return spec


def _install_once(name, run):
    if name not in sys.modules and not any(isinstance(f, _OnceFinder) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _OnceFinder(name, run))


def quiet_tensorflow_import():
    """Make the process's first ``import tensorflow`` quiet (see the module docstring); idempotent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _install_once("tensorflow", _quiet_exec)


def register_models_with_keras(module="ride_tf.model"):
    """Make `keras.models.load_model` find ride_tf's classes whenever Keras is used, without importing Keras now.

    Keras locates custom classes through a registry that their module fills
    when it is imported.  If Keras is already loaded, `module` is imported at
    once; otherwise it is imported right after Keras, when Keras is first
    imported.  So ``import ride_tf; import keras; keras.models.load_model(...)``
    works, and `ride-tf --help`, which never imports Keras, stays cheap.
    """
    def then_register(loader, keras):
        loader.exec_module(keras)
        importlib.import_module(module)

    if "keras" in sys.modules:
        importlib.import_module(module)
    else:
        _install_once("keras", then_register)
