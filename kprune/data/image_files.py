"""Which image files TensorFlow can decode, found before any decoding.

A user's image folder may hold a file that is not an image, an empty one, one
cut short by an interrupted copy, or one this process may not read. Decoded
inside tf.data, such a file stops the run with a long TensorFlow traceback
that does not name it. `check_files` looks at every file cheaply first: its
header (Pillow reads the format and colour mode, no pixels) and its last
bytes (a PNG ends with its IEND chunk, a JPEG with its EOI marker, a GIF with
its trailer; a BMP or WebP is as long as its header says). A file that fails
a cheap test is decoded once with TensorFlow's decoder, the one the pipeline
uses: a file is bad only when that decoder refuses it. (A PNG or JPEG without
its end is refused without that decode: TensorFlow always refuses them, and
its JPEG decoder then prints a stray line on stderr.)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import tensorflow as tf
from PIL import Image, UnidentifiedImageError

# What tf.image.decode_image reads (TensorFlow 2.21).
DECODABLE = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# Pillow modes of one-channel images (with or without alpha); the rest are colour.
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}
TAIL_BYTES = 64  # the end markers, and a little padding some writers add after them
END_MARKERS = {"PNG": "its PNG end chunk", "JPEG": "its JPEG end marker"}


@dataclass(frozen=True)
class FileCheck:
    """What the check found: ``problem`` completes "<file> …"; empty when the file decodes."""

    problem: str = ""
    grayscale: bool | None = None  # None: unknown (Pillow could not tell, or the file is bad)


# path → ((size, mtime, ctime), check): a split loaded again (every pruning step
# reads the training split anew) does not read its files' headers again.
_checked: dict[str, tuple[tuple[int, int, int], FileCheck]] = {}


def check_files(paths: Sequence[str]) -> list[FileCheck]:
    """Checks that TensorFlow can decode each file, without decoding good ones.

    Args:
        paths: Image files.

    Returns:
        One `FileCheck` per path, in order; ``problem`` says what is wrong
        ("is not an image", "is truncated (its JPEG end marker is missing)",
        "cannot be read (Permission denied)", …) or is empty.

    Example:
        >>> [check.problem for check in check_files(["cat/1.png", "cat/notes.png"])]
        ['', 'is not an image']
    """
    if len(paths) < 64:
        return [_cached_check(path) for path in paths]
    with ThreadPoolExecutor(max_workers=8) as pool:  # file reads wait on the disk, not the CPU
        return list(pool.map(_cached_check, paths, chunksize=64))


def _cached_check(path: str) -> FileCheck:
    try:
        stat = os.stat(path)
    except OSError as error:  # a dangling link, a file removed since listing
        return FileCheck(f"cannot be read ({error.strerror or error})")
    key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)  # ctime: chmod changes it
    known = _checked.get(path)
    if known is not None and known[0] == key:
        return known[1]
    check = _check(path, stat.st_size)
    _checked[path] = (key, check)
    return check


def _check(path: str, size: int) -> FileCheck:
    if size == 0:
        return FileCheck("is empty (0 bytes)")
    try:
        with open(path, "rb") as file:
            head = file.read(16)
            file.seek(max(0, size - TAIL_BYTES))
            tail = file.read()
            file.seek(0)
            # A file cut short may also have lost part of its header: say "truncated" then.
            cut_short = _cut_short(_format(head), file, head, tail, size)
            file.seek(0)
            mode, suspicion = _header(file)
    except OSError as error:
        return FileCheck(f"cannot be read ({error.strerror or error})")
    if cut_short and (_format(head) != "GIF" or not _tensorflow_decodes(path)):
        return FileCheck(cut_short)
    if suspicion and not _tensorflow_decodes(path):
        return FileCheck(suspicion)
    return FileCheck("", None if mode is None else mode in GRAYSCALE_MODES)


def _format(head: bytes) -> str | None:
    """The format the file's first bytes announce (TensorFlow's formats only)."""
    for signature, name in SIGNATURES.items():
        if head.startswith(signature):
            return name
    return "WEBP" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def _header(file) -> tuple[str | None, str]:
    """(colour mode, suspicion) as Pillow reads them from the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: TensorFlow decodes, not Pillow
            image = Image.open(file)
            image_format, mode = image.format, image.mode
    except UnidentifiedImageError:
        return None, "is not an image"
    except Image.DecompressionBombError:  # huge, but TensorFlow may decode it
        return None, ""
    except Exception:  # noqa: BLE001 — any header Pillow cannot parse; TensorFlow has the last word
        return None, "has a damaged header"
    if image_format not in DECODABLE:
        return None, f"is a {image_format} image, which TensorFlow cannot decode"
    return mode, ""


def _cut_short(image_format: str | None, file, head: bytes, tail: bytes, size: int) -> str:
    """Why the file looks cut short, or "". Certain for PNG, JPEG, BMP and WebP
    (TensorFlow refuses such files); a GIF without its trailer may still decode."""
    if image_format in END_MARKERS:
        # Not at the end: bytes may follow it (some writers pad); then the whole file says.
        if _complete(image_format, tail) or _complete(image_format, file.read()):
            return ""
        return f"is truncated ({END_MARKERS[image_format]} is missing)"
    if image_format == "GIF":  # 0x3B, last; a byte that may also occur inside the image data
        return "" if tail.rstrip(b"\0").endswith(b";") else "is truncated (its GIF trailer is missing)"
    # BMP: bytes 2..6 hold the file size; WebP (RIFF): bytes 4..8 the size after the first 8.
    expected = {
        "BMP": int.from_bytes(head[2:6], "little"),
        "WEBP": int.from_bytes(head[4:8], "little") + 8,
    }.get(image_format, 0)
    return f"is truncated ({size} of {expected} bytes)" if expected > size else ""


def _complete(image_format: str, content: bytes) -> bool:
    if image_format == "PNG":  # the IEND chunk and its 4-byte checksum
        at = content.rfind(b"IEND")
        return at >= 0 and len(content) - at >= 8
    # JPEG: the end marker after the last start of scan (an embedded thumbnail
    # ends earlier; 0xFF 0xD9 cannot occur inside the compressed data).
    return content.find(b"\xff\xd9", max(content.rfind(b"\xff\xda"), 0)) >= 0


def _tensorflow_decodes(path: str) -> bool:
    try:
        tf.image.decode_image(tf.io.read_file(path), expand_animations=False)
    except (tf.errors.OpError, ValueError):
        return False
    return True
