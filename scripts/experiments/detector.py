"""A small detector pruned end to end: trained here, pruned watching its IoU, exported, timed.

The detector, its canvases, loss and metric are scripts/experiments/detection.py (the user's code).
Stages, each skipped when its output exists, so that a killed run continues where it stopped when
the same command runs again (training from its last epoch, pruning from its last step):

1. data: canvases of Fashion-MNIST items, seeded: train from the first 50,000 training images,
   validation from the last 10,000, test from the test images.
2. train: the detector, Adam with cosine decay (runs/detector/detector.keras).
3. prune: ``kprune.prune(model, train, val, criterion="taylor", target_flops=T,
   monitor="detections_box_iou")`` and kprune's defaults for the rest (runs/detector/prune/).
4. pick: the most-pruned model within 1 point of validation IoU (×100): the end of the run when it
   is within, else the ``within-1pt.keras`` kprune kept. Every model is then scored on the test
   canvases (mean IoU and hit rate at IoU 0.5).
5. export: the pick to TFLite fp32, int8 (calibrated on training canvases) and ONNX, verified against
   Keras (`kprune.export_model`); the int8 file's IoU on the test canvases.
6. bench: TFLite (XNNPACK) latency of the unpruned model and the pick, fp32 and int8, 1 thread,
   batch 1, alternated (`kprune.benchmark`).

    python -m scripts.experiments.detector            # everything; resumable
    python -m scripts.experiments.detector --report   # the RESULTS section from the evidence

Evidence: docs/results/detector/detector.json and the pruning run's report.json beside it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from scripts.common import load_json, replace_section, write_json

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "detector"
EVIDENCE = ROOT / "docs" / "results" / "detector"
MONITOR = "detections_box_iou"
COMMAND = "python -m scripts.experiments.detector"
BATCH = 64
SPLITS = {"train": 0, "val": 1, "test": 2}  # seeds of the canvases
CALIBRATION = 500  # training canvases that calibrate int8
VERIFY = 500  # test canvases that verify the files


def canvases(counts: dict[str, int]) -> dict[str, tuple[np.ndarray, dict]]:
    """{split: (uint8 images, grid targets)}; validation items are never training items."""
    from kprune.data.fashion_mnist import load_arrays
    from scripts.experiments.detection import grid_targets, make_canvases

    arrays, _ = load_arrays(download=False)
    items = {
        "train": arrays["train"][0][:50000],
        "val": arrays["train"][0][50000:],
        "test": arrays["test"][0],
    }
    found = {}
    for split, seed in SPLITS.items():
        images, boxes = make_canvases(items[split], counts[split], seed=seed)
        found[split] = (images.astype(np.uint8), grid_targets(boxes))
    return found


def dataset(images: np.ndarray, targets: dict, seed: int | None = None):
    """Batches of (float32 canvases, targets); shuffled by ``seed`` when given."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((images, targets))
    if seed is not None:
        data = data.shuffle(len(images), seed=seed)
    return data.batch(BATCH).map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(2)


def train(data: dict, path: Path, epochs: int) -> dict:
    """Trains the detector (resumes from its last epoch); returns the last epoch's logs."""
    import keras

    from kprune.modelio import save_model
    from kprune.training.determinism import deterministic
    from scripts.experiments.detection import build_detector, compile_detector

    facts = path.with_suffix(".json")
    if path.is_file() and facts.is_file():
        return load_json(facts)
    images, targets = data["train"]
    steps = epochs * -(-len(images) // BATCH)
    model = compile_detector(
        build_detector(seed=0), keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps)
    )
    started = time.time()
    backup = keras.callbacks.BackupAndRestore(str(path.parent / "train_backup"))
    with deterministic():
        history = model.fit(
            dataset(images, targets, seed=0),
            validation_data=dataset(*data["val"]),
            epochs=epochs,
            callbacks=[backup],
            verbose=2,
        )
    save_model(model, path)
    logs = {key: values[-1] for key, values in history.history.items()}
    result = {"epochs": epochs, "last_epoch": logs, "seconds": round(time.time() - started, 1)}
    write_json(facts, result)
    return result


def prune(model_path: Path, data: dict, run_dir: Path, target: float):
    """The pruning run (resumed when it has a checkpoint); returns kprune's PruneResult."""
    import keras

    import kprune
    from scripts.experiments.detection import compile_detector

    model = compile_detector(keras.models.load_model(model_path))  # the optimizer kprune copies: Adam 2e-3
    images, targets = data["train"]
    return kprune.prune(
        model,
        lambda seed: dataset(images, targets, seed=seed),
        dataset(*data["val"]),
        criterion="taylor",
        target_flops=target,
        monitor=MONITOR,
        run_dir=run_dir,
        resume=(run_dir / "checkpoint" / "state.json").is_file(),
    )


def score(model, data: dict) -> dict:
    """Size and validation/test IoU and hit rate of one model."""
    import kprune
    from scripts.experiments.detection import compile_detector

    compile_detector(model)
    found = {"params": kprune.count_params(model), "flops": kprune.count_flops(model)}
    for split in ("val", "test"):
        logs = model.evaluate(dataset(*data[split]), return_dict=True, verbose=0)
        found[f"{split}_iou"] = logs[MONITOR]
        found[f"{split}_hit50"] = logs["detections_hit50"]
    return found


def file_iou(model, artifact, images: np.ndarray, targets: dict) -> float:
    """Mean IoU of an exported file's outputs on ``images`` (the metric run on its outputs)."""
    from kprune.export.artifact import model_tensors
    from kprune.export.runners import open_artifact
    from kprune.export.verify import run_artifact
    from scripts.experiments.detection import BoxIoU

    outputs = run_artifact(
        artifact, [images.astype(np.float32)], open_artifact(artifact, model_tensors(model))
    )
    metric = BoxIoU()
    metric.update_state(targets["detections"], outputs[2])
    return float(metric.result())


def run(args) -> dict:
    import keras

    import kprune

    runs, evidence = Path(args.runs), Path(args.evidence)
    counts = {"train": args.train_canvases, "val": args.val_canvases, "test": args.test_canvases}
    data = canvases(counts)
    clock = {"start": time.time()}
    training = train(data, runs / "detector.keras", args.epochs)
    clock["train"] = time.time()
    result = prune(runs / "detector.keras", data, runs / "prune", args.target_flops)
    clock["prune"] = time.time()
    within = result.within_budget
    pick_path = runs / "prune" / (within["file"] if within and within.get("file") else "pruned.keras")
    models = {
        "unpruned": keras.models.load_model(runs / "detector.keras"),
        "end": keras.models.load_model(runs / "prune" / "pruned.keras"),
        "pick": keras.models.load_model(pick_path),
    }
    scores = {name: score(model, data) for name, model in models.items()}
    test_images, test_targets = data["test"]
    calibration = data["train"][0][:CALIBRATION].astype(np.float32)
    exported = kprune.export_model(
        models["pick"],
        runs / "export",
        quantize=("none", "int8"),
        data=test_images[:VERIFY].astype(np.float32),
        calibration_data=calibration,
        samples=VERIFY,
        calibration_samples=CALIBRATION,
    )
    files = {
        artifact.quantize if artifact.format == "tflite" else "onnx": artifact
        for artifact in exported.artifacts
    }
    file_ious = {
        name: file_iou(models["pick"], artifact, test_images, test_targets)
        for name, artifact in files.items()
    }
    clock["export"] = time.time()
    bench = kprune.benchmark(
        [runs / "detector.keras", pick_path],
        runtimes=["tflite"],
        batch_sizes=[1],
        threads=[1],
        precisions=["fp32", "int8"],
        calibration_data=calibration,
        calibration_samples=CALIBRATION,
        warmup=20,
        repeats=args.repeats,
    )
    clock["bench"] = time.time()
    steps = [record for record in result.report["steps"] if record["step"] and not record.get("phase")]
    facts = {
        "command": " ".join([COMMAND, *sys.argv[1:]]),
        "canvases": counts,
        "training": training,
        "target_flops": args.target_flops,
        "monitor": MONITOR,
        "pruning": {
            "steps": len(steps),
            "stop_reason": result.report["stop_reason"],
            "within_budget": within,
            "pick": pick_path.name,
            "wall_time_s": result.report["wall_time_s"],
        },
        "scores": scores,
        "verification": exported.verification.to_dict(),
        "file_test_iou": file_ious,
        "bench": bench.to_dict(),
        "stage_seconds": {
            stage: round(clock[stage] - clock[before], 1)
            for before, stage in zip(
                ["start", "train", "prune", "export"], ["train", "prune", "export", "bench"]
            )
        },
    }
    write_json(evidence / "detector.json", facts)
    shutil.copyfile(runs / "prune" / "report.json", evidence / "prune_report.json")
    return facts


def _points(value: float) -> str:
    return f"{100 * value:.2f}"


def _change(after: float, before: float) -> str:
    return f"{100 * (after - before):+.2f}".replace("-", "−")


def report_text(facts: dict) -> str:
    """The RESULTS section: sizes and IoU of the three models, the export's parity, TFLite latency."""
    scores, pruning = facts["scores"], facts["pruning"]
    base = scores["unpruned"]
    within = pruning["within_budget"]
    pick_label = (
        f"most-pruned within 1 point on validation (step {within['step']}, `{pruning['pick']}`)"
        if within
        else "end of the run, within 1 point on validation"
    )
    rows = [("unpruned", "unpruned", base)]
    if within:
        rows.append(("pick", pick_label, scores["pick"]))
        rows.append(
            ("end", f"end of the run ({pruning['steps']} steps, {pruning['stop_reason']})", scores["end"])
        )
    else:
        rows.append(("end", f"{pick_label} ({pruning['steps']} steps)", scores["end"]))
    lines = [
        "| model | params | FLOPs | val IoU | test IoU (change) | test hit@0.5 (change) |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    for name, label, row in rows:
        params, flops = f"{row['params']:,}", f"{row['flops'] / 1e6:.1f} M"
        if name != "unpruned":
            params += f" (−{100 * (1 - row['params'] / base['params']):.1f}%)"
            flops += f" (−{100 * (1 - row['flops'] / base['flops']):.1f}%)"
        lines.append(
            f"| {label} | {params} | {flops} "
            f"| {_points(row['val_iou'])} | {_points(row['test_iou'])} ({_change(row['test_iou'], base['test_iou'])}) "
            f"| {_points(row['test_hit50'])} ({_change(row['test_hit50'], base['test_hit50'])}) |"
        )
    checks = {
        check["quantize"] if check["format"] == "tflite" else "onnx": check
        for check in facts["verification"]["artifacts"]
    }
    ious = facts["file_test_iou"]
    names = {"none": "TFLite fp32", "int8": "TFLite int8", "onnx": "ONNX"}
    parity = "; ".join(
        f"{names[name]} (`{check['file']}`): max abs diff {check['max_abs_diff']:.1e}"
        + (f", relative error {100 * check['relative_error']:.2f}%" if name == "int8" else "")
        + f", test IoU {_points(ious[name])}"
        for name, check in checks.items()
    )
    bench = facts["bench"]
    latency = {(m["model"], m["precision"]): m["median_ms"] for m in bench["measurements"]}
    labels = [model["label"] for model in bench["models"]]
    base_ms = latency[(labels[0], "fp32")]
    timing = [
        "| model | TFLite fp32 ms | int8 ms | speed-up fp32 | speed-up int8 (over unpruned fp32) |",
        "| --- | --: | --: | --: | --: |",
    ]
    for label, name in zip(labels, ("unpruned", "pick")):
        fp32, int8 = latency[(label, "fp32")], latency[(label, "int8")]
        timing.append(f"| {name} | {fp32:.3f} | {int8:.3f} | {base_ms / fp32:.2f}× | {base_ms / int8:.2f}× |")
    counts, training = facts["canvases"], facts["training"]
    environment = bench.get("environment", {})
    return "\n".join(
        [
            f"A single-class detector (scripts/experiments/detection.py: four stride-2 stages, the stride-16 "
            f"features upsampled and concatenated with the stride-8 ones, box and objectness heads on an 8×8 "
            f"grid) trained here for {training['epochs']} epoch{'s' * (training['epochs'] != 1)} on {counts['train']:,} 64×64 canvases of "
            f'Fashion-MNIST items, then pruned by `kprune.prune(..., criterion="taylor", '
            f'target_flops={facts["target_flops"]}, monitor="{facts["monitor"]}")` with the defaults for the '
            f"rest. IoU: of the box at the most confident cell with the true box, ×100, mean over "
            f"{counts['val']:,} validation and {counts['test']:,} test canvases; hit@0.5: share of canvases "
            f"whose IoU reaches 0.5. Generated by `{COMMAND} --report` from docs/results/detector/ (the run: "
            f"`{facts['command']}`, {facts['pruning']['wall_time_s'] / 60:.0f} min of pruning).",
            "",
            *lines,
            "",
            f"Export of the pick, verified against Keras on {facts['verification']['samples']} test canvases: {parity}.",
            "",
            f"TFLite (XNNPACK) latency, 1 thread, batch 1, median of {bench['settings']['repeats']} alternated runs "
            f"on {environment.get('machine', 'this host')} (a 2-core sandbox shared with other work: "
            f"ratios are more trustworthy than milliseconds):",
            "",
            *timing,
        ]
    )


def write_report(evidence: Path = EVIDENCE, doc: Path = ROOT / "docs" / "RESULTS.md") -> str:
    text = report_text(load_json(evidence / "detector.json"))
    replace_section(doc, "detector", "A small detector, pruned end to end", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--report", action="store_true", help="Only write the RESULTS section from the evidence."
    )
    parser.add_argument("--train-canvases", type=int, default=20000)
    parser.add_argument("--val-canvases", type=int, default=2000)
    parser.add_argument("--test-canvases", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--target-flops", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=300, help="Timed inferences per model and precision.")
    parser.add_argument("--runs", default=str(RUNS), help="Models and checkpoints.")
    parser.add_argument("--evidence", default=str(EVIDENCE), help="Where detector.json goes.")
    args = parser.parse_args(argv)
    if args.report:
        print(write_report(Path(args.evidence)))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
