"""Sampling speed: the wavefront sampler against one forward pass and against a raster-order loop.

Three timings in one run, on the same model (RIDE, one spatial LSTM of 64
units by default, whitening adapted to dead leaves, other weights at their
initial values: speed does not depend on them):

  * forward: `model(images)` over N images of H x W (graph mode): the
    likelihood of every pixel, the cheapest way the model touches each pixel
    once.  Sampling cannot beat it by much; the ratio shows the per-step
    overhead of drawing front by front.
  * wavefront: `model.sample(N, H, W)`, one tf.while_loop over (r + 1)(H - 1) + W fronts.
  * raster: the same draws one pixel position at a time, H W loop steps, in a
    tf.while_loop written below, twice: one pixel per step (a single image,
    the literal single-pixel loop), and one pixel position of all N images
    per step (the raster loop batched over the images, a much stronger
    baseline).  It is timed on the first `--raster-rows` rows only (its speed
    per pixel does not depend on the number of rows) and reported in pixels
    per second.

    .venv/bin/python benchmarks/bench_sampling.py                 # 16 images of 256 x 256, 64 units
    .venv/bin/python benchmarks/bench_sampling.py --num 4 --size 64 --hiddens 16   # quick

Targets (issue: sampling): wavefront >= 0.2 x the forward pass's pixels per
second, and >= 20 x the raster loop's.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ride_tf import RIDE, data, geometry  # noqa: E402
from ride_tf.evaluation import traced  # noqa: E402
from ride_tf.wavefront.sampling import ONE_MINUS, draws  # noqa: E402


def raster_sampler(model):
    """A traced raster-order sampler: one pixel (of every image) per tf.while_loop step."""
    r, nb_size, units, channels = model.radius, model.nb_size, model.num_hiddens, model.num_channels
    offsets = tf.constant(geometry.causal_offsets(nb_size), tf.int32)
    num_offsets = offsets.shape[0]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float32),
                                  tf.TensorSpec([None, None, None, channels], tf.float32)])
    def run(uniform, normal):
        shape = tf.shape(uniform)
        batch, height, width = shape[0], shape[1], shape[2]
        canvas = tf.zeros([height + r, width + 2 * r, batch, channels])
        uniform_t = tf.transpose(uniform, [1, 2, 0])
        normal_t = tf.transpose(normal, [1, 2, 0, 3])
        w_inv = model.whitening.output_unwhitening()
        weights = [lstm.gate_weights() for lstm in model.slstms]
        zero = tf.zeros([batch, units])
        # Per layer: the states of the row above ([W, N, U], overwritten as the row advances) and of the left pixel.
        rows = tuple((tf.zeros([width, batch, units]), tf.zeros([width, batch, units]), zero, zero)
                     for _ in model.slstms)

        def body(p, canvas, rows):
            i, j = p // width, p % width
            pixel = tf.stack([i, j])
            x = tf.gather_nd(canvas, pixel[None] + offsets + r)                        # [P, N, C]
            x = tf.reshape(tf.transpose(x, [1, 0, 2]), [batch, num_offsets * channels])
            outside = geometry.outside_indicators_at(i, j, width, nb_size)            # [P]
            u = model.input_features(x, tf.broadcast_to(outside, [batch, num_offsets]))
            h = u
            x_hat = u[:, :num_offsets * channels]
            new_rows = []
            for lstm, w, (h_row, c_row, h_left, c_left) in zip(model.slstms, weights, rows):
                h_left = tf.where(j > 0, h_left, zero)
                c_left = tf.where(j > 0, c_left, zero)
                h, c = lstm.step(h, h_left, c_left, h_row[j], c_row[j], weights=w)
                new_rows.append((tf.tensor_scatter_nd_update(h_row, [[j]], h[None]),
                                 tf.tensor_scatter_nd_update(c_row, [[j]], c[None]), h, c))
            y_hat = model.mcgsm(model.mcgsm_inputs(h, u)).sample_from_noise(uniform_t[i, j], normal_t[i, j])
            y = tf.clip_by_value(model.whitening.unwhiten_outputs(x_hat, y_hat, inverse=w_inv), 0.0, ONE_MINUS)
            canvas = tf.tensor_scatter_nd_update(canvas, [pixel + r], y[None])
            return p + 1, canvas, tuple(new_rows)

        _, canvas, _ = tf.while_loop(lambda p, *_: p < height * width, body, (0, canvas, rows))
        return tf.transpose(canvas[r:, r:width + r], [2, 0, 1, 3])

    return run


def timed(fn, repeats):
    fn()                                   # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--hiddens", type=int, default=64)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--raster-rows", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    model = RIDE(num_layers=args.layers, num_hiddens=args.hiddens)
    model.adapt(data.dead_leaves(4, size=64, seed=0, noise_std=0.02))
    n, size = args.num, args.size
    pixels = n * size * size
    images = np.random.default_rng(0).random((n, size, size, 1)).astype(np.float32)
    forward = traced(model, "pixel_log_prob", lambda im: model(im))
    t_forward = timed(lambda: forward(images).numpy(), args.repeats)
    t_wave = timed(lambda: model.sample(n, size, size, seed=1), args.repeats)
    raster = raster_sampler(model)
    uniform, normal = draws(1, n, args.raster_rows, size, 1)
    t_raster = timed(lambda: raster(uniform, normal).numpy(), max(1, args.repeats // 2))
    raster_pixels = n * args.raster_rows * size
    t_single = timed(lambda: raster(uniform[:1], normal[:1]).numpy(), max(1, args.repeats // 2))
    single_pixels = args.raster_rows * size

    # The raster loop draws the same images as the wavefront sampler (same draws, same order of dependencies).
    wave_strip = model.sample(n, args.raster_rows, size, seed=1, continuous=True)
    raster_strip = raster(uniform, normal).numpy()
    agreement = float(np.abs(wave_strip - raster_strip).max())

    rate = lambda p, t: p / t
    print(f"RIDE {args.layers} layer(s), {args.hiddens} units; {n} images of {size} x {size}; "
          f"{geometry.num_fronts(size, size, model.nb_size)} fronts")
    print(f"{'what':34s} {'seconds':>9s} {'pixels/s':>11s}")
    print(f"{'forward pass (likelihood)':34s} {t_forward:9.3f} {rate(pixels, t_forward):11.0f}")
    print(f"{'wavefront sampler':34s} {t_wave:9.3f} {rate(pixels, t_wave):11.0f}")
    print(f"{f'raster loop, 1 pixel/step ({args.raster_rows} rows)':34s} {t_single:9.3f} "
          f"{rate(single_pixels, t_single):11.0f}")
    print(f"{f'raster loop, {n} pixels/step ({args.raster_rows} rows)':34s} {t_raster:9.3f} "
          f"{rate(raster_pixels, t_raster):11.0f}")
    print(f"wavefront / forward pass            = {rate(pixels, t_wave) / rate(pixels, t_forward):.3f}   "
          f"(target >= 0.2)")
    print(f"wavefront / raster, 1 pixel/step    = {rate(pixels, t_wave) / rate(single_pixels, t_single):.1f}   "
          f"(target >= 20)")
    print(f"wavefront / raster, {n} pixels/step  = {rate(pixels, t_wave) / rate(raster_pixels, t_raster):.1f}")
    print(f"max |wavefront - raster| on the strip: {agreement:.2e}")


if __name__ == "__main__":
    main()
