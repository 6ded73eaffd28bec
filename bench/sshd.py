"""A throwaway OpenSSH sshd on loopback for benchmarks (root only).

It listens on 127.0.0.1, accepts one generated key for root, and serves the
``vzslave`` subsystem from this source tree with its state root under ``workdir``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from types import TracebackType

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackSshd:
    """``with LoopbackSshd(workdir) as sshd:`` gives host, port, user, key, known_hosts."""

    def __init__(self, workdir: str, vz_root: str) -> None:
        self.workdir = workdir
        self.vz_root = vz_root
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.user = "root"
        self.key = os.path.join(workdir, "client")
        self.known_hosts = os.path.join(workdir, "known_hosts")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopbackSshd:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        hostkey = os.path.join(self.workdir, "hostkey")
        for path in (self.key, hostkey):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                           check=True)
        with open(hostkey + ".pub") as pub:
            key_type, key_data = pub.read().split()[:2]
        with open(self.known_hosts, "w") as known:
            known.write("[{}]:{} {} {}\n".format(self.host, self.port, key_type, key_data))
        shutil.copy(self.key + ".pub", os.path.join(self.workdir, "authorized_keys"))
        config = os.path.join(self.workdir, "sshd_config")
        vzslave = "/usr/bin/env PYTHONPATH={} {} -m vzslave --root {}".format(
            SOURCE, sys.executable, self.vz_root)
        with open(config, "w") as out:
            out.write("\n".join([
                "ListenAddress {}:{}".format(self.host, self.port),
                "HostKey " + hostkey,
                "AuthorizedKeysFile " + os.path.join(self.workdir, "authorized_keys"),
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "UsePAM no",
                "UseDNS no",
                "StrictModes no",
                "PidFile " + os.path.join(self.workdir, "sshd.pid"),
                "Subsystem sftp internal-sftp",
                "Subsystem vzslave " + vzslave,
                "",
            ]))
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation dir
        self._proc = subprocess.Popen([sshd, "-D", "-e", "-f", config],
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.__exit__(None, None, None)
                    raise RuntimeError("sshd did not start") from None
                time.sleep(0.05)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def ssh_options(self) -> list[str]:
        """OpenSSH client options that reach this sshd with the generated key."""
        return ["-F", "none", "-i", self.key, "-o", "UserKnownHostsFile=" + self.known_hosts,
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "Ciphers=aes128-gcm@openssh.com", "-o", "Port={}".format(self.port)]
