"""Tests of lazily streamed training data (`ride_tf.data`)."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image

from ride_tf import RIDE, data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def constant_images(num, size=40):
    """Image k is constant k + 1, so a patch's value tells which image it came from."""
    return [np.full((size, size + 3 * k), k + 1, np.uint8) for k in range(num)]


@pytest.fixture
def folder(tmp_path):
    for k, image in enumerate(constant_images(6)):
        Image.fromarray(image).save(tmp_path / f"image{k}.png")
    (tmp_path / "broken.png").write_text("not an image")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "tiny.png")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def patch_sources(dataset):
    """The set of images (k + 1 values) that the patches of a finite dataset came from."""
    values = set()
    for batch in dataset:
        batch = batch.numpy()
        assert (batch == batch[:, :1, :1]).all()     # each patch from one constant image
        values.update(int(v) for v in batch[:, 0, 0, 0])
    return values


def test_a_folder_streams_patches_skipping_broken_and_small_files(folder):
    assert len(data.image_files(folder)) == 8      # the .txt file is not listed
    ds = data.streaming_patches(folder, 16, batch_size=8, patches_per_image=4, repeat=False, seed=3)
    batch = next(iter(ds))
    assert batch.shape == (8, 16, 16, 1) and batch.dtype.name == "uint8"
    # 6 usable images x 4 patches = 24 patches = 3 batches; broken.png and tiny.png are skipped.
    assert sum(1 for _ in ds) == 3
    assert patch_sources(ds) == {1, 2, 3, 4, 5, 6}


def test_tfrecord_shards_hold_the_images_and_workers_read_disjoint_shares(tmp_path):
    images = constant_images(8)
    shards = data.write_tfrecords(images, str(tmp_path / "shards" / "train"), num_shards=4)
    assert [os.path.basename(p) for p in shards] == [f"train-0000{k}-of-00004.tfrecord" for k in range(4)]
    assert not [f for f in os.listdir(tmp_path / "shards") if f.startswith(".")]      # no temporary files left
    everything = patch_sources(data.streaming_patches(shards, 12, batch_size=4, patches_per_image=2,
                                                      repeat=False))
    assert everything == set(range(1, 9))
    worker = [patch_sources(data.streaming_patches(shards, 12, batch_size=2, patches_per_image=2, repeat=False,
                                                   num_shards=2, shard_index=i)) for i in range(2)]
    assert worker[0] | worker[1] == everything and not worker[0] & worker[1]


def test_patches_are_crops_of_the_images(tmp_path):
    image = data.dead_leaves(1, size=48, seed=2)[0]
    Image.fromarray(image).save(tmp_path / "leaf.png")
    ds = data.streaming_patches(tmp_path, 10, batch_size=5, patches_per_image=5, flips=False, repeat=False)
    (batch,) = list(ds)
    windows = np.lib.stride_tricks.sliding_window_view(image, (10, 10)).reshape(-1, 10, 10)
    for patch in batch.numpy()[..., 0]:
        assert (windows == patch).all(axis=(1, 2)).any()


def test_the_same_seed_gives_the_same_batches(folder):
    first = [b.numpy() for b in data.streaming_patches(folder, 8, batch_size=4, repeat=False, seed=5)]
    second = [b.numpy() for b in data.streaming_patches(folder, 8, batch_size=4, repeat=False, seed=5)]
    np.testing.assert_array_equal(np.stack(first), np.stack(second))


def test_fit_trains_on_a_streamed_folder(folder):
    """5 Adam steps on streamed patches raise the rate of other patches of the folder by more than 0.25 bit/px
    (about 0.5 measured), from a whitening fitted on dead leaves."""
    keras.utils.set_random_seed(0)
    model = RIDE(num_hiddens=3, num_components=2, num_scales=2, num_features=3)
    model.adapt(data.dead_leaves(4, size=24, seed=0))
    probe = next(iter(data.streaming_patches(folder, 12, batch_size=8, repeat=False, seed=1))).numpy()
    before = model.log_likelihood_rate(probe, seed=0).mean()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(data.streaming_patches(folder, 12, batch_size=4), steps_per_epoch=5, epochs=1, verbose=0)
    after = model.log_likelihood_rate(probe, seed=0).mean()
    assert after > before + 0.25, (before, after)


def test_bad_sources_and_arguments_are_refused(folder, tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        data.image_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="no file matches"):
        data.streaming_patches(str(tmp_path / "*.tfrecord"), 8)
    with pytest.raises(ValueError, match="empty"):
        data.streaming_patches([], 8)
    with pytest.raises(ValueError, match="do not exist"):
        data.streaming_patches([str(tmp_path / "nothing.png")], 8)
    with pytest.raises(ValueError, match="shard_index"):
        data.streaming_patches(folder, 8, num_shards=2, shard_index=2)
    with pytest.raises(ValueError, match=r"shard 8 of 9 has no file \(8 files in all\)"):     # 8 .png files
        data.streaming_patches(folder, 8, num_shards=9, shard_index=8)
    with pytest.raises(ValueError, match="both"):
        data.streaming_patches(folder, 8, num_shards=2)
    with pytest.raises(ValueError, match="patch_size"):
        data.streaming_patches(folder, 0)
    with pytest.raises(ValueError, match="num_channels"):
        data.streaming_patches(folder, 8, num_channels=2)
    with pytest.raises(ValueError, match="uint8"):
        data.write_tfrecords([np.zeros((4, 4), np.float32)], str(tmp_path / "x"))


def test_memory_stays_flat_on_a_data_set_larger_than_the_bound(tmp_path):
    """Streaming 25 MB of images (24 x 1 Mpx of noise) raises the process's peak memory by under 6 MB."""
    script = textwrap.dedent(f"""
        import resource, numpy as np
        from PIL import Image
        rng = np.random.default_rng(0)
        for k in range(24):
            Image.fromarray(rng.integers(0, 256, (1024, 1024), dtype=np.uint8)).save(
                "{tmp_path}/noise%02d.png" % k, compress_level=0)
        from ride_tf import data
        ds = data.streaming_patches("{tmp_path}", 16, batch_size=16, patches_per_image=4, shuffle_buffer=256,
                                    repeat=False)
        batches = iter(ds)
        next(batches)
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        before = peak()
        count = 1 + sum(1 for _ in batches)
        print(count, peak() - before)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    count, growth = result.stdout.split()[-2:]
    assert int(count) == 24 * 4 // 16
    assert float(growth) < 6.0, growth
