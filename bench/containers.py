#!/usr/bin/env python3
"""Containers through a node's real init: start latency per init, and status of many.

In "VPS in a box" nodes (vzmaster.testing.box: real sshd, busybox init or sysvinit as PID 1),
through vzmaster.Client over paramiko:

    start   Client.start(NAME) from the request to the answer "running" (start waits for
            the app), round robin between a busybox-init and a sysvinit box; the node's
            own time for the same call from ROOT/log/vzslave.log ("call N
            container.start: ok in X s"); the container is stopped between starts.
    status  N containers (default 200) of a `sleep` app started in a sysvinit box
            (without waiting: busybox init's main loop sleeps 1 s per spawn), then
            Client.status() of all, median of 10, client side and node side (log), and
            a cProfile of Containers.status() run in the box.

Run as root: python3 bench/containers.py [--starts 15] [--containers 200]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import tarballs as tb  # noqa: E402
from vzmaster import Client  # noqa: E402
from vzmaster.testing.box import SRC_DIR, Box, Hub  # noqa: E402
from vzmaster.digests import DigestCache  # noqa: E402

ROOT = "/var/lib/vz"
LOG = ROOT + "/log/vzslave.log"
CALL = re.compile(r"call (\d+) (\S+): ok in ([0-9.]+)s")
TARGET = 0.5  # seconds for the status of 200 containers


def connect(box: Box, digests: DigestCache) -> Client:
    """A Client to ``box`` over its real sshd, by paramiko (as tests/system/conftest.py)."""
    opts = box.ssh_options()
    return Client(opts["host"], user="root", key_filename=opts["key_filename"],
                  known_hosts=opts["known_hosts"], sock=box.connect(), ssh_config=None,
                  via="paramiko", digests=digests)


def deploy(node: Client, work: str, names: list[str], args: list[str]) -> None:
    """Upload one busybox image running ``args``; unpack it as each bundle of ``names``."""
    path = os.path.join(work, "sleep.tar")
    with open(path, "wb") as out:
        out.write(tb.busybox_image(args))
    node.upload_image(path, "sleep.tar")
    for name in names:
        node.unpack("sleep.tar", name)


def node_times(box: Box, op: str, after: int = 0) -> list[float]:
    """The node's own seconds for each ``op`` call logged after byte ``after`` of the log."""
    text = box.read_file(LOG).decode(errors="replace")[after:]
    return [float(m.group(3)) for m in CALL.finditer(text) if m.group(2) == op]


def log_size(box: Box) -> int:
    return len(box.read_file(LOG))


def median_ms(values: list[float]) -> str:
    return "{:8.1f}".format(statistics.median(values) * 1000) if values else "     n/a"


def start_latency(hub: Hub, work: str, starts: int) -> None:
    boxes = [hub.box(init=init) for init in ("busybox", "sysv")]
    digests = DigestCache(os.path.join(work, "digests.json"))
    nodes = {box.init: connect(box, digests) for box in boxes}
    client: dict[str, list[float]] = {box.init: [] for box in boxes}
    marks = {}
    try:
        for box in boxes:
            deploy(nodes[box.init], work, ["lat"], ["sleep", "100000"])
            nodes[box.init].start("lat")  # warm up: the launcher, page cache
            nodes[box.init].stop("lat", grace=1)
            marks[box.init] = log_size(box)
        for _ in range(starts):  # round robin: a slow spell of the VM hits both inits
            for box in boxes:
                node = nodes[box.init]
                started = time.perf_counter()
                status = node.start("lat")
                client[box.init].append(time.perf_counter() - started)
                if status.state != "running":
                    raise RuntimeError("{}: start gave {}".format(box.init, status))
                node.stop("lat", grace=1)
        print("Client.start() to \"running\", median of {} (ms)".format(starts))
        print("  {:10} {:>8} {:>8} {:>8}  {:>8} {:>8}".format(
            "init", "client", "p10", "p90", "node", "stop(n)"))
        for box in boxes:
            values = sorted(client[box.init])
            node_side = node_times(box, "container.start", marks[box.init])
            stops = node_times(box, "container.stop", marks[box.init])
            print("  {:10} {} {:8.1f} {:8.1f}  {} {}".format(
                box.init, median_ms(values), values[len(values) // 10] * 1000,
                values[len(values) * 9 // 10] * 1000, median_ms(node_side), median_ms(stops)))
        busybox, sysv = (statistics.median(client[b.init]) for b in boxes)
        print("  busybox/sysvinit: {:.2f}x".format(busybox / sysv))
    finally:
        for node in nodes.values():
            node.close()
        for box in boxes:
            box.close()


PROFILE = """
import cProfile, pstats, sys, time
sys.path.insert(0, {src!r})
from vzslave.config import Layout, Limits
from vzslave.handlers import Node
node = Node(Layout({root!r}), Limits())
started = time.perf_counter()
found = node.containers.status()
print("in-process Containers.status(): %d containers in %.3f s" % (
    len(found), time.perf_counter() - started))
profile = cProfile.Profile()
profile.enable()
node.containers.status()
profile.disable()
pstats.Stats(profile).sort_stats("cumulative").print_stats(22)
pstats.Stats(profile).sort_stats("tottime").print_stats(12)
"""


def many(hub: Hub, work: str, count: int, repeats: int, profile: bool) -> None:
    # 200 unpacked busybox rootfs of ~2 MB each: a disk that holds them.
    box = hub.box(init="sysv", disk_size="{}m".format(count * 3 + 256))
    digests = DigestCache(os.path.join(work, "digests-many.json"))
    names = ["c{:03d}".format(i) for i in range(count)]
    try:
        with connect(box, digests) as node:
            started = time.perf_counter()
            deploy(node, work, names, ["sleep", "100000"])
            unpacked = time.perf_counter() - started
            started = time.perf_counter()
            for name in names:
                node.start(name, wait=False)
            requested = time.perf_counter() - started
            deadline = time.monotonic() + 300
            while True:
                states = [s.state for s in node.status()]
                if states.count("running") == count or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            running = time.perf_counter() - started
            mark = log_size(box)
            samples = []
            for _ in range(repeats):
                started = time.perf_counter()
                found = node.status()
                samples.append(time.perf_counter() - started)
            node_side = node_times(box, "container.status", mark)
        print("\n{} containers of `sleep` in a sysvinit box".format(count))
        print("  unpack {} bundles: {:.1f} s; {} starts (wait=False): {:.1f} s ({:.0f} ms "
              "each); all running after {:.1f} s".format(
                  count, unpacked, count, requested, requested / count * 1000, running))
        print("  states: {}".format({s: states.count(s) for s in sorted(set(states))}))
        print("  Client.status() of all, median of {}: client {} ms, node {} ms "
              "(target < {:.0f} ms): {:.2f}x the target".format(
                  repeats, median_ms(samples).strip(), median_ms(node_side).strip(),
                  TARGET * 1000, statistics.median(samples) / TARGET))
        print("  runs (client, ms): {}".format(" ".join(
            "{:.0f}".format(s * 1000) for s in samples)))
        print("  {} containers answered".format(len(found)))
        if profile:
            done = box.exec([sys.executable, "-c", PROFILE.format(src=SRC_DIR, root=ROOT)],
                            timeout=120)
            print("\ncProfile of Containers.status() in the box:")
            print(done.stdout.decode())
    finally:
        box.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=15)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--only", choices=("start", "status"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it starts VPS-in-a-box nodes")
    with tempfile.TemporaryDirectory(prefix="vzbench-") as work, Hub() as hub:
        if args.only != "status":
            start_latency(hub, work, args.starts)
        if args.only != "start":
            many(hub, work, args.containers, args.repeats, not args.no_profile)


if __name__ == "__main__":
    main()
