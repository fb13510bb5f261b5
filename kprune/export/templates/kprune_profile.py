"""Times the files of a kprune latency-profile plan on this machine and writes the latency table.

    python3 kprune_profile.py profile/ --threads 1 --out latency_table.json

``profile/`` holds ``plan.json`` and the single-layer and whole-model files
that ``kprune profile MODEL --plan-only profile/`` wrote.
Every file is run on random inputs: after warm-up runs, the files of one
group (one layer configuration's grid, the channel sweep) take turns, one
timed inference each per round, so they share the machine's state; whole
models are groups of one, so that each runs with warm caches as a deployed
model does. Each file's time is the median over the rounds. The table this writes
is what ``kprune prune --latency-table`` and ``kprune.predict_latency`` read:
measure on the board, fit and prune on the workstation.

Needs Python 3.8 or later, numpy, and the runtime of the plan (ai_edge_litert
or tflite_runtime for .tflite, onnxruntime for .onnx). Never imports
TensorFlow or kprune.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

PLAN_NAME = "plan.json"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


def _random_input(shape, dtype, rng):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -100), min(info.max, 100), size=shape).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def tflite_runner(path, threads, rng):
    """A function that runs one inference of a .tflite file on fixed random inputs."""
    interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    values = [_random_input(tuple(d["shape"]), d["dtype"], rng) for d in inputs]
    output = interpreter.get_output_details()[0]["index"]

    def run():
        for details, value in zip(inputs, values):
            interpreter.set_tensor(details["index"], value)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return run


def onnx_runner(path, threads, rng):
    """A function that runs one inference of an .onnx file on fixed random inputs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {}
    for tensor in session.get_inputs():
        shape = tuple(1 if not isinstance(d, int) else d for d in tensor.shape)
        dtype = np.float32 if "float" in tensor.type else np.int64
        feed[tensor.name] = _random_input(shape, dtype, rng)
    return lambda: session.run(None, feed)


def time_group(runners, warmup, repeats):
    """Median seconds of each runner, the runners taking turns (the first rotating)."""
    for run in runners:
        for _ in range(warmup):
            run()
    timings = [[] for _ in runners]
    for round_index in range(repeats):
        for k in range(len(runners)):
            index = (round_index + k) % len(runners)
            started = time.perf_counter()
            runners[index]()
            timings[index].append(time.perf_counter() - started)
    return [float(np.median(t)) for t in timings]


def measure(folder, threads=1, warmup=5, repeats=50, seed=0, progress=None):
    """Times every file of the plan in ``folder``; returns the plan completed into a table.

    ``progress``, if given, is called with (groups done, groups in all) after each group.
    """
    with open(os.path.join(str(folder), PLAN_NAME)) as handle:
        plan = json.load(handle)
    opener = tflite_runner if plan["runtime"] == "tflite" else onnx_runner
    rng = np.random.default_rng(seed)
    measured = {}
    groups = plan["groups"]
    for done, group in enumerate(groups, 1):
        runners = [opener(os.path.join(str(folder), name), threads, rng) for name in group]
        for name, seconds in zip(group, time_group(runners, warmup, repeats)):
            measured[name] = seconds * 1000.0
        if progress is not None:
            progress(done, len(groups))
    table = dict(plan)
    table["threads"] = threads
    table["measured_ms"] = measured
    table["timing"] = {"warmup": warmup, "repeats": repeats, "statistic": "median"}
    table["environment"] = environment()
    return table


def environment():
    """The machine the table was measured on."""
    machine = platform.machine()
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "cpu part", "hardware")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "machine": "%s %s (%d cores)" % (machine, model, os.cpu_count() or 1),
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "runtime_version": _runtime_version(),
    }  # fmt: skip


def _runtime_version():
    for name in ("ai_edge_litert", "tflite_runtime", "onnxruntime"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        return "%s %s" % (name, getattr(module, "__version__", "?"))
    return "none"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the profile folder (plan.json and its files)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--repeats", type=int, default=50, help="timed rounds per group")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per file first")
    parser.add_argument("--out", default="latency_table.json", help="where to write the table")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.folder, PLAN_NAME)):
        print("error: %s has no %s. Fix: pass the profile folder of a bundle." % (args.folder, PLAN_NAME),
              file=sys.stderr)  # fmt: skip
        return 1

    def report(done, total):
        print("\rprofiling %d/%d" % (done, total), end="", file=sys.stderr, flush=True)

    table = measure(args.folder, args.threads, args.warmup, args.repeats, progress=report)
    print(file=sys.stderr)
    partial = args.out + ".partial"
    with open(partial, "w") as handle:
        json.dump(table, handle, indent=1)
    os.replace(partial, args.out)
    print("wrote %s (%d files timed)" % (args.out, len(table["measured_ms"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
