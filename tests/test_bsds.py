"""Tests of BSDS300 loading with the paper's split (`ride_tf.data.bsds`)."""
import numpy as np
import pytest
from PIL import Image

from ride_tf import data


def _make_bsds(root, train_ids, test_ids, id_files=True):
    for split, ids in (("train", train_ids), ("test", test_ids)):
        folder = root / "images" / split
        folder.mkdir(parents=True)
        for i in ids:
            image = np.full((6, 9, 3), (int(i) % 250, 40, 200), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{i}.jpg", quality=95)
        if id_files:
            (root / f"iids_{split}.txt").write_text("\n".join(str(i) for i in ids[::-1]) + "\n")


def test_load_bsds300_split(tmp_path):
    train_ids = [str(1000 + 37 * k) for k in range(24)]
    test_ids = [str(5000 + k) for k in range(5)]
    _make_bsds(tmp_path / "BSDS300", train_ids, test_ids)
    images, ids = data.load_bsds300(tmp_path / "BSDS300", strict=False, validation_size=4, return_ids=True)
    assert [len(images[s]) for s in ("train", "validation", "test")] == [20, 4, 5]
    # Sorted ids; the last 4 training ids are the validation set.
    assert ids["train"] + ids["validation"] == sorted(train_ids, key=int)
    assert ids["validation"] == sorted(train_ids, key=int)[-4:]
    for split in images:
        for image, i in zip(images[split], ids[split]):
            assert image.dtype == np.uint8 and image.shape == (6, 9)
            expected = round(0.299 * (int(i) % 250) + 0.587 * 40 + 0.114 * 200)
            assert abs(int(image[3, 4]) - expected) <= 3
    # The parent folder of BSDS300/ works too.
    assert len(data.load_bsds300(tmp_path, strict=False, validation_size=4)["test"]) == 5


def test_load_bsds300_without_id_files(tmp_path):
    _make_bsds(tmp_path, ["3", "1", "2"], ["9"], id_files=False)
    images, ids = data.load_bsds300(tmp_path, strict=False, validation_size=1, return_ids=True)
    assert ids == {"train": ["1", "2"], "validation": ["3"], "test": ["9"]}


def test_load_bsds300_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.load_bsds300(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a BSDS300 folder"):
        data.load_bsds300(tmp_path / "empty")
    root = tmp_path / "small"
    _make_bsds(root, [str(k) for k in range(1, 4)], ["7"])
    with pytest.raises(ValueError, match="expected 200 training and 100 test"):
        data.load_bsds300(root)  # strict: the real counts
    with pytest.raises(ValueError, match="validation_size"):
        data.load_bsds300(root, strict=False)  # 20 validation images of 3
    (root / "images" / "train" / "2.jpg").unlink()
    with pytest.raises(ValueError, match="missing 1 image"):
        data.load_bsds300(root, strict=False, validation_size=1)
