"""What kprune needs to run an aarch64 program under QEMU user mode: the emulator, the arm64
root and its venv, a ``/proc/cpuinfo`` for the emulated core, and the counting plugin.

The root and its venv are built by ``scripts/checks/check_aarch64.sh --root-only`` (an arm64
Debian root made by mmdebstrap, numpy and ai-edge-litert from PyPI's aarch64 wheels in
`COUNT_VENV`). Debian's *dynamic* ``qemu-aarch64`` (package ``qemu-user``) runs the guest:
``qemu-user-static`` cannot load TCG plugins. Each missing piece is refused with one
`EmulatorError` line that names the fix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from kprune.errors import EmulatorError, InvalidArgumentError
from kprune.files import write_atomically

# MIDR fields of the cores QEMU emulates as `-cpu cortex-a53|cortex-a72` (Arm TRMs).
CORES = {
    "cortex-a53": {"part": "0xd03", "variant": "0x0", "revision": 4},
    "cortex-a72": {"part": "0xd08", "variant": "0x0", "revision": 3},
}
_CORE_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
# scripts/checks/check_aarch64.sh --root-only installs numpy and ai-edge-litert here.
COUNT_VENV = "/opt/kprune-count/venv"
ROOT_COMMAND = "sudo PYTHON=.venv/bin/python bash scripts/checks/check_aarch64.sh --root-only"
QEMU_PACKAGES = "apt-get install -y qemu-user libcapstone4 liburing2"
PLUGIN_SOURCE = "qemu_count.c"


def cpuinfo_text(core: str, processors: int = 2) -> str:
    """An aarch64 ``/proc/cpuinfo`` as Linux writes it, for ``processors`` cores of one kind.

    Raises:
        InvalidArgumentError: If the core is not one of `CORES`.
    """
    if core not in CORES:
        raise InvalidArgumentError(f"Unknown core {core!r}. Fix: pass one of {', '.join(CORES)}.")
    fields = CORES[core]
    block = (
        "BogoMIPS\t: 100.00\n"
        f"Features\t: {_CORE_FEATURES}\n"
        "CPU implementer\t: 0x41\n"
        "CPU architecture: 8\n"
        f"CPU variant\t: {fields['variant']}\n"
        f"CPU part\t: {fields['part']}\n"
        f"CPU revision\t: {fields['revision']}\n"
    )
    return "".join(f"processor\t: {index}\n{block}\n" for index in range(processors))


def default_root(suite: str = "bookworm") -> Path:
    """Where ``check_aarch64.sh`` keeps the arm64 root of ``suite`` (``$KPRUNE_AARCH64_ROOT`` wins)."""
    if os.environ.get("KPRUNE_AARCH64_ROOT"):
        return Path(os.environ["KPRUNE_AARCH64_ROOT"])
    return _cached_root(suite)


def _cached_root(suite: str) -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "kprune" / "aarch64-root" / suite


def find_qemu() -> str:
    """The dynamic ``qemu-aarch64`` on PATH, checked to load TCG plugins.

    Raises:
        EmulatorError: If there is none, or it cannot load plugins.
    """
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        raise EmulatorError(
            f"qemu-aarch64 is not on PATH (counting instructions needs Debian's dynamic qemu-user). "
            f"Fix: {QEMU_PACKAGES}"
        )
    try:
        usage = subprocess.run([qemu, "-h"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise EmulatorError(f"{qemu} does not run ({error}). Fix: {QEMU_PACKAGES}") from None
    if "-plugin" not in usage:
        raise EmulatorError(
            f"{qemu} cannot load TCG plugins (a static build, as in qemu-user-static?). "
            f"Fix: {QEMU_PACKAGES}, and put /usr/bin before it on PATH."
        )
    return qemu


class GuestPython:
    """The root's Python and the count venv's site-packages, as the guest sees them."""

    def __init__(self, root: str | os.PathLike | None = None):
        """Finds the root, its Python and the count venv.

        Raises:
            EmulatorError: If the root or its venv is missing or incomplete.
        """
        self.root = Path(root) if root is not None else default_root()
        elsewhere = self.root != _cached_root("bookworm")  # not where the script builds by default
        fix = f"Fix: build it with `{ROOT_COMMAND}" + (f" --root {self.root}`." if elsewhere else "`.")
        if not (self.root / ".kprune-root-complete").is_file():
            raise EmulatorError(f"No complete arm64 root at {self.root}. {fix}")
        venv = self.root / COUNT_VENV.lstrip("/")
        if not (venv / ".complete").is_file():
            raise EmulatorError(f"The arm64 root {self.root} has no count venv ({COUNT_VENV}). {fix}")
        site = sorted(venv.glob("lib/python3*/site-packages"))
        if not site:
            raise EmulatorError(f"The count venv {venv} has no site-packages. {fix}")
        version = site[-1].parent.name  # python3.11
        self.executable = self.root / "usr" / "bin" / version
        if not self.executable.is_file():
            raise EmulatorError(f"The arm64 root {self.root} has no /usr/bin/{version}. {fix}")
        self.site_packages = "/" + str(site[-1].relative_to(self.root))

    def environment(self) -> dict[str, str]:
        """A clean guest environment: the host's would reach the guest (and QEMU)."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PYTHONHOME": "/usr",
            "PYTHONPATH": self.site_packages,
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def core_view(self, core: str, folder: str | os.PathLike) -> Path:
        """A folder for QEMU's ``-L`` that is the root but for ``/proc/cpuinfo``, which says ``core``.

        XNNPACK picks its kernels from the CPU part in ``/proc/cpuinfo``; QEMU 7.2
        shows an aarch64 guest the host's file unless the ``-L`` prefix holds one
        (it looks every absolute path up there first). The view is symbolic links to
        the root's top-level entries and a real ``proc/cpuinfo``, so several cores can
        be counted at once from one root.
        """
        view = Path(folder)
        (view / "proc").mkdir(parents=True, exist_ok=True)
        for entry in self.root.iterdir():
            if entry.name != "proc" and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry.resolve())
        write_atomically(view / "proc" / "cpuinfo", cpuinfo_text(core).encode())
        return view


def find_compiler() -> str:
    """The system C compiler (``$CC``, else ``cc``, else ``gcc``).

    Raises:
        EmulatorError: If there is none.
    """
    for name in (os.environ.get("CC"), "cc", "gcc"):
        found = shutil.which(name) if name else None
        if found:
            return found
    raise EmulatorError(
        "No C compiler on PATH to build kprune's QEMU counting plugin. Fix: apt-get install -y gcc"
    )


def plugin_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kprune" / "qemu-plugin"


def build_plugin(cache_dir: str | os.PathLike | None = None) -> Path:
    """The counting plugin ``qemu_count.c``, compiled once per source into the cache.

    Returns:
        The shared library, ``CACHE/<hash of the source>/libqemu_count.so``.

    Raises:
        EmulatorError: If there is no C compiler or the source does not compile.
    """
    source = resources.files("kprune.latency").joinpath(PLUGIN_SOURCE).read_bytes()
    folder = Path(cache_dir or plugin_cache_dir()) / hashlib.sha256(source).hexdigest()[:16]
    library = folder / "libqemu_count.so"
    if library.is_file():
        return library
    compiler = find_compiler()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kprune-plugin-") as work:
        source_path = Path(work) / PLUGIN_SOURCE
        write_atomically(source_path, source)
        built = Path(work) / library.name
        command = [
            compiler,
            "-shared",
            "-fPIC",
            "-O2",
            "-fvisibility=hidden",
            "-o",
            str(built),
            str(source_path),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            message = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise EmulatorError(
                f"{compiler} could not build the QEMU counting plugin: {message}. "
                "Fix: install a working C compiler (apt-get install -y gcc)."
            )
        write_atomically(library, built.read_bytes())
    return library
