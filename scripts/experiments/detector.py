"""A small detector pruned end to end: trained here, pruned watching its IoU, exported, timed.

The detector, its canvases, loss and metric are scripts/experiments/detection.py (the user's code).
Stages, each skipped when its output exists, so that a killed run continues where it stopped when
the same command runs again (training from its last epoch, pruning from its last step):

1. data: canvases of Fashion-MNIST items, seeded: train from the first 50,000 training images,
   validation from the last 10,000, test from the test images.
2. train: the detector, Adam with cosine decay (runs/detector/detector.keras).
3. prune: ``kprune.prune(model, train, val, criterion="taylor", target_flops=T,
   monitor="detections_box_iou")`` and kprune's defaults for the rest, one run per target T
   (runs/detector/prune-NN/).
4. pick: the most-pruned model within 1 point of validation IoU (×100): the end of a run (after
   its final fine-tune) when one is within, else the ``within-1pt.keras`` kprune kept in a run,
   else the unpruned model. Every model is scored on the validation and test canvases (mean IoU
   and hit rate at IoU 0.5).
5. export: the pick to TFLite fp32, int8 (calibrated on training canvases) and ONNX, verified against
   Keras (`kprune.export_model`); the int8 file's IoU on the test canvases.
6. bench: TFLite (XNNPACK) latency of the unpruned model and the pick, fp32 and int8, 1 thread,
   batch 1, alternated (`kprune.benchmark`).

    python -m scripts.experiments.detector            # everything; resumable
    python -m scripts.experiments.detector --report   # the RESULTS section from the evidence
    python -m scripts.experiments.detector --ship     # the pick → models/detector_fmnist.keras
                                                      # and its raw-output bundle beside it

Evidence: docs/results/detector/detector.json and each pruning run's report.json beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from scripts.common import change, load_json, replace_section, write_json

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


LIMIT = 1.0  # points of validation IoU ×100


def choose(unpruned_val: float, runs: dict) -> tuple[str | None, str]:
    """The most-pruned model within `LIMIT` points of validation IoU: ``(target, "end")`` for the
    end of a run, ``(target, "within")`` for the ``within-1pt.keras`` kprune kept in a run, or
    ``(None, "unpruned")`` when no pruned model is within."""
    ends = [key for key, run in runs.items() if 100 * (unpruned_val - run["scores"]["val_iou"]) <= LIMIT]
    if ends:
        return max(ends, key=lambda key: 1 - runs[key]["scores"]["flops"]), "end"
    kept = [key for key, run in runs.items() if (run["within_budget"] or {}).get("file")]
    if kept:
        return max(kept, key=lambda key: runs[key]["within_budget"]["flops_removed"]), "within"
    return None, "unpruned"


def run(args) -> dict:
    import keras

    import kprune

    runs_dir, evidence = Path(args.runs), Path(args.evidence)
    counts = {"train": args.train_canvases, "val": args.val_canvases, "test": args.test_canvases}
    data = canvases(counts)
    clock = {"start": time.time()}
    base_path = runs_dir / "detector.keras"
    training = train(data, base_path, args.epochs)
    clock["train"] = time.time()
    unpruned = score(keras.models.load_model(base_path), data)
    runs, paths = {}, {}
    for target in args.target_flops:
        key = f"{target:g}"
        run_dir = runs_dir / f"prune-{round(100 * target)}"
        result = prune(base_path, data, run_dir, target)
        steps = [record for record in result.report["steps"] if record["step"] and not record.get("phase")]
        runs[key] = {
            "steps": len(steps),
            "stop_reason": result.report["stop_reason"],
            "within_budget": result.within_budget,
            # the steps' own durations: a resumed run's wall_time_s counts only the resumed part
            "seconds": round(sum(record["seconds"] for record in result.report["steps"]), 1),
            "scores": score(keras.models.load_model(run_dir / "pruned.keras"), data),
        }
        paths[key] = run_dir
        shutil.copyfile(run_dir / "report.json", _evidence_file(evidence, key))
    clock["prune"] = time.time()
    chosen, kind = choose(unpruned["val_iou"], runs)
    pick_path = {
        "end": lambda: paths[chosen] / "pruned.keras",
        "within": lambda: paths[chosen] / runs[chosen]["within_budget"]["file"],
        "unpruned": lambda: base_path,
    }[kind]()
    pick_model = keras.models.load_model(pick_path)
    pick = {"target": chosen, "kind": kind, "file": str(pick_path.relative_to(runs_dir))}
    pick["scores"] = score(pick_model, data)
    test_images, test_targets = data["test"]
    calibration = data["train"][0][:CALIBRATION].astype(np.float32)
    exported = kprune.export_model(
        pick_model,
        runs_dir / "export",
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
        name: file_iou(pick_model, artifact, test_images, test_targets) for name, artifact in files.items()
    }
    clock["export"] = time.time()
    bench = kprune.benchmark(
        [base_path, pick_path],
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
    facts = {
        "command": " ".join([COMMAND, *sys.argv[1:]]),
        "canvases": counts,
        "training": training,
        "monitor": MONITOR,
        "limit_points": LIMIT,
        "unpruned": unpruned,
        "runs": runs,
        "pick": pick,
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
    return facts


def _evidence_file(evidence: Path, key: str) -> Path:
    evidence.mkdir(parents=True, exist_ok=True)
    return evidence / f"prune-{round(100 * float(key))}.report.json"


def _points(value: float) -> str:
    return f"{100 * value:.2f}"


def _removed(row: dict, base: dict, key: str) -> str:
    return f"−{100 * (1 - row[key] / base[key]):.1f}%"


def report_text(facts: dict) -> str:
    """The RESULTS section: every run's end and the pick, the pick's export parity, TFLite latency."""
    base, pick = facts["unpruned"], facts["pick"]
    lines = [
        "| model | params | FLOPs | val IoU (change) | test IoU (change) | test hit@0.5 (change) |",
        "| --- | --: | --: | --: | --: | --: |",
        f"| unpruned | {base['params']:,} | {base['flops'] / 1e6:.1f} M | {_points(base['val_iou'])} "
        f"| {_points(base['test_iou'])} | {_points(base['test_hit50'])} |",
    ]
    rows = [
        (f"target {100 * float(key):.0f}% FLOPs: end ({run['steps']} steps)", run["scores"], key, "end")
        for key, run in facts["runs"].items()
    ]
    if pick["kind"] == "within":
        step = facts["runs"][pick["target"]]["within_budget"]["step"]
        rows.append(
            (
                f"target {100 * float(pick['target']):.0f}% FLOPs: step {step}, `within-1pt.keras`",
                pick["scores"],
                pick["target"],
                "within",
            )
        )
    for label, row, key, kind in rows:
        chosen = (key, kind) == (pick["target"], pick["kind"])
        label = f"**{label}: the pick**" if chosen else label
        lines.append(
            f"| {label} | {row['params']:,} ({_removed(row, base, 'params')}) "
            f"| {row['flops'] / 1e6:.1f} M ({_removed(row, base, 'flops')}) "
            f"| {_points(row['val_iou'])} ({change(row['val_iou'], base['val_iou'])}) "
            f"| {_points(row['test_iou'])} ({change(row['test_iou'], base['test_iou'])}) "
            f"| {_points(row['test_hit50'])} ({change(row['test_hit50'], base['test_hit50'])}) |"
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
    for label, name in zip(labels, ("unpruned", "the pick")):
        fp32, int8 = latency[(label, "fp32")], latency[(label, "int8")]
        timing.append(f"| {name} | {fp32:.3f} | {int8:.3f} | {base_ms / fp32:.2f}× | {base_ms / int8:.2f}× |")
    counts, training = facts["canvases"], facts["training"]
    environment = bench.get("environment", {})
    targets = ", ".join(f"{float(key):g}" for key in facts["runs"])
    minutes = sum(run["seconds"] for run in facts["runs"].values()) / 60
    return "\n".join(
        [
            "A single-class detector (scripts/experiments/detection.py: four stride-2 stages, the stride-16 "
            "features upsampled and concatenated with the stride-8 ones, box and objectness heads on an 8×8 "
            f"grid) trained here for {training['epochs']} epoch{'s' * (training['epochs'] != 1)} on "
            f"{counts['train']:,} 64×64 canvases of Fashion-MNIST items, then pruned by "
            f'`kprune.prune(..., criterion="taylor", target_flops=T, monitor="{facts["monitor"]}")` with the '
            f"defaults for the rest, one run per T in {targets}. IoU: of the box at the most confident cell "
            f"with the true box, ×100, mean over {counts['val']:,} validation and {counts['test']:,} test "
            "canvases; hit@0.5: share of canvases whose IoU reaches 0.5. The pick: the most-pruned model "
            f"within {facts['limit_points']:g} point of validation IoU (a run's end, else the "
            "`within-1pt.keras` kprune kept). Generated by "
            f"`{COMMAND} --report` from docs/results/detector/ (the run: `{facts['command']}`, "
            f"{minutes:.0f} min of pruning steps in all, on a shared machine).",
            "",
            *lines,
            "",
            f"Export of the pick, verified against Keras on {facts['verification']['samples']} test "
            f"canvases: {parity}.",
            "",
            f"TFLite (XNNPACK) latency, 1 thread, batch 1, median of {bench['settings']['repeats']} "
            f"alternated runs on {environment.get('machine', 'this host')} (a 2-core sandbox shared with "
            "other work: ratios are more trustworthy than milliseconds):",
            "",
            *timing,
        ]
    )


def write_report(evidence: Path = EVIDENCE, doc: Path = ROOT / "docs" / "RESULTS.md") -> str:
    text = report_text(load_json(evidence / "detector.json"))
    replace_section(doc, "detector", "A small detector, pruned end to end", text)
    return text


SHIPPED = ROOT / "models" / "detector_fmnist.keras"
SHIPPED_BUNDLE = ROOT / "models" / "detector_fmnist_bundle"


def ship(args) -> None:
    """Copies the pick of detector.json to `SHIPPED` and writes its raw-output bundle (fp32 and
    int8 TFLite, ONNX; verified on the first test canvases, int8 calibrated on training ones)."""
    import keras

    from kprune.export.bundle import write_bundle

    facts = json.loads((Path(args.evidence) / "detector.json").read_text())
    pick = Path(args.runs) / facts["pick"]["file"]
    if not pick.is_file():
        raise SystemExit(f"{pick} is missing. Fix: run `python -m scripts.experiments.detector` first.")
    counts = {"train": args.train_canvases, "val": args.val_canvases, "test": args.test_canvases}
    data = canvases(counts)
    shutil.copyfile(pick, SHIPPED)
    write_bundle(
        keras.models.load_model(SHIPPED),
        SHIPPED_BUNDLE,
        data=data["test"][0][:VERIFY].astype(np.float32),
        calibration_data=data["train"][0][:CALIBRATION].astype(np.float32),
        verify_samples=VERIFY,
        calibration_samples=CALIBRATION,
        overwrite=True,
    )
    print(f"wrote {SHIPPED.relative_to(ROOT)} and {SHIPPED_BUNDLE.relative_to(ROOT)}/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--report", action="store_true", help="Only write the RESULTS section from the evidence."
    )
    parser.add_argument("--train-canvases", type=int, default=20000)
    parser.add_argument("--val-canvases", type=int, default=2000)
    parser.add_argument("--test-canvases", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--target-flops",
        type=lambda text: [float(value) for value in text.split(",")],
        default=[0.6, 0.7, 0.8],
        help="Comma-separated FLOPs targets, one pruning run each.",
    )
    parser.add_argument(
        "--ship", action="store_true", help="Only copy the pick into models/ and write its bundle."
    )
    parser.add_argument("--repeats", type=int, default=300, help="Timed inferences per model and precision.")
    parser.add_argument("--runs", default=str(RUNS), help="Models and checkpoints.")
    parser.add_argument("--evidence", default=str(EVIDENCE), help="Where detector.json goes.")
    args = parser.parse_args(argv)
    if args.report:
        print(write_report(Path(args.evidence)))
        return 0
    if args.ship:
        ship(args)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
