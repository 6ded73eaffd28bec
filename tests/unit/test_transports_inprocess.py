"""InProcessTransport: a vzslave session in a thread, over a socketpair."""

import os

from vzmaster import Client
from vzmaster.digests import DigestCache
from vzmaster.transports.inprocess import InProcessTransport
from vzslave.protocol import Request, encode


def test_a_client_over_it_talks_to_the_real_node_at_its_root(tmp_path):
    root = str(tmp_path / "node")
    with Client(transport=InProcessTransport(root),
                digests=DigestCache(str(tmp_path / "d.json"))) as client:
        assert client.facts.root == root
        assert client.images() == []


def test_closing_it_ends_the_nodes_session_and_removes_its_temporary_root():
    transport = InProcessTransport()
    root = transport.node.layout.root
    assert os.path.isdir(root)
    transport.close()
    assert not os.path.exists(root)


def test_a_session_that_raises_is_kept_for_the_test_and_the_link_closes():
    def crash(read, write, wait):
        raise RuntimeError("the test node broke")
    transport = InProcessTransport(session=crash)
    assert transport.recv(timeout=10) == b""  # EOF once the session is over
    transport.close()
    assert str(transport.failure_on_node) == "the test node broke"


def test_a_dropped_link_reads_as_eof_on_both_ends():
    received = []

    def echo_until_eof(read, write, wait):
        received.append(read())
    transport = InProcessTransport(session=echo_until_eof)
    transport.drop()
    assert transport.recv(timeout=10) == b""
    transport.close()
    assert received == [b""]


def test_what_the_client_sends_reaches_the_session():
    received = []

    def record(read, write, wait):
        received.append(read())
        write(b"ok")
    transport = InProcessTransport(session=record)
    transport.send(encode(Request(1, "hello", {})))
    assert transport.recv(timeout=10) == b"ok"
    transport.close()
    assert received == [encode(Request(1, "hello", {}))]
