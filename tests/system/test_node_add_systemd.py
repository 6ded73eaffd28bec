"""``vzmaster node add`` on a fresh VPS whose PID 1 is systemd. systemd ignores
/etc/inittab, so the node gets the vz supervisor as a systemd unit, run by the agent
itself, and the apps run under it."""

import pytest

from tests.system.conftest import require_boxes, wait_for
from tests.system.test_node_add import PASSWORD, Project

APP = ["pgrep", "-f", "httpd -f -p 8080"]


@pytest.fixture
def node(make_box, tmp_path):
    """A fresh systemd VPS added as n1, with the web app of vz.yml deployed to it."""
    require_boxes("systemd")
    project = Project(make_box(init="systemd", root_password=PASSWORD), tmp_path)
    project.add()
    project.declare_web()
    project.vzmaster("deploy")
    return project


def test_node_add_enables_and_starts_the_supervisor_unit(node):
    """Within a /run too small for systemd to agree to a daemon-reload (a small VPS's)."""
    free = node.box.exec(["df", "--output=avail", "-k", "/run"]).stdout.split()[-1]
    assert int(free) < 16 * 1024
    assert node.box.exec(["systemctl", "is-active", "vz-supervisor"]).stdout == b"active\n"
    assert node.box.exec(["systemctl", "is-enabled", "vz-supervisor"]).stdout == b"enabled\n"


def test_a_deploy_runs_the_app_under_the_supervisor_not_inittab(node):
    assert "running" in node.vzmaster("status", "n1").stdout
    assert b" web" in node.box.read_file("/var/lib/vz/containers/inittab")
    supervisor = node.box.exec(["systemctl", "show", "-P", "MainPID", "vz-supervisor"])
    children = node.box.exec(["pgrep", "-a", "-P", supervisor.stdout.decode().strip()])
    assert b"vzrun web" in children.stdout


def test_the_supervisor_respawns_a_killed_app(node):
    first = node.box.exec(APP).stdout
    node.box.exec(["pkill", "-KILL", "-f", "httpd -f -p 8080"])
    wait_for(lambda: node.box.exec(APP, check=False).stdout not in (b"", first),
             what="the app respawned")


def test_node_add_again_leaves_the_running_supervisor_alone(node):
    before = node.box.exec(["systemctl", "show", "-P", "MainPID", "vz-supervisor"]).stdout
    again = node.add()
    assert "nothing to change" in again.stdout
    after = node.box.exec(["systemctl", "show", "-P", "MainPID", "vz-supervisor"]).stdout
    assert after == before


def test_node_check_is_clean_then_finds_a_stopped_supervisor(node):
    assert node.vzmaster("node", "check", "n1").stdout.strip().endswith("ok")
    node.box.exec(["systemctl", "stop", "vz-supervisor"])
    done = node.vzmaster("node", "check", "n1", check=False)
    assert done.returncode == 1 and "no vz supervisor runs" in done.stdout


def test_node_remove_stops_and_deletes_the_supervisor_unit(node):
    node.vzmaster("node", "remove", "n1")
    assert node.box.exec(["test", "-e", "/etc/systemd/system/vz-supervisor.service"],
                         check=False).returncode == 1
    assert node.box.exec(APP, check=False).returncode == 1
    active = node.box.exec(["systemctl", "is-active", "vz-supervisor"], check=False)
    assert active.stdout.strip() in (b"inactive", b"unknown")
