"""Finding and ending a container's processes through /proc."""

import os
import signal
import subprocess
import sys

from vzslave import procs


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
        return [pid for pid in pids if procs.is_alive(pid)]

    assert procs.end_processes(find, grace=0.3) == []
    assert polite.wait() == -signal.SIGTERM
    assert stubborn.wait() == -signal.SIGKILL
