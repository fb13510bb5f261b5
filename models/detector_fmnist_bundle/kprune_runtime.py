"""Runs a kprune deployment bundle: manifest, preprocessing, TFLite or ONNX inference.

This file is copied into every bundle beside manifest.json, and both bundle
programs (run_bundle.py, rtmaps_kprune.py) import it, so the preprocessing
written in the manifest is implemented once. kprune's own verification and
benchmarks run models through this same code, so what is verified is what
runs on the board.

A bundle's manifest says its task: ``classifier`` (the default; `Classifier`
gives classes and probabilities) or ``raw`` (`RawModel` gives every output of
the model as an array, by the Keras output names in manifest["outputs"]).

Needs Python 3.8 or later, numpy, and one runtime: ai_edge_litert (or the
older tflite_runtime) for .tflite files, onnxruntime for .onnx files. Never
imports TensorFlow or kprune. Image files are read by kprune_images.py.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "kprune-bundle"
# Version 2 added raw-output bundles ("task": "raw"); classifier bundles still say 1.
FORMAT_VERSION = 2
TASKS = ("classifier", "raw")
BACKENDS = ("tflite", "tflite_int8", "onnx")
# ITU-R 601 luma, the weights of tf.image.rgb_to_grayscale.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


class BundleError(Exception):
    """A bundle, model file or image that cannot be used; the message says why."""


# --------------------------------------------------------------------------- manifest


def load_manifest(bundle_dir):
    """The parsed manifest.json of a bundle folder."""
    path = os.path.join(str(bundle_dir), MANIFEST_NAME)
    if not os.path.isfile(path):
        raise BundleError("%s not found. Fix: point to the folder written by `kprune bundle`." % path)
    with open(path, encoding="utf-8") as stream:
        manifest = json.load(stream)
    if manifest.get("format") != FORMAT_NAME:
        raise BundleError("%s is not a kprune bundle manifest." % path)
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(
            "%s has format version %s; this runtime reads up to %d. Fix: use the "
            "kprune_runtime.py shipped in the same bundle."
            % (path, manifest.get("format_version"), FORMAT_VERSION)
        )
    return manifest


def bundle_task(manifest):
    """``classifier`` or ``raw``: what the bundle's model gives (classifier when unsaid)."""
    task = manifest.get("task", "classifier")
    if task not in TASKS:
        raise BundleError(
            "The bundle's task is %r; this runtime knows %s. Fix: use the kprune_runtime.py "
            "shipped in the same bundle." % (task, ", ".join(TASKS))
        )
    return task


def output_names(manifest):
    """The names of the model's outputs, in the model's order (a classifier has one, its scores)."""
    if "outputs" in manifest:
        return [str(entry["name"]) for entry in manifest["outputs"]]
    return [str(manifest.get("output", {}).get("name", "output"))]


def sha256_of(path):
    digest = hashlib.sha256()
    with open(str(path), "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(bundle_dir, manifest, name):
    """Raises BundleError if a file differs from the sha256 recorded in the manifest."""
    expected = manifest.get("files", {}).get(name)
    if expected is None:
        raise BundleError("%s is not listed in the manifest of %s." % (name, bundle_dir))
    actual = sha256_of(os.path.join(str(bundle_dir), name))
    if actual != expected:
        raise BundleError(
            "%s in %s was modified after the bundle was written (sha256 %s, manifest "
            "says %s). Fix: copy the bundle again." % (name, bundle_dir, actual[:12], expected[:12])
        )


# --------------------------------------------------------------------------- preprocessing


class Preprocessor:
    """Raw pixels (uint8 0..255, H×W×C) → one model input, as manifest["preprocessing"] says.

    In order: reorder the source channels to RGB (or gray) and drop alpha;
    resize bilinearly (half-pixel centres, as tf.image.resize) when the size
    differs; convert gray ↔ RGB when the channel count differs; then
    ``(pixel * scale - mean[c]) / std[c]`` in float32.
    """

    def __init__(self, spec):
        self.height, self.width, self.channels = (int(v) for v in spec["input_shape"])
        self.scale = np.float32(spec.get("scale", 1.0 / 255.0))
        self.mean = _per_channel(spec.get("mean", (0.0,)), self.channels)
        self.std = _per_channel(spec.get("std", (1.0,)), self.channels)
        self.resize = spec.get("resize", "bilinear")
        if self.resize != "bilinear":
            raise BundleError("Resize method %r is not supported; use bilinear." % self.resize)
        if spec.get("layout", "NHWC") != "NHWC":
            raise BundleError("Layout %r is not supported; use NHWC." % spec.get("layout"))

    def __call__(self, image, channel_order=None):
        pixels = to_model_order(image, channel_order).astype(np.float32)
        if pixels.shape[0] != self.height or pixels.shape[1] != self.width:
            pixels = resize_bilinear(pixels, self.height, self.width)
        if pixels.shape[2] != self.channels:
            pixels = _convert_channels(pixels, self.channels)
        return (pixels * self.scale - self.mean) / self.std

    def batch(self, images, channel_order=None):
        """Stacks preprocessed images into one float32 NHWC batch.

        ``channel_order`` is one order for all images or a list, one per image.
        """
        orders = channel_order
        if not isinstance(orders, (list, tuple)):
            orders = [channel_order] * len(images)
        return np.stack([self(image, order) for image, order in zip(images, orders)])


def to_model_order(image, channel_order=None):
    """An H×W×C image with channels RGB (3) or gray (1), alpha dropped.

    ``channel_order`` names the source's channels: RGB, BGR, RGBA, BGRA, GRAY
    (also MONO, Y, Y800, L). When None, 1 channel is gray, 3 RGB, 4 RGBA.
    """
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.ndim != 3:
        raise BundleError("An image must be H×W or H×W×C; got shape %s." % (pixels.shape,))
    default = {1: "GRAY", 3: "RGB", 4: "RGBA"}.get(pixels.shape[2], "")
    # RTMaps' channel_seq is a C char[4]: it may carry padding.
    order = str(channel_order or default).strip(" \x00").upper()
    if order in ("GRAY", "MONO", "Y", "Y800", "L"):
        order = "GRAY"
    if len(order) != pixels.shape[2] and not (order == "GRAY" and pixels.shape[2] == 1):
        raise BundleError(
            "Channel order %r does not fit an image with %d channels." % (channel_order, pixels.shape[2])
        )
    if order == "GRAY":
        return pixels
    if order in ("RGB", "RGBA"):
        return pixels[:, :, :3]
    if order in ("BGR", "BGRA"):
        return pixels[:, :, 2::-1]
    raise BundleError("Unsupported channel order %r; use RGB, BGR, RGBA, BGRA or GRAY." % channel_order)


def resize_bilinear(image, height, width):
    """Bilinear resize of an H×W×C float32 image, identical to tf.image.resize(bilinear)."""
    source_height, source_width = image.shape[:2]
    rows_low, rows_high, row_weight = _sample_positions(source_height, height)
    cols_low, cols_high, col_weight = _sample_positions(source_width, width)
    top = image[rows_low]
    bottom = image[rows_high]
    row_weight = row_weight[:, np.newaxis, np.newaxis]
    col_weight = col_weight[np.newaxis, :, np.newaxis]
    top_left, top_right = top[:, cols_low], top[:, cols_high]
    bottom_left, bottom_right = bottom[:, cols_low], bottom[:, cols_high]
    upper = top_left + (top_right - top_left) * col_weight
    lower = bottom_left + (bottom_right - bottom_left) * col_weight
    return (upper + (lower - upper) * row_weight).astype(np.float32)


def _sample_positions(source, target):
    # Half-pixel centres: output i samples the source at (i + 0.5) * source/target - 0.5.
    scale = np.float32(source) / np.float32(target)
    position = (np.arange(target, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    low = np.maximum(floor, 0).astype(np.int64)
    high = np.minimum(np.ceil(position), source - 1).astype(np.int64)
    return low, high, (position - floor).astype(np.float32)


def _convert_channels(pixels, channels):
    if pixels.shape[2] == 1 and channels == 3:
        return np.repeat(pixels, 3, axis=2)
    if pixels.shape[2] == 3 and channels == 1:
        weights = np.asarray(GRAY_WEIGHTS, dtype=np.float32)
        return np.tensordot(pixels, weights, axes=([2], [0]))[:, :, np.newaxis].astype(np.float32)
    raise BundleError("Cannot convert %d image channels to %d." % (pixels.shape[2], channels))


def _per_channel(values, channels):
    values = [float(v) for v in values]
    if len(values) != channels:  # one statistic per source channel: use their mean
        values = [sum(values) / len(values)] * channels
    return np.asarray(values, dtype=np.float32)


# --------------------------------------------------------------------------- runtimes


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:  # older boards: the tflite-runtime wheel
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise BundleError(
                "No TFLite runtime. Fix: pip install ai-edge-litert (or tflite-runtime "
                "on Python versions it does not support), or use the ONNX backend."
            ) from None
    return Interpreter


class TFLiteModel:
    """A .tflite file run by the TFLite interpreter (XNNPACK on CPU).

    ``run`` takes float32 inputs and returns every output as float32 whatever
    the file's precision: int8 inputs and outputs are (de)quantized here.
    ``predict`` returns the first output (a classifier's scores).

    A file with several outputs keeps them in no useful order; they are found
    through its ``serving_default`` signature, whose keys are ``output_0``,
    ``output_1``, … in the Keras model's order (or the Keras output names).
    ``output_names`` says how many there are and what they are called.
    """

    def __init__(self, path, threads=None, output_names=None):
        interpreter_class = _interpreter_class()
        try:
            self._interpreter = interpreter_class(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as error:
            raise BundleError("Cannot load %s: %s" % (path, error)) from None
        self.path = str(path)
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = _tflite_outputs(self._interpreter, self.path, output_names)
        self._dynamic_batch = int(self._input.get("shape_signature", [0])[0]) == -1
        self._batch = int(self._input["shape"][0])
        self._interpreter.allocate_tensors()

    @property
    def input_shape(self):
        return tuple(int(v) for v in self._input["shape"][1:])

    def predict(self, images):
        return self.run(images)[0]

    def run(self, images):
        """Every output (a list of float32 arrays, batch first) of a float32 input batch."""
        images = np.asarray(images, dtype=np.float32)
        if not self._dynamic_batch and len(images) != self._batch:
            parts = [self.run(images[i : i + self._batch]) for i in range(0, len(images), self._batch)]
            return [np.concatenate(outputs) for outputs in zip(*parts)]
        if len(images) != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [len(images), *self.input_shape])
            self._interpreter.allocate_tensors()
            self._batch = len(images)
        self._interpreter.set_tensor(self._input["index"], _quantize(images, self._input))
        self._interpreter.invoke()
        return [_dequantize(self._interpreter.get_tensor(d["index"]), d) for d in self._outputs]

    def close(self):
        self._interpreter = None


def _tflite_outputs(interpreter, path, names):
    """The output tensor details of a .tflite file, in the model's order."""
    details = interpreter.get_output_details()
    if len(details) == 1:
        return details
    count = len(names or ())
    if count != len(details):
        raise BundleError(
            "%s has %d outputs, not the model's %d: it was exported from another model. "
            "Fix: export (and bundle) the model again." % (path, len(details), count)
        )
    try:
        signature = interpreter.get_signature_runner("serving_default")
        by_key = signature.get_output_details()
    except (ValueError, AttributeError) as error:
        raise BundleError(
            "%s has no usable serving_default signature (%s), so its %d outputs cannot be "
            "told apart. Fix: a TFLite runtime of version 2.7 or later, or the ONNX backend."
            % (path, error, len(details))
        ) from None
    del signature  # it holds views of the tensors, which forbid resizing them
    for keys in (["output_%d" % i for i in range(count)], list(names)):
        if sorted(keys) == sorted(by_key):
            return [by_key[key] for key in keys]
    raise BundleError(
        "%s has outputs %s, not the model's %s: it was exported from another model. "
        "Fix: export (and bundle) the model again." % (path, ", ".join(sorted(by_key)), ", ".join(names))
    )


def _quantize(values, details):
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        return values
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values, details):
    if np.dtype(details["dtype"]) == np.float32:
        return np.array(values, dtype=np.float32)
    scale, zero_point = details["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


class OnnxModel:
    """An .onnx file run by onnxruntime's CPU execution provider.

    ``run`` returns every output; a file with several is read by the names in
    ``output_names`` (kprune names them after the Keras outputs).
    """

    def __init__(self, path, threads=None, output_names=None):
        try:
            import onnxruntime
        except ImportError:
            raise BundleError(
                "onnxruntime is not installed. Fix: pip install onnxruntime, or use a TFLite backend."
            ) from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError("Cannot load %s: %s" % (path, error)) from None
        self.path = str(path)
        self._input_name = self._session.get_inputs()[0].name
        self._input_shape = tuple(self._session.get_inputs()[0].shape[1:])
        in_file = [value.name for value in self._session.get_outputs()]
        self._output_names = in_file
        if len(in_file) > 1:
            wanted = list(output_names or ())
            if sorted(wanted) != sorted(in_file):
                raise BundleError(
                    "%s has outputs %s, not the model's %s: it was exported from another model. "
                    "Fix: export (and bundle) the model again."
                    % (path, ", ".join(sorted(in_file)), ", ".join(wanted) or "none")
                )
            self._output_names = wanted

    @property
    def input_shape(self):
        return self._input_shape

    def predict(self, images):
        return self.run(images)[0]

    def run(self, images):
        """Every output (a list of float32 arrays, batch first) of a float32 input batch."""
        feed = {self._input_name: np.asarray(images, dtype=np.float32)}
        outputs = self._session.run(self._output_names, feed)
        return [np.asarray(values, dtype=np.float32) for values in outputs]

    def close(self):
        self._session = None


def open_model(path, threads=None, output_names=None):
    """A TFLiteModel or OnnxModel for a file, chosen by its suffix.

    ``output_names`` (the model's, in order) is needed for files with several outputs.
    """
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix == ".tflite":
        return TFLiteModel(path, threads, output_names)
    if suffix == ".onnx":
        return OnnxModel(path, threads, output_names)
    raise BundleError("%s is neither a .tflite nor an .onnx file." % path)


# --------------------------------------------------------------------------- bundle models


def locate_model(location, backend="tflite", check_files=True):
    """``(bundle folder, manifest, model file)`` for a bundle folder or a model file in one."""
    location = str(location)
    if os.path.isdir(location):
        bundle_dir = location
        manifest = load_manifest(bundle_dir)
        artifacts = manifest.get("artifacts", {})
        if backend not in artifacts:
            raise BundleError(
                "Backend %r is not in the bundle %s; it has %s."
                % (backend, bundle_dir, ", ".join(sorted(artifacts)) or "none")
            )
        model_name = artifacts[backend]["file"]
    else:
        bundle_dir = os.path.dirname(os.path.abspath(location))
        manifest = load_manifest(bundle_dir)
        model_name = os.path.basename(location)
    if check_files:
        check_file(bundle_dir, manifest, model_name)
    return bundle_dir, manifest, os.path.join(bundle_dir, model_name)


class RawModel:
    """A bundle's model and preprocessing, giving every output of raw images by name.

    For raw-output bundles (``"task": "raw"``: detectors, regressors, …); a
    classifier bundle gives its one output, the class scores, too.

    Args:
        location: The bundle folder, or one model file inside it.
        backend: ``tflite``, ``tflite_int8`` or ``onnx``; ignored when
            ``location`` is a model file.
        threads: Inference threads; None lets the runtime choose, 0 uses all cores.
        check_files: Compare the model file's sha256 with the manifest first.
    """

    def __init__(self, location, backend="tflite", threads=None, check_files=True):
        self.bundle_dir, self.manifest, path = locate_model(location, backend, check_files)
        bundle_task(self.manifest)
        self.output_names = output_names(self.manifest)
        if threads == 0:
            threads = os.cpu_count() or 1
        self.model = open_model(path, threads, self.output_names)
        self.preprocess = Preprocessor(self.manifest["preprocessing"])

    def run(self, images, channel_order=None):
        """``{output name: float32 array (N, ...)}`` of raw images, in one inference."""
        return self.run_inputs(self.preprocess.batch(images, channel_order))

    def run_inputs(self, inputs):
        """Like `run`, for a batch that is already the model's input (N, H, W, C), preprocessed."""
        return dict(zip(self.output_names, self.model.run(inputs)))

    def close(self):
        self.model.close()


# --------------------------------------------------------------------------- classifier


def softmax(scores):
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


class Prediction:
    """One image's top-1 class, its label and probability, and all probabilities."""

    __slots__ = ("class_id", "label", "probability", "probabilities")

    def __init__(self, class_id, label, probability, probabilities):
        self.class_id = class_id
        self.label = label
        self.probability = probability
        self.probabilities = probabilities

    def to_dict(self):
        return {"class_id": self.class_id, "label": self.label, "probability": self.probability}


class Classifier:
    """A bundle's model, preprocessing and labels, ready to classify raw images.

    Args:
        location: The bundle folder, or one model file inside it.
        backend: ``tflite``, ``tflite_int8`` or ``onnx``; ignored when
            ``location`` is a model file.
        threads: Inference threads; None lets the runtime choose, 0 uses all cores.
        check_files: Compare the model file's sha256 with the manifest first.
    """

    def __init__(self, location, backend="tflite", threads=None, check_files=True):
        bundle_dir, self.manifest, path = locate_model(location, backend, check_files)
        if bundle_task(self.manifest) != "classifier":
            raise BundleError(
                "The bundle %s holds a model with raw outputs (%s), not an image classifier. "
                "Fix: run it with kprune_runtime.RawModel, or run_bundle.py --out FOLDER, which "
                "writes its outputs as .npy." % (bundle_dir, ", ".join(output_names(self.manifest)))
            )
        if threads == 0:
            threads = os.cpu_count() or 1
        self.bundle_dir = bundle_dir
        self.model = open_model(path, threads)
        self.preprocess = Preprocessor(self.manifest["preprocessing"])
        self.class_names = list(self.manifest.get("class_names") or [])
        self.outputs_probabilities = self.manifest.get("output", {}).get("kind") == "probabilities"

    def probabilities(self, images, channel_order=None):
        """Class probabilities (N, classes) of raw images."""
        scores = self.model.predict(self.preprocess.batch(images, channel_order))
        return scores if self.outputs_probabilities else softmax(scores)

    def classify(self, image, channel_order=None):
        """The top-1 `Prediction` of one raw image."""
        return self.classify_batch([image], channel_order)[0]

    def classify_batch(self, images, channel_order=None):
        """The top-1 `Prediction` of each raw image, in one inference."""
        predictions = []
        for row in self.probabilities(images, channel_order):
            class_id = int(np.argmax(row))
            label = self.class_names[class_id] if class_id < len(self.class_names) else str(class_id)
            predictions.append(Prediction(class_id, label, float(row[class_id]), row))
        return predictions

    def close(self):
        self.model.close()
