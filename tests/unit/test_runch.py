"""runch's arguments and lifecycle refusals, against state files (no container runs)."""

import json
import os
import signal

import pytest

from vzslave import procs, runch
from vzslave.errors import (BadConfigError, BadRequestError, BusyError, NoSuchContainerError,
                            WrongStateError)


@pytest.fixture
def runtime(tmp_path):
    return runch.Runtime(str(tmp_path / "state"))


def record(runtime, container_id, pid, started, fifo=False):
    """A state directory as create leaves it, for a process that may or may not run."""
    directory = runtime.path_of(container_id)
    os.makedirs(directory)
    state = {"ociVersion": runch.OCI_VERSION, "id": container_id, "pid": pid,
             "started": started, "bundle": "/b", "rootfs": directory + "/rootfs",
             "annotations": {"a": "b"}}
    with open(os.path.join(directory, runch.STATE), "w") as out:
        json.dump(state, out)
    if fifo:
        os.mkfifo(os.path.join(directory, runch.FIFO))
    return directory


def running(runtime, container_id="c1", fifo=False):
    pid = os.getpid()  # this process: alive, with its real start time
    return record(runtime, container_id, pid, str(procs.start_time(pid)), fifo)


def test_a_live_pid_without_fifo_is_running(runtime):
    running(runtime)
    assert runtime.state("c1") == {"ociVersion": runch.OCI_VERSION, "id": "c1",
                                   "status": "running", "pid": os.getpid(), "bundle": "/b",
                                   "annotations": {"a": "b"}}


def test_a_live_pid_still_holding_the_fifo_is_created(runtime):
    running(runtime, fifo=True)
    assert runtime.state("c1")["status"] == "created"


def test_a_reused_pid_counts_as_stopped(runtime):
    record(runtime, "c1", os.getpid(), "1")
    assert runtime.state("c1")["status"] == "stopped"


def test_start_refuses_a_running_container_so_it_never_starts_twice(runtime):
    running(runtime)
    with pytest.raises(WrongStateError, match="c1 is running, not created"):
        runtime.start("c1")


def test_delete_refuses_a_running_container_without_force(runtime):
    directory = running(runtime)
    with pytest.raises(WrongStateError, match="stop it first, or delete it with --force"):
        runtime.delete("c1")
    assert os.path.isdir(directory)


def test_kill_refuses_a_stopped_container(runtime):
    record(runtime, "c1", os.getpid(), "1")
    with pytest.raises(WrongStateError, match="is stopped"):
        runtime.kill("c1", signal.SIGTERM)


def test_delete_removes_a_stopped_containers_state(runtime):
    directory = record(runtime, "c1", os.getpid(), "1")
    runtime.delete("c1")
    assert not os.path.exists(directory)


@pytest.mark.parametrize("command", ["start", "state", "delete"])
def test_an_unknown_id_is_refused_naming_it(runtime, command):
    with pytest.raises(NoSuchContainerError, match="container nope does not exist"):
        getattr(runtime, command)("nope")


def test_create_refuses_an_existing_id(runtime, tmp_path):
    running(runtime)
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(
        {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
         "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}}))
    with pytest.raises(BusyError, match="container with id c1 exists"):
        runtime.create("c1", str(bundle))


@pytest.mark.parametrize("text,number", [("9", 9), ("KILL", 9), ("SIGTERM", 15),
                                         ("hup", 1)])
def test_signals_are_named_or_numbered(text, number):
    assert runch.parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "NOPE", "999"])
def test_an_unknown_signal_is_refused(text):
    with pytest.raises(BadRequestError, match="unknown signal"):
        runch.parse_signal(text)


def test_arguments_follow_runcs_shape():
    args = runch.parse_args(["--root", "/r", "create", "--bundle", "/b", "--pid-file", "/p",
                             "c1"])
    assert (args.root, args.command, args.bundle, args.pid_file, args.id) == (
        "/r", "create", "/b", "/p", "c1")
    args = runch.parse_args(["kill", "c1"])
    assert (args.root, args.signal) == (runch.DEFAULT_ROOT, "TERM")
    assert runch.parse_args(["delete", "--force", "c1"]).force


def test_main_reports_a_refusal_on_stderr_and_exits_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        runch.main(["--root", str(tmp_path), "start", "nope"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "runch: container nope does not exist; `runch list` is not implemented, "
        "look in {}\n".format(tmp_path))


def test_a_stopped_containers_state_shows_pid_0_as_runc_does(runtime):
    """When the container has stopped, state shows pid 0: its old pid may be anyone's."""
    record(runtime, "c1", os.getpid(), "1")
    state = runtime.state("c1")
    assert state["status"] == "stopped" and state["pid"] == 0


def test_delete_force_of_a_missing_container_succeeds_as_in_runc(runtime, tmp_path):
    """When delete --force names no container, it exits 0 (runc does), plain delete 1."""
    runtime.delete("nope", force=True)
    with pytest.raises(SystemExit) as exited:
        runch.main(["--root", runtime.root, "delete", "--force", "nope"])
    assert exited.value.code == 0
    with pytest.raises(SystemExit) as exited:
        runch.main(["--root", runtime.root, "delete", "nope"])
    assert exited.value.code == 1


def test_delete_force_removes_a_state_directory_without_state(runtime):
    os.makedirs(runtime.path_of("c1"))
    runtime.delete("c1", force=True)
    assert not os.path.exists(runtime.path_of("c1"))


def bundle_with(tmp_path, **process):
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(
        {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
         "process": dict({"args": ["true"], "cwd": "/"}, **process)}))
    return str(bundle)


def test_a_terminal_is_refused_at_create_as_runc_refuses_it_without_a_console_socket(
        runtime, tmp_path):
    """When process.terminal is true, create fails naming it, before anything is made."""
    with pytest.raises(BadConfigError, match="cannot allocate tty") as caught:
        runtime.create("c1", bundle_with(tmp_path, terminal=True))
    assert caught.value.details == {"field": "process.terminal"}
    assert not os.path.exists(runtime.path_of("c1"))


def test_a_console_socket_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        runch.main(["--root", str(tmp_path), "create", "--console-socket", "/s", "c1"])
    assert exited.value.code == 1
    assert "--console-socket is not supported" in capsys.readouterr().err


@pytest.mark.parametrize("log_format, line", [
    ("text", 'time="{time}" level=error msg="container nope does not exist; '),
    ("json", '{{"level": "error", "msg": "container nope does not exist; '),
])
def test_errors_also_go_to_the_log_file_in_runcs_format(tmp_path, capsys, log_format, line,
                                                        monkeypatch):
    """When --log FILE is given, the error is also written there as runc's logrus would."""
    monkeypatch.setattr(runch.time, "strftime", lambda fmt, t: "2030-01-02T03:04:05Z")
    log = tmp_path / "log"
    with pytest.raises(SystemExit):
        runch.main(["--root", str(tmp_path), "--log", str(log), "--log-format", log_format,
                    "start", "nope"])
    text = log.read_text()
    assert text.startswith(line.format(time="2030-01-02T03:04:05Z")) and text.endswith("\n")
    assert capsys.readouterr().err.startswith("runch: container nope does not exist")


def test_warnings_are_reported_on_stderr_and_in_the_log(tmp_path, capsys):
    log = tmp_path / "log"
    runch.Reporter(str(log), "json").warning("cgroup mounts are skipped")
    assert capsys.readouterr().err == "runch: warning: cgroup mounts are skipped\n"
    assert json.loads(log.read_text())["level"] == "warning"


def test_run_takes_runcs_detach_and_pid_file_options():
    args = runch.parse_args(["--log", "/l", "--log-format", "json", "run", "-d",
                             "--pid-file", "/p", "c1"])
    assert (args.log, args.log_format, args.detach, args.pid_file) == ("/l", "json", True, "/p")
    assert not runch.parse_args(["run", "c1"]).detach
