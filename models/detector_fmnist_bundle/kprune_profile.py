"""Times the files of a kprune latency-profile plan on this machine and writes the latency table.

    python3 kprune_profile.py profile/ --threads 1 --out latency_table.json

``profile/`` holds ``plan.json`` and the single-layer and whole-model files
that ``kprune profile MODEL --plan-only profile/`` wrote.
Every file runs on random inputs set once, and only the inference itself
(``invoke``) is timed: copying a layer's input in and its output out is not
part of that layer's time inside a model. Each file runs back to back after
warm-up runs, with warm caches, as a layer inside a running model does; the
files of one group (one layer configuration's grid, the channel sweep) take
turns in 3 passes, so that slow drifts of the machine hit them alike. Each
file's time is the median of its runs in its fastest pass, over sweeps of
the whole plan that take at least 30 seconds (``--seconds``): other work on
the machine only ever slows a pass down. The table this writes
is what ``kprune prune --latency-table`` and ``kprune.predict_latency`` read:
measure on the board, fit and prune on the workstation.

This module is kprune's one timer: `kprune bench` compares whole models with
its `time_alternating`, `kprune profile` times a plan here with `measure`.

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
# The plan is timed in sweeps (each file keeps its fastest time) for at least
# MIN_SECONDS and MIN_SWEEPS sweeps, at most MAX_SWEEPS.
MIN_SECONDS, MIN_SWEEPS, MAX_SWEEPS = 30.0, 2, 20


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
    """A function that runs one inference of a .tflite file; its random inputs are set once."""
    interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    for details in interpreter.get_input_details():
        interpreter.set_tensor(
            details["index"], _random_input(tuple(details["shape"]), details["dtype"], rng)
        )
    return interpreter.invoke


def onnx_runner(path, threads, rng):
    """A function that runs one inference of an .onnx file on fixed random inputs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    binding = session.io_binding()  # inputs bound once: no copy per run
    for tensor in session.get_inputs():
        shape = tuple(1 if not isinstance(d, int) else d for d in tensor.shape)
        dtype = np.float32 if "float" in tensor.type else np.int64
        binding.bind_cpu_input(tensor.name, _random_input(shape, dtype, rng))
    for tensor in session.get_outputs():
        binding.bind_output(tensor.name)
    return lambda: session.run_with_iobinding(binding)


def time_alternating(runners, warmup, repeats):
    """Seconds of each of ``repeats`` runs of each runner (`kprune bench`'s protocol, for
    comparing whole models): after ``warmup`` untimed runs each, the runners take turns,
    one run each per round, and who goes first rotates, so that no model always follows
    the same neighbour and a slow spell of the machine falls on all of them."""
    for run in runners:
        for _ in range(warmup):
            run()
    timings = [[] for _ in runners]
    for round_index in range(repeats):
        for offset in range(len(runners)):
            index = (round_index + offset) % len(runners)
            started = time.perf_counter()
            runners[index]()
            timings[index].append(time.perf_counter() - started)
    return timings


def time_group(runners, warmup, repeats, passes=3):
    """Seconds per run of each runner. In each of ``passes`` passes over the group, every
    runner runs ``warmup`` times untimed, then its share of ``repeats`` timed runs back
    to back (warm caches, as a layer inside a running model); its time is the median of
    its fastest pass (other work on the machine only ever slows a pass down)."""
    passes = max(1, min(passes, repeats))
    shares = [repeats // passes + (1 if p < repeats % passes else 0) for p in range(passes)]
    medians = [[] for _ in runners]
    for share in shares:
        for run, found in zip(runners, medians):
            for _ in range(warmup):
                run()
            times = []
            for _ in range(share):
                started = time.perf_counter()
                run()
                times.append(time.perf_counter() - started)
            found.append(float(np.median(times)))
    return [min(found) for found in medians]


def measure(folder, threads=1, warmup=5, repeats=50, seed=0, progress=None, seconds=MIN_SECONDS):
    """Times every file of the plan in ``folder``; returns the plan completed into a table.

    The whole plan is timed in sweeps, one after the other, for at least
    ``seconds`` and at least two sweeps; each file keeps its fastest time. Shared
    hosts have slow spells seconds to tens of seconds long (measured here: the
    same model at 0.53 ms, then 0.70–0.80 ms for half a minute); a file is biased
    only when every sweep falls into one.
    ``progress``, if given, is called with (groups done, groups in all) after each group.
    """
    with open(os.path.join(str(folder), PLAN_NAME)) as handle:
        plan = json.load(handle)
    opener = tflite_runner if plan["runtime"] == "tflite" else onnx_runner
    rng = np.random.default_rng(seed)
    groups = plan["groups"]
    runners = [[opener(os.path.join(str(folder), name), threads, rng) for name in group] for group in groups]
    measured = {}
    started = time.perf_counter()
    sweeps = MIN_SWEEPS
    sweep = 0
    while sweep < sweeps:
        for done, (group, group_runners) in enumerate(zip(groups, runners), 1):
            for name, found in zip(group, time_group(group_runners, warmup, repeats)):
                measured[name] = min(found * 1000.0, measured.get(name, float("inf")))
            if progress is not None:
                progress(sweep * len(groups) + done, sweeps * len(groups))
        sweep += 1
        if sweep == 1:  # now the length of a sweep is known: enough sweeps to fill ``seconds``
            one = time.perf_counter() - started
            sweeps = max(MIN_SWEEPS, min(MAX_SWEEPS, int(np.ceil(seconds / max(one, 1e-3)))))
    table = dict(plan)
    table["threads"] = threads
    table["measured_ms"] = measured
    table["timing"] = {
        "warmup": warmup,
        "repeats": repeats,
        "statistic": "median",
        "protocol": "invoke only, back to back, median of the fastest of 3 passes",
        "seconds": seconds,
        "sweeps": sweep,
    }
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
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtime_version": _runtime_version(),
    }


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
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per file")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per file first")
    parser.add_argument(
        "--seconds",
        type=float,
        default=MIN_SECONDS,
        help="time the whole plan again and again for at least this long (default 30)",
    )
    parser.add_argument("--out", default="latency_table.json", help="where to write the table")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.folder, PLAN_NAME)):
        print(
            "error: %s has no %s. Fix: pass the profile folder of a bundle." % (args.folder, PLAN_NAME),
            file=sys.stderr,
        )
        return 1

    def report(done, total):
        print("\rprofiling %d/%d" % (done, total), end="", file=sys.stderr, flush=True)

    table = measure(
        args.folder, args.threads, args.warmup, args.repeats, progress=report, seconds=args.seconds
    )
    print(file=sys.stderr)
    partial = args.out + ".partial"
    with open(partial, "w") as handle:
        json.dump(table, handle, indent=1)
    os.replace(partial, args.out)
    print("wrote %s (%d files timed)" % (args.out, len(table["measured_ms"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
