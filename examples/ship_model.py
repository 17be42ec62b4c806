"""Ship a model trained on the photograph corpus (`examples/train_corpus.py`) as `ride_tf.pretrained(NAME)`.

Copies the model (atomically) to ride_tf/pretrained/NAME.keras and writes the
package's short record beside it (NAME.json: description, configuration,
command, training time, the held-out rates of `ride_tf.pretrained.HELD_OUT`'s
photos by `examples/train_pretrained.py`'s `evaluate`, the training run's
scores on the corpus's held-out and evaluation pictures).  With
--keep-previous-as OLD the model shipped as NAME so far is kept as OLD
(OLD.keras and OLD.json), so that files it compressed keep decoding
(`ride-tf decompress` finds a shipped model by the fingerprint in a file's
header).  The full training record goes to docs/pretrained_NAME.json.  Each
shipped model's integer model (what the codec codes with, without
TensorFlow) is derived from its float weights and written beside it as
NAME.integer.npz (`ride_tf.codec.model_file`); `--integer-models` rewrites
those of every shipped model (or of the names given) and nothing else.  The
integer models of the earlier derivation (`--derivation 1`, for the files
written before issue 29's 16-bit products) go to
ride_tf/pretrained/derivation-1/NAME.integer.npz.

    python examples/ship_model.py --name gray --model runs/corpus/g1x64.keras --record runs/corpus/g1x64.json \\
        --keep-previous-as gray-small
    python examples/ship_model.py --integer-models
    python examples/ship_model.py --integer-models --derivation 1
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ride_tf.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()      # before TensorFlow is first imported: its start-up lines filtered

import ride_tf  # noqa: E402
from ride_tf import codec, io, pretrained  # noqa: E402
from ride_tf.codec import registry  # noqa: E402
from ride_tf.codec.integer import DERIVATION, DERIVATIONS  # noqa: E402
from ride_tf.codec.model_file import SUFFIX  # noqa: E402
from train_pretrained import evaluate  # noqa: E402

FOLDER = os.path.dirname(os.path.abspath(pretrained.__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", help="the shipped name, e.g. gray or rgb")
    parser.add_argument("--model", help="the .keras file of train_corpus.py")
    parser.add_argument("--record", help="its JSON record (train_corpus.py --record)")
    parser.add_argument("--keep-previous-as", metavar="OLD", help="ship the current NAME model as OLD too")
    parser.add_argument("--integer-models", nargs="*", metavar="NAME",
                        help="only (re)write the integer model files of these shipped models (none named: all)")
    parser.add_argument("--derivation", type=int, choices=DERIVATIONS, default=DERIVATION,
                        help=f"with --integer-models: the derivation (default {DERIVATION}; 1 writes to "
                             "ride_tf/pretrained/derivation-1)")
    args = parser.parse_args(argv)
    if args.integer_models is not None:
        for name in args.integer_models or sorted(pretrained.available()):
            write_integer_model(name, args.derivation)
        return
    if not (args.name and args.model and args.record):
        parser.error("--name, --model and --record are needed (or --integer-models)")

    with open(args.record) as f:
        record = json.load(f)
    model = ride_tf.load_model(args.model)
    target = os.path.join(FOLDER, args.name + ".keras")
    history = earlier_training(record)
    minutes = record["train_minutes"] + sum(step["train_minutes"] for step in history)
    if args.keep_previous_as and os.path.exists(target):
        old = os.path.join(FOLDER, args.keep_previous_as)
        previous = pretrained.info(args.name)
        shutil.copyfile(target, old + ".keras.tmp")
        os.replace(old + ".keras.tmp", old + ".keras")
        previous["name"] = args.keep_previous_as
        previous["description"] = previous.get("description", "") + f" (shipped as {args.name!r} until " \
                                  f"{record['date'][:10]})"
        io.atomic_write_json(old + ".json", previous)
        print(f"kept the previous {args.name!r} as {old}.keras")
        write_integer_model(args.keep_previous_as)
        if args.name in registry.shipped_names(1):          # its files of the earlier derivation keep decoding
            write_integer_model(args.keep_previous_as, 1)
            os.remove(registry.shipped_path(args.name, 1))
    channels = model.num_channels
    results = evaluate(model, pretrained.held_out_images(channels))
    photos = [n for n in results if "[" not in n]
    mean = float(np.mean([results[n]["full"] for n in photos]))
    config = model.get_config()
    kind = "grayscale" if channels == 1 else "RGB"
    corpus = record.get("evaluation_mean", {})
    description = (f"RIDE for 8-bit {kind} photos ({config['num_layers']} layer, {config['num_hiddens']} units, "
                   f"{config['num_components']} x {config['num_scales']} experts); trained "
                   f"{minutes:.0f} min{f' in {len(history) + 1} runs' if history else ''} on the photograph corpus ({len(record['training_pictures'])} "
                   f"pictures, {record['pixels'] / 1e6:.2f} Mpx); held-out photos ({', '.join(photos)}) "
                   f"{mean:.3f} bit/px{' per channel' if channels == 3 else ''}")
    short = dict(name=args.name, description=description, config=config, command=record["command"],
                 date=record["date"], train_minutes=minutes, held_out_rates=results,
                 earlier_training=history,
                 held_out_photos_mean=dict(full=mean, valid=float(np.mean([results[n]["valid"] for n in photos]))),
                 corpus_held_out_mean=record.get("held_out_mean"), corpus_evaluation_mean=corpus,
                 rate_units="bit/px (per channel for colour), log-likelihood rate, larger is better; "
                            "uniform dequantization noise, seed 1; corpus means: rate and exact code length")
    io.atomic_save_model(model, target)
    io.atomic_write_json(target[:-len(".keras")] + ".json", short)
    io.atomic_write_json(os.path.join(ROOT, "docs", f"pretrained_{args.name}.json"), dict(record, shipped=short))
    write_integer_model(args.name)
    for name, r in results.items():
        print(f"  held out {name:12s} {r['full']:.3f} bit/px (valid region {r['valid']:.3f}; Gaussian "
              f"{r['gaussian']:.3f})")
    print(f"wrote {target} and its record; {description}")


def write_integer_model(name, derivation=DERIVATION):
    """Derive the shipped model `name`'s integer model from its float weights by `derivation` and write
    NAME.integer.npz beside NAME.keras, or in ride_tf/pretrained/derivation-1 for derivation 1 (the source
    recorded: the .keras file's SHA-256)."""
    import hashlib

    keras_path = pretrained.model_path(name)
    with open(keras_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    integer = codec.integer_model(pretrained.load(name), derivation)
    folder = FOLDER if derivation == DERIVATION else registry.EARLIER_FOLDER
    os.makedirs(folder, exist_ok=True)
    path = codec.save_integer_model(integer, os.path.join(folder, name + SUFFIX),
                                    source=dict(keras_sha256=digest, keras_file=os.path.basename(keras_path),
                                                derivation=derivation))
    print(f"wrote {path} (fingerprint {integer.fingerprint.hex()})")


def earlier_training(record):
    """The runs a training continued (`train_corpus.py --init`): [{command, date, train_minutes}], oldest first.

    `--init` names a model file; its record is the JSON file beside it (a
    shipped model's NAME.json, whose own `earlier_training` goes further
    back).  The path is taken relative to the repository when it is not
    absolute, as the training ran from a worktree of it.  Empty when the
    training started from scratch or the record cannot be found (then the
    time reported is that of the last run alone, and a note says so).
    """
    init = record.get("args", {}).get("init")
    if not init:
        return []
    path = os.path.splitext(init if os.path.isabs(init) else os.path.join(ROOT, init))[0] + ".json"
    if not os.path.exists(path):
        print(f"note: no record of {init} at {path}; the training time is that of the last run only")
        return []
    with open(path) as f:
        previous = json.load(f)
    return list(previous.get("earlier_training", [])) + [
        dict(command=previous["command"], date=previous["date"], train_minutes=previous["train_minutes"]
             - sum(step["train_minutes"] for step in previous.get("earlier_training", [])))]


if __name__ == "__main__":
    main()
