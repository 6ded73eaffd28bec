"""The runner's leaf: its error, whole writes, small reads, the run record, the boot marker
and a pid's start time."""

import errno
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import modules_loaded_by
from vzslave import runio
from vzslave.runio import (
    RUN_KEYS,
    RunnerError,
    read_run_record,
    record_number,
    render_run_record,
    store_run_record,
    write_run_record,
)


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


# -- the run record ----------------------------------------------------------------

def test_the_run_record_round_trips_with_every_key(tmp_path):
    record = {key: "v " + key for key in RUN_KEYS}
    record["last_error"] = "two\nlines"
    path = str(tmp_path / "run")
    write_run_record(path, record)
    back = read_run_record(path)
    assert back == dict(record, last_error="two lines")
    assert list(back) == list(RUN_KEYS)
    assert os.listdir(str(tmp_path)) == ["run"]


def test_a_missing_run_record_reads_as_empty(tmp_path):
    assert read_run_record(str(tmp_path / "run")) == {}


def test_the_text_has_one_line_per_key_in_order_and_blanks_for_missing_ones():
    text = render_run_record({"state": "running", "pid": "12", "unknown": "x"}).decode()
    lines = text.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == list(RUN_KEYS)
    assert lines[:3] == ["pid 12", "ticks ", "state running"] and "unknown" not in text


def test_a_record_stored_through_a_held_fd_is_rewritten_in_place(tmp_path):
    """When the runner is in the rootfs, it writes through the fd it opened before."""
    path = str(tmp_path / "run")
    write_run_record(path, {"state": "running", "last_error": "x" * 100})
    inode = os.stat(path).st_ino
    fd = os.open(path, os.O_WRONLY)
    try:
        assert store_run_record("/nowhere/run", {"state": "failed"}, fd)
    finally:
        os.close(fd)
    assert os.stat(path).st_ino == inode
    assert read_run_record(path) == dict({key: "" for key in RUN_KEYS}, state="failed")


def test_a_record_stored_by_path_replaces_the_file(tmp_path):
    path = str(tmp_path / "run")
    write_run_record(path, {"state": "running"})
    inode = os.stat(path).st_ino
    assert store_run_record(path, {"state": "exited"})
    assert read_run_record(path)["state"] == "exited" and os.stat(path).st_ino != inode


def test_a_record_that_cannot_be_stored_says_so(tmp_path):
    assert not store_run_record(str(tmp_path / "gone" / "run"), {"state": "failed"})


def test_numbers_absent_or_garbled_read_as_zero():
    record = {"pid": "123", "spawns": "", "streak": "x1"}
    assert [record_number(record, key) for key in ("pid", "spawns", "streak", "ticks")] == [
        123, 0, 0, 0]


# -- the boot marker ---------------------------------------------------------------

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


# -- a pid's start time -----------------------------------------------------------------

def test_a_live_process_has_a_start_time_and_a_reaped_one_none():
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = runio.start_time(child.pid)
        assert started is not None and started > 0
        assert runio.stat_fields(child.pid)[0] in (b"S", b"R")
    finally:
        child.kill()
        child.wait()
    assert runio.start_time(child.pid) is None and runio.stat_fields(child.pid) == []


def test_a_zombie_has_no_start_time():
    """When a child has ended but is not waited for, its pid is no process to signal."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while runio.stat_fields(child.pid)[:1] != [b"Z"] and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert runio.start_time(child.pid) is None
    finally:
        child.wait()


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields():
    # prctl(PR_SET_NAME) gives the process the command name "a) b (c".
    code = "import ctypes, time; ctypes.CDLL(None).prctl(15, b'a) b (c', 0, 0, 0); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while b"a) b (c" not in open("/proc/{}/stat".format(child.pid), "rb").read():
            assert time.monotonic() < deadline
        assert runio.stat_fields(child.pid)[2] == str(os.getpgid(child.pid)).encode()
    finally:
        child.kill()
        child.wait()
