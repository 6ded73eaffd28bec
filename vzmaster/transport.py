"""Byte pipes to a vzslave session: paramiko, the system's OpenSSH, or a local child.

A transport moves bytes and nothing else; framing lives in vzslave.protocol and
calls in vzmaster.client. Every transport drains the remote stderr (sshd forwards a
subsystem's stderr, and an undrained channel stalls) into the ``vzmaster.remote``
logger and keeps its last lines for error messages.
"""

from __future__ import annotations

import abc
import collections
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
from typing import IO, Callable, Sequence

from vzslave.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    HostKeyError,
    TransportError,
)
from vzslave.protocol import READ_SIZE

remote_log = logging.getLogger("vzmaster.remote")

SUBSYSTEM = "vzslave"


class Transport(abc.ABC):
    """A duplex byte stream to one vzslave session."""

    name = "transport"
    frame_size = 256 * 1024  # the size of data frames that suits this transport

    def __init__(self) -> None:
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._drainer: threading.Thread | None = None  # reads the remote stderr

    @abc.abstractmethod
    def send(self, data: bytes) -> None:
        """Send all of ``data``; ConnectionLostError if the link is gone."""

    @abc.abstractmethod
    def recv(self, timeout: float | None = None) -> bytes:
        """Up to READ_SIZE bytes; b"" at EOF; TimeoutError if none came in ``timeout``."""

    @abc.abstractmethod
    def readable(self) -> bool:
        """True if ``recv`` would return at once (data or EOF waiting)."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the session and release everything; safe to call twice."""

    def failure(self) -> TransportError:
        """Why the remote end closed before answering, in words the user can act on."""
        tail = self.stderr_tail()
        return ConnectionLostError("{} closed the connection{}".format(
            self.name, ": " + tail if tail else ""))

    def stderr_tail(self, lines: int = 5) -> str:
        """The last lines the remote side wrote to stderr (waits briefly for them)."""
        self._wait_for_stderr(2)  # stdout's EOF can overtake stderr's last lines
        return " | ".join(list(self._stderr_tail)[-lines:])

    def _drain_in_background(self, target: Callable[..., None], *args: object) -> None:
        self._drainer = threading.Thread(target=target, args=args, name="vz-stderr",
                                         daemon=True)
        self._drainer.start()

    def _wait_for_stderr(self, timeout: float) -> None:
        if self._drainer is not None:
            self._drainer.join(timeout)

    def _stderr_line(self, line: str) -> None:
        line = line.rstrip()
        if line:
            self._stderr_tail.append(line)
            remote_log.warning("%s: %s", self.name, line)


class ProcessTransport(Transport):
    """A child process whose stdin/stdout carry the protocol (``vzslave`` or ``ssh``)."""

    def __init__(self, argv: Sequence[str], name: str) -> None:
        super().__init__()
        self.name = name
        self.argv = list(argv)
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise ConnectError("cannot run {}: {}".format(self.argv[0], exc)) from exc
        assert self._proc.stdin and self._proc.stdout and self._proc.stderr
        self._in = self._proc.stdin.fileno()
        self._out = self._proc.stdout.fileno()
        self._drain_in_background(self._drain, self._proc.stderr)

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._stderr_line(raw.decode("utf-8", "replace"))

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._in, view):]
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise ConnectionLostError("{}: the link broke while sending ({})".format(
                self.name, exc)) from exc

    def readable(self) -> bool:
        return bool(select.select([self._out], [], [], 0)[0])

    def recv(self, timeout: float | None = None) -> bytes:
        if timeout is not None:
            ready, _, _ = select.select([self._out], [], [], timeout)
            if not ready:
                raise TimeoutError()
        try:
            return os.read(self._out, READ_SIZE)
        except OSError as exc:
            raise ConnectionLostError("{}: read failed ({})".format(self.name, exc)) from exc

    def close(self) -> None:
        proc = self._proc
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()  # EOF: vzslave finishes its session and exits
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._wait_for_stderr(5)
        for stream in (proc.stdout, proc.stderr):
            if stream and not stream.closed:
                stream.close()

    def exit_status(self) -> int | None:
        """The child's exit status once it has ended."""
        return self._proc.poll()


class LocalTransport(ProcessTransport):
    """A ``vzslave`` child on this machine: for tests and same-host use."""

    def __init__(self, root: str | None = None, python: str | None = None,
                 command: Sequence[str] | None = None) -> None:
        argv = list(command) if command else [python or sys.executable, "-m", "vzslave"]
        if root:
            argv += ["--root", root]
        super().__init__(argv, "local vzslave")


def _control_dir() -> str | None:
    """A private directory for ControlMaster sockets, or None if none can be made."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.cache")
    path = os.path.join(base, "vz", "ssh")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    # Unix socket paths are capped near 108 bytes; %C expands to 40 characters.
    return path if len(path) + 42 < 100 else None


class OpenSSHTransport(ProcessTransport):
    """The system's ``ssh -s HOST vzslave``, sharing one connection via ControlMaster.

    It honours ~/.ssh/config, the agent and known_hosts by being ssh itself. Host
    keys: StrictHostKeyChecking=yes unless ``trust_new_host`` (then accept-new, which
    still refuses a changed key). BatchMode: it never prompts.
    """

    def __init__(self, host: str, *, user: str | None = None, port: int | None = None,
                 key_filename: str | None = None, known_hosts: str | None = None,
                 trust_new_host: bool = False, connect_timeout: float = 15.0,
                 control_master: bool = True, ssh_program: Sequence[str] = ("ssh",),
                 options: Sequence[str] = ()) -> None:
        argv = list(ssh_program)
        if shutil.which(argv[0]) is None:
            raise ConnectError("OpenSSH client {!r} not found; install openssh-client or "
                               "use via='paramiko'".format(argv[0]))
        opts = {
            "BatchMode": "yes",
            "StrictHostKeyChecking": "accept-new" if trust_new_host else "yes",
            "ConnectTimeout": str(max(1, int(connect_timeout))),
            "Ciphers": "aes128-gcm@openssh.com,aes256-gcm@openssh.com,"
                       "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr",
            "ServerAliveInterval": "15",
        }
        if known_hosts:
            opts["UserKnownHostsFile"] = known_hosts
        control = _control_dir() if control_master else None
        if control:
            opts.update(ControlMaster="auto", ControlPersist="60",
                        ControlPath=os.path.join(control, "%C"))
        for key, value in opts.items():
            argv += ["-o", "{}={}".format(key, value)]
        argv += list(options)
        if user:
            argv += ["-l", user]
        if port:
            argv += ["-p", str(port)]
        if key_filename:
            argv += ["-i", key_filename]
        argv += ["-s", "--", host, SUBSYSTEM]
        self.host = host
        super().__init__(argv, "ssh {}".format(host))

    def failure(self) -> TransportError:
        tail = self.stderr_tail()
        if "Host key verification failed" in tail or "REMOTE HOST IDENTIFICATION" in tail:
            return HostKeyError(
                "{}: the host key of {} is not trusted ({}). Check its fingerprint, then "
                "add it with `ssh-keyscan {} >> ~/.ssh/known_hosts`, or pass "
                "trust_new_host=True (vzmaster --trust-new-host) to accept it on first "
                "use".format(self.name, self.host, tail, self.host))
        if "Permission denied" in tail:
            return AuthenticationError("{}: login refused ({})".format(self.name, tail))
        if "subsystem request failed" in tail:
            return ConnectError(
                "{}: the node has no '{}' SSH subsystem; install vz there and add "
                "sshd_config.d/vzslave.conf to its sshd".format(self.name, SUBSYSTEM))
        if self.exit_status() == 255 or "ssh:" in tail:
            return ConnectError("{}: {}".format(self.name, tail or "ssh failed"))
        return super().failure()
