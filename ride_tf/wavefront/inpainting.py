"""Inpainting by Metropolis within Gibbs sampling of RIDE's posterior (paper section 3.4, eq. 9).

The missing pixels x_M of an image are drawn from the model's posterior

    p(x_M | x_K) = p(x) / p(x_K)  ∝  p(x)          (x = (x_M, x_K), K the known pixels)

which, unlike the joint, cannot be sampled directly.  The paper's procedure:

1. Initialisation: `num_candidates` (5) conditional ancestral samples of the
   missing pixels (`ride_tf.sampling`: each drawn from p(x_ij | x_<ij) in
   raster order, known pixels kept); the one with the largest posterior
   density, i.e. the largest log p(x) of the whole image, is kept.
2. Sweeps: overlapping `block_size` x `block_size` (5 x 5) blocks cover the
   missing region (corners on a `stride` grid over the bounding box of each
   hole; only blocks that contain a missing pixel are kept; `block_grid`).  For
   block B (its missing pixels) a proposal x'_B is drawn by conditional
   ancestral sampling, everything else kept,

       q(x'_B | x) = prod_{ij in B} p(x'_ij | x'_<ij),

   and accepted with probability (eq. 9)

       alpha = min{1, p(x') q(x_B | x') / (p(x) q(x'_B | x))}.

   Every factor of p for a pixel in B cancels against q, and every pixel
   before the block is unchanged, so

       log alpha = min{0, sum_{ij not in B} [log p(x'_ij | x'_<ij) - log p(x_ij | x_<ij)]},

   the change of the likelihood terms of the pixels that condition on the
   block.  p is evaluated, as in the paper, by RIDE applied to the
   `window_size` x `window_size` (19 x 19) window around the block (cut out of
   the image and evaluated as an image of its own, shifted to stay inside the
   image); the proposal is drawn from the same window model, so each update
   leaves exactly the window model's conditional p_window(x_B | rest)
   invariant.  For the MCGSM image model (num_layers = 0), whose terms read r
   pixels, a margin of 2r around the block holds every term that depends on
   it, so with the 7-pixel margin the updates are exact; for RIDE the window
   cuts off longer-range LSTM context (the paper's approximation, for speed).
3. Between sweeps the image is flipped at random horizontally and/or
   vertically (`geometry.dihedral` 0, 4, 6, 2: identity, left-right,
   up-down, both), which changes which pixels come "before" a block (the
   paper found it mixes better), and flipped back afterwards.  The flip
   changes the proposal only: the target stays the posterior of the model in
   the image's own orientation.  In a flipped sweep the proposal is ancestral
   sampling of the flipped window, q_T(x'_B | x) = prod_{ij in B} p(T x')_ij,
   and eq. 9 no longer cancels:

       log alpha = min{0, [log p(x') - log p(x)] - [log q_T(x'_B | x) - log q_T(x_B | x')]},

   with p the model on the window as it lies in the image and q_T the
   model's terms of the block's pixels on the flipped window (four window
   evaluations instead of two).  Running the flipped sweep with the flipped
   image as the target instead, p(T x) for p(x), would sample a different
   distribution unless the model is invariant under the flip, which a causal
   model in general is not (on a Gaussian AR model it biases the posterior
   mean by about 0.4 posterior standard deviations).

Blocks whose windows do not reach each other's blocks are independent
updates (each reads only its window, and changes only its block), so one
sampler call proposes a whole group of them at once ([G, 19, 19] windows,
rows below and columns right of the blocks cut off: they do not condition
the block's pixels) and one model call evaluates the G windows before and
after; a sweep runs the groups one after another.

Values: the chain lives in continuous intensities in [0, 1); uint8 known
pixels enter at their bin centres (k + 0.5) / 256 and uint8 output is
`quantize` of the chain (known pixels returned exactly as given).  The
sampler clips draws outside [0, 1) to the range; the acceptance rule treats
them as drawn from the unclipped conditional, which is exact when the
conditionals put negligible mass outside [0, 1) (they do on trained models
of 8-bit data).

Randomness: one NumPy generator seeded by `seed` picks the flips, the
sampler's seeds and the acceptance draws, so a seed gives the same chain.
"""
import keras
import numpy as np
import tensorflow as tf

from ride_tf import geometry
from ride_tf.checks import check_images, check_integer, check_seed, check_verbose
from ride_tf.defaults import INPAINTING, PIXELS_PER_BATCH
from ride_tf.evaluation import traced
from ride_tf.quantization import bin_centres, quantize
from ride_tf.wavefront.sampling import sampler_graph

__all__ = ["inpaint", "block_grid", "block_windows", "block_schedule", "FLIPS", "MAX_GROUP"]

# Dihedral maps applied between sweeps: identity, left-right flip, up-down flip, both (a half turn).
FLIPS = (0, 4, 6, 2)

# Most blocks proposed by one sampler call (bounds memory; groups are split beyond it).
MAX_GROUP = 256


def _check_int(name, value, low):
    return check_integer("inpaint", name, value, low)


def _starts(lo, hi, size, stride, extent):
    """Corners c of blocks [c, c + size) on a stride grid that cover lo..hi (inclusive) inside 0..extent-1."""
    first = min(lo, extent - size)
    last = min(max(hi - size + 1, lo), extent - size)     # the last block ends at hi (or at the edge)
    return list(range(first, last, stride)) + [last]


def _components(mask):
    """Bounding boxes (top, bottom, left, right), inclusive, of the 8-connected components of True pixels."""
    height, width = mask.shape
    seen = np.zeros_like(mask)
    boxes = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        stack, rows, cols = [start], [], []
        while stack:
            i, j = stack.pop()
            rows.append(i)
            cols.append(j)
            for ni in range(max(i - 1, 0), min(i + 2, height)):
                for nj in range(max(j - 1, 0), min(j + 2, width)):
                    if mask[ni, nj] and not seen[ni, nj]:
                        seen[ni, nj] = True
                        stack.append((ni, nj))
        boxes.append((min(rows), max(rows), min(cols), max(cols)))
    return boxes


def block_grid(mask, block_size=5, stride=3):
    """Top-left corners, int [K, 2], of the blocks that cover the missing pixels.

    For each 8-connected component of the True pixels of `mask` [H, W] (one
    hole), blocks of min(block_size, H) x min(block_size, W) pixels with
    corners on a `stride` grid over the component's bounding box (the last row
    and column of corners moved so that the blocks end at the box's edge; all
    blocks inside the image).  Blocks without a missing pixel are dropped,
    and duplicates; the corners come in raster order.  With stride <=
    block_size every missing pixel is in a block.
    """
    mask = np.asarray(mask, bool)
    height, width = mask.shape
    bh, bw = min(block_size, height), min(block_size, width)
    corners = {(i, j) for top, bottom, left, right in _components(mask)
               for i in _starts(top, bottom, bh, stride, height)
               for j in _starts(left, right, bw, stride, width)
               if mask[i:i + bh, j:j + bw].any()}
    return np.array(sorted(corners), np.int64).reshape(-1, 2)


def block_windows(corners, shape, block_size=5, window_size=19):
    """Top-left corners [K, 2] of the windows of min(window_size, H) x min(window_size, W) pixels
    around the blocks: centred on the block, shifted to lie inside the image of `shape` (H, W)."""
    corners = np.asarray(corners, np.int64).reshape(-1, 2)
    out = np.empty_like(corners)
    for axis, extent in enumerate(shape[:2]):
        block, window = min(block_size, extent), min(window_size, extent)
        out[:, axis] = np.clip(corners[:, axis] - (window - block) // 2, 0, extent - window)
    return out


def block_schedule(corners, windows, shape, block_size=5, window_size=19, max_group=MAX_GROUP):
    """Groups (lists of block indices) of blocks that can be updated at once.

    Two blocks are independent when neither's window overlaps the other's
    block: each update reads only its window and writes only its block, so
    such updates commute.  Greedy colouring in the blocks' order; groups hold
    at most `max_group` blocks.
    """
    bh, bw = min(block_size, shape[0]), min(block_size, shape[1])
    wh, ww = min(window_size, shape[0]), min(window_size, shape[1])

    def overlap(a0, a_size, b0, b_size):      # [a0, a0 + a_size) meets [b0, b0 + b_size), per axis
        return (a0 < b0 + b_size) & (b0 < a0 + a_size)

    groups = []
    for k in range(len(corners)):
        bi, bj = corners[k]
        wi, wj = windows[k]
        for group in groups:
            if len(group) >= max_group:
                continue
            g_block, g_window = corners[group], windows[group]
            window_hits_block = overlap(wi, wh, g_block[:, 0], bh) & overlap(wj, ww, g_block[:, 1], bw)
            block_hits_window = overlap(g_window[:, 0], wh, bi, bh) & overlap(g_window[:, 1], ww, bj, bw)
            if not (window_hits_block | block_hits_window).any():
                group.append(k)
                break
        else:
            groups.append([k])
    return [np.array(group) for group in groups]


def _log_prob_graph(model):
    """The model's per-pixel log-likelihood map [N, H, W] as a traced function of floats in its dtype."""
    spec = [tf.TensorSpec([None, None, None, model.num_channels], model.compute_dtype)]
    return traced(model, "inpaint_log_prob", lambda images: model(images, training=False), spec)


def _check_arguments(model, image, mask, num_sweeps, seed, verbose, num_candidates, block_size, stride,
                     window_size, callback):
    """Validated (image [1, H, W, C] NumPy, mask [H, W] bool); ValueErrors name the argument."""
    channels = model.num_channels
    if isinstance(image, tf.Tensor):
        image = image.numpy()
    image = np.asarray(image)
    expected = ("[H, W], [H, W, 1] or [1, H, W, 1]" if channels == 1
                else f"[H, W, {channels}] or [1, H, W, {channels}]")
    if image.ndim == 2 and channels == 1:
        batch = image[np.newaxis, ..., np.newaxis]
    elif image.ndim == 3 and image.shape[-1] == channels:
        batch = image[np.newaxis]
    elif image.ndim == 4 and image.shape[0] == 1:
        batch = image
    elif image.ndim == 4:
        raise ValueError(f"inpaint: image must be one image, got a batch of {image.shape[0]} "
                         f"(shape {image.shape}); inpaint the images one at a time.")
    else:
        raise ValueError(f"inpaint: image must have shape {expected} for a model with {channels} "
                         f"channel(s), got shape {image.shape}.")
    batch = check_images(batch, channels, name="inpaint: image")
    height, width = batch.shape[1:3]
    if isinstance(mask, tf.Tensor):
        mask = mask.numpy()
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"inpaint: mask must be boolean (True where pixels are missing), got dtype {mask.dtype}.")
    if mask.shape != (height, width):
        raise ValueError(f"inpaint: mask must have the image's height and width ({height}, {width}), "
                         f"got shape {mask.shape}.")
    if not mask.any():
        raise ValueError("inpaint: mask has no missing pixel (no True entry): there is nothing to inpaint.")
    _check_int("num_sweeps", num_sweeps, 0)
    _check_int("num_candidates", num_candidates, 1)
    _check_int("block_size", block_size, 1)
    _check_int("window_size", window_size, block_size)
    if _check_int("stride", stride, 1) > block_size:
        raise ValueError(f"inpaint: stride must be at most block_size={block_size} (or blocks leave gaps), "
                         f"got {stride}.")
    check_seed("inpaint", seed)
    check_verbose("inpaint", verbose)
    if callback is not None and not callable(callback):
        raise ValueError(f"inpaint: callback must be callable or None, got {callback!r}.")
    return batch, mask, image.shape


class _Chain:
    """The Metropolis-within-Gibbs chain of one image (float canvas [H, W, C] in the model's dtype)."""

    def __init__(self, model, canvas, mask, rng, block_size, stride, window_size):
        self.model, self.canvas, self.mask, self.rng = model, canvas, mask, rng
        self.block_size, self.stride, self.window_size = block_size, stride, window_size
        self.sampler = sampler_graph(model)
        self.log_prob = _log_prob_graph(model)
        self.plans = {}
        self.accepted = self.proposed = 0

    def _draw(self, known, draw):
        """Conditional ancestral samples: known [N, h, w, C], draw [N, h, w] bool -> [N, h, w, C]."""
        seed = np.int64(self.rng.integers(0, 2 ** 62))
        return self.sampler(np.ascontiguousarray(known), np.ascontiguousarray(draw), seed, np.int32(0)).numpy()

    def initialise(self, num_candidates):
        """Keep the best of `num_candidates` conditional ancestral samples (largest log p(x))."""
        rows = np.nonzero(self.mask.any(axis=1))[0]
        bottom = rows.max() + 1                  # rows below the last missing one do not condition it
        known = np.repeat(self.canvas[np.newaxis, :bottom], num_candidates, axis=0)
        draw = np.broadcast_to(self.mask[:bottom], known.shape[:3])
        candidates = np.repeat(self.canvas[np.newaxis], num_candidates, axis=0)
        candidates[:, :bottom] = self._draw(known, draw)
        if candidates.shape[1] * candidates.shape[2] > PIXELS_PER_BATCH:   # large images: the tiled evaluation
            log_p = self.model.log_prob(candidates.astype(np.float32))
        else:
            log_p = [self.log_prob(candidate[np.newaxis]).numpy().astype(np.float64).sum()
                     for candidate in candidates]
        self.canvas = candidates[int(np.argmax(log_p))]
        return log_p

    def _plan(self, flip):
        """Blocks, windows and groups of the image in orientation `flip` (computed once per orientation)."""
        if flip not in self.plans:
            mask = geometry.dihedral(self.mask[np.newaxis, ..., np.newaxis], flip)[0, ..., 0]
            shape = mask.shape
            corners = block_grid(mask, self.block_size, self.stride)
            windows = block_windows(corners, shape, self.block_size, self.window_size)
            groups = block_schedule(corners, windows, shape, self.block_size, self.window_size)
            self.plans[flip] = (np.ascontiguousarray(mask), corners, windows, groups)
        return self.plans[flip]

    def _log_ratio(self, current, proposal, draw, flip):
        """log p(x') q(x_B | x') / (p(x) q(x'_B | x)) of G windows [G, h, w, C] of the flipped image.

        p is the model on the windows in the image's own orientation, q the
        product of the flipped windows' conditionals at the drawn pixels.  For
        flip 0 they are the same maps and the ratio is the change of the terms
        of the pixels outside the block; otherwise the windows are also scored
        flipped back.
        """
        size = len(current)
        windows = [current, proposal]
        if flip:
            windows += [geometry.inverse_dihedral(current, flip), geometry.inverse_dihedral(proposal, flip)]
        maps = self.log_prob(np.ascontiguousarray(np.concatenate(windows))).numpy().astype(np.float64)
        q_change = np.where(draw, maps[size:2 * size] - maps[:size], 0.0).sum(axis=(1, 2))
        if not flip:
            p_change = (maps[size:2 * size] - maps[:size]).sum(axis=(1, 2))
        else:
            p_change = (maps[3 * size:] - maps[2 * size:3 * size]).sum(axis=(1, 2))
        return p_change - q_change

    def sweep(self, flip):
        """One sweep over every block in orientation `flip` (a `geometry.DIHEDRAL` index)."""
        mask, corners, windows, groups = self._plan(flip)
        canvas = np.ascontiguousarray(geometry.dihedral(self.canvas[np.newaxis], flip)[0])
        height, width = mask.shape
        bh, bw = min(self.block_size, height), min(self.block_size, width)
        wh, ww = min(self.window_size, height), min(self.window_size, width)
        r = self.model.radius
        for group in groups:
            block, window = corners[group], windows[group]
            offset = block - window                                    # block corner inside its window
            size = len(group)
            current = np.stack([canvas[i:i + wh, j:j + ww] for i, j in window])        # [G, wh, ww, C]
            draw = np.zeros((size, wh, ww), bool)
            for k, ((bi, bj), (oi, oj)) in enumerate(zip(block, offset)):
                draw[k, oi:oi + bh, oj:oj + bw] = mask[bi:bi + bh, bj:bj + bw]
            # Rows below the blocks and columns more than r right of them do not condition them.
            rows = int(offset[:, 0].max()) + bh
            cols = min(ww, int(offset[:, 1].max()) + bw + r)
            proposal = current.copy()
            proposal[:, :rows, :cols] = self._draw(current[:, :rows, :cols], draw[:, :rows, :cols])
            log_ratio = self._log_ratio(current, proposal, draw, flip)
            accept = np.log(self.rng.random(size)) < log_ratio
            for k in np.nonzero(accept)[0]:
                bi, bj = block[k]
                oi, oj = offset[k]
                changed = mask[bi:bi + bh, bj:bj + bw]
                canvas[bi:bi + bh, bj:bj + bw][changed] = proposal[k, oi:oi + bh, oj:oj + bw][changed]
            self.accepted += int(accept.sum())
            self.proposed += size
        self.canvas = np.ascontiguousarray(geometry.inverse_dihedral(canvas[np.newaxis], flip)[0])

    @property
    def acceptance_rate(self):
        return self.accepted / self.proposed if self.proposed else float("nan")


def inpaint(model, image, mask, num_sweeps=INPAINTING["num_sweeps"], seed=None, verbose=1, num_candidates=5,
            block_size=5, stride=3, window_size=19, callback=None):
    """Fill the missing pixels of one image with a sample of `model`'s posterior (see the module docstring).

    Args:
      model: a `ride_tf.RIDE`.
      image: one image, [H, W] (single channel), [H, W, C] or [1, H, W, C];
        uint8, or floats in [0, 1].  Values under the mask are ignored.
      mask: bool [H, W], True where pixels are missing (at least one).
      num_sweeps: Metropolis-within-Gibbs sweeps after the initialisation
        (0 returns the best of the initial candidates).
      seed: int, or None for a random chain; a seed gives the same result.
      verbose: 1 shows a progress bar over the sweeps (with the acceptance
        rate so far), 2 a line at the end, 0 nothing.
      num_candidates: ancestral samples drawn to initialise (the paper's 5).
      block_size, stride: blocks of block_size x block_size pixels (5) with
        corners on a stride grid (3: overlapping blocks).
      window_size: side of the window around a block on which p is evaluated (19).
      callback: None, or callback(sweep, state) called after each sweep with
        the sweep index (0-based) and the chain's state: the model's float
        dtype, in [0, 1), in the shape of `image` (a new array each call).

    Returns:
      (filled, acceptance_rate): `filled` has the shape of `image` and its
      dtype (uint8 input gives `quantize` of the chain's continuous values);
      the known pixels are returned exactly as given.  `acceptance_rate` is
      the fraction of accepted block proposals over all sweeps (NaN for
      num_sweeps = 0).
    """
    batch, mask, input_shape = _check_arguments(model, image, mask, num_sweeps, seed, verbose, num_candidates,
                                                block_size, stride, window_size, callback)
    model.whitening.require_adapted("inpaint")
    dtype = np.dtype(model.compute_dtype)
    known = bin_centres(batch[0]).astype(dtype) if batch.dtype == np.uint8 else batch[0].astype(dtype)
    rng = np.random.default_rng(seed)
    chain = _Chain(model, known, mask, rng, block_size, stride, window_size)
    chain.initialise(num_candidates)

    bar = keras.utils.Progbar(num_sweeps, verbose=verbose, unit_name="sweep", stateful_metrics=["acceptance"])
    for sweep in range(num_sweeps):
        chain.sweep(int(rng.choice(FLIPS)))
        bar.update(sweep + 1, values=[("acceptance", chain.acceptance_rate)])
        if callback is not None:
            callback(sweep, chain.canvas.reshape(input_shape).copy())

    filled = batch[0].copy()
    values = chain.canvas[mask]
    filled[mask] = quantize(values) if batch.dtype == np.uint8 else values.astype(batch.dtype)
    return filled.reshape(input_shape), chain.acceptance_rate
