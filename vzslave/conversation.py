"""The call rules of the vz protocol as one table that both ends drive, sans I/O.

A ``Conversation(role)`` follows one session from one end. Its driver shows it each
frame it sends (``send``) and each frame it receives (``receive``); ``TABLE`` says
whether that frame may come now and which state follows. A frame the table does not
allow raises ``ViolationError``, which each end maps: the node answers BAD_FRAME and
closes, the client raises ProtocolError and closes. That is h11's model:
vzslave/protocol.py frames the bytes, this module holds the rules, and
docs/protocol.md ("Calls") says the same in words; keep the three in step.

Standard library only (runs on the node, Python 3.6+).
"""

from typing import Callable, Dict, Optional, Tuple

from vzslave import errors
from vzslave.errors import ErrorCode
from vzslave.protocol import Cancel, End, Error, Frame, Reply, Request

CLIENT = "client"
NODE = "node"

# The states of a session, as both ends see it.
HELLO = "hello"  # no hello answered yet: a request for any other op gets HELLO_REQUIRED
IDLE = "idle"  # between calls
CALL = "call"  # a request in flight; its final frame is still to come
CLIENT_STREAM = "client stream"  # the client streams the call's data, up to end or cancel
ANSWERED = "answered"  # the node answered before the client's stream ended
NODE_STREAM = "node stream"  # the node streams the call's data, up to its final frame
BROKEN = "broken"  # a frame broke the rules: the node may only say so, then close
CLOSED = "closed"  # the session is over

# The events: what a frame is for the call in flight (Conversation.event). A request's
# event is its op's shape (STREAMS); "other id" names another call, or any while idle.
# Per state: (sender, event) -> the next state; anything not listed is a violation.
# IDLE stands for HELLO until a hello has been answered with a reply.
TABLE: Dict[str, Dict[Tuple[str, str], str]] = {
    HELLO: {
        (CLIENT, "request"): CALL,
        (CLIENT, "request, client streams"): CLIENT_STREAM,
        (CLIENT, "request, node streams"): NODE_STREAM,
        (CLIENT, "cancel, other id"): HELLO,  # too late for the call it meant: ignored
    },
    IDLE: {
        (CLIENT, "request"): CALL,
        (CLIENT, "request, client streams"): CLIENT_STREAM,
        (CLIENT, "request, node streams"): NODE_STREAM,
        (CLIENT, "cancel, other id"): IDLE,  # ignored
    },
    CALL: {
        (NODE, "reply"): IDLE,
        (NODE, "error"): IDLE,
    },
    CLIENT_STREAM: {
        (CLIENT, "data"): CLIENT_STREAM,
        (CLIENT, "end"): CALL,
        (CLIENT, "cancel"): CALL,  # the client abandons its stream
        (CLIENT, "cancel, other id"): CLIENT_STREAM,  # ignored
        (NODE, "reply"): ANSWERED,  # refused early: the client still ends its stream
        (NODE, "error"): ANSWERED,
    },
    ANSWERED: {
        (CLIENT, "data"): ANSWERED,  # dropped by the node
        (CLIENT, "end"): IDLE,
        (CLIENT, "cancel"): IDLE,
        (CLIENT, "cancel, other id"): ANSWERED,  # ignored
    },
    NODE_STREAM: {
        (NODE, "data"): NODE_STREAM,
        (CLIENT, "cancel"): NODE_STREAM,  # the node stops, then sends the final frame
        (CLIENT, "cancel, other id"): NODE_STREAM,  # ignored
        (NODE, "reply"): IDLE,
        (NODE, "error"): IDLE,
    },
    BROKEN: {},
    CLOSED: {},
}
# In every state but CLOSED the node may end the session with a fatal error: one with
# id nil, or with one of these codes, whatever call it names.
ENDS_SESSION = (ErrorCode.BAD_FRAME, ErrorCode.FRAME_TOO_LARGE, ErrorCode.VERSION_MISMATCH)
FATAL_ERROR = (NODE, "fatal error")

# The shapes of calls: the ops that stream, and which way; any other op is a plain call.
STREAMS = {"image.put": CLIENT_STREAM, "container.logs": NODE_STREAM,
           "app.deploy": NODE_STREAM, "app.rollback": NODE_STREAM}
HELLO_OP = "hello"

# Who sends each type of frame (data goes either way).
_DIRECTIONS: Dict[type, str] = {Request: CLIENT, End: CLIENT, Cancel: CLIENT,
                                Reply: NODE, Error: NODE}

_REQUEST_EVENTS = {CALL: "request", CLIENT_STREAM: "request, client streams",
                   NODE_STREAM: "request, node streams"}
_WHERE = {
    HELLO: "outside any call", IDLE: "outside any call",
    CALL: "while call {} waits for its final frame",
    CLIENT_STREAM: "while call {} is streaming to the node",
    ANSWERED: "while call {} is still streaming to the node",
    NODE_STREAM: "while call {} is streaming to the client",
    BROKEN: "after the rules were broken", CLOSED: "after the session ended",
}


class ViolationError(errors.Error):
    """A frame the call rules do not allow now; the session must end.

    ``call_id`` is the id the node's BAD_FRAME error carries: the call the frame
    named, or None for a frame going the wrong way (its id is not to be trusted).
    """

    def __init__(self, message: str, call_id: Optional[int]) -> None:
        super().__init__(message)
        self.call_id = call_id


def plain_unless_listed(op: str) -> str:
    """The shape of a call to ``op`` as the protocol lists it (STREAMS)."""
    return STREAMS.get(op, CALL)


class Conversation:
    """One session's call rules, seen from ``role`` (CLIENT or NODE).

    ``shapes`` says what a request for an op opens: CALL, CLIENT_STREAM or
    NODE_STREAM (by default the protocol's STREAMS).
    """

    def __init__(self, role: str, shapes: Callable[[str], str] = plain_unless_listed) -> None:
        if role not in (CLIENT, NODE):
            raise ValueError("role must be {!r} or {!r}, not {!r}".format(CLIENT, NODE, role))
        self.role = role
        self._peer = NODE if role == CLIENT else CLIENT
        self._shapes = shapes
        self.state = HELLO
        self.call_id: Optional[int] = None  # the call in flight
        self.op: Optional[str] = None  # its op
        self.negotiated = False  # a hello was answered with a reply
        self.hello_required = False  # the call in flight must get HELLO_REQUIRED

    @property
    def between_calls(self) -> bool:
        """True when no call is in flight and the session goes on: the ends are in step."""
        return self.state in (HELLO, IDLE)

    def send(self, frame: Frame) -> None:
        """Check a frame this end is about to send; ViolationError if it may not."""
        self._step(self.role, frame)

    def receive(self, frame: Frame) -> bool:
        """Check a frame from the peer; False if the rules say to ignore it (a cancel
        naming no call in flight). ViolationError if it may not come now."""
        return self._step(self._peer, frame)

    def event(self, sender: str, frame: Frame) -> str:
        """What ``frame`` from ``sender`` is for the call in flight: TABLE's event."""
        if isinstance(frame, Error) and sender == NODE and (
                frame.id is None or frame.code in ENDS_SESSION):
            return FATAL_ERROR[1]
        if isinstance(frame, Request):
            shape = self._shapes(frame.op)
            if shape not in _REQUEST_EVENTS:
                raise ValueError("the shape of {!r} is {!r}, not a call's".format(frame.op, shape))
            return _REQUEST_EVENTS[shape]
        kind = type(frame).__name__.lower()
        return kind if frame.id == self.call_id else kind + ", other id"

    def _step(self, sender: str, frame: Frame) -> bool:
        event = self.event(sender, frame)
        allowed = TABLE[self.state]
        if (sender, event) == FATAL_ERROR and self.state != CLOSED:
            following = CLOSED
        elif (sender, event) in allowed:
            following = allowed[sender, event]
        else:
            raise self._violation(sender, frame)
        if isinstance(frame, Request):
            self.call_id, self.op = frame.id, frame.op
            self.hello_required = not self.negotiated and frame.op != HELLO_OP
        elif isinstance(frame, Reply) and frame.id == self.call_id and self.op == HELLO_OP:
            self.negotiated = True
        if following == IDLE:
            following = IDLE if self.negotiated else HELLO
        if following in (HELLO, IDLE, CLOSED):
            self.call_id = self.op = None
            self.hello_required = False
        self.state = following
        return event != "cancel, other id"

    def _violation(self, sender: str, frame: Frame) -> ViolationError:
        kind = type(frame).__name__.lower()
        where = _WHERE[self.state].format(self.call_id)
        if self.state != CLOSED:
            self.state = BROKEN
        way = _DIRECTIONS.get(type(frame), sender)
        if way != sender:
            return ViolationError("{} frames go from the {} to the {}; one came from the {} "
                                  "{}".format(kind, way, sender, sender, where), None)
        return ViolationError("a {} frame for call {} came from the {} {}".format(
            kind, frame.id, sender, where), frame.id)
