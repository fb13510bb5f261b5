#!/usr/bin/env bash
# The second architecture of docs/RESULTS.md: MobileNetV2 on Fashion-MNIST
# (real data, offline). Trains the baseline (if models/ does not have it),
# prunes it with Taylor ranking to 90% of its FLOPs removed with snapshots
# at 30/50/60/70/80/85/90%, gives every snapshot — and the unpruned baseline, the
# control — the same final fine-tune as the SqueezeNet experiment (EPOCHS
# epochs of SGD), prunes it once more to a latency target (the predicted
# latency of the largest FLOPs reduction within 0.5 point), keeps the
# evidence in $EVIDENCE, and benchmarks both
# architectures (TFLite XNNPACK, 1 thread, batch 1) for the section that
# scripts/experiments/results_mobilenet.py writes.
#
#   bash scripts/experiments/reproduce_mobilenet.sh       # about 1.5 h on 2 CPU cores
#   python -m scripts.experiments.results_mobilenet docs/results/mobilenet_v2
#
# Re-running continues where it stopped: a killed baseline training or
# pruning run resumes, and finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-runs/mobilenet_v2}
BASELINE=${BASELINE:-models/mobilenet_v2_fmnist.keras}
CONFIG=${CONFIG:-configs/mobilenet_v2_fmnist_taylor.yaml}
TARGETS=${TARGETS:-"30 50 60 70 80 85 90"}
EPOCHS=${EPOCHS:-3}
EVIDENCE=${EVIDENCE:-docs/results/mobilenet_v2}
mkdir -p "$OUT" "$EVIDENCE"

if [ ! -f "${BASELINE%.keras}.card.json" ]; then
  kprune train --model mobilenet_v2 --input-shape 32,32,1 --dataset fashion_mnist \
    --epochs 20 --batch-size 256 --out "$BASELINE" --resume 2>&1 | tee -a "$OUT/baseline.log"
fi

snapshots=$(for t in $TARGETS; do printf '0.%s,' "$t"; done)
snapshots=${snapshots%,}
highest=$(for t in $TARGETS; do echo "$t"; done | sort -n | tail -1)
run="$OUT/taylor"
if [ ! -f "$run/pruned.card.json" ]; then
  resume=""
  [ -f "$run/checkpoint/state.json" ] && resume="--resume"
  mkdir -p "$run"
  kprune prune --config "$CONFIG" --model "$BASELINE" --target-flops "0.$highest" \
    --snapshots "$snapshots" --final-finetune-epochs 0 --out "$run" $resume 2>&1 | tee -a "$run.log"
fi

# The same final fine-tune for every snapshot and for the unpruned baseline.
finetune() {  # SOURCE OUT
  [ -f "${2%.keras}.card.json" ] && return 0
  kprune train --model "$1" --dataset fashion_mnist --optimizer sgd --lr 0.01 --weight-decay 5e-4 \
    --warmup-epochs 0 --epochs "$EPOCHS" --out "$2" 2>&1 | tee -a "$OUT/finetune.log"
}
for target in $TARGETS; do
  finetune "$run/snapshots/flops-$target.keras" "$run/finetuned-$target.keras"
done
finetune "$BASELINE" "$OUT/baseline-finetuned.keras"
cp "$run/report.json" "$run"/finetuned-*.card.json "$EVIDENCE/"
cp "$OUT/baseline-finetuned.card.json" "$EVIDENCE/control.card.json"

# A latency target (TFLite XNNPACK, 1 thread, a table measured here) to the
# predicted latency of the picked FLOPs snapshot: the two compared at equal latency.
latency="$OUT/latency"
if [ ! -f "$latency/pruned.card.json" ]; then
  [ -f "$OUT/latency_table.json" ] || kprune profile "$BASELINE" --threads 1 --no-cache --out "$OUT/latency_table.json"
  goal=$(python -m scripts.experiments.results_mobilenet "$EVIDENCE" --latency-goal "$OUT/latency_table.json" --run "$run")
  resume=""
  [ -f "$latency/checkpoint/state.json" ] && resume="--resume"
  mkdir -p "$latency"
  kprune prune --config "$CONFIG" --model "$BASELINE" --target-latency "$goal" \
    --latency-table "$OUT/latency_table.json" --final-finetune-epochs 0 --out "$latency" $resume 2>&1 | tee -a "$latency.log"
fi
finetune "$latency/pruned.keras" "$OUT/latency-finetuned.keras"
cp "$latency/report.json" "$EVIDENCE/latency-report.json"
cp "$OUT/latency_table.json" "$EVIDENCE/"
cp "$OUT/latency-finetuned.card.json" "$EVIDENCE/"

# Latency: each architecture's baseline and its pruned models alternating in
# one run (TFLite XNNPACK fp32, 1 thread, batch 1).
bench() {  # OUT MODELS...
  local out=$1; shift
  [ -f "$out" ] && return 0
  kprune bench "$@" --runtimes tflite --batch-sizes 1 --threads 1 --repeats 200 --output "$out"
}
bench "$EVIDENCE/bench_mobilenet_v2.json" "$BASELINE" $(for t in $TARGETS; do echo "$run/finetuned-$t.keras"; done) \
  "$OUT/latency-finetuned.keras"
bench "$EVIDENCE/bench_squeezenet.json" models/squeezenet1_1_fmnist_sgd.keras models/squeezenet1_1_fmnist_pruned.keras
python -m scripts.experiments.results_mobilenet "$EVIDENCE"
