"""Every public name imports first, in a fresh process, and importing the package has no side effects.

Import-order faults (a module that works only when another was imported
before it) hide in a test process that has imported everything already, so
each name is imported as the first import of a new interpreter.
"""
import concurrent.futures
import os
import subprocess
import sys

import ride_tf
import ride_tf.nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPACKAGES = ("codec", "data", "nn", "training", "wavefront", "pretrained", "cli")


def statements():
    """{statement: what it imports}: each top-level name, each name of ride_tf.nn and each subpackage."""
    out = {f"from ride_tf import {name}": f"ride_tf.{name}" for name in ride_tf.__all__}
    out.update({f"from ride_tf.nn import {name}": f"ride_tf.nn.{name}" for name in ride_tf.nn.__all__})
    out.update({f"import ride_tf.{name}": f"ride_tf.{name}" for name in SUBPACKAGES})
    return out


def run_first(statement):
    """(statement, error text or None) of a fresh interpreter whose first import is `statement`."""
    result = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    lines = result.stderr.strip().splitlines()
    return statement, (lines[-1] if lines else f"exit status {result.returncode}") if result.returncode else None


def test_every_public_name_imports_first_in_a_fresh_process():
    todo = statements()
    assert len(todo) > 40 and "from ride_tf.nn import MCGSM" in todo and "from ride_tf import SpatialLSTM" in todo
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        failures = {s: error for s, error in pool.map(run_first, sorted(todo)) if error}
    assert failures == {}


def test_importing_the_package_installs_no_hooks_and_sets_no_environment():
    """`import ride_tf` (and a subpackage) adds no import hook, imports neither Keras nor TensorFlow and leaves
    the environment as it was."""
    code = ("import os, sys; before = (list(sys.meta_path), dict(os.environ)); import ride_tf, ride_tf.codec, "
            "ride_tf.data, ride_tf.nn; after = (list(sys.meta_path), dict(os.environ)); "
            "print(before == after, 'keras' in sys.modules, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False"]


def test_keras_loads_a_ride_file_after_the_model_module_is_imported(tmp_path):
    """The documented way to load a .keras file with Keras itself: import ride_tf.model (its classes register
    with Keras), then keras.models.load_model gives a RIDE with the same weights."""
    path = tmp_path / "small.keras"
    code = ("import numpy as np, keras, ride_tf.model as m; r = m.RIDE(num_hiddens=3, num_components=2, "
            "num_scales=2, num_features=3); r.adapt(np.random.default_rng(0).integers(0, 256, (2, 12, 12), "
            f"dtype=np.uint8)); r.save({str(path)!r}); s = keras.models.load_model({str(path)!r}); "
            "print(type(s).__name__, all(np.array_equal(a, b) for a, b in zip(r.get_weights(), s.get_weights())))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["RIDE", "True"]


def test_the_top_level_names_are_the_package_objects():
    from ride_tf.model import RIDE, load_model

    assert ride_tf.RIDE is RIDE and ride_tf.load_model is load_model
    assert callable(ride_tf.pretrained) and ride_tf.compress.__module__ == "ride_tf.codec.api"
    assert set(ride_tf.__all__) <= set(dir(ride_tf))
