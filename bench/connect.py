#!/usr/bin/env python3
"""Connection latency: from nothing to a session that answered hello, against references.

All to the same loopback sshd (bench/sshd.py). References: a paramiko connect, auth
and `true`; OpenSSH's `ssh host true` with no shared connection. Prints median
milliseconds and ratios. Run as root: python3 bench/connect.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.sshd import LoopbackSshd  # noqa: E402
from bench.upload import paramiko_client  # noqa: E402
from vzmaster import Client  # noqa: E402
from vzmaster.digests import DigestCache  # noqa: E402


def paramiko_true(sshd: LoopbackSshd) -> None:
    client = paramiko_client(sshd)
    try:
        _, stdout, _ = client.exec_command("true")
        stdout.channel.recv_exit_status()
    finally:
        client.close()


def openssh_true(sshd: LoopbackSshd) -> None:
    subprocess.run(["ssh"] + sshd.ssh_options() + ["-o", "ControlMaster=no",
                   "-o", "ControlPath=none", "{}@{}".format(sshd.user, sshd.host), "true"],
                   check=True)


def vz_hello(via: str, digests: DigestCache) -> Callable[[LoopbackSshd], None]:
    def run(sshd: LoopbackSshd) -> None:
        with Client(sshd.host, port=sshd.port, user=sshd.user, key_filename=sshd.key,
                    known_hosts=sshd.known_hosts, via=via, ssh_config=None,
                    ssh_program=["ssh", "-F", "none"], digests=digests):
            pass
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it starts an sshd")
    with tempfile.TemporaryDirectory(prefix="vzbench-") as work:
        digests = DigestCache(os.path.join(work, "digests.json"))
        with LoopbackSshd(work, vz_root=os.path.join(work, "vz")) as sshd:
            cases = [
                ("paramiko connect+auth+`true`", paramiko_true),
                ("vzmaster.Client (paramiko) + hello", vz_hello("paramiko", digests)),
                ("OpenSSH `ssh host true`", openssh_true),
                ("vzmaster.Client (openssh, mux) + hello", vz_hello("openssh", digests)),
            ]
            for _, func in cases:
                func(sshd)  # warm up: page cache, sshd, the ControlMaster
            samples: dict[str, list[float]] = {label: [] for label, _ in cases}
            for _ in range(args.runs):
                for label, func in cases:
                    started = time.perf_counter()
                    func(sshd)
                    samples[label].append((time.perf_counter() - started) * 1000)
    medians = {label: statistics.median(s) for label, s in samples.items()}
    for label, _ in cases:
        print("{:42} {:7.1f} ms".format(label, medians[label]))
    labels = [label for label, _ in cases]
    print("\nmedian of {} runs, loopback".format(args.runs))
    print("Client(paramiko)/paramiko     : {:.2f}x the time".format(
        medians[labels[1]] / medians[labels[0]]))
    print("Client(openssh, mux)/ssh true : {:.2f}x the time".format(
        medians[labels[3]] / medians[labels[2]]))


if __name__ == "__main__":
    main()
