import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Integer models derived from .keras files are cached (ride_tf.codec.registry); the tests use a fresh cache of their
# own (their subprocesses inherit it), never the user's.
os.environ["RIDE_TF_CACHE"] = tempfile.mkdtemp(prefix="ride-tf-test-cache-")
