"""Runs .tflite files under QEMU, marking the counter around inferences (kprune's guest side).

Standalone: it runs in the arm64 root's Python with numpy and ai_edge_litert,
under ``qemu-aarch64 -plugin libqemu_count.so`` (`kprune.latency.instructions`
starts it). For every file and repeat it issues the marker system call around
a loop of 0 inferences and around a loop of ``inferences`` inferences, on one
fixed random input; the plugin records the instruction counter at each mark.

    python count_guest.py JOB.json

JOB: {"files": [...], "inferences": K, "repeats": R, "threads": 1, "seed": 0,
"syscall": N, "magic": M}. A mark's label is ``file << 32 | repeat << 8 | phase``,
phase 0/1 around the empty loop and 2/3 around the K inferences.
"""

import ctypes
import gc
import json
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def fixed_input(detail, rng):
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(size) for size in detail["shape"])
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        return rng.integers(limits.min, limits.max, shape, endpoint=True).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def main(job_path):
    with open(job_path) as handle:
        job = json.load(handle)
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_ulong, ctypes.c_ulong]
    number, magic = job["syscall"], job["magic"]
    inferences = job["inferences"]
    for index, path in enumerate(job["files"]):
        interpreter = Interpreter(model_path=path, num_threads=job["threads"])
        interpreter.allocate_tensors()
        rng = np.random.default_rng(job["seed"])
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], fixed_input(detail, rng))
        invoke = interpreter.invoke
        invoke()  # the first run packs weights and plans memory: not an inference's cost
        gc.disable()
        for repeat in range(job["repeats"]):
            for phase, count in ((0, 0), (2, inferences)):
                label = index << 32 | repeat << 8 | phase
                syscall(number, magic, label)
                for _ in range(count):
                    invoke()
                syscall(number, magic, label + 1)
        gc.enable()
        del interpreter, invoke
    import ai_edge_litert

    facts = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "runtime_version": "ai_edge_litert %s" % getattr(ai_edge_litert, "__version__", "?"),
    }
    print(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1])
