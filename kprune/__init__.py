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

from kprune.version import __version__ as __version__  # noqa: PLC0414 (the re-export)

# public name → module that defines it
_EXPORTS = {
    "DatasetNotFoundError": "kprune.errors",
    "EmulatorError": "kprune.errors",
    "InvalidArgumentError": "kprune.errors",
    "KpruneError": "kprune.errors",
    "MissingDependencyError": "kprune.errors",
    "ModelFileError": "kprune.errors",
    "TrainingDivergedError": "kprune.errors",
    "UnsupportedModelError": "kprune.errors",
    "VerificationError": "kprune.errors",
    "benchmark": "kprune.bench",
    "count_benchmark": "kprune.bench",
    "count_instructions": "kprune.latency.instructions",
    "check_bundle": "kprune.export.bundle",
    "DependencyGraph": "kprune.graph",
    "PruningHistory": "kprune.history",
    "analyze": "kprune.graph",
    "PruneConfig": "kprune.config",
    "PruneResult": "kprune.pruning.loop",
    "prune": "kprune.pruning.loop",
    "profile": "kprune.latency.profile",
    "predict_latency": "kprune.latency.predict",
    "LatencyTable": "kprune.latency.table",
    "rank": "kprune.pruning.ranking",
    "rank_groups": "kprune.pruning.ranking",
    "select": "kprune.pruning.selection",
    "Target": "kprune.pruning.targets",
    "TargetContext": "kprune.pruning.targets",
    "register_target": "kprune.pruning.targets",
    "TrainingSetup": "kprune.training.setup",
    "TrainSettings": "kprune.training.setup",
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
# Submodules reachable as attributes (``kprune.data``); two keep their names from
# before they moved into pruning/ and training/.
_SUBMODULES = {
    "checkpoint": "kprune.pruning.checkpoint",
    "criteria": "kprune.criteria",
    "data": "kprune.data",
    "graph": "kprune.graph",
    "models": "kprune.models",
    "train": "kprune.training.train",
}

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kprune' has no attribute {name!r}")


def __dir__():
    return __all__
