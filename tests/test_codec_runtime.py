"""The codec's runtime without TensorFlow: integer model files, the shipped models found by name and fingerprint,
the cache of derived models, and threads that change neither the bytes nor the pixels."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ride_tf import codec, pretrained
from ride_tf.codec import model_file, native, registry
from ride_tf.codec.rans import RansError
from test_layering import RUNTIME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Put first in a script: any import of TensorFlow, Keras or TFP raises.
BLOCK = textwrap.dedent("""
    import sys
    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tensorflow_probability", "tf_keras"):
                raise ImportError("blocked in this test: " + name)
    sys.meta_path.insert(0, Blocked())
""")


def run_script(body, *args, env=None):
    result = subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(body), *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=dict(os.environ, **(env or {})))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def photo(channels, height=96, width=136):
    """A crop of a held-out photo (camera, or coffee in colour), big enough for three coding threads."""
    if channels == 1:
        return pretrained.load_photo("camera", 1, crop=False)[150:150 + height, 100:100 + width]
    return np.ascontiguousarray(pretrained.load_photo("coffee", 3, crop=False)[80:80 + height, 150:150 + width])


def test_compress_decompress_and_sizes_run_where_tensorflow_cannot_be_imported(tmp_path):
    """In a process where importing TensorFlow, Keras or TFP fails, every module of the codec's runtime imports,
    the shipped models code gray images, colour images jointly and by planes, `decompress(data)` finds each
    file's model by its fingerprint, the exact sizes equal the payloads' and the command line's compress,
    decompress and size work; afterwards none of those packages is loaded."""
    gray, colour = photo(1), photo(3)
    np.save(tmp_path / "gray.npy", gray)
    np.save(tmp_path / "colour.npy", colour)
    from PIL import Image

    Image.fromarray(gray[..., 0]).save(tmp_path / "gray.png")
    out = run_script(f"""
        import importlib, json, numpy as np
        for name in {RUNTIME!r}:
            importlib.import_module("ride_tf" + ("." + name if name else ""))
        import ride_tf
        from ride_tf import codec
        gray, colour = np.load(sys.argv[1] + "/gray.npy"), np.load(sys.argv[1] + "/colour.npy")
        checks = []
        for model, image, transform in (("gray", gray, None), ("rgb", colour, None), ("gray", colour, "rct")):
            data = ride_tf.compress(model, image, colour_transform=transform)
            checks.append(bool(np.array_equal(ride_tf.decompress(data), image)))
            bits = ride_tf.compressed_size_bits(model, image[None], colour_transform=transform)[0]
            checks.append(bool(bits <= 8 * (len(data) - codec.read_header(data).size) <= bits + 96 * 32 + 96))
        from ride_tf.cli import main
        png, ride, back = sys.argv[1] + "/gray.png", sys.argv[1] + "/gray.ride", sys.argv[1] + "/back.png"
        checks.append(main(["compress", png, ride]) == 0 and main(["decompress", ride, back]) == 0)
        checks.append(main(["size", png, "--json"]) == 0)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tensorflow_probability"))
        print(json.dumps(dict(checks=checks, loaded=loaded)))
    """, tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    assert result == dict(checks=[True] * 8, loaded=[])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), gray[..., 0])


def test_a_decompress_imports_no_tensorflow_module(tmp_path):
    """`python -X importtime` of `import ride_tf.codec; ride_tf.codec.decompress(data)` lists no module of
    TensorFlow, Keras or TFP, and does list the codec's (those imported by import statements: importtime does
    not see importlib.import_module, which the lazy package attributes use, but does see every import statement
    inside what it imports, so TensorFlow's own would show)."""
    path = tmp_path / "image.ride"
    path.write_bytes(codec.compress("gray", photo(1, 32, 40)))
    result = subprocess.run([sys.executable, "-X", "importtime", "-c",
                             f"import ride_tf.codec; ride_tf.codec.decompress(open({str(path)!r}, 'rb').read())"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "ride_tf.codec.coding" in modules and "ride_tf.codec.kernels" in modules
    assert [m for m in modules if m.split(".")[0] in ("tensorflow", "keras", "tensorflow_probability")] == []


@pytest.mark.parametrize("kind", ["gray", "rgb", "planes"])
def test_files_and_pixels_do_not_depend_on_the_thread_count(kind):
    """1, 2 and 3 coding threads write the same bytes, and decode them to the same pixels; the exact sizes agree
    too.  The images are large enough for 3 threads (at least 3 x `PIXELS_PER_THREAD` pixels) and for rounds of
    pixels that the threads share (at least 6 rANS lanes)."""
    image = {"gray": photo(1, 192, 256), "rgb": photo(3, 128, 160), "planes": photo(3, 192, 256)}[kind]
    assert image.shape[0] * image.shape[1] >= 3 * native.PIXELS_PER_THREAD
    assert codec.coding.num_lanes(*image.shape[:2], 1 if kind == "planes" else image.shape[2]) >= 6
    model, transform = ("rgb", None) if kind == "rgb" else ("gray", "rct" if kind == "planes" else None)
    files = [codec.compress(model, image, colour_transform=transform, threads=t) for t in (1, 2, 3)]
    assert files[0] == files[1] == files[2]
    for t in (1, 2, 3):
        decoded = codec.decompress(files[0], threads=t)
        np.testing.assert_array_equal(decoded.reshape(image.shape), image)
    sizes = [codec.compressed_size_bits(model, image[None], colour_transform=transform, threads=t)[0]
             for t in (1, 3)]
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("model", ["gray", "rgb"])
@pytest.mark.parametrize("size", [(160, 136), (256, 336)])
def test_every_thread_count_decodes_the_pixels_and_refuses_a_stream_cut_short(model, size):
    """The decoder's threads own lanes where there are at least 2 T (gray 256 x 336 has 10, shared by 2-5 threads,
    evenly or not; colour 160 x 136 has 7, 256 x 336 31), else share each front's LSTM and leave the values to
    thread 0 (gray 160 x 136 has 2 lanes); both give the image back on 1 to 5 threads (lanes that wrap around
    within a round, rounds shorter than the lanes), and a stream cut short raises RansError on every thread
    count."""
    image = photo(3 if model == "rgb" else 1, *size)
    integer = codec.as_integer_model(model)
    coder = codec.coding.coder_for(integer)
    data = codec.coding.encode(coder, image)
    height, width = image.shape[:2]
    assert height * width >= 5 * native.PIXELS_PER_THREAD
    lanes = {("gray", (160, 136)): 2, ("gray", (256, 336)): 10, ("rgb", (160, 136)): 7, ("rgb", (256, 336)): 31}
    assert codec.coding.num_lanes(height, width, image.shape[2]) == lanes[model, size]
    for threads in range(1, 6):
        decoded = codec.coding.decode_native(coder, data, height, width, threads=threads)
        np.testing.assert_array_equal(decoded, image, err_msg=f"{threads} threads")
        with pytest.raises(RansError):
            codec.coding.decode_native(coder, data[:-8], height, width, threads=threads)


def test_threads_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="threads"):
        codec.compress("gray", photo(1, 8, 8), threads=0)
    with pytest.raises(ValueError, match="threads"):
        codec.decompress(codec.compress("gray", photo(1, 8, 8)), threads=-1)


# ------------------------------------------------------------------ the integer model file
def test_an_integer_model_file_loads_back_integer_for_integer(tmp_path):
    """save, then load: the same configuration, the same arrays and the same fingerprint; the file codes the
    same bytes as the model it came from."""
    integer = registry.shipped_model("gray-small")
    path = model_file.save_integer_model(integer, tmp_path / "m.integer.npz", source=dict(note="test"))
    back = model_file.load_integer_model(path)
    assert back.fingerprint == integer.fingerprint and back.config() == integer.config()
    for name, array in integer.named_arrays().items():
        np.testing.assert_array_equal(back.named_arrays()[name], array, err_msg=name)
    assert model_file.read_meta(path)["source"] == dict(note="test")
    image = photo(1, 24, 30)
    assert codec.compress(back, image) == codec.compress(integer, image) == codec.compress(str(path), image)


def rewrite(path, target, change):
    """Copy the npz file `path` to `target` with change(arrays) applied to its arrays (a dict)."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    change(arrays)
    with open(target, "wb") as f:
        np.savez(f, **arrays)
    return target


def with_meta(arrays, **fields):
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta.update(fields)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)


@pytest.mark.parametrize("damage, message", [
    ("truncated", "not an integer model file"),
    ("weight changed", "does not match its fingerprint"),
    ("shape", "has shape"),
    ("not an integer", "must hold integers"),
    ("version", "version 99"),
    ("missing array", "missing"),
    ("no meta", "no meta record"),
    ("out of range", "could leave the exact range"),
])
def test_a_damaged_or_foreign_integer_model_file_is_refused_by_name(tmp_path, damage, message):
    """Each kind of damage raises ModelFileError naming it; nothing is returned that could code wrong tables."""
    source = registry.shipped_path("gray-small")
    target = tmp_path / "bad.integer.npz"

    def scale(name, factor):
        return lambda a: a.__setitem__(name, a[name] * factor)

    changes = {
        "weight changed": lambda a: a.__setitem__("layer0.weights", a["layer0.weights"] + np.eye(*a["layer0.weights"].shape)),
        "shape": lambda a: a.__setitem__("logit_offset", a["logit_offset"][:-1]),
        "not an integer": lambda a: a.__setitem__("logit_offset", a["logit_offset"] + 0.5),
        "version": lambda a: with_meta(a, version=99),
        "missing array": lambda a: a.pop("regressions"),
        "no meta": lambda a: a.pop("meta"),
        "out of range": scale("gate.weights", 2.0 ** 40),
    }
    if damage == "truncated":
        target.write_bytes(open(source, "rb").read()[:1000])
    else:
        rewrite(source, target, changes[damage])
    with pytest.raises(model_file.ModelFileError, match=message):
        model_file.load_integer_model(target)


@pytest.mark.parametrize("derivation", [2, 1])
def test_every_shipped_integer_model_is_its_float_models_derivation(derivation):
    """Each NAME.integer.npz shipped beside NAME.keras holds, integer for integer, the integer model derived from
    the float weights (so the shipped file and a derivation on any machine code the same files); so does each
    derivation-1 file of ride_tf/pretrained/derivation-1 (the integer models of the files written before the
    16-bit products), by derivation 1."""
    names = sorted(pretrained.available())
    assert registry.shipped_names(derivation) == names
    for name in names:
        shipped = registry.shipped_model(name, derivation)
        derived = codec.integer_model(pretrained.load(name), derivation)
        assert derived.fingerprint == shipped.fingerprint, name
        assert derived.config() == shipped.config(), name
        for key, array in derived.named_arrays().items():
            np.testing.assert_array_equal(shipped.named_arrays()[key], array, err_msg=f"{name}: {key}")


def test_files_of_the_earlier_derivation_decode_found_or_named():
    """A file written with a shipped model's derivation-1 integer model (as ride-tf wrote them before the 16-bit
    products) decodes without naming the model (found as "NAME (derivation 1)"), naming the shipped model, and
    naming its float model (derived again by derivation 1); the current derivation codes the same picture within
    0.2% of its size."""
    image = photo(1, 24, 40)
    earlier, current = registry.shipped_model("gray-small", 1), registry.shipped_model("gray-small")
    data = codec.compress(earlier, image)
    assert codec.find_model(codec.read_header(data)).name == "gray-small (derivation 1)"
    for model in (None, "gray-small", pretrained.load("gray-small")):
        decoded = codec.decompress(data) if model is None else codec.decompress(model, data)
        np.testing.assert_array_equal(decoded, image)
    with pytest.raises(codec.CodecError, match="another model"):
        codec.decompress(current, data)
    sizes = [codec.compressed_size_bits(model, [image])[0] for model in (earlier, current)]
    assert abs(sizes[1] / sizes[0] - 1) < 0.002, sizes


def test_the_header_names_a_shipped_model_that_decompress_finds():
    """Files of the shipped models, earlier ones included, decode without naming the model; the planes of a
    colour image are found through the gray model."""
    image = photo(1, 12, 20)
    for name in ("gray-small", "gray-102min"):
        data = codec.compress(name, image)
        found = codec.find_model(codec.read_header(data))
        assert found.name == name and found.coding == (None, False, False)
        np.testing.assert_array_equal(codec.decompress(data), image)
    data = codec.compress("gray", photo(3, 12, 20), colour_transform="rct")
    assert codec.find_model(codec.read_header(data))[1:] == (("rct", False, False), "gray")


# ------------------------------------------------------------------ the cache of derived models
def test_a_keras_file_is_derived_once_then_coded_without_tensorflow(tmp_path):
    """The first compress with a .keras file derives its integer model and caches it (keyed by the file's
    SHA-256, in RIDE_TF_CACHE); a process that cannot import TensorFlow then compresses with the same .keras
    path and decodes the file without naming the model (found in the cache by fingerprint)."""
    model = pretrained.load("gray-small")
    keras_path = tmp_path / "mine.keras"
    model.save(keras_path)
    cache = tmp_path / "cache"
    os.environ["RIDE_TF_CACHE"], saved = str(cache), os.environ["RIDE_TF_CACHE"]
    try:
        image = photo(1, 20, 28)
        data = codec.compress(str(keras_path), image)
        cached = sorted(os.listdir(cache / "integer-models"))
        assert len(cached) == 1 and cached[0].endswith(".integer.npz")
        assert model_file.read_meta(cache / "integer-models" / cached[0])["source"]["keras_file"] == "mine.keras"
    finally:
        os.environ["RIDE_TF_CACHE"] = saved
    np.save(tmp_path / "image.npy", image)
    out = run_script("""
        import numpy as np
        from ride_tf import codec
        image = np.load(sys.argv[1])
        data = codec.compress(sys.argv[2], image)
        print(codec.decompress(data).tobytes() == image.tobytes(), len(data))
    """, tmp_path / "image.npy", keras_path, env={"RIDE_TF_CACHE": str(cache)})
    assert out.split() == ["True", str(len(data))]


def test_export_codec_writes_the_integer_model_file(tmp_path):
    """`ride-tf export M.keras OUT --codec` writes the model's integer model file: it loads with NumPy and codes
    as the .keras file does."""
    from ride_tf.cli import main

    keras_path, out = tmp_path / "m.keras", tmp_path / "m.integer.npz"
    pretrained.load("gray-small").save(keras_path)
    assert main(["export", str(keras_path), str(out), "--codec"]) == 0
    integer = model_file.load_integer_model(out)
    assert integer.fingerprint == registry.shipped_model("gray-small").fingerprint
