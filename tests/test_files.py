"""kprune.files: atomic replacement, and the permissions a temporary gets before its rename."""

import os
import stat
import tempfile

import pytest

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
