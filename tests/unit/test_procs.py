"""Finding and ending a container's processes through /proc."""

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import requires_root
from vzslave import linux, procs, runner


def test_process_group_and_start_time_of_a_live_process():
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert procs.process_group(child.pid) == child.pid
        assert procs.start_time(child.pid) > 0
        assert procs.is_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert procs.process_group(child.pid) is None and not procs.is_alive(child.pid)


def test_container_processes_finds_a_group_and_a_command_but_never_ourselves():
    child = subprocess.Popen(["sleep", "31"], start_new_session=True)
    marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                               "vzrun-marker"])
    try:
        found = procs.container_processes("/nonexistent", [child.pid], b"vzrun-marker")
        assert set(found) == {child.pid, marked.pid}
        assert os.getpid() not in procs.container_processes("/", [os.getpgid(0)])
    finally:
        for p in (child, marked):
            p.kill()
            p.wait()


def test_end_processes_terms_then_kills_what_ignores_term():
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print(flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    stubborn.stdout.readline()  # TERM is ignored from here on
    polite = subprocess.Popen(["sleep", "60"])
    pids = {stubborn.pid, polite.pid}

    def find():
        for p in (stubborn, polite):
            p.poll()  # reap, so a dead child is not a zombie we keep finding
        return {pid: procs.start_time(pid) for pid in pids if procs.is_alive(pid)}

    assert procs.end_processes(find, grace=0.3) == []
    assert polite.wait() == -signal.SIGTERM
    assert stubborn.wait() == -signal.SIGKILL


# -- membership by root directory (real chroot and pivot_root: root only) ------

def rootfs_with_busybox(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "deep" / "er").mkdir(parents=True)
    shutil.copy("/bin/busybox", str(rootfs / "bin" / "busybox"))
    return str(rootfs)


def start_in(rootfs, how, below=""):
    """A sleeper whose root is ``rootfs`` (+``below``): by chroot, or by pivot_root in a
    private mount namespace, the old root detached, as the runner enters it."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(reader)
            if how == "pivot":
                linux.unshare(linux.CLONE_NEWNS)
                linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
                linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
                runner.pivot_into(rootfs)
                if below:
                    os.chroot(below)
            else:
                os.chroot(os.path.join(rootfs, below.lstrip("/")))
            os.write(writer, b"in")
            os.execv("/bin/busybox" if not below else "/busybox", ["sleep", "30"])
        finally:
            os._exit(127)
    os.close(writer)
    assert os.read(reader, 2) == b"in"
    os.close(reader)
    return pid


def end(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


@requires_root
@pytest.mark.parametrize("how", ["chroot", "pivot"])
def test_a_process_whose_root_is_the_rootfs_belongs_to_the_container(tmp_path, how):
    rootfs = rootfs_with_busybox(tmp_path)
    pid = start_in(rootfs, how)
    try:
        assert pid in procs.container_processes(rootfs)
        other = tmp_path / "other"
        other.mkdir()
        assert pid not in procs.container_processes(str(other))
    finally:
        end(pid)


@requires_root
@pytest.mark.parametrize("how", ["chroot", "pivot"])
def test_a_process_chrooted_deeper_inside_still_belongs_to_the_container(tmp_path, how):
    """When an app chroots again inside its rootfs, its root is a directory below the
    rootfs, and it is still found: stop and the respawn clean-up end it."""
    rootfs = rootfs_with_busybox(tmp_path)
    shutil.copy("/bin/busybox", os.path.join(rootfs, "deep", "er", "busybox"))
    pid = start_in(rootfs, how, below="/deep/er")
    try:
        assert pid in procs.container_processes(rootfs)
    finally:
        end(pid)


def test_the_nodes_own_processes_are_never_in_a_container(tmp_path):
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid not in procs.container_processes(str(tmp_path))
    finally:
        child.kill()
        child.wait()


def test_a_pid_whose_start_time_changed_is_not_signalled():
    """When a pid was reused after it was found, signal_all leaves the new process be."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        procs.signal_all({child.pid: procs.start_time(child.pid) + 1}, signal.SIGKILL)
        assert child.poll() is None
        procs.signal_all({child.pid: procs.start_time(child.pid)}, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


def test_end_processes_continues_a_stopped_process_so_it_can_act_on_term():
    child = subprocess.Popen(["sleep", "60"])
    os.kill(child.pid, signal.SIGSTOP)

    def find():
        child.poll()
        return {child.pid: procs.start_time(child.pid)} if procs.is_alive(child.pid) else {}

    assert procs.end_processes(find, grace=5) == []
    assert child.wait() == -signal.SIGTERM


def test_the_same_process_is_the_pid_that_started_when_recorded():
    child = subprocess.Popen(["sleep", "30"])
    try:
        ticks = str(procs.start_time(child.pid))
        assert procs.same_process(child.pid, ticks)
        assert procs.same_process(child.pid, None)  # a record older than start times
        assert not procs.same_process(child.pid, str(int(ticks) + 1))  # a reused pid
        assert not procs.same_process(child.pid, "")
    finally:
        child.kill()
        child.wait()
    assert not procs.same_process(child.pid, ticks) and not procs.same_process(0, None)


def test_ending_a_container_ends_its_runners_group_and_its_unentered_runner():
    """When stop ends a container, the runner's process group goes (its record names the
    runner) and so does a runner init spawned that has not entered the rootfs yet."""
    group = subprocess.Popen(["sleep", "31"], start_new_session=True)
    runner_cmd = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                                   "vzrun-marker"])
    bystander = subprocess.Popen(["sleep", "32"], start_new_session=True)
    try:
        ticks = str(procs.start_time(group.pid))
        assert procs.end_container("/nonexistent", group.pid, ticks, b"vzrun-marker",
                                   grace=5) == []
        assert group.wait() == -signal.SIGTERM and runner_cmd.wait() == -signal.SIGTERM
        assert bystander.poll() is None
    finally:
        for p in (group, runner_cmd, bystander):
            p.kill()
            p.wait()


def test_a_recorded_runner_that_is_another_process_now_takes_no_group_along():
    other = subprocess.Popen(["sleep", "33"], start_new_session=True)
    try:
        wrong = str(procs.start_time(other.pid) + 1)
        assert procs.end_container("/nonexistent", other.pid, wrong, b"\0no-such\0",
                                   grace=0.1) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
