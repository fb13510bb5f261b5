"""A detector with two heads and its own loss and metric, pruned end to end.

The user's code is scripts/experiments/detection.py. Its canvases, grid targets and IoU metric are
checked against hand-made references; a tiny detector (a few filters per layer, a hundred
Fashion-MNIST canvases) is ranked with Taylor on its compiled two-head loss (checked against a
gradient computed here from the loss written out), pruned for a few steps with the metric as
``monitor``, and exported to TFLite fp32 and int8 and ONNX, verified against Keras.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import kprune
from kprune.data import fashion_mnist
from scripts.experiments.detection import (
    GRID,
    INK,
    BoxIoU,
    build_detector,
    compile_detector,
    grid_targets,
    make_canvases,
)

realdata = pytest.mark.skipif(fashion_mnist.find() is None, reason="real Fashion-MNIST not installed")


def _inked_box(canvas: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) in canvas fractions of the pixels above INK."""
    rows = np.flatnonzero(canvas.max(axis=1) > INK)
    cols = np.flatnonzero(canvas.max(axis=0) > INK)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]) / canvas.shape[0]


def test_canvases_are_seeded_and_each_box_is_its_items_inked_pixels():
    items = np.zeros((3, 28, 28), np.uint8)
    items[0, 5:21, 10:18] = 200  # a bar
    items[1, 2:26, 2:26] = 120  # a square
    items[2, 12:14, 3:25] = 255  # a thin line

    images, boxes = make_canvases(items, 12, seed=4, noise=0)

    assert images.shape == (12, 64, 64, 1) and images.dtype == np.float32 and boxes.shape == (12, 4)
    for image, box in zip(images[..., 0], boxes):
        np.testing.assert_allclose(box, _inked_box(image), atol=1e-6)
    again, _ = make_canvases(items, 12, seed=4, noise=0)
    other, _ = make_canvases(items, 12, seed=5, noise=0)
    np.testing.assert_array_equal(again, images)
    assert not np.array_equal(other, images)
    noisy, noisy_boxes = make_canvases(items, 12, seed=4, noise=40)
    np.testing.assert_array_equal(noisy_boxes, boxes)  # the noise does not move the items
    assert noisy.max() > INK and noisy[images == 0].max() <= 40


def test_targets_put_the_box_in_the_cell_of_its_centre():
    # Centre (0.3, 0.3): 2.4 cells on an 8-cell grid → cell (row 2, col 2), offset 0.4 in it.
    targets = grid_targets(np.array([[0.1, 0.2, 0.5, 0.4]]))

    objectness, box = targets["objectness"][0, ..., 0], targets["box"][0]
    assert objectness.sum() == 1 and objectness[2, 2] == 1
    np.testing.assert_allclose(box[2, 2], [0.4, 0.4, 0.4, 0.2], atol=1e-6)
    assert np.count_nonzero(box) == 4
    np.testing.assert_array_equal(
        targets["detections"], np.concatenate([targets["objectness"], box[None]], -1)
    )


def test_iou_metric_takes_the_most_confident_cell_and_matches_numbers_worked_by_hand():
    truth = np.zeros((3, GRID, GRID, 5), np.float32)
    truth[:, 2, 3] = [1, 0.5, 0.5, 0.25, 0.25]  # x 0.3125..0.5625, y 0.1875..0.4375
    predicted = np.full((3, GRID, GRID, 5), 0.1, np.float32)
    # Canvas 0: right cell, box x 0.34375..0.59375, y 0.25..0.375: IoU (7/256) / (17/256).
    predicted[0, 2, 3] = [0.9, 0.75, 0.5, 0.25, 0.125]
    # Canvas 1: the true cell holds the perfect box, but another cell is more confident.
    predicted[1, 2, 3] = [0.8, 0.5, 0.5, 0.25, 0.25]
    predicted[1, 6, 6] = [0.85, 0.5, 0.5, 0.25, 0.25]
    # Canvas 2: right cell, perfect box.
    predicted[2, 2, 3] = [0.7, 0.5, 0.5, 0.25, 0.25]

    mean_iou, hits = BoxIoU(), BoxIoU(0.5, name="hit50")
    for metric in (mean_iou, hits):
        metric.update_state(truth, predicted)

    assert float(mean_iou.result()) == pytest.approx((7 / 17 + 0 + 1) / 3, abs=1e-6)
    assert float(hits.result()) == pytest.approx(1 / 3, abs=1e-6)
    restored = BoxIoU.from_config(hits.get_config())
    assert restored.threshold == 0.5 and restored.name == "hit50"


def _numpy_mean_iou(detections: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU of the box at each canvas' most confident cell, written out with NumPy."""
    ious = []
    for predicted, true in zip(detections, truth):
        corners = []
        for grid in (predicted, true):
            row, col = np.unravel_index(np.argmax(grid[..., 0]), grid.shape[:2])
            _, cx, cy, w, h = grid[row, col]
            x, y = (col + cx) / GRID, (row + cy) / GRID
            corners.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        (a0, a1, a2, a3), (b0, b1, b2, b3) = corners
        inter = max(0.0, min(a2, b2) - max(a0, b0)) * max(0.0, min(a3, b3) - max(a1, b1))
        union = (a2 - a0) * (a3 - a1) + (b2 - b0) * (b3 - b1) - inter
        ious.append(inter / union)
    return float(np.mean(ious))


def _taylor_of_the_neck(model: keras.Model, images: np.ndarray, targets: dict) -> np.ndarray:
    """Molchanov's |mean over positions of z·∂C_n/∂z|, averaged over canvases, for the map z
    that the heads read, with C_n written out: 5 × box squared error at the object's cell +
    binary cross-entropy averaged over the cells (the detections output has no loss)."""
    features = keras.Model(model.inputs, model.get_layer("neckb_relu").output)
    z = tf.Variable(features(images, training=False))
    with tf.GradientTape() as tape:
        box = model.get_layer("box")(z)
        objectness = tf.clip_by_value(model.get_layer("objectness")(z), 1e-7, 1 - 1e-7)
        mask = tf.cast(targets["box"][..., 2:3] > 0, tf.float32)
        box_error = tf.reduce_sum(tf.square(box - targets["box"]) * mask, axis=(1, 2, 3))
        y = targets["objectness"]
        cross_entropy = -(y * tf.math.log(objectness) + (1 - y) * tf.math.log(1 - objectness))
        per_canvas = 5.0 * box_error + tf.reduce_mean(cross_entropy, axis=(1, 2, 3))
        total = tf.reduce_sum(per_canvas)
    gradient = tape.gradient(total, z).numpy()
    return np.abs((z.numpy() * gradient).mean(axis=(1, 2))).mean(axis=0)


@realdata
def test_a_tiny_detector_is_ranked_pruned_and_exported_with_parity(tmp_path):
    arrays, _ = fashion_mnist.load_arrays(download=False)
    items = arrays["train"][0][:400]
    x, boxes = make_canvases(items, 128, seed=0)
    x_val, boxes_val = make_canvases(items, 48, seed=1)
    targets, targets_val = grid_targets(boxes), grid_targets(boxes_val)
    train = tf.data.Dataset.from_tensor_slices((x, targets)).batch(32)
    val = tf.data.Dataset.from_tensor_slices((x_val, targets_val)).batch(48)
    model = compile_detector(build_detector(widths=(4, 8, 8, 8), neck=8, seed=0), learning_rate=5e-3)
    model.fit(train, epochs=2, shuffle=False, verbose=0)

    # rank: Taylor on the compiled two-head loss, every prunable producer, the heads frozen
    graph = kprune.analyze(model)
    scores = kprune.rank(model, (x[:48], grid_targets(boxes[:48])), "taylor", num_batches=1, normalize="none")
    assert set(scores) == set(graph.prunable_layers()) and not {"box", "objectness"} & set(scores)
    np.testing.assert_allclose(
        scores["neckb"], _taylor_of_the_neck(model, x[:48], grid_targets(boxes[:48])), rtol=1e-4
    )

    # prune: a couple of steps to 12% of the FLOPs, the IoU metric as the budget's monitor
    result = kprune.prune(
        model,
        train,
        val,
        criterion="taylor",
        target_flops=0.12,
        filters_per_step=8,
        rank_batches=1,
        finetune_steps=2,
        final_finetune_epochs=0,
        monitor="detections_box_iou",
        run_dir=tmp_path / "run",
        progress=False,
    )

    steps = [record for record in result.report["steps"] if record["step"] and not record.get("phase")]
    assert len(steps) >= 2 and steps[-1]["flops_removed"] >= 0.12
    assert {record["monitor"] for record in result.report["steps"]} == {"detections_box_iou"}
    pruned = result.model
    assert pruned.output_names == ["box", "objectness", "detections"]
    assert pruned.get_layer("box").filters == 4 and pruned.get_layer("objectness").filters == 1
    assert kprune.count_flops(pruned) < kprune.count_flops(model)
    detections = pruned.predict(x_val, verbose=0)[2]
    final = result.report["steps"][-1]
    assert final["val_monitor"] == pytest.approx(
        _numpy_mean_iou(detections, targets_val["detections"]), abs=1e-5
    )
    reloaded = keras.models.load_model(tmp_path / "run" / "pruned.keras")
    np.testing.assert_allclose(reloaded.predict(x_val, verbose=0)[2], detections, atol=1e-6)

    # export: TFLite fp32 and int8 (calibrated on canvases) and ONNX, verified against Keras
    exported = kprune.export_model(
        pruned,
        tmp_path / "export",
        quantize=("none", "int8"),
        data=x_val,
        calibration_data=x,
        samples=48,
        calibration_samples=128,
    )

    report = exported.verification
    assert report.passed and report.samples == 48
    assert sorted(a.path.name for a in exported.artifacts) == [
        "detector.onnx",
        "detector.tflite",
        "detector_int8.tflite",
    ]
    fp32, int8, onnx = report.checks
    assert fp32.max_abs_diff <= 1e-4 and onnx.max_abs_diff <= 1e-4
    assert int8.relative_error is not None and int8.relative_error <= 0.1


def _scores(params, flops, val_iou, test_iou):
    return {"params": params, "flops": flops, "val_iou": val_iou, "test_iou": test_iou, "test_hit50": 0.99}


def _run(scores, within=None):
    return {
        "steps": 20,
        "stop_reason": "target reached",
        "within_budget": within,
        "seconds": 300,
        "scores": scores,
    }


def test_the_pick_is_the_most_pruned_end_within_a_point_else_a_kept_snapshot_else_the_unpruned():
    from scripts.experiments.detector import choose

    kept = {"step": 5, "file": "within-1pt.keras", "flops_removed": 0.3}
    runs = {
        "0.6": _run(_scores(500, 16e6, 0.925, 0.92)),  # 0.5 point down: within
        "0.7": _run(_scores(400, 12e6, 0.9201, 0.91)),  # 0.99 point down: within, more pruned
        "0.8": _run(_scores(300, 8e6, 0.91, 0.90), kept),  # 2 points down
    }
    assert choose(0.93, runs) == ("0.7", "end")
    assert choose(0.95, runs) == ("0.8", "within")  # no end within 1 point of 95
    runs["0.8"]["within_budget"] = {"step": 0, "file": None, "flops_removed": 0.0}
    assert choose(0.95, runs) == (None, "unpruned")


def test_the_results_section_states_sizes_changes_and_speedups_of_the_evidence():
    from scripts.experiments.detector import report_text

    def check(quantize, form, diff):
        return {
            "quantize": quantize,
            "format": form,
            "file": "f",
            "max_abs_diff": diff,
            "relative_error": 0.0123,
        }

    facts = {
        "command": "python -m scripts.experiments.detector",
        "canvases": {"train": 20000, "val": 2000, "test": 2000},
        "training": {"epochs": 10},
        "monitor": "detections_box_iou",
        "limit_points": 1.0,
        "unpruned": _scores(1000, 40e6, 0.9, 0.9),
        "runs": {
            "0.7": _run(_scores(400, 10e6, 0.8925, 0.8925)),
            "0.8": _run(_scores(250, 8e6, 0.85, 0.85)),
        },
        "pick": {"target": "0.7", "kind": "end", "file": "prune-70/pruned.keras"},
        "verification": {
            "samples": 500,
            "artifacts": [
                check("none", "tflite", 1e-7),
                check("int8", "tflite", 1e-2),
                check(None, "onnx", 2e-7),
            ],
        },
        "file_test_iou": {"none": 0.8925, "int8": 0.89, "onnx": 0.8925},
        "bench": {
            "models": [{"label": "a"}, {"label": "b"}],
            "measurements": [
                {"model": "a", "precision": "fp32", "median_ms": 2.0},
                {"model": "a", "precision": "int8", "median_ms": 0.8},
                {"model": "b", "precision": "fp32", "median_ms": 0.5},
                {"model": "b", "precision": "int8", "median_ms": 0.25},
            ],
            "settings": {"repeats": 300},
            "environment": {"machine": "x86_64"},
        },
    }

    text = report_text(facts)

    assert (
        "| **target 70% FLOPs: end (20 steps): the pick** | 400 (−60.0%) | 10.0 M (−75.0%) "
        "| 89.25 (−0.75) | 89.25 (−0.75) |" in text
    )
    assert "| target 80% FLOPs: end (20 steps) | 250 (−75.0%) | 8.0 M (−80.0%) | 85.00 (−5.00) |" in text
    assert "TFLite int8 (`f`): max abs diff 1.0e-02, relative error 1.23%, test IoU 89.00" in text
    assert "| unpruned | 2.000 | 0.800 | 1.00× | 2.50× |" in text
    assert "| the pick | 0.500 | 0.250 | 4.00× | 8.00× |" in text
    assert "10 min of pruning steps in all" in text
