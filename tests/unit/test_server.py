"""The request loop: ordering rules, the exception-to-wire point, and bad input."""

import hashlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import decode_frames, sample_image
from vzslave.errors import ErrorCode
from vzslave.handlers import OPS, Node, Op
from vzslave.protocol import Cancel, Data, End, Error, Reply, Request, encode
from vzslave.server import error_frame, serve

HELLO = encode(Request(1, "hello", {"versions": [1]}))


@pytest.fixture
def node(layout, limits):
    return Node(layout, limits)


def session(node, *chunks: bytes):
    """Run one session over ``chunks`` of input; return the frames the node sent."""
    pending = list(chunks)
    output = bytearray()
    serve(lambda: pending.pop(0) if pending else b"", output.extend, node)
    return decode_frames(bytes(output))


def put_frames(call_id, data, sha256=None, name="app.tar.gz"):
    return b"".join([
        encode(Request(call_id, "image.put", {"name": name, "size": len(data)})),
        encode(Data(call_id, data)),
        encode(End(call_id, {"sha256": sha256 or hashlib.sha256(data).hexdigest()})),
    ])


def test_hello_reports_version_facts_and_ops(node):
    [reply] = session(node, HELLO)
    assert reply.result["version"] == 1
    assert reply.result["facts"]["root"] == node.layout.root
    assert "image.put" in reply.result["ops"]


def test_a_request_before_hello_is_refused_and_the_session_goes_on(node):
    frames = session(node, encode(Request(1, "image.list", {})), HELLO)
    assert frames[0].code == ErrorCode.HELLO_REQUIRED
    assert isinstance(frames[1], Reply)


def test_no_common_version_is_refused_and_closes(node):
    frames = session(node, encode(Request(1, "hello", {"versions": [99]})), HELLO)
    assert [f.code for f in frames] == [ErrorCode.VERSION_MISMATCH]
    assert frames[0].details == {"versions": [1]}


def test_an_unknown_op_before_hello_needs_hello(node):
    """When an unknown op came before hello, it got UNSUPPORTED_OP, though the
    reference says every op but hello gets HELLO_REQUIRED there."""
    frames = session(node, encode(Request(1, "image.frobnicate", {})), HELLO)
    assert frames[0].code == ErrorCode.HELLO_REQUIRED
    assert isinstance(frames[1], Reply)


@pytest.mark.parametrize("frame", [Reply(5, {}), Error(5, 99, "INTERNAL", "x", {})],
                         ids=["reply", "error"])
def test_a_reply_or_error_from_the_client_is_a_bad_frame_without_id(node, frame):
    """When a client sent a reply or error frame, the node's BAD_FRAME carried its id,
    though the reference says a frame of the wrong type gets nil."""
    frames = session(node, HELLO, encode(frame), encode(Request(3, "image.list", {})))
    assert (frames[1].id, frames[1].code) == (None, ErrorCode.BAD_FRAME)
    assert len(frames) == 2


def test_an_unknown_op_is_unsupported_and_the_session_goes_on(node):
    frames = session(node, HELLO, encode(Request(2, "image.frobnicate", {})),
                     encode(Request(3, "image.list", {})))
    assert frames[1].code == ErrorCode.UNSUPPORTED_OP
    assert frames[2] == Reply(3, {"images": []})


@pytest.mark.parametrize("args,words", [
    ({}, "needs the argument 'name'"),
    ({"name": 5}, "must be a string"),
    ({"name": "a", "extra": 1}, "does not take extra"),
])
def test_bad_arguments_are_named(node, args, words):
    frames = session(node, HELLO, encode(Request(2, "image.remove", args)))
    assert frames[1].code == ErrorCode.BAD_REQUEST
    assert words in frames[1].message


def test_replies_echo_the_request_id(node):
    frames = session(node, HELLO, encode(Request(12345, "bundle.list", {})))
    assert frames[1].id == 12345


def test_an_upload_streams_in_and_is_published(node):
    data = sample_image()
    frames = session(node, HELLO, put_frames(2, data))
    assert frames[1].result["image"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert [i.name for i in node.images.list()] == ["app.tar.gz"]


def test_a_refused_upload_is_answered_at_once_and_its_stream_drained(node):
    frames = session(node, HELLO, put_frames(2, b"xyz", name="../evil"),
                     encode(Request(3, "image.list", {})))
    assert frames[1].code == ErrorCode.BAD_NAME
    assert frames[2] == Reply(3, {"images": []})


def test_a_wrong_checksum_publishes_nothing(node):
    frames = session(node, HELLO, put_frames(2, b"xyz", sha256="0" * 64))
    assert frames[1].code == ErrorCode.CHECKSUM_MISMATCH
    assert node.images.list() == []


def test_a_cancelled_upload_says_what_it_kept_and_the_session_goes_on(node):
    data = b"0123456789" * 30
    frames = session(node, HELLO,
                     encode(Request(2, "image.put", {"name": "a.tar", "size": len(data)})),
                     encode(Data(2, data[:100])), encode(Cancel(2)),
                     encode(Request(3, "image.probe", {"name": "a.tar"})))
    kept = {"size": 100, "sha256": hashlib.sha256(data[:100]).hexdigest()}
    assert frames[1] == Reply(2, {"image": None, "partial": kept})
    assert frames[2] == Reply(3, {"image": None, "partial": kept})


def test_an_upload_cancelled_before_any_byte_keeps_nothing(node):
    frames = session(node, HELLO, encode(Request(2, "image.put", {"name": "a", "size": 5})),
                     encode(Cancel(2)), encode(Request(3, "image.probe", {"name": "a"})))
    assert frames[1] == Reply(2, {"image": None, "partial": None})
    assert frames[2] == Reply(3, {"image": None, "partial": None})
    assert os.listdir(node.layout.partial) == []


def test_a_cancel_ends_the_stream_of_a_refused_upload(node):
    frames = session(node, HELLO, encode(Request(2, "image.put", {"name": "../x", "size": 5})),
                     encode(Data(2, b"abc")), encode(Cancel(2)),
                     encode(Request(3, "image.list", {})))
    assert frames[1].code == ErrorCode.BAD_NAME
    assert frames[2] == Reply(3, {"images": []})


def test_a_cancel_naming_another_call_during_an_upload_is_ignored(node):
    data = b"abc"
    frames = session(node, HELLO,
                     encode(Request(2, "image.put", {"name": "a", "size": 3})),
                     encode(Cancel(1)), encode(Data(2, data)), encode(Cancel(7)),
                     encode(End(2, {"sha256": hashlib.sha256(data).hexdigest()})))
    assert frames[1].result["image"]["size"] == 3


def stream_op(node, call, args):
    """A node stream of data frames until the client cancels (a test op)."""
    sent = 0
    while not call.cancelled(0):
        call.send(b"x")
        sent += 1
        if sent == 5:
            break
    return {"sent": sent}


def test_a_cancel_naming_another_call_during_a_node_stream_is_ignored(node, monkeypatch):
    """When a cancel named another id while the node streamed, the session was
    closed as a violation, though the reference says it is ignored."""
    monkeypatch.setitem(OPS, "test.stream", Op(stream_op, {}, {}))
    frames = session(node, HELLO, encode(Request(2, "test.stream", {})),
                     encode(Cancel(1)), encode(Cancel(9)), encode(Cancel(2)),
                     encode(Request(3, "image.list", {})))
    final = [f for f in frames if not isinstance(f, Data)]
    assert final[1].id == 2 and isinstance(final[1], Reply)
    assert final[1].result["sent"] < 5  # it was its own cancel that stopped it
    assert final[2] == Reply(3, {"images": []})


def test_a_data_frame_outside_a_call_is_a_violation_that_closes(node):
    frames = session(node, HELLO, encode(Data(9, b"x")), encode(Request(3, "image.list", {})))
    assert frames[1].code == ErrorCode.BAD_FRAME
    assert len(frames) == 2


def test_a_new_request_inside_a_stream_is_a_violation_that_closes(node):
    frames = session(node, HELLO,
                     encode(Request(2, "image.put", {"name": "a", "size": 3})),
                     encode(Request(3, "image.list", {})))
    assert frames[1].code == ErrorCode.BAD_FRAME
    assert "streaming" in frames[1].message


def test_garbage_gets_an_error_without_id_then_a_close(node):
    frames = session(node, HELLO, b"\xc1\xc1\xc1", encode(Request(3, "image.list", {})))
    assert frames[1] == Error(None, ErrorCode.BAD_FRAME, "BAD_FRAME", frames[1].message, {})
    assert len(frames) == 2


def test_eof_in_the_middle_of_an_upload_keeps_the_prefix_and_lists_nothing(node):
    data = sample_image() * 50
    request = encode(Request(2, "image.put", {"name": "big", "size": len(data)}))
    session(node, HELLO, request, encode(Data(2, data[:1000])))
    image, partial = node.images.probe("big")
    assert image is None and partial.size == 1000
    assert node.images.list() == []


def test_an_internal_error_becomes_internal_with_the_exception_named():
    frame = error_frame(5, ZeroDivisionError("division by zero"))
    assert (frame.id, frame.code) == (5, ErrorCode.INTERNAL)
    assert "ZeroDivisionError" in frame.message


def test_an_os_error_maps_to_its_code():
    frame = error_frame(5, OSError(28, "No space left on device", "/var/lib/vz/x"))
    assert frame.code == ErrorCode.DISK_FULL


def test_undecodable_names_in_messages_still_encode():
    frame = error_frame(1, OSError(2, "missing", "bad\udcffname"))
    assert encode(frame)  # msgpack refuses lone surrogates; the wire point escapes them


VALID_SESSION = [
    HELLO,
    encode(Request(2, "image.list", {})),
    put_frames(3, b"0123456789" * 30),
    encode(Request(4, "bundle.unpack", {"image": "app.tar.gz", "name": "b"})),
    encode(Request(5, "image.remove", {"name": "app.tar.gz"})),
]


@st.composite
def mutated_sessions(draw):
    """A valid session's bytes with flips, cuts, insertions and splices."""
    data = bytearray(b"".join(VALID_SESSION))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    return [bytes(data[a:b]) for a, b in zip([0] + cuts, cuts + [len(data)])]


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutated_sessions())
def test_mutated_sessions_get_replies_or_errors_never_a_crash(node, chunks):
    frames = session(node, *chunks)
    for frame in frames:
        assert isinstance(frame, (Reply, Error))
        if isinstance(frame, Error):
            assert frame.code != ErrorCode.INTERNAL, frame.message
    assert all(not name.startswith(".") for name in
               [i.name for i in node.images.list()])


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_bytes_after_hello_get_an_error_or_a_clean_close(node, chunks):
    frames = session(node, HELLO, *chunks)
    assert isinstance(frames[0], Reply)
    for frame in frames[1:]:
        assert isinstance(frame, (Reply, Error))
        if isinstance(frame, Error):
            assert frame.code != ErrorCode.INTERNAL, frame.message


def test_a_frame_of_the_nodes_own_that_breaks_the_rules_ends_the_session_with_internal(
        node, monkeypatch):
    """When a handler streams to the client during a client stream (a bug of the
    node), the client is told INTERNAL without an id, and the session ends."""
    def streams_back(node, call, args):
        call.send(b"x")
        return {}
    monkeypatch.setitem(OPS, "image.put", OPS["image.put"]._replace(handler=streams_back))
    frames = session(node, HELLO, encode(Request(2, "image.put", {"name": "a", "size": 3})),
                     encode(Request(3, "image.list", {})))
    assert (frames[1].id, frames[1].code) == (None, ErrorCode.INTERNAL)
    assert len(frames) == 2


def test_a_plain_ops_handler_may_stream_to_the_client(node, monkeypatch):
    """The node holds its client to the listed client streams; what its own handlers
    send back is theirs to decide (the client checks it against the op's shape)."""
    def send_three(node, call, args):
        for _ in range(3):
            call.send(b"x")
        return {}
    monkeypatch.setitem(OPS, "image.list", Op(send_three, {}, {}))
    frames = session(node, HELLO, encode(Request(2, "image.list", {})))
    assert frames[1:] == [Data(2, b"x")] * 3 + [Reply(2, {})]
