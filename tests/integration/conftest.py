"""Integration fixtures: a real vzslave child process behind vzmaster.Client."""

import pytest

from vzmaster import Client
from vzmaster.digests import DigestCache


@pytest.fixture
def node_root(tmp_path):
    return str(tmp_path / "node")


@pytest.fixture
def digests(tmp_path):
    """A private digest cache, so tests never read or write ~/.cache."""
    return DigestCache(str(tmp_path / "digests.json"))


@pytest.fixture
def connect(node_root, digests):
    """Open Clients to one local vzslave state root; all are closed at teardown."""
    opened = []

    def open_client(**options):
        options.setdefault("digests", digests)
        client = Client("local:" + node_root, **options)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def node(connect):
    return connect()
