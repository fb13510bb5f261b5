"""A latency table: measured times of single-layer models, and the predictor fitted to them.

The table is data first. It holds what was measured on one runtime, thread
count and machine (the profile *plan* of `kprune.latency.profile` plus one
median time per file); the same JSON comes from ``kprune profile`` here or
from the bundle's ``kprune_profile.py`` on the board. Everything else is
fitted from those numbers when the table is loaded:

- the **channel step** — the output-channel tile of the runtime's kernels
  (XNNPACK fp32: 8 on ARM NEON, 16 on x86 FMA3) — from a fine sweep of one
  layer's output channels: the step whose staircase fits the sweep best;
- per entry (a layer configuration), time as a function of channel counts:
  ``a + b·cin + c·P(cout) + d·cin·P(cout)`` for Conv/Dense and ``a + b·P(c)``
  for the rest, ``P`` rounding up to the step (a half-filled tile costs a full
  one), least squares over the measured grid;
- the **calibration**: whole-model time = ``scale · Σ layer times + offset``,
  least squares over the full model and uniformly thinned copies of it
  (single-layer files pay their own call overhead and run with warm caches;
  this corrects both).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kprune.errors import ModelFileError
from kprune.files import write_atomically

TABLE_FORMAT = "kprune-latency-table"
TABLE_VERSION = 2  # 2: layers timed back to back, invoke only (no input copies)
STEPS = (1, 2, 4, 8, 16, 32)
# A coarser step wins when its staircase fits within this factor of the best one.
_STEP_TOLERANCE = 1.05


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
    coefficients: np.ndarray | None = None

    def fit(self, step: int) -> None:
        points = np.asarray(self.points, float)
        features = _features(self.kind, points[:, 0], points[:, 1], step)
        unique = len({tuple(p) for p in self.points})
        if unique < features.shape[1]:  # too few points for the full form: a constant
            features = features[:, :1]
        self.coefficients, *_ = np.linalg.lstsq(features, np.asarray(self.ms, float), rcond=None)

    def predict(self, cin, cout, step: int) -> np.ndarray:
        features = _features(self.kind, cin, cout, step)[..., : len(self.coefficients)]
        return np.maximum(features @ self.coefficients, 0.0)


class LatencyTable:
    """Per-layer latency on one runtime, and a whole-model predictor (see the module doc).

    Attributes:
        runtime: ``tflite`` or ``onnx``.
        threads: Inference threads the times were measured with.
        quantize: ``none``, ``float16`` or ``int8`` (TFLite).
        step: The fitted output-channel tile of the runtime's kernels.
        entries: Layer configuration key → `Entry`.
        scale, offset: The whole-model calibration.
    """

    def __init__(self, data: dict):
        self.data = data
        self.runtime = data["runtime"]
        self.threads = data["threads"]
        self.quantize = data.get("quantize", "none")
        self.environment = data.get("environment", {})
        self.model = data.get("model", {})
        measured = data["measured_ms"]
        sweep = data["sweep"]
        if sweep:
            times = [measured[f] for f in sweep["files"]]
            self.step = fit_step(sweep["couts"], times)
        else:
            self.step = 1
        self.entries: dict[str, Entry] = {}
        for key, spec in data["entries"].items():
            entry = Entry(
                key, spec["kind"], spec["layers"], tuple(spec["full"]),
                [tuple(p) for p in spec["points"]], [measured[f] for f in spec["files"]],
            )  # fmt: skip
            entry.fit(self.step)
            self.entries[key] = entry
        # Configurations that could not be timed alone: their time is in the offset.
        self.skipped = set(data.get("skipped_keys", []))
        self.scale, self.offset = 1.0, 0.0
        self.calibration = data.get("calibration", [])
        if self.calibration:
            self._calibrate(measured)

    def _calibrate(self, measured: dict) -> None:
        sums = np.array([self.layer_sum(item["layers"]) for item in self.calibration])
        times = np.array([measured[item["file"]] for item in self.calibration])
        if len(sums) >= 2 and np.ptp(sums) > 0:
            features = np.stack([sums, np.ones_like(sums)], axis=1)
            (self.scale, self.offset), *_ = np.linalg.lstsq(features, times, rcond=None)
        if self.scale <= 0:  # a model so small that call overhead and noise dominate: shift only
            self.scale, self.offset = 1.0, float(np.mean(times - sums))

    def layer_ms(self, key: str, cin, cout) -> np.ndarray:
        """Predicted time of one layer configuration at these channel counts (arrays work)."""
        return self.entries[key].predict(cin, cout, self.step)

    def layer_sum(self, layers) -> float:
        """Σ of predicted layer times for ``[(key, cin, cout), …]``, uncalibrated."""
        return float(sum(self.layer_ms(key, cin, cout) for key, cin, cout in layers))

    def predict(self, layers) -> float:
        """Predicted whole-model time in ms for ``[(key, cin, cout), …]``."""
        return float(self.scale * self.layer_sum(layers) + self.offset)

    def fast_sizes(self, channels: int, minimum: int = 1) -> list[int]:
        """Channel counts below ``channels`` that fill whole tiles, largest first."""
        floor = max(minimum, 1)
        sizes = range((channels - 1) // self.step * self.step, 0, -self.step)
        return [size for size in sizes if size >= floor]

    def summary(self) -> dict:
        """Small facts for reports and cards."""
        return {
            "runtime": self.runtime, "threads": self.threads, "quantize": self.quantize,
            "step": self.step, "entries": len(self.entries),
            "files": len(self.data["measured_ms"]), "scale": float(self.scale),
            "offset_ms": float(self.offset), "model": self.model.get("name"),
            "machine": self.environment.get("machine"),
        }  # fmt: skip

    def to_dict(self) -> dict:
        return self.data

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
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
        if "measured_ms" not in data:
            raise ModelFileError(
                f"{path} is a profile plan that was never measured. Fix: run "
                "`python kprune_profile.py` on it, then pass the table it writes."
            )
        try:
            return cls(data)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"Latency table {path} is incomplete ({error}). Fix: profile again.") from None

