"""The vz supervisor: its inittab parsing and diff (pure), then its loop with real processes.

The loop tests run ``python -m vzslave.supervisor --foreground`` on a temporary root
and entries that are small shell scripts recording their pids.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from vzslave.supervisor import Entry, diff_entries, parse_entries

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 10.0


# -- parsing -----------------------------------------------------------------------


def test_parses_respawn_entries_by_id_splitting_the_process_on_blanks():
    text = "v000:2345:respawn:/var/lib/vz/bin/vzrun web\nx1::respawn:/bin/prog  a\tb\n"
    assert parse_entries(text) == {
        "v000": Entry("v000", ("/var/lib/vz/bin/vzrun", "web")),
        "x1": Entry("x1", ("/bin/prog", "a", "b")),
    }


def test_ignores_other_actions_comments_and_malformed_lines():
    text = ("id:2:initdefault:\n# v000:2345:respawn:/bin/a\n  #x:2:respawn:/bin/b\n"
            "1:2345:once:/bin/c\nnot a line\nv1:2345:off:/bin/d\n\n")
    assert parse_entries(text) == {}


def test_compares_the_action_case_insensitively_as_sysvinit_does():
    assert list(parse_entries("a:2345:ReSpawn:/bin/a\n")) == ["a"]


def test_skips_blanks_before_the_id():
    assert list(parse_entries("  \ta:2345:respawn:/bin/a\n")) == ["a"]


def test_ignores_the_later_of_two_lines_with_one_id():
    text = "a:2345:respawn:/bin/first\na:2345:respawn:/bin/second\n"
    assert parse_entries(text)["a"].argv == ("/bin/first",)


def test_drops_ids_longer_than_four_characters():
    assert parse_entries("abcde:2345:respawn:/bin/a\n") == {}


def test_runs_entries_whose_runlevels_include_a_multi_user_level_or_are_empty():
    text = "a:1:respawn:/bin/a\nb:S06:respawn:/bin/b\nc:3:respawn:/bin/c\nd::respawn:/bin/d\n"
    assert sorted(parse_entries(text)) == ["c", "d"]


def test_a_hash_ends_the_arguments():
    assert parse_entries("a:2345:respawn:/bin/a one # two\n")["a"].argv == ("/bin/a", "one")


def test_skips_a_process_holding_shell_characters_since_no_shell_runs_it():
    assert parse_entries("a:2345:respawn:/bin/a > /tmp/out\nb:2:respawn:/bin/b\n") == {
        "b": Entry("b", ("/bin/b",))}


def test_keeps_the_process_field_whole_after_the_third_colon():
    assert parse_entries("a:2:respawn:/bin/a x:y\n")["a"].argv == ("/bin/a", "x:y")


# -- the diff of a reread ----------------------------------------------------------


def entries(**commands):
    return {key: Entry(key, tuple(value.split())) for key, value in commands.items()}


def test_a_removed_running_entry_stops():
    changes = diff_entries(entries(a="/bin/a", b="/bin/b"), entries(b="/bin/b"), ["a", "b"])
    assert changes.stop == ["a"] and changes.start == []


def test_a_new_entry_starts_at_once():
    changes = diff_entries(entries(a="/bin/a"), entries(a="/bin/a", b="/bin/b"), ["a"])
    assert changes.stop == [] and changes.start == ["b"]


def test_a_changed_command_neither_stops_nor_starts_the_running_process():
    changes = diff_entries(entries(a="/bin/a"), entries(a="/bin/other"), ["a"])
    assert changes == ([], [])


def test_an_entry_whose_action_changed_stops_as_if_removed():
    new = parse_entries("a:2345:off:/bin/a\n")
    assert diff_entries(entries(a="/bin/a"), new, ["a"]).stop == ["a"]


def test_an_entry_back_while_its_old_process_dies_starts_again():
    # The dying process is no longer "running" for its id.
    changes = diff_entries({}, entries(a="/bin/a"), [])
    assert changes.start == ["a"]


# -- the loop, with real processes -------------------------------------------------


def wait_for(predicate, what, timeout=TIMEOUT):
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.02)


def read_pids(path):
    try:
        with open(path) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Node:
    """A temporary root, its inittab, and a supervisor running on it in the foreground."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.root = tmp_path / "vz"
        (self.root / "containers").mkdir(parents=True)
        self.inittab = self.root / "containers" / "inittab"
        self.inittab.write_text("")
        self.proc = None

    def script(self, name, body):
        """An entry's command: ``/bin/sh SCRIPT``; ``$OUT`` is a per-script pid file."""
        path = self.dir / (name + ".sh")
        path.write_text("OUT={}\n{}\n".format(self.dir / (name + ".pids"), body))
        return "/bin/sh {}".format(path)

    def pids(self, name):
        return read_pids(self.dir / (name + ".pids"))

    def write(self, **commands):
        self.inittab.write_text("".join("{}:2345:respawn:{}\n".format(key, value)
                                        for key, value in commands.items()))

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vzslave.supervisor", "--root", str(self.root),
             "--foreground"], cwd=ROOT, stderr=subprocess.DEVNULL)
        pid_file = self.root / "containers" / "supervisor.pid"
        wait_for(lambda: pid_file.exists(), "the pid file")

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(TIMEOUT)


@pytest.fixture
def node(tmp_path):
    result = Node(tmp_path)
    yield result
    if result.proc is not None and result.proc.poll() is None:
        result.proc.kill()
        result.proc.wait(TIMEOUT)
    # A killed supervisor leaves its entries running (each leads its own session).
    for pids in [*tmp_path.glob("*.pids"), *tmp_path.glob("*.pids.child")]:
        for pid in read_pids(str(pids)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


SLEEPER = "echo $$ >> $OUT\nexec sleep 1000"


def test_spawns_each_entry_in_its_own_session_with_stdio_on_dev_null(node):
    node.write(a=node.script("a", SLEEPER))
    node.start()
    wait_for(lambda: node.pids("a"), "entry a to start")
    pid = node.pids("a")[0]
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    assert int(fields[2]) == pid and int(fields[3]) == pid  # group and session leader
    assert {os.readlink("/proc/{}/fd/{}".format(pid, fd)) for fd in (0, 1, 2)} == {"/dev/null"}
    assert os.listdir("/proc/{}/fd".format(pid)) == ["0", "1", "2"]


def test_gives_entries_inits_path_not_its_own_environment(node):
    node.write(a=node.script("a", 'echo "$PATH" > $OUT.env\necho $$ >> $OUT\nexec sleep 1000'))
    os.environ["VZ_TEST_LEAK"] = "1"
    try:
        node.start()
    finally:
        del os.environ["VZ_TEST_LEAK"]
    wait_for(lambda: node.pids("a"), "entry a to start")
    pid = node.pids("a")[0]
    with open("/proc/{}/environ".format(pid), "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if item)
    assert env[b"PATH"] == b"/sbin:/usr/sbin:/bin:/usr/bin" and b"VZ_TEST_LEAK" not in env


def test_respawns_an_entry_that_exits(node):
    node.write(a=node.script("a", "echo $$ >> $OUT"))
    node.start()
    wait_for(lambda: len(node.pids("a")) >= 2, "entry a to be respawned")


def test_sighup_starts_a_new_entry(node):
    node.start()
    node.write(b=node.script("b", SLEEPER))
    node.hup()
    wait_for(lambda: node.pids("b"), "the new entry to start")


def test_sighup_ends_the_process_group_of_a_removed_entry(node):
    node.write(a=node.script("a", "sleep 1000 &\necho $! > $OUT.child\necho $$ >> $OUT\nwait"))
    node.start()
    wait_for(lambda: node.pids("a") and read_pids(str(node.dir / "a.pids.child")),
             "entry a and its child")
    leader, child = node.pids("a")[0], read_pids(str(node.dir / "a.pids.child"))[0]
    node.write()
    node.hup()
    wait_for(lambda: not alive(leader) and not alive(child), "the group to end")


def test_a_removed_entry_ignoring_sigterm_is_killed(node):
    node.write(a=node.script("a", "trap '' TERM\necho $$ >> $OUT\nwhile :; do sleep 1; done"))
    node.start()
    wait_for(lambda: node.pids("a"), "entry a to start")
    node.write()
    node.hup()
    wait_for(lambda: not alive(node.pids("a")[0]), "the TERM-ignoring entry to be killed")


def test_a_changed_command_starts_only_when_the_old_process_exits(node):
    node.write(a=node.script("old", SLEEPER))
    node.start()
    wait_for(lambda: node.pids("old"), "the old command to start")
    node.write(a=node.script("new", SLEEPER))
    node.hup()
    node.hup()  # two rereads: the old process surely saw the change, and stays
    assert alive(node.pids("old")[0]) and node.pids("new") == []
    os.kill(node.pids("old")[0], signal.SIGKILL)
    wait_for(lambda: node.pids("new"), "the new command to start")


def test_sigterm_stops_every_entry_and_exits_0_removing_its_pid_file(node):
    node.write(a=node.script("a", SLEEPER), b=node.script("b", SLEEPER))
    node.start()
    wait_for(lambda: node.pids("a") and node.pids("b"), "both entries")
    assert node.stop() == 0
    assert not alive(node.pids("a")[0]) and not alive(node.pids("b")[0])
    assert not (node.root / "containers" / "supervisor.pid").exists()


def test_a_second_supervisor_on_the_same_root_refuses_to_start(node):
    node.start()
    second = subprocess.run(
        [sys.executable, "-m", "vzslave.supervisor", "--root", str(node.root), "--foreground"],
        cwd=ROOT, stderr=subprocess.PIPE, universal_newlines=True, timeout=TIMEOUT)
    assert second.returncode == 1 and "already runs" in second.stderr


def test_without_python_daemon_detaching_fails_naming_the_pip_command(tmp_path):
    code = ("import sys; sys.modules['daemon'] = None\n"
            "from vzslave.supervisor import main\n"
            "main(['--root', {!r}])\n").format(str(tmp_path / "vz"))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=TIMEOUT)
    assert result.returncode == 1 and "pip install python-daemon" in result.stderr
