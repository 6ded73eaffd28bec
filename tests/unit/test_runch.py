"""runch's arguments and lifecycle refusals, against state files (no container runs)."""

import json
import os
import signal

import pytest

from vzslave import runch
from vzslave.errors import BadRequestError, BusyError, NoSuchContainerError, WrongStateError


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
    return record(runtime, container_id, pid, runch.start_time(pid), fifo)


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
