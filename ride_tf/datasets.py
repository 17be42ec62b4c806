"""Datasets of the paper: dead-leaves images, BSDS300, van Hateren, and image files.

Only NumPy and Pillow are used here (no TensorFlow), so the data can be made
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

Real images
-----------
:func:`load_image` / :func:`load_images` read PNG, JPEG, TIFF, ... with Pillow
as uint8 arrays (grayscale = ITU-R 601-2 luma, Pillow's "L" conversion).
:func:`load_bsds300` loads a local BSDS300 folder with the paper's split
(180 train / 20 validation / 100 test).  :func:`read_iml` and
:func:`load_van_hateren` read van Hateren's raw ``.iml`` files (big-endian
uint16, 1024 x 1536) and :func:`van_hateren_to_uint8` maps them to 8 bits.
"""
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DEAD_LEAVES_BENCHMARK",
    "DEAD_LEAVES_BENCHMARK_NUM_TEST",
    "dead_leaves",
    "dead_leaves_benchmark",
    "power_law_cdf",
    "sample_power_law_radii",
    "load_image",
    "load_images",
    "load_bsds300",
    "read_iml",
    "load_van_hateren",
    "gaussian_autoregressive",
    "van_hateren_to_uint8",
    "VAN_HATEREN_SHAPE",
]

# ---------------------------------------------------------------------------
# Dead leaves
# ---------------------------------------------------------------------------

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


# Argument checks (NumPy only: this module does not import TensorFlow).  Strings, bools and
# floats are refused where an integer is expected, instead of being coerced.
def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name, value, low, owner="dead_leaves"):
    if not _is_int(value) or value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_real(name, value, owner="dead_leaves"):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    return float(value)


def _check_radii(min_radius, max_radius, exponent):
    min_radius = _check_real("min_radius", min_radius, "radii")
    max_radius = _check_real("max_radius", max_radius, "radii")
    exponent = _check_real("exponent", exponent, "radii")
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


def _inverse_power_law_cdf(u, a, b, s):
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
    num = _check_int("num", num, 0, "sample_power_law_radii")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return _inverse_power_law_cdf(rng.random(num), a, b, s)


def _parse_size(size):
    message = f"size must be an int or a (height, width) pair of ints, got {size!r}"
    if _is_int(size):
        height = width = int(size)
    elif isinstance(size, (str, bytes)) or not isinstance(size, (tuple, list, np.ndarray)):
        raise ValueError(message)          # not coerced: "16" would otherwise be read as (1, 6)
    else:
        if len(size) != 2 or not all(_is_int(v) for v in size):
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


class _DeadLeavesRenderer:
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
        r = _inverse_power_law_cdf(u[:, 0], self.a, self.b, self.s)
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
    num_images = _check_int("num_images", num_images, 0)
    first_index = _check_int("first_index", first_index, 0)
    seed = _check_int("seed", seed, 0)
    if max_disks is not None:
        max_disks = _check_int("max_disks", max_disks, 1)
    if not isinstance(antialias, (bool, np.bool_)):
        raise ValueError(f"dead_leaves: antialias must be True or False, got {antialias!r}")
    noise_std = _check_real("noise_std", noise_std)
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be uint8 or a float dtype, got {dtype!r}") from None
    if dtype != np.uint8 and dtype.kind != "f":
        raise ValueError(f"dtype must be uint8 or a float dtype, got {dtype}")
    renderer = _DeadLeavesRenderer(height, width, min_radius, max_radius, exponent, antialias, max_disks)
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
        if not _is_int(num_images) or not 0 <= num_images <= count:
            raise ValueError(f"num_images must be in [0, {count}] for split {split!r}, got {num_images}")
        count = int(num_images)
    return dead_leaves(count, first_index=start, **config)


# ---------------------------------------------------------------------------
# Image files
# ---------------------------------------------------------------------------

_MODES = ("gray", "rgb")


def _check_mode(mode):
    if mode not in _MODES:
        raise ValueError(f"mode must be 'gray' or 'rgb', got {mode!r}")


def _check_file(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    return path


def _high_bit_depth_to_uint8(image, path):
    """16-bit (or 32-bit integer holding 16-bit) gray image -> uint8 by round(v / 257)."""
    if image.mode == "F":
        raise ValueError(f"{path}: floating-point images (Pillow mode 'F') are not supported")
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{path}: integer image with values outside the 16-bit range [0, 65535] "
                         f"(Pillow mode {image.mode!r}) is not supported")
    # round(v * 255 / 65535) = round(v / 257): 0 -> 0, 65535 -> 255, 257 k -> k.
    return ((values * 2 + 257) // 514).astype(np.uint8)


def load_image(path, mode="gray"):
    """Read an image file (PNG, JPEG, TIFF, or anything else Pillow reads).

    Conversion:
      * ``mode="gray"``: color images are converted with Pillow's "L" conversion
        (ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B, rounded).
      * ``mode="rgb"``: gray images are replicated to three channels.
      * Alpha channels are dropped (not composited); palette images are expanded.
      * 16-bit gray images (16-bit PNG/TIFF; Pillow modes "I;16*" and "I") are
        scaled to 8 bits by round(v * 255 / 65535); integer images outside
        [0, 65535] and float ("F") images raise ValueError.  (Pillow itself reads
        16-bit-per-channel *color* PNGs as 8-bit RGB.)
      * For multi-frame files (e.g. TIFF stacks) the first frame is read.

    Args:
        path: path of the image file.
        mode: "gray" or "rgb".

    Returns:
        uint8 array [H, W] (gray) or [H, W, 3] (rgb).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: wrong ``mode``, path is not a file, or the file is not a
            readable image (the message names the path and the problem).
    """
    _check_mode(mode)
    path = _check_file(path)
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file Pillow can identify") from None
    except PermissionError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot open image ({error})") from error
    with image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:  # e.g. truncated or corrupt data
            raise ValueError(f"{path}: cannot decode image ({error})") from error
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            gray = _high_bit_depth_to_uint8(image, path)
            return gray if mode == "gray" else np.repeat(gray[:, :, None], 3, axis=2)
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")
        return np.array(image.convert("L" if mode == "gray" else "RGB"), dtype=np.uint8)


def load_images(paths, mode="gray"):
    """Read several image files with :func:`load_image`.

    Args:
        paths: a sequence of paths (a single str/Path is refused to avoid
            iterating over its characters).
        mode: "gray" or "rgb".

    Returns:
        list of uint8 arrays [H, W] or [H, W, 3]; sizes may differ.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("load_images expects a sequence of paths; use load_image for one path")
    _check_mode(mode)
    return [load_image(p, mode=mode) for p in paths]


# ---------------------------------------------------------------------------
# BSDS300
# ---------------------------------------------------------------------------

BSDS300_NUM_TRAIN = 200
BSDS300_NUM_TEST = 100
BSDS300_NUM_VALIDATION = 20


def _sort_ids(ids):
    return sorted(ids, key=lambda i: (0, int(i), i) if i.isdigit() else (1, 0, i))


def _bsds_ids(root, split):
    """Image ids of one split: from ``iids_<split>.txt`` if present, else the JPEG names."""
    folder = root / "images" / split
    if not folder.is_dir():
        raise ValueError(f"{root}: not a BSDS300 folder, missing directory {folder}")
    id_file = root / f"iids_{split}.txt"
    if id_file.is_file():
        ids = [line.strip() for line in id_file.read_text().splitlines() if line.strip()]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{id_file}: duplicate image ids")
        missing = [i for i in ids if not (folder / f"{i}.jpg").is_file()]
        if missing:
            raise ValueError(f"{folder}: missing {len(missing)} image(s) listed in {id_file.name}, "
                             f"e.g. {missing[0]}.jpg")
    else:
        ids = [p.stem for p in folder.glob("*.jpg")]
    return _sort_ids(ids)


def load_bsds300(root, strict=True, validation_size=BSDS300_NUM_VALIDATION, return_ids=False):
    """Load a local BSDS300 copy as grayscale images with the paper's split.

    Expected layout (that of the BSDS300 distribution, ``BSDS300-images.tgz``)::

        root/images/train/<id>.jpg   (200 images)
        root/images/test/<id>.jpg    (100 images)
        root/iids_train.txt          (optional: one id per line)
        root/iids_test.txt           (optional)

    ``root`` is the folder containing ``images/``; a folder containing a
    ``BSDS300`` subfolder with that layout is accepted too.  When an id file
    exists it defines the split's images (each must exist); otherwise all
    ``*.jpg`` files of the split folder are used.

    Protocol (Uria et al., as in the paper, Section 3.2): images are converted
    to grayscale (ITU-R 601-2 luma); the training ids, sorted in ascending
    numeric order, are split into the first 180 for training and the last
    ``validation_size`` (20) for validation; the 100 test images form the test
    set.  (Dequantization noise and scaling to [0, 1) are the model input's
    business, see ``ride_tf.preprocessing``.)

    Args:
        root: path of the BSDS300 folder.
        strict: if True, require exactly 200 training and 100 test images;
            if False, accept any counts (e.g. partial copies for tests).
        validation_size: number of training images held out for validation;
            must be smaller than the number of training images.
        return_ids: also return the ids of each split.

    Returns:
        dict {"train": [...], "validation": [...], "test": [...]} of lists of
        uint8 arrays [H, W] (BSDS300 images are 481 x 321 or 321 x 481), in id
        order; with ``return_ids`` a pair (images, ids) with ids a dict of lists
        of str.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: wrong layout, missing listed images, or wrong counts.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such directory")
    if not (root / "images").is_dir() and (root / "BSDS300" / "images").is_dir():
        root = root / "BSDS300"
    if not (root / "images").is_dir():
        raise ValueError(f"{root}: not a BSDS300 folder, expected {root / 'images'}/train and /test")
    train_ids = _bsds_ids(root, "train")
    test_ids = _bsds_ids(root, "test")
    if strict and (len(train_ids), len(test_ids)) != (BSDS300_NUM_TRAIN, BSDS300_NUM_TEST):
        raise ValueError(f"{root}: expected {BSDS300_NUM_TRAIN} training and {BSDS300_NUM_TEST} test "
                         f"images, found {len(train_ids)} and {len(test_ids)} (use strict=False for "
                         f"partial copies)")
    validation_size = int(validation_size)
    if not 0 <= validation_size < len(train_ids):
        raise ValueError(f"{root}: validation_size={validation_size} needs more than that many "
                         f"training images, found {len(train_ids)}")
    cut = len(train_ids) - validation_size
    ids = {"train": train_ids[:cut], "validation": train_ids[cut:], "test": test_ids}
    folders = {"train": "train", "validation": "train", "test": "test"}
    images = {split: [load_image(root / "images" / folders[split] / f"{i}.jpg", mode="gray") for i in split_ids]
              for split, split_ids in ids.items()}
    return (images, ids) if return_ids else images


# ---------------------------------------------------------------------------
# van Hateren
# ---------------------------------------------------------------------------

#: Shape (rows, columns) of van Hateren's images.
VAN_HATEREN_SHAPE = (1024, 1536)


def read_iml(path, shape=VAN_HATEREN_SHAPE):
    """Read one van Hateren ``.iml`` (or ``.imc``) file.

    The files are raw big-endian unsigned 16-bit integers, ``shape[0]`` rows of
    ``shape[1]`` columns in row-major order, without a header.

    Args:
        path: the file.
        shape: (rows, columns), (1024, 1536) for the real data.

    Returns:
        uint16 array [rows, columns] (native byte order).

    Raises:
        FileNotFoundError: missing file.
        ValueError: the file size is not 2 * rows * columns bytes.
    """
    path = _check_file(path)
    if isinstance(shape, (str, bytes)) or len(shape) != 2 or not all(_is_int(v) for v in shape):
        raise ValueError(f"read_iml: shape must be a pair of ints (rows, columns), got {shape!r}")
    rows, cols = (int(v) for v in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    expected = 2 * rows * cols
    actual = path.stat().st_size
    if actual != expected:
        raise ValueError(f"{path}: file has {actual} bytes, but a raw big-endian uint16 image of "
                         f"shape {rows} x {cols} has {expected}")
    data = np.fromfile(path, dtype=">u2", count=rows * cols)
    return data.astype(np.uint16).reshape(rows, cols)


def van_hateren_to_uint8(images, method="log", max_value=None):
    """Map van Hateren intensities (uint16) to 8-bit values.

    A simple, documented mapping (the paper's Supplementary Section 3
    preprocessing is not reproduced here):

      * ``method="log"``: x -> log(1 + x) / log(1 + max_value)
      * ``method="linear"``: x -> x / max_value

    followed by clipping to [0, 1] and ``round(255 * y)``.  ``max_value=None``
    uses each image's own maximum (per-image normalization); pass a number
    (e.g. 65535 or a dataset-wide maximum) for one fixed mapping for all images.

    Args:
        images: array [..., H, W] of non-negative intensities (one image or a stack).
        method: "log" or "linear".
        max_value: None or a positive number.

    Returns:
        uint8 array of the same shape.
    """
    if method not in ("log", "linear"):
        raise ValueError(f"method must be 'log' or 'linear', got {method!r}")
    try:
        x = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("van_hateren_to_uint8: images must be a numeric array") from None
    if x.ndim < 2:
        raise ValueError(f"expected an image [H, W] or a stack [..., H, W], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("van_hateren_to_uint8: intensities must be finite (got NaN or infinite values)")
    if x.size and x.min() < 0:
        raise ValueError("intensities must be non-negative")
    if max_value is None:
        top = x.max(axis=(-2, -1), keepdims=True)
    else:
        top = _check_real("max_value", max_value, "van_hateren_to_uint8")
        if not (top > 0 and math.isfinite(top)):
            raise ValueError(f"max_value must be positive, got {max_value}")
    top = np.maximum(top, 1e-12)
    y = np.log1p(x) / np.log1p(top) if method == "log" else x / top
    return np.rint(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_van_hateren(folder_or_paths, shape=VAN_HATEREN_SHAPE, pattern="*.iml", max_images=None,
                     to_uint8=None, max_value=None):
    """Load several van Hateren images.

    Args:
        folder_or_paths: a folder (its files matching ``pattern`` are read in
            sorted name order) or a sequence of file paths.
        shape: image shape, see :func:`read_iml`.
        pattern: glob pattern used for a folder.
        max_images: read at most this many files (the first ones).
        to_uint8: None to return the raw uint16 values, or "log"/"linear" to map
            them to 8 bits with :func:`van_hateren_to_uint8`.
        max_value: passed to :func:`van_hateren_to_uint8`.

    Returns:
        array [N, rows, columns], uint16 (raw) or uint8.

    Raises:
        FileNotFoundError: missing folder or file.
        ValueError: no matching files, or a file of the wrong size.
    """
    if isinstance(folder_or_paths, (str, os.PathLike)):
        folder = Path(folder_or_paths)
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: no such directory")
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a directory (pass a list to load single files)")
        paths = sorted(folder.glob(pattern))
        if not paths:
            raise ValueError(f"{folder}: no files matching {pattern!r}")
    else:
        paths = [Path(p) for p in folder_or_paths]
    if max_images is not None:
        paths = paths[: _check_int("max_images", max_images, 0, "load_van_hateren")]
    rows, cols = (int(v) for v in shape)
    stack = np.empty((len(paths), rows, cols), dtype=np.uint16)
    for k, path in enumerate(paths):
        stack[k] = read_iml(path, shape=shape)
    if to_uint8 is not None:
        return van_hateren_to_uint8(stack, method=to_uint8, max_value=max_value)
    return stack


# ---------------------------------------------------------------------------
# A Gaussian process with known conditionals (for tests and sanity checks)
# ---------------------------------------------------------------------------

def gaussian_autoregressive(num_images, size, a=0.55, b=0.35, noise_std=0.05, mean=0.5, burn_in=24, seed=0):
    """Images of the causal Gaussian AR process x_ij = a x_i,j-1 + b x_i-1,j + e_ij, e_ij ~ N(0, noise_std^2).

    Every conditional p(x_ij | x_<ij) is Gaussian and linear in the two causal
    neighbours, so the Gaussian linear predictor of a 3 px (or larger)
    neighbourhood is the exact model; |a| + |b| < 1 keeps the process
    stationary.  The process starts from zeros `burn_in` pixels above and to the
    left of the returned window, and `mean` is added.  Returns float64
    [num_images, size, size] (not clipped: the defaults keep the values well
    inside (0, 1)).
    """
    owner = "gaussian_autoregressive"
    a, b = _check_real("a", a, owner), _check_real("b", b, owner)
    noise_std, mean = _check_real("noise_std", noise_std, owner), _check_real("mean", mean, owner)
    if not (math.isfinite(noise_std) and noise_std >= 0 and math.isfinite(mean)):
        raise ValueError(f"{owner}: noise_std must be finite and >= 0 and mean finite, got {noise_std}, {mean}")
    if not abs(a) + abs(b) < 1:
        raise ValueError(f"gaussian_autoregressive: |a| + |b| must be < 1 for a stationary process, got {a}, {b}")
    num_images, size = _check_int("num_images", num_images, 0, owner), _check_int("size", size, 1, owner)
    burn_in, seed = _check_int("burn_in", burn_in, 0, owner), _check_int("seed", seed, 0, owner)
    rng = np.random.default_rng(seed)
    n = size + burn_in
    x = np.zeros((num_images, n, n))
    e = rng.normal(0.0, noise_std, (num_images, n, n))
    for i in range(n):
        for j in range(n):
            x[:, i, j] = e[:, i, j] + (a * x[:, i, j - 1] if j else 0.0) + (b * x[:, i - 1, j] if i else 0.0)
    return mean + x[:, burn_in:, burn_in:]
