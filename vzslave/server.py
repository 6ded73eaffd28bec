"""The request loop of vzslave, and the one place where exceptions become wire errors.

``serve(read, write, node)`` runs one session over any byte pipe (stdin/stdout under
sshd, a paramiko channel in tests); ``main()`` binds it to fds 0 and 1. Requests are
served one at a time, in order; the call rules are vzslave/conversation.py's table
(docs/protocol.md, "Calls"), which the session drives.
"""

import fcntl
import logging
import os
import resource
import select
import sys
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional

from vzslave import __version__, fs
from vzslave.command import argument_parser, log_to_file
from vzslave.config import Layout, Limits
from vzslave.conversation import (
    ANSWERED,
    CLIENT_STREAM,
    CLOSED,
    NODE,
    NODE_STREAM,
    STREAMS,
    Conversation,
    ViolationError,
)
from vzslave.errors import (
    BadFrameError,
    FrameTooLargeError,
    HelloRequiredError,
    InternalError,
    UnsupportedOpError,
    VzError,
    code_name,
    error_from_os,
)
from vzslave.handlers import OPS, Call, Node, check_args
from vzslave.protocol import (
    READ_SIZE,
    Data,
    Decoder,
    End,
    Error,
    Frame,
    Reply,
    Request,
    encode,
)

log = logging.getLogger("vzslave")

_LOG_LIMIT = 1024 * 1024  # past this the log becomes vzslave.log.1 (one generation)
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ from Python 3.10 on; Linux 2.6.35+

Read = Callable[[], bytes]
Write = Callable[[bytes], None]
Wait = Callable[[float], bool]  # is there input within this many seconds?


class _Disconnect(Exception):
    """The session is over: the peer closed, or broke the protocol and was told so."""


def error_frame(call_id: Optional[int], exc: BaseException) -> Error:
    """The wire form of any exception a call raised (the only such conversion)."""
    if isinstance(exc, VzError):
        err = exc
    elif isinstance(exc, OSError):
        err = error_from_os(exc, "the node could not complete the request")
    elif isinstance(exc, NotImplementedError):
        err = UnsupportedOpError(str(exc) or "not implemented on this node")
    else:
        log.error("internal error in call %s:\n%s", call_id, "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)))
        err = InternalError("internal error in vzslave ({}: {}); the node's vzslave log "
                            "has the traceback".format(type(exc).__name__, exc))
    code = err.code_number
    return Error(call_id, code, code_name(code), _printable(err.message),
                 _printable(err.details))


def _printable(value: Any) -> Any:
    # Member names decode with surrogateescape; msgpack needs real UTF-8.
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


def _node_shape(op: str) -> str:
    # The node holds its client to the ops that take a client stream. Any other call
    # may stream to the client, as its handler decides: a plain call is a node stream
    # of no data frames. (The client holds the node to the op's listed shape.)
    shape = STREAMS.get(op)
    return CLIENT_STREAM if shape == CLIENT_STREAM else NODE_STREAM


class Session:
    """One client's conversation with the node."""

    def __init__(self, read: Read, write: Write, node: Node,
                 wait: Optional[Wait] = None) -> None:
        self._read = read
        self._write = write
        self._wait = wait or (lambda timeout: True)
        self._node = node
        self._decoder = Decoder()
        self._conversation = Conversation(NODE, _node_shape)

    def run(self) -> None:
        """Serve requests until the client closes or breaks the protocol."""
        try:
            while True:
                request = self._next()  # between calls the table lets only requests act
                if request is None:
                    return
                assert isinstance(request, Request)
                self._handle(request)
        except _Disconnect:
            return

    def _handle(self, request: Request) -> None:
        started = time.monotonic()
        fs.set_activity(request.op)  # named in the locks this call takes
        call = Call(request.id, self._receive, self._send_data, self._cancelled)
        outcome = "ok"
        try:
            if self._conversation.hello_required:
                raise HelloRequiredError("send hello before {}".format(request.op))
            op = OPS.get(request.op)
            if op is None:
                raise UnsupportedOpError("this node does not know the op {!r} (vzslave {})"
                                         .format(request.op, __version__),
                                         {"op": request.op})
            args = check_args(request.op, op, request.args)
            self._send(Reply(request.id, op.handler(self._node, call, args)))
        except _Disconnect:
            raise
        except Exception as exc:
            frame = error_frame(request.id, exc)
            outcome = frame.name
            self._send(frame)
        finally:
            log.info("call %s %s: %s in %.3fs", request.id, request.op, outcome,
                     time.monotonic() - started)
        while self._conversation.state == ANSWERED:
            # The call was answered while the client was still streaming to it: its
            # data is dropped until its End (or Cancel), after which the session goes on.
            if self._next() is None:
                raise _Disconnect()
        if self._conversation.state == CLOSED:  # VERSION_MISMATCH
            raise _Disconnect()

    def _receive(self, call: Call) -> Iterator[bytes]:
        while self._conversation.state == CLIENT_STREAM:
            frame = self._next()
            if frame is None:
                raise _Disconnect()  # the client vanished mid-stream; handlers clean up
            if isinstance(frame, Data):
                yield frame.data
            elif isinstance(frame, End):
                call.trailer = frame.trailer
                call.ended = True
            else:  # its Cancel: the client abandons its stream, which ends here
                call.ended = call.aborted = True

    def _send_data(self, call: Call, data: bytes) -> None:
        self._send(Data(call.id, data))

    def _cancelled(self, call: Call, timeout: float) -> bool:
        # While the node streams, the frames that act are the call's own Cancels.
        if self._take_buffered():
            return True
        if not self._decoder.eof and self._wait(timeout):
            self._read_more()
            if self._take_buffered():
                return True
        if self._decoder.eof:
            raise _Disconnect()
        return False

    def _take_buffered(self) -> bool:
        """Take the complete frames already read; True if one of them acts. No I/O."""
        acted = False
        while True:
            frame = self._buffered()
            if frame is None:
                return acted
            acted = self._check(frame) or acted

    def _next(self) -> Optional[Frame]:
        """The next frame that acts, as the table says; None at EOF."""
        while True:
            frame = self._buffered()
            if frame is None:
                if self._decoder.eof:
                    return None
                self._read_more()
            elif self._check(frame):
                return frame

    def _read_more(self) -> None:
        try:
            data = self._read()
        except OSError as exc:  # the pipe itself failed: as good as closed
            raise _Disconnect() from exc
        self._decoder.feed(data)

    def _buffered(self) -> Optional[Frame]:
        """A complete frame already read, if there is one; no I/O."""
        try:
            return self._decoder.next_frame()
        except (BadFrameError, FrameTooLargeError) as exc:
            self._send(error_frame(None, exc))
            raise _Disconnect() from exc

    def _check(self, frame: Frame) -> bool:
        """Pass a client's frame through the table: False if it is to be ignored."""
        try:
            return self._conversation.receive(frame)
        except ViolationError as exc:
            self._send(error_frame(exc.call_id, BadFrameError(
                "protocol violation: {}".format(exc))))
            raise _Disconnect() from exc

    def _send(self, frame: Frame) -> None:
        try:
            self._conversation.send(frame)
        except ViolationError as exc:  # a bug of this node's: say so (INTERNAL), end
            self._send(error_frame(None, exc))
            raise _Disconnect() from exc
        try:
            self._write(encode(frame))
        except OSError as exc:  # the client is gone; nobody is left to tell
            raise _Disconnect() from exc


def serve(read: Read, write: Write, node: Node, wait: Optional[Wait] = None) -> None:
    """Run one session; ``read()`` returns b"" at EOF, ``write`` sends all it is given,
    ``wait(timeout)`` says whether input comes within ``timeout`` seconds (without it,
    a streaming call blocks on ``read`` to notice a cancel)."""
    Session(read, write, node, wait).run()


def _protocol_fds() -> Dict[str, int]:
    """Take fds 0 and 1 for the protocol; stray prints and children get stderr."""
    fds = {"in": os.dup(0), "out": os.dup(1)}
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    for fd in fds.values():
        os.set_inheritable(fd, False)
    try:
        # A 1 MiB pipe lets each read take what sshd wrote meanwhile: fewer wakeups
        # and syscalls per uploaded MB. Not a pipe (a socket, a tty): no matter.
        fcntl.fcntl(fds["in"], _F_SETPIPE_SZ, 1024 * 1024)
    except OSError:
        pass
    return fds


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``vzslave`` command."""
    parser = argument_parser("vzslave", "vz node agent. Run by sshd as 'Subsystem vzslave "
                                        "/usr/bin/vzslave'; speaks msgpack on stdin/stdout.")
    parser.add_argument("--version", action="version", version="vzslave " + __version__)
    args = parser.parse_args(argv)
    fds = _protocol_fds()

    def read() -> bytes:
        return os.read(fds["in"], READ_SIZE)

    def wait(timeout: float) -> bool:
        return bool(select.select([fds["in"]], [], [], timeout)[0])

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fds["out"], view):]

    layout = Layout(os.path.abspath(args.root))
    try:
        layout.make_dirs()
    except OSError as exc:
        # No session without a state root, but the client still learns why.
        write(encode(error_frame(None, error_from_os(
            exc, "vzslave cannot create its state root {}".format(layout.root)))))
        sys.exit(1)
    log_to_file(log, os.path.join(layout.log_dir, "vzslave.log"), "vzslave", _LOG_LIMIT)
    log.info("session start: vzslave %s, uid %d, root %s, client %s", __version__,
             os.geteuid(), layout.root, os.environ.get("SSH_CLIENT", "local"))
    serve(read, write, Node(layout, Limits()), wait)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    log.info("session end: cpu %.2fs user %.2fs system, max rss %d KiB",
             usage.ru_utime, usage.ru_stime, usage.ru_maxrss)
