"""Many image files in one run of `ride-tf size` and `ride-tf evaluate`: the inputs, the worker processes, the
streamed output, the summary, `--resume` and the exit status.

The subcommand measures one image; this module does everything else.  A
subcommand's module (`ride_tf.cli.size`, `ride_tf.cli.evaluate`) provides:

    prepare(options) -> models
        Once per process, before its first image: what every image needs
        (the model of --model loaded, TensorFlow started where it is used).
        Raising CommandError (or ValueError, OSError, ...) stops the run: one
        line, exit status 1.  `models` is handed to every `measure` call of
        that process; measure may add to it (a per-process cache).
    measure(path, options, models) -> row
        One image file -> a dict of JSON values with at least `path`,
        `height`, `width`, `channels` and `bits_per_pixel` (and `bits` and
        `bytes` for sizes).  Raising CommandError (or any other Exception) is
        that file's failure: an error row, and the run goes on.  It must not
        depend on the images measured before it in the process, so that every
        --jobs gives the same rows.
    FIELDS
        the row's keys in order (the CSV columns, before `error`).
    table_header(options, width), table_line(row, width) -> str;
    table_footer(summary, width) -> list of str (lines before the summary).
    json_report(options, rows, errors, summary) -> dict: the --json document.

`options` is an argparse.Namespace of the command's option values (no
functions: it is pickled to the worker processes).

Inputs (`inputs`): files as given, folders walked recursively (sorted, names
starting with "." skipped) for the files that match --pattern (default
`IMAGE_PATTERNS`), and the paths of --from-list FILE (one per line, "-" for
standard input; folders there are walked too).  A path given twice is
measured once (the first time).  A folder without a matching file is a
failure of its own.

Output: a row per image, written and flushed as soon as it is measured, in
input order: a table (default), JSON lines (--jsonl; a failure is
{"path": ..., "error": ...}) or CSV (--csv; `error` empty for a measured
image), to standard output or --output FILE; --json keeps the one JSON
document of the whole run.  Then the summary (`Summary`): at the end of the
table, or on standard error for JSON lines and CSV on standard output (on
standard output when --output takes the rows).  Each failure also prints
`ride-tf: error: PATH: ...` on standard error.  A progress bar (tqdm) runs on
standard error when it is a terminal.

--resume continues an --output file of JSON lines or CSV: the images that
already have a line there (measured or failed) are skipped, the new lines are
appended, and the summary counts the whole file.  Exit status: 0 when every
image was measured, `EXIT_FAILED` (1) when any failed (in a resumed file:
any line of the file); 2 for usage errors; `EXIT_BROKEN_PIPE` (141) when the
reader of standard output goes away (`... | head`), quietly.

--jobs N measures in N worker processes (started with "spawn": never a fork
of a process that has imported TensorFlow), each running `prepare` once, the
images sent in small chunks, the rows written in input order; an option
`threads` that the command leaves unset (threads per image) becomes cores / N
in the workers, as do TensorFlow's and the BLAS's threads.  N = 1 measures
in this process.  Without --jobs: the cores available, or 1 when the images
hold fewer than `POOL_MIN_SAMPLES` values in all (starting a worker costs
seconds).  A worker that dies (killed for memory, say) is replaced; the
images it held are measured again one at a time, and the one that kills a
worker again is reported as failed.
"""
import argparse
import collections
import concurrent.futures
import csv
import fnmatch
import importlib
import json
import multiprocessing
import os
import signal
import sys

from ride_tf import io
from ride_tf.cli.common import CommandError, UsageError, positive_int

__all__ = ["add_arguments", "run", "inputs", "read_list", "default_jobs", "measure_one", "Summary", "IMAGE_PATTERNS",
           "POOL_MIN_SAMPLES", "EXIT_FAILED", "EXIT_BROKEN_PIPE", "FORMATS"]

# The files a folder contributes without --pattern (matched case-insensitively against the file's name).
IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.bmp", "*.gif", "*.webp", "*.pbm", "*.pgm",
                  "*.ppm", "*.pnm")
# Without --jobs, worker processes are started only for at least this many values (H x W x C summed over the
# first images until it is reached): below it, their start-up (0.3 s of CPU for size, TensorFlow's import for
# evaluate) costs more than they save.
POOL_MIN_SAMPLES = 1_000_000
EXIT_FAILED = 1
EXIT_BROKEN_PIPE = 141          # 128 + SIGPIPE, what a shell reports for a command killed by it
FORMATS = ("table", "jsonl", "csv", "json")
_EXTENSIONS = {".jsonl": "jsonl", ".csv": "csv", ".json": "json"}
_IN_FLIGHT = 2          # chunks per worker in flight


def default_jobs():
    """The cores this process may run on (os.sched_getaffinity, else os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def add_arguments(parser, images_metavar="IMAGES", images_help="image files or folders"):
    """The inputs, --jobs and the output options of a command over many images."""
    parser.add_argument("images", nargs="*", metavar=images_metavar, help=images_help + " (folders are searched "
                        "recursively for --pattern)")
    parser.add_argument("--pattern", action="append", metavar="GLOB",
                        help="the files a folder contributes, matched against their names (or their paths inside "
                        "the folder, if GLOB has a /; * also matches /), case-insensitively; repeat for several "
                        "(default: "
                        + " ".join(IMAGE_PATTERNS) + ")")
    parser.add_argument("--from-list", metavar="FILE",
                        help="also measure the paths listed in FILE, one per line (- for standard input)")
    parser.add_argument("--jobs", "-j", type=positive_int, metavar="N",
                        help="worker processes measuring images in parallel, each loading the model once (default: "
                        f"the cores available, {default_jobs()} here, or 1 for less than "
                        f"{POOL_MIN_SAMPLES / 1e6:g} M pixel values in all)")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="print one JSON document at the end")
    formats.add_argument("--jsonl", action="store_true",
                         help="stream JSON lines, one per image ({\"path\", \"error\"} for a failure)")
    formats.add_argument("--csv", action="store_true", help="stream CSV rows, one per image (column error)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the rows to FILE (its format from --jsonl/--csv/--json or from its extension "
                        ".jsonl/.csv/.json) instead of standard output")
    parser.add_argument("--resume", action="store_true",
                        help="continue --output FILE (JSON lines or CSV) of an interrupted run: skip the images "
                        "it has, append the others")


# ------------------------------------------------------------------ inputs
def _matches(relative, patterns):
    name = os.path.basename(relative).lower()
    return any(fnmatch.fnmatchcase(relative.lower() if "/" in p else name, p.lower()) for p in patterns)


def _walk(folder, patterns):
    found = []
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            if not name.startswith(".") and _matches(relative, patterns):
                found.append(path)
    return found


def read_list(name):
    """The paths of a list file (one per line, blank lines skipped; "-": standard input)."""
    try:
        if name == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(name, encoding="utf-8", errors="surrogateescape") as stream:
                lines = stream.read().splitlines()
    except FileNotFoundError:
        raise CommandError(f"{name}: no such file (--from-list)") from None
    except (IsADirectoryError, UnicodeDecodeError, OSError) as error:
        raise CommandError(f"{name}: cannot read the list ({error.__class__.__name__})") from None
    return [line for line in lines if line.strip()]


def inputs(paths, patterns=None, from_list=None):
    """(paths, empty): the image paths in order (folders walked, --from-list appended, each path once) and the
    folders that gave no file."""
    patterns = tuple(patterns or IMAGE_PATTERNS)
    items = list(paths) + (read_list(from_list) if from_list else [])
    found, empty, seen = [], [], set()
    for item in items:
        expanded = _walk(item, patterns) if os.path.isdir(item) else [item]
        if not expanded:
            empty.append(item)
        for path in expanded:
            key = _key(path)
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found, empty


def _key(path):
    """The identity of a path in an output (for duplicates and --resume)."""
    return os.path.normpath(path)


# ----------------------------------------------------------------- results
class Summary:
    """Counts over the rows of a run (or of a resumed output file): images, failed, pixels (H x W), values
    (H x W x C), bits and bytes (when the rows have them), the rate over all values (`bits_per_pixel`: the
    rows' bit/px weighted by their values) and the mean of the rows' bit/px (`mean_bits_per_pixel`)."""

    def __init__(self):
        self.images = self.failed = self.skipped = self.pixels = self.values = 0
        self.bits, self.has_bits, self.weighted, self.rates = 0.0, True, 0.0, 0.0

    def add(self, row):
        if row.get("error"):
            self.failed += 1
            return
        pixels = int(row["height"]) * int(row["width"])
        values = pixels * int(row["channels"])
        rate = float(row["bits_per_pixel"])
        self.images += 1
        self.pixels += pixels
        self.values += values
        self.weighted += rate * values
        self.rates += rate
        if row.get("bits") in (None, ""):
            self.has_bits = False
        else:
            self.bits += float(row["bits"])

    def as_dict(self):
        out = dict(images=self.images, failed=self.failed, skipped=self.skipped, pixels=self.pixels,
                   values=self.values)
        if self.has_bits and self.images:
            out.update(bits=self.bits, bytes=self.bits / 8)
        out.update(bits_per_pixel=self.weighted / self.values if self.values else None,
                   mean_bits_per_pixel=self.rates / self.images if self.images else None)
        return out

    def text(self):
        """One line: "summary: 200 images, 3,276,800 pixels, 1,234,567.8 bytes, ... bit/px ...; 2 failed"."""
        parts = [f"{self.images:,} image{'s' * (self.images != 1)}", f"{self.pixels:,} pixels"]
        if self.images:
            if self.has_bits:
                parts.append(f"{self.bits / 8:,.1f} bytes")
            parts.append(f"{self.weighted / self.values:.4f} bit/px over all pixels")
            parts.append(f"mean {self.rates / self.images:.4f} bit/px over the images")
        text = "summary: " + ", ".join(parts) + f"; {self.failed:,} failed"
        return text + (f" ({self.skipped:,} skipped: already in the output)" if self.skipped else "")


def _error_message(path, error):
    """The first line of an exception's text, without a leading "PATH: "."""
    text = str(error).splitlines()[0] if str(error).strip() else ""
    if not isinstance(error, (CommandError, ValueError, TypeError, OSError, FloatingPointError, MemoryError)):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    elif not text:
        text = type(error).__name__
    return text[len(path) + 2:] if text.startswith(f"{path}: ") else text


def measure_one(command, options, models, path):
    """(path, row, None) or (path, None, message): one image through `command.measure`, its failure caught."""
    try:
        return path, command.measure(path, options, models), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:                # noqa: BLE001 -- any failure of one file is that file's row
        return path, None, _error_message(path, error)


# ------------------------------------------------------------ worker processes
_WORKER = {}


def _start_worker(module_name, options, threads):
    """A worker's initializer: Ctrl-C is the parent's to handle; `threads` threads for TensorFlow and the BLAS
    (unless the environment sets them); the command's module."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    _WORKER.clear()
    _WORKER.update(command=importlib.import_module(module_name), options=options)


def _work(paths):
    """A chunk of images in a worker: [(path, row, message)], or [("fatal", message)] when `prepare` failed."""
    command, options = _WORKER["command"], _WORKER["options"]
    if "models" not in _WORKER:
        try:
            _WORKER["models"] = command.prepare(options)
        except Exception as error:       # noqa: BLE001 -- reported by the parent, which stops the run
            _WORKER["models"], _WORKER["fatal"] = None, _error_message("", error)
    if _WORKER.get("fatal"):
        return [("fatal", _WORKER["fatal"])]
    return [measure_one(command, options, _WORKER["models"], path) for path in paths]


class _Pool:
    """N spawned worker processes (concurrent.futures), replaced when one dies."""

    def __init__(self, command, options, jobs):
        self.threads = max(1, default_jobs() // jobs)
        if getattr(options, "threads", 0) is None:      # a command's threads per image: the workers share the cores
            options = argparse.Namespace(**dict(vars(options), threads=self.threads))
        self.command, self.options, self.jobs = command, options, jobs
        self.executor = None
        self.restart()

    def restart(self):
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = concurrent.futures.ProcessPoolExecutor(
            self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(self.command.__name__, self.options, self.threads))

    def submit(self, paths):
        """A future of `_work(paths)`.  A pool that broke since the last result was read (a worker died) refuses
        new work: the chunk then gets a future that fails as the chunks in flight do, and `_drain` measures them
        all again in fresh workers."""
        try:
            return self.executor.submit(_work, paths)
        except concurrent.futures.process.BrokenProcessPool as error:
            future = concurrent.futures.Future()
            future.set_exception(error)
            return future

    def close(self, interrupted=False):
        if interrupted:            # the workers ignore SIGINT: end them (this process's children only)
            for child in multiprocessing.active_children():
                child.terminate()
        self.executor.shutdown(wait=not interrupted, cancel_futures=True)


def _checked(results):
    if results and len(results[0]) == 2:          # ("fatal", message)
        raise CommandError(results[0][1])
    return results


def _measure_in_pool(command, options, paths, jobs):
    """(path, row, message) for each path, in order, from `jobs` worker processes."""
    size = max(1, min(4, len(paths) // (jobs * 32)))
    chunks = (paths[k:k + size] for k in range(0, len(paths), size))
    pool = _Pool(command, options, jobs)
    pending = collections.deque()
    interrupted = True
    try:
        for chunk in chunks:          # _IN_FLIGHT chunks per worker submitted: none of them waits for work
            pending.append((chunk, pool.submit(chunk)))
            yield from _drain(pool, pending, _IN_FLIGHT * jobs - 1)
        yield from _drain(pool, pending, 0)
        interrupted = False
    finally:
        pool.close(interrupted)


def _drain(pool, pending, keep):
    while len(pending) > keep:
        chunk, future = pending.popleft()
        try:
            results = future.result()
        except concurrent.futures.process.BrokenProcessPool:
            # A worker died: every chunk in flight is suspect.  Measure their images one at a time in fresh
            # workers; the image that kills a worker again is reported.
            suspects = chunk + [path for other, _ in pending for path in other]
            pending.clear()
            pool.restart()
            for path in suspects:
                try:
                    yield from _checked(pool.submit([path]).result())
                except concurrent.futures.process.BrokenProcessPool:
                    pool.restart()
                    yield path, None, "the worker process measuring it died (out of memory?)"
            continue
        yield from _checked(results)


def _measure_here(command, options, models, paths):
    for path in paths:
        yield measure_one(command, options, models, path)


def _pool_size(jobs, paths):
    """--jobs as given, else the cores available unless the first images hold fewer than POOL_MIN_SAMPLES values
    (read from the files' headers) -- never more than the images."""
    if jobs is None:
        jobs = default_jobs()
        if jobs > 1:
            from PIL import Image

            total = 0
            for path in paths:
                try:
                    with Image.open(path) as image:
                        total += image.size[0] * image.size[1] * len(image.getbands())
                except (OSError, ValueError, SyntaxError):
                    continue
                if total >= POOL_MIN_SAMPLES:
                    break
            if total < POOL_MIN_SAMPLES:
                jobs = 1
    return max(1, min(jobs, len(paths)))


# -------------------------------------------------------------------- output
def _format(args):
    for name in ("json", "jsonl", "csv"):
        if getattr(args, name):
            return name
    if args.output:
        return _EXTENSIONS.get(os.path.splitext(args.output)[1].lower(), "table")
    return "table"


def _previous(path, fmt, fields, summary):
    """The keys of the images an earlier output file has lines for (each line added to `summary`); a partial
    last line (a killed run's) does not count: it is cut off before the new lines are appended."""
    done = set()
    with open(path, encoding="utf-8", newline="", errors="surrogateescape") as stream:
        lines = (line for line in stream if line.endswith("\n"))
        if fmt == "csv":
            reader = csv.DictReader(lines)
            if reader.fieldnames is not None and reader.fieldnames != list(fields) + ["error"]:
                raise CommandError(f"{path}: its CSV columns are not those of this command's --csv "
                                   f"({','.join(fields)},error); cannot resume it")
            rows = reader
        else:
            rows = (_json_row(path, number, line) for number, line in enumerate(lines, 1) if line.strip())
        for row in rows:
            done.add(_key(row["path"]))
            summary.add(row)
    return done


def _json_row(path, number, line):
    try:
        row = json.loads(line)
    except ValueError:
        row = None
    if not isinstance(row, dict) or "path" not in row or not ("error" in row or "bits_per_pixel" in row):
        raise CommandError(f"{path}, line {number}: not a row of ride-tf's --jsonl output; cannot resume it")
    return row


class _Writer:
    """The rows to a stream as they come, in one of FORMATS; the summary at the end."""

    def __init__(self, fmt, stream, command, options, width, bar):
        self.fmt, self.stream, self.command, self.options, self.width, self.bar = (fmt, stream, command, options,
                                                                                  width, bar)
        self.rows, self.errors = [], []        # kept for --json only
        if fmt == "csv":
            self.csv = csv.writer(stream, lineterminator="\n")

    def emit(self, text, stream=None):
        stream = stream or self.stream
        if self.bar is not None and not self.bar.disable and stream.isatty():
            self.bar.write(text, file=stream)       # above the progress bar
        else:
            print(text, file=stream)
        stream.flush()

    def start(self, new):
        if self.fmt == "table":
            self.emit(self.command.table_header(self.options, self.width))
        elif self.fmt == "csv" and new:
            self.csv.writerow(list(self.command.FIELDS) + ["error"])
            self.stream.flush()

    def row(self, row):
        if self.fmt == "json":
            self.rows.append(row)
        elif self.fmt == "table":
            self.emit(self.command.table_line(row, self.width))
        elif self.fmt == "jsonl":
            self.emit(json.dumps(row))
        else:
            self.csv.writerow([row.get(name) for name in self.command.FIELDS] + [""])
            self.stream.flush()

    def error(self, path, message):
        self.emit(f"ride-tf: error: {message if message.startswith(path) else f'{path}: {message}'}", sys.stderr)
        if self.fmt == "json":
            self.errors.append(dict(path=path, error=message))
        elif self.fmt == "table":
            self.emit(f"{path:{self.width}s}  error: {message}")
        elif self.fmt == "jsonl":
            self.emit(json.dumps(dict(path=path, error=message)))
        else:
            self.csv.writerow([path] + [None] * (len(self.command.FIELDS) - 1) + [message])
            self.stream.flush()

    def finish(self, summary, to_file):
        if self.fmt == "json":
            document = self.command.json_report(self.options, self.rows, self.errors, summary.as_dict())
            if to_file:
                io.atomic_write_json(to_file, document)
            else:
                print(json.dumps(document, indent=1), file=self.stream)
            return
        if self.fmt == "table":
            for line in self.command.table_footer(summary, self.width):
                self.emit(line)
            self.emit(summary.text())
        else:
            self.emit(summary.text(), sys.stdout if to_file else sys.stderr)


def _progress_bar(total, name):
    from tqdm import tqdm

    return tqdm(total=total, unit="image", desc=name, file=sys.stderr, disable=not sys.stderr.isatty(),
                dynamic_ncols=True, leave=False)


# ----------------------------------------------------------------------- run
def run(args, command, paths=None):
    """Measure every input of `args` (add_arguments's options) with `command` (see the module docstring); the
    exit status (0, or EXIT_FAILED when an image failed)."""
    fmt = _format(args)
    if args.resume and not args.output:
        raise UsageError("--resume continues an --output FILE; name it")
    if args.resume and fmt not in ("jsonl", "csv"):
        raise UsageError("--resume continues JSON lines or CSV (--jsonl, --csv, or an --output FILE ending in "
                         ".jsonl or .csv)")
    paths = args.images if paths is None else paths
    if not paths and not args.from_list:
        raise UsageError("no images: give image files, folders or --from-list FILE")
    found, empty = inputs(paths, args.pattern, args.from_list)
    options = argparse.Namespace(**{k: v for k, v in vars(args).items() if not callable(v)})
    options.verbose = 0

    summary = Summary()
    existing = args.output and os.path.exists(args.output) and os.path.getsize(args.output) > 0
    if args.output:
        if os.path.isdir(args.output):
            raise CommandError(f"{args.output}: is a directory; --output must name a file")
        if existing and not args.resume and fmt != "json":
            raise CommandError(f"{args.output}: exists; --resume continues it (skipping the images it has), or "
                               "remove it")
    done = _previous(args.output, fmt, command.FIELDS, summary) if args.resume and existing else set()
    todo = [path for path in found if _key(path) not in done]
    empty = [folder for folder in empty if _key(folder) not in done]
    summary.skipped = len(found) - len(todo)
    if len(found) + len(empty) == 1 and fmt == "table":
        options.verbose = 1            # one image: the model's own progress bar, as before
    jobs = _pool_size(args.jobs, todo)

    # In this process, the model is loaded before anything is written (a bad one stops the run in one line).
    models = command.prepare(options) if jobs == 1 and todo else None
    stream = io.open_line_stream(args.output, append=bool(existing)) if args.output and fmt != "json" else sys.stdout
    bar = _progress_bar(len(todo) + len(empty), command.__name__.rsplit(".", 1)[-1])
    width = min(60, max([5] + [len(p) for p in todo + empty]))
    writer = _Writer(fmt, stream, command, options, width, bar)
    results = None
    try:
        writer.start(new=not existing)
        for folder in empty:
            writer.error(folder, "a folder without image files matching " + " ".join(args.pattern or IMAGE_PATTERNS))
            summary.add(dict(path=folder, error=True))
            bar.update()
        results = (_measure_here(command, options, models, todo) if jobs == 1
                   else _measure_in_pool(command, options, todo, jobs))
        for path, row, message in results:
            if row is None:
                writer.error(path, message)
                summary.add(dict(path=path, error=True))
                bar.set_postfix(failed=summary.failed, refresh=False)
            else:
                writer.row(row)
                summary.add(row)
            bar.update()
        bar.close()
        writer.finish(summary, args.output)
    except BrokenPipeError:        # `ride-tf size ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    finally:
        if results is not None:
            results.close()            # the worker processes end (at once after an interruption)
        bar.close()
        if stream is not sys.stdout:
            stream.close()
    return EXIT_FAILED if summary.failed else 0
