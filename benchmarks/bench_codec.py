"""The RIDE codec against the standard lossless codecs: speed and bit/px, side by side in one run.

Speed (first): the shipped gray model on the whole held-out photo camera
(512 x 512) and the rgb model on coffee (400 x 600) (`--models` names other
shipped models), one image at a time:
pixels per second of the float forward pass (`pixel_log_prob(noise=False)`),
`compressed_size_bits`, `compress` (encode, the C kernels of
`ride_tf.codec.native`), the reference encoder (NumPy and XLA, the same bytes),
`decompress` (decode, checked bit for bit) with the native, NumPy and XLA
decoders, and JPEG-XL lossless at effort 7 and 9 (encode and decode), with the
ratios to the forward pass (targets: encode 0.5 and decode 0.3); the XLA
decoder's first call (compilation included) is timed apart.  Then the palette
coder (`ride_tf.codec.palette`) on the two screenshots of bench_models.py,
gray and colour, against JPEG-XL e9 and WebP lossless.  Each figure is the median of --repeats timed
runs after an untimed one.

For each data set, on the same images:
  * RIDE: the size of the files `ride_tf.compress` writes (header included),
    the exact ideal size (`ride_tf.compressed_size_bits`), encode and
    decode pixels per second, and the wavefront sampler's pixels per second on
    the same model and image size (the speed target: decoding at least half the
    sampler's rate; every file is decoded and checked bit for bit);
  * PNG (level 9), JPEG-LS, WebP lossless (gray replicated to 3 channels, as
    WebP needs; bits counted per gray pixel; colour bits per pixel and channel), JPEG-XL lossless (effort 9),
    all through imagecodecs and checked to decode losslessly, and lzma
    (preset 9 extreme) on the raw bytes.

Data sets:
  dead leaves   images of the dead-leaves benchmark's test split, with a model
                trained on its training split (--dead-leaves-model, e.g.
                runs/dl_64/ride1_5px.keras from examples/dead_leaves.py);
  textures      the held-out scikit-image texture regions (128 x 128) of
                `ride_tf.pretrained.HELD_OUT`, with the pretrained "gray" model;
  photos        the held-out photos (camera, coffee and chelsea in gray), with
                the pretrained "gray" model;
  colour photos the held-out colour photos (coffee, chelsea), with the
                pretrained "rgb" model (bit per value: per pixel and channel).

    python benchmarks/bench_codec.py --dead-leaves-model runs/dl_64/ride1_5px.keras \\
        --json docs/bench_codec.json --figure docs/bench_codec.png
"""
import argparse
import lzma
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import ride_tf  # noqa: E402
from ride_tf import codec, data as image_data, pretrained  # noqa: E402
from ride_tf.codec import coding  # noqa: E402
from ride_tf.io import atomic_savefig, atomic_write_json  # noqa: E402
from bench_codec_runtime import timed  # noqa: E402  (the same timing in both benchmarks)

CODECS = ("PNG", "JPEG-LS", "WebP lossless", "JPEG-XL lossless", "lzma")


def reference_sizes(image):
    """{codec: bytes} for a uint8 [H, W] or [H, W, 3] image; each image codec is checked to decode losslessly."""
    import imagecodecs

    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    encoders = {
        "PNG": (lambda: imagecodecs.png_encode(image, level=9), imagecodecs.png_decode, image),
        "JPEG-LS": (lambda: imagecodecs.jpegls_encode(image, level=0), imagecodecs.jpegls_decode, image),
        "WebP lossless": (lambda: imagecodecs.webp_encode(rgb, lossless=True, level=100),
                          imagecodecs.webp_decode, rgb),
        "JPEG-XL lossless": (lambda: imagecodecs.jpegxl_encode(image, lossless=True, effort=9),
                             imagecodecs.jpegxl_decode, image),
    }
    sizes = {}
    for name, (encode, decode, original) in encoders.items():
        data = encode()
        if not np.array_equal(np.asarray(decode(data)).reshape(original.shape), original):
            raise AssertionError(f"{name} is not lossless on this image")
        sizes[name] = len(data)
    sizes["lzma"] = len(lzma.compress(image.tobytes(), preset=9 | lzma.PRESET_EXTREME))
    return sizes


def ride_figures(model, images):
    """Per image: file size, exact size, encode / decode / sampling time (after an untimed warm-up run)."""
    codec.compress(model, images[0][:8, :8])               # trace the graphs before timing
    model.sample(1, 8, 8, seed=0)
    rows = []
    for image in images:
        height, width = image.shape[:2]
        # TensorFlow (oneDNN) builds kernels for each new shape on first use, and an image of a new
        # size brings new front sizes: an untimed run first, so that no side pays for it.
        data = codec.compress(model, image)
        model.sample(1, height, width, seed=1)
        start = time.perf_counter()
        decoded = codec.decompress(model, data)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        data = codec.compress(model, image)
        encode = time.perf_counter() - start
        if not np.array_equal(decoded.reshape(image.shape), image):
            raise AssertionError("the RIDE codec did not reproduce the image")
        start = time.perf_counter()
        model.sample(1, height, width, seed=0)
        sample = time.perf_counter() - start
        exact = float(codec.compressed_size_bits(model, image[None])[0])
        rows.append(dict(pixels=height * width, bytes=len(data), exact_bits=exact, encode_s=encode,
                         decode_s=decode, sample_s=sample))
    return rows


def speed_row(model, image, repeats):
    """Pixels per second of the float forward pass, the exact size, encode, decode and JPEG-XL on one image."""
    import imagecodecs

    pixels = image.shape[0] * image.shape[1]
    batch = image[np.newaxis]
    row = {}
    row["forward"], _ = timed(lambda: model.pixel_log_prob(batch, noise=False), repeats)
    row["compressed_size_bits"], bits = timed(lambda: codec.compressed_size_bits(model, batch)[0], repeats)
    row["encode"], data = timed(lambda: codec.compress(model, image), repeats)
    coder = coding.coder_for(codec.integer_model(model))
    row["encode (reference)"], stream = timed(lambda: coding.encode(coder, image.reshape(image.shape[:2] + (-1,)),
                                                                    engine="reference"), repeats)
    if not data.endswith(stream):
        raise AssertionError("the reference encoder wrote other bytes than the native one")
    row["decode"], decoded = timed(lambda: codec.decompress(model, data, decoder="native"), repeats)
    row["decode (NumPy)"], reference = timed(lambda: codec.decompress(model, data, decoder="numpy"), repeats)
    first = {}
    row["decode (compiled)"], compiled = timed(lambda: codec.decompress(model, data, decoder="compiled"), repeats,
                                               first)
    for result in (decoded, reference, compiled):
        if not np.array_equal(result.reshape(image.shape), image):
            raise AssertionError("the RIDE codec did not reproduce the image")
    plain = image[..., 0] if image.shape[-1] == 1 else image
    for effort in (7, 9):
        row[f"JPEG-XL e{effort} encode"], jxl = timed(
            lambda: imagecodecs.jpegxl_encode(plain, lossless=True, effort=effort), repeats)
        row[f"JPEG-XL e{effort} decode"], back = timed(lambda: imagecodecs.jpegxl_decode(jxl), repeats)
        if not np.array_equal(np.asarray(back).reshape(image.shape), image):
            raise AssertionError("JPEG-XL is not lossless on this image")
        row[f"JPEG-XL e{effort} bit/px"] = 8 * len(jxl) / image.size
    speeds = {name: pixels / seconds for name, seconds in row.items() if "bit/px" not in name}
    speeds.update({name: value for name, value in row.items() if "bit/px" in name})
    speeds["RIDE file bit/px"] = 8 * len(data) / image.size
    speeds["RIDE exact bit/px"] = bits / image.size
    speeds["encode / forward"] = speeds["encode"] / speeds["forward"]
    speeds["decode / forward"] = speeds["decode"] / speeds["forward"]
    speeds["reference encode / forward"] = speeds["encode (reference)"] / speeds["forward"]
    speeds["NumPy decode / forward"] = speeds["decode (NumPy)"] / speeds["forward"]
    speeds["compiled decode / forward"] = speeds["decode (compiled)"] / speeds["forward"]
    speeds["compiled first call s"] = first["seconds"]
    return speeds


def speed_table(models, repeats):
    """{label: speed_row} for shipped models on whole photos: gray models on camera, colour ones on coffee."""
    table = {}
    for model_name in models:
        model = ride_tf.pretrained(model_name)
        name, channels = ("coffee", 3) if model.num_channels == 3 else ("camera", 1)
        image = pretrained.load_photo(name, channels, crop=False)
        label = f"{name} {image.shape[0]} x {image.shape[1]} ({model_name} model)"
        print(f"speed: {label}", flush=True)
        table[label] = speed_row(model, image, repeats)
    columns = ["forward", "compressed_size_bits", "encode", "encode (reference)", "decode", "decode (NumPy)",
               "decode (compiled)", "JPEG-XL e7 encode", "JPEG-XL e7 decode", "JPEG-XL e9 encode",
               "JPEG-XL e9 decode"]
    ratios = {"encode / forward": "enc/fwd", "decode / forward": "dec/fwd", "reference encode / forward": "ref/fwd",
              "NumPy decode / forward": "np/fwd", "compiled decode / forward": "xla/fwd"}
    print("\npixels per second, one whole photo at a time (median of the timed runs; encode, decode: the C kernels; "
          "encode (reference): NumPy and XLA; decode (NumPy); decode (compiled): XLA, after its first call, which "
          "compiles)")
    print(f"{'':38s}" + "".join(f"{c:>19s}" for c in columns) + "".join(f"{c:>9s}" for c in ratios.values())
          + f"{'XLA 1st s':>10s}")
    for label, row in table.items():
        print(f"{label:38s}" + "".join(f"{row[c]:19,.0f}" for c in columns)
              + "".join(f"{row[c]:9.2f}" for c in ratios) + f"{row['compiled first call s']:10.1f}")
    return table


def palette_speed_table(repeats):
    """Pixels per second of the palette coder (`ride_tf.codec.palette`, the C version; encode and decode, checked
    bit for bit) against JPEG-XL lossless e9 and WebP lossless on bench_models.py's two screenshots, gray and
    colour, with each one's bit per sub-pixel."""
    import imagecodecs

    from bench_models import screenshots
    from ride_tf.codec import palette

    table = {}
    for channels in (1, 3):
        for name, image in screenshots(channels).items():
            label = f"{name} {image.shape[0]} x {image.shape[1]} {'gray' if channels == 1 else 'colour'}"
            pixels, plain = image.shape[0] * image.shape[1], image[..., 0] if channels == 1 else image
            rgb = np.repeat(plain[..., None], 3, -1) if channels == 1 else plain
            row = {}
            row["palette encode"], payload = timed(lambda: palette.encode(image, "native"), repeats)
            row["palette decode"], back = timed(lambda: palette.decode(payload, *image.shape, engine="native"),
                                                repeats)
            row["JPEG-XL e9 encode"], jxl = timed(lambda: imagecodecs.jpegxl_encode(plain, lossless=True, effort=9),
                                                  repeats)
            row["JPEG-XL e9 decode"], jxl_back = timed(lambda: imagecodecs.jpegxl_decode(jxl), repeats)
            row["WebP encode"], webp = timed(lambda: imagecodecs.webp_encode(rgb, lossless=True, level=100), repeats)
            row["WebP decode"], webp_back = timed(lambda: imagecodecs.webp_decode(webp), repeats)
            for result, original in ((back, image), (jxl_back, plain), (webp_back, rgb)):
                if not np.array_equal(np.asarray(result).reshape(original.shape), original):
                    raise AssertionError(f"a codec is not lossless on {label}")
            speeds = {key: pixels / seconds for key, seconds in row.items()}
            speeds.update({"palette bit/px": 8 * len(payload) / image.size, "JPEG-XL e9 bit/px": 8 * len(jxl) / image.size,
                           "WebP bit/px": 8 * len(webp) / rgb.size * (3 if channels == 1 else 1)})
            table[label] = speeds
    columns = list(next(iter(table.values())))
    print("\nthe palette coder on screenshots: pixels per second (median of the timed runs) and bit per sub-pixel")
    print(f"{'':30s}" + "".join(f"{c:>19s}" for c in columns))
    for label, row in table.items():
        print(f"{label:30s}" + "".join(f"{row[c]:19.3f}" if "bit/px" in c else f"{row[c]:19,.0f}" for c in columns))
    return table


def data_sets(args):
    sets = {}
    if args.dead_leaves_model:
        import keras

        model = keras.saving.load_model(args.dead_leaves_model)
        sets["dead leaves"] = (model, list(image_data.dead_leaves_benchmark("test", args.dead_leaves_images)))
    else:
        print("no --dead-leaves-model: the dead-leaves set is skipped")
    gray = ride_tf.pretrained("gray")
    held_out = pretrained.held_out_images(1)
    sets["textures"] = (gray, [image[..., 0] for name, image in held_out.items() if "[" in name])
    sets["photos"] = (gray, [image[..., 0] for name, image in held_out.items() if "[" not in name])
    if "rgb" in pretrained.available():
        sets["colour photos"] = (ride_tf.pretrained("rgb"), list(pretrained.held_out_images(3).values()))
    return sets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead-leaves-model", help="a RIDE trained on the dead-leaves training split")
    parser.add_argument("--dead-leaves-images", type=int, default=4, help="test images used (256 x 256 each)")
    parser.add_argument("--json", help="write the table as JSON here")
    parser.add_argument("--figure", help="write a bar chart (PNG) here")
    parser.add_argument("--speed-only", action="store_true", help="only the speed table")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per speed figure")
    parser.add_argument("--models", nargs="+", default=["gray", "rgb"],
                        help="shipped models of the speed table (gray ones on camera, colour ones on coffee)")
    args = parser.parse_args()

    speed = speed_table(args.models, args.repeats)
    palette_speed = palette_speed_table(args.repeats)
    if args.speed_only:
        if args.json:
            atomic_write_json(args.json, dict(command=" ".join(sys.argv), speed=speed, palette=palette_speed))
        return
    table = {}
    for name, (model, images) in data_sets(args).items():
        print(f"{name}: {len(images)} images, {sum(im.size for im in images)} values", flush=True)
        values = sum(im.size for im in images)         # bit/px are per pixel and channel
        ride = ride_figures(model, images)
        references = [reference_sizes(im) for im in images]
        row = {c: 8 * sum(r[c] for r in references) / values for c in CODECS}
        row["RIDE (file)"] = 8 * sum(r["bytes"] for r in ride) / values
        row["RIDE (exact size)"] = sum(r["exact_bits"] for r in ride) / values
        pixels = sum(r["pixels"] for r in ride)
        for what in ("encode", "decode", "sample"):
            row[f"{what} px/s"] = pixels / sum(r[f"{what}_s"] for r in ride)
        row["decode / sample"] = row["decode px/s"] / row["sample px/s"]
        row["encode / decode"] = row["encode px/s"] / row["decode px/s"]
        table[name] = row

    columns = ["RIDE (file)", "RIDE (exact size)"] + list(CODECS)
    print("\nbit/px (smaller is better)")
    print(f"{'':14s}" + "".join(f"{c:>18s}" for c in columns))
    for name, row in table.items():
        print(f"{name:14s}" + "".join(f"{row[c]:18.3f}" for c in columns))
    print("\nspeed of the RIDE codec (pixels per second, one image at a time)")
    speed = ["encode px/s", "decode px/s", "sample px/s", "decode / sample", "encode / decode"]
    print(f"{'':14s}" + "".join(f"{c:>16s}" for c in speed))
    for name, row in table.items():
        print(f"{name:14s}" + "".join(f"{row[c]:16.2f}" if "/" in c and "px" not in c else f"{row[c]:16.0f}"
                                      for c in speed))
    for name, row in table.items():
        best = min(CODECS, key=lambda c: row[c])
        gain = row[best] - row["RIDE (file)"]
        print(f"{name}: RIDE {row['RIDE (file)']:.3f} bit/px against the best other, {best}, "
              f"{row[best]:.3f}: {'smaller' if gain > 0 else 'larger'} by {abs(gain):.3f} bit/px "
              f"({100 * abs(gain) / row[best]:.1f}%)")
    if args.json:
        atomic_write_json(args.json, dict(command=" ".join(sys.argv), table=table, speed=speed))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.6))
        bars = ["RIDE (file)"] + list(CODECS)
        width = 0.8 / len(bars)
        for k, codec_name in enumerate(bars):
            values = [table[s][codec_name] for s in table]
            ax.bar(np.arange(len(table)) + k * width, values, width, label=codec_name)
        ax.set_xticks(np.arange(len(table)) + 0.4 - width / 2)
        ax.set_xticklabels(list(table))
        ax.set_ylabel("bit/px (smaller is better)")
        ax.legend(fontsize=8, ncol=3)
        fig.tight_layout()
        atomic_savefig(fig, args.figure, dpi=110)


if __name__ == "__main__":
    main()
