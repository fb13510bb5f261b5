#!/usr/bin/env python3
"""Run a kprune bundle on image files, without RTMaps, TensorFlow or kprune.

A smoke test for the board: the same preprocessing (from manifest.json) and
the same model files that the RTMaps component uses.

Usage:
    python3 run_bundle.py IMAGE_OR_FOLDER [...] [--backend tflite|tflite_int8|onnx]
                          [--threads N] [--batch-size N] [--json] [--bundle DIR]
                          [--out FOLDER]

A classifier bundle prints one line per image: path, class id, label,
probability (tab-separated), or a JSON list with --json.

A raw-output bundle ("task": "raw" in manifest.json: a detector, a regressor)
needs --out FOLDER. For each model output it writes FOLDER/NAME.npy (NAME: the
Keras output name in the manifest), the outputs of all inputs stacked in the
order of FOLDER/inputs.txt, one input per line: float32 of shape (N, ...) for
N inputs. A .npy file holding a batch (N, H, W, C) counts as N inputs, listed
as PATH[0], PATH[1], ...; images and .npy files alike go through the
manifest's preprocessing. It prints one line per output file (name, file,
shape), or a JSON object with --json.

Exit code 1 when the bundle or an image cannot be used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kprune_images as images  # noqa: E402  (both live beside this file)
import kprune_runtime as runtime  # noqa: E402

INPUTS_LIST = "inputs.txt"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description="Run a kprune deployment bundle on images.")
    parser.add_argument("paths", nargs="+", help="Image files or folders (searched recursively).")
    parser.add_argument(
        "--bundle",
        default=os.path.dirname(os.path.abspath(__file__)),
        help="Bundle folder (default: the folder of this script).",
    )
    parser.add_argument("--backend", default="tflite", choices=runtime.BACKENDS)
    parser.add_argument("--threads", type=int, default=None, help="Inference threads; 0 = all cores.")
    parser.add_argument("--batch-size", type=int, default=32, help="Images per inference.")
    parser.add_argument("--json", action="store_true", help="Print a JSON list instead.")
    parser.add_argument("--no-check", action="store_true", help="Skip the sha256 check of the model file.")
    parser.add_argument(
        "--out", default=None, help="Raw-output bundles: the folder for one .npy per model output."
    )
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.batch_size < 1:
        print("Error: --batch-size must be positive.", file=sys.stderr)
        return 1
    try:
        task = runtime.bundle_task(runtime.load_manifest(arguments.bundle))
        if task == "raw":
            return write_outputs(arguments)
        if arguments.out is not None:
            raise runtime.BundleError(
                "--out is for raw-output bundles; %s is a classifier bundle, whose classes are "
                "printed. Fix: leave out --out (--json prints a list)." % arguments.bundle
            )
        classifier = runtime.Classifier(
            arguments.bundle, arguments.backend, arguments.threads, not arguments.no_check
        )
        paths = images.find_images(arguments.paths)
        if not paths:
            raise runtime.BundleError("No image files in %s." % ", ".join(arguments.paths))
        started = time.perf_counter()
        results = []
        for start in range(0, len(paths), arguments.batch_size):
            chunk = paths[start : start + arguments.batch_size]
            decoded = [images.read_image(path) for path in chunk]
            pixels = [image for image, _ in decoded]
            orders = [order for _, order in decoded]
            for path, prediction in zip(chunk, classifier.classify_batch(pixels, orders)):
                results.append(dict(path=path, **prediction.to_dict()))
        elapsed = time.perf_counter() - started
    except (runtime.BundleError, OSError, ValueError) as error:
        print("Error: %s" % error, file=sys.stderr)
        return 1
    if arguments.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(
                "%s\t%d\t%s\t%.4f"
                % (result["path"], result["class_id"], result["label"], result["probability"])
            )
    print(
        "%d images, %s backend, %.1f ms per image (read, preprocess, infer)"
        % (len(results), arguments.backend, 1000.0 * elapsed / len(results)),
        file=sys.stderr,
    )
    return 0


def write_outputs(arguments):
    """The raw-output path: every output of every input, as .npy files in --out."""
    if arguments.out is None:
        manifest = runtime.load_manifest(arguments.bundle)
        raise runtime.BundleError(
            "The bundle %s has raw outputs (%s), not classes. Fix: pass --out FOLDER; each "
            "output is written there as NAME.npy."
            % (arguments.bundle, ", ".join(runtime.output_names(manifest)))
        )
    model = runtime.RawModel(arguments.bundle, arguments.backend, arguments.threads, not arguments.no_check)
    paths = images.find_images(arguments.paths)
    if not paths:
        raise runtime.BundleError("No image files in %s." % ", ".join(arguments.paths))
    started = time.perf_counter()
    names, parts = [], {name: [] for name in model.output_names}
    inputs = list(read_inputs(paths))
    if not inputs:
        raise runtime.BundleError("No inputs in %s (empty .npy batches)." % ", ".join(arguments.paths))
    for start in range(0, len(inputs), arguments.batch_size):
        chunk = inputs[start : start + arguments.batch_size]
        outputs = model.run([pixels for _, pixels, _ in chunk], [order for _, _, order in chunk])
        names.extend(name for name, _, _ in chunk)
        for name, values in outputs.items():
            parts[name].append(values)
    elapsed = time.perf_counter() - started
    os.makedirs(arguments.out, exist_ok=True)
    written = {}
    for name, stem in zip(model.output_names, file_stems(model.output_names)):
        path = os.path.join(arguments.out, stem + ".npy")
        values = np.concatenate(parts[name])
        np.save(path, values)
        written[name] = {"file": path, "shape": list(values.shape)}
    with open(os.path.join(arguments.out, INPUTS_LIST), "w", encoding="utf-8") as stream:
        stream.write("".join(name + "\n" for name in names))
    if arguments.json:
        print(json.dumps({"inputs": names, "outputs": written}, indent=2))
    else:
        for name, entry in written.items():
            print("%s\t%s\t%s" % (name, entry["file"], tuple(entry["shape"])))
    print(
        "%d inputs, %s backend, %.1f ms per input (read, preprocess, infer)"
        % (len(names), arguments.backend, 1000.0 * elapsed / len(names)),
        file=sys.stderr,
    )
    return 0


def read_inputs(paths):
    """``(name, pixels, channel order)`` per input; a batch .npy (N, H, W, C) gives N."""
    for path in paths:
        pixels, order = images.read_image(path)
        if path.lower().endswith(".npy") and np.ndim(pixels) == 4:
            for index, image in enumerate(pixels):
                yield "%s[%d]" % (path, index), image, order
        else:
            yield path, pixels, order


def file_stems(names):
    """A file name per output name: characters other than letters, digits, '.', '-', '_'
    become '_'; a name taken twice gets its position appended."""
    stems = []
    for index, name in enumerate(names):
        stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".") or "output"
        stems.append(stem if stem not in stems else "%s_%d" % (stem, index))
    return stems


if __name__ == "__main__":
    sys.exit(main())
