"""The fleet on three boxes (busybox init and sysvinit mixed), real sshd, real apps: a
rolling deploy that always serves, a failed health check, rollback, a vanished node and
one that comes back, a node killed mid-deploy, idempotence, volumes, secrets, a port
clash, an Ansible inventory. Fleet commands run through the library (a connector that
reaches the boxes' sshd) or as the ``vzmaster`` command in the hub's network namespace."""

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests import tarballs as tb
from tests.system.conftest import ROOT
from tests.system.test_firewall import reachable, serve
from vzmaster import Client
from vzmaster.fleet import Events, Fleet, load_config

PORT = 8080
HEALTH = {"http": "http://127.0.0.1:{}/".format(PORT), "timeout": 10, "min_uptime": 1}
VZMASTER = os.path.join(os.path.dirname(sys.executable), "vzmaster")
SECRET = "s3cr3t-Fleet-T0ken"


def web_image(directory, version, port=PORT):
    """busybox httpd serving ``version`` (and $TOKEN's length) on ``port``, adding a line
    to /data/seen when /data is a volume."""
    path = os.path.join(str(directory), "web.tar")
    script = ('echo {v} > /www/index.html; echo "token ${{#TOKEN}}" > /www/token; '
              "[ -d /data ] && echo {v} >> /data/seen; "
              "exec httpd -f -p {p} -h /www").format(v=version, p=port)
    with open(path, "wb") as image:
        image.write(tb.busybox_image(["sh", "-c", script], tb.directory("rootfs/www")))
    return path


class Boxes:
    """Three boxes as the nodes n1, n2, n3 of a vz.yml in ``directory``."""

    def __init__(self, make_box, directory, inits=("busybox", "sysv", "busybox")):
        self.directory = directory
        self.boxes = {"n{}".format(i): make_box(init=init) for i, init in enumerate(inits, 1)}
        self.hub = next(iter(self.boxes.values())).hub

    def write(self, apps, nodes_extra="", top=""):
        lines = ["ssh: {{user: root, key: {}, known_hosts: {}, connect_timeout: 3}}".format(
            self.hub.client_key, self.hub.known_hosts), top, "nodes:"]
        lines += ["  {}: {{host: {}}}".format(name, box.ip) for name, box in self.boxes.items()]
        lines += [nodes_extra, "apps:", apps]
        path = os.path.join(str(self.directory), "vz.yml")
        with open(path, "w") as config:
            config.write("\n".join(lines) + "\n")
        return path

    def fleet(self, **options):
        def connector(name, ssh):
            sock = self.boxes[name].connect(timeout=3)
            return Client(options=dataclasses.replace(ssh, sock=sock, ssh_config=None))

        return Fleet(load_config(os.path.join(str(self.directory), "vz.yml")),
                     connector=connector, **options)

    def cli(self, *args, check=True):
        done = subprocess.run(["ip", "netns", "exec", self.hub.netns, VZMASTER, *args],
                              cwd=str(self.directory), capture_output=True, text=True,
                              timeout=180)
        if check and done.returncode != 0:
            pytest.fail("vzmaster {} exited {}:\n{}{}".format(
                " ".join(args), done.returncode, done.stdout, done.stderr))
        return done

    def page(self, name, path="/"):
        """What node ``name``'s app answers (asked inside the box), or None."""
        box = self.boxes[name]
        if not box.running():
            return None
        result = box.exec(["python3", "-c", "import sys, urllib.request; sys.stdout.write("
                           "urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())",
                           "http://127.0.0.1:{}{}".format(PORT, path)], check=False)
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def serving(self):
        """{node: page} of every node whose app answers."""
        found = {name: self.page(name) for name in self.boxes}
        return {name: page for name, page in found.items() if page is not None}


WEB = """  web:
    image: web.tar
    replicas: 2
    ports: [8080/tcp]
    health: {{http: "http://127.0.0.1:8080/", timeout: {timeout}, min_uptime: 1}}
    max_unavailable: 1
{extra}"""


def web_app(timeout=10, extra=""):
    return WEB.format(timeout=timeout, extra=extra)


@pytest.fixture
def nodes(make_box, tmp_path):
    return Boxes(make_box, tmp_path)


def deployed(nodes, version="v1", **app):
    """vz.yml with the web app at ``version``, deployed."""
    web_image(nodes.directory, version)
    nodes.write(web_app(**app))
    with nodes.fleet() as fleet:
        report = fleet.deploy()
    assert report.ok, report.failures
    return report


class Prober:
    """Asks both replicas, from the hub, every 50 ms: which answered each time."""

    def __init__(self, nodes, names):
        self.nodes, self.names = nodes, names
        self.rounds = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ask(self, name):
        try:
            sock = self.nodes.boxes[name].connect(PORT, timeout=1)
        except OSError:
            return False
        try:
            sock.settimeout(2)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return b"200" in sock.recv(64)
        except OSError:
            return False
        finally:
            sock.close()

    def _run(self):
        while not self._stop.is_set():
            self.rounds.append([name for name in self.names if self._ask(name)])
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_two_replicas_then_v2_rolls_with_one_answering_throughout(nodes):
    deployed(nodes, "v1")
    placed = sorted(nodes.serving())
    assert len(placed) == 2 and set(nodes.serving().values()) == {"v1"}
    web_image(nodes.directory, "v2")
    with Prober(nodes, placed) as prober, nodes.fleet() as fleet:
        report = fleet.deploy()
    assert report.ok, report.failures
    assert nodes.serving() == {name: "v2" for name in placed}
    assert len(prober.rounds) > 20 and all(prober.rounds), prober.rounds


def test_a_release_failing_its_check_exits_nonzero_and_the_fleet_serves_v2(nodes):
    deployed(nodes, "v2", timeout=4)
    web_image(nodes.directory, "v3", port=9090)  # its check asks 8080: it never passes
    done = nodes.cli("deploy", check=False)
    assert done.returncode == 1
    assert "HEALTH_FAILED" in done.stderr and "web" in done.stderr
    assert "8080" in done.stderr  # what the check saw
    assert "last lines of its log" in done.stderr
    assert set(nodes.serving().values()) == {"v2"} and len(nodes.serving()) == 2
    assert "skipped" in done.stdout  # the second replica was never touched


def test_rollback_rolls_every_replica_back(nodes):
    deployed(nodes, "v1")
    deployed(nodes, "v2")
    done = nodes.cli("rollback", "web")
    assert done.stdout.count("release 1") == 2
    assert set(nodes.serving().values()) == {"v1"}


def test_a_vanished_nodes_replica_goes_to_the_third_node_and_answers_there(nodes):
    deployed(nodes)
    placed = sorted(nodes.serving())
    [spare] = sorted(set(nodes.boxes) - set(placed))
    nodes.boxes[placed[0]].vanish()
    done = nodes.cli("deploy")
    assert "{} did not answer".format(placed[0]) in done.stderr
    assert sorted(nodes.serving()) == sorted([placed[1], spare])


def test_a_node_that_comes_back_has_its_surplus_replica_removed(nodes):
    deployed(nodes)
    placed = sorted(nodes.serving())
    nodes.boxes[placed[0]].disconnect()
    with nodes.fleet() as fleet:
        assert fleet.deploy().ok
    nodes.boxes[placed[0]].reconnect()
    assert len(nodes.serving()) == 3  # the partitioned node ran on
    with nodes.fleet() as fleet:
        plan = fleet.plan()
        report = fleet.deploy()
    assert [(s.action, s.reasons[0].split(":")[0]) for s in plan.changes] == [
        ("remove", "surplus")]
    assert report.ok and len(nodes.serving()) == 2


def test_a_node_killed_mid_deploy_does_not_stop_the_others(nodes):
    deployed(nodes, "v1")
    placed = sorted(nodes.serving())
    web_image(nodes.directory, "v2")

    class KillFirst(Events):
        killed = None

        def stage(self, node, app, stage, detail=""):
            if stage == "deploy" and self.killed is None:
                self.killed = node
                nodes.boxes[node].vanish()

    events = KillFirst()
    with nodes.fleet() as fleet:
        report = fleet.deploy(events=events)
    survivor = [name for name in placed if name != events.killed]
    assert [(o.node, o.result) for o in report.failures] == [(events.killed, "lost")]
    assert nodes.serving() == {survivor[0]: "v2"}


def test_a_second_deploy_sends_no_bytes_and_restarts_nothing(nodes):
    deployed(nodes)
    with nodes.fleet() as fleet:
        before, _ = fleet.ps(check=False)

        class Count(Events):
            stages = []

            def stage(self, node, app, stage, detail=""):
                self.stages.append(stage)

            def progress(self, node, app, done, total):
                self.stages.append("bytes")

        events = Count()
        report = fleet.deploy(events=events)
        after, _ = fleet.ps(check=False)
    assert report.outcomes == [] and events.stages == []
    assert [(r.node, r.pid, r.restarts) for r in after] == [
        (r.node, r.pid, r.restarts) for r in before]


def test_a_volume_survives_across_releases(nodes):
    extra = "    volumes: {data: /data}\n"
    deployed(nodes, "v1", extra=extra)
    deployed(nodes, "v2", extra=extra)
    for name in nodes.serving():
        seen = nodes.boxes[name].read_file(ROOT + "/volumes/web/data/seen").decode()
        assert seen.split() == ["v1", "v2"]


def test_secrets_come_from_dotenv_and_never_show_in_ps_or_logs(nodes):
    with open(os.path.join(str(nodes.directory), ".env"), "w") as dotenv:
        dotenv.write("# the app's token\nTOKEN='{}'\n".format(SECRET))
    web_image(nodes.directory, "v1")
    nodes.write(web_app(extra="    secrets: [TOKEN]\n"))
    deployed_out = nodes.cli("deploy")
    pages = {name: nodes.page(name, "/token") for name in nodes.serving()}
    assert set(pages.values()) == {"token {}".format(len(SECRET))}
    shown = [deployed_out, nodes.cli("ps", "--json"), nodes.cli("logs", "web"),
             nodes.cli("plan"), nodes.cli("releases", "web")]
    for done in shown:
        assert SECRET not in done.stdout + done.stderr


def test_a_port_clash_is_refused_in_plan_before_any_change(nodes):
    web_image(nodes.directory, "v1")
    nodes.write(web_app().replace("replicas: 2", "nodes: [n1]") + (
        "  proxy:\n    image: web.tar\n    nodes: [n1]\n    ports: [8080/tcp]\n"))
    plan = nodes.cli("plan", check=False)
    assert plan.returncode == 1
    assert "apps proxy and web both declare port 8080/tcp" in plan.stderr
    deploy = nodes.cli("deploy", check=False)
    assert deploy.returncode == 1 and "refused before any change" in deploy.stderr
    assert nodes.serving() == {}


def test_ps_lists_every_replica_with_the_keys_scripts_read(nodes):
    deployed(nodes)
    rows = json.loads(nodes.cli("ps", "--json").stdout)
    assert len(rows) == 2
    for row in rows:
        assert {"app", "node", "release", "image", "state", "pid", "restarts"} <= set(row)
        assert (row["app"], row["state"], row["health"]) == ("web", "running", "passing")


def test_logs_merge_the_replicas_each_line_after_its_node(nodes):
    deployed(nodes)
    out = nodes.cli("logs", "web", "-n", "5").stdout
    prefixes = {line.split("|")[0].strip() for line in out.splitlines()}
    assert prefixes == set(nodes.serving())


def test_plan_shows_a_replica_stopped_by_hand_and_deploy_starts_it(nodes):
    deployed(nodes)
    name = sorted(nodes.serving())[0]
    nodes.cli("stop", name, "web")
    assert "> web on {}: start (stopped by hand)".format(name) in nodes.cli("plan").stdout
    nodes.cli("deploy")
    assert name in nodes.serving()


def test_a_node_name_from_vz_yml_works_as_host_for_node_commands(nodes):
    deployed(nodes)
    name = sorted(nodes.serving())[0]
    assert "web" in nodes.cli("apps", name).stdout


def test_an_ansible_ini_inventory_gives_the_nodes_and_groups(nodes):
    with open(os.path.join(str(nodes.directory), "hosts.ini"), "w") as inventory:
        inventory.write("[eu]\n" + "".join(
            "{} ansible_host={}\n".format(name, box.ip)
            for name, box in list(nodes.boxes.items())[:2]))
    web_image(nodes.directory, "v1")
    path = nodes.write(web_app().replace("replicas: 2", "nodes: [eu]"))
    text = open(path).read()
    head, _, apps = text.partition("nodes:")
    with open(path, "w") as config:
        config.write(head + "inventory: hosts.ini\napps:" + apps.split("apps:", 1)[1])
    nodes.cli("deploy")
    assert sorted(nodes.serving()) == ["n1", "n2"]


def test_the_nodes_that_do_not_answer_are_reported_within_the_timeout(nodes):
    deployed(nodes)
    for box in list(nodes.boxes.values())[:1]:
        box.disconnect()
    started = time.monotonic()
    done = nodes.cli("plan", "--connect-timeout", "2")
    assert "? n1 did not answer" in done.stdout
    assert time.monotonic() - started < 15


def test_the_firewall_opens_the_ports_of_the_apps_placed_there_and_keeps_ssh(nodes):
    box = nodes.boxes["n1"]
    serve(box, 9090)  # something of the node's own, not declared by any app
    web_image(nodes.directory, "v1")
    app = web_app().replace("replicas: 2", "nodes: [n1]")
    nodes.write(app, top="")
    path = os.path.join(str(nodes.directory), "vz.yml")
    text = open(path).read().replace("  n1: {{host: {}}}".format(box.ip),
                                     "  n1: {{host: {}, firewall: true}}".format(box.ip))
    with open(path, "w") as config:
        config.write(text)
    nodes.cli("deploy")
    assert reachable(box, PORT) and not reachable(box, 9090) and reachable(box, 22)
    assert "firewall" not in nodes.cli("plan").stdout  # as applied: no drift
    box.exec(["iptables", "-I", "VZ-INPUT", "1", "-p", "tcp", "--dport", "9090",
              "-j", "ACCEPT"])
    assert "! firewall on n1: edited by hand" in nodes.cli("plan").stdout
    with open(path, "w") as config:
        config.write(text.replace(", firewall: true", ""))
    done = nodes.cli("deploy")
    assert reachable(box, 9090), done.stdout + done.stderr


def test_a_line_the_administrator_disabled_is_shown_left_alone_and_restored_on_override(
        nodes):
    deployed(nodes)
    name = sorted(nodes.serving())[0]
    box = nodes.boxes[name]
    box.exec(["sed", "-i", r"s|^\([^#].*/bin/vzrun web\)$|#\1|", "/etc/inittab"])
    box.reload_init()
    plan = nodes.cli("plan").stdout
    assert "! web on {}: leave".format(name) in plan
    nodes.cli("deploy")
    assert "#" in [line for line in box.read_file("/etc/inittab").decode().splitlines()
                   if "vzrun web" in line][0]
    nodes.cli("deploy", "--override")
    assert name in nodes.serving()
