"""One-off commands in a release: a release command, a ``cmd`` health check, ``app.run``.

A one-off is a fresh spawn of the release's plan with its own argv, set up by the
runner's own steps (vzslave/runner.py): the same rootfs, mounts and volumes, env and
secrets, user, capabilities and seccomp filter as the app, in namespaces of its own
(as ``heroku run`` starts a one-off dyno beside the app's). Its stdout and stderr go to
a pipe that vzslave reads, keeping the last ``max_output`` bytes; at the deadline the
whole process group is killed. Builtin runtime only: runc and crun have their own exec.
"""

import copy
import os
import select
import signal
import time
from typing import Any, Dict, List, NamedTuple, Tuple

from vzslave import mounts, procs, runner
from vzslave.runio import RunnerError, os_message, write_quietly

MAX_OUTPUT = 1024 * 1024  # bytes of output kept (the end of it)
DRAIN = 0.5  # seconds the output is read after the command ended (its children's)


class Outcome(NamedTuple):
    """How a one-off ended."""

    exit: str  # "exit N", "signal N" or "timeout"
    status: int  # N, 128 + signal (124 for a timeout, as timeout(1))
    output: str  # merged stdout and stderr, the end of it
    truncated: bool  # the head of the output was dropped


def run(plan: Dict[str, Any], argv: List[str], timeout: float, scratch: str,
        max_output: int = MAX_OUTPUT) -> Outcome:
    """Run ``argv`` as a one-off of ``plan`` (builtin runtime) for at most ``timeout``
    seconds. ``scratch`` is a state directory of its own (the boot marks of the host
    mounts a chroot plan needs live there)."""
    plan = copy.deepcopy(plan)
    plan["process"]["args"] = list(argv)
    plan.update(monitor=False, state_dir=scratch, replaces=[])
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    host_mounts = not any(ns["type"] == "mount" for ns in plan["namespaces"])
    if host_mounts:
        mounts.mount_plan(plan, only_missing=True)
    reader, writer = os.pipe()
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - the child execs or exits
            os.close(reader)
            _child(plan, writer)
        os.close(writer)
        writer = -1
        output, timed_out = _collect(reader, child, time.monotonic() + timeout, max_output)
    finally:
        os.close(reader)
        if writer >= 0:
            os.close(writer)
    _, status = os.waitpid(child, 0)
    if host_mounts and not procs.container_processes(plan["rootfs"]):
        mounts.release(plan)  # nothing else runs there: the app is not running it
    data, truncated = output
    text = data.decode("utf-8", "replace")
    if timed_out:
        return Outcome("timeout", 124, text, truncated)
    if os.WIFSIGNALED(status):
        return Outcome("signal {}".format(os.WTERMSIG(status)), 128 + os.WTERMSIG(status),
                       text, truncated)
    code = os.WEXITSTATUS(status)
    return Outcome("exit {}".format(code), code, text, truncated)


def _collect(reader: int, child: int, deadline: float,
             max_output: int) -> Tuple[Tuple[bytes, bool], bool]:
    """Read the output until the pipe closes (or DRAIN after the child ended), keeping
    the last ``max_output`` bytes; at ``deadline`` kill the child's process group."""
    kept = bytearray()
    truncated = timed_out = False
    ended_at = None
    while True:
        now = time.monotonic()
        if ended_at is None and now >= deadline:
            timed_out = True
            _kill_group(child)
            ended_at = now
        limit = (ended_at + DRAIN if ended_at is not None else deadline) - now
        ready, _, _ = select.select([reader], [], [], max(min(limit, 0.1), 0))
        if ready:
            data = os.read(reader, 65536)
            if not data:
                break
            kept += data
            if len(kept) > max_output:
                del kept[:len(kept) - max_output]
                truncated = True
        elif ended_at is not None and time.monotonic() >= ended_at + DRAIN:
            break
        if ended_at is None and _exited(child):
            ended_at = time.monotonic()
    _kill_group(child)  # what it left holding the pipe
    return (bytes(kept), truncated), timed_out


def _exited(child: int) -> bool:
    """True once ``child`` has ended (a zombie, not reaped: its status stays for later)."""
    try:
        with open("/proc/{}/stat".format(child), "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _kill_group(child: int) -> None:
    try:
        os.killpg(child, signal.SIGKILL)
    except OSError:
        pass


def _child(plan: Dict[str, Any], writer: int) -> None:  # pragma: no cover - in the child
    """Set up as the runner does, then exec; never returns."""
    step = "session"
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(writer, 1)
        os.dup2(writer, 2)
        os.closerange(3, max(os.sysconf("SC_OPEN_MAX"), 1024))
        spawn = runner.Spawn(plan["name"], plan)
        os.setsid()  # its own group: the deadline kills all of it
        step = "secrets"
        runner.add_secrets(spawn)
        step = "namespaces"
        pid_ns = [ns for ns in plan["namespaces"] if ns["type"] == "pid"]
        if pid_ns:
            runner.join_or_create(pid_ns[0])
            inner = os.fork()
            if inner:  # wait for pid 1 of the namespace and end as it did
                _, status = os.waitpid(inner, 0)
                os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status)
                         else 128 + os.WTERMSIG(status))
        runner.enter_namespaces(spawn)
        for label, function in runner.SETUP_STEPS:
            step = label
            function(spawn)
        step = "exec"
        runner.exec_process(plan["process"])
    except RunnerError as exc:
        write_quietly(2, "vz: cannot run: {}\n".format(exc).encode("utf-8", "replace"))
    except OSError as exc:
        write_quietly(2, "vz: cannot run: {}: {}\n".format(step, os_message(exc)).encode(
            "utf-8", "replace"))
    except BaseException as exc:
        write_quietly(2, "vz: cannot run: {}: {!r}\n".format(step, exc).encode(
            "utf-8", "replace"))
    finally:
        os._exit(127)
