#!/usr/bin/env python3
"""Upload throughput: vzmaster.Client against bare paramiko, paramiko SFTP and OpenSSH.

Everything goes to the same loopback sshd (bench/sshd.py), with AES-128-GCM, from
the same file in the page cache, and lands on the same tmpfs, so the figures compare
transports rather than disks. Prints the median MB/s of each and the ratios the
issue sets as targets. Run as root: python3 bench/upload.py [--size-mib 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paramiko  # noqa: E402

from bench.sshd import LoopbackSshd  # noqa: E402
from vzmaster import Client  # noqa: E402
from vzmaster.digests import DigestCache  # noqa: E402

CHUNK = 256 * 1024


def paramiko_client(sshd: LoopbackSshd) -> paramiko.SSHClient:
    """A paramiko connection as a careful user would make it: NODELAY, AES-GCM first."""
    sock = socket.create_connection((sshd.host, sshd.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(sshd.known_hosts)
    client.connect(sshd.host, sshd.port, username=sshd.user, key_filename=sshd.key,
                   sock=sock, allow_agent=False, look_for_keys=False,
                   disabled_algorithms={"ciphers": ["aes128-ctr", "aes192-ctr", "aes256-ctr",
                                                    "aes256-gcm@openssh.com"]})
    return client


def bare_channel(sshd: LoopbackSshd, path: str, target: str) -> None:
    """The reference: raw bytes into `cat >/dev/null` over one paramiko channel."""
    client = paramiko_client(sshd)
    try:
        channel = client.get_transport().open_session()  # type: ignore[union-attr]
        channel.exec_command("cat >/dev/null")
        with open(path, "rb") as source:
            while True:
                block = source.read(CHUNK)
                if not block:
                    break
                channel.sendall(block)
        channel.shutdown_write()
        assert channel.recv_exit_status() == 0
    finally:
        client.close()


def sftp_put(sshd: LoopbackSshd, path: str, target: str) -> None:
    """paramiko's SFTPClient.put onto the tmpfs."""
    client = paramiko_client(sshd)
    try:
        sftp = client.open_sftp()
        sftp.put(path, os.path.join(target, "sftp.img"))
    finally:
        client.close()


def vz_upload(via: str, first_push: bool = False) -> Callable[[LoopbackSshd, str, str], None]:
    """vzmaster.Client.upload_image through ``via``, onto a fresh name each run.

    ``first_push`` empties the client's digest cache first, so the client hashes the
    file as it sends it; otherwise the digest is known from an earlier push, as when
    one image goes to many nodes.
    """

    def run(sshd: LoopbackSshd, path: str, target: str) -> None:
        cache = DigestCache(os.path.join(os.path.dirname(path), "digests.json"))
        if first_push and os.path.exists(cache.path):
            os.unlink(cache.path)
        with Client(sshd.host, port=sshd.port, user=sshd.user, key_filename=sshd.key,
                    known_hosts=sshd.known_hosts, via=via, ssh_config=None,
                    ssh_program=["ssh", "-F", "none"], digests=cache) as node:
            node.upload_image(path, name="bench.img")
            node.remove_image("bench.img")

    return run


def openssh(kind: str) -> Callable[[LoopbackSshd, str, str], None]:
    """OpenSSH's own client: scp, or ssh into `cat >/dev/null`."""

    def run(sshd: LoopbackSshd, path: str, target: str) -> None:
        if kind == "scp":
            argv = ["scp", "-q"] + sshd.ssh_options() + [
                path, "{}@{}:{}".format(sshd.user, sshd.host, os.path.join(target, "scp.img"))]
            subprocess.run(argv, check=True)
        else:
            with open(path, "rb") as source:
                subprocess.run(["ssh"] + sshd.ssh_options() + [
                    "{}@{}".format(sshd.user, sshd.host), "cat >/dev/null"],
                    stdin=source, check=True)

    return run


def _prefault(directory: str, mib: int) -> None:
    """Touch the tmpfs's pages once: a VM's first touch of guest memory is slow
    (350 MB/s against 2.7 GB/s here) and would bill whichever case came first."""
    scratch = os.path.join(directory, "prefault")
    block = b"\0" * (1024 * 1024)
    with open(scratch, "wb") as out:
        for _ in range(mib):
            out.write(block)
    os.unlink(scratch)


def timed(func: Callable[[LoopbackSshd, str, str], None], sshd: LoopbackSshd, path: str,
          target: str) -> float:
    """MB/s of one upload of ``path``."""
    started = time.perf_counter()
    func(sshd, path, target)
    return os.path.getsize(path) / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it starts an sshd and mounts a tmpfs")
    with tempfile.TemporaryDirectory(prefix="vzbench-") as work:
        target = os.path.join(work, "tmpfs")
        os.mkdir(target)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size={}m".format(
            args.size_mib * 3 + 64), "vzbench", target], check=True)
        try:
            _prefault(target, args.size_mib * 3)
            path = os.path.join(work, "image.bin")
            with open(path, "wb") as out:
                for _ in range(args.size_mib):
                    out.write(os.urandom(1024 * 1024))
            with LoopbackSshd(work, vz_root=os.path.join(target, "vz")) as sshd:
                cases = [
                    ("paramiko bare channel -> cat", bare_channel),
                    ("paramiko SFTPClient.put", sftp_put),
                    ("vzmaster.Client (paramiko)", vz_upload("paramiko")),
                    ("vzmaster.Client (paramiko, 1st push)", vz_upload("paramiko", True)),
                    ("OpenSSH ssh -> cat", openssh("cat")),
                    ("OpenSSH scp", openssh("scp")),
                    ("vzmaster.Client (openssh)", vz_upload("openssh")),
                    ("vzmaster.Client (openssh, 1st push)", vz_upload("openssh", True)),
                ]
                for _, func in cases:
                    func(sshd, path, target)  # warm up: page cache, ControlMaster, sshd
                # Round robin, so a slow spell of this shared VM hits every case alike.
                samples: dict[str, list[float]] = {label: [] for label, _ in cases}
                for _ in range(args.runs):
                    for label, func in cases:
                        samples[label].append(timed(func, sshd, path, target))
                rates = {label: statistics.median(s) for label, s in samples.items()}
                for label, _ in cases:
                    print("{:38} {:7.1f} MB/s  (runs: {})".format(label, rates[label], " ".join(
                        "{:.0f}".format(r) for r in samples[label])))
        finally:
            subprocess.run(["umount", "-l", target], check=False)
    labels = [label for label, _ in cases]
    vz, vz_cold = rates[labels[2]], rates[labels[3]]
    vz_ssh, vz_ssh_cold = rates[labels[6]], rates[labels[7]]
    print()
    print("{} MiB, median of {} runs, aes128-gcm, loopback".format(args.size_mib, args.runs))
    bare, sftp, scp = rates[labels[0]], rates[labels[1]], rates[labels[5]]
    print("Client/paramiko bare channel : {:.2f}x, first push {:.2f}x (target >= 0.9)".format(
        vz / bare, vz_cold / bare))
    print("Client/paramiko SFTP put     : {:.2f}x, first push {:.2f}x (target >= 2)".format(
        vz / sftp, vz_cold / sftp))
    print("Client(openssh)/scp          : {:.2f}x, first push {:.2f}x (target >= 0.8)".format(
        vz_ssh / scp, vz_ssh_cold / scp))


if __name__ == "__main__":
    main()
