"""Paramiko's failures become vz's transport errors in one context manager."""

import paramiko
import pytest

from vzmaster.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    HostKeyChangedError,
    HostKeyError,
)
from vzmaster.transports.paramiko import paramiko_errors



def raised(exc, **where):
    with pytest.raises(Exception) as caught:
        with paramiko_errors("root@node1", **where):
            raise exc
    return caught.value


def keys():
    return paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)


def test_a_changed_host_key_is_host_key_changed_with_both_fingerprints():
    shown, expected = keys()
    error = raised(paramiko.BadHostKeyException("10.0.0.1", shown, expected),
                   hostname="10.0.0.1")
    assert type(error) is HostKeyChangedError
    assert "CHANGED" in error.message and "ssh-keygen -R 10.0.0.1" in error.message
    assert shown.fingerprint in error.message and expected.fingerprint in error.message


def test_refused_credentials_are_an_authentication_error():
    error = raised(paramiko.AuthenticationException("no way"))
    assert type(error) is AuthenticationError
    assert error.message.startswith("root@node1: login refused (no way)")


@pytest.mark.parametrize("exc", [paramiko.SSHException("banner"), OSError("refused"),
                                 EOFError()], ids=lambda e: type(e).__name__)
def test_anything_else_while_connecting_is_a_connect_error_keeping_the_cause(exc):
    error = raised(exc)
    assert type(error) is ConnectError and error.__cause__ is exc
    assert error.message.startswith("root@node1: cannot connect:")


@pytest.mark.parametrize("exc,why", [(EOFError(), "the connection closed"),
                                     (OSError("reset"), "reset")])
def test_on_an_open_link_a_failure_is_a_lost_connection_saying_what_was_under_way(exc, why):
    error = raised(exc, lost="read failed")
    assert type(error) is ConnectionLostError
    assert error.message == "root@node1: read failed ({})".format(why)


def test_vz_errors_raised_inside_pass_through_unchanged():
    mine = HostKeyError("unknown key")
    assert raised(mine) is mine


def test_a_vanished_peer_is_noticed_by_keepalives_and_a_tcp_user_timeout():
    """When a node's VPS vanishes mid-call (no FIN, no RST), keepalives put bytes in
    flight and TCP_USER_TIMEOUT drops the link once they stay unacknowledged."""
    import socket

    from vzmaster.transports import paramiko as transport_module

    class FakeTransport:
        keepalive = None

        def set_keepalive(self, interval):
            self.keepalive = interval

    class FakeClient:
        transport = FakeTransport()

        def get_transport(self):
            return self.transport

    client = FakeClient()
    with socket.socket() as sock:
        transport_module.notice_a_vanished_peer(client, sock)
        timeout_ms = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    assert client.transport.keepalive == transport_module.KEEPALIVE
    assert timeout_ms == transport_module.DEAD_AFTER * 1000
