#!/usr/bin/env bash
# ViT-tiny end to end on Fashion-MNIST (real data, offline; issue 30): trains kprune's
# vit_tiny (4 blocks, 4 heads, width 64, patches of 4×4; AdamW, EPOCHS epochs), prunes it
# with Taylor ranking to TARGET of its FLOPs removed with kprune's defaults (heads and MLP
# units; the width is the residual stream under LayerNorm), exports the pruned model
# (TFLite fp32 and int8, ONNX; every file verified against Keras on test images; the test
# top-1 of both models' fp32 and int8 files on the full split) and times
# the fp32 and int8 TFLite files of both (XNNPACK, 1 thread, batch 1, alternating). The
# control: the unpruned model given as many batches of the same fine-tuning (SGD at 0.01,
# cosine, batch 64) as the pruning run gave in all, so that the pruned model's change is
# not credited with the extra training of a model trained for only EPOCHS epochs.
#
#   bash scripts/experiments/reproduce_vit.sh      # about 45 min on 2 CPU cores
#   python -m scripts.experiments.vit_report       # its section of docs/RESULTS.md (run last)
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

# int8 attention (softmax, LayerNorm, GELU on int8 tensors) moves some top-1 answers: the
# int8 file is held to 97% top-1 agreement with Keras instead of kprune's default 98%, and
# the full test split through the bundle's runtime (below) says what that costs.
if [ ! -f "$OUT/export/pruned.export.json" ]; then
  kprune export "$run/pruned.keras" --out "$OUT/export" --quantize none,int8 \
    --dataset fashion_mnist --min-agreement 0.97 2>&1 | tee -a "$OUT/export.log"
fi
if [ ! -f "$EVIDENCE/accuracy.json" ]; then
  python -m scripts.experiments.accuracy_tflite "$BASE" "$run/pruned.keras" \
    --out "$EVIDENCE/accuracy.json" 2>&1 | tee -a "$OUT/accuracy.log"
fi

control="$OUT/control.keras"
if [ ! -f "${control%.keras}.card.json" ]; then
  # the pruning run's fine-tune batches in all (each step's, then the final's), in epochs of 64
  epochs=$(python - "$run/report.json" <<'PY'
import json, math, sys
report = json.load(open(sys.argv[1]))
per_epoch = math.ceil(54000 / 64)
steps = sum(1 for step in report["steps"] if step["step"] and not step.get("phase"))
used = report["fine_tuning"]  # what the run used, as kprune recorded it
batches = steps * used["batches_per_step"] + used["final_batches"]
print(f"{batches / per_epoch:.3f}")
PY
)
  kprune train --model "$BASE" --dataset fashion_mnist --optimizer sgd --lr 0.01 --weight-decay 5e-4 \
    --warmup-epochs 0 --batch-size 64 --epochs "$epochs" --out "$control" 2>&1 | tee -a "$OUT/control.log"
fi

if [ ! -f "$EVIDENCE/bench.json" ]; then
  kprune bench "$BASE" "$run/pruned.keras" --runtimes tflite --batch-sizes 1 --threads 1 \
    --precisions fp32,int8 --calibration fashion_mnist --repeats 300 \
    --output "$EVIDENCE/bench.json" 2>&1 | tee "$OUT/bench.log"
fi
# what is left of each block: heads of its attention, hidden units of its MLP
python - "$BASE" "$run/pruned.keras" > "$EVIDENCE/widths.json" <<'PY'
import json, sys
import kprune
widths = {}
for label, path in zip(("unpruned", "pruned"), sys.argv[1:]):
    layers = kprune.load_model(path).layers
    widths[label] = {
        **{layer.name: layer.num_heads for layer in layers if hasattr(layer, "num_heads")},
        **{layer.name: layer.units for layer in layers if layer.name.endswith("_mlp1")},
    }
print(json.dumps(widths, indent=1))
PY
cp "${BASE%.keras}.card.json" "$EVIDENCE/vit_tiny_fmnist.card.json"
cp "$run/report.json" "$EVIDENCE/prune_report.json"
cp "$run/pruned.card.json" "$EVIDENCE/pruned.card.json"
cp "$OUT/export/pruned.export.json" "$EVIDENCE/pruned.export.json"
cp "${control%.keras}.card.json" "$EVIDENCE/control.card.json"
