"""Models against the standard lossless codecs on pictures they never saw: exact code length, bit per sub-pixel.

For each model and set, on the same images: the exact code length of the
model's integer tables (`ride_tf.compressed_size_bits`, the size of the rANS
stream `ride_tf.compress` writes, without its header) and the file sizes of PNG
(level 9), WebP lossless and JPEG-XL lossless at effort 7 and 9 (imagecodecs;
each checked to decode losslessly).  All in bit per sub-pixel (bits / (H W C)),
smaller is better; means over the images of a set.

Sets (gray for the gray models, colour for the rgb models):
  held out      the corpus's held-out pictures (`examples/build_corpus.py`: three plasma photographs and
                scikit-image's camera, coffee, chelsea; gray also the three texture regions)
  README photos camera, coffee, chelsea, whole (`ride_tf.pretrained.held_out_images`)
  evaluation    the corpus's evaluation pictures: photographs of Debian packages no model trained on
  full size     the held-out plasma photographs at their full resolution, decoded from their JPEG files
                (2560 x 1600, not downscaled)
  screenshots   two synthetic screen images drawn here: a plot with text (matplotlib) and a window with
                flat panels, text and a gradient (Pillow)
  more_screenshots  three more, not used to choose the palette coder's constants: a bar chart, a scatter plot
                with a colour bar (matplotlib) and a terminal with text (Pillow)

    python benchmarks/bench_models.py --model gray=ride_tf/pretrained/gray.keras --json runs/bench_models.json
    python benchmarks/bench_models.py --model rgb=ride_tf/pretrained/rgb.keras --sets held_out evaluation
    python benchmarks/bench_models.py --model rgb=ride_tf/pretrained/rgb.keras \
        --model planes=ride_tf/pretrained/gray.keras:planes --sets held_out readme evaluation

`--palette` adds a column of the palette coder (`ride_tf.codec.palette`, no model: the payload of
`ride_tf.compress_palette`, checked to decode; "-" for images of more than 4096 colours), which `--best` may
name as "palette": what `ride-tf compress` keeps by default.

    python benchmarks/bench_models.py --model gray=ride_tf/pretrained/gray.keras --palette \
        --best best=gray+palette --sets screenshots

A model given as PATH:planes is a gray model coding colour images plane by plane after the reversible colour
transform (`ride_tf.codec.planes`, `ride-tf compress --colour planes`).  `--best NAME=A+B` adds a column with
each image's smaller code length of the models A and B: what `ride-tf compress --colour best` (and
`ride_tf.compress_best`) writes, less the header.

    python benchmarks/bench_models.py --model rgb=ride_tf/pretrained/rgb.keras \
        --model planes=ride_tf/pretrained/gray.keras:planes --best best=rgb+planes --sets held_out readme evaluation

`--kept NAME=A+B[+palette][+adapt]` adds a column with the size of the file `ride_tf.compress_best` writes with
the models A, B (their colour transforms as given), with +palette the palette coder where it may win, with
+adapt the shortest coding's priors fitted to the image as well (`ride-tf compress --adapt`): the whole file,
header included, each decoded and checked; this is what `ride-tf compress` writes (and which tries equal
channels and packed histograms where the image has them, `ride_tf.codec.structure`).

    python benchmarks/bench_models.py --model rgb=ride_tf/pretrained/rgb.keras \
        --model planes=ride_tf/pretrained/gray.keras:planes --kept compress=rgb+planes+palette --sets evaluation
"""
import argparse
import glob
import io
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import ride_tf  # noqa: E402
from ride_tf.data.files import read_image_file  # noqa: E402
from ride_tf.io import atomic_write_json  # noqa: E402

SETS = ("held_out", "readme", "evaluation", "full_size", "screenshots", "more_screenshots")
CODECS = ("PNG", "WebP", "JPEG-XL e7", "JPEG-XL e9")


def codec_bits(image):
    """{codec: bits} of a uint8 image [H, W, C], each checked to decode losslessly."""
    import imagecodecs

    plain = image[..., 0] if image.shape[-1] == 1 else image
    rgb = np.repeat(plain[..., None], 3, -1) if plain.ndim == 2 else plain
    encoders = {
        "PNG": (lambda: imagecodecs.png_encode(plain, level=9), imagecodecs.png_decode, plain),
        "WebP": (lambda: imagecodecs.webp_encode(rgb, lossless=True, level=100), imagecodecs.webp_decode, rgb),
        "JPEG-XL e7": (lambda: imagecodecs.jpegxl_encode(plain, lossless=True, effort=7), imagecodecs.jpegxl_decode,
                       plain),
        "JPEG-XL e9": (lambda: imagecodecs.jpegxl_encode(plain, lossless=True, effort=9), imagecodecs.jpegxl_decode,
                       plain),
    }
    out = {}
    for name, (encode, decode, original) in encoders.items():
        data = encode()
        if not np.array_equal(np.asarray(decode(data)).reshape(original.shape), original):
            raise AssertionError(f"{name} is not lossless on this image")
        out[name] = 8 * len(data)
    return out


def palette_bits(image):
    """The palette coder's payload in bits for a uint8 image [H, W, C], checked to decode; None for an image of
    more than 4096 colours."""
    from ride_tf.codec import palette

    if not palette.applicable(image):
        return None
    payload = palette.encode(image)
    if not np.array_equal(palette.decode(payload, *image.shape), image):
        raise AssertionError("the palette coder is not lossless on this image")
    return 8 * len(payload)


def show(value):
    return "-" if value is None else f"{value:.3f}"


def folder_images(folder, channels):
    images = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.png"))):
        pixels, _ = read_image_file(path)
        if pixels.shape[-1] == channels:
            images[os.path.basename(path)[:-4]] = pixels
    return images


def full_size_images(corpus, channels):
    """The held-out plasma photographs of the corpus at full resolution, from the files build_corpus used."""
    import json

    from PIL import Image

    manifest = json.load(open(os.path.join(corpus, "manifest.json")))
    images = {}
    for record in manifest["images"]:
        if record["split"] != "held_out" or not record["source"].startswith("plasma"):
            continue
        if channels == 3 and not record["colour"]:
            continue
        path = os.path.join(corpus, "debs", "unpacked", record["source"], record["file"])
        with Image.open(path) as picture:
            pixels = np.array(picture.convert("RGB" if channels == 3 else "L"))
        images[record["name"] + " (full)"] = pixels.reshape(pixels.shape[0], pixels.shape[1], channels)
    return images


def screenshots(channels):
    """Two synthetic screen images (uint8 [H, W, channels]): a plot with text, and a window with panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image, ImageDraw

    figure, axis = plt.subplots(figsize=(8, 5), dpi=100)
    x = np.linspace(0, 10, 400)
    for k in range(3):
        axis.plot(x, np.sin(x + k) * np.exp(-x / (4 + k)), label=f"series {k}")
    axis.set_xlabel("time [s]")
    axis.set_ylabel("response")
    axis.set_title("A plot, as on a screen")
    axis.legend()
    axis.grid(True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    plot = np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    window = Image.new("RGB", (800, 500), (236, 236, 236))
    ramp = np.linspace(60, 220, 560).astype(np.uint8)
    window.paste(Image.fromarray(np.repeat(np.stack([ramp, ramp // 2 + 60, 255 - ramp], -1)[None], 100, 0)),
                 (220, 60))
    draw = ImageDraw.Draw(window)
    draw.rectangle([0, 0, 800, 28], fill=(48, 63, 96))
    draw.text((10, 8), "ride-tf - a window with panels", fill=(255, 255, 255))
    draw.rectangle([10, 40, 200, 490], fill=(250, 250, 250), outline=(180, 180, 180))
    for k in range(18):
        draw.text((20, 50 + 24 * k), f"item {k:02d}  settings", fill=(20, 20, 20))
    draw.rectangle([210, 170, 790, 490], fill=(255, 255, 255), outline=(180, 180, 180))
    for k in range(12):
        draw.text((230, 180 + 24 * k), "The quick brown fox jumps over the lazy dog. " * 2, fill=(0, 0, 0))
    window_array = np.array(window)
    out = {"plot": plot, "window": window_array}
    if channels == 1:
        out = {name: np.array(Image.fromarray(im).convert("L")) for name, im in out.items()}
    return {name: im.reshape(im.shape[0], im.shape[1], channels) for name, im in out.items()}


def more_screenshots(channels):
    """Three more synthetic screen images (uint8 [H, W, channels]; gray: Pillow's luma): a bar chart, a scatter
    plot with a colour bar, a terminal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image, ImageDraw

    def rendered(figure):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        return np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))

    out = {}
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.bar(["alpha", "beta", "gamma", "delta", "eps"], [3, 7, 2, 5, 4], color=["C0", "C1", "C2", "C3", "C4"])
    axis.set_title("Bar chart")
    axis.set_ylabel("count")
    out["bars"] = rendered(figure)
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    y = x + 0.5 * rng.standard_normal(300)
    points = axis.scatter(x, y, c=y, cmap="viridis", s=12)
    figure.colorbar(points)
    axis.set_title("Scatter")
    out["scatter"] = rendered(figure)
    terminal = Image.new("RGB", (640, 400), (30, 30, 30))
    draw = ImageDraw.Draw(terminal)
    lines = ["$ ls -la /usr/lib", "total 1234", "drwxr-xr-x  12 root root  4096 Dec  7 03:12 apt",
             "-rw-r--r--   1 root root 88123 Nov 30 11:02 libz.so.1"] * 6
    for k, line in enumerate(lines):
        draw.text((8, 8 + 15 * k), line, fill=(200, 230, 200) if k % 4 else (120, 200, 255))
    out["terminal"] = np.array(terminal)
    if channels == 1:
        out = {name: np.array(Image.fromarray(im).convert("L")) for name, im in out.items()}
    return {name: im.reshape(im.shape[0], im.shape[1], channels) for name, im in out.items()}


def image_sets(names, corpus, channels):
    from ride_tf import pretrained

    kind = "gray" if channels == 1 else "rgb"
    sets = {}
    if "held_out" in names:
        sets["held_out"] = folder_images(os.path.join(corpus, kind, "held_out"), channels)
    if "readme" in names:
        sets["readme"] = pretrained.held_out_images(channels)
        sets["readme"] = {k: v for k, v in sets["readme"].items() if "[" not in k}
    if "evaluation" in names:
        sets["evaluation"] = folder_images(os.path.join(corpus, "eval", kind), channels)
    if "full_size" in names:
        sets["full_size"] = full_size_images(corpus, channels)
    if "screenshots" in names:
        sets["screenshots"] = screenshots(channels)
    if "more_screenshots" in names:
        sets["more_screenshots"] = more_screenshots(channels)
    return {name: images for name, images in sets.items() if images}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="a model to measure (repeat for several; all of one channel count)")
    parser.add_argument("--corpus", default="/work/corpus")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--best", action="append", default=[], metavar="NAME=A+B",
                        help="a column of each image's smaller code length of the models A and B (repeatable)")
    parser.add_argument("--palette", action="store_true", help="add the palette coder's column (name: palette)")
    parser.add_argument("--kept", action="append", default=[], metavar="NAME=A+B[+palette]",
                        help="a column of the whole file compress_best writes with the models A, B (and the palette "
                        "coder), decoded and checked (repeatable)")
    parser.add_argument("--json", help="write the per-image figures and the means here")
    args = parser.parse_args(argv)
    models, transforms = {}, {}
    for item in args.model:
        name, path = item.split("=", 1)
        if path.endswith(":planes"):               # a gray model coding colour images by planes
            path, transforms[name] = path[:-len(":planes")], "rct"
        models[name] = ride_tf.load_model(path)
    channels = {3 if name in transforms else m.num_channels for name, m in models.items()}
    if len(channels) != 1:
        raise SystemExit("--model: all models must have the same number of channels")
    channels = channels.pop()
    best = {}
    for item in args.best:
        name, _, parts = item.partition("=")
        best[name] = parts.split("+")
        known = list(models) + ["palette"] * args.palette
        if not name or len(best[name]) < 2 or any(p not in known for p in best[name]):
            raise SystemExit(f"--best {item}: expected NAME=A+B with A and B names given to --model (or palette, "
                             "with --palette)")
    kept = {}
    for item in args.kept:
        name, _, parts = item.partition("=")
        kept[name] = parts.split("+")
        if not name or not parts or any(p not in list(models) + ["palette", "adapt"] for p in kept[name]):
            raise SystemExit(f"--kept {item}: expected NAME=A+B[+palette][+adapt] with names given to --model")
    measured = list(models) + ["palette"] * args.palette + list(best) + list(kept)
    record = dict(command="python " + " ".join(sys.argv), models={k: v for k, v in
                                                                  (i.split("=", 1) for i in args.model)}, best=best, kept=kept,
                  sets={})
    for set_name, images in image_sets(args.sets, args.corpus, channels).items():
        rows = {}
        for image_name, image in images.items():
            values = image.size
            row = {codec: bits / values for codec, bits in codec_bits(image).items()}
            for model_name, model in models.items():
                start = time.perf_counter()
                row[model_name] = float(ride_tf.compressed_size_bits(
                    model, image[None], colour_transform=transforms.get(model_name))[0]) / values
                row[f"{model_name} seconds"] = time.perf_counter() - start
            if args.palette:
                bits = palette_bits(image)
                row["palette"] = None if bits is None else bits / values
            for name, parts in best.items():
                row[name] = min(row[p] for p in parts if row[p] is not None)
            for name, parts in kept.items():
                candidates = [(models[p], transforms.get(p)) for p in parts if p not in ("palette", "adapt")]
                data, index = ride_tf.compress_best(candidates, image, palette="auto" if "palette" in parts else False,
                                                    adapt="adapt" in parts)
                winner = candidates[index][0] if index < len(candidates) else None     # None: the palette coder
                if not np.array_equal(ride_tf.decompress(winner, data).reshape(image.shape), image):
                    raise AssertionError(f"{image_name}: the file of --kept {name} did not decode to the image")
                row[name] = 8 * len(data) / values
            row["shape"] = list(image.shape)
            rows[image_name] = row
            print(f"{set_name:12s} {image_name:34s} " + " ".join(f"{k} {show(row[k])}" for k in measured + list(CODECS)),
                  flush=True)
        mean = {key: None if any(r[key] is None for r in rows.values()) else float(np.mean([r[key] for r in rows.values()]))
                for key in measured + list(CODECS)}
        record["sets"][set_name] = dict(images=rows, mean=mean)
    columns = measured + list(CODECS)
    print(f"\nbit per sub-pixel, means (smaller is better)\n{'set':14s}{'images':>7s}" + "".join(f"{c:>12s}" for c in columns))
    for set_name, entry in record["sets"].items():
        print(f"{set_name:14s}{len(entry['images']):7d}" + "".join(f"{show(entry['mean'][c]):>12s}" for c in columns))
    for set_name, entry in record["sets"].items():
        for model_name in measured:
            if entry["mean"][model_name] is None:
                continue
            change = entry["mean"][model_name] / entry["mean"]["JPEG-XL e9"] - 1
            print(f"{set_name}: {model_name} {100 * change:+.1f}% against JPEG-XL effort 9")
    if args.json:
        atomic_write_json(args.json, record)


if __name__ == "__main__":
    main()
