"""Multi-worker training: two worker processes on localhost under MultiWorkerMirroredStrategy.

The Keras path (`compile`/`fit`) divides the loss by the number of replicas
(`RIDE.compute_loss`), so that the all-reduced gradients are those of the
global batch's mean: two workers that each see half of every global batch
must end with the weights of one process that sees all of it.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {root!r})
    import numpy as np, tensorflow as tf, keras
    from ride_tf import RIDE
    from ride_tf.training import sample_patches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32)).astype(np.uint8)
    patches = (sample_patches(images, 12, 64, seed=1).astype(np.float32) + 0.5) / 256.0
    multi = "TF_CONFIG" in os.environ
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi else tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = RIDE(num_hiddens=6, num_layers=1, num_components=3, num_scales=2, num_features=4)
        model.adapt(images, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    initial = [np.asarray(w, np.float64).ravel().tolist() for w in model.get_weights()]
    ds = tf.data.Dataset.from_tensor_slices(patches).batch(16)   # global batches of 16
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    model.fit(ds.with_options(options), epochs=2, verbose=0, shuffle=False)
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"] if multi else "single"
    with open(os.path.join({out!r}, f"weights_{{task}}.json"), "w") as stream:
        json.dump(dict(initial=initial, final=[np.asarray(w, np.float64).ravel().tolist()
                                               for w in model.get_weights()]), stream)
""")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_end_with_the_weights_of_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT.format(root=ROOT, out=str(tmp_path)))
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    workers = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(base, TF_CONFIG=json.dumps(
                                    {"cluster": cluster, "task": {"type": "worker", "index": i}})))
               for i in range(2)]
    single = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=base, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    for worker in workers:
        try:
            _, err = worker.communicate(timeout=600)
        finally:
            worker.kill()
        assert worker.returncode == 0, err[-3000:]
    load = lambda name, key: [np.array(w) for w in
                              json.loads((tmp_path / f"weights_{name}.json").read_text())[key]]
    reference, first, second = load("single", "final"), load(0, "final"), load(1, "final")
    for w_ref, w0, w1 in zip(reference, first, second):
        np.testing.assert_array_equal(w0, w1)                   # the workers hold the same weights
        np.testing.assert_allclose(w0, w_ref, rtol=1e-4, atol=1e-6)
    # Training moved the weights, so the agreement is not that of two untouched models.
    moved = max(float(np.abs(w - w0).max()) for w, w0 in zip(reference, load("single", "initial")))
    assert moved > 1e-2, moved
