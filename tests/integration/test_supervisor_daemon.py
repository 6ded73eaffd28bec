"""The vz supervisor daemonised (python-daemon) on a temporary root, as initscripts/ run it."""

import os
import signal
import subprocess
import sys
import time

import pytest

import vzslave.supervision
from tests.conftest import requires_root
from vzslave.config import Layout
from vzslave.inittab import Dialect

pytest.importorskip("daemon", reason="python-daemon is not installed (the [supervisor] extra)")
pytestmark = requires_root

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 10.0


def wait_for(predicate, what, timeout=TIMEOUT):
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.02)


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_members(pgid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/stat".format(entry)) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def read_pid(path):
    try:
        with open(str(path)) as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


class Daemon:
    """A root whose inittab entries record their pids in files, and its supervisor."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.layout = Layout(str(tmp_path / "vz"))
        self.layout.make_dirs()
        self.inittab = os.path.join(self.layout.containers, "inittab")
        self.pid_file = os.path.join(self.layout.containers, "supervisor.pid")
        with open(self.inittab, "w"):
            pass

    def entry(self, entry_id, name):
        """An inittab line whose process runs a sleeper and a child in one group."""
        script = self.dir / (name + ".sh")
        script.write_text("sleep 1000 &\necho $$ > {}\nwait\n".format(self.dir / name))
        return "{}:2345:respawn:/bin/sh {}\n".format(entry_id, script)

    def leader(self, name):
        return read_pid(self.dir / name)

    def start(self):
        subprocess.run([sys.executable, "-m", "vzslave.supervisor", "--root",
                        self.layout.root], cwd=ROOT, check=True, timeout=TIMEOUT)
        wait_for(lambda: read_pid(self.pid_file) and alive(read_pid(self.pid_file)),
                 "the daemon's pid file")
        return read_pid(self.pid_file)


@pytest.fixture
def daemon(tmp_path):
    result = Daemon(tmp_path)
    yield result
    pid = read_pid(result.pid_file)
    if pid and alive(pid):
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), "the supervisor to stop at teardown")


def test_detaches_and_writes_the_daemons_pid_to_the_pid_file(daemon):
    pid = daemon.start()
    assert pid != os.getpid() and alive(pid)
    with open("/proc/{}/stat".format(pid)) as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid()  # not our child


def test_sighup_starts_an_added_entry(daemon):
    pid = daemon.start()
    with open(daemon.inittab, "w") as f:
        f.write(daemon.entry("a", "a"))
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: daemon.leader("a") and alive(daemon.leader("a")), "the added entry")


def test_sighup_ends_a_removed_entrys_whole_group(daemon):
    with open(daemon.inittab, "w") as f:
        f.write(daemon.entry("a", "a"))
    pid = daemon.start()
    wait_for(lambda: daemon.leader("a") and len(group_members(daemon.leader("a"))) == 2,
             "the entry and its child")
    with open(daemon.inittab, "w"):
        pass
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: group_members(daemon.leader("a")) == [], "the group to end", timeout=4)


def test_sigterm_ends_every_entry_then_the_daemon_and_its_pid_file(daemon):
    with open(daemon.inittab, "w") as f:
        f.write(daemon.entry("a", "a") + daemon.entry("b", "b"))
    pid = daemon.start()
    wait_for(lambda: daemon.leader("a") and daemon.leader("b"), "both entries")
    groups = [daemon.leader("a"), daemon.leader("b")]
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), "the daemon to exit")
    assert [group_members(group) for group in groups] == [[], []]
    assert not os.path.exists(daemon.pid_file)


def test_detect_supervision_uses_the_daemon_when_pid_1_is_systemd(daemon, monkeypatch):
    monkeypatch.setattr(vzslave.supervision, "detect_init", lambda: "systemd")
    daemon.start()
    supervision = vzslave.supervision.detect_supervision(daemon.layout)
    assert (supervision.name, supervision.inittab, supervision.dialect) == (
        "vz-supervisor", daemon.inittab, Dialect.SYSV)
    with open(daemon.inittab, "w") as f:
        f.write(daemon.entry("v000", "c"))
    supervision.reload()
    wait_for(lambda: daemon.leader("c") and alive(daemon.leader("c")), "the reloaded entry")
