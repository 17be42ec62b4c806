"""`ride-tf size` over a folder of small photos: --jobs 1 (and --jobs 1 --threads 1) against --jobs 2, and a folder
with bad files.

The folder: `--images` (200) gray crops of `--crop` (128) pixels square at
seeded random places in scikit-image's camera, coffee and chelsea (held out
from the shipped models' training; coffee and chelsea by their luma).  Each
command runs as a user runs it, a fresh `ride-tf size FOLDER --jsonl` process
(process start and the integer model's loading included; no TensorFlow), the
jobs alternating over `--rounds` rounds; the table has each one's best wall
time, the ratio jobs 1 / jobs N, and "other load": the most CPU (in cores)
that processes other than the command used during one of its runs (from
/proc/stat less the command's own CPU time): above ~0.2 the times are
disturbed.  The column "CPU s" is the CPU time of the command and its worker
processes, which the load hardly changes; on N free cores --jobs 1 takes
about its CPU time and --jobs N about 1/N of its own (every worker's start,
then 1/N of the images each), so N x CPU(--jobs 1) / CPU(--jobs N) is the
speed-up that the work allows, printed beside the measured one.  The rows of
every run must be equal.  Then a corrupt PNG (half a
file) and an unsupported file (a 16-bit PNG) are added, and `--jobs N` must
exit with status 1 with a row for every photo and an error row for each of the
two files.

    .venv/bin/python benchmarks/bench_batch.py                    # 200 crops, --jobs 1 and 2, 2 rounds
    .venv/bin/python benchmarks/bench_batch.py --wait-quiet 300   # on a shared machine
    .venv/bin/python benchmarks/bench_batch.py --images 40 --rounds 1   # quick
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("camera", "coffee", "chelsea")


def write_crops(folder, count, side, seed=0):
    import numpy as np
    import skimage.data
    from PIL import Image

    photos = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        photos.append(np.asarray(Image.fromarray(image).convert("L")) if image.ndim == 3 else image)
    rng = np.random.default_rng(seed)
    for k in range(count):
        photo = photos[k % len(photos)]
        i, j = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        Image.fromarray(photo[i:i + side, j:j + side]).save(os.path.join(folder, f"crop_{k:04d}.png"))


def busy_seconds():
    """CPU seconds (all cores) the machine has spent busy since boot."""
    with open("/proc/stat") as stream:
        values = [int(v) for v in stream.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")      # less idle and iowait


def unniced_cpu_seconds(exclude=()):
    """{pid: CPU seconds used so far} of the processes not running under nice (nice <= 0), less `exclude`."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open(f"/proc/{name}/stat") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[16]) <= 0:             # nice
            out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")     # utime, stime
    return out


def wait_quiet(limit, threshold=0.25):
    """Wait (at most `limit` seconds) until the processes that are not niced use under `threshold` cores in three
    windows of 3 s in a row: a niced job (a training run) yields its CPU to the command and is not waited for."""
    deadline, quiet = time.time() + limit, 0
    while True:
        before = unniced_cpu_seconds({os.getpid()})
        time.sleep(3)
        after = unniced_cpu_seconds({os.getpid()})
        load = sum(max(0.0, seconds - before.get(pid, 0.0)) for pid, seconds in after.items()) / 3
        quiet = quiet + 1 if load < threshold else 0
        if quiet == 3 or time.time() > deadline:
            return load
        if not quiet:
            print(f"  waiting: other processes use {load:.2f} cores", flush=True)


def run_size(folder, jobs, threads=None):
    """(wall seconds, rows, exit status, other load in cores, CPU seconds of the command and its workers) of one
    `ride-tf size FOLDER --jsonl --jobs N [--threads T]`."""
    command = [sys.executable, "-m", "ride_tf", "size", folder, "--jsonl", "--jobs", str(jobs)]
    command += [] if threads is None else ["--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, start = busy_seconds(), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall, busy = time.perf_counter() - start, busy_seconds() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return wall, rows, result.returncode, max(0.0, busy - own) / wall, own


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--jobs", type=int, default=2, help="the parallel run's --jobs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                        help="before each run, wait up to S seconds for the processes that are not niced to go quiet")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="bench_batch_")
    try:
        photos = os.path.join(folder, "photos")
        os.mkdir(photos)
        write_crops(photos, args.images, args.crop)
        print(f"{args.images} gray crops of {args.crop} x {args.crop} (camera, coffee, chelsea) in {photos}; "
              f"{os.cpu_count()} cores")
        # --jobs 1 codes each image with every core's thread (the default --threads); "--jobs 1 --threads 1" is
        # one core, the speed-up that the worker processes alone give.
        runs = {"1": (1, None), "1t1": (1, 1), "N": (args.jobs, None)}
        label = {"1": "--jobs 1", "1t1": "--jobs 1 --threads 1", "N": f"--jobs {args.jobs}"}
        results = {}
        times, loads, cpus = ({key: [] for key in runs} for _ in range(3))
        for round_ in range(args.rounds):
            for key in list(runs) if round_ % 2 == 0 else list(runs)[::-1]:
                if args.wait_quiet:
                    wait_quiet(args.wait_quiet)
                wall, rows, status, load, cpu = run_size(photos, *runs[key])
                if status != 0 or len(rows) != args.images:
                    raise SystemExit(f"{label[key]}: status {status}, {len(rows)} rows")
                if results.setdefault("rows", rows) != rows:
                    raise SystemExit(f"{label[key]} gave other rows than the first run")
                times[key].append(wall)
                loads[key].append(load)
                cpus[key].append(cpu)
                print(f"  round {round_ + 1}: {label[key]}: {wall:6.1f} s, CPU {cpu:6.1f} s (other load {load:.2f} "
                      "cores)", flush=True)
        print(f"\n{'command':52s} {'wall s':>7s} {'images/s':>9s} {'CPU s':>7s} {'other load':>10s}")
        for key in runs:
            best = min(times[key])
            print(f"{'ride-tf size photos/ --jsonl ' + label[key]:52s} {best:7.1f} {args.images / best:9.2f} "
                  f"{min(cpus[key]):7.1f} {max(loads[key]):10.2f}")
        ratio = min(times["1"]) / min(times["N"])
        ratio_one_core = min(times["1t1"]) / min(times["N"])
        # On free cores a one-core run takes about its CPU time, --jobs N about 1/N of its own CPU time (the
        # start of every worker, then 1/N of the images).
        bound = args.jobs * min(cpus["1t1"]) / min(cpus["N"])
        total = sum(r["bytes"] for r in results["rows"])
        print(f"speed-up --jobs {args.jobs} / --jobs 1: {ratio:.2f} measured (target 1.7; --jobs 1 already codes "
              f"with {os.cpu_count()} threads); over --jobs 1 --threads 1: {ratio_one_core:.2f} measured, "
              f"{bound:.2f} from the CPU times; rows equal: yes; "
              f"{total:,.1f} bytes in all, {8 * total / (args.images * args.crop ** 2):.4f} bit/px")

        png = open(os.path.join(photos, "crop_0000.png"), "rb").read()
        with open(os.path.join(photos, "corrupt.png"), "wb") as stream:      # the benchmark's own folder
            stream.write(png[:len(png) // 2])
        import numpy as np
        from PIL import Image

        Image.fromarray(np.full((32, 32), 1000, np.uint16)).save(os.path.join(photos, "deep16.png"))
        wall, rows, status, load, _ = run_size(photos, args.jobs)
        errors = [r for r in rows if "error" in r]
        measured = [r for r in rows if "error" not in r]
        print(f"\nwith a corrupt and a 16-bit PNG added, --jobs {args.jobs}: exit status {status}, "
              f"{len(measured)} results, {len(errors)} error lines ({wall:.1f} s)")
        for row in errors:
            print(f"  {os.path.basename(row['path'])}: {row['error']}")
        ok = status == 1 and measured == results["rows"] and len(errors) == 2
        print(f"nothing lost: the {args.images} rows equal the clean run's" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
