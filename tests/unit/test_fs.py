"""Filesystem primitives: atomic replacement, locks, safe tree removal."""

import fcntl
import os
import subprocess
import time

import pytest

from tests.conftest import requires_root
from vzslave import fs
from vzslave.errors import BusyError


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "state"
    path.write_bytes(b"old")
    fs.atomic_write(str(path), b"new", 0o600)
    assert path.read_bytes() == b"new"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(tmp_path) == ["state"]


def test_atomic_symlink_repoints_an_existing_link(tmp_path):
    link = tmp_path / "current"
    fs.atomic_symlink("a", str(link))
    fs.atomic_symlink("b", str(link))
    assert os.readlink(link) == "b"
    assert os.listdir(tmp_path) == ["current"]


@pytest.fixture
def pauses(monkeypatch):
    """The pauses a lock taker makes, recorded; LOCK_WAIT cut to a tenth of a second."""
    made = []
    monkeypatch.setattr(fs, "LOCK_WAIT", 0.1)
    monkeypatch.setattr(fs, "_pause", made.append)
    return made


def test_a_held_lock_makes_the_second_taker_busy(tmp_path, pauses):
    path = str(tmp_path / "lock")
    with fs.exclusive_lock(path, "bundle 'x'"):
        assert fs.is_locked(path)
        with pytest.raises(BusyError, match="bundle 'x' is in use by"):
            with fs.exclusive_lock(path, "bundle 'x'"):
                pass
    assert pauses
    assert not fs.is_locked(path)


def test_busy_names_the_holder_its_op_and_since_when(tmp_path, pauses, monkeypatch):
    monkeypatch.setattr(fs, "_activity", "")
    path = str(tmp_path / "lock")
    fs.set_activity("container.stop")
    with fs.exclusive_lock(path, "container 'web'"):
        fs.set_activity("container.start")
        with pytest.raises(BusyError) as caught:
            with fs.exclusive_lock(path, "container 'web'"):
                pass
    holder = caught.value.details["holder"]
    assert holder["pid"] == os.getpid() and holder["op"] == "container.stop"
    since = time.strftime("%H:%M:%S", time.localtime(holder["since"]))
    assert caught.value.message == (
        "container 'web' is in use by vzslave pid {} of {} (container.stop since {}); try "
        "again when it has finished".format(os.getpid(), holder["user"], since))


def test_busy_names_the_ssh_client_and_user_of_the_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_CLIENT", "192.0.2.7 50022 22")
    path = str(tmp_path / "lock")
    with fs.exclusive_lock(path, "app 'web'"):
        with pytest.raises(BusyError) as caught:
            with fs.exclusive_lock(path, "app 'web'", blocking=False):
                pass
    holder = caught.value.details["holder"]
    assert holder["client"] == "192.0.2.7" and holder["user"] == "root"
    assert "of root from 192.0.2.7" in caught.value.message


def test_a_lock_freed_during_the_wait_is_taken(tmp_path, monkeypatch):
    path = str(tmp_path / "lock")
    holder = fs.exclusive_lock(path, "x")
    holder.__enter__()
    monkeypatch.setattr(fs, "_pause", lambda seconds: holder.__exit__(None, None, None))
    with fs.exclusive_lock(path, "x"):
        assert fs.lock_holder(path).pid == os.getpid()


def test_a_non_blocking_taker_does_not_wait(tmp_path, pauses):
    path = str(tmp_path / "lock")
    with fs.exclusive_lock(path, "x"):
        with pytest.raises(BusyError):
            with fs.exclusive_lock(path, "x", blocking=False):
                pass
    assert pauses == []


def test_the_holder_record_is_cleared_before_the_lock_is_released(tmp_path):
    path = tmp_path / "lock"
    with fs.exclusive_lock(str(path), "x"):
        assert path.read_text().split()[0] == str(os.getpid())
    assert path.read_bytes() == b""


def test_a_holder_without_a_record_is_named_from_proc_locks(tmp_path, pauses):
    path = str(tmp_path / "lock")
    holder = subprocess.Popen(
        ["flock", path, "sh", "-c", "echo locked; read line"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(BusyError, match=r"x is in use by \w+ pid \d+;") as caught:
            with fs.exclusive_lock(path, "x"):
                pass
        assert caught.value.details["holder"]["pid"] in (holder.pid, *child_pids(holder.pid))
    finally:
        holder.communicate(b"\n")


def test_a_stale_record_of_a_dead_process_is_not_believed(tmp_path):
    """When a vzslave was killed holding a lock, its record stays in the file; the
    next holder that has not written its own yet must not be named as the dead one."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / "lock"
    path.write_text("{} image.put 1000.0\n".format(dead.pid))
    fd = os.open(str(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert fs.lock_holder(str(path))[:4] == (os.getpid(), fs._comm(os.getpid()), "", None)
    finally:
        os.close(fd)


def child_pids(pid):
    try:
        with open("/proc/{0}/task/{0}/children".format(pid)) as children:
            return [int(each) for each in children.read().split()]
    except OSError:
        return []


def test_remove_tree_does_not_follow_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"x")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "link").symlink_to(outside)
    (tree / "abs").symlink_to("/")
    fs.remove_tree(str(tree))
    assert not tree.exists()
    assert (outside / "keep").read_bytes() == b"x"


def test_remove_tree_opens_up_read_only_directories(tmp_path):
    tree = tmp_path / "tree"
    (tree / "ro").mkdir(parents=True)
    (tree / "ro" / "f").write_bytes(b"x")
    os.chmod(tree / "ro", 0o555)
    fs.remove_tree(str(tree))
    assert not tree.exists()


def test_remove_tree_of_a_missing_path_is_fine(tmp_path):
    fs.remove_tree(str(tmp_path / "nothing"))


@requires_root
def test_remove_tree_refuses_a_tree_with_a_mount_inside(tmp_path):
    inner = tmp_path / "tree" / "mnt"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "vzt", str(inner)], check=True)
    try:
        (inner / "precious").write_bytes(b"x")
        with pytest.raises(BusyError, match="mounts under it"):
            fs.remove_tree(str(tmp_path / "tree"))
        assert (inner / "precious").exists()
    finally:
        subprocess.run(["umount", str(inner)], check=True)


@requires_root
def test_mounts_under_decodes_escaped_mount_points(tmp_path):
    spaced = tmp_path / "with space"
    spaced.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "vzt", str(spaced)], check=True)
    try:
        assert fs.mounts_under(str(tmp_path)) == [str(spaced)]
    finally:
        subprocess.run(["umount", str(spaced)], check=True)


def test_free_space_reports_bytes_and_inodes(tmp_path):
    free = fs.free_space(str(tmp_path))
    assert free.bytes > 0 and free.inodes > 0


def test_sync_filesystem_runs(tmp_path):
    fs.sync_filesystem(str(tmp_path))


def test_a_write_refused_for_space_runs_first_then_uses_the_reserve(tmp_path):
    """When the disk is full, stop frees the reserve (after freezing what fills it)."""
    reserve = str(tmp_path / ".reserve")
    fs.keep_reserve(reserve, 4096)
    calls = []
    failures = [OSError(28, "No space left on device")]

    def write():
        calls.append("write")
        if failures:
            raise failures.pop()

    fs.write_with_reserve(write, reserve, lambda: calls.append("first"))
    assert calls == ["write", "first", "write"] and not os.path.exists(reserve)


def test_a_write_refused_for_another_reason_is_not_retried(tmp_path):
    reserve = str(tmp_path / ".reserve")
    fs.keep_reserve(reserve, 4096)

    def write():
        raise PermissionError(13, "Permission denied")

    with pytest.raises(PermissionError):
        fs.write_with_reserve(write, reserve, lambda: pytest.fail("froze"))
    assert os.path.getsize(reserve) == 4096


def test_a_write_that_works_touches_no_reserve(tmp_path):
    reserve = str(tmp_path / ".reserve")
    fs.keep_reserve(reserve, 4096)
    fs.write_with_reserve(lambda: None, reserve, lambda: pytest.fail("froze"))
    assert os.path.getsize(reserve) == 4096


def test_atomic_write_whose_rename_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    def broken_replace(source, destination):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fs.os, "replace", broken_replace)
    with pytest.raises(OSError):
        fs.atomic_write(str(tmp_path / "f"), b"data")
    assert os.listdir(str(tmp_path)) == []
