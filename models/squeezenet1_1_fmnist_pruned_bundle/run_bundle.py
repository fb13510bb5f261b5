#!/usr/bin/env python3
"""Classify image files with a kprune bundle, without RTMaps, TensorFlow or kprune.

A smoke test for the board: the same preprocessing (from manifest.json) and
the same model files that the RTMaps component uses.

Usage:
    python3 run_bundle.py IMAGE_OR_FOLDER [...] [--backend tflite|tflite_int8|onnx]
                          [--threads N] [--batch-size N] [--json] [--bundle DIR]

Prints one line per image: path, class id, label, probability (tab-separated),
or a JSON list with --json. Exit code 1 when the bundle or an image cannot be used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kprune_images as images  # noqa: E402  (both live beside this file)
import kprune_runtime as runtime  # noqa: E402


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description="Classify images with a kprune deployment bundle.")
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
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.batch_size < 1:
        print("Error: --batch-size must be positive.", file=sys.stderr)
        return 1
    try:
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


if __name__ == "__main__":
    sys.exit(main())
