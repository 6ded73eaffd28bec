"""The runner's leaf: its error, whole writes, small reads and the boot marker."""

import errno
import os

import pytest

from tests.conftest import modules_loaded_by
from vzslave import runio
from vzslave.runio import RunnerError


def test_a_runner_error_names_its_step_and_says_why():
    error = RunnerError("mounts", "cannot mount proc on /proc: Operation not permitted")
    assert (error.step, error.message) == ("mounts", "cannot mount proc on /proc: "
                                           "Operation not permitted")
    assert str(error) == "mounts: cannot mount proc on /proc: Operation not permitted"


def test_an_os_error_becomes_its_text_and_the_file_it_names():
    assert runio.os_message(FileNotFoundError(errno.ENOENT, "No such file or directory",
                                              "/x")) == "No such file or directory (/x)"
    assert runio.os_message(OSError(errno.EPERM, "Operation not permitted")) == (
        "Operation not permitted")


def test_a_small_file_is_read_without_the_blanks_around_it(tmp_path):
    (tmp_path / "id").write_bytes(b"  abc-123\n")
    assert runio.read_stripped(str(tmp_path / "id")) == b"abc-123"


def test_an_unreadable_file_reads_as_nothing(tmp_path):
    assert runio.read_stripped(str(tmp_path / "missing")) == b""


class ShortWrites(object):
    """os, with a write that takes at most three bytes at a time."""

    def __init__(self):
        self.sizes = []

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        self.sizes.append(len(data))
        return os.write(fd, bytes(data[:3]))


def test_write_all_writes_everything_across_short_writes(tmp_path, monkeypatch):
    fake = ShortWrites()
    monkeypatch.setattr(runio, "os", fake)
    path = str(tmp_path / "out")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert runio.write_all(fd, b"0123456789") == 10
    finally:
        os.close(fd)
    assert open(path, "rb").read() == b"0123456789" and fake.sizes == [10, 7, 4, 1]


def test_write_all_raises_what_the_write_raises():
    reader, writer = os.pipe()
    os.close(writer)
    try:
        with pytest.raises(OSError):
            runio.write_all(reader, b"x")  # a read end: EBADF
    finally:
        os.close(reader)


def test_a_quiet_write_swallows_the_error():
    reader, writer = os.pipe()
    os.close(writer)
    try:
        runio.write_quietly(reader, b"x")
    finally:
        os.close(reader)


@pytest.fixture
def boot(tmp_path, monkeypatch):
    """A boot id file standing in for /proc's; returns a function that sets it."""
    path = tmp_path / "boot_id"
    monkeypatch.setattr(runio, "BOOT_ID", str(path))

    def set_boot(value):
        path.write_bytes(value)

    set_boot(b"boot-1\n")
    return set_boot


def test_a_marked_boot_is_this_boot_until_the_next(tmp_path, boot):
    state = str(tmp_path)
    assert not runio.boot_marked(state)
    runio.mark_boot(state)
    assert (tmp_path / runio.MARKER).read_bytes() == b"boot-1\n"
    assert runio.boot_marked(state)
    boot(b"boot-2\n")
    assert not runio.boot_marked(state)


def test_an_unreadable_boot_id_never_counts_as_marked(tmp_path, boot):
    boot(b"")
    (tmp_path / runio.MARKER).write_bytes(b"")
    assert not runio.boot_marked(str(tmp_path))


def test_unmarking_removes_the_marker_and_a_missing_one_is_no_error(tmp_path, boot):
    runio.mark_boot(str(tmp_path))
    runio.unmark_boot(str(tmp_path))
    assert not runio.boot_marked(str(tmp_path))
    runio.unmark_boot(str(tmp_path))
    assert os.listdir(str(tmp_path)) == ["boot_id"]


def test_importing_the_leaf_loads_nothing_else():
    """The runner imports it at every spawn, and mounts, logs, inittab without the runner."""
    assert modules_loaded_by("vzslave.runio") <= {"vzslave", "vzslave.runio"}
