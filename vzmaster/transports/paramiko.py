"""The paramiko transport: ~/.ssh/config, agent, known_hosts, and a fast channel.

Host keys are checked against known_hosts; an unknown key is refused with a message
saying how to trust it, unless the caller opts in to trust on first use (the key is
then appended to known_hosts). A changed key is always refused.

Speed (bench/upload.py): TCP_NODELAY (connect+auth 63 -> 20 ms), AES-GCM first (the
fastest cipher paramiko has), and the protocol's large data frames.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import select
import socket
from typing import Any, Callable, Iterator

import paramiko

from vzmaster.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    HostKeyChangedError,
    HostKeyError,
)
from vzmaster.transports.base import SUBSYSTEM, SSHOptions, Transport
from vzslave.protocol import READ_SIZE

_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr",
            "aes256-ctr", "aes192-ctr")
_TOFU_VALUES = ("accept-new", "no", "off")
KEEPALIVE = 10.0  # seconds between SSH keepalives
DEAD_AFTER = 30.0  # seconds sent bytes may stay unacknowledged before the link is dropped
_LINK_ERRORS = (OSError, EOFError, paramiko.SSHException)  # a link or a login failed


def fast_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """A paramiko Transport that offers the fastest ciphers first."""
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    available = set(options.ciphers)
    # Our order decides: a client's cipher preference wins the negotiation.
    options.ciphers = tuple(c for c in _CIPHERS if c in available) + tuple(
        c for c in options.ciphers if c not in _CIPHERS)
    return transport


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else "[{}]:{}".format(host, port)


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys with advice, or trust them on first use and record them."""

    def __init__(self, trust_new_host: bool, known_hosts: str, port: int,
                 on_new_key: Callable[[str, str], None] | None = None) -> None:
        self.trust_new_host = trust_new_host
        self.known_hosts = known_hosts
        self.port = port
        self.on_new_key = on_new_key

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        fingerprint = key.fingerprint  # "SHA256:..." as ssh-keygen -l prints it
        if not self.trust_new_host:
            raise HostKeyError(
                "the host key of {} ({} {}) is not in {}. Check that fingerprint on the "
                "node (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add the key with "
                "`ssh-keyscan -p {} HOST >> {}`, or pass trust_new_host=True (vzmaster "
                "--trust-new-host) to accept it on first use".format(
                    hostname, key.get_name(), fingerprint, self.known_hosts, self.port,
                    self.known_hosts))
        directory = os.path.dirname(self.known_hosts)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        if self.on_new_key is not None:
            self.on_new_key(hostname, "{} {}".format(key.get_name(), fingerprint))
        line = "{} {} {}\n".format(hostname, key.get_name(), key.get_base64())
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class ParamikoTransport(Transport):
    """An SSH channel to ``vzslave``, opened with paramiko."""

    def __init__(self, channel: paramiko.Channel, client: paramiko.SSHClient | None,
                 name: str) -> None:
        super().__init__()
        self.name = name
        self._channel = channel
        self._client = client
        self._poll_fd = channel.fileno()  # readable on data, stderr or EOF
        # Data frames of exactly eight SSH packets: 256 KiB frames would add a ninth,
        # nearly empty packet each (paramiko leaves 64 bytes of each packet unused).
        self.frame_size = 8 * (channel.out_max_packet_size - 64)
        self._drain_in_background(self._drain)

    @classmethod
    def connect(cls, options: SSHOptions) -> ParamikoTransport:
        """Log in to ``options.host`` (a name or an alias of ~/.ssh/config), start vzslave."""
        client, label = login(options)
        try:
            with paramiko_errors(label, options.host):
                channel = _start_vzslave(client, label, options.connect_timeout)
        except BaseException:
            client.close()
            raise
        return cls(channel, client, label)

    def _drain(self) -> None:
        buffered = b""
        while True:
            try:
                block = self._channel.recv_stderr(65536)
            except _LINK_ERRORS:
                return
            if not block:
                break
            buffered += block
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                self._stderr_line(line.decode("utf-8", "replace"))
        if buffered:
            self._stderr_line(buffered.decode("utf-8", "replace"))

    def send(self, data: bytes) -> None:
        with paramiko_errors(self.name, lost="the link broke while sending"):
            # A memoryview: paramiko's sendall re-slices what is left after each
            # packet, which copies a bytes object every time.
            self._channel.sendall(memoryview(data))  # type: ignore[arg-type]

    def readable(self) -> bool:
        # No syscall: a select() per chunk cost ~0.4 ms in GIL hand-offs with
        # paramiko's own thread.
        channel = self._channel
        return bool(channel.recv_ready() or channel.closed or channel.eof_received)

    def recv(self, timeout: float | None = None) -> bytes:
        channel = self._channel
        while not channel.recv_ready():
            if channel.closed or channel.eof_received:
                break
            # The poll fd also wakes for stderr, which the drainer consumes: loop.
            ready, _, _ = select.select([self._poll_fd], [], [], timeout)
            if not ready:
                raise TimeoutError()
        with paramiko_errors(self.name, lost="read failed"):
            return channel.recv(READ_SIZE)

    def close(self) -> None:
        try:
            self._channel.close()
        except _LINK_ERRORS:
            pass  # the link is already gone: nothing left to tell the node
        finally:
            if self._client is not None:
                self._client.close()
        self._wait_for_stderr(5)


def login(options: SSHOptions,
           on_new_key: Callable[[str, str], None] | None = None) -> tuple[paramiko.SSHClient, str]:
    """An SSH session logged in as ``options`` say (keys, or a password: paramiko tries
    keyboard-interactive with it where the server offers only that), and its label
    ("user@host"). ``on_new_key(hostname, fingerprint)`` hears a key trusted on first use."""
    entry = _config_entry(options.host, options.ssh_config)
    hostname = entry.get("hostname", options.host)
    port = options.port or int(entry.get("port", 22))
    user = options.user or entry.get("user") or getpass.getuser()
    keys = list(options.key_files)
    keys += [os.path.expanduser(k) for k in entry.get("identityfile", [])
             if os.path.exists(os.path.expanduser(k))]
    known_hosts = options.known_hosts
    if known_hosts is None:
        listed = entry.get("userknownhostsfile", "~/.ssh/known_hosts").split()
        known_hosts = os.path.expanduser(listed[0])
    trust = options.trust_new_host or entry.get("stricthostkeychecking", "") in _TOFU_VALUES
    label = "{}@{}".format(user, options.host)
    timeout = options.connect_timeout

    client = paramiko.SSHClient()
    try:
        with paramiko_errors(label, hostname):
            if os.path.exists("/etc/ssh/ssh_known_hosts"):
                client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
            if os.path.exists(known_hosts):
                client.load_host_keys(known_hosts)
            client.set_missing_host_key_policy(
                _HostKeyPolicy(trust, known_hosts, port, on_new_key))
            sock = options.sock
            if sock is None:
                sock = open_socket(hostname, port, entry.get("proxycommand"), timeout)
            elif isinstance(sock, socket.socket) and sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A password alone: no key files or agent tried first (each refusal counts
            # against sshd's MaxAuthTries).
            only_password = options.password is not None and not keys
            client.connect(
                hostname, port, username=user, password=options.password,
                key_filename=keys or None,  # type: ignore[arg-type]  # paramiko takes lists
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, sock=sock,
                transport_factory=fast_transport, look_for_keys=not only_password,
                allow_agent=not only_password)
            notice_a_vanished_peer(client, sock)
    except BaseException:
        client.close()
        raise
    return client, label


@contextlib.contextmanager
def paramiko_errors(label: str, hostname: str = "", lost: str = "") -> Iterator[None]:
    """Paramiko's failures (and the socket's) as vz's transport errors, in one place.

    While connecting: a changed host key, refused credentials, anything else a
    ConnectError. With ``lost`` (what was under way on an open link): ConnectionLostError.
    vz's own errors (an unknown host key, an unreachable port) pass through.
    """
    try:
        yield
    except paramiko.BadHostKeyException as exc:
        raise HostKeyChangedError(
            "the host key of {} CHANGED: known_hosts has {}, the node shows {}. Someone may "
            "be intercepting the connection. If the node was reinstalled, remove the old "
            "key with `ssh-keygen -R {}` and connect again".format(
                hostname, exc.expected_key.fingerprint, exc.key.fingerprint,
                hostname)) from exc
    except paramiko.AuthenticationException as exc:
        raise AuthenticationError("{}: login refused ({}); check the user, the key (-i) and "
                                  "the node's authorized_keys".format(label, exc)) from exc
    except _LINK_ERRORS as exc:
        if lost:
            raise ConnectionLostError("{}: {} ({})".format(label, lost, _why(exc))) from exc
        raise ConnectError("{}: cannot connect: {}".format(label, exc)) from exc


def _start_vzslave(client: paramiko.SSHClient, label: str,
                   timeout: float) -> paramiko.Channel:
    """Open a session channel on the logged-in ``client`` and start the subsystem."""
    ssh = client.get_transport()
    assert ssh is not None
    channel = ssh.open_session(timeout=timeout)
    try:
        channel.invoke_subsystem(SUBSYSTEM)
    except paramiko.SSHException as exc:
        raise ConnectError(
            "{}: the node has no '{}' SSH subsystem; install vz there and add "
            "sshd_config.d/vzslave.conf to its sshd ({})".format(label, SUBSYSTEM, exc)) from exc
    return channel


def _why(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the connection closed"
    return str(exc) or type(exc).__name__


def _config_entry(host: str, path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        return {}
    config = paramiko.SSHConfig.from_path(path)
    return dict(config.lookup(host))


def notice_a_vanished_peer(client: paramiko.SSHClient, sock: Any) -> None:
    """Make a node that vanished mid-call (its VPS gone: no FIN, no RST) end the call
    within about 40 s instead of TCP's 15 minutes: a keepalive every KEEPALIVE s puts
    bytes in flight, and TCP_USER_TIMEOUT drops a link whose bytes stay unacknowledged
    for DEAD_AFTER s (Linux; elsewhere the keepalive alone, as OpenSSH's
    ServerAliveInterval). A slow node still answering keeps its call."""
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE)
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is not None and isinstance(sock, socket.socket) and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(DEAD_AFTER * 1000))


def open_socket(hostname: str, port: int, proxy_command: str | None, timeout: float) -> Any:
    """A socket to ``hostname``, TCP_NODELAY; ProxyCommand's pipe if ssh_config gives one."""
    if proxy_command:
        return paramiko.ProxyCommand(proxy_command)
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except OSError as exc:
        raise ConnectError("cannot reach {} port {}: {}".format(hostname, port, exc)) from exc
    # Small request/reply frames must not wait for Nagle (connect+auth 63 -> 20 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
