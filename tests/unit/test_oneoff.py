"""One-offs, the parent's side: the output read from a real child through a real pipe,
the end of it kept, and the deadline that kills the child's whole process group.
(oneoff.run with a real plan needs a rootfs: tests/system/test_apps.py runs it.)"""

import os
import signal
import subprocess
import time

import pytest

from vzslave import oneoff

LATER = 60.0  # a deadline no test reaches


@pytest.fixture(autouse=True)
def short_drain(monkeypatch):
    monkeypatch.setattr(oneoff, "DRAIN", 0.1)


@pytest.fixture
def spawn():
    """spawn(script) runs ``sh -c script`` in a session of its own, its stdout and stderr
    on a pipe: (process, the pipe's read end). Both are cleaned up after the test."""
    started = []

    def start(script):
        reader, writer = os.pipe()
        process = subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL,
                                   stdout=writer, stderr=writer, start_new_session=True)
        os.close(writer)
        started.append((process, reader))
        return process, reader

    yield start
    for process, reader in started:
        if process.returncode is None:  # not reaped: its pid is still its group's
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
            process.wait()
        os.close(reader)


def collect(spawn, script, deadline=LATER, max_output=oneoff.MAX_OUTPUT):
    process, reader = spawn(script)
    (data, truncated), timed_out = oneoff._collect(reader, process.pid,
                                                   time.monotonic() + deadline, max_output)
    return process, data, truncated, timed_out


def test_the_whole_output_of_a_short_command_is_kept(spawn):
    _, data, truncated, timed_out = collect(spawn, "echo out; echo err >&2")
    assert (data, truncated, timed_out) == (b"out\nerr\n", False, False)


def test_only_the_last_max_output_bytes_are_kept(spawn):
    _, data, truncated, _ = collect(spawn, "head -c 70000 /dev/zero; printf END",
                                    max_output=100)
    assert len(data) == 100 and data.endswith(b"\0END") and truncated


def test_output_of_exactly_max_output_bytes_is_not_truncated(spawn):
    _, data, truncated, _ = collect(spawn, "printf 0123456789", max_output=10)
    assert (data, truncated) == (b"0123456789", False)


def test_a_child_that_ends_in_time_has_not_timed_out(spawn):
    process, _, _, timed_out = collect(spawn, "exit 3")
    assert not timed_out and process.wait() == 3


def test_the_child_is_not_reaped_so_its_status_stays_for_the_caller(spawn):
    process, _, _, _ = collect(spawn, "exit 7")
    assert os.waitstatus_to_exitcode(os.waitpid(process.pid, 0)[1]) == 7
    process.returncode = 7  # reaped: the fixture must leave its pid alone


def test_at_the_deadline_the_child_is_killed_and_reported_timed_out(spawn):
    process, data, _, timed_out = collect(spawn, "echo started; exec sleep 30", deadline=0.3)
    assert timed_out and data == b"started\n"
    assert process.wait() == -signal.SIGKILL


def test_the_deadline_kills_the_childs_whole_process_group(spawn):
    # The background sleep holds the pipe: _collect only returns once it is gone too.
    process, _, _, timed_out = collect(spawn, "sleep 30 & sleep 30", deadline=0.1)
    assert timed_out and process.wait() == -signal.SIGKILL


def test_what_the_child_left_behind_is_killed_after_the_drain(spawn):
    process, reader = spawn("sleep 30 & echo done")
    (data, _), timed_out = oneoff._collect(reader, process.pid, time.monotonic() + LATER,
                                           oneoff.MAX_OUTPUT)
    assert (data, timed_out) == (b"done\n", False)
    assert os.read(reader, 10) == b""  # the sleep holding the pipe was killed


def test_a_running_process_has_not_exited():
    assert not oneoff._exited(os.getpid())


def test_a_zombie_has_exited(spawn):
    process, _ = spawn("exit 0")
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    assert oneoff._exited(process.pid)


def test_a_process_that_is_gone_has_exited():
    assert oneoff._exited(2 ** 22 + 1)


def test_killing_the_group_of_a_process_that_is_gone_is_quiet():
    oneoff._kill_group(2 ** 22 + 1)

