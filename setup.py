"""ride_tf: RIDE, the recurrent image density estimator (Theis & Bethge, 2015), in TensorFlow/Keras."""
from setuptools import Extension, find_packages, setup

# The one place where dependencies are pinned.  TFP 0.25 imports tf_keras, and
# tf-keras 2.21 needs the `tensorflow` wheel (not `tensorflow-cpu`).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorflow-probability[tf]==0.25.0",
    "tf-keras==2.21.0",
    "numpy==2.4.6",
    "pillow==13.0.0",
    "tensorboard==2.21.0",   # tf.summary, for `ride-tf train --logdir`
    "imagecodecs==2026.3.6",  # PNG, JPEG-LS, WebP and JPEG-XL lossless, for comparisons
    "threadpoolctl==3.6.0",  # one BLAS thread for the decoder's small matrix products
    "tqdm==4.70.1",          # progress bars of the codec and the many-files commands (no TensorFlow)
]
TEST_REQUIRES = ["pytest==9.2.0", "hypothesis==6.170.17", "ruff==0.17.6"]
# Figures (matplotlib) and the example data that ship with scikit-image (textures, photos).
EXAMPLES_REQUIRES = ["matplotlib==3.11.2", "scikit-image==0.26.0"]
# The PredictionService stub of export/grpc_client.py (the REST client needs nothing extra).
SERVING_REQUIRES = ["tensorflow-serving-api==2.21.0"]
# The Apache Beam pipeline of ride_tf.pipelines (sizes of datasets beyond one machine); pyarrow comes with it
# (Parquet output).  On Dataflow install "apache-beam[gcp]==2.78.0" instead (the same pins resolve).
BEAM_REQUIRES = ["apache-beam==2.78.0"]

# The codec's integer arithmetic in C (ride_tf.codec.native).  Optional: without a C compiler the package installs
# and codes the same files with the NumPy reference path.  No -ffast-math: the kernels need exact int64 arithmetic.
KERNELS = Extension("ride_tf.codec.kernels", sources=["ride_tf/codec/kernels.c"], extra_compile_args=["-O3", "-ffp-contract=off"],
                    optional=True)
# The palette coder of ride_tf.codec.palette in C (the same bytes as its Python reference, ~100 times faster).
PALETTE_KERNELS = Extension("ride_tf.codec.palette_kernels", sources=["ride_tf/codec/palette.c"],
                            extra_compile_args=["-O3"], optional=True)

setup(
    name="ride_tf",
    version="0.1.0",
    description="Generative image modelling with spatial LSTMs (RIDE) in TensorFlow/Keras",
    packages=find_packages(include=["ride_tf", "ride_tf.*"]),
    # The pretrained models (ride_tf.pretrained) and their JSON records, a few hundred kB.
    package_data={"ride_tf.pretrained": ["*.keras", "*.json", "*.integer.npz", "derivation-1/*.integer.npz"],
                  "ride_tf.codec": ["lookup_tables.npz"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "examples": EXAMPLES_REQUIRES, "serving": SERVING_REQUIRES,
                    "beam": BEAM_REQUIRES},
    ext_modules=[KERNELS, PALETTE_KERNELS],
    entry_points={"console_scripts": ["ride-tf=ride_tf.cli:main"]},
)
