"""Dead-leaves images (paper, Section 3.3): the benchmark of the paper's Table 3.

and inspected without the model stack.

Dead leaves (paper, Section 3.3)
--------------------------------
:func:`dead_leaves` renders dead-leaves images (Matheron; Lee, Mumford and
Huang 2001): opaque disks with power-law radii, p(r) ~ r^-3 on
[min_radius, max_radius], uniform positions and uniform intensities in [0, 1],
stacked so that the front-most disk wins.  :data:`DEAD_LEAVES_BENCHMARK` fixes
the project's benchmark (1,000 images of 256 x 256 pixels, the last 100 for
testing, as in the paper) and :func:`dead_leaves_benchmark` returns its splits.

How the images are simulated (the stopping rule)
    Disks are drawn one after the other in *front-to-back* order: disk 0 is the
    front-most leaf, each later disk lies behind all earlier ones.  A pixel shows
    the first disk that covers it, so once every pixel is covered no later disk
    can change the image and the simulation stops; the result is then an exact
    sample of the stationary dead-leaves model seen through the image window.
    Disk centres are uniform on the window enlarged by ``max_radius + 1`` pixels
    on every side, which contains the centre of every disk that can touch the
    window, so leaves at the borders are not biased.  Disks are drawn in batches
    and painted vectorised: each disk is cut into pixel-row spans, rows without
    uncovered pixels are skipped, and the front-most disk per pixel is found with
    ``np.minimum.at`` on the disk index.  As an honest safety net the number of
    drawn disks is capped (``max_disks``, by default 40 expected coverings of
    every pixel, far more than needed: for the benchmark images 15,000 to
    45,000 disks, median 25,000, are drawn (including those in the margin) of
    a cap of 101,080, measured on 100 images); pixels that are still uncovered
    then show a *background leaf*, an infinitely large leaf behind all others
    with its own uniform random intensity.  Speed: about 11 ms of CPU time per
    256 x 256 anti-aliased image (6 ms without anti-aliasing).

Anti-aliasing (``antialias=True``)
    Analytic coverage with front-to-back "over" compositing.  The fraction of
    pixel p covered by disk k is approximated by the linear ramp
    ``a_k(p) = clip(r_k + 0.5 - d_k(p), 0, 1)``, where d_k(p) is the distance
    from the pixel centre to the disk centre (exact for a straight edge crossing
    a unit pixel along an axis; a good approximation for r >= 1).  A pixel
    shows its front-most disk with ``a = 1`` (d <= r - 0.5, "opaque"), and the
    partially covering disk edges in front of it are composited over it:
    ``value = sum_k v_k a_k prod_{j<k} (1 - a_j) + v_opaque prod_k (1 - a_k)``.
    Without anti-aliasing a pixel belongs to a disk when its centre lies inside
    (d <= r), so the image is exactly piecewise constant.  Both modes use the same
    random disks for the same seed.

Noise and quantization
    ``noise_std`` adds i.i.d. Gaussian noise N(0, noise_std^2) (in units of the
    [0, 1] intensity range) to every pixel, the result is clipped to [0, 1], and
    only then quantized to 8 bits as ``round(255 * x)``.  Noise comes from its
    own random stream, so switching noise on does not change the leaves.
"""
import math

import numpy as np

from ride_tf.checks import check_integer, check_real, is_integer

__all__ = ["DEAD_LEAVES_BENCHMARK", "DEAD_LEAVES_BENCHMARK_NUM_TEST", "MAX_DISKS_PER_BATCH", "dead_leaves",
           "dead_leaves_benchmark", "power_law_cdf", "inverse_power_law_cdf", "sample_power_law_radii",
           "DeadLeavesRenderer"]


#: The project's dead-leaves benchmark: the arguments of :func:`dead_leaves`
#: (``dead_leaves(**DEAD_LEAVES_BENCHMARK)`` makes all 1,000 images).  As in
#: the paper (Section 3.3) there are 1,000 images of 256 x 256 pixels; the last
#: :data:`DEAD_LEAVES_BENCHMARK_NUM_TEST` (= 100) are the test set, the first
#: 900 the training set.  8-bit gray values, radii power-law distributed with
#: exponent -3 between 2 and 128 pixels (six octaves of leaf sizes, each of
#: which covers about the same share of the image), anti-aliased edges, and
#: Gaussian pixel noise of std 0.02 (about 5 gray levels).  The noise matters:
#: without it the flat leaves are exactly constant 8-bit values, and a model of
#: the dequantized intensities scores up to 8 bit/px on them by learning the
#: quantization (measured: MCGSM 4.86 bit/px without noise, 2.75 with it, on 30
#: 128 x 128 images), the artefact the paper reports for van Hateren's data.
#: Do not modify this dict; pass changed copies instead.
DEAD_LEAVES_BENCHMARK = {
    "num_images": 1000,
    "size": 256,
    "seed": 2015,
    "min_radius": 2.0,
    "max_radius": 128.0,
    "exponent": 3.0,
    "antialias": True,
    "noise_std": 0.02,
    "dtype": np.uint8,
}

#: Number of benchmark images (the last ones) that form the test split.
DEAD_LEAVES_BENCHMARK_NUM_TEST = 100

_BIG = np.iinfo(np.int32).max  # "no disk yet" marker in the front-disk map

# The most disks `dead_leaves` draws in one batch (each costs a few hundred bytes while it is
# painted, so this bounds the memory at a few GB); a max_radius far larger than the image needs
# more, since every disk whose centre lies within max_radius of the image may cover it.
MAX_DISKS_PER_BATCH = 4_000_000


def _check_radii(min_radius, max_radius, exponent):
    min_radius = check_real("radii", "min_radius", min_radius)
    max_radius = check_real("radii", "max_radius", max_radius)
    exponent = check_real("radii", "exponent", exponent)
    if not (math.isfinite(min_radius) and math.isfinite(max_radius)) or not 0 < min_radius <= max_radius:
        raise ValueError(
            f"need 0 < min_radius <= max_radius (finite), got min_radius={min_radius}, max_radius={max_radius}")
    if not math.isfinite(exponent):
        raise ValueError(f"exponent must be finite, got {exponent}")
    return min_radius, max_radius, exponent


def _power_integral(a, b, k):
    """Integral of r^k over [a, b] (a, b > 0)."""
    if abs(k + 1.0) < 1e-12:
        return math.log(b / a)
    return (b ** (k + 1.0) - a ** (k + 1.0)) / (k + 1.0)


def power_law_cdf(r, min_radius, max_radius, exponent=3.0):
    """CDF of the radius distribution p(r) ~ r^-exponent on [min_radius, max_radius].

    For the default exponent 3: F(r) = (a^-2 - r^-2) / (a^-2 - b^-2) with
    a = min_radius and b = max_radius.

    Args:
        r: array-like of radii (any shape); values outside the interval give 0 or 1.
        min_radius, max_radius: the support [a, b], 0 < a <= b.
        exponent: the power-law exponent (p(r) ~ r^-exponent).

    Returns:
        float64 array of the same shape as ``r`` with values in [0, 1].
    """
    a, b, s = _check_radii(min_radius, max_radius, exponent)
    try:
        r = np.asarray(r, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"power_law_cdf: r must be numbers, got {r!r}") from None
    if np.isnan(r).any():
        raise ValueError("power_law_cdf: r contains NaN")
    r = np.clip(r, a, b)
    if a == b:
        return (r >= b).astype(np.float64)
    if abs(s - 1.0) < 1e-12:
        return np.log(r / a) / math.log(b / a)
    e = 1.0 - s
    return (r ** e - a ** e) / (b ** e - a ** e)


def inverse_power_law_cdf(u, a, b, s):
    """Inverse of :func:`power_law_cdf` for u in [0, 1] (inverse-CDF sampling)."""
    if a == b:
        return np.full_like(u, a)
    if abs(s - 1.0) < 1e-12:
        return a * (b / a) ** u
    e = 1.0 - s
    # r^e = a^e + u (b^e - a^e); for s = 3: r = (a^-2 - u (a^-2 - b^-2))^(-1/2).
    return np.clip((a ** e + u * (b ** e - a ** e)) ** (1.0 / e), a, b)


def sample_power_law_radii(num, min_radius, max_radius, exponent=3.0, rng=None):
    """Sample radii with density p(r) ~ r^-exponent on [min_radius, max_radius].

    Uses inverse-CDF sampling (see :func:`power_law_cdf`); this is the radius
    distribution of the leaves in :func:`dead_leaves`.

    Args:
        num: number of radii.
        min_radius, max_radius: the support, 0 < min_radius <= max_radius.
        exponent: power-law exponent, 3 for the scale-invariant dead-leaves model.
        rng: a ``np.random.Generator``, or a seed for ``np.random.default_rng``.

    Returns:
        float64 array [num].
    """
    a, b, s = _check_radii(min_radius, max_radius, exponent)
    num = check_integer("sample_power_law_radii", "num", num, 0)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return inverse_power_law_cdf(rng.random(num), a, b, s)


def _parse_size(size):
    message = f"size must be an int or a (height, width) pair of ints, got {size!r}"
    if is_integer(size):
        height = width = int(size)
    elif isinstance(size, (str, bytes)) or not isinstance(size, (tuple, list, np.ndarray)):
        raise ValueError(message)          # not coerced: "16" would otherwise be read as (1, 6)
    else:
        if len(size) != 2 or not all(is_integer(v) for v in size):
            raise ValueError(message)
        height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    return height, width


def _ramp(lengths):
    """For segments of the given lengths, return (segment id, offset in segment) per element."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    seg = np.repeat(np.arange(lengths.size, dtype=np.int32), lengths)
    offset = np.arange(total, dtype=np.int32) - starts[seg].astype(np.int32)
    return seg, offset


class DeadLeavesRenderer:
    """Renders one dead-leaves image front to back (see the module docstring)."""

    # Batch sizes in units of "expected coverings of a pixel": the first batch
    # leaves about e^-2 = 14% of the pixels uncovered, each later one reduces the
    # uncovered fraction by about e^-2 more (tuned for speed; the images do not
    # depend on the batch sizes, since every batch continues the same stream).
    FIRST_BATCH = 2.0
    LATER_BATCH = 2.0
    DEFAULT_CAP = 40.0

    def __init__(self, height, width, min_radius, max_radius, exponent, antialias, max_disks):
        self.h, self.w = height, width
        self.a, self.b, self.s = min_radius, max_radius, exponent
        self.antialias = bool(antialias)
        # Centres are uniform on the window enlarged by `margin` on all sides.
        self.margin = max_radius + 1.0
        self.ext_h = height + 2.0 * self.margin
        self.ext_w = width + 2.0 * self.margin
        try:
            if max_radius > min_radius:
                norm = _power_integral(min_radius, max_radius, -exponent)
                mean_area = math.pi * _power_integral(min_radius, max_radius, 2.0 - exponent) / norm
            else:
                mean_area = math.pi * min_radius ** 2
            # Expected number of disks that cover a given pixel once on average.
            self.per_cover = self.ext_h * self.ext_w / mean_area
        except (OverflowError, ZeroDivisionError):      # radii or exponents far out of range
            self.per_cover = math.inf
        first_batch = self.FIRST_BATCH * self.per_cover
        if max_disks is not None:
            first_batch = min(first_batch, max_disks)
        if not first_batch <= MAX_DISKS_PER_BATCH:      # also inf and NaN
            # Checked before anything is allocated: e.g. max_radius=1e6 on 16 x 16 images would ask for
            # about 2e10 disks (hundreds of GB).
            raise ValueError(
                f"dead_leaves: covering {height} x {width} images with disks of radii {min_radius:g} to "
                f"max_radius={max_radius:g} (exponent {exponent:g}) takes about {first_batch:.3g} disks per batch "
                f"(more than {MAX_DISKS_PER_BATCH:,}, about {first_batch * 300 / 2 ** 30:.0f} GB): use a max_radius "
                "of at most a few times the image size (and min_radius of about a pixel or more), or a smaller "
                "max_disks")
        if max_disks is None:
            max_disks = int(math.ceil(self.DEFAULT_CAP * self.per_cover))
        self.max_disks = int(max_disks)
        if self.max_disks < 1:
            raise ValueError(f"max_disks must be >= 1, got {max_disks}")

    def _rows(self, u, t0, uncovered):
        """Cut the disks of one batch into pixel-row spans that still matter.

        Args:
            u: float64 [n, 4] uniform numbers (radius, y, x, intensity) of the batch.
            t0: disk index (depth) of the first disk of the batch.
            uncovered: bool [h, w] mask of pixels without an opaque disk yet, or
                None when nothing is covered yet.

        Returns:
            None when no row touches an uncovered pixel, else a dict of per-row
            int/float arrays: "t" (disk index), "y", "xs"/"xe" (inclusive span of
            pixels the disk paints at all), "is"/"ie" (inclusive opaque span,
            empty when ie < is), and for anti-aliasing "cx", "dy2", "r".
        """
        h, w = self.h, self.w
        r = inverse_power_law_cdf(u[:, 0], self.a, self.b, self.s)
        cy = u[:, 1] * self.ext_h - self.margin
        cx = u[:, 2] * self.ext_w - self.margin
        reach = r + 0.5 if self.antialias else r  # outermost distance that paints
        # Pixel (i, j) has its centre at (i + 0.5, j + 0.5).
        y0 = np.maximum(np.ceil(cy - 0.5 - reach), 0)
        y1 = np.minimum(np.floor(cy - 0.5 + reach), h - 1)
        x0 = np.ceil(cx - 0.5 - reach)
        x1 = np.floor(cx - 0.5 + reach)
        keep = np.flatnonzero((y1 >= y0) & (x1 >= 0) & (x0 <= w - 1))
        if keep.size == 0:
            return None
        nrows = (y1[keep] - y0[keep] + 1).astype(np.int64)
        seg, off = _ramp(nrows)
        disk = keep[seg]
        y = y0[disk] + off
        dy = y + 0.5 - cy[disk]
        dy2 = dy * dy
        cxd = cx[disk]
        half = np.sqrt(np.maximum(reach[disk] ** 2 - dy2, 0.0))
        xs = np.maximum(np.ceil(cxd - 0.5 - half), 0).astype(np.int64)
        xe = np.minimum(np.floor(cxd - 0.5 + half), w - 1).astype(np.int64)
        ok = xe >= xs
        y = y.astype(np.int64)
        if uncovered is not None:
            # Uncovered pixels per row span, from per-row cumulative sums.
            csum = np.zeros((h, w + 1), dtype=np.int32)
            np.cumsum(uncovered, axis=1, out=csum[:, 1:])
            flat = csum.ravel()
            base = y * (w + 1)
            ok &= flat[base + np.where(ok, xe, 0) + 1] > flat[base + np.where(ok, xs, 0)]
        sel = np.flatnonzero(ok)
        if sel.size == 0:
            return None
        disk, y, xs, xe, dy2, cxd = disk[sel], y[sel], xs[sel], xe[sel], dy2[sel], cxd[sel]
        rows = {"t": (t0 + disk).astype(np.int32), "y": y, "xs": xs, "xe": xe}
        if self.antialias:
            rd = r[disk]
            inner2 = np.where(rd >= 0.5, (rd - 0.5) ** 2, -1.0) - dy2
            half_in = np.sqrt(np.maximum(inner2, 0.0))
            rows["is"] = np.maximum(np.ceil(cxd - 0.5 - half_in), xs).astype(np.int64)
            rows["ie"] = np.where(inner2 >= 0, np.minimum(np.floor(cxd - 0.5 + half_in), xe), -1).astype(np.int64)
            rows.update(cx=cxd, dy2=dy2, r=rd)
        else:
            rows["is"], rows["ie"] = xs, xe
        return rows

    def render(self, rng):
        """Return a float64 image [h, w] with values in [0, 1]."""
        h, w = self.h, self.w
        front = np.full(h * w, _BIG, dtype=np.int32)  # index of the front-most opaque disk
        uniforms = []
        edges = []  # (pixel, disk index, coverage) of anti-aliased edges in front
        drawn = 0
        uncovered = None
        remaining = h * w
        batch = self.FIRST_BATCH
        while remaining > 0 and drawn < self.max_disks:
            n = int(min(max(math.ceil(batch * self.per_cover), 16), self.max_disks - drawn))
            batch = self.LATER_BATCH
            u = rng.random((n, 4))
            uniforms.append(u)
            rows = self._rows(u, drawn, uncovered)
            drawn += n
            if rows is not None:
                # Opaque spans: the front-most disk per pixel is the smallest index.
                length = np.maximum(rows["ie"] - rows["is"] + 1, 0)
                seg, off = _ramp(length)
                start = (rows["y"] * w + rows["is"]).astype(np.int32)
                np.minimum.at(front, start[seg] + off, rows["t"][seg])
                if self.antialias:
                    self._collect_edges(rows, front, edges)
            uncovered_flat = front == _BIG
            remaining = int(uncovered_flat.sum())
            uncovered = uncovered_flat.reshape(h, w)

        values = np.concatenate([u[:, 3] for u in uniforms] + [rng.random(1)])
        # Pixels that are still uncovered show the background leaf (index `drawn`).
        front = np.where(front == _BIG, drawn, front)
        image = values[front]
        if edges:
            image = self._composite(image, values, edges)
        self.drawn = drawn
        self.uncovered = remaining
        return np.clip(image, 0.0, 1.0).reshape(h, w)

    def _collect_edges(self, rows, front, edges):
        """Append the partially covered pixels of a batch that lie in front of their opaque disk."""
        w = self.w
        xs, xe, xi, xj = rows["xs"], rows["xe"], rows["is"], rows["ie"]
        has_inner = xj >= xi
        # Each row paints [xs, xe]; its edge pixels are the parts left and right
        # of the opaque span [is, ie] (the whole span when that is empty).
        left_end = np.where(has_inner, xi - 1, xe)
        right_start = np.where(has_inner, xj + 1, xe + 1)
        starts = np.stack([xs, right_start], axis=1).ravel()
        lengths = np.maximum(np.stack([left_end - xs + 1, xe - right_start + 1], axis=1).ravel(), 0)
        row = np.repeat(np.arange(xs.size), 2)
        seg, off = _ramp(lengths)
        row = row[seg]
        x = starts[seg] + off
        pix = (rows["y"][row] * w + x).astype(np.int32)
        t = rows["t"][row]
        # Edges matter only in front of the pixel's front-most opaque disk; disks
        # of later batches lie behind everything drawn so far.
        front_ok = t < front[pix]
        pix, t, row, x = pix[front_ok], t[front_ok], row[front_ok], x[front_ok]
        dx = x + 0.5 - rows["cx"][row]
        cov = rows["r"][row] + 0.5 - np.sqrt(dx * dx + rows["dy2"][row])
        good = cov > 0
        edges.append((pix[good], t[good], np.minimum(cov[good], 1.0)))

    def _composite(self, image, values, edges):
        """Front-to-back "over" compositing of the edge coverages onto the opaque image."""
        size = self.h * self.w
        pix = np.concatenate([e[0] for e in edges])
        t = np.concatenate([e[1] for e in edges])
        cov = np.concatenate([e[2] for e in edges])
        # Edges were collected in increasing disk index; a stable sort by pixel
        # keeps that front-to-back order within each pixel.
        order = np.argsort(pix, kind="stable")
        pix, t, cov = pix[order], t[order], cov[order]
        log_t = np.log1p(-np.minimum(cov, 1.0 - 1e-12))  # log(1 - a_k)
        csum = np.cumsum(log_t)
        first = np.ones(pix.size, dtype=bool)
        first[1:] = pix[1:] != pix[:-1]
        group_start = np.maximum.accumulate(np.where(first, np.arange(pix.size), 0))
        before = csum - log_t - (csum[group_start] - log_t[group_start])  # log prod_{j<k} (1 - a_j)
        contrib = values[t] * cov * np.exp(before)
        transmit = np.exp(np.bincount(pix, weights=log_t, minlength=size))
        return image * transmit + np.bincount(pix, weights=contrib, minlength=size)


def dead_leaves(num_images, size=256, seed=0, min_radius=2.0, max_radius=128.0, antialias=True,
                noise_std=0.0, dtype=np.uint8, exponent=3.0, first_index=0, max_disks=None):
    """Generate dead-leaves images (occluding disks with power-law radii).

    See the module docstring for the model, the stopping rule, the
    anti-aliasing and the quantization.  Image k is generated from its own
    random stream ``np.random.SeedSequence(seed, spawn_key=(first_index + k,))``
    (the k-th child of ``SeedSequence(seed).spawn``), so it depends only on
    ``seed`` and its index, not on ``num_images``: ``dead_leaves(1, seed=s,
    first_index=k)[0]`` equals ``dead_leaves(k + 1, seed=s)[k]``.

    Args:
        num_images: number of images N (>= 0).
        size: int, or (height, width), in pixels.
        seed: non-negative int seed.
        min_radius, max_radius: support of the radius distribution in pixels,
            0 < min_radius <= max_radius.
        antialias: True for analytically anti-aliased edges, False for hard,
            exactly piecewise-constant disks.
        noise_std: standard deviation of additive Gaussian pixel noise in units
            of the [0, 1] intensity range, applied before clipping/quantization.
        dtype: ``np.uint8`` (default; 8-bit values round(255 x)), or a float
            dtype (``np.float32``/``np.float64``) for unquantized values in [0, 1].
        exponent: radius density p(r) ~ r^-exponent (3 = Lee, Mumford and Huang).
        first_index: index of the first image in the seed's image sequence.
        max_disks: cap on the number of disks drawn per image (None: about 40
            expected coverings of every pixel); see the stopping rule.

    Returns:
        array [N, height, width] of ``dtype``.
    """
    height, width = _parse_size(size)
    min_radius, max_radius, exponent = _check_radii(min_radius, max_radius, exponent)
    num_images = check_integer("dead_leaves", "num_images", num_images, 0)
    first_index = check_integer("dead_leaves", "first_index", first_index, 0)
    seed = check_integer("dead_leaves", "seed", seed, 0)
    if max_disks is not None:
        max_disks = check_integer("dead_leaves", "max_disks", max_disks, 1)
    if not isinstance(antialias, (bool, np.bool_)):
        raise ValueError(f"dead_leaves: antialias must be True or False, got {antialias!r}")
    noise_std = check_real("dead_leaves", "noise_std", noise_std)
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be uint8 or a float dtype, got {dtype!r}") from None
    if dtype != np.uint8 and dtype.kind != "f":
        raise ValueError(f"dtype must be uint8 or a float dtype, got {dtype}")
    renderer = DeadLeavesRenderer(height, width, min_radius, max_radius, exponent, antialias, max_disks)
    out = np.empty((num_images, height, width), dtype=dtype)
    for k in range(num_images):
        leaves_seq, noise_seq = np.random.SeedSequence(seed, spawn_key=(first_index + k,)).spawn(2)
        image = renderer.render(np.random.default_rng(leaves_seq))
        if noise_std > 0:
            image = image + noise_std * np.random.default_rng(noise_seq).standard_normal(image.shape)
            np.clip(image, 0.0, 1.0, out=image)
        if dtype == np.uint8:
            out[k] = np.rint(image * 255.0).astype(np.uint8)
        else:
            out[k] = image
    return out


def dead_leaves_benchmark(split="train", num_images=None):
    """The project's dead-leaves benchmark (:data:`DEAD_LEAVES_BENCHMARK`).

    The benchmark has 1,000 images; the last 100 form the test set, the first
    900 the training set (as in the paper, Section 3.3).

    Args:
        split: "train" (images 0..899), "test" (images 900..999) or "all".
        num_images: optionally only the first k images of the split (only those
            are generated), e.g. ``dead_leaves_benchmark("test", 2)`` are images
            900 and 901 of "all".

    Returns:
        uint8 array [k, 256, 256].
    """
    config = dict(DEAD_LEAVES_BENCHMARK)
    total = int(config.pop("num_images"))
    num_test = DEAD_LEAVES_BENCHMARK_NUM_TEST
    ranges = {"train": (0, total - num_test), "test": (total - num_test, total), "all": (0, total)}
    if split not in ranges:
        raise ValueError(f"split must be one of {sorted(ranges)}, got {split!r}")
    start, stop = ranges[split]
    count = stop - start
    if num_images is not None:
        if not is_integer(num_images) or not 0 <= num_images <= count:
            raise ValueError(f"num_images must be in [0, {count}] for split {split!r}, got {num_images}")
        count = int(num_images)
    return dead_leaves(count, first_index=start, **config)
