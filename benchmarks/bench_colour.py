"""How should colour be coded?  Exact code lengths of held-out colour photos, in bit per sub-pixel.

Every figure is bits / (H * W * 3) of the same uint8 RGB image (smaller is better):

  rgb joint      the shipped colour model, ``ride_tf.pretrained("rgb")``, coding R, G, B jointly
                 (``ride_tf.compressed_size_bits``: each pixel's channels one after the other, each
                 conditioned on the earlier ones and on all earlier pixels);
  gray <T>       the shipped gray model, ``ride_tf.pretrained("gray")``, coding the three 8-bit planes
                 of a reversible colour transform T *separately* (no plane sees another), summed:
                   RGB        R, G, B as they are;
                   RCT        G, (R - G + 128) mod 256, (B - G + 128) mod 256 (JPEG-LS style);
                   RCT-avg    G, (R - G + 128) mod 256, (B - (R + G) >> 1 + 128) mod 256;
                   J2K-RCT    the JPEG 2000 RCT, modular: Y = G + (dR + dB) >> 2 with the RCT's
                              wrapped differences dR, dB in [-128, 127];
                   YCoCg-R    the lifting steps of YCoCg-R (JPEG XL / JPEG 2000 style) in
                              arithmetic mod 256.  YCoCg-R itself has 9-bit chroma (Co, Cg in
                              [-255, 255], 511 levels), which a model of 256 levels cannot code;
                              each lifting step x += f(other) stays invertible mod 256, so the
                              modular version is an exact bijection of the RGB cube that equals
                              YCoCg-R wherever nothing wraps (the "wrapped" fractions printed).
                 Every transform is tested to be exactly invertible on all 2^24 colours (and on
                 each image) before it is used;
  JXL e9 / e7    JPEG XL lossless, effort 9 and 7; PNG (level 9); WebP lossless (level 100),
                 through imagecodecs, each checked to decode back to the same pixels.

For reference: "luma" is the gray model's code length of the gray image alone (skimage's rgb2gray,
as `ride_tf.pretrained.load_photo(name, 1)` makes it) in bit per (gray) pixel, and "rgb R, G|R,
B|RG" splits the rgb model's code into its three channel conditionals (bit per pixel of that
channel; the first two from the model's channel-prefix masses, which sum to the joint code).

Images: the held-out colour photos of the shipped models (`ride_tf.pretrained.held_out_images(3)`:
coffee, chelsea, whole), their 256 x 256 centre crops, and the RGB PNGs of --folder if given.

    nice -n 10 .venv/bin/python benchmarks/bench_colour.py --json runs/bench_colour.json
    nice -n 10 .venv/bin/python benchmarks/bench_colour.py --folder /work/corpus/eval/rgb
"""
import argparse
import glob
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import ride_tf  # noqa: E402
from ride_tf import discrete, geometry, pretrained  # noqa: E402
from ride_tf.io import atomic_write_json  # noqa: E402

CROP = 256


# ------------------------------------------------------ reversible transforms
# Each maps int arrays [..., 3] (R, G, B or the three planes) to int arrays [..., 3] with values in
# [0, 255]; chroma planes carry a signed difference d in [-128, 127] as d + 128.

def _wrap(d):
    """The representative of d mod 256 in [-128, 127]."""
    return (d + 128) % 256 - 128


def _stack(*planes):
    return np.stack(planes, axis=-1)


def _split(image):
    image = image.astype(np.int32)
    return image[..., 0], image[..., 1], image[..., 2]


def rgb_forward(image):
    return image.astype(np.int32)


def rct_forward(image):
    r, g, b = _split(image)
    return _stack(g, _wrap(r - g) + 128, _wrap(b - g) + 128)


def rct_inverse(planes):
    g, dr, db = _split(planes)
    return _stack((g + dr - 128) % 256, g, (g + db - 128) % 256)


def rct_avg_forward(image):
    r, g, b = _split(image)
    return _stack(g, _wrap(r - g) + 128, _wrap(b - ((r + g) >> 1)) + 128)


def rct_avg_inverse(planes):
    g, dr, db = _split(planes)
    r = (g + dr - 128) % 256
    return _stack(r, g, (db - 128 + ((r + g) >> 1)) % 256)


def j2k_rct_forward(image):
    r, g, b = _split(image)
    dr, db = _wrap(r - g), _wrap(b - g)
    return _stack((g + ((dr + db) >> 2)) % 256, dr + 128, db + 128)


def j2k_rct_inverse(planes):
    y, dr, db = _split(planes)
    dr, db = dr - 128, db - 128
    g = (y - ((dr + db) >> 2)) % 256
    return _stack((g + dr) % 256, g, (g + db) % 256)


def j2k_rct_exact(image):
    """The JPEG 2000 RCT without wrapping (chroma in [-255, 255], + 128)."""
    r, g, b = _split(image)
    return _stack((r + 2 * g + b) >> 2, r - g + 128, b - g + 128)


def ycocg_r_forward(image):
    r, g, b = _split(image)
    co = _wrap(r - b)
    t = (b + (co >> 1)) % 256
    cg = _wrap(g - t)
    return _stack((t + (cg >> 1)) % 256, co + 128, cg + 128)


def ycocg_r_inverse(planes):
    y, co, cg = _split(planes)
    co, cg = co - 128, cg - 128
    t = (y - (cg >> 1)) % 256
    b = (t - (co >> 1)) % 256
    return _stack((b + co) % 256, (cg + t) % 256, b)


def ycocg_r_exact(image):
    """YCoCg-R as specified (Co, Cg in [-255, 255], + 128)."""
    r, g, b = _split(image)
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    return _stack(t + (cg >> 1), co + 128, cg + 128)


def rct_exact(image):
    r, g, b = _split(image)
    return _stack(g, r - g + 128, b - g + 128)


# name: (forward, inverse, unwrapped integer transform or None, plane names)
TRANSFORMS = {
    "RGB": (rgb_forward, rgb_forward, None, ("R", "G", "B")),
    "RCT": (rct_forward, rct_inverse, rct_exact, ("G", "R-G", "B-G")),
    "RCT-avg": (rct_avg_forward, rct_avg_inverse, None, ("G", "R-G", "B-(R+G)/2")),
    "J2K-RCT": (j2k_rct_forward, j2k_rct_inverse, j2k_rct_exact, ("Y", "R-G", "B-G")),
    "YCoCg-R": (ycocg_r_forward, ycocg_r_inverse, ycocg_r_exact, ("Y", "Co", "Cg")),
}


def check_invertible(name, forward, inverse, chunk=16):
    """AssertionError unless inverse(forward(x)) == x for every 8-bit colour x, with 8-bit planes.

    A left inverse on the whole (finite) cube makes `forward` injective, hence a bijection of it."""
    low = np.arange(256 * 256)
    for r0 in range(0, 256, chunk):
        r = np.repeat(np.arange(r0, r0 + chunk), low.size)
        colours = np.stack([r, np.tile(low // 256, chunk), np.tile(low % 256, chunk)], axis=-1)
        planes = forward(colours)
        if planes.min() < 0 or planes.max() > 255:
            raise AssertionError(f"{name}: a plane leaves [0, 255]")
        if not np.array_equal(inverse(planes), colours):
            raise AssertionError(f"{name}: not invertible (red {r0}..{r0 + chunk - 1})")


def transform_planes(name, image):
    """The uint8 planes [3, H, W, 1] of transform `name` of an RGB image, checked to invert back."""
    forward, inverse, _, _ = TRANSFORMS[name]
    planes = forward(image)
    if not np.array_equal(inverse(planes), image):
        raise AssertionError(f"{name} does not invert on this image")
    return np.moveaxis(planes.astype(np.uint8), -1, 0)[..., None]


def wrapped_fraction(name, image):
    """Fraction of pixels where the modular transform differs from the unwrapped one (None: not defined)."""
    forward, _, exact, _ = TRANSFORMS[name]
    if exact is None:
        return None
    return float(np.any(forward(image) != exact(image), axis=-1).mean())


# ------------------------------------------------------------------ images
def luma(image):
    """The gray image of an RGB image, uint8 [H, W, 1], as `pretrained.load_photo(name, 1)` converts."""
    import skimage.color
    import skimage.util

    return skimage.util.img_as_ubyte(skimage.color.rgb2gray(image))[..., None]


def centre_crop(image, side=CROP):
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[top:top + side, left:left + side]


def read_folder(folder):
    """{name: uint8 [H, W, 3]} of the 8-bit RGB(A) PNGs in `folder` (alpha dropped; others skipped)."""
    import imagecodecs

    images = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.png"))):
        image = np.asarray(imagecodecs.png_decode(open(path, "rb").read()))
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
            print(f"skipped {path}: {image.dtype} {image.shape} is not 8-bit RGB")
            continue
        images[os.path.splitext(os.path.basename(path))[0]] = np.ascontiguousarray(image[..., :3])
    return images


def benchmark_images(folder):
    """[(group, name, uint8 [H, W, 3])]: the whole held-out photos, their centre crops, the folder's PNGs."""
    held_out = pretrained.held_out_images(3)
    images = [("photo", name, image) for name, image in held_out.items()]
    images += [("crop", f"{name}[{CROP}]", centre_crop(image)) for name, image in held_out.items()]
    if folder:
        images += [("folder", name, image) for name, image in read_folder(folder).items()]
    return images


# ------------------------------------------------------------- code lengths
def _prefix_log_mass_head(model, channels):
    """As `discrete.log_mass_head`, but the log-mass of the first `channels` channels only (nats, [N, H, W])."""
    num_inputs = geometry.num_inputs(model.nb_size, model.num_channels)

    def head(h, u, y_hat, y):
        shape = tf.shape(y_hat)
        x_hat = tf.reshape(u[..., :num_inputs], [-1, num_inputs])
        values = tf.cast(tf.floor(tf.reshape(tf.cast(y, tf.float64), [-1, model.num_channels])
                                  * discrete.NUM_BINS), tf.int32)
        mixture = discrete.intensity_mixture(model, tf.reshape(h, [-1, h.shape[-1]]), x_hat)
        return tf.reshape(discrete.log_mass(mixture, values[:, :channels]), shape[:3])
    return head


def _pixel_map(model, images, name, head):
    """head's map [N, H, W] over prepared images: `ride_tf.evaluation.pixel_map` (after the package's
    refactor) or `RIDE.pixel_map` (before it)."""
    try:
        from ride_tf.evaluation import pixel_map
    except ImportError:
        return model.pixel_map(images, name, head)
    return pixel_map(model, images, name, head)


def rgb_channel_bits(model, image, joint_bits):
    """Bits of each channel's conditional under the colour model: [R, G | R, B | R, G]."""
    centres = discrete.bin_centres(image[None]).numpy()
    prefix = [-_pixel_map(model, centres, f"prefix_log_mass_{c}", _prefix_log_mass_head(model, c))
              .sum() / np.log(2) for c in range(1, model.num_channels)] + [joint_bits]
    if not np.all(np.diff(prefix) > 0):
        raise AssertionError(f"channel-prefix code lengths not increasing: {prefix}")
    return np.diff([0.0] + prefix).tolist()


class GrayCoder:
    """Gray-model code lengths of uint8 planes [H, W, 1], each plane computed once (G recurs)."""

    def __init__(self, model):
        self.model, self.cache = model, {}

    def bits(self, planes):
        """Bits of each plane of [n, H, W, 1], a list of n floats."""
        keys = [p.tobytes() for p in planes]
        todo = [k for k in range(len(planes)) if keys[k] not in self.cache]
        if todo:
            sizes = ride_tf.compressed_size_bits(self.model, planes[todo])
            self.cache.update({keys[k]: float(s) for k, s in zip(todo, sizes)})
        return [self.cache[k] for k in keys]


def reference_bits(image):
    """{codec: bits} of an RGB image under the standard lossless codecs, each checked to decode losslessly."""
    import imagecodecs

    encoders = {
        "JXL e9": (lambda: imagecodecs.jpegxl_encode(image, lossless=True, effort=9), imagecodecs.jpegxl_decode),
        "JXL e7": (lambda: imagecodecs.jpegxl_encode(image, lossless=True, effort=7), imagecodecs.jpegxl_decode),
        "PNG 9": (lambda: imagecodecs.png_encode(image, level=9), imagecodecs.png_decode),
        "WebP ll": (lambda: imagecodecs.webp_encode(image, lossless=True, level=100), imagecodecs.webp_decode),
    }
    bits = {}
    for name, (encode, decode) in encoders.items():
        data = encode()
        if not np.array_equal(np.asarray(decode(data)).reshape(image.shape), image):
            raise AssertionError(f"{name} is not lossless on this image")
        bits[name] = 8.0 * len(data)
    return bits


def measure(image, rgb_model, gray):
    """One image's record: bit per sub-pixel of every method, plus per-plane / per-channel detail."""
    subpixels, pixels = image.size, image.size // 3
    start = time.perf_counter()
    joint = float(ride_tf.compressed_size_bits(rgb_model, image[None])[0])
    methods = {"rgb joint": joint}
    planes = {}
    for name in TRANSFORMS:
        bits = gray.bits(transform_planes(name, image))
        planes[name] = dict(zip(TRANSFORMS[name][3], [b / pixels for b in bits]))
        methods[f"gray {name}"] = sum(bits)
    methods.update(reference_bits(image))
    return dict(
        shape=list(image.shape),
        bpsp={k: v / subpixels for k, v in methods.items()},
        luma_bpp=gray.bits(luma(image)[None])[0] / pixels,
        rgb_channels_bpp=dict(zip(("R", "G|R", "B|RG"),
                                  [b / pixels for b in rgb_channel_bits(rgb_model, image, joint)])),
        planes_bpp=planes,
        wrapped=({name: f for name in TRANSFORMS if (f := wrapped_fraction(name, image)) is not None}),
        seconds=time.perf_counter() - start)


# ------------------------------------------------------------------- output
def _row(label, values, width=10):
    return f"{label:18s}" + "".join(f"{v:>{width}.3f}" if isinstance(v, float) else f"{v:>{width}s}"
                                    for v in values)


def mean_records(records):
    """Means over images of every figure of `records` (dicts of floats, nested one level)."""
    def mean(key, sub=None):
        return float(np.mean([r[key] if sub is None else r[key][sub] for r in records]))
    out = {key: {sub: mean(key, sub) for sub in records[0][key]} for key in ("bpsp", "rgb_channels_bpp")}
    out["luma_bpp"] = mean("luma_bpp")
    out["planes_bpp"] = {t: {p: float(np.mean([r["planes_bpp"][t][p] for r in records]))
                             for p in records[0]["planes_bpp"][t]} for t in TRANSFORMS}
    return out


def print_tables(results, means):
    methods = list(next(iter(results.values()))["bpsp"])
    print("\nbit per sub-pixel, bits / (H W 3) (smaller is better); luma: bit/px of the gray image")
    print(_row("image", [m.replace("gray ", "g ") for m in methods] + ["luma"]))
    for name, r in results.items():
        print(_row(name, [r["bpsp"][m] for m in methods] + [r["luma_bpp"]]))
    for group, m in means.items():
        print(_row(f"mean {group}", [m["bpsp"][k] for k in methods] + [m["luma_bpp"]]))

    print("\nbit/px of each plane (gray model, planes coded separately) and of each channel conditional "
          "(rgb model), means over all images")
    m = means["all"]
    for name, per_plane in m["planes_bpp"].items():
        print(f"  gray {name:8s} " + "  ".join(f"{p} {v:.3f}" for p, v in per_plane.items()))
    print("  rgb joint     " + "  ".join(f"{p} {v:.3f}" for p, v in m["rgb_channels_bpp"].items()))
    print("\nfraction of pixels where a modular transform differs from its unwrapped (9-bit chroma) form")
    for name, r in results.items():
        print(f"  {name:18s} " + "  ".join(f"{t} {f:.4f}" for t, f in r["wrapped"].items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="also measure the RGB PNGs in this folder (e.g. /work/corpus/eval/rgb)")
    parser.add_argument("--json", default="runs/bench_colour.json", help="write the results here (JSON)")
    args = parser.parse_args()

    for name, (forward, inverse, _, _) in TRANSFORMS.items():
        check_invertible(name, forward, inverse)
    print("all transforms are exact bijections of the 8-bit RGB cube:", ", ".join(TRANSFORMS))

    rgb_model, gray = ride_tf.pretrained("rgb"), GrayCoder(ride_tf.pretrained("gray"))
    results, groups = {}, {}
    for group, name, image in benchmark_images(args.folder):
        results[name] = measure(image, rgb_model, gray)
        groups.setdefault(group, []).append(results[name])
        print(f"{name} {image.shape}: {results[name]['seconds']:.0f} s", flush=True)
    means = {group: mean_records(records) for group, records in groups.items()}
    means["all"] = mean_records(list(results.values()))
    print_tables(results, means)

    atomic_write_json(args.json, dict(
        command=" ".join(sys.argv), units="bit per sub-pixel (bits / (H W 3)); luma_bpp, *_bpp: bit per pixel",
        transforms={name: list(t[3]) for name, t in TRANSFORMS.items()}, invertible=list(TRANSFORMS),
        images=results, means=means))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
