"""Byte pipes to a vzslave session, and ``connect``: SSHOptions in, the transport it names out.

    base       Transport (what a transport is) and SSHOptions (what opens one)
    local      a child process's pipes: LocalTransport runs vzslave on this machine
    openssh    the system's ``ssh -s HOST vzslave``, one shared connection per host
    paramiko   paramiko: ~/.ssh/config, known_hosts policy, a fast channel (imported
               only when used: paramiko costs ~120 ms and ~19 MiB)
"""

from __future__ import annotations

from vzmaster.transports.base import SSHOptions, Transport
from vzmaster.transports.local import LocalTransport
from vzmaster.transports.openssh import OpenSSHTransport

__all__ = ["LocalTransport", "OpenSSHTransport", "SSHOptions", "Transport", "connect"]


def connect(options: SSHOptions) -> Transport:
    """Open the transport ``options`` names: a local vzslave, OpenSSH or paramiko."""
    root = options.local_root
    if root is not None:
        return LocalTransport(root=root or None)
    if options.via == "openssh":
        return OpenSSHTransport.connect(options)
    from vzmaster.transports.paramiko import ParamikoTransport
    return ParamikoTransport.connect(options)
