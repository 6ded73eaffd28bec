#!/usr/bin/env python3
"""Apps through a node's real init: the switch gap of a deploy, rollback time, disk.

In "VPS in a box" nodes (vzmaster.testing.box: real sshd, busybox init or sysvinit as
PID 1), through vzmaster.Client over paramiko, an app of busybox httpd on port 8080:

    gap       a prober inside the box connects to 127.0.0.1:8080 every 10 ms; the
              longest window in which connections were refused, during a deploy that
              switches v1 -> v2 (and back, --deploys times), against the reference: the
              same app stopped and started by hand (Client.stop, then Client.start);
    rollback  Client.rollback from the call to its answer, health-checked (an http check
              with min_uptime 0: "healthy" is the first good answer);
    disk      bytes under the state root after --deploys50 deploys alternating v1 and v2
              with keep 3, against (keep + 1) x one release (its tree and its image).

Run as root: python3 bench/apps.py [--deploys 5] [--deploys50 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import tarballs as tb  # noqa: E402
from vzmaster import Client  # noqa: E402
from vzmaster.digests import DigestCache  # noqa: E402
from vzmaster.testing.box import Box, Hub  # noqa: E402

ROOT = "/var/lib/vz"
PORT = 8080
HEALTH = {"http": "http://127.0.0.1:{}/".format(PORT), "timeout": 20, "min_uptime": 0}
PROBER = r"""
import json, socket, sys, threading, time
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
last_ok = None; failing_since = None; longest = 0.0; refused = 0; tries = 0
while not stop.is_set():
    now = time.monotonic(); tries += 1
    try:
        socket.create_connection(("127.0.0.1", %d), timeout=0.05).close()
        if failing_since is not None and last_ok is not None:
            longest = max(longest, now - last_ok)
        failing_since = None; last_ok = now
    except OSError:
        refused += 1
        if failing_since is None: failing_since = now
    time.sleep(max(0.0, 0.01 - (time.monotonic() - now)))
print(json.dumps({"longest": longest, "refused": refused, "tries": tries}))
""" % PORT


def connect(box: Box, digests: DigestCache) -> Client:
    opts = box.ssh_options()
    return Client(opts["host"], user="root", key_filename=opts["key_filename"],
                  known_hosts=opts["known_hosts"], sock=box.connect(), ssh_config=None,
                  via="paramiko", digests=digests)


def web_image(work: str, version: str) -> str:
    path = os.path.join(work, "web-{}.tar".format(version))
    script = "echo {} > /www/index.html; exec httpd -f -p {} -h /www".format(version, PORT)
    with open(path, "wb") as out:
        out.write(tb.busybox_image(["sh", "-c", script], tb.directory("rootfs/www")))
    return path


def probe(box: Box, action) -> dict:
    """Run ``action`` while the prober watches the port; the prober's findings."""
    prober = subprocess.Popen(
        ["nsenter", "-t", str(box.pid1), "-m", "-p", "-n", "-u", "-i", "-r", "-w", "--",
         "python3", "-c", PROBER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(0.3)
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    time.sleep(0.5)
    out, _ = prober.communicate(b"", timeout=30)
    found = json.loads(out)
    found["seconds"] = seconds
    return found


def gaps(box: Box, work: str, deploys: int) -> tuple[list[float], list[float], list[float]]:
    digests = DigestCache(os.path.join(work, "digests-{}.json".format(box.init)))
    with connect(box, digests) as node:
        images = [node.upload_image(web_image(work, v)).name for v in ("v1", "v2")]
        node.deploy("web", images[0], health=HEALTH)
        deploy, manual, rollback = [], [], []
        for index in range(deploys):
            image = images[(index + 1) % 2]
            deploy.append(probe(box, lambda image=image: node.deploy(
                "web", image, health=HEALTH))["longest"])
            manual.append(probe(box, lambda: (node.stop("web"), node.start("web")))
                          ["longest"])
            rollback.append(probe(box, lambda: node.rollback("web"))["seconds"])
            node.deploy("web", image, health=HEALTH)  # forward again for the next round
    return deploy, manual, rollback


def disk(box: Box, work: str, deploys: int, keep: int = 3) -> tuple[int, int]:
    digests = DigestCache(os.path.join(work, "digests-disk.json"))
    with connect(box, digests) as node:
        node.remove_app("web")  # its port, and its bytes
        images = [node.upload_image(web_image(work, v)).name for v in ("v1", "v2")]
        for index in range(deploys):
            node.deploy("disk", images[index % 2], keep=keep, health={"min_uptime": 0})
        release = next(r for r in node.releases("disk") if r.current)
        image_size = next(i.size for i in node.images() if i.name == release.image)
    used = _du(box, ROOT)
    one = _du(box, "{}/apps/disk/releases/{}".format(ROOT, release.release)) + image_size
    return used, one


def _du(box: Box, path: str) -> int:
    """Bytes of the files under ``path``: a running container's /proc, /sys and /dev
    mounts (chroot nodes mount them in the rootfs) are not vz's."""
    return int(box.exec(["du", "-sb", "--exclude=proc", "--exclude=sys", "--exclude=dev",
                         path], check=False).stdout.split()[0])


def ms(values: list[float]) -> str:
    return "median {:7.1f} ms  max {:7.1f} ms".format(statistics.median(values) * 1000,
                                                       max(values) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deploys", type=int, default=5)
    parser.add_argument("--deploys50", type=int, default=50)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="vz-bench-apps-")
    with Hub() as hub:
        for init in ("busybox", "sysv"):
            box = hub.box(init=init)
            try:
                deploy, manual, rollback = gaps(box, work, args.deploys)
                print("{:8} switch gap, deploy      {}".format(init, ms(deploy)))
                print("{:8} switch gap, stop+start  {}  (reference)".format(init, ms(manual)))
                print("{:8} gap ratio deploy/reference (max): {:.2f}".format(
                    init, max(deploy) / max(max(manual), 1e-9)))
                print("{:8} rollback call to healthy {}".format(init, ms(rollback)))
                if init == "sysv":
                    used, one = disk(box, work, args.deploys50)
                    print("{:8} disk after {} deploys: {:.1f} MB under {}; one release "
                          "{:.1f} MB; ratio {:.2f} (bound: keep + 1 = 4)".format(
                              init, args.deploys50, used / 1e6, ROOT, one / 1e6, used / one))
            finally:
                box.close()


if __name__ == "__main__":
    main()
