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

import collections
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import msgpack

from vzslave.errors import BadFrameError, FrameTooLargeError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

MAX_DATA = 1024 * 1024  # largest payload of one data frame
MAX_FRAME = MAX_DATA + 64 * 1024  # largest encoded frame of any type
MAX_STR = 64 * 1024  # largest string field (names, messages, hex digests, ...)
MAX_ITEMS = 100000  # largest array or map, by element count
MAX_DEPTH = 32  # deepest nesting of arrays and maps
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
    """The msgpack bytes of ``frame``: a map of ``type``, ``id``, then its own keys."""
    if isinstance(frame, Data):
        # The hot path of uploads: build the map directly, no generic dispatch.
        packed: bytes = msgpack.packb({"type": "data", "id": frame.id, "data": frame.data})
        return packed
    body: Dict[str, Any] = {"type": _TYPE_NAMES.get(type(frame)), "id": frame.id}
    if isinstance(frame, Request):
        body.update(op=frame.op, args=frame.args)
    elif isinstance(frame, End):
        body["trailer"] = frame.trailer
    elif isinstance(frame, Reply):
        body["result"] = frame.result
    elif isinstance(frame, Error):
        body.update(code=frame.code, name=frame.name, message=frame.message,
                    details=frame.details)
    elif not isinstance(frame, Cancel):
        raise TypeError("not a frame: {!r}".format(frame))
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


# What a lead byte says, per msgpack's spec: (kind, width of its length field, value).
# For fixed-size objects ``value`` is the whole object's size; for the fix* forms of
# str, array and map it is their length, and for the others it comes from the field.
_SCALAR, _STR, _BIN, _ARRAY, _MAP, _EXT, _NEVER = range(7)
_KIND_WORDS = {_SCALAR: "a scalar", _STR: "a string", _BIN: "binary", _ARRAY: "an array",
               _MAP: "a map"}


def _lead_table() -> List[Tuple[int, int, int]]:
    table = [(_NEVER, 0, 0)] * 256
    for lead in range(0x00, 0x80):
        table[lead] = (_SCALAR, 0, 1)  # positive fixint
    for lead in range(0xe0, 0x100):
        table[lead] = (_SCALAR, 0, 1)  # negative fixint
    for lead in range(0x80, 0x90):
        table[lead] = (_MAP, 0, lead & 0x0f)
    for lead in range(0x90, 0xa0):
        table[lead] = (_ARRAY, 0, lead & 0x0f)
    for lead in range(0xa0, 0xc0):
        table[lead] = (_STR, 0, lead & 0x1f)
    for lead, size in ((0xc0, 1), (0xc2, 1), (0xc3, 1), (0xca, 5), (0xcb, 9), (0xcc, 2),
                       (0xcd, 3), (0xce, 5), (0xcf, 9), (0xd0, 2), (0xd1, 3), (0xd2, 5),
                       (0xd3, 9)):
        table[lead] = (_SCALAR, 0, size)
    for lead, kind, width in ((0xc4, _BIN, 1), (0xc5, _BIN, 2), (0xc6, _BIN, 4),
                              (0xd9, _STR, 1), (0xda, _STR, 2), (0xdb, _STR, 4),
                              (0xdc, _ARRAY, 2), (0xdd, _ARRAY, 4),
                              (0xde, _MAP, 2), (0xdf, _MAP, 4)):
        table[lead] = (kind, width, 0)
    for lead in (0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8):
        table[lead] = (_EXT, 0, 0)
    return table  # 0xc1 stays _NEVER: msgpack never uses it


_LEADS = _lead_table()
# A run of whole one-byte objects: fixints, nil, false, true; the empty string too
# (but not [] or {}, which would nest).
_ONE_BYTE_RUN = re.compile(b"[\\x00-\\x7f\\xa0\\xc0\\xc2\\xc3\\xe0-\\xff]*")
_RUN_MIN = 8  # items left in an array or map before a run is looked for
_LIMITS = {_STR: MAX_STR, _BIN: MAX_DATA, _ARRAY: MAX_ITEMS, _MAP: MAX_ITEMS}


class Decoder:
    """Turns a byte stream into frames. ``feed(b"")`` means the peer closed.

    Strategy: msgpack checks its length limits only once an object is complete, so
    a frame could make us buffer up to MAX_FRAME bytes before it is refused. Instead
    an incremental scanner walks the msgpack headers as they arrive and skips
    payloads by their declared length: a frame that is not a map, holds an
    extension type, nests too deep, declares a string, binary, array or map past
    its limit, or whose declared sizes add up past MAX_FRAME is refused as soon as
    the header that makes it impossible has arrived. Only a complete frame is
    handed to msgpack. After the first bad frame the decoder stays broken: the
    only safe course is to report and close.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()  # from the start of the frame being scanned on
        self._pos = 0  # where the next header starts; past the buffer while skipping
        self._stack: List[int] = []  # items still to come in each open array or map
        self._outstanding = 0  # their sum: each takes at least one more byte
        self._ready: "collections.deque[Frame]" = collections.deque()
        self._eof = False
        self._failure: Optional[Exception] = None

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
            if self._buffer:
                self._failure = BadFrameError("the stream ended inside a frame")
            return
        # Scan in slices of at most MAX_FRAME, so the buffer never holds more than
        # one partial frame plus one slice, however much one feed brings.
        view = memoryview(data)
        for start in range(0, len(view), MAX_FRAME):
            self._buffer += view[start:start + MAX_FRAME]
            try:
                self._scan()
            except (BadFrameError, FrameTooLargeError) as exc:
                self._failure = exc
                return

    def next_frame(self) -> Optional[Frame]:
        """The next complete frame, or None if more bytes are needed (or at EOF).

        Raises BadFrameError or FrameTooLargeError, for good, after the last good
        frame: a byte stream has no resynchronisation point.
        """
        if self._ready:
            return self._ready.popleft()
        if self._failure is not None:
            raise self._failure
        return None

    def _scan(self) -> None:
        """Walk the headers that have arrived; decode each frame that completes."""
        buf = self._buffer
        end = len(buf)
        pos = self._pos
        stack = self._stack
        taken = 0  # bytes of complete frames at the front of the buffer
        try:
            while pos <= end:
                if not stack and pos > taken:  # the frame that started at taken is whole
                    self._decode(buf, taken, pos)
                    taken = pos
                if pos == end:
                    break
                kind, width, value = _LEADS[buf[pos]]
                if value == 1 and kind == _SCALAR and stack and stack[-1] >= _RUN_MIN:
                    # Strategy: one-byte items (small ints, nil, booleans, "") are
                    # skipped a run at a time, so an array of a million of them costs
                    # one regex call, not a million steps of this loop.
                    match = _ONE_BYTE_RUN.match(buf, pos, min(end, pos + stack[-1]))
                    run = match.end() - pos if match else 0  # always a match: "*"
                    pos += run
                    stack[-1] -= run
                    self._outstanding -= run
                    while stack and not stack[-1]:
                        stack.pop()
                    continue
                header = 1 + width
                if width:
                    if pos + header > end:
                        break  # the rest of the header is still to come
                    value = int.from_bytes(buf[pos + 1:pos + header], "big")
                if kind == _SCALAR:
                    header, value = value, 0
                elif kind >= _EXT:
                    raise BadFrameError("{} in a frame (byte 0x{:02x} at offset {}); the "
                                        "protocol has none".format(
                                            "an extension type" if kind == _EXT
                                            else "a byte msgpack never uses",
                                            buf[pos], pos - taken))
                elif value > _LIMITS[kind]:
                    raise FrameTooLargeError("{} of {} {} in a frame; the limit is {}".format(
                        _KIND_WORDS[kind], value,
                        "items" if kind >= _ARRAY else "bytes", _LIMITS[kind]))
                if stack:
                    stack[-1] -= 1
                    self._outstanding -= 1
                elif kind != _MAP:
                    raise BadFrameError("a frame must be a map, got {}".format(
                        _KIND_WORDS.get(kind, "?")))
                if kind >= _ARRAY:
                    if len(stack) >= MAX_DEPTH:
                        raise BadFrameError("a frame nests arrays and maps deeper than "
                                            "{}".format(MAX_DEPTH))
                    items = 2 * value if kind == _MAP else value
                    stack.append(items)
                    self._outstanding += items
                    pos += header
                else:
                    pos += header + value
                if pos + self._outstanding - taken > MAX_FRAME:
                    raise FrameTooLargeError(
                        "a frame of at least {} bytes; the limit is {}".format(
                            pos + self._outstanding - taken, MAX_FRAME))
                while stack and not stack[-1]:
                    stack.pop()
        finally:
            if taken:
                del buf[:taken]
                pos -= taken
            self._pos = pos

    def _decode(self, buf: bytearray, start: int, end: int) -> None:
        with memoryview(buf) as whole, whole[start:end] as piece:
            try:
                obj = msgpack.unpackb(piece, raw=False, strict_map_key=True,
                                      max_bin_len=MAX_DATA, max_str_len=MAX_STR,
                                      max_array_len=MAX_ITEMS, max_map_len=MAX_ITEMS,
                                      max_ext_len=0)
            except Exception as exc:  # UTF-8, map keys, ...: the headers were fine
                raise _classify(exc) from None
        self._ready.append(parse_frame(obj))


def _classify(exc: Exception) -> Exception:
    message = str(exc)
    if "exceeds max" in message:  # msgpack's wording for its length limits
        return FrameTooLargeError("frame refused: {}".format(message))
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
