"""Spatial LSTM (Theis & Bethge 2015, eq. 6): the cell (`SpatialLSTMCell`) and the layer that runs it over
an image (`SpatialLSTM`), as Keras 3 layers (TF backend).

For every location (i, j) of an image, with x_ij the input vector at (i, j),
the gate pre-activations are

    [a_g, a_o, a_i, a_l, a_u] = [x_ij, h_(i,j-1), h_(i-1,j)] @ kernel + bias

and two cells are available (``cell=``):

``"paper"`` (eq. 6 as written)::

    g = tanh(a_g), o = sigma(a_o), i = sigma(a_i), f_l = sigma(a_l), f_u = sigma(a_u)
    c_ij = g * i + c_(i,j-1) * f_l + c_(i-1,j) * f_u
    h_ij = tanh(c_ij * o)

  Nothing bounds c: where f_l + f_u > 1 the memory grows geometrically along
  the anti-diagonals, and the number of anti-diagonals grows with the image
  (a fresh layer with glorot weights overflows float32 on 256 x 256 images).

``"stable"`` (the default): the input gate and the two forget gates share a
  softmax with a fixed fourth logit 0 (a "forget everything" option)::

    (i, f_l, f_u) = (e^a_i, e^a_l, e^a_u) / (1 + e^a_i + e^a_l + e^a_u)

  and otherwise the same equations.  Then i + f_l + f_u < 1, so c_ij is a
  sub-convex combination of g, c_(i,j-1) and c_(i-1,j); since |g| < 1 and the
  states outside the image are 0, induction over the anti-diagonals gives

    |c_ij| < 1  and  |h_ij| < tanh(1)   for every pixel, every image size and
                                         every value of the weights,

  in exact arithmetic.  In floating point the softmax is computed with its
  maximum subtracted (large pre-activations cannot overflow) and c is clipped
  to [-1, 1], which only removes rounding errors of a few ulp, so |c| <= 1
  holds exactly there too.  This is the convex-combination idea of
  the stable multi-dimensional LSTM cells of Leifert et al. (JMLR 2016),
  written with the paper's five gate blocks, so both cells have the same
  variables and shapes.

(``h_ij = tanh(c_ij * o_ij)`` exactly as the paper writes it, not
``o * tanh(c)``.)  States outside the image are zero.  With
``extended=True`` the memory states of the two neighbours are inputs too:
``[x_ij, h_(i,j-1), h_(i-1,j), c_(i,j-1), c_(i-1,j)] @ kernel + bias``.

Computation
-----------
(i, j) depends only on (i, j-1) and (i-1, j), both on the anti-diagonal
d - 1 where d = i + j.  The layer therefore runs a ``tf.while_loop`` over the
H + W - 1 anti-diagonals; each step evaluates every pixel of one diagonal for
all batch elements with one matrix product per gate.

* The inputs are permuted once into diagonal order (one gather), laid out as
  [pixel, batch, D] and split into a ``TensorArray`` with one element of
  exact length per diagonal ([n_d, batch, D]; no padding to full length).
* The loop carries only the previous diagonal's h and c, padded with one zero
  row at each end ([n_(d-1) + 2, batch, units]); the left and up neighbours of
  diagonal d are two ``tf.slice`` windows of it (along axis 0).
* One ``MatMul + BiasAdd + tanh/sigmoid`` per gate, so that grappler fuses
  them into oneDNN's ``_FusedMatMul`` on CPU.
* On CPU the batch is split into independent loops (``parallel_loops``) which
  TensorFlow's inter-op threads run concurrently.
* Gradients: backpropagation through the loop (while_v2).

XLA cannot compile exact-length diagonals (shapes change per iteration), so
the layer sets ``supports_jit = False``; Keras' ``jit_compile="auto"`` then
leaves models containing it uncompiled.
"""

import keras
import numpy as np
import tensorflow as tf

from ride_tf.checks import check_bool, check_choice, check_integer, check_number
from ride_tf.defaults import CELLS

__all__ = ["SpatialLSTM", "SpatialLSTMCell", "diagonal_scan", "CELLS", "DEFAULT_FORGET_BIAS", "LEGACY_CELL",
           "GATES"]

GATES = ("g", "o", "i", "f_left", "f_up")
# Initial forget-gate biases (added to `bias_initializer`'s values of f_left and f_up) per cell.
# The paper's memory grows geometrically where f_left + f_up > 1; with biases 0 that is about
# half of all pixels at initialisation (NaN past diagonal ~300 of a 256 x 256 image with random
# weights), with -1 each gate starts near sigma(-1) = 0.27, so the sum is about 0.54.  The stable
# cell cannot grow, and keeps 0 (the results in the README were trained that way).
DEFAULT_FORGET_BIAS = {"paper": -1.0, "stable": 0.0}
# Cell of configs saved before the `cell` argument existed: they are eq. 6.
LEGACY_CELL = "paper"


def _gate(z, kernel, bias, activation=None):
    a = tf.nn.bias_add(tf.matmul(z, kernel), bias)
    return a if activation is None else activation(a)


def _check_positive_int(owner, name, value):
    return check_integer(owner, name, value, 1)


@keras.saving.register_keras_serializable(package="ride_tf")
class SpatialLSTMCell(keras.layers.Layer):
    """One cell of the spatial LSTM (eq. 6, or its stable form): the weights, one step and the config.

    Args:
        units: number of hidden (and memory) units U.
        extended: if True, the memory states c_(i,j-1) and c_(i-1,j) are
            inputs of the gates as well.
        cell: "stable" (default; |c| < 1 for any weights and image size) or
            "paper" (eq. 6 as written, unbounded); see the module docstring.
        kernel_initializer, bias_initializer: Keras initializers.
        forget_bias: added to the initial biases of the two forget gates
            (None: `DEFAULT_FORGET_BIAS[cell]`, -1 for the paper's cell, so
            that its memory does not grow at initialisation; 0 for "stable").

    Variables (built for inputs of size D):
        kernel: [D + 2U, 5U] (extended: [D + 4U, 5U]); rows act on
            [x, h_left, h_up] (extended: [x, h_left, h_up, c_left, c_up]),
            column blocks of width U are the gates g, o, i, f_left, f_up.
        bias: [5U], same gate order.

    `SpatialLSTM` drives this cell over the anti-diagonals of an image; the
    wavefront pass (`ride_tf.wavefront`) drives it front by front.  Both call
    `step`, so they get the same numbers.
    """

    def __init__(self, units, extended=False, cell="stable", kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", forget_bias=None, **kwargs):
        super().__init__(**kwargs)
        owner = "SpatialLSTMCell"
        self.units = _check_positive_int(owner, "units", units)
        self.extended = check_bool(owner, "extended", extended)
        self.cell = check_choice(owner, "cell", cell, CELLS)
        self.forget_bias = None if forget_bias is None else check_number(owner, "forget_bias", forget_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_dim = None
        # Set by `SpatialLSTM.load_own_variables` when a file of the layout before this class existed (the
        # driver held the kernel and bias) filled this cell's variables.
        self.loaded_by_driver = False

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError("SpatialLSTMCell needs a known last (channel) dimension.")
        self.input_dim = int(input_dim)
        n_rows = self.input_dim + (4 if self.extended else 2) * self.units
        self.kernel = self.add_weight(name="kernel", shape=(n_rows, 5 * self.units),
                                      initializer=self.kernel_initializer)
        forget_bias = DEFAULT_FORGET_BIAS[self.cell] if self.forget_bias is None else self.forget_bias
        units, base = self.units, self.bias_initializer

        def bias_initializer(shape, dtype=None):
            bias = base(shape, dtype=dtype)
            if not forget_bias:
                return bias
            offset = np.zeros(5 * units, np.float32)
            offset[3 * units:] = forget_bias              # the gate blocks f_left and f_up
            return bias + keras.ops.cast(offset, bias.dtype)

        self.bias = self.add_weight(name="bias", shape=(5 * self.units,), initializer=bias_initializer)

    def load_own_variables(self, store):
        if self.loaded_by_driver and len(store) == 0:
            return
        super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, extended=self.extended, cell=self.cell,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      bias_initializer=keras.initializers.serialize(self.bias_initializer))
        if self.forget_bias is not None:
            config["forget_bias"] = self.forget_bias
        return config

    def gate_weights(self, dtype=None):
        """Returns (kernels, biases): five [rows, U] and five [U] tensors,
        one per gate in the order g, o, i, f_left, f_up.

        Split the weights once and pass the result to `step` as ``weights``
        when calling `step` many times (e.g. inside a loop)."""
        dtype = dtype or self.compute_dtype
        kernel = tf.cast(tf.convert_to_tensor(self.kernel), dtype)
        bias = tf.cast(tf.convert_to_tensor(self.bias), dtype)
        return tf.split(kernel, 5, axis=1), tf.split(bias, 5, axis=0)

    def step(self, inputs, h_left, c_left, h_up, c_up, weights=None):
        """The cell for a batch of M independent cells: (h, c), [M, U] each.

        Args:
            inputs: x_ij, [M, D].
            h_left, c_left: states of the left neighbours (i, j-1), [M, U]
                (zeros outside the image).
            h_up, c_up: states of the upper neighbours (i-1, j), [M, U].
            weights: optional result of `gate_weights()` (to split the
                kernel only once when stepping many times).

        One MatMul + BiasAdd (+ activation) per gate: grappler fuses each
        into a single oneDNN kernel on CPU (TF's standalone tanh/sigmoid are
        slow).
        """
        if weights is None:
            weights = self.gate_weights(inputs.dtype)
        parts = [inputs, h_left, h_up]
        if self.extended:
            parts += [c_left, c_up]
        z = tf.concat(parts, axis=-1)
        kernels, biases = weights
        g = _gate(z, kernels[0], biases[0], tf.tanh)
        o = _gate(z, kernels[1], biases[1], tf.sigmoid)
        if self.cell == "paper":
            i = _gate(z, kernels[2], biases[2], tf.sigmoid)
            f_left = _gate(z, kernels[3], biases[3], tf.sigmoid)
            f_up = _gate(z, kernels[4], biases[4], tf.sigmoid)
        else:
            # softmax over (a_i, a_l, a_u, 0), shifted by its maximum so that it cannot overflow.
            a_i, a_l, a_u = (_gate(z, kernels[k], biases[k]) for k in (2, 3, 4))
            shift = tf.maximum(tf.maximum(a_i, a_l), tf.maximum(a_u, 0.0))
            e_i, e_l, e_u = (tf.exp(a - shift) for a in (a_i, a_l, a_u))
            e_0 = tf.exp(-shift)
            inv = tf.math.reciprocal(e_i + e_l + e_u + e_0)
            i, f_left, f_up = e_i * inv, e_l * inv, e_u * inv
        c = tf.math.add_n([g * i, c_left * f_left, c_up * f_up])
        if self.cell != "paper":
            # |c| <= 1 holds in exact arithmetic; the clip only removes rounding (a few ulp),
            # which could otherwise compound over thousands of diagonals.
            c = tf.clip_by_value(c, -1.0, 1.0)
        h = tf.tanh(c * o)
        return h, c


@keras.saving.register_keras_serializable(package="ride_tf")
class SpatialLSTM(keras.layers.Layer):
    """Spatial LSTM layer, eq. 6 of Theis & Bethge (2015): a `SpatialLSTMCell` run over an image.

    Args:
        units, extended, cell, kernel_initializer, bias_initializer,
        forget_bias: those of the cell (`SpatialLSTMCell`), which this
            layer holds as `lstm_cell`; the layer's attributes of the same
            names read the cell's.
        parallel_loops: number of independent while loops the batch is split
            into.  ``None`` (default): 2 on CPU when the batch has at least 2
            images, 1 otherwise (GPU).  Results do not depend on it.

    Input: [batch, H, W, D] (H and W may be unknown until run time).
    Output: hidden states [batch, H, W, units].
    Variables: the cell's `kernel` [D + 2U, 5U] and `bias` [5U].
    """

    def __init__(self, units, extended=False, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 parallel_loops=None, cell="stable", forget_bias=None, **kwargs):
        super().__init__(**kwargs)
        self.lstm_cell = SpatialLSTMCell(units, extended=extended, cell=cell, kernel_initializer=kernel_initializer,
                                         bias_initializer=bias_initializer, forget_bias=forget_bias,
                                         dtype=self.dtype_policy, name="cell")
        self.parallel_loops = (None if parallel_loops is None
                               else _check_positive_int("SpatialLSTM", "parallel_loops", parallel_loops))
        # Keras reads `supports_jit` of every layer (trainer.model_supports_jit):
        # exact-length diagonals cannot be compiled by XLA.
        self.supports_jit = False
        self.input_spec = keras.layers.InputSpec(ndim=4)

    # The driver's attributes are the cell's.
    units = property(lambda self: self.lstm_cell.units)
    extended = property(lambda self: self.lstm_cell.extended)
    cell = property(lambda self: self.lstm_cell.cell)
    forget_bias = property(lambda self: self.lstm_cell.forget_bias)
    kernel_initializer = property(lambda self: self.lstm_cell.kernel_initializer)
    bias_initializer = property(lambda self: self.lstm_cell.bias_initializer)
    kernel = property(lambda self: self.lstm_cell.kernel)
    bias = property(lambda self: self.lstm_cell.bias)
    input_dim = property(lambda self: self.lstm_cell.input_dim)

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        self.lstm_cell.build(input_shape)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: self.input_dim})

    def load_own_variables(self, store):
        """Files written before the cell was a layer of its own hold the kernel and bias here: give them to the cell."""
        if len(store) == 2:
            self.lstm_cell.kernel.assign(store["0"])
            self.lstm_cell.bias.assign(store["1"])
            self.lstm_cell.loaded_by_driver = True
        elif len(store):
            super().load_own_variables(store)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            extended=self.extended,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            parallel_loops=self.parallel_loops,
            cell=self.cell,
        )
        if self.forget_bias is not None:     # only when set, so that configs stay readable by older versions
            config["forget_bias"] = self.forget_bias
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("cell", LEGACY_CELL)
        return super().from_config(config)

    # ------------------------------------------------------------- one cell
    def gate_weights(self, dtype=None):
        """The cell's `gate_weights`."""
        return self.lstm_cell.gate_weights(dtype or self.compute_dtype)

    def step(self, inputs, h_left, c_left, h_up, c_up, weights=None):
        """The cell's `step`: (h, c) [M, U] of M cells given their inputs [M, D] and neighbours' states."""
        return self.lstm_cell.step(inputs, h_left, c_left, h_up, c_up, weights=weights)

    # ----------------------------------------------------------- full image
    def call(self, inputs):
        """Hidden states [batch, H, W, U] of inputs [batch, H, W, D]."""
        h, _ = self._run(inputs, None, None, None, None, return_cells=False)
        return h

    def run_region(self, inputs, h_top=None, c_top=None, h_left=None, c_left=None):
        """Runs the layer on a region given the states on its boundary.

        Args:
            inputs: [batch, H, W, D], the region's inputs.
            h_top, c_top: [batch, W, U], states of the row just above the
                region (None: zeros).
            h_left, c_left: [batch, H, U], states of the column just left of
                the region (None: zeros).

        Returns:
            (h, c): [batch, H, W, U] each, the region's hidden and memory
            states; e.g. the last row of h, c is the ``h_top, c_top`` of the
            region below.
        """
        if not self.built:
            self.build(inputs.shape)
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype != self.compute_dtype:
            inputs = tf.cast(inputs, self.compute_dtype)
        return self._run(inputs, h_top, c_top, h_left, c_left, return_cells=True)

    def _num_loops(self, batch_static):
        if self.parallel_loops is not None:
            n = self.parallel_loops
        else:
            on_gpu = bool(tf.config.list_logical_devices("GPU"))
            n = 1 if on_gpu else 2
        if batch_static is not None:
            n = min(n, max(int(batch_static), 1))
        return max(n, 1)

    def _run(self, inputs, h_top, c_top, h_left, c_left, return_cells):
        boundary = None
        if any(t is not None for t in (h_top, c_top, h_left, c_left)):
            boundary = (h_top, c_top, h_left, c_left)
        dtype = inputs.dtype
        kernel = tf.cast(tf.convert_to_tensor(self.kernel), dtype)
        bias = tf.cast(tf.convert_to_tensor(self.bias), dtype)
        return _float_scan(inputs, kernel, bias, self.units, cell=self.cell, extended=self.extended,
                           return_cells=return_cells, boundary=boundary,
                           num_loops=self._num_loops(inputs.shape[0]))


def diagonal_scan(x, units, step, return_cells=False, boundary=None, num_loops=1):
    """Run a spatial LSTM cell over the anti-diagonals of an image: the driver of `SpatialLSTM`.

    Args:
      x: [batch, H, W, D] inputs (any dtype that `step` works in).
      units: U, the size of the states.
      step: step(x [M, D], h_left, c_left, h_up, c_up [M, U]) -> (h, c) [M, U], one cell for M pixels.
      return_cells: also return the memory states c.
      boundary: None (zero states around the image) or (h_top, c_top [batch, W, U], h_left, c_left
        [batch, H, U]), the states of the row above and the column left of the region (None entries: zeros).
      num_loops: independent while loops the batch is split into (run concurrently by TensorFlow's
        inter-op threads on CPU); results do not depend on it.

    Returns:
      (h, c) [batch, H, W, U] (c None without return_cells).
    """
    dtype = x.dtype
    depth = x.shape[-1]
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    n_diag = height + width - 1
    n_pix = height * width

    # Diagonal geometry: on diagonal d the rows are i_min..i_max.
    diag = tf.range(n_diag)
    i_min = tf.maximum(0, diag - width + 1)
    i_max = tf.minimum(diag, height - 1)
    lengths = i_max - i_min + 1
    offsets = tf.cumsum(lengths, exclusive=True)
    # pos[i * W + j]: index of pixel (i, j) in diagonal order.
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    dd = rows + cols
    pos = tf.reshape(tf.gather(offsets, dd) + rows - tf.gather(i_min, dd), [-1])
    order = tf.math.invert_permutation(pos)  # raster index of each diag slot

    # [B, H, W, D] -> [H*W, B, D] in diagonal order.
    xt = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [n_pix, batch, depth])
    xd = tf.gather(xt, order)
    if boundary is not None:
        boundary = _boundary_arrays(*boundary, units, batch, height, width, n_diag, dtype)

    if num_loops == 1:
        parts = [xd]
        bparts = [boundary]
    else:
        base = batch // num_loops
        rem = batch - base * num_loops
        sizes = base + tf.cast(tf.range(num_loops) < rem, tf.int32)
        parts = tf.split(xd, sizes, axis=1, num=num_loops)
        if boundary is None:
            bparts = [None] * num_loops
        else:
            split_b = [tf.split(b, sizes, axis=1, num=num_loops) for b in boundary]
            bparts = [tuple(s[k] for s in split_b) for k in range(num_loops)]

    hs, cs = [], []
    for xpart, bpart in zip(parts, bparts):
        h_d, c_d = _diagonal_loop(xpart, bpart, step, units, lengths, height, width, n_diag, dtype, return_cells)
        hs.append(h_d)
        cs.append(c_d)

    def to_image(t_list):
        t = t_list[0] if len(t_list) == 1 else tf.concat(t_list, axis=1)
        t = tf.gather(t, pos)  # back to raster order, [H*W, B, U]
        t = tf.reshape(t, [height, width, batch, units])
        return tf.transpose(t, [2, 0, 1, 3])

    return to_image(hs), (to_image(cs) if return_cells else None)


def _boundary_arrays(h_top, c_top, h_left, c_left, units, batch, height, width, n_diag, dtype):
    """Boundary states as [n_diag + 1, B, U] arrays indexed by diagonal:
    top[d] is the upper neighbour of pixel (0, d), left[d] the left
    neighbour of pixel (d, 0); zeros where no such pixel exists."""
    def prep(t, length):
        if t is None:
            return tf.zeros([n_diag + 1, batch, units], dtype)
        t = tf.cast(tf.convert_to_tensor(t), dtype)
        t = tf.transpose(t, [1, 0, 2])  # [length, B, U]
        return tf.pad(t, [[0, n_diag + 1 - length], [0, 0], [0, 0]])

    return (prep(h_top, width), prep(c_top, width), prep(h_left, height), prep(c_left, height))


def _diagonal_loop(xd, boundary, step, units, lengths, height, width, n_diag, dtype, return_cells):
    """One wavefront loop over all diagonals for a part of the batch.

    xd: [H*W, b, D] inputs in diagonal order.  Returns h (and c) in
    diagonal order, [H*W, b, U]."""
    depth = xd.shape[-1]
    b = tf.shape(xd)[1]
    x_ta = tf.TensorArray(
        dtype, size=n_diag, infer_shape=False,
        element_shape=tf.TensorShape([None, None, depth]),
    ).split(xd, lengths)
    h_ta = tf.TensorArray(
        dtype, size=n_diag, infer_shape=False,
        element_shape=tf.TensorShape([None, None, units]),
    )
    c_ta = tf.TensorArray(
        dtype, size=n_diag if return_cells else 0, infer_shape=False,
        element_shape=tf.TensorShape([None, None, units]),
    )
    if boundary is not None:
        bound_tas = tuple(
            tf.TensorArray(dtype, size=n_diag + 1, element_shape=tf.TensorShape(
                [None, units])).unstack(t)
            for t in boundary
        )
    else:
        bound_tas = ()
    pad = [[1, 1], [0, 0], [0, 0]]
    state_shape = tf.TensorShape([None, None, units])

    def body(d, h_prev, c_prev, h_ta, c_ta):
        # h_prev, c_prev: diagonal d-1 padded by one row at each end.
        i_lo = tf.maximum(0, d - width + 1)
        i_hi = tf.minimum(d, height - 1)
        n = i_hi - i_lo + 1
        up = i_lo - tf.maximum(0, d - width)
        h_up = tf.slice(h_prev, [up, 0, 0], [n, -1, -1])
        c_up = tf.slice(c_prev, [up, 0, 0], [n, -1, -1])
        h_left = tf.slice(h_prev, [up + 1, 0, 0], [n, -1, -1])
        c_left = tf.slice(c_prev, [up + 1, 0, 0], [n, -1, -1])
        x_d = x_ta.read(d)
        h, c = step(
            tf.reshape(x_d, [-1, depth]),
            tf.reshape(h_left, [-1, units]),
            tf.reshape(c_left, [-1, units]),
            tf.reshape(h_up, [-1, units]),
            tf.reshape(c_up, [-1, units]),
        )
        h = tf.reshape(h, [n, -1, units])
        c = tf.reshape(c, [n, -1, units])
        h_ta = h_ta.write(d, h)
        if return_cells:
            c_ta = c_ta.write(d, c)
        if bound_tas:
            ht, ct, hl, cl = (ta.read(d + 1)[None] for ta in bound_tas)
            # Front pad: upper neighbour of (0, d+1); back pad: left
            # neighbour of (d+1, 0).  Unused (zero) where none exists.
            h_next = tf.concat([ht, h, hl], axis=0)
            c_next = tf.concat([ct, c, cl], axis=0)
        else:
            h_next = tf.pad(h, pad)
            c_next = tf.pad(c, pad)
        return d + 1, h_next, c_next, h_ta, c_ta

    if bound_tas:
        # Diagonal "-1": front = upper neighbour of (0, 0), back = left
        # neighbour of (0, 0).
        h0 = tf.stack([bound_tas[0].read(0), bound_tas[2].read(0)])
        c0 = tf.stack([bound_tas[1].read(0), bound_tas[3].read(0)])
    else:
        h0 = c0 = tf.zeros([2, b, units], dtype)

    _, _, _, h_ta, c_ta = tf.while_loop(
        lambda d, *_: d < n_diag,
        body,
        (tf.constant(0), h0, c0, h_ta, c_ta),
        shape_invariants=(
            tf.TensorShape([]), state_shape, state_shape,
            tf.TensorShape(None), tf.TensorShape(None),
        ),
        maximum_iterations=n_diag,
    )
    h_out = h_ta.concat()
    c_out = c_ta.concat() if return_cells else None
    return h_out, c_out


# ----------------------------------------------------------------------------------------------------
# The float cell's own driver (`SpatialLSTM`): the input projection outside the loop and a
# hand-written backward pass.
# ----------------------------------------------------------------------------------------------------
import os as _os
_FORWARD = _os.environ.get("RIDE_FWD", "project")  # experiment switch


def _geometry(height, width):
    """Diagonal geometry: (lengths [n_diag], pos [H*W]: index of pixel (i, j) in diagonal order)."""
    n_diag = height + width - 1
    diag = tf.range(n_diag)
    i_min = tf.maximum(0, diag - width + 1)
    i_max = tf.minimum(diag, height - 1)
    lengths = i_max - i_min + 1
    offsets = tf.cumsum(lengths, exclusive=True)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    dd = rows + cols
    pos = tf.reshape(tf.gather(offsets, dd) + rows - tf.gather(i_min, dd), [-1])
    return lengths, pos


def _diag_rows(d, height, width):
    """(n, up) of diagonal d: its length, and the index of the upper neighbour of its first pixel in
    diagonal d - 1 padded by one row at each end."""
    i_lo = tf.maximum(0, d - width + 1)
    n = tf.minimum(d, height - 1) - i_lo + 1
    return n, i_lo - tf.maximum(0, d - width)


def _rows(t, off, n):
    """Rows off .. off + n - 1 of t (a view: no copy), with t's static trailing dimensions."""
    r = tf.slice(t, tf.stack([off] + [0] * (t.shape.rank - 1)), tf.stack([n] + [-1] * (t.shape.rank - 1)))
    r.set_shape([None] + t.shape[1:].as_list())
    return r


def _clip(c):
    return tf.raw_ops.ClipByValue(t=c, clip_value_min=tf.constant(-1, c.dtype),
                                  clip_value_max=tf.constant(1, c.dtype))


def _cell_forward(a_g, a_o, a_i, a_l, a_u, c_left, c_up, cell):
    """The cell on the pre-activations of M pixels ([M, U] each): (c before the stable cell's clip,
    g, o, (i, f_left, f_up))."""
    g, o = tf.tanh(a_g), tf.sigmoid(a_o)
    if cell == "paper":
        i, f_l, f_u = tf.sigmoid(a_i), tf.sigmoid(a_l), tf.sigmoid(a_u)
    else:
        # softmax over (a_i, a_l, a_u, 0), shifted by its maximum so that it cannot overflow.
        shift = tf.maximum(tf.maximum(a_i, a_l), tf.maximum(a_u, 0))
        e_i, e_l, e_u = tf.exp(a_i - shift), tf.exp(a_l - shift), tf.exp(a_u - shift)
        e_0 = tf.exp(-1 * shift)          # (not Neg: grappler would fuse Neg + Exp into a slow op)
        inv = tf.math.reciprocal(tf.math.add_n([e_i, e_l, e_u, e_0]))
        i, f_l, f_u = e_i * inv, e_l * inv, e_u * inv
    return tf.math.add_n([g * i, c_left * f_l, c_up * f_u]), g, o, (i, f_l, f_u)


def _forward_loop(xw, x, kernel, bias, units, cell, extended, height, width, n_diag, boundary, store):
    """The diagonals of one part of the batch, in order.

    xw [H*W, b, 5U] = x @ W_x + bias in diagonal order and kernel = its recurrent rows (_FORWARD
    "project"), or x [H*W, b, D] and the whole kernel and bias (one MatMul + BiasAdd per gate).
    Returns h, c [H*W, b, U] in diagonal order, and if `store` what the backward pass needs, per pixel
    in diagonal order: the rows z the kernel multiplied ([x,] h_left, h_up[, c_left, c_up]), k_all
    [.., 5U] with d(pre-activations) = k_all * [dc, dh, dc, dc, dc], k1 [.., U] = dh/dc, and f_left,
    f_up [.., U] = dc_left/dc, dc_up/dc (zero where the clip cut; dc: the gradient of the memory)."""
    src = xw if xw is not None else x
    dtype = src.dtype
    b = tf.shape(src)[1]
    if xw is None:
        ks, bs = tf.split(kernel, 5, axis=1), tf.split(bias, 5)
    n_z = kernel.shape[0]
    ta = lambda w: tf.TensorArray(dtype, size=n_diag, infer_shape=False,
                                  element_shape=tf.TensorShape([None, None, w]))
    if boundary is not None:
        bound_tas = tuple(tf.TensorArray(dtype, size=n_diag + 1, element_shape=tf.TensorShape([None, units]))
                          .unstack(t) for t in boundary)
        h0 = tf.stack([bound_tas[0].read(0), bound_tas[2].read(0)])
        c0 = tf.stack([bound_tas[1].read(0), bound_tas[3].read(0)])
    else:
        bound_tas = ()
        h0 = c0 = tf.zeros([2, b, units], dtype)
    pad = [[1, 1], [0, 0], [0, 0]]
    n_store = 9 if store else 0
    store_widths = ([n_z] + [units] * 8)[:n_store]
    big = 2 / np.finfo(dtype.as_numpy_dtype).eps       # 2 / (spacing of the floats just above 1)

    def body(d, off, h_prev, c_prev, h_ta, c_ta, *store_tas):
        n, up = _diag_rows(d, height, width)
        h_up = _rows(h_prev, up, n)
        h_left = _rows(h_prev, up + 1, n)
        c_up = _rows(c_prev, up, n)
        c_left = _rows(c_prev, up + 1, n)
        parts = ([] if xw is not None else [_rows(x, off, n)]) + [h_left, h_up]
        if extended:
            parts += [c_left, c_up]
        z = tf.concat(parts, axis=-1)
        z2 = tf.reshape(z, [-1, n_z])
        c_left, c_up = tf.reshape(c_left, [-1, units]), tf.reshape(c_up, [-1, units])
        if xw is not None:
            a = tf.split(tf.matmul(z2, kernel) + tf.reshape(_rows(xw, off, n), [-1, 5 * units]), 5, axis=-1)
        else:
            a = [tf.nn.bias_add(tf.matmul(z2, k_), b_) for k_, b_ in zip(ks, bs)]
        c_raw, g, o, (i, f_l, f_u) = _cell_forward(*a, c_left, c_up, cell)
        c = c_raw if cell == "paper" else _clip(c_raw)
        h = tf.tanh(c * o)
        shaped = lambda t: tf.reshape(t, [n, -1, t.shape[-1]])
        h_ta = h_ta.write(d, shaped(h))
        c_ta = c_ta.write(d, shaped(c))
        if store:
            t = 1 - h * h
            k1 = o * t
            k_o = k1 * c * (1 - o)
            if cell == "paper":
                k_c = [i * (1 - g * g), g * i * (1 - i), c_left * f_l * (1 - f_l), c_up * f_u * (1 - f_u)]
            else:
                # d c_raw / d a_k = p_k (V_k - c_raw) for the softmax p = (i, f_left, f_up) and
                # V = (g, c_left, c_up); the clip passes the gradient where it did not cut.
                # keep = 1 where the clip did not cut (c == c_raw), else 0: a cut moves c_raw by at least
                # the spacing of the floats above 1, which `big` turns into >= 2 (no comparison op:
                # those are slow here).
                keep = tf.nn.relu(1 - big * tf.abs(c_raw - c))
                i, f_l, f_u = i * keep, f_l * keep, f_u * keep
                k_c = [i * (1 - g * g), i * (g - c_raw), f_l * (c_left - c_raw), f_u * (c_up - c_raw)]
            values = [z, k_c[0], k_o] + k_c[1:] + [k1, f_l, f_u]
            store_tas = [s.write(d, shaped(v)) for s, v in zip(store_tas, values)]
        h, c = shaped(h), shaped(c)
        if bound_tas:
            ht, ct, hl, cl = (t.read(d + 1)[None] for t in bound_tas)
            h_next = tf.concat([ht, h, hl], axis=0)
            c_next = tf.concat([ct, c, cl], axis=0)
        else:
            h_next = tf.pad(h, pad)
            c_next = tf.pad(c, pad)
        return (d + 1, off + n, h_next, c_next, h_ta, c_ta) + tuple(store_tas)

    state = tf.TensorShape([None, None, units])
    out = tf.while_loop(
        lambda d, *_: d < n_diag, body,
        (tf.constant(0), tf.constant(0), h0, c0, ta(units), ta(units)) + tuple(ta(w) for w in store_widths),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([]), state, state)
        + (tf.TensorShape(None),) * (2 + n_store),
        maximum_iterations=n_diag)
    return [out[4].concat(), out[5].concat()] + list(out[6:])


_BWD = _os.environ.get("RIDE_BWD", "blk10")


def _backward_loop(k_tas, k1, f_l, f_u, dh_out, dc_out, w_hT, units, extended, height, width, n_diag, keep_dc):
    """The diagonals of one part of the batch in reverse: the gradients of the pre-activations.

    k_tas (the five gate blocks), k1, f_l, f_u: TensorArrays from `_forward_loop(store=True)`; dh_out,
    dc_out (or None): the gradients of the outputs, in diagonal order; w_hT [5U, 2U (4U)]: the transpose
    of the kernel's recurrent rows.  Returns the gradients of the pre-activations [H*W, b, 5U] (and dc
    [H*W, b, U] if keep_dc)."""
    dtype = dh_out.dtype
    b = tf.shape(dh_out)[1]
    n_pix = tf.shape(dh_out)[0]
    top, bottom = [[1, 0], [0, 0], [0, 0]], [[0, 1], [0, 0], [0, 0]]
    ta = lambda w: tf.TensorArray(dtype, size=n_diag, infer_shape=False,
                                  element_shape=tf.TensorShape([None, None, w]))
    n_split = 4 if extended else 2
    w_blocks = tf.split(w_hT, 5, axis=0)                        # [U, 2U (4U)] per gate
    w_parts = [tf.split(w, n_split, axis=1) for w in w_blocks]  # [U, U] per gate and side

    def body(d, end, carry_h, carry_c, dc_ta, *da_tas):
        n, up = _diag_rows(d, height, width)
        off = end - n
        dh = _rows(dh_out, off, n) + carry_h
        dc = carry_c + dh * k1.read(d)
        if dc_out is not None:
            dc = dc + _rows(dc_out, off, n)
        m = [dc, dh, dc, dc, dc]
        if _BWD == "cat":
            da = tf.concat([k.read(d) for k in k_tas], axis=-1) * tf.concat(m, axis=-1)
            da_tas = (da_tas[0].write(d, da),)
            dz = tf.split(tf.reshape(tf.matmul(tf.reshape(da, [-1, 5 * units]), w_hT), [n, -1, n_split * units]),
                          n_split, axis=-1)
        else:
            da = [tf.reshape(k.read(d) * m_, [-1, units]) for k, m_ in zip(k_tas, m)]
            da_tas = tuple(t.write(d, tf.reshape(a, [n, -1, units])) for t, a in zip(da_tas, da))
            if _BWD == "blk5":
                dz = tf.math.add_n([tf.matmul(a, w) for a, w in zip(da, w_blocks)])
                dz = tf.split(tf.reshape(dz, [n, -1, n_split * units]), n_split, axis=-1)
            else:
                dz = [tf.reshape(tf.math.add_n([tf.matmul(a, w[side]) for a, w in zip(da, w_parts)]), [n, -1, units])
                      for side in range(n_split)]
        if keep_dc:
            dc_ta = dc_ta.write(d, dc)
        dc_l, dc_u = dc * f_l.read(d), dc * f_u.read(d)
        if extended:
            dc_l, dc_u = dc_l + dz[2], dc_u + dz[3]
        n_prev = _diag_rows(d - 1, height, width)[0]
        # Diagonal d - 1 padded by one row at each end: pixel k of d has its left neighbour at k + up + 1
        # and its upper neighbour at k + up; keep the rows of d - 1's own pixels.
        carry_h = _rows(tf.pad(dz[0], top) + tf.pad(dz[1], bottom), 1 - up, n_prev)
        carry_c = _rows(tf.pad(dc_l, top) + tf.pad(dc_u, bottom), 1 - up, n_prev)
        return (d - 1, off, carry_h, carry_c, dc_ta) + tuple(da_tas)

    zero = tf.zeros([1, b, units], dtype)         # the last diagonal has one pixel
    state = tf.TensorShape([None, None, units])
    n_da = 1 if _BWD == "cat" else 5
    out = tf.while_loop(
        lambda d, *_: d >= 0, body,
        (n_diag - 1, n_pix, zero, zero, ta(units)) + tuple(ta(5 * units if _BWD == "cat" else units)
                                                            for _ in range(n_da)),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([]), state, state) + (tf.TensorShape(None),) * (1 + n_da),
        maximum_iterations=n_diag)
    da = out[5].concat() if n_da == 1 else tf.concat([t.concat() for t in out[5:]], axis=-1)
    return da, (out[4].concat() if keep_dc else None)


def _neighbour_slots(pos, height, width, n_pix, boundary):
    """For every slot of the diagonal order, the slots of the pixel's left and upper neighbours in
    [states (H*W), top boundary (W), left boundary (H)] (boundary) or [states, one zero row]."""
    order = tf.math.invert_permutation(pos)
    i, j = order // width, order % width
    if boundary:
        left_out, up_out = n_pix + width + i, n_pix + j
    else:
        left_out = up_out = tf.fill(tf.shape(order), n_pix)
    left = tf.where(j > 0, tf.gather(pos, tf.maximum(order - 1, 0)), left_out)
    up = tf.where(i > 0, tf.gather(pos, tf.maximum(order - width, 0)), up_out)
    return left, up


def _tape_watches(tensors):
    """Whether a gradient tape records operations on any of `tensors` (then the forward pass keeps what
    the backward pass needs; otherwise the backward pass, if it is asked for by `tf.gradients`, first
    runs the forward loop again)."""
    try:
        from tensorflow.python.eager import record
        return bool(record.should_record_backprop(tensors))
    except Exception:  # pragma: no cover - private API moved: always keep
        return True


def _float_scan(x, kernel, bias, units, cell="stable", extended=False, return_cells=False, boundary=None,
                num_loops=1):
    """`diagonal_scan` of `SpatialLSTMCell`'s float cell, given its kernel [D + 2U (4U), 5U] and bias [5U].

    Forward: a loop over the diagonals.  Backward (`tf.custom_gradient`): the forward loop has kept,
    per pixel, the rows of the kernel's products and the derivatives of the cell (computed where they
    are in cache); the loop over the diagonals in reverse carries the gradients of the states, one
    product [., 5U] @ W_h^T per diagonal; the gradients of the weights and inputs are one product each
    over all pixels after it."""
    dtype = x.dtype
    depth = x.shape[-1]
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    n_diag = height + width - 1
    n_pix = height * width
    _, pos = _geometry(height, width)
    order = tf.math.invert_permutation(pos)
    if num_loops == 1:
        split = lambda t: [t]
    else:
        base = batch // num_loops
        sizes = base + tf.cast(tf.range(num_loops) < batch - base * num_loops, tf.int32)
        split = lambda t: tf.split(t, sizes, axis=1, num=num_loops)
    join = lambda parts: parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)

    def to_diag(t):      # [B, H, W, F] -> [H*W, B, F] in diagonal order
        return tf.gather(tf.reshape(tf.transpose(t, [1, 2, 0, 3]), [n_pix, batch, t.shape[-1]]), order)

    def to_image(t):     # the inverse
        return tf.transpose(tf.reshape(tf.gather(t, pos), [height, width, batch, t.shape[-1]]), [2, 0, 1, 3])

    def edge(t, length):  # boundary states [B, L, U] (None: zeros) -> [L, B, U]
        if t is None:
            return tf.zeros([length, batch, units], dtype)
        return tf.transpose(tf.cast(tf.convert_to_tensor(t), dtype), [1, 0, 2])

    has_boundary = boundary is not None
    if has_boundary:
        h_top, c_top, h_left, c_left = boundary
        edges = [edge(h_top, width), edge(c_top, width), edge(h_left, height), edge(c_left, height)]
    else:
        edges = []
    training = _tape_watches([x, kernel, bias] + edges)

    @tf.custom_gradient
    def run(x, kernel, bias, *edges):
        xd_parts = split(to_diag(x))
        if has_boundary:
            pad_to = lambda t: tf.pad(t, [[0, n_diag + 1 - tf.shape(t)[0]], [0, 0], [0, 0]])
            bnd_parts = list(zip(*[split(pad_to(t)) for t in edges]))
        else:
            bnd_parts = [None] * num_loops

        def forward(k, store):
            xp, bp = xd_parts[k], bnd_parts[k]
            if _FORWARD == "project":
                xw = tf.reshape(tf.nn.bias_add(tf.matmul(tf.reshape(xp, [-1, depth]), kernel[:depth]), bias),
                                [n_pix, -1, 5 * units])
                return _forward_loop(xw, None, kernel[depth:], None, units, cell, extended, height, width,
                                     n_diag, bp, store)
            return _forward_loop(None, xp, kernel, bias, units, cell, extended, height, width, n_diag, bp, store)

        results = [forward(k, training) for k in range(num_loops)]
        h_img = to_image(join([r[0] for r in results]))
        outputs = (h_img, to_image(join([r[1] for r in results]))) if return_cells else h_img

        def grad(*dys):
            dh = dys[0] if dys[0] is not None else tf.zeros_like(h_img)
            dc = dys[1] if return_cells and len(dys) > 1 else None
            dh_parts = split(to_diag(dh))
            dc_parts = split(to_diag(dc)) if dc is not None else [None] * num_loops
            w_hT = tf.transpose(kernel[-(4 if extended else 2) * units:])
            d_kernel, d_bias, d_x, d_edges = [], [], [], [[] for _ in edges]
            for k in range(num_loops):
                stored = results[k] if training else forward(k, True)
                z, k_tas, (k1, f_l, f_u) = stored[2], stored[3:8], stored[8:]
                z = z.concat()
                b_k = tf.shape(z)[1]
                da, dcs = _backward_loop(k_tas, k1, f_l, f_u, dh_parts[k], dc_parts[k], w_hT, units, extended,
                                         height, width, n_diag, keep_dc=has_boundary)
                da2 = tf.reshape(da, [-1, 5 * units])
                z2 = tf.reshape(z, [-1, z.shape[-1]])
                if _FORWARD == "project":
                    xp2 = tf.reshape(xd_parts[k], [-1, depth])
                    d_kernel.append(tf.concat([tf.matmul(xp2, da2, transpose_a=True),
                                               tf.matmul(z2, da2, transpose_a=True)], axis=0))
                else:
                    d_kernel.append(tf.matmul(z2, da2, transpose_a=True))
                d_bias.append(tf.reduce_sum(da2, axis=0))
                d_x.append(tf.reshape(tf.matmul(da2, kernel[:depth], transpose_b=True), [n_pix, b_k, depth]))
                if has_boundary:
                    # The boundary states are the upper neighbours of pixels (0, j) and the left
                    # neighbours of pixels (i, 0).
                    for slots, side, f, outs in ((pos[:width], 1, f_u, d_edges[:2]),
                                                 (pos[::width], 0, f_l, d_edges[2:])):
                        dz = tf.matmul(tf.gather(da, slots), w_hT)
                        d_c = tf.gather(dcs, slots) * tf.gather(f.concat(), slots)
                        if extended:
                            d_c += dz[..., (2 + side) * units:(3 + side) * units]
                        outs[0].append(dz[..., side * units:(side + 1) * units])
                        outs[1].append(d_c)
            d_edges = [tf.transpose(join(t), [1, 0, 2]) for t in d_edges]
            return [to_image(join(d_x)), tf.math.add_n(d_kernel), tf.math.add_n(d_bias)] + d_edges

        return outputs, grad

    out = run(x, kernel, bias, *edges)
    return (out[0], out[1]) if return_cells else (out, None)
