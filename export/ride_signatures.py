"""What the example clients know about a ride-tf SavedModel: its signatures, and image files as uint8 batches.

Shared by `rest_client.py` and `grpc_client.py`; needs only NumPy and Pillow
(no TensorFlow), so the REST client runs anywhere.  The table mirrors
`ride_tf.export`; the tests compare it with the SignatureDefs of an exported
model.
"""
import numpy as np

# signature -> (inputs {name: (dtype, rank)}, outputs {name: dtype}); -1 in a shape is dynamic.
IMAGE_INPUTS = {"images": ("uint8", 4)}
SAMPLE_INPUTS = {name: ("int32", 0) for name in ("num_samples", "height", "width", "seed")}
SIGNATURES = {
    "serving_default": (IMAGE_INPUTS, {"rate": "float32", "rate_valid": "float32"}),
    "log_likelihood_rate": (IMAGE_INPUTS, {"rate": "float32", "rate_valid": "float32"}),
    "log_prob": (IMAGE_INPUTS, {"log_prob": "float64"}),
    "pixel_log_prob": (IMAGE_INPUTS, {"pixel_log_prob": "float32"}),
    "compressed_size": (IMAGE_INPUTS, {"bits": "float64"}),
    "sample": (SAMPLE_INPUTS, {"images": "uint8"}),
}


def check_signature(signature):
    if signature not in SIGNATURES:
        raise ValueError(f"unknown signature {signature!r}; choose one of {', '.join(SIGNATURES)}")
    return signature


def output_names(signature):
    return list(SIGNATURES[check_signature(signature)][1])


def load_images(paths, mode="gray"):
    """Image files (PNG, JPEG, ...) of one size -> uint8 [N, H, W, C] (C = 1 for gray, 3 for rgb)."""
    from PIL import Image

    if mode not in ("gray", "rgb"):
        raise ValueError(f"mode must be 'gray' or 'rgb', got {mode!r}")
    if not paths:
        raise ValueError("no image files given")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("L" if mode == "gray" else "RGB"))
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except OSError as error:
            raise ValueError(f"{path}: not an image file ({error})") from None
        images.append(array.reshape(array.shape[:2] + (-1,)))
    sizes = {image.shape for image in images}
    if len(sizes) > 1:
        raise ValueError("the images of one request must have one size, got "
                         + ", ".join(f"{h}x{w}" for h, w, _ in sorted(sizes)) + "; send one request per size")
    return np.stack(images)


def image_batch(images, name="images"):
    """Validated uint8 [N, H, W, C] (a [N, H, W] batch gets C = 1)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (8-bit intensities), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or 0 in images.shape:
        raise ValueError(f"{name} must be a non-empty [N, H, W, C] array, got shape {images.shape}")
    return images


def sample_inputs(num_samples, height, width, seed):
    """The `sample` signature's scalar inputs, as Python ints checked against int32."""
    values = dict(num_samples=num_samples, height=height, width=width, seed=seed)
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if not -2 ** 31 <= value < 2 ** 31:
            raise ValueError(f"{name} must fit in int32, got {value}")
    return {name: int(value) for name, value in values.items()}


def parse_size(text):
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HxW (e.g. 64x64), got {text!r}") from None
    return height, width


def write_pngs(images, directory, prefix="sample"):
    """uint8 [N, H, W, C] -> directory/prefix_000.png, ...; returns the paths."""
    import os

    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    paths = []
    for k, image in enumerate(images):
        path = os.path.join(directory, f"{prefix}_{k:03d}.png")
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        paths.append(path)
    return paths


def print_results(signature, outputs, paths=None, output_directory=None):
    """Print a client's results: one line per image (rates, log-probs, bits) or the files written."""
    if signature == "sample":
        written = write_pngs(outputs["images"], output_directory)
        print(f"wrote {len(written)} samples of {outputs['images'].shape[1]} x {outputs['images'].shape[2]} "
              f"to {output_directory}")
        return
    names = output_names(signature)
    paths = paths or [f"image {n}" for n in range(len(outputs[names[0]]))]
    width = max(len(p) for p in paths)
    if signature == "pixel_log_prob":
        for path, log_prob_map in zip(paths, outputs["pixel_log_prob"]):
            print(f"{path:{width}s}  {log_prob_map.shape[0]} x {log_prob_map.shape[1]} map, "
                  f"mean {log_prob_map.mean():.4f} nats/px")
        return
    print(f"{'image':{width}s}  " + "  ".join(f"{name:>12s}" for name in names))
    for n, path in enumerate(paths):
        print(f"{path:{width}s}  " + "  ".join(f"{float(outputs[name][n]):12.4f}" for name in names))


def add_model_arguments(parser):
    """The clients' shared options: --model, --version, --mode."""
    parser.add_argument("--model", default="ride", help="the model name in TF Serving (ride)")
    parser.add_argument("--version", type=int, help="a model version (default: the newest)")
    parser.add_argument("--mode", choices=["gray", "rgb"], default="gray", help="read images as (gray)")


def add_sample_arguments(parser):
    """The clients' shared options for the sample signature, and --timeout."""
    parser.add_argument("--num-samples", type=int, default=1, help="sample: how many images (1)")
    parser.add_argument("--size", default="64x64", help="sample: HxW (64x64)")
    parser.add_argument("--seed", type=int, default=0, help="sample: seed (0)")
    parser.add_argument("--output", default="samples", help="sample: directory for the PNG files (samples)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (60)")
