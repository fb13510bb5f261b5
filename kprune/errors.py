"""User-facing errors.

Every error a user can fix by changing their input derives from
`KpruneError`. The CLI prints such errors as one line and exits with code 1;
anything else is a bug and keeps its traceback.
"""


class KpruneError(Exception):
    """Base class of errors caused by user input; the message names the fix."""


class InvalidArgumentError(KpruneError, ValueError):
    """An argument, option or config value is out of range or unknown."""


class DatasetNotFoundError(KpruneError, FileNotFoundError):
    """A dataset is not on disk and cannot be downloaded here."""


class UnsupportedModelError(KpruneError, ValueError):
    """The model holds layers or structure that kprune cannot prune."""


class ModelFileError(KpruneError, OSError):
    """A model file is missing, unreadable or corrupt."""


class FileWriteError(KpruneError, OSError):
    """The system refused to write a file: its disk is full or read-only, or permission is
    denied. The message names the file and the space (or the permission) it needs."""


class RunDirInUseError(KpruneError):
    """Another live kprune run holds the run directory's lock."""


class VerificationError(KpruneError):
    """An exported artifact disagrees with the Keras model beyond tolerance."""


class TrainingDivergedError(KpruneError):
    """A loss became NaN or infinite during training."""


class MissingDependencyError(KpruneError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""


class EmulatorError(KpruneError, OSError):
    """Something that counting aarch64 instructions under QEMU needs is missing (the dynamic
    qemu-aarch64, the arm64 root, a C compiler) or failed; the message names the fix."""
