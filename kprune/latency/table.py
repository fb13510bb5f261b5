"""A latency table: measured times of single-layer models, and the predictor fitted to them.

The table is data first. It holds what was measured on one runtime, thread
count and machine (the profile *plan* of `kprune.latency.profile` plus one
median time per file); the same JSON comes from ``kprune profile`` here or
from the bundle's ``kprune_profile.py`` on the board. Its ``unit`` says what
was measured: ``ms`` (the default: tables without a unit are in ms), or
``instructions``, executed aarch64 instructions per inference on an emulated
core (``kprune profile --device qemu:cortex-a53``, `kprune.latency.instructions`);
the measurements are under ``measured_<unit>``, and every prediction is in the
table's unit. "Time" below means that unit. Everything else is fitted from
those numbers when the table is loaded:

- the **channel step** — the output-channel tile of the runtime's kernels
  (XNNPACK fp32: 8 on ARM NEON, 16 on x86 FMA3) — from a fine sweep of one
  layer's output channels: the step whose staircase fits the sweep best;
- per entry (a layer configuration), time as a function of channel counts:
  ``a + b·cin + c·P(cout) + d·cin·P(cout)`` for Conv/Dense and ``a + b·P(c)``
  for the rest, ``P`` rounding up to the step (a half-filled tile costs a full
  one), least squares over the measured grid;
- per entry, the layer's weight count as a function of its channel counts
  (exact: ``a + b·cin + c·cout + d·cin·cout``), from the single-layer files;
- the **calibration**: whole-model time = ``scale · Σ layer times +
  traffic · max(0, W − resident) + offset``, W the model's weight count,
  fitted to the full model and thinned copies of it (least squares
  in relative error: the small models count as much as the large ones). Single-layer
  files pay their own call overhead and run with warm caches; inside a model
  whose weights no longer fit the caches every inference streams them from
  memory again. The traffic term prices that: ``resident`` (the weights the
  caches hold) is the candidate that fits best, ``traffic`` ≥ 0 the cost per
  weight beyond it. The term is kept only where it halves the squared
  relative error of the plain ``scale · Σ + offset``, which tables without
  weight counts (format 2) or with fewer than four calibration models keep.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear

from kprune.errors import ModelFileError
from kprune.files import write_atomically

TABLE_FORMAT = "kprune-latency-table"
# 2: layers timed back to back, invoke only (no input copies);
# 3: weight counts per file and eight calibration models (the traffic term);
# 4: a grid below each layer shape of a configuration, not one up to the largest of each count;
# 5: eight unevenly thinned calibration models too (fraction null)
TABLE_VERSION = 5
STEPS = (1, 2, 4, 8, 16, 32)
UNITS = ("ms", "instructions")
# A coarser step wins when its staircase fits within this factor of the best one.
_STEP_TOLERANCE = 1.05


def measured_key(unit: str) -> str:
    """Where a table of ``unit`` keeps its measurements: ``measured_ms``, ``measured_instructions``."""
    return f"measured_{unit}"


def padded(channels, step: int):
    """Channels rounded up to a multiple of ``step`` (what a tiled kernel computes)."""
    return np.ceil(np.asarray(channels, dtype=float) / step) * step


def fit_step(channels: list[int], ms: list[float]) -> int:
    """The tile step whose staircase ``a + b·P(c)`` fits a sweep of output channels best.

    The coarsest step within 5% of the best residual wins, so a sweep without
    steps (any step fits) does not invent a coarse one unless it fits as well.
    """
    channels, times = np.asarray(channels, float), np.asarray(ms, float)
    residuals = {}
    for step in STEPS:
        features = np.stack([np.ones_like(channels), padded(channels, step)], axis=1)
        solution, *_ = np.linalg.lstsq(features, times, rcond=None)
        residuals[step] = float(np.sum((features @ solution - times) ** 2))
    best = min(residuals.values())
    return max(step for step, rss in residuals.items() if rss <= best * _STEP_TOLERANCE + 1e-18)


def _weight_features(kind: str, cin, cout) -> np.ndarray:
    cin, cout = np.asarray(cin, float), np.asarray(cout, float)
    if kind == "matrix":
        return np.stack([np.ones_like(cin), cin, cout, cin * cout], axis=-1)
    return np.stack([np.ones_like(cin), cin], axis=-1)


def fit_calibration(sums, weights, times) -> tuple[float, float, float, float, float]:
    """(scale, traffic, resident, offset, error) of ``time ≈ scale·sum + traffic·max(0,
    weights − resident) + offset`` over the calibration models, in relative error (small
    models count as much as large ones; ``error`` is the sum of squared relative errors);
    ``resident`` is 0 or one of the models' weight counts, whichever fits best, and scale
    and traffic are ≥ 0."""
    sums, weights, times = (np.asarray(v, float) for v in (sums, weights, times))
    best = None
    for resident in sorted({0.0, *weights.tolist()}):
        features = np.stack([sums, np.maximum(0.0, weights - resident), np.ones_like(sums)], axis=1)
        fit = lsq_linear(
            features / times[:, None], np.ones_like(times), bounds=([0, 0, -np.inf], [np.inf, np.inf, np.inf])
        )
        if best is None or fit.cost < best[0] - 1e-12:
            best = (fit.cost, float(fit.x[0]), float(fit.x[1]), resident, float(fit.x[2]))
    cost, *terms = best
    return (*terms, 2.0 * cost)  # lsq_linear's cost is half the sum of squares


def _features(kind: str, cin, cout, step: int) -> np.ndarray:
    cin, cout = np.asarray(cin, float), np.asarray(cout, float)
    if kind == "matrix":
        tiles = padded(cout, step)
        return np.stack([np.ones_like(cin), cin, tiles, cin * tiles], axis=-1)
    return np.stack([np.ones_like(cin), padded(cin, step)], axis=-1)


@dataclass
class Entry:
    """Measured times of one layer configuration over a grid of channel counts."""

    key: str
    kind: str
    layers: list[str]
    full: tuple[int, int]
    points: list[tuple[int, int]]
    ms: list[float]
    weights: list[int] | None = None  # weight count of each point's file (format 3)
    coefficients: np.ndarray | None = None
    weight_coefficients: np.ndarray | None = None

    def fit(self, step: int) -> None:
        points = np.asarray(self.points, float)
        features = _features(self.kind, points[:, 0], points[:, 1], step)
        unique = len({tuple(p) for p in self.points})
        if unique < features.shape[1]:  # too few points for the full form: a constant
            features = features[:, :1]
        self.coefficients, *_ = np.linalg.lstsq(features, np.asarray(self.ms, float), rcond=None)
        if self.weights is not None:
            features = _weight_features(self.kind, points[:, 0], points[:, 1])
            if unique < features.shape[1]:
                features = features[:, :1]
            self.weight_coefficients, *_ = np.linalg.lstsq(
                features, np.asarray(self.weights, float), rcond=None
            )

    def predict(self, cin, cout, step: int) -> np.ndarray:
        features = _features(self.kind, cin, cout, step)[..., : len(self.coefficients)]
        return np.maximum(features @ self.coefficients, 0.0)

    def predict_weights(self, cin, cout) -> np.ndarray:
        if self.weight_coefficients is None:
            return np.zeros(np.broadcast(np.asarray(cin), np.asarray(cout)).shape)
        features = _weight_features(self.kind, cin, cout)[..., : len(self.weight_coefficients)]
        return np.maximum(features @ self.weight_coefficients, 0.0)


class LatencyTable:
    """Per-layer latency on one runtime, and a whole-model predictor (see the module doc).

    Attributes:
        unit: What the measurements and predictions are in: ``ms`` or
            ``instructions`` (see the module doc).
        runtime: ``tflite`` or ``onnx``.
        threads: Inference threads the times were measured with.
        quantize: ``none``, ``float16`` or ``int8`` (TFLite).
        step: The fitted output-channel tile of the runtime's kernels.
        entries: Layer configuration key → `Entry`.
        scale, offset: The whole-model calibration.
        traffic, resident: Its weight-traffic term: time per weight beyond the
            ``resident`` weights the caches hold (0 and 0 when not fitted).
    """

    def __init__(self, data: dict):
        self.data = data
        self.unit = data.get("unit", "ms")
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}, not one of {UNITS}")
        self.runtime = data["runtime"]
        self.threads = data["threads"]
        self.quantize = data.get("quantize", "none")
        self.environment = data.get("environment", {})
        self.model = data.get("model", {})
        measured = self.measured
        sweep = data["sweep"]
        if sweep:
            times = [measured[f] for f in sweep["files"]]
            self.step = fit_step(sweep["couts"], times)
        else:
            self.step = 1
        self.entries: dict[str, Entry] = {}
        for key, spec in data["entries"].items():
            entry = Entry(
                key,
                spec["kind"],
                spec["layers"],
                tuple(spec["full"]),
                [tuple(p) for p in spec["points"]],
                [measured[f] for f in spec["files"]],
                spec.get("weights"),
            )
            entry.fit(self.step)
            self.entries[key] = entry
        # Configurations that could not be timed alone: their time is in the offset.
        self.skipped = set(data.get("skipped_keys", []))
        self.scale, self.offset = 1.0, 0.0
        self.traffic, self.resident = 0.0, 0.0
        self.calibration = data.get("calibration", [])
        if self.calibration:
            self._calibrate(measured)

    @property
    def measured(self) -> dict[str, float]:
        """File name → its measurement, in the table's unit."""
        return self.data[measured_key(self.unit)]

    def _calibrate(self, measured: dict) -> None:
        sums = np.array([self.layer_sum(item["layers"]) for item in self.calibration])
        times = np.array([measured[item["file"]] for item in self.calibration])
        if len(sums) >= 2 and np.ptp(sums) > 0:  # least squares in relative error, as below
            features = np.stack([sums, np.ones_like(sums)], axis=1) / times[:, None]
            (self.scale, self.offset), *_ = np.linalg.lstsq(features, np.ones_like(times), rcond=None)
        if self.scale <= 0:  # a model so small that call overhead and noise dominate: shift only
            self.scale, self.offset = 1.0, float(np.mean(times - sums))
        weighed = all(entry.weight_coefficients is not None for entry in self.entries.values())
        if not (weighed and len(sums) >= 4 and np.ptp(sums) > 0):
            return
        # The traffic term only where it explains the whole-model times clearly better
        # (half the squared relative error): on a small model Σ and W shrink together
        # and the two forms fit alike.
        weights = np.array([self.weight_sum(item["layers"]) for item in self.calibration])
        scale, traffic, resident, offset, with_traffic = fit_calibration(sums, weights, times)
        plain = np.sum(((self.scale * sums + self.offset) - times) ** 2 / times**2)
        if scale > 0 and with_traffic < 0.5 * plain:
            self.scale, self.traffic, self.resident, self.offset = scale, traffic, resident, offset

    def layer_ms(self, key: str, cin, cout) -> np.ndarray:
        """Predicted time (the table's unit) of one layer configuration at these channel counts
        (arrays work)."""
        return self.entries[key].predict(cin, cout, self.step)

    def layer_sum(self, layers) -> float:
        """Σ of predicted layer times for ``[(key, cin, cout), …]``, uncalibrated."""
        return float(sum(self.layer_ms(key, cin, cout) for key, cin, cout in layers))

    def layer_weights(self, key: str, cin, cout) -> np.ndarray:
        """Weight count of one layer configuration at these channel counts (0 in format-2 tables)."""
        return self.entries[key].predict_weights(cin, cout)

    def weight_sum(self, layers) -> float:
        """Σ of the weight counts of ``[(key, cin, cout), …]``."""
        return float(sum(self.layer_weights(key, cin, cout) for key, cin, cout in layers))

    def calibrated(self, layer_sum: float, weight_sum: float) -> float:
        """Whole-model time (the table's unit) from the sum of layer times and of weight counts."""
        traffic = self.traffic * max(0.0, weight_sum - self.resident)
        return float(self.scale * layer_sum + traffic + self.offset)

    def predict(self, layers) -> float:
        """Predicted whole-model time, in the table's unit, for ``[(key, cin, cout), …]``."""
        return self.calibrated(self.layer_sum(layers), self.weight_sum(layers))

    def fast_sizes(self, channels: int, minimum: int = 1) -> list[int]:
        """Channel counts below ``channels`` that fill whole tiles, largest first."""
        floor = max(minimum, 1)
        sizes = range((channels - 1) // self.step * self.step, 0, -self.step)
        return [size for size in sizes if size >= floor]

    def summary(self) -> dict:
        """Small facts for reports and cards."""
        return {
            "unit": self.unit,
            "runtime": self.runtime,
            "threads": self.threads,
            "quantize": self.quantize,
            "step": self.step,
            "entries": len(self.entries),
            "files": len(self.measured),
            "scale": float(self.scale),
            f"offset_{self.unit}": float(self.offset),
            f"traffic_{self.unit}_per_mweight": float(self.traffic * 1e6),
            "resident_mweights": float(self.resident / 1e6),
            "model": self.model.get("name"),
            "machine": self.environment.get("machine"),
        }

    def to_dict(self) -> dict:
        return self.data

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        write_atomically(path, (json.dumps(self.data, indent=1) + "\n").encode())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Reads a table written by ``kprune profile`` or the bundle's ``kprune_profile.py``.

        Raises:
            ModelFileError: If the file is missing, not JSON, or not a latency table.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(
                f"Latency table {path} does not exist. Fix: write one with "
                "`kprune profile MODEL --out table.json` (or the bundle's kprune_profile.py)."
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ModelFileError(f"Latency table {path} is not JSON ({error}). Fix: profile again.") from None
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise ModelFileError(
                f"{path} is not a kprune latency table (no format {TABLE_FORMAT!r}). "
                "Fix: pass the file `kprune profile --out` or kprune_profile.py wrote."
            )
        if measured_key(data.get("unit", "ms")) not in data:
            raise ModelFileError(
                f"{path} is a profile plan that was never measured. Fix: run "
                "`python kprune_profile.py` on it, then pass the table it writes."
            )
        try:
            return cls(data)
        except (KeyError, TypeError, ValueError) as error:  # an unknown unit too
            raise ModelFileError(
                f"Latency table {path} is incomplete ({error}). Fix: profile again."
            ) from None
