"""runch: a runc-compatible OCI runtime over the built-in chroot runner.

    python3 -m vzslave.runch [--root DIR] [--log FILE [--log-format text|json]]
        create|start|state|kill|delete|run ... ID

It follows the OCI runtime lifecycle (runtime-spec runtime.md): ``create`` forks the
container process, which runs every setup step of vzslave/runner.py (namespaces,
mounts, chroot, user, capabilities, no_new_privileges) and then blocks opening
DIR/ID/exec.fifo for writing, as runc does; ``start`` opens it for reading, and the
process execs the app. The container inherits create's stdin, stdout and stderr (runc's
detached mode without a terminal: ``process.terminal`` is refused, as runc refuses it
without a console socket). The runner's backoff, log and run record are not used: this
is the plain runtime, usable and testable on its own.

Errors and warnings (the plan's, and the runner's at setup) go to stderr as ``runch:
...`` lines and, with runc's global ``--log FILE``, to that file in runc's format
(``--log-format text`` or ``json``).

State lives in DIR/ID/state.json (written atomically); the status is computed from
the pid: not alive → stopped, alive with the fifo still there → created, else running.
"""

import argparse
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from vzslave import linux, mounts, procs, runner
from vzslave.errors import (BadConfigError, BadRequestError, BusyError, NoSuchContainerError,
                            VzError, WrongStateError)
from vzslave.fs import atomic_write, remove_tree
from vzslave.runio import RunnerError, write_quietly

OCI_VERSION = "1.0.2"
DEFAULT_ROOT = "/run/runch"
FIFO = "exec.fifo"
DESCRIPTION = "a runc-compatible OCI runtime over the built-in chroot runner"
STATE = "state.json"
PR_SET_CHILD_SUBREAPER = 36
_WAIT = 10.0  # seconds delete --force waits for a killed container to go
NO_TERMINAL = ("cannot allocate tty: process.terminal is true, but runch makes no terminal "
               "and has no --console-socket (runc refuses it the same way when detached): "
               "set process.terminal to false")


class Reporter(object):
    """runch's errors and warnings: on stderr, and in runc's --log file in its format."""

    def __init__(self, log_path: Optional[str] = None, log_format: str = "text") -> None:
        self.log_path = log_path
        self.log_format = log_format

    def error(self, message: str) -> None:
        """Report a failed command."""
        self.report("error", message)

    def warning(self, message: str) -> None:
        """Report something done otherwise than the config asked."""
        self.report("warning", message)

    def report(self, level: str, message: str) -> None:
        """One line on stderr, and one in the log (as runc's logrus writes them)."""
        sys.stderr.write("runch: {}{}\n".format("" if level == "error" else level + ": ",
                                                message))
        if not self.log_path:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.log_format == "json":
            line = json.dumps({"level": level, "msg": message, "time": now}, sort_keys=True,
                              ensure_ascii=False)
        else:
            line = "time={} level={} msg={}".format(json.dumps(now), level,
                                                    json.dumps(message, ensure_ascii=False))
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
            try:
                write_quietly(fd, (line + "\n").encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as exc:
            sys.stderr.write("runch: cannot write the log {}: {}\n".format(
                self.log_path, exc.strerror))


class Runtime(object):
    """The containers under one state directory (runc's --root)."""

    def __init__(self, root: str, warn: Optional[Callable[[str], None]] = None) -> None:
        self.root = root
        self.warn: Callable[[str], None] = warn or Reporter().warning

    def path_of(self, container_id: str) -> str:
        """The state directory of ``container_id`` (its name validated first)."""
        from vzslave.names import validate_name
        validate_name("container", container_id)
        return os.path.join(self.root, container_id)

    def load(self, container_id: str) -> Dict[str, Any]:
        """The recorded state of ``container_id``; NoSuchContainerError if there is none."""
        path = os.path.join(self.path_of(container_id), STATE)
        try:
            with open(path, "rb") as source:
                state = json.loads(source.read().decode("utf-8"))
        except FileNotFoundError:
            raise NoSuchContainerError("container {} does not exist; `runch list` is not "
                                       "implemented, look in {}".format(container_id, self.root),
                                       {"id": container_id}) from None
        except (OSError, ValueError) as exc:
            raise BadRequestError("cannot read {}: {}; delete the container with "
                                  "--force".format(path, exc)) from exc
        if not isinstance(state, dict):
            raise BadRequestError("{} is not a runch state; remove it by hand".format(path))
        return state

    def status(self, container_id: str, state: Dict[str, Any]) -> str:
        """created, running or stopped, from the recorded pid (and the fifo)."""
        if not procs.same_process(state.get("pid", 0), state.get("started", "")):
            return "stopped"
        if os.path.exists(os.path.join(self.path_of(container_id), FIFO)):
            return "created"
        return "running"

    def state(self, container_id: str) -> Dict[str, Any]:
        """The OCI state of ``container_id``."""
        state = self.load(container_id)
        status = self.status(container_id, state)
        return {"ociVersion": OCI_VERSION, "id": container_id, "status": status,
                # As runc: a stopped container's pid may be anyone's by now.
                "pid": 0 if status == "stopped" else state["pid"],
                "bundle": state["bundle"], "annotations": state.get("annotations") or {}}

    def create(self, container_id: str, bundle: str, pid_file: Optional[str] = None) -> int:
        """Set up the container and leave it waiting for start; its pid."""
        from vzslave.oci import build_plan, load_config
        config = load_config(bundle)
        plan = build_plan(config, bundle, container_id)
        if config["process"].get("terminal"):
            raise BadConfigError(NO_TERMINAL, {"field": "process.terminal"})
        for warning in plan["warnings"]:
            self.warn(warning)
        directory = self.path_of(container_id)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(directory, 0o711)  # world-searchable: a non-root app opens the fifo
        except FileExistsError:
            raise BusyError("container with id {} exists; delete it first or choose another "
                            "id".format(container_id), {"id": container_id}) from None
        # As runc: the mount namespace the config says; without one, a chroot in ours.
        own_mounts = any(ns["type"] == "mount" for ns in plan["namespaces"])
        plan.update(state_dir=directory, runtime="builtin", mount_ns="config",
                    enter="pivot_root" if own_mounts else "chroot")
        try:
            fifo = os.path.join(directory, FIFO)
            os.mkfifo(fifo, 0o600)
            os.chown(fifo, plan["process"]["uid"], plan["process"]["gid"])
            pid = spawn_container(plan, directory, self.warn)
            state = {"ociVersion": OCI_VERSION, "id": container_id, "pid": pid,
                     "started": str(procs.start_time(pid) or ""), "bundle": plan["bundle"],
                     "rootfs": plan["rootfs"],
                     "annotations": config.get("annotations") or {}}
            atomic_write(os.path.join(directory, STATE), json.dumps(state).encode("utf-8"))
            if pid_file:
                atomic_write(pid_file, "{}".format(pid).encode("ascii"))
        except BaseException:
            self.remove(plan["rootfs"], directory)
            raise
        return pid

    def start(self, container_id: str) -> None:
        """Let the created container exec its app."""
        state = self.load(container_id)
        status = self.status(container_id, state)
        if status != "created":
            raise WrongStateError("container {} is {}, not created: only a created container "
                                  "can be started".format(container_id, status),
                                  {"status": status})
        fifo = os.path.join(self.path_of(container_id), FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)  # the container waits on the other end
        try:
            ready = os.read(fd, 1)
        finally:
            os.close(fd)
            os.unlink(fifo)
        if not ready:
            raise WrongStateError("container {} ended before it could start".format(
                container_id), {"status": "stopped"})

    def kill(self, container_id: str, signum: int) -> None:
        """Send ``signum`` to the container's process (created or running only)."""
        state = self.load(container_id)
        status = self.status(container_id, state)
        if status not in ("created", "running"):
            raise WrongStateError("container {} is {}: only a created or running container "
                                  "can be signalled".format(container_id, status),
                                  {"status": status})
        os.kill(state["pid"], signum)

    def delete(self, container_id: str, force: bool = False) -> None:
        """Release the container's mounts and forget it (stopped only, unless ``force``).

        With ``force``, a container that does not exist is no error (as in runc).
        """
        try:
            state = self.load(container_id)
        except NoSuchContainerError:
            if not force:
                raise
            directory = self.path_of(container_id)
            if os.path.isdir(directory):  # a create killed before it wrote the state
                remove_tree(directory)
            return
        status = self.status(container_id, state)
        if status != "stopped":
            if not force:
                raise WrongStateError("container {} is {}: stop it first, or delete it with "
                                      "--force".format(container_id, status),
                                      {"status": status})
            os.kill(state["pid"], signal.SIGKILL)
            deadline = time.monotonic() + _WAIT
            while self.status(container_id, state) != "stopped":
                if time.monotonic() > deadline:
                    raise BusyError("container {} (pid {}) does not die; try again".format(
                        container_id, state["pid"]))
                time.sleep(0.01)
        self.remove(state["rootfs"], self.path_of(container_id))

    def remove(self, rootfs: str, directory: str) -> None:
        """Unmount what the container mounted in the host, then remove its state."""
        left = mounts.release({"rootfs": rootfs, "state_dir": directory})
        if left:
            raise BusyError("cannot unmount {} (busy); the state is kept, delete again "
                            "later".format(", ".join(left)))
        remove_tree(directory)


class ContainerSpawn(runner.Spawn):
    """The runner's spawn in runch's container process: it reports to create by a pipe."""

    def __init__(self, name: str, plan: Dict[str, Any], writer: int) -> None:
        super().__init__(name, plan)
        self.writer = writer

    def say(self, text: str) -> None:
        """A diagnostic line for create to report; on stderr once create has returned."""
        if self.writer >= 0:
            write_quietly(self.writer, "say {}\n".format(text.replace("\n", " ")).encode(
                "utf-8", "replace"))
        else:
            write_quietly(2, "runch: {}\n".format(text).encode("utf-8", "replace"))


def spawn_container(plan: Dict[str, Any], directory: str,
                    warn: Callable[[str], None]) -> int:
    """Fork the container process, wait until it is set up; its pid (host's view)."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        container_process(plan, directory, writer)  # never returns
    os.close(writer)
    with os.fdopen(reader, "rb") as source:
        lines = source.read().decode("utf-8", "replace").splitlines()
    pid = 0
    for line in lines:
        if line.startswith("pid "):
            pid = int(line[4:])
        elif line.startswith("say "):
            text = line[4:]
            warn(text[len("warning: "):] if text.startswith("warning: ") else text)
    ok = lines[-1:] == ["ok"]
    if pid != child or not ok:
        os.waitpid(child, 0)  # a PID namespace's intermediate, or a failed child: reap it
    if not ok:
        errors = [line[6:] for line in lines if line.startswith("error ")]
        raise BadConfigError("cannot create container {}: {}".format(
            plan["name"], errors[0] if errors else "the container process died"),
            {"step": "create"})
    return pid


def container_process(plan: Dict[str, Any], directory: str, writer: int) -> None:
    """In the child: every setup step, then wait on the fifo, then exec; never returns."""
    step = "session"
    spawn = ContainerSpawn(plan["name"], plan, writer)
    try:
        runner.start_session(spawn)
        step = "mounts"
        runner.set_up_host_mounts(spawn)
        step = "namespaces"
        pid_ns = [ns for ns in plan["namespaces"] if ns["type"] == "pid"]
        if pid_ns:
            # A PID namespace applies to children: the container is our child, its pid 1.
            runner.join_or_create(pid_ns[0])
            child = os.fork()
            if child:
                os.write(writer, "pid {}\n".format(child).encode("ascii"))
                os._exit(0)
        else:
            os.write(writer, "pid {}\n".format(os.getpid()).encode("ascii"))
        runner.enter_namespaces(spawn)
        # A directory fd reaches the fifo after chroot; the path would not.
        state_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for label, function in runner.SETUP_STEPS:
            step = label
            function(spawn)
        step = "fifo"
        os.write(writer, b"ok\n")
        os.close(writer)
        writer = spawn.writer = -1  # its number is reused next: never report into the fifo
        fifo = os.open(FIFO, os.O_WRONLY | os.O_CLOEXEC, dir_fd=state_fd)  # until start
        os.close(state_fd)
        os.write(fifo, b"0")
        step = "exec"
        runner.exec_process(plan["process"])
    except BaseException as exc:
        if isinstance(exc, RunnerError):
            message = str(exc)
        elif isinstance(exc, OSError):
            message = "{}: {}".format(step, exc.strerror or exc)
        else:
            message = "{}: {!r}".format(step, exc)
        line = "error {}\n".format(message.replace("\n", " "))
        if writer >= 0:
            write_quietly(writer, line.encode("utf-8", "replace"))
        else:  # after "ok": create has returned, only stderr is left
            write_quietly(2, "runch: {}\n".format(message).encode("utf-8", "replace"))
    finally:
        os._exit(127)


def parse_signal(text: str) -> int:
    """A signal number from ``9``, ``KILL`` or ``SIGKILL``."""
    if text.isdigit():
        number = int(text)
    else:
        name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
        member = signal.Signals.__members__.get(name)
        number = 0 if member is None else int(member)
    if not 0 < number < signal.NSIG:
        raise BadRequestError("unknown signal {!r}; give a name like TERM or a "
                              "number".format(text))
    return number


def run(runtime: Runtime, container_id: str, bundle: str, detach: bool = False,
        pid_file: Optional[str] = None) -> int:
    """create, start, wait in the foreground, delete; the exit status (128+signal).

    Detached (runc's ``run -d``): create and start, then return 0 and leave it running.
    """
    if detach:
        runtime.create(container_id, bundle, pid_file)
        try:
            runtime.start(container_id)
        except BaseException:
            runtime.delete(container_id, force=True)
            raise
        return 0
    linux.prctl(PR_SET_CHILD_SUBREAPER, 1)  # a PID namespace's pid 1 is a grandchild
    pid = runtime.create(container_id, bundle, pid_file)

    def relay(signum: int, frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, relay)
    try:
        runtime.start(container_id)
        status = os.waitpid(pid, 0)[1]
    finally:
        runtime.delete(container_id, force=True)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def parse_args(argv: List[str]) -> argparse.Namespace:
    """The command line, runc's shape: global options, a command, its options, the id."""
    parser = argparse.ArgumentParser(prog="runch", description=DESCRIPTION)
    parser.add_argument("--root", default=DEFAULT_ROOT,
                        help="state directory (default {})".format(DEFAULT_ROOT))
    parser.add_argument("--log", default=None,
                        help="also write errors and warnings to this file")
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="the --log file's format, as runc's (default text)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name in ("create", "run"):
        sub = commands.add_parser(name)
        sub.add_argument("--bundle", "-b", default=".", help="the bundle directory")
        sub.add_argument("--pid-file", default=None, help="write the pid here")
        sub.add_argument("--console-socket", default=None,
                         help="refused: runch makes no terminal")
        if name == "run":
            sub.add_argument("--detach", "-d", action="store_true",
                             help="return once started; the container keeps running")
        sub.add_argument("id")
    for name in ("start", "state"):
        commands.add_parser(name).add_argument("id")
    sub = commands.add_parser("kill")
    sub.add_argument("id")
    sub.add_argument("signal", nargs="?", default="TERM")
    sub = commands.add_parser("delete")
    sub.add_argument("--force", "-f", action="store_true")
    sub.add_argument("id")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """The runch command; exits 1 with a message on stderr when a command fails."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    reporter = Reporter(args.log, args.log_format)
    runtime = Runtime(args.root, reporter.warning)
    code = 0
    try:
        if getattr(args, "console_socket", None):
            raise BadRequestError("--console-socket is not supported: runch makes no terminal; "
                                  "set process.terminal to false and leave the option out")
        if args.command == "create":
            runtime.create(args.id, args.bundle, args.pid_file)
        elif args.command == "start":
            runtime.start(args.id)
        elif args.command == "state":
            sys.stdout.write(json.dumps(runtime.state(args.id), indent=2) + "\n")
        elif args.command == "kill":
            runtime.kill(args.id, parse_signal(args.signal))
        elif args.command == "delete":
            runtime.delete(args.id, args.force)
        else:
            code = run(runtime, args.id, args.bundle, args.detach, args.pid_file)
    except VzError as exc:
        reporter.error(exc.message)
        code = 1
    except OSError as exc:
        reporter.error("{}: {}".format(args.command, exc))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
