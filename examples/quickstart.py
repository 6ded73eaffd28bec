#!/usr/bin/env python3
"""vz end to end on this machine: build an image, a local test node, push, start, kill.

Run by ../quickstart.sh (as root, after installing what vz needs). The test node is
a "VPS in a box" (vzmaster.testing.box): its own network, a real init as PID 1 and the
stock OpenSSH sshd with the vzslave subsystem, as on a rented VPS. Every vzmaster
command it runs is printed first, so you can run them yourself against a real node.
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from vzmaster.testing.box import Hub, missing_requirements


def say(text: str) -> None:
    print("\n\033[1m== {}\033[0m".format(text), flush=True)


def run(argv: list, netns: str = "") -> str:
    """Run and echo a command (in the hub's network namespace if ``netns``)."""
    print("$ " + shlex.join(argv), flush=True)
    full = ["ip", "netns", "exec", netns] + argv if netns else argv
    done = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        raise SystemExit("command failed with status {}".format(done.returncode))
    return done.stdout


SERVER = "/usr/sbin/mini_httpd"  # Debian's mini-httpd: small, dynamically linked


def main() -> None:
    reasons = missing_requirements("busybox")
    if not os.path.exists(SERVER):
        reasons.append("{} is missing: apt install mini-httpd".format(SERVER))
    if reasons:
        raise SystemExit("cannot make a local test node here: " + "; ".join(reasons))
    vzmaster = os.path.join(os.path.dirname(sys.executable), "vzmaster")
    work = tempfile.mkdtemp(prefix="vz-quickstart-")
    started = time.monotonic()
    try:
        with Hub() as hub:
            say("A local test node: its own network, busybox init as PID 1, OpenSSH sshd")
            box = hub.box(init="busybox")
            print("{} is up at {} (real sshd, key login as root)".format(box.name, box.ip))
            ssh = ["-l", "root", "-i", hub.client_key, "--known-hosts", hub.known_hosts]

            say("Build a minimal image of a real server: mini_httpd and the libraries "
                "it loads (ldd-trace), a page, a config.json")
            www = os.path.join(work, "www")
            os.mkdir(www)
            with open(os.path.join(www, "index.html"), "w") as page:
                page.write("<h1>Hello from a vz container</h1>\n")
            image = os.path.join(work, "hello.tar.zst")
            run([vzmaster, "build", "--ldd", SERVER, "--add", www + ":/www", "-o", image,
                 "--", SERVER, "-D", "-h", "0.0.0.0", "-p", "8080", "-d", "/www",
                 "-u", "nobody", "-l", "/dev/stderr"])
            run([vzmaster, "inspect", image])

            say("Push it to the node over SSH (sha256-verified, resumable)")
            run([vzmaster, "push", box.ip, image] + ssh, hub.netns)
            run([vzmaster, "images", box.ip] + ssh, hub.netns)

            say("Pushing again sends nothing: the node already has those bytes")
            run([vzmaster, "push", box.ip, image] + ssh, hub.netns)

            say("Unpack it into a bundle on the node (the tarball is treated as hostile)")
            run([vzmaster, "unpack", box.ip, "hello.tar.zst", "hello"] + ssh, hub.netns)
            run([vzmaster, "bundles", box.ip] + ssh, hub.netns)

            say("Start it: the node's own init runs it from an /etc/inittab respawn line")
            run([vzmaster, "start", box.ip, "hello"] + ssh, hub.netns)
            run(["ssh", "-F", "none", "-i", hub.client_key, "-o", "BatchMode=yes",
                 "-o", "UserKnownHostsFile=" + hub.known_hosts, "root@" + box.ip,
                 "grep vzrun /etc/inittab"], hub.netns)
            fetch = [shutil.which("busybox") or "/bin/busybox", "wget", "-q", "-O", "-",
                     "http://{}:8080/".format(box.ip)]
            for _ in range(50):  # busybox init spawns within a second or two
                if subprocess.run(["ip", "netns", "exec", hub.netns] + fetch,
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            run(fetch, hub.netns)

            say("Kill the app: init brings it back; status and logs tell what happened")
            run(["ssh", "-F", "none", "-i", hub.client_key, "-o", "BatchMode=yes",
                 "-o", "UserKnownHostsFile=" + hub.known_hosts, "root@" + box.ip,
                 "pkill -KILL mini_httpd"], hub.netns)
            time.sleep(2.5)
            run([vzmaster, "status", box.ip] + ssh, hub.netns)
            run([vzmaster, "logs", box.ip, "hello"] + ssh, hub.netns)

            say("Stop it: the entry goes, every process and mount of it is gone")
            run([vzmaster, "stop", box.ip, "hello"] + ssh, hub.netns)

            say("What vzslave says about the node")
            run([vzmaster, "hello", box.ip] + ssh, hub.netns)

            say("Clean up")
            run([vzmaster, "rm-bundle", box.ip, "hello"] + ssh, hub.netns)
            run([vzmaster, "rm-image", box.ip, "hello.tar.zst"] + ssh, hub.netns)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nDone in {:.1f} s; the test node is gone. Next: README.md".format(
        time.monotonic() - started))


if __name__ == "__main__":
    main()
