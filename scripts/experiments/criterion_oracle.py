"""How good is each criterion? Spearman correlation with the oracle.

The oracle of a filter is the change of the validation loss when that filter
alone is removed (Molchanov et al. 2017, §3): measured by zeroing its kernel
slice and bias, which for ReLU networks equals removing it (kprune's surgery
invariant). Criteria are computed on the same examples. Reported: Spearman's
rank correlation per layer, its mean over layers, and across all sampled
filters of all layers pooled (where the layer-wise normalization matters),
against the signed loss change ΔL and against |ΔL|.

Usage:
  python -m scripts.experiments.criterion_oracle --model models/squeezenet1_1_fmnist_sgd.keras \
      --examples 2000 --per-layer 48 --out docs/oracle.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from scipy.stats import spearmanr

DEFAULT_LAYERS = (
    "conv1",
    "fire2_squeeze1x1",
    "fire3_expand3x3",
    "fire4_expand1x1",
    "fire5_squeeze1x1",
    "fire6_expand3x3",
    "fire7_expand1x1",
    "fire8_squeeze1x1",
    "fire9_expand3x3",
)
CRITERIA = ("taylor", "l2", "combined", "apoz", "l1", "l2_weight", "random")


def oracle_changes(model, images, labels, layers, per_layer, seed):
    """{layer: (sampled filter indices, ΔL of removing each one alone)}."""
    import tensorflow as tf

    from kprune.training.losses import loss_for

    loss_fn = loss_for(model)

    @tf.function
    def mean_loss():
        return loss_fn(labels, model(images, training=False))

    base = float(mean_loss())
    rng = np.random.default_rng(seed)
    changes = {}
    for name in layers:
        layer = model.get_layer(name)
        kernel, bias = layer.kernel, layer.bias
        saved_kernel, saved_bias = kernel.numpy(), bias.numpy()
        count = saved_kernel.shape[-1]
        chosen = np.sort(rng.choice(count, min(per_layer, count), replace=False))
        deltas = []
        for index in chosen:
            zeroed_kernel, zeroed_bias = saved_kernel.copy(), saved_bias.copy()
            zeroed_kernel[..., index] = 0.0
            zeroed_bias[index] = 0.0
            kernel.assign(zeroed_kernel)
            bias.assign(zeroed_bias)
            deltas.append(float(mean_loss()) - base)
        kernel.assign(saved_kernel)
        bias.assign(saved_bias)
        changes[name] = (chosen, np.array(deltas))
    return base, changes


def correlations(scores, changes):
    """Per-layer and pooled Spearman correlations, signed and absolute."""
    table = {}
    for target in ("delta", "abs_delta"):
        per_layer, pooled_scores, pooled_oracle = {}, [], []
        for name, (chosen, deltas) in changes.items():
            oracle = deltas if target == "delta" else np.abs(deltas)
            values = scores[name][chosen]
            per_layer[name] = float(spearmanr(values, oracle).statistic)
            pooled_scores.extend(values)
            pooled_oracle.extend(oracle)
        table[target] = {
            "per_layer": per_layer,
            "mean_per_layer": float(np.nanmean(list(per_layer.values()))),
            "pooled": float(spearmanr(pooled_scores, pooled_oracle).statistic),
        }
    return table


def summary_table(spearman: dict) -> str:
    """Markdown: per criterion, mean per-layer and pooled ρ against ΔL and |ΔL|."""
    lines = [
        "| criterion | mean per-layer ρ (ΔL) | pooled ρ (ΔL) | mean per-layer ρ (abs ΔL) | pooled ρ (abs ΔL) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for criterion, table in spearman.items():
        d, a = table["delta"], table["abs_delta"]
        lines.append(
            f"| {criterion} | {d['mean_per_layer']:.3f} | {d['pooled']:.3f} | "
            f"{a['mean_per_layer']:.3f} | {a['pooled']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/squeezenet1_1_fmnist_sgd.keras")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--examples", type=int, default=2000, help="Validation examples used.")
    parser.add_argument("--per-layer", type=int, default=48, help="Filters sampled per layer.")
    parser.add_argument("--layers", default=",".join(DEFAULT_LAYERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Write the numbers as JSON.")
    args = parser.parse_args()

    import tensorflow as tf

    import kprune
    from kprune.data import load

    started = time.time()
    model = kprune.load_model(args.model)
    val = load(
        args.dataset,
        "val",
        input_shape=model.input_shape[1:],
        batch_size=args.examples,
        limit=args.examples,
        shuffle=False,
    )
    images, labels = next(iter(val.dataset))
    layers = [name for name in args.layers.split(",") if name]
    base, changes = oracle_changes(model, images, labels, layers, args.per_layer, args.seed)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(250)
    results = {}
    for criterion in CRITERIA:
        scores = kprune.rank(model, data, criterion, normalize="l2", seed=args.seed)
        results[criterion] = correlations(scores, changes)

    print(
        f"Oracle: {sum(len(c[0]) for c in changes.values())} filters in {len(layers)} layers, "
        f"{args.examples} {args.dataset} val images, base loss {base:.4f}"
    )
    print("\n" + summary_table(results))
    print("\nPer layer, ρ against ΔL:\n")
    print("| layer | " + " | ".join(CRITERIA) + " |")
    print("| --- |" + " --- |" * len(CRITERIA))
    for name in layers:
        row = " | ".join(f"{results[c]['delta']['per_layer'][name]:.2f}" for c in CRITERIA)
        print(f"| {name} | {row} |")
    print(f"\n{time.time() - started:.0f} s on {platform.machine()} with {os.cpu_count()} CPU cores")
    if args.out:
        payload = {
            "command": "python -m scripts.experiments.criterion_oracle "
            + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"
            ),
            "base_loss": base,
            "oracle": {n: {"filters": c.tolist(), "delta_loss": d.tolist()} for n, (c, d) in changes.items()},
            "spearman": results,
        }
        with open(args.out, "w") as stream:
            json.dump(payload, stream, indent=1)


if __name__ == "__main__":
    main()
