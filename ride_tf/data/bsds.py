"""BSDS300 (Martin et al. 2001) with the paper's split: 180 training, 20 validation, 100 test images.

`load_bsds300` loads a local copy (the archive is not downloaded here) as
grayscale images (ITU-R 601-2 luma).
"""
from pathlib import Path

from ride_tf.data.files import load_image

__all__ = ["BSDS300_NUM_TRAIN", "BSDS300_NUM_TEST", "BSDS300_NUM_VALIDATION", "load_bsds300"]

BSDS300_NUM_TRAIN = 200
BSDS300_NUM_TEST = 100
BSDS300_NUM_VALIDATION = 20


def _sort_ids(ids):
    return sorted(ids, key=lambda i: (0, int(i), i) if i.isdigit() else (1, 0, i))


def _bsds_ids(root, split):
    """Image ids of one split: from ``iids_<split>.txt`` if present, else the JPEG names."""
    folder = root / "images" / split
    if not folder.is_dir():
        raise ValueError(f"{root}: not a BSDS300 folder, missing directory {folder}")
    id_file = root / f"iids_{split}.txt"
    if id_file.is_file():
        ids = [line.strip() for line in id_file.read_text().splitlines() if line.strip()]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{id_file}: duplicate image ids")
        missing = [i for i in ids if not (folder / f"{i}.jpg").is_file()]
        if missing:
            raise ValueError(f"{folder}: missing {len(missing)} image(s) listed in {id_file.name}, "
                             f"e.g. {missing[0]}.jpg")
    else:
        ids = [p.stem for p in folder.glob("*.jpg")]
    return _sort_ids(ids)


def load_bsds300(root, strict=True, validation_size=BSDS300_NUM_VALIDATION, return_ids=False):
    """Load a local BSDS300 copy as grayscale images with the paper's split.

    Expected layout (that of the BSDS300 distribution, ``BSDS300-images.tgz``)::

        root/images/train/<id>.jpg   (200 images)
        root/images/test/<id>.jpg    (100 images)
        root/iids_train.txt          (optional: one id per line)
        root/iids_test.txt           (optional)

    ``root`` is the folder containing ``images/``; a folder containing a
    ``BSDS300`` subfolder with that layout is accepted too.  When an id file
    exists it defines the split's images (each must exist); otherwise all
    ``*.jpg`` files of the split folder are used.

    Protocol (Uria et al., as in the paper, Section 3.2): images are converted
    to grayscale (ITU-R 601-2 luma); the training ids, sorted in ascending
    numeric order, are split into the first 180 for training and the last
    ``validation_size`` (20) for validation; the 100 test images form the test
    set.  (Dequantization noise and scaling to [0, 1) are the model input's
    business, see ``ride_tf.preprocessing``.)

    Args:
        root: path of the BSDS300 folder.
        strict: if True, require exactly 200 training and 100 test images;
            if False, accept any counts (e.g. partial copies for tests).
        validation_size: number of training images held out for validation;
            must be smaller than the number of training images.
        return_ids: also return the ids of each split.

    Returns:
        dict {"train": [...], "validation": [...], "test": [...]} of lists of
        uint8 arrays [H, W] (BSDS300 images are 481 x 321 or 321 x 481), in id
        order; with ``return_ids`` a pair (images, ids) with ids a dict of lists
        of str.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: wrong layout, missing listed images, or wrong counts.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such directory")
    if not (root / "images").is_dir() and (root / "BSDS300" / "images").is_dir():
        root = root / "BSDS300"
    if not (root / "images").is_dir():
        raise ValueError(f"{root}: not a BSDS300 folder, expected {root / 'images'}/train and /test")
    train_ids = _bsds_ids(root, "train")
    test_ids = _bsds_ids(root, "test")
    if strict and (len(train_ids), len(test_ids)) != (BSDS300_NUM_TRAIN, BSDS300_NUM_TEST):
        raise ValueError(f"{root}: expected {BSDS300_NUM_TRAIN} training and {BSDS300_NUM_TEST} test "
                         f"images, found {len(train_ids)} and {len(test_ids)} (use strict=False for "
                         f"partial copies)")
    validation_size = int(validation_size)
    if not 0 <= validation_size < len(train_ids):
        raise ValueError(f"{root}: validation_size={validation_size} needs more than that many "
                         f"training images, found {len(train_ids)}")
    cut = len(train_ids) - validation_size
    ids = {"train": train_ids[:cut], "validation": train_ids[cut:], "test": test_ids}
    folders = {"train": "train", "validation": "train", "test": "test"}
    images = {split: [load_image(root / "images" / folders[split] / f"{i}.jpg", mode="gray") for i in split_ids]
              for split, split_ids in ids.items()}
    return (images, ids) if return_ids else images
