# The Python equivalent of the quick start (README.md), as pasted there:  .venv/bin/python examples/quickstart.py
import numpy as np
import skimage.data

from ride_tf.runtime import quiet_tensorflow

quiet_tensorflow()                                                # optional: TensorFlow's start-up lines filtered

import ride_tf  # noqa: E402
from ride_tf import RIDE  # noqa: E402

camera = skimage.data.camera()                                    # uint8 [512, 512], held out from "gray"
gray = ride_tf.pretrained("gray")                                 # the shipped gray model, a fresh RIDE

bits = ride_tf.compressed_size_bits(gray, camera[None])           # exact code length, [N] bits
print(f"size: {bits[0] / 8:.0f} bytes, {bits[0] / camera.size:.4f} bit/px")

data = ride_tf.compress(gray, camera)                             # bytes
decoded = ride_tf.decompress(gray, data)                          # uint8 [512, 512, 1]
print(len(data), "bytes; identical:", np.array_equal(decoded[..., 0], camera))

print("rate:", gray.log_likelihood_rate(camera[None], seed=0), "bit/px")   # density rate, larger is better

crops = [skimage.data.moon()[i:i + 96, j:j + 96] for i, j in [(100, 100), (200, 180), (300, 300)]]
model = RIDE(num_layers=1, num_hiddens=8, num_components=8)
stages = ride_tf.training.train(model, crops[:2], validation_images=crops[2:], patch_sizes=(8, 12),
                                num_patches=1000, finetune_max_iter=20, finetune_samples=5000,
                                time_budget=60, verbose=0)
print("validation rate per stage:", [round(s.validation_rate, 4) for s in stages])
model.save("/tmp/tiny.keras")                                     # ride_tf.load_model("/tmp/tiny.keras")

samples = model.sample(2, 64, 64, seed=0)                         # uint8 [2, 64, 64, 1]
print(samples.shape, samples.dtype)
