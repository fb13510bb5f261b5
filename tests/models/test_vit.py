"""ViT-tiny: its structure, and a tiny one going rank → prune → export with parity."""

import keras
import numpy as np
import pytest

import kprune
from kprune.errors import InvalidArgumentError
from kprune.export.pipeline import export_model
from kprune.graph import analyze
from kprune.metrics import count_flops
from kprune.models import build


def test_vit_tiny_has_the_issue_shape_and_prunes_heads_and_mlp_units():
    model = build("vit_tiny", (28, 28, 1), 10)
    attention = [layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert [layer.num_heads for layer in attention] == [4, 4, 4, 4]
    assert model.get_layer("patch_embed").kernel.shape == (4, 4, 1, 64)
    assert model.output_shape == (None, 10)
    graph = analyze(model)
    assert graph.prunable_layers() == [
        name for i in range(1, 5) for name in (f"block{i}_attention/heads", f"block{i}_mlp1")
    ]
    assert not graph.group_of("patch_embed").prunable  # the residual stream, under LayerNorm


def test_vit_tiny_refuses_a_side_that_is_not_a_multiple_of_the_patch():
    with pytest.raises(InvalidArgumentError, match="multiples of `patch_size`"):
        build("vit_tiny", (30, 30, 1), 10)


def test_a_tiny_vit_is_pruned_and_exported_with_parity(tmp_path):
    keras.utils.set_random_seed(0)
    model = build("vit_tiny", (16, 16, 1), 3, width=16, depth=2, heads=4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 16, 16, 1)).astype("float32")
    y = (x[:, :8].mean(axis=(1, 2, 3)) > 0).astype("int64") + (x[:, :, :8].mean(axis=(1, 2, 3)) > 0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    result = kprune.prune(
        model,
        (x, y),
        (x[:32], y[:32]),
        criterion="taylor",
        target_flops=0.25,
        step_fraction=0.5,
        finetune_steps=1,
        final_finetune_epochs=0.5,
        progress=False,
    )
    pruned = result.model
    assert count_flops(pruned) <= 0.75 * count_flops(model)
    heads = [pruned.get_layer(f"block{i}_attention").num_heads for i in (1, 2)]
    units = [pruned.get_layer(f"block{i}_mlp1").units for i in (1, 2)]
    assert sum(heads) < 8 or sum(units) < 64
    # the report's widths name the heads as the graph names their producer
    first, last = result.report["steps"][0]["filters"], result.report["steps"][-1]["filters"]
    assert [first[f"block{i}_attention/heads"] for i in (1, 2)] == [4, 4]
    assert [last[f"block{i}_attention/heads"] for i in (1, 2)] == heads
    assert [last[f"block{i}_mlp1"] for i in (1, 2)] == units
    # A barely trained model on noise has near-tied scores that int8 rounding may flip:
    # int8 agreement is held to 90% here; the float files to 1e-4.
    exported = export_model(
        pruned,
        tmp_path / "export",
        quantize=("none", "int8"),
        data=(x[:64], y[:64]),
        calibration_data=x,
        min_agreement=0.9,
    )
    formats = sorted((a.format, a.quantize) for a in exported.artifacts)
    assert formats == [("onnx", "none"), ("tflite", "int8"), ("tflite", "none")]
    assert all(check.passed for check in exported.verification.checks)
    float_checks = [c for c in exported.verification.checks if c.artifact.quantize == "none"]
    assert max(check.max_abs_diff for check in float_checks) < 1e-4


def test_a_latency_target_on_attention_heads_is_refused_before_any_work():
    model = build("vit_tiny", (8, 8, 1), 3, width=8, depth=1, heads=2)
    x, y = np.zeros((8, 8, 8, 1), "float32"), np.zeros(8, "int64")
    with pytest.raises(InvalidArgumentError, match="Latency tables do not see channels inside layers"):
        kprune.prune(model, (x, y), (x, y), target_latency=0.5, progress=False)
