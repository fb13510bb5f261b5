#!/usr/bin/env python3
"""Runs a bundle's board-side programs on a folder of images and records what they output.

The same file runs on x86 (the reference) and inside the arm64 root under
QEMU (scripts/checks/check_aarch64.sh), with what a board has: Python ≥ 3.8, numpy
and the runtimes, no TensorFlow, no kprune. For every model file in the
manifest it runs

- ``run_bundle.py IMAGES --backend B --json`` in its own process, as a user
  would (class id and top-1 probability per image);
- the RTMaps component ``rtmaps_kprune.py`` against the stand-in RTMaps API
  (tests/export/rtmaps_stub), fed the images as GRAY/RGB frames (all
  probabilities per image);
- with ``--profile-plan``, the bundle's board-side profiler ``kprune_profile.py``
  on that plan folder (``kprune profile MODEL --plan-only DIR``), which writes
  a latency table next to the record (``FILE.latency_table.json``).

and writes one JSON file; scripts.checks.crosscheck compares two of them.

Usage:
    python3 aarch64_probe.py --bundle DIR --images DIR --rtmaps-stub DIR --out FILE.json [--profile-plan DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

PROFILER_PROGRAM = "kprune_profile.py"
# Few rounds: under QEMU the times say nothing about the board, only that the
# profiler runs there and which kernels' tile pattern the table shows.
PROFILER_ROUNDS = ("--repeats", "15", "--warmup", "2", "--seconds", "0")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="The bundle folder.")
    parser.add_argument("--images", required=True, help="Folder of PNG images.")
    parser.add_argument("--rtmaps-stub", required=True, help="Folder holding the rtmaps package.")
    parser.add_argument("--out", required=True, help="The JSON file to write.")
    parser.add_argument("--profile-plan", help="A profile plan folder for the bundle's profiler.")
    return parser.parse_args(argv)


def environment():
    """Machine, Python, numpy and runtime versions, and the CPU features numpy sees."""
    from importlib import metadata

    versions = {}
    for name in ("numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": versions,
        "qemu_cpu": os.environ.get("QEMU_CPU"),
        "cpu_features": sorted(name for name, present in __cpu_features__.items() if present),
    }


def run_program(bundle, images, backend):
    """run_bundle.py in its own process: class ids and top-1 probabilities, in path order."""
    command = [sys.executable, os.path.join(bundle, "run_bundle.py"), images, "--backend", backend, "--json"]
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-2000:] or "exit code %d" % result.returncode}
    rows = sorted(json.loads(result.stdout), key=lambda row: row["path"])
    return {
        "paths": [os.path.basename(row["path"]) for row in rows],
        "class_ids": [row["class_id"] for row in rows],
        "top1_probabilities": [row["probability"] for row in rows],
        "seconds": seconds,
        "summary": result.stderr.strip().splitlines()[-1:],
        "xnnpack": "XNNPACK delegate" in result.stderr,
        "warnings": [line for line in result.stderr.splitlines() if "rror" in line][:5],
    }


def run_component(bundle, paths, backend, stub):
    """The RTMaps component, one frame per image: all probabilities per image."""
    if stub not in sys.path:
        sys.path.insert(0, stub)
    sys.path.insert(0, bundle)
    import kprune_images
    import rtmaps.types

    source = os.path.join(bundle, "rtmaps_kprune.py")
    spec = importlib.util.spec_from_file_location("rtmaps_kprune", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    component = module.rtmaps_python()
    component.Dynamic()
    component.properties["backend"].data = component.properties["backend"].choices.index(backend)
    component.properties["model_path"].data = bundle
    started = time.perf_counter()
    component.Birth()
    for index, path in enumerate(paths):
        pixels, order = kprune_images.read_image(path)
        frame = rtmaps.types.IplImage(np.ascontiguousarray(pixels), "COLR", order)
        component.inputs["image"].ioelt = rtmaps.types.Ioelt(frame, ts=index)
        component.Core()
    component.Death()
    seconds = time.perf_counter() - started
    written = {name: component.outputs[name].written for name in component.outputs}
    return {
        "paths": [os.path.basename(path) for path in paths],
        "class_ids": [element.data for element in written["class_id"]],
        "probabilities": [element.data.tolist() for element in written["probabilities"]],
        "timestamps_kept": [e.ts for e in written["class_id"]] == list(range(len(paths))),
        "seconds": seconds,
    }


def run_profiler(bundle, plan, out):
    """The bundle's board-side profiler on ``plan``; the table goes next to the record ``out``."""
    if plan is None:
        return {"status": "not run", "note": "no --profile-plan given"}
    program = os.path.join(bundle, PROFILER_PROGRAM)
    if not os.path.isfile(program):
        return {
            "status": "failed",
            "error": "the bundle has no %s (bundles of kprune 0.1 before "
            "the latency work); write it again with kprune bundle" % PROFILER_PROGRAM,
        }
    table = os.path.splitext(out)[0] + ".latency_table.json"
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, program, plan, "--out", table, *PROFILER_ROUNDS], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        return {
            "status": "failed",
            "error": (process.stderr or process.stdout).strip()[-2000:],
            "seconds": seconds,
        }
    return {"status": "ran", "table": os.path.basename(table), "seconds": seconds}


def main(argv=None):
    arguments = parse_arguments(argv)
    bundle = os.path.abspath(arguments.bundle)
    images = os.path.abspath(arguments.images)
    with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as stream:
        backends = list(json.load(stream)["artifacts"])
    paths = sorted(os.path.join(images, name) for name in os.listdir(images) if name.endswith(".png"))
    report = {"environment": environment(), "backends": {}}
    for backend in backends:
        report["backends"][backend] = {
            "run_bundle": run_program(bundle, images, backend),
            "rtmaps": run_component(bundle, paths, backend, os.path.abspath(arguments.rtmaps_stub)),
        }
        print("%s: done" % backend, file=sys.stderr)
    plan = os.path.abspath(arguments.profile_plan) if arguments.profile_plan else None
    report["profiler"] = run_profiler(bundle, plan, os.path.abspath(arguments.out))
    print("profiler: %s" % report["profiler"]["status"], file=sys.stderr)
    with open(arguments.out, "w", encoding="utf-8") as stream:
        json.dump(report, stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
