"""One pass over an image in wavefront order: what the sampler, inpainting and the codec share.

Pixel (i, j) needs its causal window (which reaches r columns to the right in
the rows above) and the LSTM states of (i, j-1) and (i-1, j).  Every pixel on
the front t = (r + 1) i + j has these on earlier fronts (`ride_tf.geometry`),
so a pass visits the (r + 1)(H - 1) + W fronts in order, and for each front

  1. gathers the causal windows of the front's pixels from a canvas (the
     image so far, padded) and builds the model inputs u = [x^, e]
     (`RIDE.input_features`),
  2. advances every spatial LSTM on the front (`SpatialLSTM.step`) from the
     states of the two earlier fronts it needs,
  3. hands the MCGSM's inputs h (the top states, next to u with
     `skip_inputs`) and x^ of the front's pixels to the caller, who
     draws (sampler) or codes (codec) the pixels, and
  4. writes the front's pixel values into the canvas (`write`).

`Wavefront.run(known, body)` owns the loop: one `tf.while_loop` over the
`geometry.num_fronts` fronts, in which `body` turns each front's MCGSM
inputs into the front's pixel values (drawing or decoding them).

Which earlier fronts hold a pixel's neighbours follows from the front index
(`geometry.front_index`): the left neighbour (i, j-1) is on front t - 1 and
the upper one (i-1, j) on front t - (r + 1), so the pass keeps the LSTM
states of the last r + 1 fronts (`lags`).

Layouts are pixel-major (canvas [H + r, W + 2r, N, C], LSTM states
[H + 1, N, U] per front, indexed by row + 1) so that a front's pixels are
gathered and scattered along leading axes.  The front's pixels are flattened
pixel-major: row k * N + n of h is pixel k of the front in image n.

Submodules: `sampling` (ancestral sampling), `inpainting` (Metropolis within Gibbs).
"""
import tensorflow as tf

from ride_tf import geometry

__all__ = ["Wavefront"]


class Wavefront:
    """The front-by-front pass of `model` (build it inside the tf.function that runs the pass).

    State: (canvas, history), with history per layer the (h, c) of the last
    `up_lag` fronts, newest first.
    """

    def __init__(self, model):
        self.model = model
        self.dtype = model.compute_dtype
        self.nb_size, self.r = model.nb_size, model.radius
        self.channels, self.units = model.num_channels, model.num_hiddens
        self.offsets = tf.constant(geometry.causal_offsets(self.nb_size), tf.int32)      # [P, 2]
        self.num_offsets = len(geometry.causal_offsets(self.nb_size))
        self.lstm_weights = [lstm.gate_weights(self.dtype) for lstm in model.slstms]
        # How many fronts back the left and the upper neighbour lie: t(i, j) - t(i, j - 1), t(i, j) - t(i - 1, j).
        self.left_lag = geometry.front_index(0, 1, self.nb_size)
        self.up_lag = geometry.front_index(1, 0, self.nb_size)

    def num_fronts(self, height, width):
        """The number of fronts of an H x W image (ints or scalar tensors): `geometry.num_fronts`."""
        return geometry.num_fronts(height, width, self.nb_size)

    def run(self, known, body):
        """The whole pass, in the graph: images [N, H, W, C] with every front's pixels set by `body`.

        known: float [N, H, W, C], the canvas before the pass (pixels not yet
          set may hold anything).
        body(t, pixels, h, x_hat): for front t with pixels [n, 2] (row, column)
          and the MCGSM's inputs h [n * N, dim_h] and whitened neighbourhoods
          x^ [n * N, P * C] of its pixels, returns their values [n, N, C].
        """
        shape = tf.shape(known)
        height, width = shape[1], shape[2]
        canvas, history = self.initial_state(known)

        def step(t, canvas, history):
            pixels, h, x_hat, history = self.features(t, canvas, history, height, width)
            return t + 1, self.write(canvas, pixels, body(t, pixels, h, x_hat)), history

        num_fronts = self.num_fronts(height, width)
        _, canvas, _ = tf.while_loop(lambda t, *_: t < num_fronts, step, (tf.constant(0), canvas, history),
                                     maximum_iterations=num_fronts)
        return self.image(canvas, width)

    def initial_state(self, known):
        """known float [N, H, W, C] (pixels not yet drawn may hold anything) -> (canvas, history)."""
        r = self.r
        known = tf.cast(known, self.dtype)
        shape = tf.shape(known)
        canvas = tf.pad(tf.transpose(known, [1, 2, 0, 3]), [[r, 0], [r, r], [0, 0], [0, 0]])
        zeros = tf.zeros([shape[1] + 1, shape[0], self.units], self.dtype)
        history = tuple(tuple(zeros for _ in range(2 * self.up_lag)) for _ in self.model.slstms)
        return canvas, history

    def pixels(self, t, height, width):
        """The front's pixels [n, 2] (row, column) and its first row i_lo."""
        i_lo, i_hi = geometry.front_rows(t, height, width, self.nb_size)
        rows = tf.range(i_lo, i_hi + 1)
        return tf.stack([rows, t - (self.r + 1) * rows], axis=1), i_lo

    def features(self, t, canvas, history, height, width):
        """Steps 1-2 for front t: (pixels [n, 2], h [n * N, dim_h], x^ [n * N, P * C], new history)."""
        r, units, channels = self.r, self.units, self.channels
        batch = tf.shape(canvas)[2]
        pixels, i_lo = self.pixels(t, height, width)
        n = tf.shape(pixels)[0]
        window_idx = pixels[:, None, :] + self.offsets[None] + r                           # [n, P, 2]
        x = tf.gather_nd(canvas, window_idx)                                               # [n, P, N, C]
        x = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [n * batch, self.num_offsets * channels])
        outside = geometry.outside_indicators_at(pixels[:, 0], pixels[:, 1], width, self.nb_size, self.dtype)
        outside = tf.reshape(tf.repeat(outside[:, None], batch, axis=1), [n * batch, self.num_offsets])
        u = self.model.input_features(x, outside)
        h = u
        x_hat = u[:, :self.num_offsets * channels]
        new_history = []
        for lstm, weights, states in zip(self.model.slstms, self.lstm_weights, history):
            left, up = 2 * (self.left_lag - 1), 2 * (self.up_lag - 1)      # (h, c) pairs, newest first
            h_prev, c_prev = states[left], states[left + 1]
            h_up, c_up = states[up], states[up + 1]
            flat = lambda s, start: tf.reshape(s[start:start + n], [n * batch, units])
            h, c = lstm.step(h, flat(h_prev, i_lo + 1), flat(c_prev, i_lo + 1),
                             flat(h_up, i_lo), flat(c_up, i_lo), weights=weights)
            pad = [[i_lo + 1, height - i_lo - n], [0, 0], [0, 0]]
            h_front = tf.pad(tf.reshape(h, [n, batch, units]), pad)
            c_front = tf.pad(tf.reshape(c, [n, batch, units]), pad)
            new_history.append((h_front, c_front) + tuple(states[:-2]))
        return pixels, self.model.mcgsm_inputs(h, u), x_hat, tuple(new_history)

    def write(self, canvas, pixels, values):
        """Step 4: values [n, N, C] of the front's pixels into the canvas."""
        return tf.tensor_scatter_nd_update(canvas, pixels + self.r, tf.cast(values, self.dtype))

    def image(self, canvas, width):
        """The canvas back as images [N, H, W, C]."""
        r = self.r
        return tf.transpose(canvas[r:, r:r + width] if r else canvas, [2, 0, 1, 3])
