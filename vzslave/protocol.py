"""The vz wire protocol, sans I/O: frames, their encoding, and a streaming decoder.

Shared by both ends: vzslave serves with it and vzmaster imports it. Nothing here
reads or writes a file descriptor; callers feed bytes in and take frames out, in the
manner of h11. docs/protocol.md is the reference for third parties; keep them in step.

Every frame is one msgpack map with a ``type`` and an ``id``:

    request  {type, id, op, args}         client -> node, starts call ``id``
    data     {type, id, data}             either way, a chunk of a call's stream
    end      {type, id, trailer}          client -> node, closes the client's stream
    cancel   {type, id}                   client -> node, stop a node -> client stream
    reply    {type, id, result}           node -> client, the call succeeded (final)
    error    {type, id, code, name, message, details}   node -> client (final)

Standard library and msgpack only (runs on the node, Python 3.6+).
"""

from typing import Any, Dict, List, NamedTuple, Optional, Union

import msgpack

from vzslave.errors import BadFrameError, FrameTooLargeError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

MAX_DATA = 1024 * 1024  # largest payload of one data frame
MAX_FRAME = MAX_DATA + 64 * 1024  # largest encoded frame of any type
MAX_STR = 64 * 1024  # largest string field (names, messages, hex digests, ...)
MAX_ITEMS = 100000  # largest array or map, by element count
READ_SIZE = 256 * 1024  # what the I/O loops ask their fd or channel for


class Request(NamedTuple):
    """Starts call ``id``: run ``op`` with ``args``."""

    id: int
    op: str
    args: Dict[str, Any]


class Data(NamedTuple):
    """One chunk of the byte stream that belongs to call ``id``."""

    id: int
    data: bytes


class End(NamedTuple):
    """The client's stream for call ``id`` is complete; ``trailer`` adds late fields."""

    id: int
    trailer: Dict[str, Any]


class Cancel(NamedTuple):
    """The client wants the node's stream for call ``id`` to stop."""

    id: int


class Reply(NamedTuple):
    """Call ``id`` succeeded with ``result``."""

    id: int
    result: Dict[str, Any]


class Error(NamedTuple):
    """Call ``id`` failed; ``id`` is None when no call could be identified."""

    id: Optional[int]
    code: int
    name: str
    message: str
    details: Dict[str, Any]


Frame = Union[Request, Data, End, Cancel, Reply, Error]


def encode(frame: Frame) -> bytes:
    """The msgpack bytes of ``frame``."""
    if isinstance(frame, Data):
        # The hot path of uploads: build the map directly, no generic dispatch.
        packed: bytes = msgpack.packb({"type": "data", "id": frame.id, "data": frame.data})
        return packed
    if isinstance(frame, Request):
        body: Dict[str, Any] = {"op": frame.op, "args": frame.args}
    elif isinstance(frame, End):
        body = {"trailer": frame.trailer}
    elif isinstance(frame, Cancel):
        body = {}
    elif isinstance(frame, Reply):
        body = {"result": frame.result}
    elif isinstance(frame, Error):
        body = {
            "code": frame.code,
            "name": frame.name,
            "message": frame.message,
            "details": frame.details,
        }
    else:
        raise TypeError("not a frame: {!r}".format(frame))
    body["type"] = _TYPE_NAMES[type(frame)]
    body["id"] = frame.id
    encoded: bytes = msgpack.packb(body)
    return encoded


_TYPE_NAMES = {
    Request: "request",
    Data: "data",
    End: "end",
    Cancel: "cancel",
    Reply: "reply",
    Error: "error",
}


class Decoder:
    """Turns a byte stream into frames. ``feed(b"")`` means the peer closed.

    Strategy: a frame is refused as soon as more than MAX_FRAME bytes of it have
    arrived, whatever its shape, so no frame is ever buffered past that; msgpack's
    own length limits refuse an oversized string, binary, array or map once seen.
    After the first bad frame the decoder stays broken: the only safe course is to
    report and close.
    """

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=True,
            max_buffer_size=2 * MAX_FRAME,
            max_bin_len=MAX_DATA,
            max_str_len=MAX_STR,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_ITEMS,
            max_ext_len=0,
        )
        self._ready: List[Frame] = []
        self._eof = False
        self._failure: Optional[Exception] = None
        self._fed = 0  # bytes fed so far
        self._boundary = 0  # stream offset just after the last complete frame

    @property
    def eof(self) -> bool:
        """True once the peer closed and every complete frame has been taken."""
        return self._eof and not self._ready

    def feed(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` marks the end of the stream.

        Never raises: a bad frame is reported by ``next_frame`` once the good frames
        before it have been taken.
        """
        if self._failure is not None:
            return
        if not data:
            self._eof = True
            if self._fed != self._boundary:
                self._failure = BadFrameError("the stream ended inside a frame")
            return
        # Feed in slices of at most MAX_FRAME and drain between them, so the
        # unpacker never holds more than one partial frame plus one slice.
        view = memoryview(data)
        for start in range(0, len(view), MAX_FRAME):
            piece = view[start:start + MAX_FRAME]
            try:
                self._unpacker.feed(piece)
            except msgpack.BufferFull:
                self._failure = FrameTooLargeError(
                    "a frame exceeded {} bytes".format(MAX_FRAME))
                return
            self._fed += len(piece)
            if not self._drain():
                return
            if self._fed - self._boundary > MAX_FRAME:
                self._failure = FrameTooLargeError(
                    "a frame grew past {} bytes; refused".format(MAX_FRAME))
                return

    def next_frame(self) -> Optional[Frame]:
        """The next complete frame, or None if more bytes are needed (or at EOF).

        Raises BadFrameError or FrameTooLargeError, for good, after the last good
        frame: a byte stream has no resynchronisation point.
        """
        if self._ready:
            return self._ready.pop(0)
        if self._failure is not None:
            raise self._failure
        return None

    def _drain(self) -> bool:
        while True:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                return True
            except Exception as exc:  # FormatError, StackError, limits, UTF-8, ...
                self._failure = _classify(exc)
                return False
            # tell() is exact only right after a complete object.
            self._boundary = self._unpacker.tell()
            try:
                self._ready.append(parse_frame(obj))
            except BadFrameError as exc:
                self._failure = exc
                return False


def _classify(exc: Exception) -> Exception:
    message = str(exc)
    if "exceeds max" in message:  # msgpack's wording for its length limits
        return FrameTooLargeError("frame refused before buffering: {}".format(message))
    return BadFrameError("not msgpack: {}".format(message or repr(exc)))


def parse_frame(obj: Any) -> Frame:
    """Check the shape of one unpacked msgpack object and build its frame.

    Raises BadFrameError naming what is wrong. Unknown extra keys are ignored, so
    later protocol versions may add fields to frames.
    """
    if not isinstance(obj, dict):
        raise BadFrameError("a frame must be a map, got {}".format(type(obj).__name__))
    kind = obj.get("type")
    if kind == "data":
        data = obj.get("data")
        if not isinstance(data, bytes):
            raise BadFrameError("data frame: 'data' must be binary")
        return Data(_id(obj), data)
    if kind == "request":
        op = obj.get("op")
        if not isinstance(op, str) or not op:
            raise BadFrameError("request frame: 'op' must be a non-empty string")
        return Request(_id(obj), op, _map(obj, "args"))
    if kind == "end":
        return End(_id(obj), _map(obj, "trailer"))
    if kind == "cancel":
        return Cancel(_id(obj))
    if kind == "reply":
        return Reply(_id(obj), _map(obj, "result"))
    if kind == "error":
        code = obj.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise BadFrameError("error frame: 'code' must be an integer")
        raw_id = obj.get("id")
        return Error(
            None if raw_id is None else _id(obj),
            code,
            _str(obj, "name"),
            _str(obj, "message"),
            _map(obj, "details"),
        )
    raise BadFrameError("unknown frame type {!r}".format(kind))


def _id(obj: Dict[str, Any]) -> int:
    value = obj.get("id")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise BadFrameError("'id' must be an integer in [0, 2**63)")
    return value


def _map(obj: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise BadFrameError("{!r} must be a map".format(key))
    return value


def _str(obj: Dict[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise BadFrameError("{!r} must be a string".format(key))
    return value
