"""gRPC client for a ride-tf model served by TF Serving (port 8500).

    python export/grpc_client.py leaf.png grass.png                       # serving_default: bit/px
    python export/grpc_client.py leaf.png --signature pixel_log_prob
    python export/grpc_client.py --signature sample --num-samples 2 --size 64x64 --seed 0 --output samples/

Needs TensorFlow (`tf.make_tensor_proto`) and, to talk to a server,
`tensorflow-serving-api` (`pip install -e ".[serving]"`, or
`pip install tensorflow-serving-api==2.21.0`) for the PredictionService stub.
The serving API is imported only when a request is sent, so `build_inputs`,
the pure part, works without it: it turns uint8 images (or the sample sizes)
into the TensorProtos of the request, keyed by the signature's input names.

Sizes: a uint8 TensorProto carries 1 byte per pixel and channel.  TF Serving
accepts messages up to 2 GiB; this client raises gRPC's default 4 MB limit on
responses to `--max-message-mb` (1024), since `pixel_log_prob` returns 4 bytes
per pixel (16 MB for a 2048 x 2048 image).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ride_signatures as signatures  # noqa: E402


def build_inputs(signature="serving_default", images=None, num_samples=None, height=None, width=None, seed=0):
    """{input name: TensorProto} of one predict request.

    Args:
      signature: a signature name (`ride_signatures.SIGNATURES`).
      images: uint8 [N, H, W, C] (or [N, H, W]) for the image signatures.
      num_samples, height, width, seed: the `sample` signature's int32 scalars.
    """
    import tensorflow as tf

    signatures.check_signature(signature)
    if signature == "sample":
        if images is not None:
            raise ValueError("the sample signature takes sizes, not images")
        values = signatures.sample_inputs(num_samples, height, width, seed)
        return {name: tf.make_tensor_proto(np.int32(value), dtype=tf.int32) for name, value in values.items()}
    if images is None:
        raise ValueError(f"the {signature} signature needs images")
    return {"images": tf.make_tensor_proto(signatures.image_batch(images), dtype=tf.uint8)}


def build_request(model, signature, inputs, version=None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` carrying `inputs` (from `build_inputs`)."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signatures.check_signature(signature)
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request


def parse_response(response):
    """PredictResponse -> {output name: NumPy array}."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def predict(target, model, signature, inputs, version=None, timeout=60.0, max_message_mb=1024):
    """Send one Predict call to `target` (host:port); returns {output name: array}.

    Raises RuntimeError with the gRPC status and the server's message (e.g.
    INVALID_ARGUMENT for a bad request).
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    limit = int(max_message_mb * (1 << 20))
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(build_request(model, signature, inputs, version), timeout=timeout)
        except grpc.RpcError as error:
            raise RuntimeError(f"{error.code().name}: {error.details()}") from None
    return parse_response(response)


def build_parser():
    parser = argparse.ArgumentParser(description="Query a ride-tf model served by TF Serving over gRPC.")
    parser.add_argument("images", nargs="*", help="image files of one size (the image signatures)")
    parser.add_argument("--signature", default="serving_default", choices=list(signatures.SIGNATURES))
    parser.add_argument("--server", default="localhost:8500", help="host:port (localhost:8500)")
    signatures.add_model_arguments(parser)
    signatures.add_sample_arguments(parser)
    parser.add_argument("--max-message-mb", type=float, default=1024, help="gRPC message limit in MB (1024)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.signature == "sample":
            height, width = signatures.parse_size(args.size)
            inputs = build_inputs("sample", num_samples=args.num_samples, height=height, width=width,
                                  seed=args.seed)
        else:
            inputs = build_inputs(args.signature, signatures.load_images(args.images, args.mode))
        outputs = predict(args.server, args.model, args.signature, inputs, args.version, args.timeout,
                          args.max_message_mb)
    except ImportError as error:
        print(f"grpc_client: error: {error}; install tensorflow-serving-api "
              "(pip install tensorflow-serving-api==2.21.0)", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError, OSError) as error:
        print(f"grpc_client: error: {error}", file=sys.stderr)
        return 1
    signatures.print_results(args.signature, outputs, args.images, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
