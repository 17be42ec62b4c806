"""Spatial LSTM (Theis & Bethge 2015, eq. 6): the cell (`SpatialLSTMCell`) and the layer that drives it over
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

The cell and its driver
-----------------------
`SpatialLSTMCell` holds the weights, the config and the equations: its `step`
computes (h, c) of M pixels at once from their inputs and their neighbours'
states.  `SpatialLSTM` holds one cell (``layer.cell``, as Keras' `LSTM` holds
an `LSTMCell`) and drives its `step` over an image; the wavefront pass
(`ride_tf.wavefront`: sampling, inpainting) drives the same `step` front by
front.  `diagonal_scan` is the driver itself, for any step function (the
integer codec runs its integer cell through it).

(i, j) depends only on (i, j-1) and (i-1, j), both on the anti-diagonal
d - 1 where d = i + j.  The driver therefore runs one ``tf.while_loop`` over
the H + W - 1 anti-diagonals; each iteration is one call of `step` for every
pixel of one diagonal and every image of the batch:

* The inputs are permuted once into diagonal order (one gather), laid out as
  [pixel, batch, D]; diagonal d is a ``tf.slice`` of exact length (no
  padding to full length, so XLA cannot compile the loop).
* The loop carries only the previous diagonal's h and c, padded with one row
  at each end (zeros, or the boundary states of `SpatialLSTM.run_region`);
  the left and up neighbours of diagonal d are two slices of it.
* `step` does one MatMul + BiasAdd (+ tanh / sigmoid) per gate on
  [x, h_left, h_up], which grappler fuses into oneDNN's ``_FusedMatMul`` on
  CPU.
* On CPU the batch is split into independent loops (``parallel_loops``) which
  TensorFlow's inter-op threads run concurrently.

Gradients of the layer (``tf.custom_gradient``; `diagonal_scan` of other
steps is differentiated by TensorFlow through the loop): in a traced function
(``tf.function``, Keras' fit) the forward loop also writes, per pixel, what
the backward pass needs: the rows z = [x, h_left, h_up(, c_left, c_up)] the
kernel multiplied and the local derivatives of the cell
(``step(..., derivatives=True)``).  When no gradient is asked for, TensorFlow
prunes those writes from the graph.  Eagerly, the forward loop writes only
h and c, and a backward pass first runs it again with the derivatives; so does
a backward pass built in another graph than the forward pass (an eager tape
around a ``tf.function``, or a SavedModel tracing the gradient).  The backward
pass is a loop over the diagonals in reverse which carries the gradients of
the neighbours' states (`SpatialLSTMCell.backward_step`, the vector-Jacobian
product of `step`); the gradients of the kernel, the bias and the inputs are
then one matrix product each over all pixels.  The tests check it against
automatic differentiation of a loop over `step`; a training step with it took
3/4 of the time of TensorFlow's gradient of the loop (docs/speed.md).
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
# What `step(..., derivatives=True)` returns besides (h, c), per pixel: the rows the kernel multiplied, then
# the local derivatives of the cell (see `SpatialLSTMCell.step`).
_DERIVATIVES = ("z", "k_g", "k_o", "k_i", "k_l", "k_u", "k_h", "f_left", "f_up")


def _cell_arguments(owner, units, extended, cell, kernel_initializer, bias_initializer, forget_bias):
    """The cell's constructor arguments, checked (ValueError naming the argument) and normalised."""
    units = check_integer(owner, "units", units, 1)
    extended = check_bool(owner, "extended", extended)
    cell = check_choice(owner, "cell", cell, CELLS)
    forget_bias = None if forget_bias is None else check_number(owner, "forget_bias", forget_bias)
    initializers = []
    for name, value in (("kernel_initializer", kernel_initializer), ("bias_initializer", bias_initializer)):
        try:
            initializer = keras.initializers.get(value)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{owner}: {name} must be a Keras initializer, got {value!r} ({error})") from None
        if initializer is None:
            raise ValueError(f"{owner}: {name} must be a Keras initializer, got None.")
        initializers.append(initializer)
    return units, extended, cell, initializers[0], initializers[1], forget_bias


def _split_gates(kernel, bias):
    """(five [rows, U] kernels, five [U] biases), one per gate in the order of `GATES`."""
    return tf.split(kernel, 5, axis=1), tf.split(bias, 5, axis=0)


def _clip(c):
    """c clipped to [-1, 1] (one op; tf.clip_by_value is a Minimum and a Maximum)."""
    return tf.raw_ops.ClipByValue(t=c, clip_value_min=tf.constant(-1, c.dtype), clip_value_max=tf.constant(1, c.dtype))


@keras.saving.register_keras_serializable(package="ride_tf")
class SpatialLSTMCell(keras.layers.Layer):
    """One cell of the spatial LSTM (eq. 6, or its stable form): the weights, one step and the config.

    Args:
        units: number of hidden (and memory) units U.
        extended: if True, the memory states c_(i,j-1) and c_(i-1,j) are
            inputs of the gates as well.
        cell: "stable" (default; |c| < 1 for any weights and image size) or
            "paper" (eq. 6 as written, unbounded); see the module docstring.
            The attribute is `cell_type`.
        kernel_initializer, bias_initializer: Keras initializers.
        forget_bias: added to the initial biases of the two forget gates
            (None: `DEFAULT_FORGET_BIAS[cell]`, -1 for the paper's cell, so
            that its memory does not grow at initialisation; 0 for "stable").

    Variables (built for inputs of size D):
        kernel: [D + 2U, 5U] (extended: [D + 4U, 5U]); rows act on
            [x, h_left, h_up] (extended: [x, h_left, h_up, c_left, c_up]),
            column blocks of width U are the gates g, o, i, f_left, f_up.
        bias: [5U], same gate order.

    `SpatialLSTM` drives `step` over the anti-diagonals of an image (its
    gradient is `backward_step`); the wavefront pass (`ride_tf.wavefront`)
    drives it front by front.  Both get the same numbers.
    """

    def __init__(self, units, extended=False, cell="stable", kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", forget_bias=None, **kwargs):
        super().__init__(**kwargs)
        (self.units, self.extended, self.cell_type, self.kernel_initializer, self.bias_initializer,
         self.forget_bias) = _cell_arguments("SpatialLSTMCell", units, extended, cell, kernel_initializer,
                                             bias_initializer, forget_bias)
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
        forget_bias = DEFAULT_FORGET_BIAS[self.cell_type] if self.forget_bias is None else self.forget_bias
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
        config.update(units=self.units, extended=self.extended, cell=self.cell_type,
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
        return _split_gates(kernel, bias)

    def step(self, inputs, h_left, c_left, h_up, c_up, weights=None, derivatives=False):
        """The cell for a batch of M independent cells: (h, c), [M, U] each.

        Args:
            inputs: x_ij, [M, D].
            h_left, c_left: states of the left neighbours (i, j-1), [M, U]
                (zeros outside the image).
            h_up, c_up: states of the upper neighbours (i-1, j), [M, U].
            weights: optional result of `gate_weights()` (to split the
                kernel only once when stepping many times).
            derivatives: also return what `backward_step` needs, a tuple
                (z, k_g, k_o, k_i, k_l, k_u, k_h, f_left, f_up): z [M, rows]
                the rows the kernel multiplied, [x, h_left, h_up(, c_left,
                c_up)]; then [M, U] each: dc/da_g, dh/da_o, dc/da_i, dc/da_l,
                dc/da_u, dh/dc, dc/dc_left, dc/dc_up (for the stable cell zero
                where the clip of c cut).

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
        a = [tf.nn.bias_add(tf.matmul(z, kernel), bias) for kernel, bias in zip(kernels, biases)]
        g, o = tf.tanh(a[0]), tf.sigmoid(a[1])
        paper = self.cell_type == "paper"
        if paper:
            i, f_left, f_up = tf.sigmoid(a[2]), tf.sigmoid(a[3]), tf.sigmoid(a[4])
        else:
            # softmax over (a_i, a_l, a_u, 0), shifted by its maximum so that it cannot overflow.
            a_i, a_l, a_u = a[2:]
            shift = tf.maximum(tf.maximum(a_i, a_l), tf.maximum(a_u, 0))
            e_i, e_l, e_u = tf.exp(a_i - shift), tf.exp(a_l - shift), tf.exp(a_u - shift)
            e_0 = tf.exp(-1 * shift)          # (not Neg: grappler would fuse Neg + Exp into a slow op)
            inv = tf.math.reciprocal(tf.math.add_n([e_i, e_l, e_u, e_0]))
            i, f_left, f_up = e_i * inv, e_l * inv, e_u * inv
        c_raw = tf.math.add_n([g * i, c_left * f_left, c_up * f_up])
        # |c| <= 1 holds for the stable cell in exact arithmetic; the clip only removes rounding (a few ulp),
        # which could otherwise compound over thousands of diagonals.
        c = c_raw if paper else _clip(c_raw)
        h = tf.tanh(c * o)
        if not derivatives:
            return h, c
        k_h = o * (1 - h * h)
        k_o = k_h * c * (1 - o)
        if paper:
            k_c = [i * (1 - g * g), g * i * (1 - i), c_left * f_left * (1 - f_left), c_up * f_up * (1 - f_up)]
        else:
            # d c_raw / d a_k = p_k (V_k - c_raw) for the softmax p = (i, f_left, f_up) and V = (g, c_left,
            # c_up); the clip passes the gradient where it did not cut.  keep = 1 there (c == c_raw), else 0: a
            # cut moves c_raw by at least the spacing of the floats above 1, which `big` turns into >= 2 (no
            # comparison op: those are slow here).
            big = 2 / np.finfo(c.dtype.as_numpy_dtype).eps
            keep = tf.nn.relu(1 - big * tf.abs(c_raw - c))
            i, f_left, f_up = i * keep, f_left * keep, f_up * keep
            k_c = [i * (1 - g * g), i * (g - c_raw), f_left * (c_left - c_raw), f_up * (c_up - c_raw)]
        return h, c, (z, k_c[0], k_o, k_c[1], k_c[2], k_c[3], k_h, f_left, f_up)

    def backward_weights(self, kernel):
        """The blocks of `kernel` [rows, 5U] (a tensor: the kernel cast to the compute dtype) that
        `backward_step` multiplies: per gate, the transposes [U, U] of its columns' rows acting on h_left, h_up
        (and c_left, c_up).  Compute them once, outside a loop over `backward_step`."""
        n_states = 4 if self.extended else 2
        recurrent_t = tf.transpose(kernel[-n_states * self.units:])               # [5U, 2U (4U)]
        return [tf.split(block, n_states, axis=1) for block in tf.split(recurrent_t, 5, axis=0)]

    def backward_step(self, derivatives, dh, dc, weights):
        """The gradient of `step` (its vector-Jacobian product) for M pixels, without the inputs' rows.

        Args:
            derivatives: the last eight entries of ``step(..., derivatives=True)[2]`` (k_g ... f_up), [M, U]
                each.
            dh, dc: [M, U], the gradients of the step's outputs h and c (dc without the path through h).
            weights: `backward_weights(kernel)`.

        Returns:
            (da, dc_total, (dh_left, dh_up, dc_left, dc_up)): da, five [M, U], the gradients of the
            pre-activations a_g ... a_u (the kernel's gradient is z^T [da], the inputs' [da] kernel[:D]^T);
            dc_total [M, U], the gradient of c including the path through h; then the gradients of the
            neighbours' states, [M, U] each.
        """
        k_g, k_o, k_i, k_l, k_u, k_h, f_left, f_up = derivatives
        dc = dc + dh * k_h
        da = [k_g * dc, k_o * dh, k_i * dc, k_l * dc, k_u * dc]
        return da, dc, self.state_gradients(da, dc, f_left, f_up, weights)

    def state_gradients(self, da, dc, f_left, f_up, weights):
        """(dh_left, dh_up, dc_left, dc_up) [M, U] from the gradients da (five [M, U]) of the pre-activations
        and dc of the memory (`backward_step`): one [U, U] product per gate and neighbour state (faster on CPU
        than one product with the concatenated blocks, or one per gate)."""
        dz = [tf.math.add_n([tf.matmul(a, block[side]) for a, block in zip(da, weights)])
              for side in range(len(weights[0]))]
        dc_left, dc_up = dc * f_left, dc * f_up
        if self.extended:
            dc_left, dc_up = dc_left + dz[2], dc_up + dz[3]
        return dz[0], dz[1], dc_left, dc_up


@keras.saving.register_keras_serializable(package="ride_tf")
class SpatialLSTM(keras.layers.Layer):
    """Spatial LSTM layer, eq. 6 of Theis & Bethge (2015): a `SpatialLSTMCell` driven over an image.

    Args:
        units, extended, cell, kernel_initializer, bias_initializer,
        forget_bias: those of the cell (`SpatialLSTMCell`), which this
            layer holds as `cell` (the cell's kind, the argument ``cell``,
            is `cell_type`); the layer's attributes of the same names read
            the cell's.
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
        owner = "SpatialLSTM"
        units, extended, cell, kernel_initializer, bias_initializer, forget_bias = _cell_arguments(
            owner, units, extended, cell, kernel_initializer, bias_initializer, forget_bias)
        self.parallel_loops = None if parallel_loops is None else check_integer(owner, "parallel_loops",
                                                                                parallel_loops, 1)
        self.cell = SpatialLSTMCell(units, extended=extended, cell=cell, kernel_initializer=kernel_initializer,
                                    bias_initializer=bias_initializer, forget_bias=forget_bias,
                                    dtype=self.dtype_policy, name="cell")
        # Keras reads `supports_jit` of every layer (trainer.model_supports_jit):
        # exact-length diagonals cannot be compiled by XLA.
        self.supports_jit = False
        self.input_spec = keras.layers.InputSpec(ndim=4)

    # The driver's attributes are the cell's.
    units = property(lambda self: self.cell.units)
    extended = property(lambda self: self.cell.extended)
    cell_type = property(lambda self: self.cell.cell_type)
    forget_bias = property(lambda self: self.cell.forget_bias)
    kernel_initializer = property(lambda self: self.cell.kernel_initializer)
    bias_initializer = property(lambda self: self.cell.bias_initializer)
    kernel = property(lambda self: self.cell.kernel)
    bias = property(lambda self: self.cell.bias)
    input_dim = property(lambda self: self.cell.input_dim)
    # The cell under its earlier attribute name: files saved when the layer called it `lstm_cell` hold its
    # variables under that name, and Keras' loader tries every attribute that holds the cell (`cell` first).
    lstm_cell = property(lambda self: self.cell)

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        self.cell.build(input_shape)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: self.input_dim})

    def load_own_variables(self, store):
        """Files written before the cell was a layer of its own hold the kernel and bias here: give them to the cell."""
        if len(store) == 2:
            self.cell.kernel.assign(store["0"])
            self.cell.bias.assign(store["1"])
            self.cell.loaded_by_driver = True
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
            cell=self.cell_type,
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
        return self.cell.gate_weights(dtype or self.compute_dtype)

    def step(self, inputs, h_left, c_left, h_up, c_up, weights=None):
        """The cell's `step`: (h, c) [M, U] of M cells given their inputs [M, D] and neighbours' states."""
        return self.cell.step(inputs, h_left, c_left, h_up, c_up, weights=weights)

    # ----------------------------------------------------------- full image
    def call(self, inputs):
        """Hidden states [batch, H, W, U] of inputs [batch, H, W, D]."""
        return _drive(self.cell, inputs, None, False, self._num_loops(inputs.shape[0]))

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
        boundary = (h_top, c_top, h_left, c_left)
        if all(t is None for t in boundary):
            boundary = None
        return _drive(self.cell, inputs, boundary, True, self._num_loops(inputs.shape[0]))

    def _num_loops(self, batch_static):
        if self.parallel_loops is not None:
            n = self.parallel_loops
        else:
            on_gpu = bool(tf.config.list_logical_devices("GPU"))
            n = 1 if on_gpu else 2
        if batch_static is not None:
            n = min(n, max(int(batch_static), 1))
        return max(n, 1)


# ----------------------------------------------------------------------------------------------------
# The driver: one loop over the anti-diagonals (forward), one in reverse (the layer's backward pass).
# ----------------------------------------------------------------------------------------------------
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
      (h, c) [batch, H, W, U] (c None without return_cells).  Gradients, if asked for, are TensorFlow's
      through the loop (`SpatialLSTM` has its own backward pass).
    """
    units = check_integer("diagonal_scan", "units", units, 1)
    num_loops = check_integer("diagonal_scan", "num_loops", num_loops, 1)
    return_cells = check_bool("diagonal_scan", "return_cells", return_cells)
    x = tf.convert_to_tensor(x)
    diagonals = _Diagonals(x, num_loops)
    edges = None if boundary is None else diagonals.edges(boundary, units, x.dtype)
    results = [_diagonal_loop(part, bound, step, units, diagonals, keep_cells=return_cells)
               for part, bound in zip(diagonals.split(diagonals.to_diagonals(x)), diagonals.boundary_parts(edges))]
    h = diagonals.to_image(diagonals.join([r[0] for r in results]))
    return h, (diagonals.to_image(diagonals.join([r[1] for r in results])) if return_cells else None)


def _drive(cell, x, boundary, return_cells, num_loops):
    """`diagonal_scan` of `cell.step` with the backward pass of `cell.backward_step`: h, or (h, c) with
    return_cells."""
    dtype, units, depth = x.dtype, cell.units, x.shape[-1]
    kernel = tf.cast(tf.convert_to_tensor(cell.kernel), dtype)
    bias = tf.cast(tf.convert_to_tensor(cell.bias), dtype)
    diagonals = _Diagonals(x, num_loops)
    edges = [] if boundary is None else diagonals.edges(boundary, units, dtype)
    widths = (kernel.shape[0],) + (units,) * (len(_DERIVATIVES) - 1)
    # Traced (a graph), the forward loop also writes what the backward pass needs; TensorFlow prunes those
    # writes when nothing asks for a gradient.  Eagerly they would cost their time, so the backward pass
    # runs the forward loop again, with them; so does a backward pass built in another graph than the
    # forward pass (a SavedModel traces the gradient in a function of its own, which can capture float
    # tensors of the forward graph but not the TensorArrays).
    store = not tf.executing_eagerly()
    forward_graph = tf.compat.v1.get_default_graph()

    @tf.custom_gradient
    def run(x, kernel, bias, *edges):
        weights = _split_gates(kernel, bias)
        x_parts = diagonals.split(diagonals.to_diagonals(x))
        bound_parts = diagonals.boundary_parts(edges)

        def forward(k, derivatives):
            step = lambda *args: cell.step(*args, weights=weights, derivatives=derivatives)
            return _diagonal_loop(x_parts[k], bound_parts[k], step, units, diagonals,
                                  extra_widths=widths if derivatives else (), keep_cells=return_cells)

        results = [forward(k, store) for k in range(num_loops)]
        h = diagonals.to_image(diagonals.join([r[0] for r in results]))
        outputs = (h, diagonals.to_image(diagonals.join([r[1] for r in results]))) if return_cells else h

        def grad(*upstream):
            dh = upstream[0] if upstream[0] is not None else tf.zeros_like(h)
            dc = upstream[1] if return_cells else None
            dh_parts = diagonals.split(diagonals.to_diagonals(dh))
            dc_parts = [None] * num_loops if dc is None else diagonals.split(diagonals.to_diagonals(dc))
            back = cell.backward_weights(kernel)
            same_graph = store and tf.compat.v1.get_default_graph() is forward_graph
            d_kernel, d_bias, d_x, d_edges = [], [], [], [[] for _ in edges]
            for k in range(num_loops):
                stored = (results[k] if same_graph else forward(k, True))[2]
                da, dcs = _backward_loop(cell, stored[1:], dh_parts[k], dc_parts[k], back, diagonals,
                                         keep_dc=bool(edges))
                da2 = tf.reshape(da, [-1, 5 * units])
                z2 = tf.reshape(stored[0].concat(), [-1, widths[0]])
                d_kernel.append(tf.matmul(z2, da2, transpose_a=True))
                d_bias.append(tf.reduce_sum(da2, axis=0))
                d_x.append(tf.reshape(tf.matmul(da2, kernel[:depth], transpose_b=True),
                                      [diagonals.n_pix, -1, depth]))
                if edges:
                    # The top states are the upper neighbours of the pixels (0, j), the left states the left
                    # neighbours of the pixels (i, 0): the cell's gradients of those neighbours' states.
                    f_left, f_up = stored[7].concat(), stored[8].concat()
                    for slots, side in ((diagonals.pos[:diagonals.width], 1), (diagonals.pos[::diagonals.width], 0)):
                        at = lambda t: tf.reshape(tf.gather(t, slots), [-1, t.shape[-1]])
                        grads = cell.state_gradients(tf.split(at(da), 5, axis=-1), at(dcs), at(f_left), at(f_up),
                                                     back)
                        shaped = lambda t: tf.reshape(t, [tf.shape(slots)[0], -1, units])
                        d_edges[2 * (1 - side)].append(shaped(grads[side]))          # dh_up or dh_left
                        d_edges[2 * (1 - side) + 1].append(shaped(grads[2 + side]))  # dc_up or dc_left
            d_edges = [diagonals.join(t) for t in d_edges]
            return [diagonals.to_image(diagonals.join(d_x)), tf.math.add_n(d_kernel), tf.math.add_n(d_bias)] + d_edges

        return outputs, grad

    return run(x, kernel, bias, *edges)


class _Diagonals:
    """The anti-diagonal order of a batch of images [B, H, W, .]: its geometry, the permutations to and from
    it, the boundary states by diagonal, and the split of the batch into independent loops."""

    def __init__(self, x, num_loops):
        shape = tf.shape(x)
        self.batch, self.height, self.width = shape[0], shape[1], shape[2]
        self.n_diag = self.height + self.width - 1
        self.n_pix = self.height * self.width
        diag = tf.range(self.n_diag)
        i_min = tf.maximum(0, diag - self.width + 1)
        offsets = tf.cumsum(tf.minimum(diag, self.height - 1) - i_min + 1, exclusive=True)
        rows, cols = tf.range(self.height)[:, None], tf.range(self.width)[None, :]
        d = rows + cols
        # pos[i * W + j]: the slot of pixel (i, j) in diagonal order; order[slot]: its pixel in raster order.
        self.pos = tf.reshape(tf.gather(offsets, d) + rows - tf.gather(i_min, d), [-1])
        self.order = tf.math.invert_permutation(self.pos)
        self.num_loops = num_loops
        if num_loops > 1:
            base = self.batch // num_loops
            self.sizes = base + tf.cast(tf.range(num_loops) < self.batch - base * num_loops, tf.int32)

    def diagonal(self, d):
        """(n, up) of diagonal d: its length, and the index of the upper neighbour of its first pixel in
        diagonal d - 1 padded by one row at each end (its left neighbour is the next row)."""
        i_lo = tf.maximum(0, d - self.width + 1)
        return tf.minimum(d, self.height - 1) - i_lo + 1, i_lo - tf.maximum(0, d - self.width)

    def to_diagonals(self, t):
        """[B, H, W, F] -> [H*W, B, F] in diagonal order."""
        return tf.gather(tf.reshape(tf.transpose(t, [1, 2, 0, 3]), [self.n_pix, self.batch, _width(t)]), self.order)

    def to_image(self, t):
        """[H*W, B, F] in diagonal order -> [B, H, W, F]."""
        image = tf.reshape(tf.gather(t, self.pos), [self.height, self.width, self.batch, _width(t)])
        return tf.transpose(image, [2, 0, 1, 3])

    def split(self, t):
        """The loops' parts of the batch (axis 1) of t."""
        return [t] if self.num_loops == 1 else tf.split(t, self.sizes, axis=1, num=self.num_loops)

    def join(self, parts):
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)

    def edges(self, boundary, units, dtype):
        """(h_top, c_top [B, W, U], h_left, c_left [B, H, U]; None entries: zeros) as four [length, B, U]."""
        def edge(t, length):
            if t is None:
                return tf.zeros([length, self.batch, units], dtype)
            return tf.transpose(tf.cast(tf.convert_to_tensor(t), dtype), [1, 0, 2])

        h_top, c_top, h_left, c_left = boundary
        return [edge(h_top, self.width), edge(c_top, self.width), edge(h_left, self.height), edge(c_left, self.height)]

    def boundary_parts(self, edges):
        """Per loop, None (no edges) or the four edges padded with zeros to [n_diag + 1, b, U]: indexed by
        diagonal, top[d] is the upper neighbour of pixel (0, d), left[d] the left neighbour of (d, 0)."""
        if not edges:
            return [None] * self.num_loops
        pad = lambda t: tf.pad(t, [[0, self.n_diag + 1 - tf.shape(t)[0]], [0, 0], [0, 0]])
        return list(zip(*[self.split(pad(t)) for t in edges]))


def _width(t):
    """The last dimension of t: static where known (so that results keep it), else -1."""
    return -1 if t.shape[-1] is None else t.shape[-1]


def _rows(t, off, n):
    """Rows off .. off + n - 1 of t (a view: no copy), with t's static trailing dimensions."""
    rank = t.shape.rank
    r = tf.slice(t, tf.stack([off] + [0] * (rank - 1)), tf.stack([n] + [-1] * (rank - 1)))
    r.set_shape([None] + t.shape[1:].as_list())
    return r


def _diagonal_loop(xd, boundary, step, units, diagonals, extra_widths=(), keep_cells=True):
    """The diagonals of one part of the batch, in order: one call of `step` per diagonal.

    xd: [H*W, b, D] inputs in diagonal order; boundary: None (zeros) or four [n_diag + 1, b, U] (h_top,
    c_top, h_left, c_left by diagonal, `_Diagonals.boundary_parts`); step(x [M, D], h_left, c_left, h_up,
    c_up [M, U]) -> (h, c) [M, U], or with extra_widths (h, c, extras): a tuple of [M, w] tensors, w in
    extra_widths.  Returns h, c (None unless keep_cells) [H*W, b, U] in diagonal order, and the extras as
    TensorArrays (one element [n_d, b, w] per diagonal)."""
    dtype = xd.dtype
    b = tf.shape(xd)[1]
    n_diag = diagonals.n_diag
    widths = [units] + ([units] if keep_cells else []) + list(extra_widths)
    # (clear_after_read=False: eagerly, a read would otherwise drop the element, and the backward pass reads the
    # derivatives twice at the boundary.)
    arrays = [tf.TensorArray(dtype, size=n_diag, infer_shape=False, clear_after_read=False,
                             element_shape=tf.TensorShape([None, None, w])) for w in widths]
    if boundary is not None:
        bound = tuple(tf.TensorArray(dtype, size=n_diag + 1, element_shape=tf.TensorShape([None, units])).unstack(t)
                      for t in boundary)
        # Diagonal "-1": front = upper neighbour of (0, 0), back = its left neighbour.
        h0 = tf.stack([bound[0].read(0), bound[2].read(0)])
        c0 = tf.stack([bound[1].read(0), bound[3].read(0)])
    else:
        bound = ()
        h0 = c0 = tf.zeros([2, b, units], dtype)
    pad = [[1, 1], [0, 0], [0, 0]]

    def body(d, off, h_prev, c_prev, *arrays):
        # h_prev, c_prev: diagonal d - 1 padded by one row at each end.
        n, up = diagonals.diagonal(d)
        flat = lambda t: tf.reshape(t, [-1, units])
        out = step(tf.reshape(_rows(xd, off, n), [-1, _width(xd)]), flat(_rows(h_prev, up + 1, n)),
                   flat(_rows(c_prev, up + 1, n)), flat(_rows(h_prev, up, n)), flat(_rows(c_prev, up, n)))
        h, c = (tf.reshape(t, [n, -1, units]) for t in out[:2])
        values = [h] + ([c] if keep_cells else []) + [tf.reshape(t, [n, -1, w]) for t, w in
                                                        zip(out[2] if extra_widths else (), extra_widths)]
        arrays = [a.write(d, v) for a, v in zip(arrays, values)]
        if bound:
            # Front: upper neighbour of (0, d + 1); back: left neighbour of (d + 1, 0) (zeros where none exists).
            ht, ct, hl, cl = (t.read(d + 1)[None] for t in bound)
            h_next, c_next = tf.concat([ht, h, hl], axis=0), tf.concat([ct, c, cl], axis=0)
        else:
            h_next, c_next = tf.pad(h, pad), tf.pad(c, pad)
        return (d + 1, off + n, h_next, c_next) + tuple(arrays)

    state = tf.TensorShape([None, None, units])
    out = tf.while_loop(
        lambda d, *_: d < n_diag, body, (tf.constant(0), tf.constant(0), h0, c0) + tuple(arrays),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([]), state, state) + (tf.TensorShape(None),) * len(arrays),
        maximum_iterations=n_diag)
    h = out[4].concat()
    c = out[5].concat() if keep_cells else None
    return h, c, tuple(out[5 + keep_cells:])


def _backward_loop(cell, derivatives, dh_out, dc_out, weights, diagonals, keep_dc):
    """The diagonals of one part of the batch in reverse: `cell.backward_step` per diagonal.

    derivatives: the TensorArrays k_g ... f_up of the forward loop (`SpatialLSTMCell.step`'s derivatives
    but z); dh_out, dc_out (or None): [H*W, b, U], the gradients of the outputs in diagonal order; weights:
    `cell.backward_weights(kernel)`.  The loop carries the gradients of the states of diagonal d - 1 that
    diagonal d's pixels pass back.  Returns the gradients of the pre-activations, [H*W, b, 5U] (and the
    memory's [H*W, b, U] if keep_dc, else None)."""
    dtype, units = dh_out.dtype, cell.units
    b = tf.shape(dh_out)[1]
    top, bottom = [[1, 0], [0, 0], [0, 0]], [[0, 1], [0, 0], [0, 0]]
    array = lambda: tf.TensorArray(dtype, size=diagonals.n_diag, infer_shape=False,
                                   element_shape=tf.TensorShape([None, None, units]))

    def body(d, end, carry_h, carry_c, dc_array, *da_arrays):
        n, up = diagonals.diagonal(d)
        off = end - n
        flat = lambda t: tf.reshape(t, [-1, units])
        shaped = lambda t: tf.reshape(t, [n, -1, units])
        dh = _rows(dh_out, off, n) + carry_h
        dc = carry_c if dc_out is None else carry_c + _rows(dc_out, off, n)
        da, dc, (dh_left, dh_up, dc_left, dc_up) = cell.backward_step(
            [flat(t.read(d)) for t in derivatives], flat(dh), flat(dc), weights)
        da_arrays = tuple(t.write(d, shaped(a)) for t, a in zip(da_arrays, da))
        if keep_dc:
            dc_array = dc_array.write(d, shaped(dc))
        # Diagonal d - 1 padded by one row at each end: pixel k of d has its left neighbour at k + up + 1
        # and its upper neighbour at k + up; keep the rows of d - 1's own pixels.
        n_prev = diagonals.diagonal(d - 1)[0]
        carry_h = _rows(tf.pad(shaped(dh_left), top) + tf.pad(shaped(dh_up), bottom), 1 - up, n_prev)
        carry_c = _rows(tf.pad(shaped(dc_left), top) + tf.pad(shaped(dc_up), bottom), 1 - up, n_prev)
        return (d - 1, off, carry_h, carry_c, dc_array) + da_arrays

    zero = tf.zeros([1, b, units], dtype)         # the last diagonal has one pixel
    state = tf.TensorShape([None, None, units])
    out = tf.while_loop(
        lambda d, *_: d >= 0, body,
        (diagonals.n_diag - 1, tf.shape(dh_out)[0], zero, zero, array()) + tuple(array() for _ in GATES),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([]), state, state) + (tf.TensorShape(None),) * 6,
        maximum_iterations=diagonals.n_diag)
    da = tf.concat([t.concat() for t in out[5:]], axis=-1)
    return da, (out[4].concat() if keep_dc else None)
