#!/usr/bin/env python3
"""``node add`` against fresh "VPS in a box" nodes (root's password, no vz, no msgpack):
from the call to a verified hello, and the share of each step (login, probe, key, agent
upload + unzip + compile, Subsystem + sshd -t + reload, verify, vz.yml), and inside them
the agent's upload and sshd's reload, against the reference in the same run: a bare
paramiko password login running ``true``.

Run as root: python3 bench/nodeadd.py [--runs 5] [--init systemd]
(default: busybox and sysvinit boxes in turn; systemd adds the supervisor unit's step)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paramiko  # noqa: E402

from vzmaster.agent import build_agent  # noqa: E402
from vzmaster.provision import remote, sshd  # noqa: E402
from vzmaster.provision.add import NodeAdd, add_node, public_key_for  # noqa: E402
from vzmaster.testing.box import Hub  # noqa: E402

PASSWORD = "bench-password"
timed: dict[str, float] = {}  # inside the steps: the upload of the agent, sshd's reload


def timing(what: str, function: Any, only: Any = lambda *args: True) -> Any:
    """``function`` with the time of its calls (those ``only`` picks) added to timed[what]."""
    def timed_call(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            if only(*args):
                timed[what] = timed.get(what, 0.0) + time.monotonic() - started
    return timed_call


remote.Shell.write_file = timing(
    "  upload", remote.Shell.write_file, lambda shell, path, *rest: path.endswith(".pyz"))
sshd.reload = timing("  sshd reload", sshd.reload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--init", choices=("busybox", "sysv", "systemd"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="vz-bench-nodeadd-")
    built = build_agent(work)
    totals: list[float] = []
    logins: list[float] = []
    shares: dict[str, list[float]] = {}
    with Hub() as hub:
        public, private = public_key_for(hub.client_key)
        for run in range(args.runs):
            init = args.init or ("sysv" if run % 2 else "busybox")
            box = hub.box(init=init, root_password=PASSWORD)
            started = time.monotonic()
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            client.connect(box.ip, username="root", password=PASSWORD, sock=box.connect(),
                           look_for_keys=False, allow_agent=False)
            client.exec_command("true")[1].read()
            client.close()
            logins.append(time.monotonic() - started)
            marks: list[tuple[str, float]] = []
            ask = NodeAdd(name="n1", host=box.ip, config=os.path.join(work, "vz.yml"),
                          public_key=public, private_key=private,
                          known_hosts=os.path.join(work, "known_hosts{}".format(run)),
                          password=PASSWORD, sock_factory=box.connect)
            timed.clear()
            started = time.monotonic()
            add_node(ask, lambda step, marks=marks: marks.append((step.what, time.monotonic())),
                     agent=lambda: built)
            totals.append(time.monotonic() - started)
            last = started
            for what, when in marks:
                shares.setdefault(what, []).append(when - last)
                last = when
            for what, spent in timed.items():
                shares.setdefault(what, []).append(spent)
            box.close()
    total = statistics.median(totals)
    print("agent zipapp: {} bytes (stored)".format(built.size))
    print("node add, to a verified hello: {:.2f} s (median of {}); a bare password login "
          "+ true: {:.3f} s ({:.0f}x)".format(total, args.runs, statistics.median(logins),
                                              total / statistics.median(logins)))
    for what, values in shares.items():
        value = statistics.median(values)
        print("  {:16} {:6.3f} s  {:4.0f}%".format(what, value, 100 * value / total))


if __name__ == "__main__":
    main()
