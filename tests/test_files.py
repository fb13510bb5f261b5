"""kprune.files: atomic replacement, the permissions a temporary gets before its rename, and
one-line errors when the system refuses a write."""

import errno
import os
import re
import stat
import tempfile

import pytest

from kprune.errors import FileWriteError, KpruneError
from kprune.files import replaced_atomically, usual_permissions, write_atomically


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_temporary_file_gets_the_mode_of_a_plain_open(tmp_path):
    handle, temporary = tempfile.mkstemp(dir=tmp_path)
    os.close(handle)
    assert mode(temporary) == 0o600

    usual_permissions(temporary)

    assert mode(temporary) == 0o666 & ~current_umask()


def test_a_temporary_folder_and_everything_in_it(tmp_path):
    folder = tempfile.mkdtemp(dir=tmp_path)
    os.mkdir(os.path.join(folder, "sub"))
    handle, inner = tempfile.mkstemp(dir=os.path.join(folder, "sub"))
    os.close(handle)

    usual_permissions(folder)

    mask = current_umask()
    assert mode(folder) == 0o777 & ~mask
    assert mode(os.path.join(folder, "sub")) == 0o777 & ~mask
    assert mode(inner) == 0o666 & ~mask


def test_the_umask_is_left_as_it_was(tmp_path):
    before = current_umask()
    usual_permissions(tmp_path)
    assert current_umask() == before


def test_write_atomically_replaces_the_file_with_usual_permissions(tmp_path):
    path = tmp_path / "sub" / "report.json"

    write_atomically(path, b"new")

    assert path.read_bytes() == b"new"
    assert mode(path) == 0o666 & ~current_umask()
    assert os.listdir(path.parent) == ["report.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")

    with pytest.raises(OSError, match="disk full"):
        with replaced_atomically(path) as temporary:
            assert temporary.suffix == ".keras" and temporary.parent == tmp_path
            temporary.write_bytes(b"half")
            raise OSError("disk full")

    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.keras"]


def refuse_replace(monkeypatch, code):
    def replace(source, destination, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(destination))

    monkeypatch.setattr(os, "replace", replace)


def test_a_full_disk_is_one_error_naming_the_file_and_the_space(tmp_path, monkeypatch):
    path = tmp_path / "new" / "deeper" / "report.json"
    refuse_replace(monkeypatch, errno.ENOSPC)

    with pytest.raises(FileWriteError) as caught:
        write_atomically(path, b"x" * 5000)

    message = str(caught.value)
    assert re.fullmatch(
        rf"No space left on the disk to write {re.escape(str(path))}: it needs at least 5\.0 kB, and "
        r"\d+(\.\d)? [kMG]?B are free there\. Fix: free space on that disk, or write somewhere else\.",
        message,
    ), message
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, (OSError, KpruneError))
    assert os.listdir(tmp_path) == []  # no temporary, and the folders it made are gone


def test_no_permission_names_the_folder_to_fix(tmp_path, monkeypatch):
    path = tmp_path / "run" / "model.keras"
    path.parent.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    expected = (
        rf"^No permission to write {re.escape(str(path))} \(as user .+\)\. "
        rf"Fix: make {re.escape(str(path.parent))} writable"
    )
    with pytest.raises(FileWriteError, match=expected), replaced_atomically(path):
        pass
    assert os.listdir(tmp_path) == ["run"]  # the folder was there before: it stays


def test_a_refusal_behind_another_error_is_found_and_ctrl_c_stays_ctrl_c(tmp_path):
    def keras_like_failure():  # a library that fails again while cleaning up after the full disk
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as error:
            raise ValueError("could not close the archive") from error

    with (
        pytest.raises(FileWriteError, match="its file system is read-only"),
        replaced_atomically(tmp_path / "model.keras"),
    ):
        keras_like_failure()
    with pytest.raises(KeyboardInterrupt), replaced_atomically(tmp_path / "model.keras"):
        try:
            keras_like_failure()
        except ValueError:
            raise KeyboardInterrupt from None
    assert os.listdir(tmp_path) == []
