"""The data sets of the paper and image files: this module's names now live in `ride_tf.data`.

Kept so that ``from ride_tf import datasets`` and ``ride_tf.datasets.dead_leaves(...)`` keep working;
new code imports from `ride_tf.data` (or its modules `leaves`, `files`, `bsds`, `van_hateren`,
`synthetic`).  No TensorFlow here.
"""
from ride_tf.data.bsds import BSDS300_NUM_TEST, BSDS300_NUM_TRAIN, BSDS300_NUM_VALIDATION, load_bsds300  # noqa: F401
from ride_tf.data.leaves import (DEAD_LEAVES_BENCHMARK, DEAD_LEAVES_BENCHMARK_NUM_TEST,  # noqa: F401
                                      MAX_DISKS_PER_BATCH, DeadLeavesRenderer, dead_leaves, dead_leaves_benchmark,
                                      power_law_cdf, sample_power_law_radii)
from ride_tf.data.files import load_image, load_images  # noqa: F401
from ride_tf.data.synthetic import gaussian_autoregressive  # noqa: F401
from ride_tf.data.van_hateren import VAN_HATEREN_SHAPE, load_van_hateren, read_iml, van_hateren_to_uint8  # noqa: F401

__all__ = ["DEAD_LEAVES_BENCHMARK", "DEAD_LEAVES_BENCHMARK_NUM_TEST", "dead_leaves", "dead_leaves_benchmark",
           "power_law_cdf", "sample_power_law_radii", "load_image", "load_images", "load_bsds300", "read_iml",
           "load_van_hateren", "gaussian_autoregressive", "van_hateren_to_uint8", "VAN_HATEREN_SHAPE"]
