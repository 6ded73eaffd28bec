"""InProcessTransport: a vzslave session in a thread of this process, over a socketpair.

What httpx's MockTransport is to httpx: ``Client(transport=InProcessTransport())``
talks to the real ``vzslave.server.Session`` serving a real ``Node`` over a state
root (a temporary one by default), with no child process and no SSH, so unit tests
can drive every path of the client. A test may pass its own ``session`` to play a
node that misbehaves.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
import threading
from typing import Callable

from vzmaster.transports.base import Transport
from vzslave.config import Layout, Limits
from vzmaster.errors import ConnectionLostError
from vzslave.handlers import Node
from vzslave.protocol import READ_SIZE
from vzslave.server import Read, Wait, Write, serve

NodeSession = Callable[[Read, Write, Wait], None]  # what runs on the node's end


class InProcessTransport(Transport):
    """A duplex byte stream to a vzslave session run in a thread of this process."""

    name = "in-process vzslave"

    def __init__(self, root: str | None = None, *, limits: Limits | None = None,
                 session: NodeSession | None = None) -> None:
        """Serve the state root ``root`` (default: a temporary one, removed at close),
        or run ``session(read, write, wait)`` on the node's end instead."""
        super().__init__()
        self._temporary = None
        self.node: Node | None = None
        if session is None:
            if root is None:
                root = self._temporary = tempfile.mkdtemp(prefix="vz-node-")
            layout = Layout(os.path.abspath(root))
            layout.make_dirs()
            node = self.node = Node(layout, limits or Limits(reserve_bytes=0))

            def serve_node(read: Read, write: Write, wait: Wait) -> None:
                serve(read, write, node, wait)

            session = serve_node
        self.failure_on_node: BaseException | None = None  # what the session raised
        self._sock, self._peer = socket.socketpair()
        self._thread = threading.Thread(target=self._run, args=(session,),
                                        name="vz-in-process", daemon=True)
        self._thread.start()

    def _run(self, session: NodeSession) -> None:
        peer = self._peer

        def wait(timeout: float) -> bool:
            return bool(select.select([peer], [], [], timeout)[0])

        try:
            session(lambda: peer.recv(READ_SIZE), peer.sendall, wait)
        except BaseException as exc:  # kept for the test to see, not lost in a thread
            self.failure_on_node = exc
        finally:
            self.drop()  # the session is over: the client reads EOF

    def drop(self) -> None:
        """Cut the link both ways, as a dropped connection does; the node's end is
        told by its next read or write."""
        try:
            self._peer.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already cut

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ConnectionLostError("{}: the link broke while sending ({})".format(
                self.name, exc)) from exc

    def recv(self, timeout: float | None = None) -> bytes:
        if timeout is not None and not select.select([self._sock], [], [], timeout)[0]:
            raise TimeoutError()
        try:
            return self._sock.recv(READ_SIZE)
        except OSError as exc:
            raise ConnectionLostError("{}: read failed ({})".format(self.name, exc)) from exc

    def readable(self) -> bool:
        return bool(select.select([self._sock], [], [], 0)[0])

    def close(self) -> None:
        """EOF to the node, whose session then ends; wait for it; release everything."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._thread.join(10)
        if self._thread.is_alive():
            self.drop()  # a session that ignores EOF: its next read or write fails
            self._thread.join(10)
        self._sock.close()
        self._peer.close()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None
