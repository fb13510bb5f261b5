#!/usr/bin/env bash
# ViT-tiny end to end on Fashion-MNIST (real data, offline; issue 30): trains kprune's
# vit_tiny (4 blocks, 4 heads, width 64, patches of 4×4; AdamW, EPOCHS epochs), prunes it
# with Taylor ranking to TARGET of its FLOPs removed with kprune's defaults (heads and MLP
# units; the width is the residual stream under LayerNorm), exports the pruned model
# (TFLite fp32 and int8, ONNX; every file verified against Keras on test images) and times
# the fp32 and int8 TFLite files of both (XNNPACK, 1 thread, batch 1, alternating).
#
#   bash scripts/experiments/reproduce_vit.sh      # about 40 min on 2 CPU cores
#
# Re-running continues where it stopped: a killed training or pruning run resumes, and
# finished stages are skipped. Evidence (cards, the pruning report, the export check, the
# timings) goes to $EVIDENCE.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-runs/vit}
EPOCHS=${EPOCHS:-10}
TARGET=${TARGET:-0.5}
EVIDENCE=${EVIDENCE:-docs/results/vit}
mkdir -p "$OUT" "$EVIDENCE"

BASE="$OUT/vit_tiny_fmnist.keras"
if [ ! -f "${BASE%.keras}.card.json" ]; then
  kprune train --model vit_tiny --dataset fashion_mnist --epochs "$EPOCHS" --out "$BASE" --resume \
    2>&1 | tee -a "$OUT/train.log"
fi

run="$OUT/prune"
if [ ! -f "$run/pruned.card.json" ]; then
  resume=""
  [ -f "$run/checkpoint/state.json" ] && resume="--resume"
  mkdir -p "$run"
  kprune prune --model "$BASE" --criterion taylor --target-flops "$TARGET" --out "$run" $resume \
    2>&1 | tee -a "$run.log"
fi

if [ ! -f "$OUT/export/pruned.export.json" ]; then
  kprune export "$run/pruned.keras" --out "$OUT/export" --quantize none,int8 \
    --dataset fashion_mnist 2>&1 | tee -a "$OUT/export.log"
fi

kprune bench "$BASE" "$run/pruned.keras" --runtimes tflite --batch-sizes 1 --threads 1 \
  --precisions fp32,int8 --calibration fashion_mnist --repeats 300 \
  --output "$EVIDENCE/bench.json" 2>&1 | tee "$OUT/bench.log"
cp "${BASE%.keras}.card.json" "$EVIDENCE/vit_tiny_fmnist.card.json"
cp "$run/report.json" "$EVIDENCE/prune_report.json"
cp "$run/pruned.card.json" "$EVIDENCE/pruned.card.json"
cp "$OUT/export/pruned.export.json" "$EVIDENCE/pruned.export.json"
