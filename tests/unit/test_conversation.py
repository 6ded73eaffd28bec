"""The call rules as a table: every transition allowed and refused, for both roles."""

import os
import re

import pytest

from vzslave.conversation import (
    ANSWERED,
    BROKEN,
    CALL,
    CLIENT,
    CLIENT_STREAM,
    CLOSED,
    ENDS_SESSION,
    HELLO,
    IDLE,
    NODE,
    NODE_STREAM,
    TABLE,
    Conversation,
    ViolationError,
)
from vzslave.errors import ErrorCode
from vzslave.protocol import Cancel, Data, End, Error, Reply, Request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The call in flight is 2 (when there is one); 7 names no call.
FRAMES = {
    "request": Request(3, "image.list", {}),
    "request image.put": Request(3, "image.put", {}),
    "request container.logs": Request(3, "container.logs", {}),
    "data": Data(2, b"x"),
    "data 7": Data(7, b"x"),
    "end": End(2, {}),
    "end 7": End(7, {}),
    "cancel": Cancel(2),
    "cancel 7": Cancel(7),
    "reply": Reply(2, {}),
    "reply 7": Reply(7, {}),
    "error": Error(2, ErrorCode.NO_SUCH_IMAGE, "NO_SUCH_IMAGE", "no", {}),
    "error 7": Error(7, ErrorCode.NO_SUCH_IMAGE, "NO_SUCH_IMAGE", "no", {}),
    "error nil": Error(None, ErrorCode.BAD_FRAME, "BAD_FRAME", "garbage", {}),
    "error VERSION_MISMATCH": Error(2, ErrorCode.VERSION_MISMATCH, "VERSION_MISMATCH", "", {}),
    "error FRAME_TOO_LARGE 7": Error(7, ErrorCode.FRAME_TOO_LARGE, "FRAME_TOO_LARGE", "", {}),
}

HELLO_DONE = [(CLIENT, Request(1, "hello", {})), (NODE, Reply(1, {}))]
# How each state is reached: (sender, frame), in order.
PATHS = {
    HELLO: [],
    IDLE: HELLO_DONE,
    CALL: HELLO_DONE + [(CLIENT, Request(2, "image.list", {}))],
    CLIENT_STREAM: HELLO_DONE + [(CLIENT, Request(2, "image.put", {}))],
    ANSWERED: HELLO_DONE + [(CLIENT, Request(2, "image.put", {})),
                            (NODE, Error(2, 16, "BAD_NAME", "bad", {}))],
    NODE_STREAM: HELLO_DONE + [(CLIENT, Request(2, "container.logs", {}))],
    BROKEN: HELLO_DONE + [(CLIENT, Data(9, b""))],
    CLOSED: HELLO_DONE + [(NODE, Error(None, ErrorCode.BAD_FRAME, "BAD_FRAME", "", {}))],
}

FATAL = ("error nil", "error VERSION_MISMATCH", "error FRAME_TOO_LARGE 7")
IGNORED = object()  # the state stays, and the receiver is told to ignore the frame

# docs/protocol.md, "Calls", in the words of the protocol: (state, sender, frame) -> next.
# Everything else is refused.
ALLOWED = {}
for _state in (HELLO, IDLE):
    ALLOWED.update({
        (_state, CLIENT, "request"): CALL,
        (_state, CLIENT, "request image.put"): CLIENT_STREAM,
        (_state, CLIENT, "request container.logs"): NODE_STREAM,
        (_state, CLIENT, "cancel"): IGNORED,  # no call in flight: it names none
        (_state, CLIENT, "cancel 7"): IGNORED,
    })
ALLOWED.update({
    (CALL, NODE, "reply"): IDLE,
    (CALL, NODE, "error"): IDLE,
    (CLIENT_STREAM, CLIENT, "data"): CLIENT_STREAM,
    (CLIENT_STREAM, CLIENT, "end"): CALL,
    (CLIENT_STREAM, CLIENT, "cancel"): CALL,
    (CLIENT_STREAM, CLIENT, "cancel 7"): IGNORED,
    (CLIENT_STREAM, NODE, "reply"): ANSWERED,
    (CLIENT_STREAM, NODE, "error"): ANSWERED,
    (ANSWERED, CLIENT, "data"): ANSWERED,
    (ANSWERED, CLIENT, "end"): IDLE,
    (ANSWERED, CLIENT, "cancel"): IDLE,
    (ANSWERED, CLIENT, "cancel 7"): IGNORED,
    (NODE_STREAM, NODE, "data"): NODE_STREAM,
    (NODE_STREAM, NODE, "reply"): IDLE,
    (NODE_STREAM, NODE, "error"): IDLE,
    (NODE_STREAM, CLIENT, "cancel"): NODE_STREAM,
    (NODE_STREAM, CLIENT, "cancel 7"): IGNORED,
})
for _state in PATHS:
    if _state != CLOSED:
        ALLOWED.update({(_state, NODE, frame): CLOSED for frame in FATAL})

CASES = [(role, state, sender, frame) for role in (CLIENT, NODE) for state in PATHS
         for sender in (CLIENT, NODE) for frame in FRAMES]


def step(conversation, sender, frame):
    """Show ``frame`` from ``sender`` to the conversation: sent by it, or received."""
    if sender == conversation.role:
        conversation.send(frame)
        return True
    return conversation.receive(frame)


def conversation_in(role, state):
    conversation = Conversation(role)
    for sender, frame in PATHS[state]:
        try:
            step(conversation, sender, frame)
        except ViolationError:
            assert state == BROKEN
    assert conversation.state == state
    return conversation


@pytest.mark.parametrize("role,state,sender,frame", CASES)
def test_every_frame_in_every_state_is_allowed_or_refused_as_the_protocol_says(
        role, state, sender, frame):
    conversation = conversation_in(role, state)
    expected = ALLOWED.get((state, sender, frame))
    if expected is None:
        with pytest.raises(ViolationError):
            step(conversation, sender, FRAMES[frame])
        assert conversation.state == (CLOSED if state == CLOSED else BROKEN)
    elif expected is IGNORED:
        acts = step(conversation, sender, FRAMES[frame])
        assert conversation.state == state
        assert acts is (sender == role)  # a receiver is told to ignore it
    else:
        assert step(conversation, sender, FRAMES[frame]) is True
        assert conversation.state == expected


def test_the_table_lists_every_state():
    assert set(TABLE) == set(PATHS)


def test_the_session_ending_codes_are_those_the_reference_names():
    assert set(ENDS_SESSION) == {ErrorCode.BAD_FRAME, ErrorCode.FRAME_TOO_LARGE,
                                 ErrorCode.VERSION_MISMATCH}


@pytest.mark.parametrize("role", [CLIENT, NODE])
def test_a_request_before_hello_must_be_refused_and_leaves_the_session_before_hello(role):
    conversation = Conversation(role)
    step(conversation, CLIENT, Request(1, "image.list", {}))
    assert conversation.hello_required
    step(conversation, NODE, Error(1, ErrorCode.HELLO_REQUIRED, "HELLO_REQUIRED", "", {}))
    assert (conversation.state, conversation.hello_required) == (HELLO, False)


@pytest.mark.parametrize("role", [CLIENT, NODE])
def test_a_hello_before_hello_is_not_refused(role):
    conversation = Conversation(role)
    step(conversation, CLIENT, Request(1, "hello", {}))
    assert not conversation.hello_required


@pytest.mark.parametrize("role", [CLIENT, NODE])
def test_a_hello_answered_with_an_error_leaves_the_session_before_hello(role):
    conversation = Conversation(role)
    step(conversation, CLIENT, Request(1, "hello", {}))
    step(conversation, NODE, Error(1, ErrorCode.BAD_REQUEST, "BAD_REQUEST", "", {}))
    assert (conversation.state, conversation.negotiated) == (HELLO, False)


@pytest.mark.parametrize("role", [CLIENT, NODE])
def test_a_hello_answered_with_a_reply_makes_the_session_idle(role):
    conversation = conversation_in(role, IDLE)
    assert conversation.negotiated
    step(conversation, CLIENT, Request(2, "image.list", {}))
    assert not conversation.hello_required


@pytest.mark.parametrize("role", [CLIENT, NODE])
def test_a_hello_refused_for_its_version_ends_the_session(role):
    conversation = Conversation(role)
    step(conversation, CLIENT, Request(1, "hello", {}))
    step(conversation, NODE, Error(1, ErrorCode.VERSION_MISMATCH, "VERSION_MISMATCH", "", {}))
    assert conversation.state == CLOSED


@pytest.mark.parametrize("role", [CLIENT, NODE])
def test_a_stream_refused_before_hello_still_ends_with_the_clients_end(role):
    conversation = Conversation(role)
    step(conversation, CLIENT, Request(1, "image.put", {}))
    step(conversation, NODE, Error(1, ErrorCode.HELLO_REQUIRED, "HELLO_REQUIRED", "", {}))
    assert conversation.state == ANSWERED
    step(conversation, CLIENT, End(1, {}))
    assert conversation.state == HELLO


def test_the_call_in_flight_is_known_until_its_final_frame():
    conversation = conversation_in(CLIENT, IDLE)
    conversation.send(Request(5, "image.list", {}))
    assert (conversation.call_id, conversation.op) == (5, "image.list")
    conversation.receive(Reply(5, {}))
    assert (conversation.call_id, conversation.op) == (None, None)


def test_a_cancel_naming_the_call_just_answered_is_ignored():
    conversation = conversation_in(NODE, NODE_STREAM)
    conversation.send(Reply(2, {}))
    assert conversation.receive(Cancel(2)) is False
    assert conversation.state == IDLE


@pytest.mark.parametrize("state,between", [(HELLO, True), (IDLE, True), (CALL, False),
                                           (CLIENT_STREAM, False), (ANSWERED, False),
                                           (NODE_STREAM, False), (BROKEN, False),
                                           (CLOSED, False)])
def test_the_ends_are_in_step_only_between_calls(state, between):
    assert conversation_in(CLIENT, state).between_calls is between


def test_a_misplaced_frame_is_refused_naming_its_call_and_the_state():
    conversation = conversation_in(NODE, CLIENT_STREAM)
    with pytest.raises(ViolationError, match="request frame for call 3 came from the client "
                                             "while call 2 is streaming to the node") as caught:
        conversation.receive(Request(3, "image.list", {}))
    assert caught.value.call_id == 3


@pytest.mark.parametrize("frame", [Reply(2, {}), Error(2, 99, "INTERNAL", "", {})])
def test_a_frame_going_the_wrong_way_is_refused_without_an_id(frame):
    conversation = conversation_in(NODE, IDLE)
    with pytest.raises(ViolationError, match="go from the node to the client") as caught:
        conversation.receive(frame)
    assert caught.value.call_id is None


@pytest.mark.parametrize("frame", [Request(9, "hello", {}), End(2, {}), Cancel(2)])
def test_a_client_frame_from_the_node_is_refused(frame):
    conversation = conversation_in(CLIENT, NODE_STREAM)
    with pytest.raises(ViolationError, match="go from the client to the node"):
        conversation.receive(frame)


def test_after_a_violation_the_node_may_only_end_the_session():
    conversation = conversation_in(NODE, BROKEN)
    with pytest.raises(ViolationError):
        conversation.send(Reply(9, {}))
    conversation.send(Error(9, ErrorCode.BAD_FRAME, "BAD_FRAME", "", {}))
    assert conversation.state == CLOSED


def test_the_node_may_answer_any_op_with_a_stream_of_its_shape():
    conversation = Conversation(NODE, lambda op: NODE_STREAM)
    conversation.receive(Request(1, "hello", {}))
    conversation.send(Data(1, b"x"))
    assert conversation.state == NODE_STREAM


def test_a_shape_that_is_not_a_calls_is_refused():
    conversation = Conversation(NODE, lambda op: IDLE)
    with pytest.raises(ValueError, match="shape"):
        conversation.receive(Request(1, "hello", {}))


def test_a_role_must_be_client_or_node():
    with pytest.raises(ValueError, match="role"):
        Conversation("server")


def documented_transitions():
    """(state, sender, event, next) for each row of the table in docs/protocol.md."""
    with open(os.path.join(ROOT, "docs", "protocol.md")) as doc:
        text = doc.read()
    calls = text[text.index("## Calls"):text.index("## hello")]
    rows = re.findall(r"^\| ([a-z ,]+) \| (client|node) \| `([a-z ,]+)` \| ([a-z ]+) \|$",
                      calls, re.M)
    return {(state, sender, event, following) for states, sender, event, following in rows
            for state in states.split(", ")}


def test_the_protocol_reference_lists_exactly_the_transitions_of_the_table():
    coded = {(state, sender, event, following) for state, moves in TABLE.items()
             for (sender, event), following in moves.items()}
    coded |= {(state, NODE, "fatal error", CLOSED) for state in TABLE if state != CLOSED}
    assert documented_transitions() == coded
