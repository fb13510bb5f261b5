"""Test top-1 of each model's fp32 and int8 TFLite files, as deployed, on the full test split.

The files are the ones `python -m scripts.experiments.results_latency ... --measure` times
(`deployed_files`): `kprune.export_tflite`, the int8 one calibrated on the first 300
training images (float input and output). Images are preprocessed as each model's card says and
run one at a time (batch 1) through the bundle's runtime on ai_edge_litert; Keras' own
accuracy on the same batches is printed beside them.

    python -m scripts.experiments.accuracy_tflite models/squeezenet1_1_fmnist_sgd.keras \\
        models/squeezenet1_1_fmnist_latency.keras --out docs/results/latency/int8_accuracy.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from scripts.common import write_json

CALIBRATION_IMAGES = 300


def tflite_top1(path: str | Path, batches) -> float:
    """Share of examples whose label is the file's top-1, one image per call of the
    bundle's runtime (`kprune_runtime`, as on the board)."""
    from kprune.export.templates import kprune_runtime

    model = kprune_runtime.open_model(path, threads=1)
    correct = total = 0
    for images, labels in batches:
        for image, label in zip(np.asarray(images, np.float32), np.asarray(labels)):
            correct += int(np.argmax(model.predict(image[None])[0]) == int(label))
            total += 1
    return correct / total


def keras_top1(model, batches) -> float:
    correct = total = 0
    for images, labels in batches:
        predicted = np.argmax(model.predict_on_batch(np.asarray(images, np.float32)), axis=-1)
        correct += int(np.sum(predicted == np.asarray(labels)))
        total += len(predicted)
    return correct / total


def deployed_files(model, path: str, folder: Path, stem: str) -> tuple[Path, Path]:
    """The model's fp32 and int8 TFLite files in ``folder``, the int8 one calibrated on the
    first 300 training images of the dataset its card (beside ``path``) names."""
    import kprune
    from kprune.export.pipeline import named_examples
    from kprune.modelio import resolve_model_path

    card = Path(resolve_model_path(path))  # a packaged model's path resolves to its file and card
    calibration = named_examples(model, card, "fashion_mnist", None, None, "train", CALIBRATION_IMAGES, "")
    fp32 = kprune.export_tflite(model, folder / f"{stem}.tflite").path
    int8 = kprune.export_tflite(model, folder / f"{stem}_int8.tflite", "int8", calibration).path
    return fp32, int8


def evaluate(path: str, folder: Path, index: int) -> dict:
    import kprune
    from kprune.export.pipeline import named_examples
    from kprune.modelio import resolve_model_path

    model = kprune.load_model(path)
    test = named_examples(
        model, Path(resolve_model_path(path)), "fashion_mnist", None, None, "test", None, ""
    )
    batches = [(images.numpy(), labels.numpy()) for images, labels in test.dataset]
    fp32, int8 = deployed_files(model, path, folder, str(index))
    return {
        "path": path,
        "examples": test.num_examples,
        "keras": keras_top1(model, batches),
        "fp32": tflite_top1(fp32, batches),
        "int8": tflite_top1(int8, batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help=".keras files (with their model cards)")
    parser.add_argument("--out", default=None, help="also write the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kprune-accuracy-") as folder:
        results = [evaluate(path, Path(folder), index) for index, path in enumerate(args.models)]
    print(f"\n{'model':<50} {'examples':>8} {'Keras':>7} {'fp32':>7} {'int8':>7} {'int8 − fp32':>11}")
    for r in results:
        print(
            f"{r['path']:<50} {r['examples']:>8} {r['keras']:>7.2%} {r['fp32']:>7.2%} {r['int8']:>7.2%} "
            f"{100 * (r['int8'] - r['fp32']):>+10.2f}"
        )
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
