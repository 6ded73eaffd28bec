"""vzmaster.Client over an in-process vzslave: every error path of every method.

The node is the real Session on a real Node in a thread (InProcessTransport); a test
makes it answer what it needs by replacing an op's handler in OPS, or plays a node
that breaks the protocol by rewriting the frames it sends. No child process.
"""

import hashlib
import json
import os

import pytest

from tests.conftest import random_bytes, sample_image
from vzmaster import (
    Client,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    VzError,
)
from vzmaster.digests import DigestCache
from vzmaster.transports.inprocess import InProcessTransport
from vzslave.config import Layout, Limits
from vzslave.errors import (
    ChecksumMismatchError,
    DiskFullError,
    ErrorCode,
    NoSuchBundleError,
    NoSuchContainerError,
    NoSuchImageError,
    error_from_code,
)
from vzslave.handlers import OPS, Node
from vzslave.protocol import Data, Decoder, Error, Reply, Request, encode
from vzslave.server import serve

ENDS_SESSION = (ErrorCode.BAD_FRAME, ErrorCode.FRAME_TOO_LARGE, ErrorCode.VERSION_MISMATCH)
BIG = 4 << 20  # sixteen data frames of the in-process transport's 256 KiB


@pytest.fixture
def digests(tmp_path):
    return DigestCache(str(tmp_path / "digests.json"))


@pytest.fixture
def old_file(image_file):
    """``image_file``, but written long enough ago for the digest cache to keep it."""
    def write(*args):
        path = image_file(*args)
        os.utime(path, (0, 1e9))
        return path
    return write


@pytest.fixture
def transport(tmp_path):
    opened = InProcessTransport(str(tmp_path / "node"))
    yield opened
    opened.close()
    assert opened.failure_on_node is None


@pytest.fixture
def client(transport, digests):
    with Client(transport=transport, digests=digests) as opened:
        yield opened


@pytest.fixture
def served(monkeypatch):
    """The ops the node serves from now on, in order (their handlers still run)."""
    seen = []
    for name, op in list(OPS.items()):
        def handler(node, call, args, _name=name, _real=op.handler):
            seen.append((_name, args))
            return _real(node, call, args)
        monkeypatch.setitem(OPS, name, op._replace(handler=handler))
    return seen


@pytest.fixture
def answer(monkeypatch):
    """``answer(op, handler)``: the node runs ``handler(node, call, args)`` for ``op``."""
    def replace(op, handler):
        monkeypatch.setitem(OPS, op, OPS[op]._replace(handler=handler))
    return replace


def refuse_with(code):
    """A handler that answers with the error of ``code`` at once."""
    def handler(node, call, args):
        raise error_from_code(code, "refused with {}".format(int(code)), {"n": int(code)})
    return handler


# Each public method: the op it calls, and a call of it (given the client, an image file).
METHODS = {
    "hello": ("hello", lambda c, path: c.hello()),
    "images": ("image.list", lambda c, path: c.images()),
    "probe_image": ("image.probe", lambda c, path: c.probe_image("a.tar")),
    "upload_image": ("image.put", lambda c, path: c.upload_image(path)),
    "remove_image": ("image.remove", lambda c, path: c.remove_image("a.tar")),
    "unpack": ("bundle.unpack", lambda c, path: c.unpack("a.tar", "b")),
    "bundles": ("bundle.list", lambda c, path: c.bundles()),
    "remove_bundle": ("bundle.remove", lambda c, path: c.remove_bundle("b")),
    "start": ("container.start", lambda c, path: c.start("b")),
    "stop": ("container.stop", lambda c, path: c.stop("b")),
    "restart": ("container.restart", lambda c, path: c.restart("b")),
    "status of one": ("container.status", lambda c, path: c.status("b")),
    "status of all": ("container.status", lambda c, path: c.status()),
    "logs": ("container.logs", lambda c, path: list(c.logs("b"))),
}


def other_call(client, op):
    """A call of another op than ``op``, to see that the session goes on."""
    return client.bundles() if op != "bundle.list" else client.images()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_error_the_node_answers_raises_its_class_and_the_session_goes_on(
        client, answer, image_file, method):
    op, call = METHODS[method]
    path = image_file(random_bytes(BIG))
    for code in ErrorCode:
        if code in ENDS_SESSION:
            continue
        answer(op, refuse_with(code))
        with pytest.raises(VzError) as caught:
            call(client, path)
        assert type(caught.value) is type(error_from_code(code, ""))
        assert (caught.value.message, caught.value.details) == (
            "refused with {}".format(int(code)), {"n": int(code)})
        assert other_call(client, op) == []


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("code", ENDS_SESSION, ids=lambda code: code.name)
def test_an_error_that_ends_the_session_is_raised_and_closes_the_client(
        client, answer, image_file, method, code):
    op, call = METHODS[method]
    answer(op, refuse_with(code))
    expected = type(error_from_code(code, ""))
    if method == "upload_image":  # the node may close before the client's stream ends
        expected = (expected, ConnectionLostError)
    with pytest.raises(expected):
        call(client, image_file())
    with pytest.raises(ConnectionLostError, match="closed"):
        client.images()


def test_an_error_code_this_client_does_not_know_is_a_plain_vz_error(client, answer):
    def unknown(node, call, args):
        raise VzError("a newer node's refusal", {"code": 77})
    answer("image.list", unknown)
    with pytest.raises(VzError, match="newer node") as caught:
        client.images()
    assert type(caught.value) is VzError and caught.value.code_number == 77
    assert client.bundles() == []


# -- the node's own answers, unpatched ------------------------------------------

def test_removing_an_image_the_node_lacks_is_no_such_image(client):
    with pytest.raises(NoSuchImageError, match="no image named 'x.tar'"):
        client.remove_image("x.tar")


def test_unpacking_an_image_the_node_lacks_is_no_such_image(client):
    with pytest.raises(NoSuchImageError):
        client.unpack("x.tar", "b")


def test_removing_a_bundle_the_node_lacks_is_no_such_bundle(client):
    with pytest.raises(NoSuchBundleError):
        client.remove_bundle("b")


def test_starting_a_bundle_the_node_lacks_is_no_such_bundle(client):
    with pytest.raises(NoSuchBundleError):
        client.start("b")


@pytest.mark.parametrize("call", [
    lambda c: c.stop("web"), lambda c: c.restart("web"), lambda c: c.status("web"),
    lambda c: list(c.logs("web")),
], ids=["stop", "restart", "status", "logs"])
def test_an_unknown_container_is_no_such_container(client, call):
    with pytest.raises(NoSuchContainerError):
        call(client)
    assert client.images() == []


# -- the connection drops ------------------------------------------------------

def test_a_node_that_closes_before_hello_is_a_connect_error_saying_what_to_check(digests):
    transport = InProcessTransport(session=lambda read, write, wait: None)
    with pytest.raises(ConnectError, match="before answering hello.*Subsystem"):
        Client(transport=transport, digests=digests)


def test_a_connection_dropped_mid_call_is_connection_lost_and_closes_the_client(
        client, transport, answer):
    def drop(node, call, args):
        transport.drop()
        return {"images": []}
    answer("image.list", drop)
    with pytest.raises(ConnectionLostError):
        client.images()
    with pytest.raises(ConnectionLostError, match="closed"):
        client.bundles()


def test_a_connection_dropped_mid_upload_is_connection_lost_and_closes_the_client(
        client, transport, answer, image_file):
    def drop_after_a_chunk(node, call, args):
        next(iter(call.data()))
        transport.drop()
        return {"image": None}
    answer("image.put", drop_after_a_chunk)
    with pytest.raises(ConnectionLostError):
        client.upload_image(image_file(random_bytes(BIG)))
    with pytest.raises(ConnectionLostError, match="closed"):
        client.images()


def test_a_connection_dropped_mid_log_stream_ends_the_lines_with_connection_lost(
        client, transport, answer):
    def drop_after_two_lines(node, call, args):
        call.send(b"one\ntwo\n")
        transport.drop()
        return {"cursor": [0, 0]}
    answer("container.logs", drop_after_two_lines)
    lines = client.logs("web")
    assert [next(lines), next(lines)] == ["one", "two"]
    with pytest.raises(ConnectionLostError):
        next(lines)


# -- a node that breaks the protocol -------------------------------------------

def tampering(tmp_path, tamper):
    """A transport to a real node whose frames after hello's reply pass ``tamper``:
    frame -> bytes to send instead."""
    layout = Layout(str(tmp_path / "tampered"))
    layout.make_dirs()
    node = Node(layout, Limits(reserve_bytes=0))

    def session(read, write, wait):
        sent = []

        def rewrite(data):
            decoder = Decoder()
            decoder.feed(data)
            frame = decoder.next_frame()
            sent.append(frame)
            write(data if len(sent) == 1 else tamper(frame))

        serve(read, rewrite, node, wait)

    return InProcessTransport(session=session)


@pytest.mark.parametrize("tamper,words", [
    (lambda f: encode(Data(f.id, b"x")) + encode(f), "data frame for call 2"),
    (lambda f: encode(f._replace(id=f.id + 1)), "reply frame for call 3"),
    (lambda f: encode(Request(f.id, "image.list", {})), "request frames go from the client"),
    (lambda f: b"\xc1", "garbage"),
], ids=["data-in-a-plain-call", "reply-for-another-call", "request-from-the-node",
        "garbage"])
def test_a_node_that_breaks_the_protocol_is_a_protocol_error_and_closes_the_client(
        tmp_path, digests, tamper, words):
    with Client(transport=tampering(tmp_path, tamper), digests=digests) as client:
        with pytest.raises(ProtocolError, match=words):
            client.images()
        with pytest.raises(ConnectionLostError, match="closed"):
            client.images()


def test_a_node_that_sends_data_into_an_upload_is_a_protocol_error(
        tmp_path, digests, answer, image_file):
    answer("image.put", refuse_with(ErrorCode.DISK_FULL))  # at once, while the client sends

    def data_first(frame):
        if isinstance(frame, Error):
            return encode(Data(frame.id, b"x")) + encode(frame)
        return encode(frame)
    with Client(transport=tampering(tmp_path, data_first), digests=digests) as client:
        with pytest.raises(ProtocolError, match="data frame for call 3 came from the node "
                                                "while call 3 is streaming to the node"):
            client.upload_image(image_file(random_bytes(BIG)))


def test_a_node_that_streams_another_calls_data_into_logs_is_a_protocol_error(
        tmp_path, digests, answer):
    def stream(node, call, args):
        call.send(b"line\n")
        return {"cursor": [0, 0]}
    answer("container.logs", stream)
    retarget = lambda frame: encode(frame._replace(id=frame.id + 5))  # noqa: E731
    with Client(transport=tampering(tmp_path, retarget), digests=digests) as client:
        with pytest.raises(ProtocolError, match="data frame for call 7"):
            list(client.logs("web"))


def test_a_malformed_hello_reply_is_a_protocol_error(tmp_path, digests):
    def session(read, write, wait):
        decoder = Decoder()
        decoder.feed(read())
        request = decoder.next_frame()
        write(encode(Reply(request.id, {"version": 1})))
        read()
    with pytest.raises(ProtocolError, match="malformed hello reply"):
        Client(transport=InProcessTransport(session=session), digests=digests)


def test_an_error_without_an_id_is_raised_and_closes_the_client(tmp_path, digests):
    def nil_id(frame):
        return encode(Error(None, ErrorCode.INTERNAL, "INTERNAL", "the node gave up", {}))
    with Client(transport=tampering(tmp_path, nil_id), digests=digests) as client:
        with pytest.raises(VzError, match="gave up"):
            client.images()
        with pytest.raises(ConnectionLostError, match="closed"):
            client.images()


# -- abandoned calls -----------------------------------------------------------

def test_a_call_abandoned_while_waiting_for_its_answer_closes_the_client(client, transport):
    """The node may still answer: its answer must not be read as the next call's."""
    real_recv = transport.recv

    def interrupted(timeout=None):
        transport.recv = real_recv
        raise KeyboardInterrupt()
    transport.recv = interrupted
    with pytest.raises(KeyboardInterrupt):
        client.images()
    with pytest.raises(ConnectionLostError, match="closed"):
        client.images()


def test_an_upload_abandoned_midway_is_cancelled_and_the_next_one_resumes(
        client, image_file):
    """When the progress callback raises (as Ctrl-C does) mid-upload, the client
    cancels rather than closes: the session goes on and the node keeps the prefix."""
    data = random_bytes(BIG)
    path = image_file(data, "big.img")

    def interrupt(done, total):
        if done > BIG // 2:
            raise KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        client.upload_image(path, progress=interrupt)
    image, partial = client.probe_image("big.img")
    assert image is None and partial.size > BIG // 2
    starts = []
    info = client.upload_image(path, progress=lambda done, total: starts.append(done))
    assert starts[0] == partial.size
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_an_upload_abandoned_before_its_first_byte_keeps_nothing(client, image_file):
    def interrupt(done, total):
        raise KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        client.upload_image(image_file(), progress=interrupt)
    assert client.probe_image("app.tar.gz") == (None, None)


def test_an_upload_interrupted_inside_a_send_closes_the_client(client, transport, image_file):
    """A frame may be half sent: only closing keeps the node from misreading it."""
    real_send = transport.send
    sent = []

    def send(data):
        sent.append(data)
        if len(sent) == 4:  # hello, probe, image.put's request, then its first data
            real_send(data[:100])
            raise KeyboardInterrupt()
        real_send(data)
    transport.send = send
    with pytest.raises(KeyboardInterrupt):
        client.upload_image(image_file(random_bytes(BIG)))
    with pytest.raises(ConnectionLostError, match="closed"):
        client.images()


def test_an_upload_of_a_file_that_shrinks_is_cancelled_and_the_session_goes_on(
        client, image_file):
    path = image_file(random_bytes(BIG), "big.img")

    def shrink(done, total):
        if done > BIG // 2:
            os.truncate(path, done)
    with pytest.raises(OSError, match="shrank"):
        client.upload_image(path, progress=shrink)
    assert client.probe_image("big.img")[1].size > 0
    assert client.images() == []


def test_an_upload_refused_midway_stops_sending_and_the_session_goes_on(
        client, answer, image_file):
    def fill_up(node, call, args):
        next(iter(call.data()))
        raise DiskFullError("the disk filled up")
    answer("image.put", fill_up)
    done = []
    with pytest.raises(DiskFullError, match="filled up"):
        client.upload_image(image_file(random_bytes(BIG)),
                            progress=lambda sent, total: done.append(sent))
    assert done[-1] < BIG  # the refusal was seen before the end of the file
    assert client.images() == []


# -- logs ----------------------------------------------------------------------

@pytest.fixture
def app_log(transport):
    """A container "app" known to the node, and a function appending to its log."""
    root = transport.node.layout.root
    state = os.path.join(root, "containers", "app")
    os.makedirs(state)
    with open(os.path.join(state, "settings.json"), "w") as settings:
        json.dump({"wanted": "stopped", "log_max": 4096, "log_keep": 2}, settings)
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)

    def append(*lines):
        with open(os.path.join(root, "logs", "app.log"), "a") as log:
            log.writelines(line + "\n" for line in lines)
    return append


def test_closing_a_followed_log_cancels_it_and_gives_a_cursor(client, app_log):
    app_log("one", "two")
    stream = client.logs("app", tail=10, follow=True)
    assert next(stream) == "one"
    stream.close()
    assert stream.cursor[1] == len("one\ntwo\n")
    assert list(stream) == []
    assert client.images() == []


def test_a_log_stream_left_open_is_cancelled_by_the_next_call(client, app_log):
    app_log("one")
    stream = client.logs("app", follow=True)
    assert client.images() == []
    assert list(stream) == []


def test_closing_a_finished_log_stream_sends_nothing(client, app_log, transport):
    app_log("one")
    stream = client.logs("app")
    assert list(stream) == ["one"]
    transport.send = None  # any send would fail
    stream.close()


def test_a_log_stream_abandoned_while_reading_closes_the_client(client, app_log, transport):
    app_log("one")
    stream = client.logs("app", follow=True)
    transport.recv = lambda timeout=None: (_ for _ in ()).throw(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        next(stream)
    with pytest.raises(ConnectionLostError, match="closed"):
        client.images()


# -- what upload_image sends ---------------------------------------------------

def keep_prefix(transport, name, data):
    """Leave ``data`` on the node as the kept prefix of an upload of ``name``."""
    with open(os.path.join(transport.node.layout.partial, name), "wb") as partial:
        partial.write(data)


def puts(served):
    return [args for op, args in served if op == "image.put"]


def test_an_image_the_node_has_under_that_name_is_not_sent_again(
        client, served, image_file):
    path = image_file()
    first = client.upload_image(path)
    done = []
    assert client.upload_image(path, progress=lambda *sizes: done.append(sizes)) == first
    assert len(puts(served)) == 1
    assert done == [(first.size, first.size)]


def test_other_bytes_of_the_same_size_under_that_name_are_sent(client, served, image_file):
    client.upload_image(image_file(random_bytes(1000, seed=1), "a.img"))
    data = random_bytes(1000, seed=2)
    info = client.upload_image(image_file(data, "a.img"))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert [args["offset"] for args in puts(served)] == [0, 0]


def test_an_upload_resumes_from_a_kept_prefix_of_the_same_bytes(
        client, transport, served, image_file):
    data = random_bytes(BIG)
    keep_prefix(transport, "big.img", data[:12345])
    info = client.upload_image(image_file(data, "big.img"))
    assert puts(served)[0]["offset"] == 12345
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_a_kept_prefix_of_other_bytes_is_sent_again_from_the_start(
        client, transport, served, image_file):
    data = random_bytes(BIG)
    keep_prefix(transport, "big.img", b"not the image" * 100)
    info = client.upload_image(image_file(data, "big.img"))
    assert puts(served)[0]["offset"] == 0
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_a_kept_prefix_longer_than_the_file_is_sent_again_from_the_start(
        client, transport, served, image_file):
    data = sample_image()
    keep_prefix(transport, "app.tar.gz", data + b"more")
    client.upload_image(image_file(data))
    assert puts(served)[0]["offset"] == 0


def test_an_upload_keeps_the_files_digest_for_the_next_push(client, digests, old_file):
    path = old_file()
    info = client.upload_image(path)
    assert digests.lookup(path, os.stat(path)) == info.sha256


def test_a_stale_cached_digest_fails_the_upload_and_publishes_nothing(
        client, digests, old_file):
    """When the digest cache holds a wrong sha256 for the file, the node's check
    refuses the upload (CHECKSUM_MISMATCH) rather than publish bytes under it."""
    path = old_file()
    digests.store(path, os.stat(path), "0" * 64)
    with pytest.raises(ChecksumMismatchError):
        client.upload_image(path)
    assert client.images() == []


def test_a_closed_client_says_so(client):
    client.close()
    with pytest.raises(ConnectionLostError, match="closed"):
        client.images()


def stepping(node, call, args):
    """app.deploy as a node that reports two steps when asked, then answers."""
    if args["progress"]:
        call.send(b"unpack\trelease 1 from a.tar\n")
        call.send(b"health\thttp http://127.0.0.1/, within 30 s\n")
    return {"release": {"app": "web", "release": 1, "image": "a.tar", "sha256": "0" * 64,
                        "created": 1.0, "current": True, "env": [], "secrets": [],
                        "volumes": {}, "health": None, "release_command": None}}


def test_deploy_with_progress_hears_each_step_the_node_streams(client, answer):
    answer("app.deploy", stepping)
    steps = []
    info = client.deploy("web", "a.tar", progress=lambda stage, detail: steps.append(
        (stage, detail)))
    assert steps == [("unpack", "release 1 from a.tar"),
                     ("health", "http http://127.0.0.1/, within 30 s")]
    assert info.release == 1 and info.labels == {}
    assert client.images() == []  # the session goes on


def test_deploy_without_progress_asks_for_no_steps(client, answer):
    asked = []
    answer("app.deploy", lambda node, call, args: asked.append(args["progress"]) or stepping(
        node, call, args))
    client.deploy("web", "a.tar")
    assert asked == [False]


def test_a_node_whose_protocol_this_master_cannot_speak_is_refused_with_advice(transport,
                                                                              digests,
                                                                              monkeypatch):
    from vzmaster import VersionMismatchError
    from vzslave import handlers

    monkeypatch.setattr(handlers, "SUPPORTED_VERSIONS", (0,))
    with pytest.raises(VersionMismatchError, match="vzmaster node upgrade NODE"):
        Client(transport=transport, digests=digests)
