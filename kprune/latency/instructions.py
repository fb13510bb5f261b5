"""Executed aarch64 instructions per inference: a cost of .tflite files without the board.

The files run in an arm64 Debian root under QEMU user mode, on one emulated
core (``-cpu cortex-a53`` or ``cortex-a72``, with a ``/proc/cpuinfo`` that names
it, so that XNNPACK picks that core's kernels), with ai_edge_litert at one
thread on one fixed random input. A small TCG plugin (``qemu_count.c``) counts
the guest instructions that execute and records the count when the guest
marks a point with a system call; one emulator process counts all the files.

Instruction counts are deterministic and a proxy for cycles: close on the
in-order Cortex-A53 within one kernel family, weaker between int8 and fp32
kernels (their instructions cost different cycles). They are not
milliseconds; the board's milliseconds come from the bundle's
``kprune_profile.py`` (docs/LATENCY.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from kprune.errors import EmulatorError, InvalidArgumentError, ModelFileError
from kprune.export.templates.kprune_profile import PLAN_NAME
from kprune.files import write_atomically
from kprune.latency.emulator import (
    CORES,
    ROOT_COMMAND,
    GuestPython,
    build_plugin,
    find_qemu,
)
from kprune.latency.table import measured_key

UNIT = "instructions"
DEVICES = tuple(f"qemu:{core}" for core in CORES)
# The marker: a system call number Linux does not use on aarch64 (QEMU answers ENOSYS after
# the plugin has seen it), and a first argument that says it is ours ("kprune" in ASCII).
MARK_SYSCALL = 0x6B70
MARK_MAGIC = 0x6B7072756E65
GUEST_PROGRAM = Path(__file__).with_name("count_guest.py")
# Counts are nearly deterministic: on the 390 files of SqueezeNet's profile plan, 10 inferences
# differ from 100 by at most 0.4% (21 instructions of a 5,074-instruction file), median 0.03%.
INFERENCES = 20


def count_instructions(
    files: Iterable[str | os.PathLike],
    cpu: str = "cortex-a53",
    *,
    inferences: int = INFERENCES,
    repeats: int = 3,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Executed aarch64 instructions per inference of each .tflite file, on an emulated core.

    For every file and repeat, the guest marks the counter around a loop of
    ``inferences`` calls of ``Interpreter.invoke()`` and around the same loop
    with no calls; a file's count is the difference of the two divided by
    ``inferences``, the minimum over ``repeats``. Only the marks themselves are
    so removed (measured in the same run); each count still holds the per-call
    cost of ``invoke()`` (Python, TFLite's interpreter loop), which a model of
    one cheap layer shows. The first inference (weight packing) is not counted.

    Args:
        files: ``.tflite`` files (float32 or quantized, one or more inputs).
        cpu: The emulated core, one of `CORES` (``cortex-a53``, ``cortex-a72``).
        inferences: Inferences between the marks.
        repeats: Times each file is counted; the smallest count is kept.
        seed: Seed of the fixed random input (integer inputs span their type's range).
        root: The arm64 root (default ``~/.cache/kprune/aarch64-root/bookworm``
            or ``$KPRUNE_AARCH64_ROOT``), built by
            ``scripts/checks/check_aarch64.sh --root-only``.

    Returns:
        ``{file: instructions per inference}``, keyed by the files as given.

    Raises:
        InvalidArgumentError: On an unknown core or a count below 1.
        ModelFileError: If a file is missing or not a ``.tflite`` file.
        EmulatorError: If qemu-aarch64 (dynamic), the root, its venv or a C
            compiler is missing, or the guest fails.

    Example:
        >>> count_instructions(["squeezenet.tflite", "squeezenet_int8.tflite"], cpu="cortex-a53")
        {'squeezenet.tflite': 11966558.44, 'squeezenet_int8.tflite': 7917593.28}
    """
    files = [str(file) for file in files]
    counts, _ = _count(files, cpu, inferences, repeats, seed, root)
    return counts


def count_plan(
    folder: str | os.PathLike,
    cpu: str = "cortex-a53",
    *,
    inferences: int = INFERENCES,
    repeats: int = 3,
    root: str | os.PathLike | None = None,
) -> dict:
    """Counts every file of a profile plan (`kprune.latency.profile.write_plan`) on an emulated core.

    Returns:
        The plan completed into a latency table in instructions: ``unit``,
        ``measured_instructions`` (per inference, as `count_instructions`),
        ``counting`` (how) and ``environment`` (the emulated core, QEMU, the
        guest's runtime).
    """
    folder = Path(folder)
    plan = json.loads((folder / PLAN_NAME).read_text())
    names = [name for group in plan["groups"] for name in group]
    counts, environment = _count([str(folder / name) for name in names], cpu, inferences, repeats, 0, root)
    table = dict(plan)
    table["unit"] = UNIT
    table["threads"] = 1
    table[measured_key(UNIT)] = {name: counts[str(folder / name)] for name in names}
    table["counting"] = {
        "inferences": inferences,
        "repeats": repeats,
        "statistic": "minimum over repeats of (marks around K inferences − marks around none) / K",
    }
    table["environment"] = environment
    return table


def check_emulation(root: str | os.PathLike | None = None) -> None:
    """Refuses early, before files are exported, when something counting needs is missing.

    Raises:
        EmulatorError: If qemu-aarch64 (dynamic), the root, its venv or a C compiler is missing.
    """
    find_qemu()
    GuestPython(root)
    build_plugin()


def device_core(device: str) -> str:
    """The emulated core of a ``qemu:CORE`` device name.

    Raises:
        InvalidArgumentError: If ``device`` is not one of `DEVICES`.
    """
    if device not in DEVICES:
        raise InvalidArgumentError(f"`device` must be one of {DEVICES}. Received device={device!r}.")
    return device.split(":", 1)[1]


def _count(files: list[str], cpu, inferences, repeats, seed, root) -> tuple[dict[str, float], dict]:
    _check(files, cpu, inferences, repeats)
    qemu = find_qemu()
    guest = GuestPython(root)
    plugin = build_plugin()
    with tempfile.TemporaryDirectory(prefix="kprune-count-") as folder:
        folder = Path(folder)
        view = guest.core_view(cpu, folder / "root")
        # A copy beside the job: the guest's sys.path[0] must not be kprune/latency/.
        program = folder / GUEST_PROGRAM.name
        write_atomically(program, GUEST_PROGRAM.read_bytes())
        job = {
            "files": [str(Path(file).resolve()) for file in files],
            "inferences": inferences,
            "repeats": repeats,
            "threads": 1,
            "seed": seed,
            "syscall": MARK_SYSCALL,
            "magic": MARK_MAGIC,
        }
        write_atomically(folder / "job.json", json.dumps(job).encode())
        marks_path = folder / "marks.txt"
        command = [
            qemu,
            "-L",
            str(view),
            "-cpu",
            cpu,
            "-plugin",
            f"{plugin},out={marks_path},syscall={MARK_SYSCALL},magic={MARK_MAGIC}",
            str(guest.executable),
            str(program),
            str(folder / "job.json"),
        ]
        result = subprocess.run(command, env=guest.environment(), capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise EmulatorError(
                f"Counting instructions under qemu-aarch64 -cpu {cpu} failed (exit {result.returncode}): "
                f"{last}. Fix: check that the files run with ai_edge_litert here (`kprune verify`), "
                f"and rebuild the root's venv with `{ROOT_COMMAND}`."
            )
        marks = read_marks(marks_path)
    guest_facts = json.loads(result.stdout.strip().splitlines()[-1])
    environment = {
        "machine": f"aarch64 {cpu} (QEMU {qemu_version(qemu)}, instructions)",
        "device": f"qemu:{cpu}",
        "root": str(guest.root),
        # LiteRT says so on stderr; without /sys or a cpuinfo it runs its builtin kernels instead.
        "xnnpack_delegate": "XNNPACK delegate" in result.stderr,
        **guest_facts,
    }
    return per_inference(marks, files, inferences, repeats), environment


def qemu_version(qemu: str) -> str:
    """``7.2.22`` of ``qemu-aarch64 version 7.2.22 (Debian …)``."""
    first = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return first.split("version", 1)[-1].split()[0] if "version" in first else "unknown"


def read_marks(path: str | os.PathLike) -> dict[int, int]:
    """The plugin's marks file: ``{label: instruction count at the mark}`` (``exit`` left out).

    Raises:
        EmulatorError: If the plugin wrote no file.
    """
    path = Path(path)
    if not path.is_file():
        raise EmulatorError(
            f"The QEMU counting plugin wrote no marks ({path}). Fix: use Debian's dynamic "
            "qemu-aarch64 (package qemu-user), which runs plugins' exit callbacks."
        )
    marks = {}
    for line in path.read_text().splitlines():
        label, count = line.split()
        if label != "exit":
            marks[int(label)] = int(count)
    return marks


def per_inference(marks: dict[int, int], files: list[str], inferences: int, repeats: int) -> dict[str, float]:
    """Instructions per inference from the marks of `count_guest.py` (see its labels).

    Raises:
        EmulatorError: If a mark is missing (the guest stopped early).
    """
    counts = {}
    for index, file in enumerate(files):
        per_repeat = []
        for repeat in range(repeats):
            base = index << 32 | repeat << 8
            try:
                empty = marks[base | 1] - marks[base | 0]
                loop = marks[base | 3] - marks[base | 2]
            except KeyError:
                raise EmulatorError(
                    f"The guest stopped before counting {file} (repeat {repeat}). "
                    "Fix: run it again; if it persists, rebuild the root with " + ROOT_COMMAND
                ) from None
            per_repeat.append((loop - empty) / inferences)
        counts[file] = min(per_repeat)
    return counts


def _check(files: list[str], cpu: str, inferences: int, repeats: int) -> None:
    if cpu not in CORES:
        raise InvalidArgumentError(f"`cpu` must be one of {sorted(CORES)}. Received cpu={cpu!r}.")
    if inferences < 1 or repeats < 1:
        raise InvalidArgumentError(
            f"`inferences` and `repeats` must be ≥ 1. Received inferences={inferences}, repeats={repeats}."
        )
    if not files:
        raise InvalidArgumentError("`files` is empty: nothing to count.")
    for file in files:
        if not Path(file).is_file():
            raise ModelFileError(f"{file} does not exist. Fix: pass the path of a .tflite file.")
        if Path(file).suffix != ".tflite":
            raise ModelFileError(
                f"{file} is not a .tflite file. Fix: export one with `kprune export MODEL --format tflite`."
            )
