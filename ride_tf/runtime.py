"""The process's settings: TensorFlow's start-up without its start-up log lines, and RIDE_TF_NATIVE (no TensorFlow
import at module level).

TensorFlow 2.21 writes informational lines while its libraries load
("oneDNN custom operations are on ...", "Could not find cuda drivers ...",
each twice, after "WARNING: All log messages before absl::InitializeLog() is
called are written to STDERR"), before any setting such as
TF_CPP_MIN_LOG_LEVEL is read.  `quiet_tensorflow` imports TensorFlow with the
C-level stderr (file descriptor 2) going to a temporary file; afterwards
every captured line except those informational ones (absl's "I...." lines
and that banner) is written to stderr again, in order, so warnings and
errors of the import still reach the user.  The devices are listed inside
that window too; on a machine without a GPU the CUDA build's "failed call to
cuInit" error, which only says that there is no GPU driver, is dropped as
well.

Importing `ride_tf` changes nothing of this: the entry points that start
TensorFlow (the command line's subcommands that need the float model,
`examples/`, `benchmarks/`) call `quiet_tensorflow()` first; a program of
the user's that imports TensorFlow itself sees TensorFlow's own behaviour.

This is the one place where the package sets TF_CPP_MIN_LOG_LEVEL: to 2
(errors only) when `quiet_tensorflow` runs, unless the environment sets it,
and where it reads RIDE_TF_NATIVE (`native_setting`, once per process), which
the codec's C kernels and the palette coder's C version both follow
(docs/reference.md lists the environment variables the package reads).
"""
import importlib
import os
import re
import sys
import tempfile

__all__ = ["quiet_tensorflow", "is_startup_line", "native_setting", "LOG_LEVEL", "NATIVE_SETTINGS"]

# TensorFlow's C++ log level while ride-tf's entry points run, unless the environment sets TF_CPP_MIN_LOG_LEVEL.
LOG_LEVEL = "2"

_STARTUP_LINE = re.compile(r"^(I\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog)")
# RIDE_TF_NATIVE's values: "0" the codec's reference path (no C kernels, the palette coder's included); "generic",
# "avx2", "avx512" cap the instruction set of the C kernels; "1" (or unset) the best the CPU has.
NATIVE_SETTINGS = ("0", "1", "generic", "avx2", "avx512")
_NATIVE = []

# What the CUDA build of TensorFlow reports, as an error, on a machine without a GPU driver.
_NO_GPU_LINE = re.compile(r"^E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit")


def is_startup_line(line, has_gpu=True):
    """Whether a line of TensorFlow's stderr is one of the informational lines it writes while loading
    (with has_gpu=False also the CUDA build's "failed call to cuInit" on a machine without a GPU)."""
    return bool(_STARTUP_LINE.match(line) or (not has_gpu and _NO_GPU_LINE.match(line)))


def _kept_lines(text, has_gpu):
    """The captured stderr of TensorFlow's import without its start-up lines (a list of lines)."""
    kept, previous = [], ""
    for line in text.splitlines(keepends=True):
        # cpu_feature_guard's message continues on a line of its own.
        continued = "cpu_feature_guard" in previous and line.startswith("To enable the following instructions")
        if not (is_startup_line(line, has_gpu) or continued):
            kept.append(line)
        previous = line
    return kept


def quiet_tensorflow():
    """Import TensorFlow now without its start-up lines (see the module docstring) and return it.

    Idempotent; where TensorFlow is already imported it is returned as it is."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", LOG_LEVEL)
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()
    except (OSError, ValueError, AttributeError):     # no real file descriptor 2: import as usual
        return importlib.import_module("tensorflow")
    os.dup2(capture.fileno(), 2)
    has_gpu = True
    try:
        tensorflow = importlib.import_module("tensorflow")
        # The devices are set up here rather than at the first op, so that what they log is filtered too.
        has_gpu = bool(tensorflow.config.list_physical_devices("GPU"))
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        kept = _kept_lines(capture.read().decode("utf-8", "replace"), has_gpu)
        capture.close()
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
    return tensorflow


def native_setting():
    """RIDE_TF_NATIVE (one of `NATIVE_SETTINGS`; unset: "1"), read once per process; ValueError for another value."""
    if not _NATIVE:
        value = os.environ.get("RIDE_TF_NATIVE", "1")
        if value not in NATIVE_SETTINGS:
            raise ValueError(f"RIDE_TF_NATIVE={value!r}: expected one of {', '.join(NATIVE_SETTINGS)}.")
        _NATIVE.append(value)
    return _NATIVE[0]
