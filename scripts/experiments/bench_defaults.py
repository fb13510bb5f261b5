"""Default settings on models that are not ours: old defaults, new defaults, new + distillation.

Three user models, each pruned by `kprune prune` with nothing but a target:

- ``cnn``: a small CNN with ``Rescaling(1/255)`` inside, trained by Keras' own
  ``fit`` (Adam) on an image folder of 4 Fashion-MNIST classes as 40×40 RGB PNGs
  (425 training images per class); pruned to 50% of its FLOPs.
- ``mobilenet``: ``keras.applications.MobileNetV2(alpha=0.35)`` nested as a
  backbone, trained by Keras with Adam on Fashion-MNIST as 32×32 RGB; pruned to
  50% of its FLOPs.
- ``squeezenet90`` / ``squeezenet95``: the shipped SqueezeNet 1.1 baseline,
  pruned to 90% / 95% of its parameters.

Settings, each pinned by flags so that it means the same after the defaults
move: ``old`` (the defaults before issue 27: 128 filters per step, 60
fine-tune batches of SGD at 0.01, one final epoch); ``new`` and ``distill``
(the scaled defaults with a 1,000-batch final fine-tune, without and with
distillation); ``final10`` (the defaults now: distillation and a 10-epoch
final fine-tune). Every run is a `kprune prune` subprocess with its own run
dir; a killed run resumes (``--resume``) and finished runs are skipped, so the
script can be re-run until everything is done:

    python -m scripts.experiments.bench_defaults                          # the four columns
    python -m scripts.experiments.bench_defaults --only cnn,mobilenet --seeds 0
    python -m scripts.experiments.bench_defaults --report                 # RESULTS section from the evidence

Evidence (report.json of each run, small) goes to docs/results/defaults/;
models and checkpoints stay under runs/bench_defaults/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scripts.common import load_json, replace_section, signed, write_json

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "bench_defaults"
EVIDENCE = ROOT / "docs" / "results" / "defaults"

CNN_CLASSES = (0, 2, 7, 8)  # T-shirt/top, Pullover, Sneaker, Bag
CNN_SIZE = 40
CNN_PER_CLASS = {"train": 425, "val": 100, "test": 250}

# The flags that reproduce `kprune prune --target-…`'s defaults before issue 27.
OLD_FLAGS = [
    "--filters-per-step",
    "128",
    "--finetune-steps",
    "60",
    "--final-finetune-epochs",
    "1",
    "--optimizer",
    "sgd",
    "--lr",
    "0.01",
    "--no-distill",
]
# The final fine-tune of the ``new`` and ``distill`` settings: 1,000 batches within 1 to 10
# epochs, the default until it became 10 epochs. Pinned per model from its batches per epoch
# (batch 64: 1,700 images for the CNN, 54,000 Fashion-MNIST training images for the others).
BATCHES_PER_EPOCH = {"cnn": 27, "mobilenet": 844, "squeezenet90": 844, "squeezenet95": 844}


def earlier_final(model: str) -> list[str]:
    """The flag that gives ``model`` the 1,000-batch final fine-tune of the earlier defaults."""
    batches = BATCHES_PER_EPOCH[model]
    return ["--final-finetune-epochs", f"{min(10 * batches, max(batches, 1000)) / batches:.6f}"]


SETTINGS = {
    "old": OLD_FLAGS,
    "new": ["--no-distill"],  # + earlier_final(model)
    "distill": ["--distill"],  # + earlier_final(model)
    # the step-size choice (5%), against half and twice it, with distillation
    "step2.5": ["--distill", "--step-fraction", "0.025"],
    "step10": ["--distill", "--step-fraction", "0.1"],
    # the user's compiled optimizer (the default) against kprune's fallback, SGD at 0.01
    "sgd": ["--distill", "--optimizer", "sgd", "--lr", "0.01"],
    # a longer final fine-tune (4 epochs), for SqueezeNet's 90%/95% goals
    "final4": ["--distill", "--final-finetune-epochs", "4"],
    # the same at a tenth of the learning rate: at 95% the 4-epoch fine-tune at 0.01 fell apart
    "final4lr": ["--distill", "--final-finetune-epochs", "4", "--final-lr", "0.001"],
    # a 10-epoch final fine-tune: the defaults since final4's gain at 90% kept growing with it
    "final10": ["--distill", "--final-finetune-epochs", "10"],
    # three times the fine-tuning between steps (84 → 250 batches on SqueezeNet), and final4
    "long": ["--distill", "--finetune-steps", "250", "--final-finetune-epochs", "4"],
}


def image_folder(root: Path) -> Path:
    """The ``cnn`` model's data: Fashion-MNIST classes as RGB PNGs in train/val/test folders."""
    import keras

    from kprune.data.fashion_mnist import CLASS_NAMES, load_arrays

    if (root / "done").is_file():
        return root
    arrays, _ = load_arrays(download=False)
    rng = np.random.default_rng(0)
    sources = {"train": arrays["train"], "val": arrays["train"], "test": arrays["test"]}
    used_train: dict[int, np.ndarray] = {}
    for split, (images, labels) in sources.items():
        for label in CNN_CLASSES:
            candidates = np.flatnonzero(labels == label)
            if split == "val":  # disjoint from train
                candidates = np.setdiff1d(candidates, used_train[label])
            chosen = rng.choice(candidates, CNN_PER_CLASS[split], replace=False)
            if split == "train":
                used_train[label] = chosen
            folder = root / split / CLASS_NAMES[label].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                image = np.repeat(images[index], 3, axis=-1)  # gray → RGB, as photos would be
                image = keras.ops.convert_to_numpy(
                    keras.ops.image.resize(image[None].astype("float32"), (CNN_SIZE, CNN_SIZE))
                )[0]
                keras.utils.save_img(
                    folder / f"{index}.png", np.clip(image, 0, 255).astype("uint8"), scale=False
                )
    (root / "done").write_text("ok\n")
    return root


def train_cnn(data: Path, path: Path) -> Path:
    """A small CNN trained as a Keras user would: image_dataset_from_directory, Adam, fit."""
    import keras

    if path.is_file():
        return path
    keras.utils.set_random_seed(0)
    load = dict(image_size=(CNN_SIZE, CNN_SIZE), batch_size=32, seed=0)
    train = keras.utils.image_dataset_from_directory(data / "train", **load)
    val = keras.utils.image_dataset_from_directory(data / "val", shuffle=False, **load)
    inputs = keras.Input((CNN_SIZE, CNN_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for index, filters in enumerate((16, 32, 48, 64)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU()(x)
        if index < 3:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(len(CNN_CLASSES), activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name="my_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(train, validation_data=val, epochs=30, verbose=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def train_mobilenet(path: Path) -> Path:
    """MobileNetV2(alpha=0.35) nested as a backbone, trained with Adam on Fashion-MNIST 32×32 RGB."""
    import keras

    from kprune.data.fashion_mnist import load_arrays

    if path.is_file():
        return path
    keras.utils.set_random_seed(0)
    arrays, _ = load_arrays(download=False)
    images, labels = arrays["train"]
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]

    def rgb32(batch):
        return keras.ops.image.resize(
            keras.ops.repeat(keras.ops.cast(batch, "float32"), 3, axis=-1), (32, 32)
        )

    x = np.concatenate(
        [keras.ops.convert_to_numpy(rgb32(images[i : i + 4096])) for i in range(0, len(images), 4096)]
    )
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    # keras.applications' BatchNorm momentum (0.999) leaves the moving statistics far behind
    # the weights at this length: validation accuracy stayed at 9% for 5 epochs (measured).
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    inputs = keras.Input((32, 32, 3))
    features = backbone(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs))
    outputs = keras.layers.Dense(10, activation="softmax", name="classes")(
        keras.layers.GlobalAveragePooling2D()(features)
    )
    model = keras.Model(inputs, outputs, name="my_mobilenet")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, labels, batch_size=64, epochs=6, validation_split=0.1, verbose=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def experiments(seeds: list[int]) -> list[dict]:
    """Every run: model, setting, seed, the `kprune prune` flags and the run dir."""
    cnn = RUNS / "models" / "my_cnn.keras"
    mobilenet = RUNS / "models" / "my_mobilenet.keras"
    models = {
        "cnn": ["--model", str(cnn), "--dataset", f"folder:{RUNS / 'cnn_data'}", "--target-flops", "0.5"],
        "mobilenet": ["--model", str(mobilenet), "--target-flops", "0.5"],
        "squeezenet90": ["--target-params", "0.9"],
        "squeezenet95": ["--target-params", "0.95"],
    }
    runs = []
    for name, flags in models.items():
        for setting, extra in SETTINGS.items():
            if setting in ("new", "distill"):
                extra = [*extra, *earlier_final(name)]
            for seed in seeds:
                runs.append(
                    {
                        "model": name,
                        "setting": setting,
                        "seed": seed,
                        "flags": [*flags, *extra, "--seed", str(seed), "--criterion", "taylor"],
                        "dir": RUNS / name / f"{setting}-seed{seed}",
                    }
                )
    return runs


def run_one(run: dict) -> dict | None:
    """Runs (or resumes) one pruning run; returns its report, or None if it failed."""
    evidence = EVIDENCE / run["model"] / f"{run['setting']}-seed{run['seed']}.json"
    if evidence.is_file():
        return load_json(evidence)
    resume = ["--resume"] if (run["dir"] / "checkpoint" / "state.json").is_file() else []
    command = ["kprune", "prune", *run["flags"], "--out", str(run["dir"]), *resume]
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(command)}", flush=True)
    log = run["dir"].parent / f"{run['dir'].name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream:
        code = subprocess.call(
            command,
            stdout=stream,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "KPRUNE_PROGRESS": "0"},
        )
    report_path = run["dir"] / "report.json"
    if code != 0 or not report_path.is_file():
        print(f"  failed (exit {code}); see {log}", flush=True)
        return None
    report = load_json(report_path)
    write_json(evidence, report)
    return report


def distillation_cost(model_path: str, dataset: str, steps: int = 150, repeats: int = 3) -> dict:
    """Seconds of ``steps`` fine-tune batches with and without the teacher, on the model with
    half of its removable channels gone (lowest L1 norm), alternated ``repeats`` times after
    one untimed warm-up each (tracing)."""
    import keras

    from kprune.data import choose_preprocessing, load
    from kprune.graph import analyze
    from kprune.graph.rebuild import flatten_model
    from kprune.modelio import load_model, resolve_model_path
    from kprune.pruning.ranking import rank_groups
    from kprune.pruning.selection import removable_channels, select
    from kprune.surgery import remove_filters
    from kprune.training.distill import Distillation
    from kprune.training.setup import TrainingSetup, TrainSettings

    path = resolve_model_path(model_path)
    model = load_model(path)
    shape = tuple(model.input_shape[1:])
    chosen = choose_preprocessing(None, path, shape)
    data = load(dataset, "train", input_shape=shape, batch_size=64, preprocessing=chosen.preprocessing)
    teacher = flatten_model(model)
    graph = analyze(teacher)
    scores = rank_groups(teacher, data, "l1", graph=graph, num_batches=1)
    student = remove_filters(
        teacher, select(graph, scores, sum(removable_channels(graph).values()) // 2), graph=graph
    )
    frozen = keras.models.clone_model(teacher)
    frozen.set_weights(teacher.get_weights())
    frozen.trainable = False
    plain = TrainingSetup.for_model(
        model, TrainSettings(optimizer="sgd", learning_rate=1e-3, warmup_epochs=0)
    )
    distilled = dataclasses.replace(plain, distillation=Distillation(), teacher=frozen)
    times = {"plain": [], "distill": []}
    for setup in (plain, distilled):  # warm-up: tracing
        setup.finetune(student, data, 5)
    for _ in range(repeats):
        for name, setup in (("plain", plain), ("distill", distilled)):
            started = time.perf_counter()
            setup.finetune(student, data, steps)
            times[name].append(time.perf_counter() - started)
    best = {name: min(values) for name, values in times.items()}
    return {"steps": steps, "seconds": times, "ratio": best["distill"] / best["plain"]}


MODEL_LABELS = {
    "cnn": "(a) small CNN, image folder, 4 classes, 40×40 RGB (1,700 training images)",
    "mobilenet": "(b) MobileNetV2 α=0.35 nested backbone, Fashion-MNIST 32×32 RGB",
    "squeezenet90": "(c) shipped SqueezeNet 1.1, Fashion-MNIST",
    "squeezenet95": "(c) shipped SqueezeNet 1.1, Fashion-MNIST",
}
TARGET_LABELS = {
    "cnn": "50% FLOPs",
    "mobilenet": "50% FLOPs",
    "squeezenet90": "90% params",
    "squeezenet95": "95% params",
}
SETTING_LABELS = {
    "old": "old defaults",
    "new": "scaled, 1,000-batch final",
    "distill": "scaled, 1,000-batch final, distillation",
    "final10": "the defaults now: 10-epoch final, distillation",
}


def summarize(evidence: Path = EVIDENCE) -> dict:
    """{model: {setting: {seed: facts}}} from the evidence files."""
    found: dict = {}
    for path in sorted(evidence.glob("*/*-seed*.json")):
        setting, seed = path.stem.rsplit("-seed", 1)
        report = load_json(path)
        before, after = report["test_before"]["accuracy"], report["test_after"]["accuracy"]
        steps = [s for s in report["steps"] if s["step"] and not s.get("phase")]
        found.setdefault(path.parent.name, {}).setdefault(setting, {})[int(seed)] = {
            "before": 100 * before,
            "after": 100 * after,
            "drop": 100 * (before - after),
            "steps": len(steps),
            "wall_s": report["wall_time_s"],
            "params_removed": 1 - report["test_after"]["params"] / report["test_before"]["params"],
            "flops_removed": 1 - report["test_after"]["flops"] / report["test_before"]["flops"],
        }
    return found


def _mean_drop(runs: dict) -> float:
    return sum(run["drop"] for run in runs.values()) / len(runs)


def _cell(runs: dict) -> str:
    drops = [run["drop"] for run in runs.values()]
    mean = _mean_drop(runs)
    after = sum(run["after"] for run in runs.values()) / len(runs)
    spread = ""
    if len(drops) > 1:
        spread = f" ± {(sum((d - mean) ** 2 for d in drops) / (len(drops) - 1)) ** 0.5:.2f}"
    steps = sum(run["steps"] for run in runs.values()) / len(runs)
    minutes = sum(run["wall_s"] for run in runs.values()) / len(runs) / 60
    return f"{after:.2f}% ({signed(-mean)}{spread}; n={len(drops)}; {steps:.0f} steps, {minutes:.1f} min)"


def report_table(found: dict) -> str:
    lines = [
        "| model | target | unpruned | " + " | ".join(SETTING_LABELS.values()) + " |",
        "| --- | --- | --: | " + " | ".join("--:" for _ in SETTING_LABELS) + " |",
    ]
    for model, label in MODEL_LABELS.items():
        if model not in found:
            continue
        by_setting = found[model]
        before = next(iter(next(iter(by_setting.values())).values()))["before"]
        cells = [_cell(by_setting[s]) if s in by_setting else "not run" for s in SETTING_LABELS]
        lines.append(f"| {label} | {TARGET_LABELS[model]} | {before:.2f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SHORT_LABELS = {
    "cnn": "small CNN, image folder (1,700 images)",
    "mobilenet": "MobileNetV2 α=0.35 backbone",
    "squeezenet90": "shipped SqueezeNet 1.1",
    "squeezenet95": "shipped SqueezeNet 1.1",
}


def readme_table(found: dict) -> str:
    """The README's short table: the change in test top-1 (points) per setting."""
    lines = [
        "| your model (test top-1 before) | target | " + " | ".join(SETTING_LABELS.values()) + " |",
        "| --- | --- | " + " | ".join("--:" for _ in SETTING_LABELS) + " |",
    ]
    for model in MODEL_LABELS:
        if model not in found:
            continue
        by_setting = found[model]
        before = next(iter(next(iter(by_setting.values())).values()))["before"]
        cells = []
        for setting in SETTING_LABELS:
            runs = by_setting.get(setting)
            if not runs:
                cells.append("not run")
                continue
            cells.append(signed(-_mean_drop(runs)) + (f" ({len(runs)} seeds)" if len(runs) > 1 else ""))
        lines.append(
            f"| {SHORT_LABELS[model]} ({before:.2f}%) | {TARGET_LABELS[model]} removed | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


# issue 27: the most test points the defaults may lose (mean over 3 seeds for the SqueezeNet)
GOALS = {"cnn": 1.0, "mobilenet": 1.0, "squeezenet90": 0.3, "squeezenet95": 1.0}
GOAL_SEEDS = {"squeezenet90": 3, "squeezenet95": 3}
RECOVERY_LABELS = {
    "final4": "a 4-epoch final fine-tune",
    "final4lr": "4 epochs at a tenth of the learning rate",
    "long": "250 fine-tune batches per step (the default: 84) and 4 final epochs",
}


def goal_lines(found: dict, setting: str = "final10") -> list[str]:
    """Whether ``setting`` (the defaults) meets each model's goal, with its numbers."""
    lines = []
    for model, limit in GOALS.items():
        runs = found.get(model, {}).get(setting)
        where = (
            f"{MODEL_LABELS[model].split(',')[0]} at {TARGET_LABELS[model]} removed, at most {limit:g} point"
        )
        if not runs:
            lines.append(f"{where}: not run")
            continue
        mean = _mean_drop(runs)
        change = signed(-mean)
        needed = GOAL_SEEDS.get(model, 1)
        if len(runs) < needed:
            verdict = f"not shown ({change} on {len(runs)} of {needed} seeds)"
        else:
            verdict = ("met" if mean <= limit else "missed") + f" ({change}, n={len(runs)})"
        lines.append(f"{where}: **{verdict}**")
    return lines


def write_results(found: dict, doc: Path = ROOT / "docs" / "RESULTS.md") -> None:
    cost_path = EVIDENCE / "distillation_cost.json"
    costs = load_json(cost_path) if cost_path.is_file() else {}
    cost_line = ", ".join(f"{name} {value['ratio']:.2f}×" for name, value in costs.items()) or "not measured"
    ablation = ""
    cnn = found.get("cnn", {})
    if {"step2.5", "step10"} & set(cnn) and "distill" in cnn:
        parts = [
            f"{label}: {_cell(cnn[key])}"
            for key, label in (("step2.5", "2.5%"), ("distill", "5% (the default)"), ("step10", "10%"))
            if key in cnn
        ]
        ablation = (
            "Step size, on the small CNN with distillation (share of the removable channels per "
            "step; `--settings step2.5,step10`): " + "; ".join(parts) + "."
        )
    if "sgd" in cnn and "distill" in cnn:
        ablation += (
            "\n\nOptimizer, on the small CNN with distillation (`--settings sgd`): the model's compiled "
            f"Adam at 1e-3 (the default): {_cell(cnn['distill'])}; SGD with Nesterov momentum at 0.01 "
            f"(kprune's fallback for a model that is not compiled): {_cell(cnn['sgd'])}."
        )
    recovery = []
    for model in ("squeezenet90", "squeezenet95"):
        runs = found.get(model, {})
        for setting, label in RECOVERY_LABELS.items():
            if setting in runs and "distill" in runs:
                seeds = set(runs[setting]) & set(runs["distill"])  # the same seeds side by side
                recovery.append(
                    f"{TARGET_LABELS[model]}, {label}: {_cell({s: runs[setting][s] for s in seeds})} "
                    f"against {_cell({s: runs['distill'][s] for s in seeds})} with the 1,000-batch final"
                )
    if recovery:
        ablation += (
            "\n\nOther recovery settings, on the shipped SqueezeNet with distillation (same seeds as the "
            "1,000-batch final beside it; `--settings final4,final4lr,long`):\n\n"
            + "\n".join(f"- {line}" for line in recovery)
            + "\n\nAt 95% the 4-epoch final fine-tune at learning rate 0.01 lowered validation "
            "accuracy from 88.18% to 82.18%, the same to the digit in a second run; that run "
            "predates the rule that now discards a final fine-tune which lowers validation. "
            "A row with n=1 is one seed: it cannot separate settings whose difference is within "
            "the spread over seeds (the ± in the table above)."
        )
    goals = "Goals of issue 27, for the defaults now:\n\n" + "\n".join(
        f"- {line}" for line in goal_lines(found)
    )
    text = "\n".join(
        [
            "Test top-1 after `kprune prune --criterion taylor` with nothing but a target; cell: "
            "accuracy (change in points against the unpruned model, mean ± sample std over n seeds; "
            "pruning steps; wall time per run). "
            "Generated by `python -m scripts.experiments.bench_defaults --report` from docs/results/defaults/ "
            "(the runs: `python -m scripts.experiments.bench_defaults`). Host: 2-core x86-64 sandbox, "
            "shared with other work while the runs went on (wall times are not benchmarks).",
            "",
            report_table(found),
            "",
            goals,
            "",
            f"Distillation's extra fine-tune time (teacher forward pass per batch; best of 3 "
            f"alternated passes of 150 batches, on each model with half its removable channels gone; "
            f"`python -m scripts.experiments.bench_defaults --cost`): {cost_line}.",
            "",
            ablation,
        ]
    )
    replace_section(doc, "defaults", "Default settings on models that are not ours", text)
    replace_section(ROOT / "README.md", "defaults", "Your own model, default settings", readme_table(found))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="cnn,mobilenet,squeezenet90,squeezenet95", help="Comma-separated models to run."
    )
    parser.add_argument("--settings", default=",".join(SETTING_LABELS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--prepare-only", action="store_true", help="Only build the data and models.")
    parser.add_argument(
        "--report", action="store_true", help="Only write the RESULTS section from the evidence."
    )
    parser.add_argument(
        "--cost", action="store_true", help="Only measure distillation's extra fine-tune time on each model."
    )
    args = parser.parse_args(argv)
    wanted, settings = args.only.split(","), args.settings.split(",")
    if args.report:
        found = summarize()
        write_results(found)
        print(report_table(found))
        return 0
    if "cnn" in wanted:
        image_folder(RUNS / "cnn_data")
        train_cnn(RUNS / "cnn_data", RUNS / "models" / "my_cnn.keras")
    if "mobilenet" in wanted:
        train_mobilenet(RUNS / "models" / "my_mobilenet.keras")
    if args.prepare_only:
        return 0
    if args.cost:
        sources = {
            "cnn": (str(RUNS / "models" / "my_cnn.keras"), f"folder:{RUNS / 'cnn_data'}"),
            "mobilenet": (str(RUNS / "models" / "my_mobilenet.keras"), "fashion_mnist"),
            "squeezenet90": ("models/squeezenet1_1_fmnist_sgd.keras", "fashion_mnist"),
        }
        path = EVIDENCE / "distillation_cost.json"
        costs = load_json(path) if path.is_file() else {}  # --only re-measures some, keeps the rest
        costs.update({name: distillation_cost(*source) for name, source in sources.items() if name in wanted})
        write_json(path, costs)
        print(json.dumps({name: round(cost["ratio"], 3) for name, cost in costs.items()}))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    for run in experiments(seeds):
        if run["model"] in wanted and run["setting"] in settings:
            run_one(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
