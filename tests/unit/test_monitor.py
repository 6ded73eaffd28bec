"""The monitor beside the app: it pumps the output, records how the app ended, and exits
with the app's status. Real processes (a forked shell as the app), no root needed."""

import os
import subprocess
import sys

from vzslave.runio import read_run_record, write_run_record

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A runner cut down to what the monitor needs: the record says running, then fork; the
# child (the app's side) runs the shell script given.
RUNNER = """
import os, sys
sys.path.insert(0, {root!r})
from vzslave.monitor import fork_monitor
from vzslave.runio import write_run_record
plan = {{"rootfs": {rootfs!r}, "monitor": True,
        "log": {{"path": {log!r}, "max_bytes": 1 << 20, "keep": 1, "syslog": False}}}}
record = {{"state": "running", "pid": str(os.getpid())}}
write_run_record({record!r}, record)
fork_monitor("app", plan, {record!r}, record)
os.execv("/bin/sh", ["sh", "-c", sys.argv[1]])
"""


def run(tmp_path, script):
    """Run the monitor over ``script``; (its exit status, the run record, the log)."""
    rootfs, log, record = tmp_path / "rootfs", tmp_path / "app.log", tmp_path / "run"
    rootfs.mkdir(exist_ok=True)
    code = RUNNER.format(root=ROOT, rootfs=str(rootfs), log=str(log), record=str(record))
    done = subprocess.run([sys.executable, "-S", "-c", code, script], timeout=60,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = log.read_text() if log.exists() else ""
    return done.returncode, read_run_record(str(record)), text + done.stdout.decode()


def test_the_monitor_exits_with_the_apps_status_and_records_it(tmp_path):
    status, record, _ = run(tmp_path, "exit 3")
    assert status == 3
    assert record["state"] == "exited" and record["last_exit"] == "exit 3"
    assert float(record["last_run"]) >= 0


def test_the_monitor_pumps_the_apps_output_into_the_log(tmp_path):
    status, _, log = run(tmp_path, "echo out; echo err >&2")
    assert status == 0 and log.splitlines() == ["out", "err"]


def test_a_death_by_signal_is_recorded_and_exits_as_128_plus_the_signal(tmp_path):
    status, record, _ = run(tmp_path, "kill -TERM $$")
    assert status == 128 + 15 and record["last_exit"] == "signal 15"


def test_a_failure_the_apps_side_recorded_is_kept(tmp_path):
    """When the app's side fails a step (it writes failed, exits 127), the record says
    failed with its error, not exited."""
    fail = tmp_path / "fail.py"
    fail.write_text("import sys; sys.path.insert(0, {!r})\n"
                    "from vzslave.runio import write_run_record\n"
                    "write_run_record({!r}, dict(state='failed', last_error='user: no'))\n"
                    .format(ROOT, str(tmp_path / "run")))
    failing = "{} -S {}; exit 127".format(sys.executable, fail)
    status, record, _ = run(tmp_path, failing)
    assert status == 127
    assert (record["state"], record["last_error"], record["last_exit"]) == (
        "failed", "user: no", "exit 127")


def test_without_a_record_from_the_app_the_monitor_keeps_its_own(tmp_path):
    write_run_record(str(tmp_path / "run"), {"state": "running", "spawns": "4"})
    status, record, _ = run(tmp_path, "true")
    assert status == 0 and record["state"] == "exited"
