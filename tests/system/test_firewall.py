"""The node's firewall chain on a box, over its real sshd: the declared port is let in,
another is dropped, SSH stays open, and remove opens the node again. Each box has its
own network namespace: the host's rules are never touched."""

import shutil

from tests.system.conftest import connect, wait_for

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def require_tools(backend):
    from tests.integration.test_firewall_real import require
    require(backend)


def serve(box, *ports):
    """busybox httpd on each port (it puts itself in the background)."""
    for port in ports:
        box.exec([BUSYBOX, "httpd", "-p", str(port), "-h", "/tmp"])
    for port in ports:
        wait_for(lambda port=port: reachable(box, port), what="port {}".format(port))


def reachable(box, port):
    """Whether a TCP connect from the hub gets through (DROP: it times out)."""
    try:
        box.connect(port, timeout=1).close()
        return True
    except OSError:
        return False


def check_firewall(box, digests, backend=None):
    serve(box, 8080, 9090)
    with connect(box, digests) as node:
        status = node.apply_firewall(["8080/tcp"], backend=backend)
        assert (status.active, status.ports, status.drift) == (True, ["8080/tcp"], [])
        assert reachable(box, 8080)
        assert not reachable(box, 9090)
        with connect(box, digests) as again:  # a new SSH session gets in
            status = again.firewall()
            assert (status.active, status.drift, status.ssh_ports) == (True, [], [22])
        # The session opened before the apply goes on: replies are accepted.
        assert not node.remove_firewall().active
    assert reachable(box, 9090)


def test_the_firewall_lets_in_ssh_and_the_declared_port_and_drops_the_rest(box, digests):
    require_tools("iptables")
    check_firewall(box, digests)


def test_the_nft_backend_does_the_same(make_box, digests):
    require_tools("nft")
    check_firewall(make_box(), digests, backend="nft")


def test_without_an_ssh_port_the_sessions_port_stays_open(make_box, digests):
    """ssh_port=0 asks for no SSH port, but the session's own (and sshd's) stays."""
    require_tools("iptables")
    box = make_box()
    with connect(box, digests) as node:
        assert node.apply_firewall([], ssh_port=0).ssh_ports == [22]
        assert reachable(box, 22)
        node.remove_firewall()
