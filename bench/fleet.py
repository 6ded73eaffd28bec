#!/usr/bin/env python3
"""The fleet across "VPS in a box" nodes: how deploy and plan grow with the node count.

    deploy    a first deploy of one app (busybox httpd, an http health check, min_uptime 1)
              to 1 node and to 8 nodes (replicas = nodes) of one init (BusyBox init's
              respawn sleeps 1 s: never mixed with sysvinit's), on fresh nodes, from the
              library's call to its return; target: 8 nodes <= 1.5 x 1 node. With the
              machine's busy CPU-seconds: all "nodes" share this machine's cores;
    again     the same deploy again with nothing changed (8 nodes): target < 2 s. Each
              run is a new Fleet, so it pays its SSH logins as a user's command does;
    plan      plan of that app on 1, 8 and 32 nodes (fresh sessions each time), and how
              its cost grows per node; against the reference ``ssh -s NODE vzslave``-free
              floor: N paramiko logins alone (Client.hello), in the same run.

Round robin, medians of --runs. Run as root: python3 bench/fleet.py [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import tarballs as tb  # noqa: E402
from vzmaster import Client  # noqa: E402
from vzmaster.digests import DigestCache  # noqa: E402
from vzmaster.fleet import Fleet, load_config  # noqa: E402
from vzmaster.testing.box import Box, Hub  # noqa: E402

PORT = 8080


def write_config(work: str, hub: Hub, boxes: list[Box], replicas: int) -> str:
    lines = ["ssh: {{user: root, key: {}, known_hosts: {}}}".format(
        hub.client_key, hub.known_hosts), "nodes:"]
    lines += ["  b{}: {{host: {}}}".format(i, box.ip) for i, box in enumerate(boxes)]
    lines += ["apps:", "  web:", "    image: web.tar", "    replicas: {}".format(replicas),
              "    ports: [{}/tcp]".format(PORT),
              '    health: {{http: "http://127.0.0.1:{}/", min_uptime: 1}}'.format(PORT)]
    path = os.path.join(work, "vz.yml")
    with open(path, "w") as config:
        config.write("\n".join(lines) + "\n")
    return path


def fleet_of(path: str, boxes: list[Box], digests: DigestCache) -> Fleet:
    by_name = {"b{}".format(i): box for i, box in enumerate(boxes)}

    def connector(name: str, options: object) -> Client:
        sock = by_name[name].connect()
        return Client(options=dataclasses.replace(options, sock=sock, ssh_config=None),
                      digests=digests)

    return Fleet(load_config(path), connector=connector, digests=digests)


def cpu_busy() -> float:
    """CPU-seconds this machine (every box, and this master) has spent busy so far."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(call: object, cpu: list[float] | None = None) -> float:
    busy = cpu_busy()
    started = time.monotonic()
    call()  # type: ignore[operator]
    if cpu is not None:
        cpu.append(cpu_busy() - busy)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-nodes", type=int, default=32)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="vz-bench-fleet-")
    digests = DigestCache(os.path.join(work, "digests.json"))
    with open(os.path.join(work, "web.tar"), "wb") as image:
        image.write(tb.busybox_image(["sh", "-c", "echo v1 > /www/index.html; exec httpd -f "
                                      "-p {} -h /www".format(PORT)],
                                     tb.directory("rootfs/www")))
    inits = ("sysv", "busybox")
    deploys: dict[tuple[str, int], list[float]] = {(i, n): [] for i in inits for n in (1, 8)}
    cpu: dict[tuple[str, int], list[float]] = {key: [] for key in deploys}
    again: list[float] = []
    plans: dict[int, list[float]] = {}
    logins: dict[int, list[float]] = {}
    with Hub() as hub:
        for _ in range(args.runs):
            for init, count in deploys:
                boxes = [hub.box(init=init) for _ in range(count)]
                path = write_config(work, hub, boxes, count)
                with fleet_of(path, boxes, digests) as fleet:
                    report = None

                    def deploy() -> None:
                        nonlocal report
                        report = fleet.deploy()

                    deploys[(init, count)].append(timed(deploy, cpu[(init, count)]))
                    assert report is not None and report.ok, report
                if count == 8:
                    with fleet_of(path, boxes, digests) as fleet:
                        again.append(timed(fleet.deploy))
                for box in boxes:
                    box.close()
        sizes = [n for n in (1, 8, 32) if n <= args.max_nodes]
        boxes = [hub.box(init="busybox") for _ in range(max(sizes))]
        for _ in range(args.runs):
            for count in sizes:
                path = write_config(work, hub, boxes[:count], 1)
                with fleet_of(path, boxes[:count], digests) as fleet:
                    plans.setdefault(count, []).append(timed(fleet.plan))

                def login_all(some: list[Box] = boxes[:count]) -> None:
                    for client in [Client(box.ip, user="root", key_filename=hub.client_key,
                                          known_hosts=hub.known_hosts, ssh_config=None,
                                          sock=box.connect(), digests=digests)
                                   for box in some]:
                        client.close()

                logins.setdefault(count, []).append(timed(login_all))
    cores = os.cpu_count() or 1
    for init in inits:
        one, eight = (statistics.median(deploys[(init, n)]) for n in (1, 8))
        print("deploy, {:7} 1 node  {:6.2f} s".format(init, one))
        print("deploy, {:7} 8 nodes {:6.2f} s   ratio {:.2f} (target <= 1.5)".format(
            init, eight, eight / one))
        used = {n: statistics.median(cpu[(init, n)]) for n in (1, 8)}
        print("  busy CPU: 1 node {:.2f} cpu-s, 8 nodes {:.2f} cpu-s ({:.0f}% of {} cores "
              "over the 8-node deploy); the 7 more nodes' CPU alone, on {} cores: +{:.2f} s"
              .format(used[1], used[8], 100 * used[8] / (eight * cores), cores, cores,
                      (used[8] - used[1]) / cores))
    print("deploy again, 8      {:7.2f} s   (target < 2 s)".format(statistics.median(again)))
    base = statistics.median(plans[1])
    for count in sorted(plans):
        value = statistics.median(plans[count])
        login = statistics.median(logins[count])
        print("plan, {:2} nodes       {:7.2f} s   x{:.1f} of 1 node, {:.0f} ms per node; "
              "logins alone, one by one: {:.2f} s".format(
                  count, value, value / base, 1000 * value / count, login))


if __name__ == "__main__":
    main()
