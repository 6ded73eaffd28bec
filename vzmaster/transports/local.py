"""Transports over a child process of this machine: its stdin and stdout carry the protocol.

``LocalTransport`` runs vzslave itself (tests, same-host use); the OpenSSH transport
runs ``ssh`` the same way (vzmaster/transports/openssh.py).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from typing import IO, Sequence

from vzmaster.errors import ConnectError, ConnectionLostError
from vzmaster.transports.base import Transport
from vzslave.protocol import READ_SIZE

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
