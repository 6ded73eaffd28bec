"""The system's OpenSSH client as a transport: ``ssh -s HOST vzslave``, a child process."""

from __future__ import annotations

import os
import shutil
from typing import Sequence

from vzmaster.errors import AuthenticationError, ConnectError, HostKeyError, TransportError
from vzmaster.transports.base import SUBSYSTEM, SSHOptions
from vzmaster.transports.local import ProcessTransport


def _control_dir() -> str | None:
    """A private directory for ControlMaster sockets, or None if none can be made."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.cache")
    path = os.path.join(base, "vz", "ssh")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    # Unix socket paths are capped near 108 bytes; %C expands to 40 characters.
    return path if len(path) + 42 < 100 else None


class OpenSSHTransport(ProcessTransport):
    """The system's ``ssh -s HOST vzslave``, sharing one connection via ControlMaster.

    It honours ~/.ssh/config, the agent and known_hosts by being ssh itself. Host
    keys: StrictHostKeyChecking=yes unless ``trust_new_host`` (then accept-new, which
    still refuses a changed key). BatchMode: it never prompts.
    """

    def __init__(self, host: str, *, user: str | None = None, port: int | None = None,
                 key_filename: str | None = None, known_hosts: str | None = None,
                 trust_new_host: bool = False, connect_timeout: float = 15.0,
                 control_master: bool = True, ssh_program: Sequence[str] = ("ssh",),
                 options: Sequence[str] = ()) -> None:
        argv = list(ssh_program)
        if shutil.which(argv[0]) is None:
            raise ConnectError("OpenSSH client {!r} not found; install openssh-client or "
                               "use via='paramiko'".format(argv[0]))
        opts = {
            "BatchMode": "yes",
            "StrictHostKeyChecking": "accept-new" if trust_new_host else "yes",
            "ConnectTimeout": str(max(1, int(connect_timeout))),
            "Ciphers": "aes128-gcm@openssh.com,aes256-gcm@openssh.com,"
                       "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr",
            "ServerAliveInterval": "15",
        }
        if known_hosts:
            opts["UserKnownHostsFile"] = known_hosts
        control = _control_dir() if control_master else None
        if control:
            opts.update(ControlMaster="auto", ControlPersist="60",
                        ControlPath=os.path.join(control, "%C"))
        for key, value in opts.items():
            argv += ["-o", "{}={}".format(key, value)]
        argv += list(options)
        if user:
            argv += ["-l", user]
        if port:
            argv += ["-p", str(port)]
        if key_filename:
            argv += ["-i", key_filename]
        argv += ["-s", "--", host, SUBSYSTEM]
        self.host = host
        super().__init__(argv, "ssh {}".format(host))

    @classmethod
    def connect(cls, options: SSHOptions) -> OpenSSHTransport:
        """Run ssh to ``options.host`` with the first key file (ssh reads its own config)."""
        keys = options.key_files
        return cls(options.host, user=options.user, port=options.port,
                   key_filename=keys[0] if keys else None, known_hosts=options.known_hosts,
                   trust_new_host=options.trust_new_host,
                   connect_timeout=options.connect_timeout,
                   ssh_program=tuple(options.ssh_program or ("ssh",)))

    def failure(self) -> TransportError:
        tail = self.stderr_tail()
        if "Host key verification failed" in tail or "REMOTE HOST IDENTIFICATION" in tail:
            return HostKeyError(
                "{}: the host key of {} is not trusted ({}). Check its fingerprint, then "
                "add it with `ssh-keyscan {} >> ~/.ssh/known_hosts`, or pass "
                "trust_new_host=True (vzmaster --trust-new-host) to accept it on first "
                "use".format(self.name, self.host, tail, self.host))
        if "Permission denied" in tail:
            return AuthenticationError("{}: login refused ({})".format(self.name, tail))
        if "subsystem request failed" in tail:
            return ConnectError(
                "{}: the node has no '{}' SSH subsystem; install vz there and add "
                "sshd_config.d/vzslave.conf to its sshd".format(self.name, SUBSYSTEM))
        if self.exit_status() == 255 or "ssh:" in tail:
            return ConnectError("{}: {}".format(self.name, tail or "ssh failed"))
        return super().failure()
