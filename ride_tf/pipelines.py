"""Exact sizes (and density rates) of image datasets beyond one machine: an Apache Beam pipeline.

    python -m ride_tf.pipelines --input 'photos/**/*.png' --output results/sizes [--model M] [--rate] [--parquet]
        [Beam's pipeline options: --runner, --direct_num_workers, --project, ...]

It reads image paths from globs (`--input`, any of Beam's file systems:
local, gs://, s3://, hdfs://) and list files (`--input-list`, one path per
line), measures each image with `MeasureImage`, a DoFn that loads the model
once per worker process (`setup`) and measures with `ride_tf.cli.size.measure`
(the rows of `ride-tf size --jsonl`, the same numbers), adding the density
rate of `ride_tf.cli.evaluate.measure` with `--rate` (`rate_bits_per_pixel`,
`rate_model`), and writes

    OUTPUT-SSSSS-of-NNNNN.jsonl           one JSON line per measured image
    OUTPUT-SSSSS-of-NNNNN.parquet         the same rows (--parquet; pyarrow comes with apache-beam)
    OUTPUT.errors-SSSSS-of-NNNNN.jsonl    {"path": ..., "error": ...} per image that failed
    OUTPUT.summary.json                   images, failed, pixels, bytes, bit/px over all pixels

Images on remote file systems are copied to a local temporary file to be
measured.  All cores of this machine: `--direct_num_workers 0
--direct_running_mode multi_processing` (Beam's DirectRunner, one worker
process per core, each loading the model once).  Elsewhere: Beam's usual
options (`--runner FlinkRunner --flink_master ...`, `--runner SparkRunner`,
`--runner DataflowRunner --project ... --region ... --temp_location gs://...
--setup_file ./setup.py`); docs/batch.md has the commands.  Needs
`pip install ride_tf[beam]`.

The exact sizes come from the codec's integer model (`ride_tf.codec`), not
from the float graph a SavedModel serves, so this is a DoFn on the codec
runtime rather than Beam's RunInference with `ride-tf export`'s SavedModel.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import tempfile

try:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as error:     # pragma: no cover - the message says what to install
    raise ImportError("ride_tf.pipelines needs Apache Beam: pip install 'ride_tf[beam]' (apache-beam)") from error

from ride_tf.cli import batch, evaluate, size
from ride_tf.cli.common import palette_choice
from ride_tf.defaults import COLOUR_CODING, COLOUR_CODINGS, COLOUR_MODES, PALETTE_CODINGS

__all__ = ["MeasureImage", "SummarizeRows", "build", "command_options", "size_options", "rate_options", "main", "ERRORS",
           "PARQUET_FIELDS"]

ERRORS = "errors"
# The Parquet columns: the rows of `ride-tf size`, then the rate's with --rate.
PARQUET_FIELDS = {"path": "string", "height": "int64", "width": "int64", "channels": "int64", "mode": "string",
                  "model": "string", "bits": "float64", "bytes": "float64", "bits_per_pixel": "float64",
                  "note": "string"}
RATE_FIELDS = {"rate_bits_per_pixel": "float64", "rate_model": "string"}

_MODELS = {}        # per worker process: (command, options) -> the models `prepare` loaded


def command_options(command, **values):
    """The options of `ride-tf COMMAND` ("size" or "evaluate") with the command line's defaults, `values` set: the
    namespace its `measure` reads.  Parsed by the command's own parser, so that an option added to the command
    has its default here too; TypeError for a name that is not one of its options."""
    from ride_tf.cli import build_parser

    options = build_parser().parse_args([command, "image.png"])
    options.verbose = 0           # set by `ride_tf.cli.batch.run` on the command line: no progress bars here
    for name, value in values.items():
        if not hasattr(options, name):
            raise TypeError(f"ride-tf {command} has no option {name!r}")
        setattr(options, name, value)
    return options


def size_options(model=None, mode=None, colour=COLOUR_CODING, palette=None, to_gray=False, threads=1, adapt=False):
    """The options of `ride-tf size` that `ride_tf.cli.size.measure` reads (the command line's defaults, but one
    coding thread per image: the runners run a worker per core)."""
    options = command_options("size", model=model, mode=mode, colour=colour, palette=palette, to_gray=to_gray,
                              threads=threads, adapt=adapt)
    options.palette = palette_choice(options)
    return options


def rate_options(model=None, mode=None, to_gray=False, seed=0, region="full"):
    """The options of `ride-tf evaluate` that `ride_tf.cli.evaluate.measure` reads."""
    return command_options("evaluate", model=model, mode=mode, to_gray=to_gray, seed=seed, region=region,
                           ensemble=False)


def _remote(path):
    return "://" in path


def _local_copy(path, folder):
    """A local file with the bytes of `path` (a file system of Beam's) in `folder`."""
    local = os.path.join(folder, "image" + os.path.splitext(path)[1])
    with FileSystems.open(path) as source, open(local, "wb") as target:  # a temporary file of this worker
        shutil.copyfileobj(source, target)
    return local


class MeasureImage(beam.DoFn):
    """An image path -> the row of `ride-tf size` (and the density rate with `rate`); a failure goes to the
    ERRORS output as {"path", "error"}.  The models are loaded once per worker process (`setup`)."""

    def __init__(self, options, rate=None):
        self.options, self.rate = options, rate
        self.images = beam.metrics.Metrics.counter("ride_tf", "images")
        self.failed = beam.metrics.Metrics.counter("ride_tf", "failed")

    def setup(self):
        if "tensorflow" not in sys.modules:       # one thread each: the runner runs a worker per core
            for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
                os.environ.setdefault(name, "1")
        self.folder = tempfile.mkdtemp(prefix="ride-tf-")
        self.models = self._models(size, self.options)
        self.rate_models = self._models(evaluate, self.rate) if self.rate else None

    def _models(self, command, options):
        key = (command.__name__, repr(sorted(vars(options).items())))
        if key not in _MODELS:
            if options.model and _remote(options.model):
                options = argparse.Namespace(**vars(options))
                options.model = _local_copy(options.model, tempfile.mkdtemp(prefix="ride-tf-model-"))
            _MODELS[key] = (options, command.prepare(options))
        return _MODELS[key]

    def teardown(self):
        shutil.rmtree(getattr(self, "folder", ""), ignore_errors=True)

    def process(self, path):
        try:
            local = _local_copy(path, self.folder) if _remote(path) else path
        except (OSError, ValueError) as error:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(ERRORS, dict(path=path, error=f"cannot read it: {error}"))
            return
        options, models = self.models
        _, row, message = batch.measure_one(size, options, models, local)
        if row is not None and self.rate:
            rate_options_, rate_models = self.rate_models
            _, rated, message = batch.measure_one(evaluate, rate_options_, rate_models, local)
            if rated is not None:
                row.update(rate_bits_per_pixel=rated["bits_per_pixel"], rate_model=rated["model"])
            else:
                row = None
        if local != path:
            os.remove(local)
        if row is None:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(ERRORS, dict(path=path, error=message.replace(local, path)))
        else:
            self.images.inc()
            yield dict(row, path=path)


class SummarizeRows(beam.CombineFn):
    """The rows (and the errors, as {"error": ...}) -> `ride_tf.cli.batch.Summary`'s dictionary."""

    def create_accumulator(self):
        return batch.Summary()

    def add_input(self, summary, row):
        summary.add(row)
        return summary

    def merge_accumulators(self, summaries):
        merged = batch.Summary()
        for summary in summaries:
            for name in ("images", "failed", "pixels", "values", "bits", "weighted", "rates"):
                setattr(merged, name, getattr(merged, name) + getattr(summary, name))
            merged.has_bits = merged.has_bits and summary.has_bits
        return merged

    def extract_output(self, summary):
        return summary.as_dict()


def _read_list(pipeline, name, label):
    return pipeline | label >> beam.io.ReadFromText(name) | f"{label} lines" >> beam.Map(str.strip) | \
        f"{label} non-empty" >> beam.Filter(bool)


def build(pipeline, output, inputs=(), input_lists=(), options=None, rate=None, parquet=False, shards=0):
    """The pipeline's transforms on `pipeline`: (rows, errors) PCollections, written under the prefix `output`."""
    sources = []
    if inputs:
        sources.append(pipeline | "Globs" >> beam.Create(list(inputs)) | "Match" >> fileio.MatchAll()
                       | "Paths" >> beam.Map(lambda metadata: metadata.path))
    for k, name in enumerate(input_lists):
        sources.append(_read_list(pipeline, name, f"List {k}"))
    paths = (sources | "All paths" >> beam.Flatten() | "Once" >> beam.Distinct()
             | "Spread" >> beam.Reshuffle())      # over the workers
    results = paths | "Measure" >> beam.ParDo(MeasureImage(options or size_options(), rate)).with_outputs(
        ERRORS, main="rows")
    rows, errors = results.rows, results[ERRORS]
    (rows | "Rows as JSON" >> beam.Map(json.dumps)
     | "Write rows" >> beam.io.WriteToText(output, file_name_suffix=".jsonl", num_shards=shards))
    (errors | "Errors as JSON" >> beam.Map(json.dumps)
     | "Write errors" >> beam.io.WriteToText(output + ".errors", file_name_suffix=".jsonl", num_shards=shards))
    ((rows, errors) | "Rows and errors" >> beam.Flatten() | "Summary" >> beam.CombineGlobally(SummarizeRows())
     | "Summary as JSON" >> beam.Map(json.dumps)
     | "Write summary" >> beam.io.WriteToText(output + ".summary", file_name_suffix=".json", num_shards=1,
                                              shard_name_template=""))
    if parquet:
        import pyarrow

        fields = dict(PARQUET_FIELDS, **(RATE_FIELDS if rate else {}))
        schema = pyarrow.schema([(name, getattr(pyarrow, kind)()) for name, kind in fields.items()])
        (rows | "Parquet columns" >> beam.Map(lambda row: {name: row.get(name) for name in fields})
         | "Write Parquet" >> beam.io.WriteToParquet(output, schema, file_name_suffix=".parquet",
                                                     num_shards=shards))
    return rows, errors


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ride_tf.pipelines", description=__doc__.split("\n\n")[0] +
                                     "  Other options are Beam's pipeline options (--runner, ...).")
    parser.add_argument("--input", action="append", default=[], metavar="GLOB",
                        help="image files (a glob of any of Beam's file systems); repeat for several")
    parser.add_argument("--input-list", action="append", default=[], metavar="FILE",
                        help="a text file of image paths, one per line; repeat for several")
    parser.add_argument("--output", required=True, metavar="PREFIX", help="where the rows, errors and summary go")
    parser.add_argument("--model", help="a .keras file (local or on a Beam file system) or a shipped model's name "
                        "(default: the shipped model of each image's mode)")
    parser.add_argument("--mode", choices=COLOUR_MODES, help="the shipped model of this mode")
    parser.add_argument("--colour", choices=COLOUR_CODINGS, default=COLOUR_CODING, help="as ride-tf size's")
    parser.add_argument("--palette", choices=PALETTE_CODINGS, help="as ride-tf size's")
    parser.add_argument("--to-gray", action="store_true", help="as ride-tf size's")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads coding one image (the runner runs a worker per core)")
    parser.add_argument("--adapt", action="store_true", help="as ride-tf size's (twice the coding time)")
    parser.add_argument("--rate", action="store_true", help="add the density rate (ride-tf evaluate, --seed)")
    parser.add_argument("--seed", type=int, default=0, help="the rate's dequantization noise seed")
    parser.add_argument("--parquet", action="store_true", help="write the rows as Parquet too")
    parser.add_argument("--shards", type=int, default=0, help="output shards (0: the runner's choice)")
    args, beam_args = parser.parse_known_args(argv)
    if not args.input and not args.input_list:
        parser.error("give --input GLOB or --input-list FILE")
    from ride_tf.cli.common import CommandError

    try:
        options = size_options(args.model, args.mode, args.colour, args.palette, args.to_gray, args.threads,
                               args.adapt)
    except CommandError as error:
        parser.error(str(error))
    rate = rate_options(args.model, args.mode, args.to_gray, args.seed) if args.rate else None
    if not any(arg.startswith("--default_sdk_harness_log_level") for arg in beam_args):
        beam_args = beam_args + ["--default_sdk_harness_log_level=WARNING"]      # not a line per bundle
    logging.getLogger().setLevel(logging.WARNING)
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    build(pipeline, args.output, args.input, args.input_list, options, rate, args.parquet, args.shards)
    result = pipeline.run()
    result.wait_until_finish()
    counters = {}
    for counter in result.metrics().query(beam.metrics.MetricsFilter().with_namespace("ride_tf"))["counters"]:
        counters[counter.key.metric.name] = counter.committed or counter.attempted or 0
    print(f"{counters.get('images', 0)} images measured, {counters.get('failed', 0)} failed: rows in "
          f"{args.output}-*.jsonl, failures in {args.output}.errors-*.jsonl, summary in {args.output}.summary.json")
    return batch.EXIT_FAILED if counters.get("failed") else 0


if __name__ == "__main__":
    from ride_tf import pipelines       # the DoFn by its importable name, not as __main__'s

    sys.exit(pipelines.main())
