#!/usr/bin/env python3
"""The fleet on this machine: three local test nodes, one vz.yml, a node that vanishes.

Run as root after ./quickstart.sh (or .ci/install). Three "VPS in a box" nodes (busybox
init and sysvinit, each with OpenSSH sshd and the vzslave subsystem) stand in for three
VPS from three vendors. The app is built from vz.yml's recipe (mini_httpd and the
libraries it loads), two replicas of it are deployed, one node vanishes, and deploy is
run again. Every vzmaster command is printed before it runs; run them yourself against
real nodes.
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

from vzmaster.testing.box import Hub, missing_requirements

SERVER = "/usr/sbin/mini_httpd"  # Debian's mini-httpd: small, dynamically linked


def say(text: str) -> None:
    print("\n\033[1m== {}\033[0m".format(text), flush=True)


def main() -> None:
    reasons = missing_requirements("sysv")
    if not os.path.exists(SERVER):
        reasons.append("{} is missing: apt install mini-httpd".format(SERVER))
    if reasons:
        raise SystemExit("cannot make local test nodes here: " + "; ".join(reasons))
    vzmaster = os.path.join(os.path.dirname(sys.executable), "vzmaster")
    work = tempfile.mkdtemp(prefix="vz-fleet-")
    started = time.monotonic()
    try:
        with Hub() as hub:
            def run(*args: str, check: bool = True) -> str:
                """Run ``vzmaster ARGS`` in the project directory, from the nodes' network."""
                print("$ vzmaster " + shlex.join(args), flush=True)
                done = subprocess.run(["ip", "netns", "exec", hub.netns, vzmaster, *args],
                                      cwd=work, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
                print(done.stdout, end="", flush=True)
                if check and done.returncode != 0:
                    raise SystemExit("vzmaster exited with status {}".format(done.returncode))
                return done.stdout

            say("Three local test nodes (two vendors' worth of busybox init, one sysvinit)")
            boxes = {"fra1": hub.box(init="busybox"), "ams1": hub.box(init="sysv"),
                     "nyc1": hub.box(init="busybox")}
            for name, box in boxes.items():
                print("{}: {} ({} init)".format(name, box.ip, box.init))

            say("The project: a page, and vz.yml declaring the nodes and the app")
            os.mkdir(os.path.join(work, "www"))
            with open(os.path.join(work, "www", "index.html"), "w") as page:
                page.write("<h1>Hello from the fleet</h1>\n")
            vz_yml = textwrap.dedent("""\
                ssh: {{user: root, key: {key}, known_hosts: {known}, connect_timeout: 3}}
                nodes:
                  fra1: {{host: {fra1}, groups: [eu]}}
                  ams1: {{host: {ams1}, groups: [eu]}}
                  nyc1: {{host: {nyc1}}}
                apps:
                  hello:
                    build:
                      ldd: [{server}]
                      add: ["www:/www"]
                      args: [{server}, -D, -h, 0.0.0.0, -p, "8080", -d, /www, -u, nobody,
                             -l, /dev/stderr]
                    replicas: 2
                    ports: [8080/tcp]
                    health: {{http: "http://127.0.0.1:8080/", timeout: 20}}
                """).format(key=hub.client_key, known=hub.known_hosts, server=SERVER,
                            **{name: box.ip for name, box in boxes.items()})
            with open(os.path.join(work, "vz.yml"), "w") as config:
                config.write(vz_yml)
            print(vz_yml, end="")

            say("plan: what deploy would do (nothing is built or changed)")
            run("plan")
            say("deploy: build, push to two nodes in parallel, start, health-check")
            run("deploy")
            run("ps")

            say("deploy again: nothing changed, so nothing is sent or restarted")
            run("deploy")

            victim = next(line.split()[1] for line in run("ps", "--no-check").splitlines()[1:])
            say("{} vanishes with its vendor (power cut, network gone)".format(victim))
            boxes[victim].vanish()
            run("ps", "--no-check")

            say("Order another VPS some day; tonight, just rerun deploy")
            run("deploy")
            run("ps")
            run("logs", "hello", "-n", "3")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nDone in {:.1f} s; the test nodes are gone. Next: README.md, 'Fleet'".format(
        time.monotonic() - started))


if __name__ == "__main__":
    main()
