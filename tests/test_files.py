"""usual_permissions: what a temporary file or folder becomes before its rename."""

import os
import stat
import tempfile

from kprune.files import usual_permissions


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
