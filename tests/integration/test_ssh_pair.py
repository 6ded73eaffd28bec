"""vzmaster.Client over a real paramiko SSH session to the real vzslave loop, in memory.

No sshd and no root: a paramiko server Transport on one end of a socketpair runs
``vzslave.server.serve`` as its "vzslave" subsystem (the shape of paramiko's own
sftp_server fixture).
"""

import os
import socket
import subprocess
import threading
import time

import paramiko
import pytest

from tests.conftest import random_bytes, sample_image
from vzmaster import (
    AuthenticationError,
    Client,
    ConnectError,
    HostKeyChangedError,
    HostKeyError,
)
from vzmaster.digests import DigestCache
from vzmaster.transports.paramiko import fast_transport as _fast_transport
from vzmaster.transports.paramiko import open_socket as _open_socket
from vzslave.config import Layout, Limits
from vzslave.handlers import Node
from vzslave.protocol import READ_SIZE
from vzslave.server import serve


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return {name: (str(directory / name), keygen(directory / name))
            for name in ("host", "other_host", "client", "stranger")}


class _Server(paramiko.ServerInterface):
    def __init__(self, user, key):
        self.user, self.key = user, key

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if username == self.user and key == self.key:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _VzSubsystem(paramiko.SubsystemHandler):
    """Runs the real vzslave session loop on the channel."""

    config = (None, 0)  # (node layout, bytes of stderr noise first), set per test

    def start_subsystem(self, name, transport, channel):
        layout, noise = _VzSubsystem.config
        if noise:
            channel.sendall_stderr(b"x" * noise)  # sshd forwards stderr the same way
        node = Node(layout, Limits(reserve_bytes=0))
        serve(lambda: channel.recv(READ_SIZE), channel.sendall, node)
        channel.send_exit_status(0)
        channel.close()


@pytest.fixture
def node_layout(tmp_path):
    layout = Layout(str(tmp_path / "node"))
    layout.make_dirs()
    return layout


@pytest.fixture
def pair(keys, node_layout, tmp_path):
    """``pair(**client_options)`` -> a Client over an in-memory SSH session."""
    servers = []

    def connect(host_key="host", subsystem=True, stderr_noise=0, user="root", **options):
        client_sock, server_sock = socket.socketpair()
        server = paramiko.Transport(server_sock)
        server.add_server_key(keys[host_key][1])
        if subsystem:
            _VzSubsystem.config = (node_layout, stderr_noise)
            server.set_subsystem_handler("vzslave", _VzSubsystem)
        # With an event start_server returns at once; without, it waits for a client.
        server.start_server(event=threading.Event(), server=_Server(user, keys["client"][1]))
        servers.append(server)
        options.setdefault("key_filename", keys["client"][0])
        options.setdefault("known_hosts", str(tmp_path / "known_hosts"))
        options.setdefault("ssh_config", None)
        return Client("node1", user=options.pop("login", "root"), sock=client_sock,
                      digests=DigestCache(str(tmp_path / "digests.json")), **options)

    yield connect
    for server in servers:
        server.close()


@pytest.fixture
def trusted(keys, tmp_path):
    """A known_hosts file that trusts the "host" key for node1."""
    path = tmp_path / "known_hosts"
    key = keys["host"][1]
    path.write_text("node1 {} {}\n".format(key.get_name(), key.get_base64()))
    return str(path)


def test_a_client_over_ssh_uploads_and_unpacks(pair, trusted, image_file):
    with pair() as node:
        info = node.upload_image(image_file(sample_image()))
        node.unpack(info.name, "app")
        assert [b.name for b in node.bundles()] == ["app"]


def test_a_big_upload_over_ssh_arrives_whole(pair, trusted, image_file):
    data = random_bytes(5 << 20)
    with pair() as node:
        import hashlib
        assert node.upload_image(image_file(data)).sha256 == hashlib.sha256(data).hexdigest()


def test_an_unknown_host_key_is_refused_with_how_to_trust_it(pair):
    with pytest.raises(HostKeyError) as caught:
        pair()
    assert "SHA256:" in str(caught.value)
    assert "ssh-keyscan" in str(caught.value) and "trust_new_host" in str(caught.value)
    assert not isinstance(caught.value, HostKeyChangedError)


def test_trusting_a_new_host_records_its_key_for_the_next_time(pair, tmp_path):
    with pair(trust_new_host=True):
        pass
    assert "node1 ssh-ed25519 " in (tmp_path / "known_hosts").read_text()
    with pair():
        pass


def test_a_changed_host_key_is_refused_even_when_trusting_new_hosts(pair, trusted):
    with pytest.raises(HostKeyChangedError, match="CHANGED"):
        pair(host_key="other_host", trust_new_host=True)


def test_a_refused_login_is_an_authentication_error(pair, trusted, keys):
    with pytest.raises(AuthenticationError, match="login refused"):
        pair(key_filename=keys["stranger"][0])


def test_a_node_without_the_subsystem_says_how_to_add_it(pair, trusted):
    with pytest.raises(ConnectError, match="sshd_config.d/vzslave.conf"):
        pair(subsystem=False)


def test_a_chatty_stderr_does_not_stall_the_session(pair, trusted):
    """sshd forwards the subsystem's stderr; paramiko returns window credit only when
    it is read. 4 MiB is twice the window: undrained, hello would never arrive."""
    with pair(stderr_noise=4 << 20) as node:
        assert node.images() == []


def test_the_ssh_config_alias_gives_hostname_user_and_key(pair, keys, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host node1\n  HostName 192.0.2.7\n  User deploy\n  IdentityFile {}\n"
                      .format(keys["client"][0]))
    key = keys["host"][1]
    known = tmp_path / "known_hosts"
    known.write_text("192.0.2.7 {} {}\n".format(key.get_name(), key.get_base64()))
    with pair(user="deploy", login=None, key_filename=None, ssh_config=str(config)) as node:
        assert node.images() == []


def test_the_transport_sets_nodelay_on_tcp_sockets():
    listener = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(listener.getsockname())
    try:
        opened = _open_socket("127.0.0.1", listener.getsockname()[1], None, 5)
        assert opened.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        opened.close()
    finally:
        sock.close()
        listener.close()


def test_aes_gcm_is_offered_first():
    a, b = socket.socketpair()
    try:
        transport = _fast_transport(a)
        assert transport.get_security_options().ciphers[0] == "aes128-gcm@openssh.com"
    finally:
        a.close()
        b.close()


def test_a_key_held_by_the_ssh_agent_logs_in(pair, trusted, keys, tmp_path, monkeypatch):
    agent_sock = str(tmp_path / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_sock], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(agent_sock):
                break
            time.sleep(0.02)
        monkeypatch.setenv("SSH_AUTH_SOCK", agent_sock)
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
        subprocess.run(["ssh-add", "-q", keys["client"][0]], check=True)
        with pair(key_filename=None) as node:
            assert node.images() == []
    finally:
        agent.terminate()
        agent.wait()
