"""Data: the paper's data sets, image files, synthetic images and streaming from disk.

    leaves        the dead-leaves images and the project's benchmark (paper section 3.3)
    files         image files: `load_image` for models, `read_image_file` exactly, for the codec
    bsds          BSDS300 with the paper's split
    van_hateren   van Hateren's raw images
    synthetic     images with known conditionals (a Gaussian AR process)
    streaming     data larger than memory: image folders and TFRecord shards with tf.data

Only `streaming` imports TensorFlow; the names below are imported on first use.
"""
from ride_tf.lazy_imports import lazy_exports

_EXPORTS = {
    **{name: "ride_tf.data.leaves" for name in (
        "DEAD_LEAVES_BENCHMARK", "DEAD_LEAVES_BENCHMARK_NUM_TEST", "MAX_DISKS_PER_BATCH", "dead_leaves",
        "dead_leaves_benchmark", "power_law_cdf", "sample_power_law_radii", "DeadLeavesRenderer", "inverse_power_law_cdf")},
    **{name: "ride_tf.data.files" for name in (
        "load_image", "load_images", "check_file", "open_image", "is_image_file", "FileMode", "read_image_file",
        "image_from_pixels", "write_image_file", "luma", "EXACT_MODES")},
    **{name: "ride_tf.data.bsds" for name in (
        "BSDS300_NUM_TRAIN", "BSDS300_NUM_TEST", "BSDS300_NUM_VALIDATION", "load_bsds300")},
    **{name: "ride_tf.data.van_hateren" for name in (
        "VAN_HATEREN_SHAPE", "read_iml", "van_hateren_to_uint8", "load_van_hateren")},
    "gaussian_autoregressive": "ride_tf.data.synthetic",
    **{name: "ride_tf.data.streaming" for name in (
        "IMAGE_EXTENSIONS", "image_files", "write_tfrecords", "streaming_patches")},
    **{name: f"ride_tf.data.{name}" for name in ("leaves", "files", "bsds", "van_hateren", "synthetic",
                                                   "streaming")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
