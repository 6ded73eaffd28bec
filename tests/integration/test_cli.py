"""The vzmaster command against a local vzslave."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests.conftest import sample_image
from vzmaster import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def vzmaster(capsys, node_root, monkeypatch, tmp_path):
    """Run ``vzmaster ARGS`` in-process; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def run(*args):
        with pytest.raises(SystemExit) as exited:
            cli.main([a.replace("HOST", "local:" + node_root) for a in args])
        out, err = capsys.readouterr()
        return exited.value.code, out, err

    return run


def test_push_unpack_list_and_remove(vzmaster, image_file):
    path = image_file(sample_image())
    status, out, _ = vzmaster("push", "HOST", path)
    assert status == 0 and out.startswith("app.tar.gz ")
    assert vzmaster("unpack", "HOST", "app.tar.gz", "app")[0] == 0
    status, out, _ = vzmaster("images", "HOST")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "FORMAT", "SHA256", "CREATED"]
    assert "tar.gz" in out
    status, out, _ = vzmaster("bundles", "HOST", "--json")
    assert [b["name"] for b in json.loads(out)] == ["app"]
    assert vzmaster("rm-bundle", "HOST", "app")[0] == 0
    assert vzmaster("rm-image", "HOST", "app.tar.gz")[0] == 0
    assert json.loads(vzmaster("images", "HOST", "--json")[1]) == []


def test_hello_prints_the_node_facts(vzmaster, node_root):
    status, out, _ = vzmaster("hello", "HOST")
    assert status == 0
    assert re.search(r"^root +{}$".format(re.escape(node_root)), out, re.MULTILINE)


def test_a_remote_error_is_one_line_with_its_code_and_exit_1(vzmaster, node_root):
    status, _, err = vzmaster("rm-image", "HOST", "nope")
    assert status == cli.EXIT_REMOTE
    assert err == "vzmaster: local:{}: NO_SUCH_IMAGE: no image named 'nope' on this node\n" \
        .format(node_root)


def test_an_unreachable_node_exits_3(vzmaster):
    status, _, err = vzmaster("images", "127.0.0.1", "-p", "1", "--timeout", "2")
    assert status == cli.EXIT_TRANSPORT
    assert "cannot reach 127.0.0.1 port 1" in err


def test_a_missing_image_file_is_a_clear_error(vzmaster, tmp_path):
    status, _, err = vzmaster("push", "HOST", str(tmp_path / "missing.tar"))
    assert status == cli.EXIT_REMOTE
    assert "missing.tar" in err


def test_several_hosts_are_driven_in_turn(vzmaster, tmp_path):
    other = "local:" + str(tmp_path / "other")
    status, out, _ = vzmaster("images", "HOST," + other)
    assert status == 0
    assert out.count("== local:") == 2


def test_bad_usage_exits_2(vzmaster):
    assert vzmaster("push", "HOST")[0] == 2


def test_start_takes_repeated_runtime_args_written_with_equals():
    args = cli.build_parser().parse_args(
        ["start", "node1", "app", "--runtime", "crun",
         "--runtime-arg=--cgroup-manager=disabled", "--runtime-arg=--root=/run/x"])
    assert args.runtime_arg == ["--cgroup-manager=disabled", "--root=/run/x"]


def test_several_hosts_give_one_json_document_with_a_host_on_each_record(vzmaster, tmp_path,
                                                                         image_file, node_root):
    """When --json drives several hosts, stdout is one valid JSON document."""
    assert vzmaster("push", "HOST", image_file(sample_image()))[0] == 0
    other = "local:" + str(tmp_path / "other")
    status, out, _ = vzmaster("images", "HOST," + other, "--json")
    assert status == 0
    assert [(r["host"], r["name"]) for r in json.loads(out)] == [
        ("local:" + node_root, "app.tar.gz")]


def vzmaster_process(*args, **popen):
    """``vzmaster ARGS`` as a process of its own, as a shell runs it (stdout buffered)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.Popen([sys.executable, "-m", "vzmaster.cli", *args], cwd=ROOT, env=env,
                            universal_newlines=True, **popen)


def test_an_error_follows_its_hosts_header_when_both_streams_share_a_file(node_root, tmp_path):
    """When stdout and stderr go to one file (2>&1), a host's error is under its header."""
    proc = vzmaster_process("images", "127.0.0.1,local:" + node_root, "-p", "1",
                            "--timeout", "2", stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=60)
    lines = out.splitlines()
    assert proc.returncode == cli.EXIT_TRANSPORT
    assert lines[0] == "== 127.0.0.1"
    assert lines[1].startswith("vzmaster: 127.0.0.1: ") and "cannot reach" in lines[1]
    assert lines[2] == "== local:" + node_root


def test_a_reader_that_goes_away_ends_the_command_quietly(node_root):
    """When the reader of stdout has gone (| head), no BrokenPipeError traceback: 141."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before vzmaster writes anything
    try:
        proc = vzmaster_process("hello", "local:" + node_root, stdout=write,
                                stderr=subprocess.PIPE)
    finally:
        os.close(write)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (cli.EXIT_PIPE, "")


def fake_container(root, name, *lines):
    """A container ``name`` the node knows of, with ``lines`` in its log."""
    state = os.path.join(root, "containers", name)
    os.makedirs(state)
    with open(os.path.join(state, "settings.json"), "w") as settings:
        json.dump({"wanted": "stopped", "log_max": 4096, "log_keep": 2}, settings)
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    log = os.path.join(root, "logs", name + ".log")
    with open(log, "a") as out:
        out.writelines(line + "\n" for line in lines)
    return log


@contextlib.contextmanager
def watchdog(proc, seconds=60):
    """Kill ``proc`` if the test is still waiting on it after ``seconds``."""
    timer = threading.Timer(seconds, proc.kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_ends_a_followed_log_with_130(node_root):
    """When logs -f is ended by Ctrl-C, the status is 130, not 3 ("client is closed")."""
    fake_container(node_root, "app", "first")
    proc = vzmaster_process("logs", "local:" + node_root, "app", "-f",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with watchdog(proc):
        assert proc.stdout.readline() == "first\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
    assert (proc.returncode, err) == (cli.EXIT_INTERRUPTED, "vzmaster: interrupted\n")


def test_logs_follow_several_hosts_at_once_each_line_named(tmp_path):
    """When logs -f drives several hosts, new lines of each come as they are written."""
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    fake_container(one, "app", "one: old")
    log_two = fake_container(two, "app", "two: old")
    hosts = ("local:" + one, "local:" + two)
    proc = vzmaster_process("logs", ",".join(hosts), "app", "-f", "-n", "1",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with watchdog(proc):
        seen = {proc.stdout.readline(), proc.stdout.readline()}
        width = len(hosts[1])
        assert seen == {"{} | one: old\n".format(hosts[0].ljust(width)),
                        "{} | two: old\n".format(hosts[1])}
        with open(log_two, "a") as log:
            log.write("two: new\n")
        assert proc.stdout.readline() == "{} | two: new\n".format(hosts[1])
        proc.send_signal(signal.SIGINT)
        proc.communicate()
    assert proc.returncode == cli.EXIT_INTERRUPTED
