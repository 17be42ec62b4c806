"""REST client for a ride-tf model served by TF Serving (HTTP port 8501).

    python export/rest_client.py leaf.png grass.png                      # serving_default: bit/px
    python export/rest_client.py leaf.png --signature log_prob --format instances
    python export/rest_client.py --signature sample --num-samples 2 --size 64x64 --seed 0 --output samples/

Needs only NumPy and Pillow.  `build_request` is the pure part: it turns uint8
images (or the sample sizes) into the JSON body of TF Serving's predict API,
POST /v1/models/MODEL[/versions/N]:predict:

  * "inputs" (columnar, the default): {"signature_name": S, "inputs": {"images": [N][H][W][C]}};
    the `sample` signature takes scalars this way: {"inputs": {"num_samples": 2, "height": 64, ...}};
  * "instances" (row format): {"signature_name": S, "instances": [image, image, ...]}, one
    [H][W][C] list per image; TF Serving stacks them into the batch.  Not for `sample`.

uint8 pixels go as plain JSON integers, so no base64 is needed.  Sizes
(measured on dead-leaves images): about 5.6 bytes of JSON per gray pixel
(digits, brackets and commas; about 13 per RGB pixel), so a 256 x 256 gray
image is a 0.37 MB request, 1024 x 1024 is 5.8 MB and 4096 x 4096 about
94 MB, which TF Serving parses in memory before it runs anything, and the
graph then holds the spatial LSTM states of every pixel at once (see
`ride_tf.export`).  TF Serving cancels REST requests after 30 s by default
(--rest_api_timeout_in_ms).  For large images use gRPC (`grpc_client.py`, 1
byte per pixel; crops are no substitute, since a crop's border pixels are
conditioned on less than the image's).  Responses cost 10-20 bytes per float:
`pixel_log_prob` of a 1024 x 1024 image is 10-20 MB of JSON.
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ride_signatures as signatures  # noqa: E402

FORMATS = ("inputs", "instances")


def build_request(signature="serving_default", images=None, num_samples=None, height=None, width=None, seed=0,
                  layout="inputs"):
    """The JSON body (a dict) of one predict request.

    Args:
      signature: a signature name (`ride_signatures.SIGNATURES`).
      images: uint8 [N, H, W, C] (or [N, H, W]) for the image signatures.
      num_samples, height, width, seed: the `sample` signature's inputs.
      layout: "inputs" (columnar) or "instances" (row; image signatures only), TF Serving's request formats.
    """
    signatures.check_signature(signature)
    if layout not in FORMATS:
        raise ValueError(f"layout must be one of {FORMATS}, got {layout!r}")
    if signature == "sample":
        if images is not None:
            raise ValueError("the sample signature takes sizes, not images")
        if layout != "inputs":
            raise ValueError("the sample signature has scalar inputs, which only the 'inputs' format can carry")
        return {"signature_name": signature,
                "inputs": signatures.sample_inputs(num_samples, height, width, seed)}
    if images is None:
        raise ValueError(f"the {signature} signature needs images")
    images = signatures.image_batch(images).tolist()
    if layout == "instances":
        return {"signature_name": signature, "instances": images}
    return {"signature_name": signature, "inputs": {"images": images}}


def parse_response(signature, body, layout="inputs"):
    """TF Serving's JSON response -> {output name: NumPy array} with the signature's dtypes.

    Columnar responses are {"outputs": {...}}, or {"outputs": value} when the
    signature has one output; row responses are {"predictions": [...]}, a list
    of per-image dicts when it has several outputs.
    """
    names = signatures.output_names(signature)
    dtypes = signatures.SIGNATURES[signature][1]
    if "error" in body:
        raise RuntimeError(f"the server answered: {body['error']}")
    if layout == "inputs":
        outputs = body["outputs"]
        values = outputs if len(names) > 1 else {names[0]: outputs}
    else:
        predictions = body["predictions"]
        if len(names) > 1:
            values = {name: [p[name] for p in predictions] for name in names}
        else:
            values = {names[0]: predictions}
    return {name: np.asarray(values[name], dtype=dtypes[name]) for name in names}


def predict_url(server, model, version=None):
    """http://HOST:8501/v1/models/MODEL[/versions/N]:predict"""
    url = f"{server.rstrip('/')}/v1/models/{model}"
    return url + (f"/versions/{int(version)}" if version is not None else "") + ":predict"


def predict(server, model, request, version=None, timeout=60.0):
    """POST `request` (from `build_request`); returns the parsed outputs, or RuntimeError with the server's message."""
    data = json.dumps(request, separators=(",", ":")).encode()
    http_request = urllib.request.Request(predict_url(server, model, version), data=data,
                                          headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            text = json.loads(text).get("error", text)
        except ValueError:
            pass
        raise RuntimeError(f"HTTP {error.code}: {text}") from None
    layout = "instances" if "instances" in request else "inputs"
    return parse_response(request["signature_name"], body, layout)


def build_parser():
    parser = argparse.ArgumentParser(description="Query a ride-tf model served by TF Serving over REST.")
    parser.add_argument("images", nargs="*", help="image files of one size (the image signatures)")
    parser.add_argument("--signature", default="serving_default", choices=list(signatures.SIGNATURES))
    parser.add_argument("--server", default="http://localhost:8501", help="(http://localhost:8501)")
    signatures.add_model_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="inputs", help="JSON request format (inputs)")
    signatures.add_sample_arguments(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.signature == "sample":
            height, width = signatures.parse_size(args.size)
            request = build_request("sample", num_samples=args.num_samples, height=height, width=width,
                                    seed=args.seed)
        else:
            images = signatures.load_images(args.images, args.mode)
            request = build_request(args.signature, images, layout=args.format)
        outputs = predict(args.server, args.model, request, args.version, args.timeout)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"rest_client: error: {error}", file=sys.stderr)
        return 1
    signatures.print_results(args.signature, outputs, args.images, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
