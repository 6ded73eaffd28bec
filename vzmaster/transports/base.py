"""What every transport is (``Transport``) and what opens one (``SSHOptions``).

A transport moves bytes and nothing else; framing lives in vzslave.protocol and
calls in vzmaster.client. Every transport drains the remote stderr (sshd forwards a
subsystem's stderr, and an undrained channel stalls) into the ``vzmaster.remote``
logger and keeps its last lines for error messages.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import logging
import threading
from typing import Any, Callable, Sequence

from vzmaster.errors import ConnectionLostError, TransportError

remote_log = logging.getLogger("vzmaster.remote")

SUBSYSTEM = "vzslave"
VIAS = ("paramiko", "openssh")


@dataclasses.dataclass(frozen=True)
class SSHOptions:
    """How to reach one node: the one record ``Client``, the CLI and vz.yml each build.

    Checked when made: a record that names an impossible combination never exists.
    """

    host: str  # a hostname or ~/.ssh/config alias; "local[:ROOT]": a vzslave child here
    user: str | None = None  # default: ~/.ssh/config's, then the local user
    port: int | None = None  # default: ~/.ssh/config's, then 22
    key_filename: str | Sequence[str] | None = None  # private key file(s)
    password: str | None = dataclasses.field(default=None, repr=False)  # paramiko only
    known_hosts: str | None = None  # default: ~/.ssh/config's, then ~/.ssh/known_hosts
    trust_new_host: bool = False  # accept and record an unknown key (never a changed one)
    via: str = "paramiko"  # or "openssh": the system's ssh client
    connect_timeout: float = 15.0  # seconds
    ssh_config: str | None = "~/.ssh/config"  # paramiko: where aliases are looked up
    ssh_program: Sequence[str] | None = None  # openssh: replaces "ssh" (e.g. in a netns)
    sock: Any = None  # paramiko: a connected socket to talk over (tests, jump hosts)

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise ValueError("via must be 'paramiko' or 'openssh', not {!r}".format(self.via))
        if self.via == "openssh" and (self.password is not None or self.sock is not None):
            raise ValueError("password and sock need via='paramiko'; OpenSSH runs in "
                             "BatchMode with its own connection")

    @property
    def key_files(self) -> tuple[str, ...]:
        """The private key files given, in order."""
        if self.key_filename is None:
            return ()
        if isinstance(self.key_filename, str):
            return (self.key_filename,)
        return tuple(self.key_filename)

    @property
    def local_root(self) -> str | None:
        """For "local[:ROOT]": ROOT, or "" for the default root; None for a remote host."""
        name, _, root = self.host.partition(":")
        return root if name == "local" else None


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
