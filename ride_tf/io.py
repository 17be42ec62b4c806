"""Writing files so that a crash never leaves a half-written file under the final name.

Every writer here writes to a temporary name in the target's directory
(``.NAME.tmp-PID-RANDOM``, same file system, so the rename is atomic), flushes
it to disk, and only then renames it to the final name with `os.replace`.
If the writer fails or the process is killed, the final name still holds the
previous file (or nothing), never a partial one; a failed writer's temporary
file is removed (a killed process may leave one behind, under a name that
starts with a dot and contains ".tmp-").

The project's files all go through these helpers: models (`atomic_save_model`),
PNGs (`atomic_write_png`), figures (`atomic_savefig`), JSON records and
tables (`atomic_write_json`, `atomic_write_text`), compressed images
(`atomic_write_bytes`) and exported SavedModels (`atomic_directory`).

One writer is not atomic, by design: `open_line_stream`, the streamed output
of `ride-tf size` / `evaluate` over many files (JSON lines, CSV or a table),
which must keep every finished line when a run is interrupted.  It writes
line by line and flushes each line; a run killed in the middle of a line
leaves that partial line at the end, which `open_line_stream(...,
append=True)` cuts off before it appends (`--resume`).
This module imports neither TensorFlow nor Keras.
"""
import contextlib
import json
import os
import shutil
import uuid

__all__ = ["atomic_path", "atomic_directory", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_save_model", "atomic_savefig", "atomic_write_png", "is_temporary_name", "check_model_path",
           "open_line_stream"]

_TMP_MARK = ".tmp-"


def _check_path(path, owner):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{owner}: path must be a str or os.PathLike, got {type(path).__name__}.")
    path = os.fspath(path)
    if not path or path.endswith(os.sep) or os.path.basename(path) in ("", ".", ".."):
        raise ValueError(f"{owner}: {path!r} does not name a file.")
    if os.path.isdir(path):
        raise ValueError(f"{owner}: {path} is a directory.")
    return path


def is_temporary_name(name):
    """Whether a file name is one of this module's temporary names."""
    return os.path.basename(name).startswith(".") and _TMP_MARK in name


def _temporary_name(path, suffix=""):
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def _fsync_file(path):
    try:
        with open(path, "rb") as stream:
            os.fsync(stream.fileno())
    except OSError:       # e.g. file systems without fsync: the rename is still atomic
        pass


def _fsync_directory(directory):
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix="", owner="write"):
    """Yield a temporary path next to `path`; on normal exit it is renamed to `path`.

    `suffix` ends the temporary name (e.g. ".keras", which Keras requires, or
    ".png" for writers that pick the format by extension).  The directory is
    created if needed.  On an exception the temporary file is removed and
    `path` is left as it was.
    """
    path = _check_path(path, owner)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = _temporary_name(path, suffix)
    try:
        yield temporary
        if not os.path.isfile(temporary):
            raise OSError(f"{owner}: the writer did not create {temporary}")
        _fsync_file(temporary)
        os.replace(temporary, path)
        _fsync_directory(directory)
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


def atomic_write_bytes(path, data):
    """Write `data` (bytes-like) to `path` atomically; returns `path`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write_bytes: data must be bytes, got {type(data).__name__}.")
    with atomic_path(path, owner="atomic_write_bytes") as temporary:
        with open(temporary, "wb") as stream:
            stream.write(data)
    return os.fspath(path)


def atomic_write_text(path, text, encoding="utf-8"):
    """Write the str `text` to `path` atomically; returns `path`."""
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text: text must be a str, got {type(text).__name__}.")
    return atomic_write_bytes(path, text.encode(encoding))


def open_line_stream(path, append=False):
    """A text stream (UTF-8, "\\n" line ends) that a run writes its result lines to, one at a time; the caller
    flushes after each line.  append=False starts the file afresh; append=True continues it: a partial last
    line (what a killed writer leaves) is cut off first, so the file holds whole lines only."""
    path = _check_path(path, "open_line_stream")
    if append and os.path.exists(path):
        with open(path, "rb+") as stream:
            end = stream.seek(0, os.SEEK_END)
            keep = position = end
            while position > 0:
                start = max(0, position - 65536)
                stream.seek(start)
                newline = stream.read(position - start).rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                position = keep = start
            if keep < end:
                stream.truncate(keep)
    return open(path, "a" if append else "w", encoding="utf-8", newline="")


def atomic_write_json(path, obj, indent=1, **kwargs):
    """json.dumps(obj) to `path` atomically (the object is serialised before anything is written)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, **kwargs) + "\n")


def atomic_save_model(model, path, **kwargs):
    """`model.save(path)` for a Keras model, atomically (the temporary name also ends in .keras)."""
    path = _check_path(path, "atomic_save_model")
    if not path.endswith(".keras"):
        raise ValueError(f"atomic_save_model: the file name must end in .keras, got {path!r}.")
    with atomic_path(path, suffix=".keras", owner="atomic_save_model") as temporary:
        model.save(temporary, **kwargs)
    return path


def atomic_savefig(figure, path, **kwargs):
    """`figure.savefig(path, **kwargs)` (matplotlib) atomically; the format follows `path`'s extension."""
    path = _check_path(path, "atomic_savefig")
    extension = os.path.splitext(path)[1]
    if "format" not in kwargs and extension:
        kwargs["format"] = extension[1:].lower()
    with atomic_path(path, suffix=extension, owner="atomic_savefig") as temporary:
        figure.savefig(temporary, **kwargs)
    return path


def atomic_write_png(array, path):
    """Write a uint8 image [H, W], [H, W, 1] or [H, W, 3] as a PNG file atomically (Pillow)."""
    import numpy as np
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"atomic_write_png: the image must be uint8, got dtype {array.dtype}.")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or 0 in array.shape:
        raise ValueError(f"atomic_write_png: expected an image [H, W] or [H, W, 3], got shape {array.shape}.")
    with atomic_path(path, suffix=".png", owner="atomic_write_png") as temporary:
        Image.fromarray(np.ascontiguousarray(array)).save(temporary, format="PNG")
    return os.fspath(path)


@contextlib.contextmanager
def atomic_directory(path, owner="write"):
    """Yield a temporary directory next to `path`, renamed to `path` on normal exit.

    `path` must not exist, or be an empty directory (it is then replaced).
    On an exception, or if `path` appeared meanwhile, the temporary directory
    is removed.  Used for SavedModels, which are directories.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{owner}: path must be a str or os.PathLike, got {type(path).__name__}.")
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise ValueError(f"{owner}: {path} exists and is not an empty directory.")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temporary = _temporary_name(path)
    try:
        os.makedirs(temporary)
        yield temporary
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        os.rename(temporary, path)       # fails (OSError) if `path` was created meanwhile
        _fsync_directory(parent)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def check_model_path(path):
    """`path` (a str) if it names an existing regular file, else ValueError "PATH: no such model file" /
    "PATH: not a regular file"."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such model file")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file")
    return path

