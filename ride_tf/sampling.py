"""The wavefront sampler: moved to `ride_tf.wavefront.sampling`; this module keeps the old import path working."""
from ride_tf.wavefront.sampling import (  # noqa: F401
    draws, sample, wavefront_sample, sampler_graph, ONE_MINUS)

__all__ = ["draws", "sample", "wavefront_sample", "sampler_graph", "ONE_MINUS"]
