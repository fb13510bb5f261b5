"""RTMaps Python component: classifies each image of its input with a kprune bundle.

For image classifier bundles only: a raw-output bundle ("task": "raw" in
manifest.json, e.g. a detector) is refused when the component is born; run
those with run_bundle.py --out FOLDER or kprune_runtime.RawModel.

Load this file in RTMaps' Python component (PythonBridge); the class must be
named ``rtmaps_python``. It needs numpy and ai_edge_litert (or onnxruntime)
in RTMaps' Python, and kprune_runtime.py and manifest.json beside the model.

Input:
    image        IplImage (uint8 H×W×C, channel order read from its channel_seq).
Outputs (timestamped like the input frame):
    class_id     int64, top-1 class index.
    label        text, the class name from manifest.json.
    probability  float64, the top-1 probability.
    probabilities  float32 vector, all classes.
Properties:
    model_path   A model file of the bundle (model.tflite, model_int8.tflite,
                 model.onnx) or the bundle folder; empty = the folder of this file.
    backend      tflite | tflite_int8 | onnx; which file to use when
                 model_path is a folder, checked against the file otherwise.
    threads      Inference threads; 0 = all cores.
"""

import os
import sys

import rtmaps.core as rt
import rtmaps.types
from rtmaps.base_component import BaseComponent

BACKENDS = ("tflite", "tflite_int8", "onnx")
_SUFFIXES = {"tflite": ".tflite", "tflite_int8": ".tflite", "onnx": ".onnx"}


def _this_folder():
    try:
        return os.path.dirname(os.path.abspath(__file__))
    except NameError:  # some embedders execute the source without __file__
        return os.getcwd()


class rtmaps_python(BaseComponent):  # noqa: N801  (the name RTMaps looks for)
    def __init__(self):
        BaseComponent.__init__(self)
        self.classifier = None

    def Dynamic(self):
        self.add_input("image", rtmaps.types.IPL_IMAGE)
        self.add_output("class_id", rtmaps.types.AUTO)
        self.add_output("label", rtmaps.types.AUTO)
        self.add_output("probability", rtmaps.types.AUTO)
        self.add_output("probabilities", rtmaps.types.AUTO)
        self.add_property("model_path", "", rtmaps.types.FILE)
        enum = "%d|0|%s" % (len(BACKENDS), "|".join(BACKENDS))
        self.add_property("backend", enum, rtmaps.types.ENUM)
        self.add_property("threads", 1)

    def Birth(self):
        backend = BACKENDS[int(self.properties["backend"].data)]
        location = str(self.properties["model_path"].data or "").strip() or _this_folder()
        bundle_dir = location if os.path.isdir(location) else os.path.dirname(location)
        if not os.path.isdir(location) and not location.endswith(_SUFFIXES[backend]):
            raise ValueError(
                "model_path %s does not fit backend %s. Fix: pick a %s file or the bundle folder."
                % (location, backend, _SUFFIXES[backend])
            )
        for folder in (bundle_dir, _this_folder()):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        import kprune_runtime

        bundle_dir = location if os.path.isdir(location) else os.path.dirname(os.path.abspath(location))
        manifest = kprune_runtime.load_manifest(bundle_dir)
        if kprune_runtime.bundle_task(manifest) != "classifier":
            raise ValueError(
                "rtmaps_kprune.py classifies images only, and the bundle %s holds a model with raw "
                "outputs (%s). Fix: run it with run_bundle.py --out FOLDER, or build your own "
                "component on kprune_runtime.RawModel."
                % (bundle_dir, ", ".join(kprune_runtime.output_names(manifest)))
            )
        threads = int(self.properties["threads"].data)
        self.classifier = kprune_runtime.Classifier(location, backend, threads)
        rt.report_info(
            "kprune: %s loaded, %d classes"
            % (os.path.basename(self.classifier.model.path), len(self.classifier.class_names))
        )

    def Core(self):
        element = self.inputs["image"].ioelt
        frame = element.data
        order = getattr(frame, "channel_seq", None) or None
        prediction = self.classifier.classify(frame.image_data, order)
        values = (
            ("class_id", int(prediction.class_id)),
            ("label", prediction.label),
            ("probability", float(prediction.probability)),
            ("probabilities", prediction.probabilities.astype("float32")),
        )
        for name, value in values:
            out = rtmaps.types.Ioelt()
            out.data = value
            out.ts = element.ts
            self.outputs[name].write(out)

    def Death(self):
        if self.classifier is not None:
            self.classifier.close()
            self.classifier = None
