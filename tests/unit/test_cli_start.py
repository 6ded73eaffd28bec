"""``vzmaster start`` tells the truth: an app that does not stay up is no success."""

import contextlib
import io
import json

import pytest

from vzmaster import cli
from vzslave.records import ContainerStatus


def status(state, **fields):
    values = dict(name="web", state=state, pid=None, uptime=None, restarts=2,
                  last_exit="exit 3", last_error=None, next_retry=None,
                  supervisor="sysvinit", runtime="builtin", entry=None, bundle="/b",
                  log="/l")
    values.update(fields)
    return ContainerStatus(**values)


class FakeNode:
    """The Client as cmd_start uses it: start, then logs when it must explain."""

    def __init__(self, state):
        self.state = state
        self.started_with = None

    def start(self, name, **options):
        self.started_with = options
        return status(self.state, pid=42 if self.state == "running" else None)

    def logs(self, name, tail):
        return ["line {}".format(n) for n in range(tail)][-3:] + ["config missing"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run(monkeypatch, state, *options):
    node = FakeNode(state)
    monkeypatch.setattr(cli, "Client", lambda *args, **kwargs: node)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        with contextlib.redirect_stdout(out):
            cli.main(["start", "node1", "web", *options])
    return exited.value.code, out.getvalue(), err.getvalue(), node


def test_a_running_app_exits_0(monkeypatch):
    code, out, err, node = run(monkeypatch, "running")
    assert code == 0 and "running" in out and err == ""
    assert node.started_with["monitor"] is None  # the node's default: a monitor


def test_a_crash_looping_app_exits_1_with_the_last_lines_of_its_log(monkeypatch):
    code, out, err, node = run(monkeypatch, "crash-looping", "--log-lines", "5")
    assert code == cli.EXIT_REMOTE
    assert "crash-looping" in out and "last exit 3" in out
    assert "last lines of its log:\n  line 2\n  line 3\n  line 4\n  config missing" in out
    assert "web is crash-looping after start" in err


def test_json_output_of_a_failed_start_carries_the_log(monkeypatch):
    code, out, err, node = run(monkeypatch, "crash-looping", "--json")
    assert code == cli.EXIT_REMOTE
    assert json.loads(out)["log"][-1] == "config missing"


def test_monitor_and_min_uptime_reach_the_client(monkeypatch):
    code, out, err, node = run(monkeypatch, "running", "--no-monitor", "--min-uptime", "5")
    assert node.started_with["monitor"] is False and node.started_with["min_uptime"] == 5.0
