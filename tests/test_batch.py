"""`ride-tf size` and `ride-tf evaluate` over many files (`ride_tf.cli.batch`) and the Beam pipeline
(`ride_tf.pipelines`): inputs, streamed formats, failures, --resume, --jobs.

The runner's own tests use `batch_fake_command` (text files for images, no model); the others run the real
commands on a few tiny images."""
import argparse
import csv
import glob
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ride_tf import data as image_data
from ride_tf.cli import batch, main
from ride_tf.cli.common import CommandError

import batch_fake_command as fake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fake(args, capsys, **extra):
    """batch.run with the fake command: (status, stdout, stderr)."""
    parser = argparse.ArgumentParser()
    batch.add_arguments(parser)
    namespace = parser.parse_args([str(a) for a in args])
    vars(namespace).update(extra)
    status = batch.run(namespace, fake)
    out, err = capsys.readouterr()
    return status, out, err


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture()
def tree(tmp_path):
    """images/a.png, images/sub/b.png, images/sub/deeper/c.PNG, images/sub/d.jpg, images/.hidden.png,
    images/notes.txt, images/empty/ (text "images" of the fake command)."""
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    for name, text in [("a.png", "2 3 1"), ("sub/b.png", "4 5 3"), ("sub/deeper/c.PNG", "6 7 1"),
                       ("sub/d.jpg", "1 1 1"), (".hidden.png", "9 9 1"), ("notes.txt", "8 8 1")]:
        (root / name).write_text(text)
    return root


def test_folders_are_walked_recursively_in_order_with_patterns(tree):
    found, empty = batch.inputs([str(tree), str(tree / "empty")])     # a folder given that has no image: reported
    assert [os.path.relpath(p, tree) for p in found] == ["a.png", "sub/b.png", "sub/d.jpg", "sub/deeper/c.PNG"]
    assert empty == [str(tree / "empty")]
    found, _ = batch.inputs([str(tree)], ["*.png"])
    assert [os.path.relpath(p, tree) for p in found] == ["a.png", "sub/b.png", "sub/deeper/c.PNG"]
    found, _ = batch.inputs([str(tree)], ["sub/*.png"])      # with a /: the path inside the folder (* crosses /)
    assert [os.path.relpath(p, tree) for p in found] == ["sub/b.png", "sub/deeper/c.PNG"]
    found, _ = batch.inputs([str(tree)], ["*/deeper/*", "a.*"])
    assert [os.path.relpath(p, tree) for p in found] == ["a.png", "sub/deeper/c.PNG"]
    found, _ = batch.inputs([str(tree / "notes.txt"), str(tree / "a.png"), str(tree / "sub"), str(tree / "a.png")])
    assert [os.path.relpath(p, tree) for p in found] == ["notes.txt", "a.png", "sub/b.png", "sub/d.jpg",
                                                         "sub/deeper/c.PNG"]       # files as given, once each


def test_from_list_reads_a_file_or_standard_input(tree, tmp_path, monkeypatch):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tree / 'sub' / 'b.png'}\n\n{tree / 'a.png'}\n{tree / 'sub' / 'deeper'}\n")
    found, _ = batch.inputs([], None, str(listing))
    assert [os.path.relpath(p, tree) for p in found] == ["sub/b.png", "a.png", "sub/deeper/c.PNG"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tree / 'a.png'}\n"))
    found, _ = batch.inputs([str(tree / "sub" / "d.jpg")], None, "-")
    assert [os.path.relpath(p, tree) for p in found] == ["sub/d.jpg", "a.png"]
    with pytest.raises(CommandError, match="missing.txt: no such file"):
        batch.inputs([], None, str(tmp_path / "missing.txt"))


def test_jsonl_csv_table_and_json_carry_the_rows_errors_and_summary(tree, capsys):
    (tree / "sub" / "bad.png").write_text("bad")
    status, out, err = run_fake([tree, tree / "empty", "--jsonl", "--jobs", 1], capsys)
    rows = jsonl(out)
    assert status == batch.EXIT_FAILED
    by_path = {os.path.relpath(r["path"], tree): r for r in rows}
    assert sorted(by_path) == ["a.png", "empty", "sub/b.png", "sub/bad.png", "sub/d.jpg", "sub/deeper/c.PNG"]
    assert list(by_path["sub/b.png"]) == list(fake.FIELDS) and by_path["sub/b.png"]["bits"] == 90.0
    assert by_path["sub/bad.png"] == {"path": str(tree / "sub" / "bad.png"), "error": "a refused file"}
    assert by_path["empty"]["error"].startswith("a folder without image files")
    assert f"ride-tf: error: {tree / 'sub' / 'bad.png'}: a refused file" in err.splitlines()
    summary = [line for line in err.splitlines() if line.startswith("summary:")]
    assert summary == ["summary: 4 images, 69 pixels, 20.4 bytes, 1.5000 bit/px over all pixels, mean 1.5000 "
                       "bit/px over the images; 2 failed"]

    status, out, err = run_fake([tree, tree / "empty", "--csv", "--jobs", 1], capsys)
    table = list(csv.DictReader(io.StringIO(out)))
    assert status == 1 and list(table[0]) == list(fake.FIELDS) + ["error"]
    assert [r["path"] for r in table] == [r["path"] for r in rows]
    assert [r["error"] for r in table if r["error"]] == [r["error"] for r in rows if "error" in r]
    assert float(table[1]["bits"]) == rows[1]["bits"]

    status, out, err = run_fake([tree, tree / "empty", "--jobs", 1], capsys)
    lines = out.splitlines()
    assert status == 1 and lines[0].startswith("image") and lines[-1] == summary[0]
    assert any(line.endswith("error: a refused file") for line in lines)

    status, out, err = run_fake([tree, tree / "empty", "--json"], capsys)
    document = json.loads(out)
    assert [r["path"] for r in document["images"]] == [r["path"] for r in rows if "error" not in r]
    assert len(document["errors"]) == 2 and document["summary"]["failed"] == 2
    assert document["summary"]["bytes"] == 163.5 / 8

    (tree / "sub" / "bad.png").unlink()
    assert run_fake([tree, "--jsonl"], capsys)[0] == 0


def test_resume_skips_the_images_already_in_the_output(tree, tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    status, out, err = run_fake([tree / "a.png", tree / "sub" / "b.png", tree / "missing.png", "--output", output],
                                capsys)
    assert status == 1 and out.startswith("summary: 2 images") and "1 failed" in out
    with open(output, "a") as stream:          # a run killed in the middle of a line
        stream.write('{"path": "' + str(tree / "sub" / "d.jpg"))
    status, out, err = run_fake([tree, tree / "empty", tree / "missing.png", "--output", output, "--resume"], capsys)
    rows = jsonl(output.read_text())
    assert [os.path.relpath(r["path"], tree) for r in rows] == ["a.png", "sub/b.png", "missing.png", "empty",
                                                               "sub/d.jpg", "sub/deeper/c.PNG"]
    assert status == 1 and out.rstrip().endswith("(3 skipped: already in the output)")
    assert out.startswith("summary: 4 images, ") and "; 2 failed" in out      # over the whole file
    # Nothing left: nothing appended, the same summary.
    before = output.read_text()
    status, out2, _ = run_fake([tree, tree / "empty", tree / "missing.png", "--output", output, "--resume"], capsys)
    assert output.read_text() == before and out2.split(" (")[0] == out.split(" (")[0]
    # The same with CSV.
    output = tmp_path / "out.csv"
    run_fake([tree / "a.png", "--output", output], capsys)
    status, out, _ = run_fake([tree, "--output", output, "--resume", "--pattern", "*.png"], capsys)
    table = list(csv.DictReader(open(output)))
    assert [os.path.relpath(r["path"], tree) for r in table] == ["a.png", "sub/b.png", "sub/deeper/c.PNG"]


@pytest.mark.parametrize("args, message, code", [
    (["--resume"], "--resume continues an --output FILE", 2),
    (["--output", "x.txt", "--resume"], "--resume continues JSON lines or CSV", 2),
    ([], "no images", 2),
    (["--output", "exists.jsonl"], "exists.jsonl: exists; --resume continues it", 1),
    (["--output", "bad.jsonl", "--resume"], "bad.jsonl, line 1: not a row of ride-tf's --jsonl output", 1),
    (["--output", "size.csv", "--resume", "--csv"], "size.csv: its CSV columns are not those", 1),
])
def test_usage_errors_of_many_files(tree, tmp_path, monkeypatch, capsys, args, message, code):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.jsonl").write_text('{"path": "x", "error": "y"}\n')
    (tmp_path / "bad.jsonl").write_text("not json\n")
    (tmp_path / "size.csv").write_text("path,bits\n")
    images = [] if message == "no images" else ["images/a.png"]
    status = main(["size", *images, *args])
    err = capsys.readouterr().err
    assert status == code and message in err and err.count("\n") == 1, err


def test_jobs_give_the_rows_of_one_job_and_survive_a_dying_worker(tree, capsys):
    for k in range(12):
        (tree / f"n{k:02d}.png").write_text(f"{k + 1} {k + 2} 1")
    status, out, _ = run_fake([tree, "--jsonl", "--jobs", 1], capsys)
    one = jsonl(out)
    status2, out, _ = run_fake([tree, "--jsonl", "--jobs", 2], capsys)
    assert (status2, jsonl(out)) == (status, one)
    (tree / "n05.png").write_text("crash")
    status, out, err = run_fake([tree, "--jsonl", "--jobs", 2], capsys)
    rows = jsonl(out)
    assert status == 1 and [r["path"] for r in rows] == [r["path"] for r in one]
    assert [r for r in rows if r["path"].endswith("n05.png")][0]["error"].startswith("the worker process")
    assert [r for r in rows if "error" not in r] == [r for r in one if not r["path"].endswith("n05.png")
                                                     and "error" not in r]
    with pytest.raises(CommandError, match="broken.keras: not a ride-tf model file"):     # stops the run
        run_fake([tree, "--jsonl", "--jobs", 2], capsys, fail_prepare=True)


def test_work_submitted_to_a_pool_a_worker_just_left_is_measured_again(tmp_path):
    """A worker that dies while the parent is still submitting chunks: the pool refuses new work
    (BrokenProcessPool at submit), and that chunk fails like the ones in flight, to be measured again in fresh
    workers, instead of ending the run (a race that load made visible)."""
    import concurrent.futures

    (tmp_path / "crash.png").write_text("crash")
    (tmp_path / "ok.png").write_text("2 2 1")
    pool = batch._Pool(fake, argparse.Namespace(threads=1), 1)
    try:
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            pool.submit([str(tmp_path / "crash.png")]).result(timeout=120)
        late = pool.submit([str(tmp_path / "ok.png")])          # the pool is broken now: no exception here
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            late.result(timeout=120)
        pool.restart()
        [(path, row, message)] = pool.submit([str(tmp_path / "ok.png")]).result(timeout=120)
        assert (row["bits"], message) == (2 * 2 * 1 * 1.5, None)
    finally:
        pool.close()


def test_without_jobs_a_small_run_stays_in_one_process(tmp_path, monkeypatch):
    """The default --jobs: the cores available, but 1 below POOL_MIN_SAMPLES pixel values (from the headers)."""
    for k, side in enumerate((16, 24)):
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / f"{k}.png")
    paths = [str(tmp_path / "0.png"), str(tmp_path / "1.png"), str(tmp_path / "missing.png")]
    monkeypatch.setattr(batch, "default_jobs", lambda: 4)
    assert batch._pool_size(None, paths) == 1 and batch._pool_size(3, paths) == 3
    monkeypatch.setattr(batch, "POOL_MIN_SAMPLES", 16 * 16 + 24 * 24)
    assert batch._pool_size(None, paths) == 3          # never more workers than images


def test_a_closed_pipe_ends_the_run_quietly(tree):
    """`ride-tf size ... --jsonl | head -1`: no traceback and no error line when the reader goes away."""
    for k in range(2000):
        (tree / f"n{k:04d}.png").write_text("1 1 1")
    code = ("import sys, argparse; sys.path.insert(0, sys.argv[1]); import batch_fake_command as fake; "
            "from ride_tf.cli import batch; parser = argparse.ArgumentParser(); batch.add_arguments(parser); "
            "sys.exit(batch.run(parser.parse_args([sys.argv[2], '--jsonl', '--jobs', '1']), fake))")
    reader = subprocess.Popen([sys.executable, "-c", code, os.path.dirname(__file__), str(tree)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT))
    first = reader.stdout.readline()
    reader.stdout.close()
    err = reader.stderr.read().decode()
    assert json.loads(first)["path"].endswith("a.png")
    assert reader.wait(timeout=120) == batch.EXIT_BROKEN_PIPE and err == "", err


# ------------------------------------------------------------ the real commands
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six tiny gray images in photos/ and photos/more/, a corrupt PNG and a 16-bit PNG (refused)."""
    folder = tmp_path_factory.mktemp("batch") / "photos"
    (folder / "more").mkdir(parents=True)
    images = image_data.dead_leaves(6, size=(16, 20), seed=3, noise_std=0.02)
    for k, image in enumerate(images):
        Image.fromarray(image).save(folder / ("more" if k >= 4 else "") / f"leaf{k}.png")
    png = (folder / "leaf0.png").read_bytes()
    (folder / "corrupt.png").write_bytes(png[:len(png) // 2])
    Image.fromarray(images[0].astype(np.uint16) * 257).save(folder / "deep.png")
    return folder


def in_process(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_size_of_a_folder_reports_the_bad_files_and_measures_the_others(photos, capsys):
    status, out, err = in_process(capsys, "size", photos, "--jsonl", "--jobs", 1)
    rows = jsonl(out)
    assert status == 1 and len(rows) == 8
    errors = {os.path.basename(r["path"]): r["error"] for r in rows if "error" in r}
    assert sorted(errors) == ["corrupt.png", "deep.png"]
    assert "cannot decode image" in errors["corrupt.png"] and "more than 8-bit samples" in errors["deep.png"]
    measured = [r for r in rows if "error" not in r]
    assert len(measured) == 6 and all(list(r) == ["path", "height", "width", "channels", "mode", "model", "bits",
                                                  "bytes", "bits_per_pixel", "note"] for r in measured)
    # The rows are those of today's --json, file by file.
    status, out, err = in_process(capsys, "size", *[r["path"] for r in measured[:2]], "--json")
    assert status == 0 and json.loads(out)["images"] == measured[:2]
    assert len([line for line in err.splitlines() if line.startswith("ride-tf: error:")]) == 0


def test_resume_of_the_size_command_measures_only_the_rest(photos, tmp_path, capsys):
    output = tmp_path / "sizes.csv"
    status, out, _ = in_process(capsys, "size", photos / "leaf1.png", photos / "corrupt.png", "--output", output)
    assert status == 1 and "1 failed" in out
    status, out, _ = in_process(capsys, "size", photos, "--output", output, "--resume", "--pattern", "leaf*")
    assert status == 1 and "summary: 6 images" in out and "(1 skipped: already in the output)" in out
    paths = [os.path.relpath(r["path"], photos) for r in csv.DictReader(open(output))]
    assert paths == ["leaf1.png", "corrupt.png", "leaf0.png", "leaf2.png", "leaf3.png", "more/leaf4.png",
                     "more/leaf5.png"]


def test_jobs_2_gives_the_rows_of_jobs_1_for_size_and_evaluate(photos, capsys):
    """Worker processes (spawned, each loading the model once) give the same rows, in the same order; the
    rates of evaluate too (the noise is drawn from --seed per image)."""
    for command in ("size", "evaluate"):
        rows = {}
        for jobs in (1, 2):
            seed = ["--seed", 3] if command == "evaluate" else []
            status, out, err = in_process(capsys, command, photos, "--jsonl", "--jobs", jobs, *seed)
            assert status == 1, err
            rows[jobs] = jsonl(out)
        assert rows[1] == rows[2] and len(rows[1]) == 8, command


def test_the_beam_pipeline_gives_the_sizes_of_the_size_command(photos, tmp_path, capsys):
    pytest.importorskip("apache_beam")
    prefix = tmp_path / "out" / "sizes"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "ride_tf.pipelines", "--input", str(photos / "**.png"),
                             "--output", str(prefix), "--parquet", "--direct_num_workers", "2",
                             "--direct_running_mode", "multi_processing"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]          # two images failed
    assert "6 images measured, 2 failed" in result.stdout
    rows = {r["path"]: r for name in glob.glob(f"{prefix}-*.jsonl") for r in jsonl(open(name).read())}
    errors = {r["path"]: r["error"] for name in glob.glob(f"{prefix}.errors-*.jsonl") for r in jsonl(open(name).read())}
    status, out, _ = in_process(capsys, "size", photos, "--jsonl", "--jobs", 1)
    expected = jsonl(out)
    assert rows == {r["path"]: r for r in expected if "error" not in r}
    assert errors == {r["path"]: r["error"] for r in expected if "error" in r}
    summary = json.loads(open(f"{prefix}.summary.json").read())
    assert summary["images"] == 6 and summary["failed"] == 2
    assert summary["bits"] == pytest.approx(sum(r["bits"] for r in rows.values()))
    import pyarrow.parquet

    table = pyarrow.parquet.read_table(glob.glob(f"{prefix}-*.parquet")).to_pylist()
    assert sorted(table, key=lambda r: r["path"]) == sorted(rows.values(), key=lambda r: r["path"])


def test_the_pipeline_options_are_the_commands_own():
    """The pipeline's options for `measure` come from the command's parser (every option of `ride-tf size` and
    `ride-tf evaluate` with its default), so an option added to a command cannot be missing in the pipeline."""
    pipelines = pytest.importorskip("ride_tf.pipelines")
    from ride_tf.cli import build_parser

    defaults = vars(build_parser().parse_args(["size", "x.png"]))
    options = vars(pipelines.size_options(model="gray"))
    assert set(defaults) <= set(options) and options["model"] == "gray" and options["threads"] == 1
    assert options["adapt"] is False and options["colour"] == defaults["colour"] and options["verbose"] == 0
    rate = vars(pipelines.rate_options(seed=5))
    assert rate["seed"] == 5 and rate["region"] == "full" and rate["verbose"] == 0
    with pytest.raises(TypeError, match="ride-tf size has no option 'nope'"):
        pipelines.command_options("size", nope=1)
