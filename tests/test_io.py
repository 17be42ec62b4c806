"""Tests of `ride_tf.io`: files are written under a temporary name and renamed, never left half-written."""
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image

from ride_tf import io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def leftovers(folder):
    return [name for name in os.listdir(folder) if io.is_temporary_name(name)]


def test_each_writer_writes_its_file_and_leaves_no_temporary(tmp_path):
    io.atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    io.atomic_write_bytes(tmp_path / "a.bin", b"new")                       # replaces
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    io.atomic_write_text(tmp_path / "sub" / "t.md", "| a |\n")              # creates the folder
    assert (tmp_path / "sub" / "t.md").read_text() == "| a |\n"
    io.atomic_write_json(str(tmp_path / "r.json"), {"rate": 2.5, "stages": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"rate": 2.5, "stages": [1, 2]}
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    io.atomic_write_png(image[..., None], tmp_path / "i.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "i.png")), image)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    io.atomic_save_model(model, str(tmp_path / "m.keras"))
    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    with io.atomic_directory(tmp_path / "saved") as folder:
        with open(os.path.join(folder, "saved_model.pb"), "wb") as stream:
            stream.write(b"pb")
    assert (tmp_path / "saved" / "saved_model.pb").read_bytes() == b"pb"
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "sub") == []


def test_savefig_goes_through_a_temporary_name(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    io.atomic_savefig(fig, tmp_path / "f.png", dpi=20)
    plt.close(fig)
    assert Image.open(tmp_path / "f.png").format == "PNG" and leftovers(tmp_path) == []


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"the previous model")

    class Broken:
        def save(self, path):
            with open(path, "wb") as stream:
                stream.write(b"half a mod")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.atomic_save_model(Broken(), str(target))
    assert target.read_bytes() == b"the previous model" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with io.atomic_directory(tmp_path / "export") as folder:
            open(os.path.join(folder, "half"), "wb").close()
            raise RuntimeError("killed")
    assert not (tmp_path / "export").exists() and leftovers(tmp_path) == []


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError):
        io.atomic_write_bytes(tmp_path / "x", "text, not bytes")
    with pytest.raises(TypeError):
        io.atomic_write_bytes(3, b"")
    with pytest.raises(ValueError, match="is a directory"):
        io.atomic_write_bytes(tmp_path, b"")
    with pytest.raises(ValueError, match=".keras"):
        io.atomic_save_model(object(), str(tmp_path / "m.h5"))
    with pytest.raises(ValueError, match="uint8"):
        io.atomic_write_png(np.zeros((2, 2)), tmp_path / "x.png")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not an empty directory"):
        with io.atomic_directory(tmp_path / "full"):
            pass
    assert leftovers(tmp_path) == []


KILLED_WRITER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from ride_tf import io
    with io.atomic_path({path!r}) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(b"half of the new fi")
            stream.flush()
            os._exit(9)          # killed mid-write: no clean-up, no rename
""")


def test_a_process_killed_while_writing_leaves_the_previous_file(tmp_path):
    target = tmp_path / "samples.png"
    target.write_bytes(b"previous")
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER.format(root=ROOT, path=str(target)))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120)
    assert result.returncode == 9
    assert target.read_bytes() == b"previous"
    assert len(leftovers(tmp_path)) == 1          # the killed writer's temporary, under a hidden name


WRITE = re.compile(r"""\.save\(|(?<!atomic_)savefig\(|open\([^)]*["'](w|wb|a|ab|x|xb|w\+)["']|\.write_out\(|"""
                   r"""np\.save\(|\.tofile\(|\.write_text\(|\.write_bytes\(""")


def test_the_package_and_the_examples_write_files_only_through_ride_tf_io():
    """Every `.save(`, `savefig(`, `open(..., "w")` ... of the package and the examples is in ride_tf/io.py,
    or is a writer handed a temporary path by it (the marked lines)."""
    offenders = []
    for folder in ("ride_tf", "examples"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if not name.endswith(".py") or (folder, name) == ("ride_tf", "io.py"):
                continue
            with open(os.path.join(ROOT, folder, name)) as stream:
                for number, line in enumerate(stream, 1):
                    # RIDE.save checks the weights, then hands the path to Keras's own save: not a writer.
                    delegates = line.strip().startswith("return super().save(")
                    if WRITE.search(line) and "temporary" not in line and "tmp" not in line and not delegates:
                        offenders.append(f"{folder}/{name}:{number}: {line.strip()}")
    assert offenders == []
