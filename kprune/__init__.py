"""kprune: structured filter pruning for Keras 3.

Ranks convolution filters (Taylor expansion of the loss change, L2 norm of
activation maps, their combination, and baselines), removes the weakest ones
from the functional graph for real, fine-tunes, and exports verified TFLite
and ONNX. See README.md and docs/.

Public names load on first use (PEP 562), so that ``import kprune`` and the
CLI's ``--help`` do not wait for TensorFlow. Importing kprune changes nothing
in the user's process: no environment variable, no TensorFlow or Keras setting
(only the ``kprune`` CLI quiets TensorFlow's start-up lines, for itself).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name → module that defines it
_EXPORTS = {
    "DatasetNotFoundError": "kprune.errors",
    "InvalidArgumentError": "kprune.errors",
    "KpruneError": "kprune.errors",
    "MissingDependencyError": "kprune.errors",
    "ModelFileError": "kprune.errors",
    "TrainingDivergedError": "kprune.errors",
    "UnsupportedModelError": "kprune.errors",
    "VerificationError": "kprune.errors",
    "benchmark": "kprune.bench",
    "check_bundle": "kprune.export.bundle",
    "DependencyGraph": "kprune.graph",
    "PruningHistory": "kprune.surgery",
    "analyze": "kprune.graph",
    "PruneConfig": "kprune.config",
    "PruneResult": "kprune.schedule",
    "prune": "kprune.schedule",
    "profile": "kprune.latency.profile",
    "predict_latency": "kprune.latency.predict",
    "LatencyTable": "kprune.latency.table",
    "rank": "kprune.ranking",
    "rank_groups": "kprune.ranking",
    "select": "kprune.selection",
    "TrainingSetup": "kprune.training_setup",
    "TrainSettings": "kprune.training_setup",
    "register_criterion": "kprune.criteria",
    "register_handler": "kprune.graph",
    "remove_filters": "kprune.surgery",
    "replay": "kprune.surgery",
    "count_flops": "kprune.metrics",
    "count_params": "kprune.metrics",
    "describe_artifact": "kprune.export.describe",
    "export_model": "kprune.export.pipeline",
    "export_onnx": "kprune.export.onnx",
    "export_tflite": "kprune.export.tflite",
    "layer_table": "kprune.metrics",
    "load_model": "kprune.modelio",
    "save_model": "kprune.modelio",
    "verify_export": "kprune.export.verify",
    "verify_files": "kprune.export.pipeline",
    "write_bundle": "kprune.export.bundle",
}
_SUBMODULES = ("checkpoint", "criteria", "data", "graph", "models", "train")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"kprune.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kprune' has no attribute {name!r}")


def __dir__():
    return __all__
