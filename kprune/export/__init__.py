"""Export to TFLite and ONNX, verification with the real runtimes, deployment bundles.

``export_tflite`` and ``export_onnx`` write one file each; ``verify_export``
runs those files with ai_edge_litert and onnxruntime against Keras;
``write_bundle`` packages them with preprocessing, labels and the runtime
programs for an embedded board (RTMaps component and a command-line runner).
"""

from kprune.export.artifact import QUANTIZE_MODES, ExportedArtifact, TensorInfo
from kprune.export.bundle import check_bundle, write_bundle
from kprune.export.describe import describe_artifact
from kprune.export.onnx import export_onnx
from kprune.export.pipeline import ExportResult, export_model, verify_files
from kprune.export.tflite import export_tflite, tflite_ops
from kprune.export.verify import ArtifactCheck, VerificationReport, verify_export

__all__ = [
    "QUANTIZE_MODES",
    "ArtifactCheck",
    "ExportResult",
    "ExportedArtifact",
    "TensorInfo",
    "VerificationReport",
    "check_bundle",
    "describe_artifact",
    "export_model",
    "export_onnx",
    "export_tflite",
    "tflite_ops",
    "verify_export",
    "verify_files",
    "write_bundle",
]
