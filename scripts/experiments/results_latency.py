"""The latency section of docs/RESULTS.md, from the files of scripts/experiments/reproduce_latency.sh.

python -m scripts.experiments.results_latency runs/latency --baseline models/squeezenet1_1_fmnist_sgd.keras --pick
    benchmarks the latency-pruned model and every snapshot of the params and
    FLOPs runs in one run, and picks, for each of those runs, the model whose
    measured latency is closest to the latency-pruned model's
    (writes pick.json and NAME.chosen.keras);
python -m scripts.experiments.results_latency runs/latency --baseline models/squeezenet1_1_fmnist_sgd.keras --collect
    copies the run's small result files (tables, picks, timings, fine-tune
    cards, reports) to docs/results/latency/, the committed evidence;
python -m scripts.experiments.results_latency docs/results/latency --baseline models/squeezenet1_1_fmnist_sgd.keras
    rewrites the section between <!-- latency:start --> and <!-- latency:end -->
    of docs/RESULTS.md from that evidence (runs/ does not survive a session);
python -m scripts.experiments.results_latency runs/latency --baseline models/squeezenet1_1_fmnist_sgd.keras --ship
    copies the latency-pruned model, its card and a fresh bundle into models/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from scripts.checks.shipped_bundles import write_bundle
from scripts.common import load_json, replace_section, write_json

RUNS = ("latency", "params", "flops")
LABELS = {"latency": "latency target", "params": "params target", "flops": "FLOPs target"}
RESULTS = Path("docs/RESULTS.md")
EVIDENCE = Path("docs/results/latency")
SHIPPED = Path("models/squeezenet1_1_fmnist_latency.keras")


def pick(out: Path, baseline: str) -> None:
    import kprune
    from scripts.benchmarks.bench_latency_model import measure_warm

    candidates = {"latency": [out / "latency" / "pruned.keras"]}
    for name in ("params", "flops"):
        candidates[name] = sorted((out / name / "snapshots").glob("*.keras")) + [out / name / "pruned.keras"]
    files = [baseline] + [str(path) for paths in candidates.values() for path in paths]
    times = measure_warm([kprune.load_model(f) for f in files], threads=1, repeats=200)
    measured = dict(zip(files, times))
    goal = measured[str(candidates["latency"][0])]
    chosen = {}
    for name, paths in candidates.items():
        best = min(paths, key=lambda path: abs(measured[str(path)] - goal))
        chosen[name] = str(best)
        shutil.copyfile(best, out / f"{name}.chosen.keras")
    write_json(out / "pick.json", {"measured_ms": measured, "goal_ms": goal, "chosen": chosen})
    for name, path in chosen.items():
        print(f"{name}: {path} ({measured[path]:.3f} ms; latency-pruned {goal:.3f} ms)")


def measure_final(out: Path, baseline: str) -> None:
    """fp32 and int8 TFLite latency of the baseline and the three fine-tuned models, each
    timed warm on its own (3 passes × 300 runs, median, mean of passes): final.json."""
    import tempfile

    import kprune
    from kprune.export.templates.kprune_profile import (
        environment,
        tflite_runner,
        time_group,
    )
    from scripts.experiments.accuracy_tflite import deployed_files

    files = [baseline] + [str(out / f"{name}-finetuned.keras") for name in RUNS]
    rng = np.random.default_rng(0)
    result = {"models": [], "environment": environment(), "repeats": 300, "passes": 3}
    with tempfile.TemporaryDirectory(prefix="kprune-final-") as folder:
        runners = []
        for index, path in enumerate(files):
            model = kprune.load_model(path)
            fp32, int8 = deployed_files(model, path, Path(folder), str(index))
            runners.append((tflite_runner(fp32, 1, rng), tflite_runner(int8, 1, rng)))
            result["models"].append(
                {"path": path, "params": kprune.count_params(model), "flops": kprune.count_flops(model)}
            )
        passes = [
            [[time_group([run], 20, 300, passes=1)[0] * 1000 for run in pair] for pair in runners]
            for _ in range(3)
        ]
    means = np.mean(passes, axis=0)
    for entry, (fp32_ms, int8_ms) in zip(result["models"], means):
        entry["fp32_ms"], entry["int8_ms"] = float(fp32_ms), float(int8_ms)
    write_json(out / "final.json", result)


def section(out: Path, baseline_path: str) -> str:
    from kprune.card import read_card
    from kprune.modelio import resolve_model_path

    baseline = read_card(resolve_model_path(baseline_path))
    table = load_json(out / "latency_table.json")
    picked = load_json(out / "pick.json")
    final = load_json(out / "final.json")
    cards = {name: load_json(out / f"{name}-finetuned.card.json") for name in RUNS}
    finetunes = {json.dumps([card["epochs"], card["training"]], sort_keys=True) for card in cards.values()}
    if len(finetunes) != 1:
        raise SystemExit(f"The final fine-tunes differ ({sorted(finetunes)}): the models are not comparable.")
    epochs, training = cards["latency"]["epochs"], cards["latency"]["training"]
    latency_config = _report(out, "latency")["config"]
    base_entry = final["models"][0]
    base_fp32, base_int8 = base_entry["fp32_ms"], base_entry["int8_ms"]
    lines = [
        f"_Generated by `python -m scripts.experiments.results_latency {out.as_posix()} --baseline "
        f"{baseline_path}` from the files of `scripts/experiments/reproduce_latency.sh`._",
        "",
        f"Latency table: `kprune profile {baseline_path} --threads 1` — TFLite XNNPACK, 1 thread, "
        f"measured tile step {_step(out)} output channels; machine: {table['environment']['machine']}.",
        "",
        "| pruned by | params removed | FLOPs removed | FLOPs ratio | test top-1 | Δ (points) | "
        "fp32 ms | fp32 speed-up | speed-up ÷ FLOPs ratio | int8 ms | int8 speed-up over fp32 baseline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| (baseline) | 0% | 0% | 1.00× | {100 * baseline['test_accuracy']:.2f}% | – | {base_fp32:.3f} | 1.00× "
        f"| – | {base_int8:.3f} | {base_fp32 / base_int8:.2f}× |",
    ]
    summary = {}
    for name, model in zip(RUNS, final["models"][1:]):
        card = cards[name]
        flops_ratio = baseline["flops"] / model["flops"]
        speedup = base_fp32 / model["fp32_ms"]
        int8_speedup = base_fp32 / model["int8_ms"]
        drop = 100 * (baseline["test_accuracy"] - card["test_accuracy"])
        summary[name] = {
            "speedup": speedup,
            "int8_speedup": int8_speedup,
            "drop": drop,
            "ratio": speedup / flops_ratio,
            "accuracy": card["test_accuracy"],
        }
        lines.append(
            f"| {LABELS[name]} ({Path(picked['chosen'][name]).name}) | {100 * (1 - model['params'] / baseline['params']):.1f}% "
            f"| {100 * (1 - model['flops'] / baseline['flops']):.1f}% | {flops_ratio:.2f}× "
            f"| {100 * card['test_accuracy']:.2f}% | {-drop:+.2f} | {model['fp32_ms']:.3f} | {speedup:.2f}× "
            f"| {speedup / flops_ratio:.2f} | {model['int8_ms']:.3f} | {int8_speedup:.2f}× |"
        )
    lines += [
        "",
        "Latencies: `python -m scripts.experiments.results_latency runs/latency --baseline ... --measure` exports "
        "each model's fp32 and int8 TFLite files (int8 calibrated on 300 training images) and times "
        "each file on its own, warm, as a deployed model runs (20 warm-up runs, median of 300, mean "
        "of 3 passes over all files; TFLite XNNPACK, 1 thread, batch 1, pinned to one core). "
        "The params and FLOPs runs are compared at the snapshot whose measured latency (same method, "
        f"200 runs) was closest to the latency-pruned model's {picked['goal_ms']:.3f} ms (`--pick`, "
        "before the final fine-tunes). Pruning steps: Taylor, 200 fine-tune batches each; the latency run "
        f"(target: remove {latency_config['target_latency']:.0%} of the predicted latency) removes "
        f"{latency_config['latency_per_step']:.0%} of the start latency per step, the params run 64 filters, "
        "the FLOPs run 128 (a FLOPs target takes the cheap late filters first and needs many more "
        f"64-filter steps). Every model got the same {epochs:g}-epoch final fine-tune "
        f"({training['optimizer'].upper()}, learning rate {training['learning_rate']:g}, cosine decay). One seed: "
        "differences of a few tenths of a point in accuracy are within run-to-run noise.",
        "",
        "Goals of the latency issue (TFLite, 1 thread, batch 1, this machine): fp32 speed-up ≥ 4.0× at "
        "≤ 0.5 point: **{}** ({:.2f}× at {:+.2f}); int8 ≥ 10× over the fp32 baseline at ≤ 1 point: "
        "**{}** ({:.2f}×); speed-up ÷ FLOPs ratio ≥ 0.85: **{}** ({:.2f}).".format(
            _met(summary["latency"]["speedup"] >= 4.0 and summary["latency"]["drop"] <= 0.5),
            summary["latency"]["speedup"],
            -summary["latency"]["drop"],
            _met(summary["latency"]["int8_speedup"] >= 10 and summary["latency"]["drop"] <= 1.0),
            summary["latency"]["int8_speedup"],
            _met(summary["latency"]["ratio"] >= 0.85),
            summary["latency"]["ratio"],
        ),
    ]
    lines += _prediction_table(out)
    return "\n".join(lines)


def _prediction_table(out: Path) -> list[str]:
    """How well tables predict whole-model latency (scripts/benchmarks/bench_latency_model.py --out OUT/latency_model.json)."""
    path = out / "latency_model.json"
    if not path.is_file():
        return []
    from scripts.benchmarks.bench_latency_model import (
        DEFAULT_PROFILE_SECONDS,
        DEFAULT_SECONDS,
    )

    results = load_json(path)
    # Runs before the JSON recorded its settings used the script's defaults of then.
    settings = {"repeats": 100, "seconds": 60.0, "profile_seconds": 30.0, **results[0].get("settings", {})}
    options = "".join(
        f" --{name.replace('_', '-')} {settings[name]:g}"
        for name, default in (("seconds", DEFAULT_SECONDS), ("profile_seconds", DEFAULT_PROFILE_SECONDS))
        if settings[name] != default
    )
    lines = [
        "",
        "#### How well the latency table predicts",
        "",
        f"`python -m scripts.benchmarks.bench_latency_model --variants {results[0]['variants']}{options} --out {path}`: "
        "for each architecture, the table of the unpruned model predicts random pruned variants (every "
        "prunable group keeps a random 10–100% of its channels), then each is measured warm on its own "
        f"(TFLite, 1 thread, batch 1, pinned to one core; median of {settings['repeats']} consecutive runs in "
        f"each variant's fastest pass, passes over all variants for ≥ {settings['seconds']:g} s). The tables "
        "time each layer file back to back, inference only, fastest pass over sweeps for "
        f"≥ {settings['profile_seconds']:g} s or 20 sweeps, whichever ends first. "
        "Goal: ≥ 90% of the variants within ±10%, Spearman ρ ≥ 0.95. "
        f"Machine: {_machines(results)}. Weight traffic: the calibration's term for weights beyond what the "
        "caches hold (docs/LATENCY.md), where the fit keeps it.",
        "",
        "| architecture (input) | variants | within ±10% | median abs. error | worst | Spearman ρ | "
        "unpruned: predicted / measured ms | tile step | weight traffic | profile time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    inputs = {
        "squeezenet": "SqueezeNet 1.1, 28×28×1",
        "mobilenetv2": "MobileNetV2, 96×96×3",
        "resnet50": "ResNet50, 64×64×3",
    }
    for r in results:
        lines.append(
            f"| {inputs.get(r['architecture'], r['architecture'])} | {r['variants']} | {r['within_10pct']:.0%} "
            f"| {r['median_abs_error']:.1%} | {r['max_abs_error']:.1%} | {r['spearman']:.3f} "
            f"| {r['full_predicted_ms']:.3f} / {r['full_measured_ms']:.3f} | {r['table']['step']} "
            f"| {_traffic(r['table'])} | {_profile_time(r['profile_s'])} |"
        )
    met = all(r["within_10pct"] >= 0.9 and r["spearman"] >= 0.95 for r in results)
    lines += ["", f"Goal of the latency issue for every architecture, in this one run: **{_met(met)}**."]
    return lines


def _profile_time(seconds: float) -> str:
    # Profiling takes minutes; a second or two means the table came from kprune's cache.
    return f"{seconds:.0f} s" if seconds >= 5 else "cached"


def _machines(results: list[dict]) -> str:
    return ", ".join(sorted({str(r["table"].get("machine")) for r in results}))


def _traffic(table: dict) -> str:
    """The fitted weight-traffic term of a table summary ("–" when not used or not in the format)."""
    traffic = table.get("traffic_ms_per_mweight", 0.0)
    if not traffic:
        return "–"
    return f"{traffic:.3f} ms per M weights beyond {table['resident_mweights']:.2f} M"


def _report(out: Path, name: str) -> dict:
    """A run's report: NAME/report.json in a run folder, NAME.report.json in the evidence."""
    for path in (out / name / "report.json", out / f"{name}.report.json"):
        if path.is_file():
            return load_json(path)
    raise SystemExit(f"No report of the {name} run in {out}.")


def collect(out: Path, evidence: Path = EVIDENCE) -> None:
    """Copies the run's small result files to the committed evidence folder."""
    evidence.mkdir(parents=True, exist_ok=True)
    files = [out / name for name in ("latency_table.json", "pick.json", "final.json", "latency_model.json")]
    files += [out / f"{name}-finetuned.card.json" for name in RUNS]
    for path in files:
        if path.is_file():
            shutil.copyfile(path, evidence / path.name)
    for name in RUNS:
        shutil.copyfile(out / name / "report.json", evidence / f"{name}.report.json")


def _met(value: bool) -> str:
    return "met" if value else "not met"


def _step(out: Path) -> int:
    from kprune.latency.table import LatencyTable

    return LatencyTable.load(out / "latency_table.json").step


def ship(out: Path) -> None:
    tuned = out / "latency-finetuned.keras"
    shutil.copyfile(tuned, SHIPPED)
    for suffix in (".card.json", ".card.md"):
        source = tuned.with_name(tuned.name.replace(".keras", suffix))
        if source.is_file():
            shutil.copyfile(source, SHIPPED.with_name(SHIPPED.name.replace(".keras", suffix)))
    write_bundle(SHIPPED.with_name(SHIPPED.stem + "_bundle").as_posix())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--pick", action="store_true")
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--measure", action="store_true", help="time the final models (final.json)")
    parser.add_argument("--collect", action="store_true", help=f"copy the run's result files to {EVIDENCE}/")
    args = parser.parse_args()
    if args.collect:
        collect(args.out)
        return
    if args.ship:
        ship(args.out)
        return
    if args.pick:
        if not (args.out / "pick.json").is_file():
            pick(args.out, args.baseline)
        return
    if args.measure:
        measure_final(args.out, args.baseline)
        return
    text = section(args.out, args.baseline)
    replace_section(RESULTS, "latency", "Pruning for measured latency", text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
