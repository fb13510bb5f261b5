#!/usr/bin/env bash
# Reproduces the experiment of docs/RESULTS.md on Fashion-MNIST (real data, offline):
# for each criterion, one pruning trajectory from the shipped SqueezeNet 1.1
# baseline to 90% of its parameters removed, with snapshots at 50/70/80/90%;
# every snapshot then gets the same final fine-tune (EPOCHS epochs of SGD) and
# is evaluated on the 10,000-image test split; so is the unpruned baseline
# after the same fine-tune (the control), and a Taylor run with channel counts
# kept multiples of 8. Then the oracle correlations,
# exports, latency benchmark and the tables/plots of docs/RESULTS.md.
#
#   bash scripts/experiments/reproduce.sh                 # everything (hours on 2 CPU cores)
#   CRITERIA="taylor" TARGETS="50 70" bash scripts/experiments/reproduce.sh   # a part
#   SEEDS="0 1 2" bash scripts/experiments/reproduce.sh   # three seeds: results.py adds mean ± std and paired differences
#   PART=seeds SEEDS="1 2" CRITERIA="taylor l2" TARGETS="70 90" bash scripts/experiments/reproduce.sh   # only the seeded runs
#
# Each finished (seed, criterion) leaves its report and fine-tune cards in
# $EVIDENCE/seed-N/CRITERION/ (committed, small), so seeds run in different
# sessions or on different machines add up in results.py's seed table.
#
# Re-running continues where it stopped: finished steps are skipped and a
# killed pruning run resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-runs/reproduce}
BASELINE=${BASELINE:-models/squeezenet1_1_fmnist_sgd.keras}
CRITERIA=${CRITERIA:-"taylor l2 combined l1 random"}
TARGETS=${TARGETS:-"50 70 80 90"}
EPOCHS=${EPOCHS:-3}
CONFIG=${CONFIG:-configs/squeezenet_fmnist_taylor.yaml}
SEEDS=${SEEDS:-0}
PART=${PART:-all}
EVIDENCE=${EVIDENCE:-docs/results/seeds}
mkdir -p "$OUT"

snapshots=$(for t in $TARGETS; do printf '0.%s,' "$t"; done)
snapshots=${snapshots%,}
highest=$(for t in $TARGETS; do echo "$t"; done | sort -n | tail -1)

# Several seeds (SEEDS="0 1 2"): the seed changes the ranking batches and the
# fine-tune order; seed 0 keeps the paths above, seed N goes to $OUT/seed-N/.
for seed in $SEEDS; do
  base="$OUT"
  [ "$seed" != 0 ] && base="$OUT/seed-$seed"
  for criterion in $CRITERIA; do
    run="$base/$criterion"
    mkdir -p "$base"
    if [ ! -f "$run/pruned.card.json" ]; then
      resume=""
      [ -f "$run/checkpoint/state.json" ] && resume="--resume"
      kprune prune --config "$CONFIG" --model "$BASELINE" --criterion "$criterion" --seed "$seed" \
        --target-params "0.$highest" --snapshots "$snapshots" --final-finetune-epochs 0 \
        --out "$run" $resume 2>&1 | tee -a "$run.log"
    fi
    for target in $TARGETS; do
      tuned="$run/finetuned-$target.keras"
      [ -f "${tuned%.keras}.card.json" ] && continue
      kprune train --model "$run/snapshots/params-$target.keras" --dataset fashion_mnist \
        --optimizer sgd --lr 0.01 --weight-decay 5e-4 --warmup-epochs 0 --epochs "$EPOCHS" \
        --seed "$seed" --out "$tuned" 2>&1 | tee -a "$run.log"
    done
    mkdir -p "$EVIDENCE/seed-$seed/$criterion"
    cp "$run/report.json" "$run"/finetuned-*.card.json "$EVIDENCE/seed-$seed/$criterion/"
  done
done
[ "$PART" = seeds ] && exit 0

# Control: the unpruned baseline given the same final fine-tune, so the pruned
# models' accuracies can be told apart from the effect of extra training.
control="$OUT/baseline-finetuned.keras"
if [ ! -f "${control%.keras}.card.json" ]; then
  kprune train --model "$BASELINE" --dataset fashion_mnist \
    --optimizer sgd --lr 0.01 --weight-decay 5e-4 --warmup-epochs 0 --epochs "$EPOCHS" \
    --out "$control" 2>&1 | tee -a "$OUT/baseline-finetuned.log"
fi

# Latency with hardware-friendly channel counts: Taylor again to the highest
# target, every layer's filter count kept a multiple of 8 (round_to), with the
# same final fine-tune; results.py benchmarks it next to the unrounded model.
rounded="$OUT/round_to_8/taylor"
if [ ! -f "$rounded/pruned.card.json" ]; then
  resume=""
  [ -f "$rounded/checkpoint/state.json" ] && resume="--resume"
  mkdir -p "$rounded"
  kprune prune --config "$CONFIG" --model "$BASELINE" --criterion taylor --round-to 8 \
    --target-params "0.$highest" --final-finetune-epochs 0 --out "$rounded" $resume 2>&1 | tee -a "$rounded.log"
fi
tuned="$rounded/finetuned-$highest-round8.keras"
if [ ! -f "${tuned%.keras}.card.json" ]; then
  kprune train --model "$rounded/pruned.keras" --dataset fashion_mnist \
    --optimizer sgd --lr 0.01 --weight-decay 5e-4 --warmup-epochs 0 --epochs "$EPOCHS" \
    --out "$tuned" 2>&1 | tee -a "$rounded.log"
fi

kprune report $(for c in $CRITERIA; do echo "$OUT/$c"; done) --out "$OUT/accuracy_vs_params.png"
[ -f "$OUT/oracle.json" ] || python -m scripts.experiments.criterion_oracle --model "$BASELINE" --out "$OUT/oracle.json" | tee "$OUT/oracle.md"
python -m scripts.experiments.results "$OUT" --baseline "$BASELINE" --epochs "$EPOCHS"
