"""``vzmaster node add`` against fresh VPS in boxes (busybox init and sysvinit): root's
password only, no authorized key, no vz, a system Python with no site-packages (so no
msgpack). Run as the command, in the hub's network namespace, as a user would."""

import json
import os
import subprocess
import sys

import paramiko
import pytest

from tests import tarballs as tb
from tests.system.conftest import require, wait_for
from vzmaster.testing.box import Box, find_python_debs
from vzslave import __version__ as vzslave_version

PASSWORD = "correct horse battery staple"
VZMASTER = os.path.join(os.path.dirname(sys.executable), "vzmaster")


class Project:
    """A directory with a vz.yml that knows the hub's key, and its own known_hosts."""

    def __init__(self, box: Box, directory):
        self.box, self.directory = box, str(directory)
        self.known_hosts = os.path.join(self.directory, "known_hosts")
        self.config = os.path.join(self.directory, "vz.yml")
        with open(self.config, "w") as config:
            config.write("# the fleet\nssh: {{key: {}, known_hosts: known_hosts}}\n".format(
                box.hub.client_key))
        self.password_file = os.path.join(self.directory, "password")
        with open(self.password_file, "w") as secret:
            secret.write(PASSWORD + "\n")

    def vzmaster(self, *args, check=True):
        done = subprocess.run(["ip", "netns", "exec", self.box.hub.netns, VZMASTER, *args],
                              cwd=self.directory, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            pytest.fail("vzmaster {} exited {}:\n{}{}".format(
                " ".join(args), done.returncode, done.stdout, done.stderr))
        return done

    def add(self, *extra, check=True):
        return self.vzmaster("node", "add", "n1", self.box.ip, "--password-file",
                             self.password_file, *extra, check=check)

    def declare_web(self, where=""):
        """A web app (busybox httpd on 8080, checked by tcp) in vz.yml, its image beside."""
        with open(os.path.join(self.directory, "web.tar"), "wb") as image:
            image.write(tb.busybox_image(["sh", "-c", "echo up > /www/index.html; "
                                          "exec httpd -f -p 8080 -h /www"],
                                         tb.directory("rootfs/www")))
        with open(self.config, "a") as config:
            config.write("apps:\n  web: {image: web.tar, " + where + "health: {tcp: 8080}}\n")

    def password_login(self, password=PASSWORD):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(self.box.ip, username="root", password=password,
                           sock=self.box.connect(), look_for_keys=False, allow_agent=False)
        finally:
            client.close()


@pytest.fixture(params=["busybox", "sysv"])
def fresh(request, make_box, tmp_path):
    return Project(make_box(init=request.param, root_password=PASSWORD), tmp_path)


def test_node_add_makes_a_fresh_vps_a_node_that_takes_a_deploy(fresh):
    done = fresh.add()
    assert "new host key" in done.stdout and "SHA256:" in done.stdout
    assert "nodes:\n  n1: {host: " + fresh.box.ip + "}" in open(fresh.config).read()
    assert open(fresh.config).read().startswith("# the fleet\n")
    fresh.declare_web()
    fresh.vzmaster("deploy")
    assert "running" in fresh.vzmaster("status", "n1").stdout


def test_node_add_again_changes_nothing_and_says_so(fresh):
    fresh.add()
    before = fresh.box.read_file("/etc/ssh/sshd_config.d/vzslave.conf")
    again = fresh.add()
    assert "nothing to change" in again.stdout
    assert "changed:" not in again.stdout
    assert fresh.box.read_file("/root/.ssh/authorized_keys").count(b"\n") == 1
    assert fresh.box.read_file("/etc/ssh/sshd_config.d/vzslave.conf") == before


def test_disable_password_login_refuses_the_password_and_keeps_the_key(fresh):
    fresh.add("--disable-password-login")
    with pytest.raises(paramiko.AuthenticationException):
        fresh.password_login()
    assert "version" in fresh.vzmaster("hello", "n1").stdout


def test_an_sshd_without_include_gets_a_marked_block(make_box, tmp_path):
    old = Project(make_box(root_password=PASSWORD, sshd_include=False), tmp_path)
    old.add()
    config = old.box.read_file("/etc/ssh/sshd_config").decode()
    assert config.startswith("# BEGIN vz") and "Subsystem vzslave /usr/local/bin/vzslave" in config
    assert old.box.read_file("/etc/ssh/sshd_config.vz-backup")
    old.vzmaster("hello", "n1")


def test_a_broken_sshd_config_is_restored_and_ssh_still_works(make_box, tmp_path):
    broken = Project(make_box(root_password=PASSWORD, sshd_include=False), tmp_path)
    box = broken.box
    config = box.read_file("/etc/ssh/sshd_config") + b"NoSuchSshdOption yes\n"
    box.write_file("/etc/ssh/sshd_config", config)
    done = broken.add(check=False)
    assert done.returncode == 1
    assert "sshd -t refused" in done.stderr and "NoSuchSshdOption" in done.stderr
    assert box.read_file("/etc/ssh/sshd_config") == config
    broken.password_login()


def test_a_wrong_password_is_one_line_and_changes_nothing(fresh):
    with open(fresh.password_file, "w") as secret:
        secret.write("wrong\n")
    done = fresh.add(check=False)
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1 and "login refused" in done.stderr
    assert fresh.box.exec(["test", "-e", "/usr/local/lib/vz"], check=False).returncode == 1
    assert "n1" not in open(fresh.config).read()


def test_a_host_key_that_changed_is_refused(fresh):
    with open(fresh.known_hosts, "w") as known:
        known.write("{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9o"
                    "kWi0dh2l9GKJl\n".format(fresh.box.ip))
    done = fresh.add(check=False)
    assert done.returncode == 3 and "CHANGED" in done.stderr


@pytest.fixture
def three(make_box, tmp_path):
    """Three fresh VPS added as n1, n2, n3 of one vz.yml (busybox, sysv, busybox)."""
    boxes = [make_box(init=init, root_password=PASSWORD) for init in ("busybox", "sysv",
                                                                     "busybox")]
    project = Project(boxes[0], tmp_path)
    for index, box in enumerate(boxes, 1):
        project.vzmaster("node", "add", "n{}".format(index), box.ip, "--password-file",
                         project.password_file)
    project.boxes = boxes
    return project


def plant_old_agent(box, version="0.0.9", protocol=None):
    """An earlier release's agent as node add left it: its own tree, which says its own
    version (and with ``protocol``, speaks only that one), the launcher on it. Returns
    the tree node add installed."""
    launcher = box.read_file("/usr/local/bin/vzslave").decode()
    tree, old = launcher.split()[-2], "/usr/local/lib/vz/vzslave-" + version
    box.exec(["cp", "-a", tree, old])
    box.exec(["sed", "-i", 's/^__version__ = .*/__version__ = "{}"/'.format(version),
              old + "/vzslave/__init__.py"])
    if protocol is not None:
        box.exec(["sed", "-i", "-e", "s/^SUPPORTED_VERSIONS = .*/SUPPORTED_VERSIONS = ({},)/"
                  .format(protocol), old + "/vzslave/protocol.py"])
    box.write_file("/usr/local/bin/vzslave", launcher.replace(tree, old).encode(), 0o755)
    return tree


def test_node_upgrade_switches_every_node_while_the_app_answers_then_rolls_back(three):
    three.declare_web("nodes: all, ")
    three.vzmaster("deploy")
    pyz = {box.ip: plant_old_agent(box) for box in three.boxes}
    pids = {row["node"]: row["pid"] for row in json.loads(
        three.vzmaster("ps", "--json", "--no-check").stdout)}
    done = three.vzmaster("node", "upgrade")
    assert done.stdout.count("(vzslave-0.0.9 -> ") == 3
    for box in three.boxes:
        assert pyz[box.ip] in box.read_file("/usr/local/bin/vzslave").decode()
    rows = json.loads(three.vzmaster("ps", "--json").stdout)
    assert {row["node"]: row["pid"] for row in rows} == pids  # no container was restarted
    assert {row["health"] for row in rows} == {"passing"}     # and each one answers
    back = three.vzmaster("node", "upgrade", "--rollback", "n1")
    assert "-> vzslave-0.0.9)" in back.stdout
    assert "nothing to change" in three.vzmaster("node", "upgrade", "n2").stdout


def test_a_mixed_version_fleet_works_on_until_its_old_nodes_are_upgraded(three):
    three.declare_web("nodes: all, ")
    three.vzmaster("deploy")
    n1, n2, _ = three.boxes
    plant_old_agent(n1)                      # older, but speaks this master's protocol
    plant_old_agent(n2, "0.0.1", protocol=0)   # too old to talk to
    assert "0.0.9" in three.vzmaster("hello", "n1").stdout
    refused = three.vzmaster("hello", "n2", check=False)
    assert refused.returncode != 0 and "vzmaster node upgrade" in refused.stderr
    with open(three.config) as config:
        text = config.read()
    with open(three.config, "w") as config:
        config.write(text.replace("health:", "env: {COLOR: blue}, health:"))
    deploy = three.vzmaster("deploy", check=False)
    assert "n1    web  replace  ok" in deploy.stdout and "n2 did not answer" in deploy.stderr
    check = three.vzmaster("node", "check", check=False).stdout
    assert "agent 0.0.9, master" in check and "agent 0.0.1, master" in check
    three.vzmaster("node", "upgrade", "all")
    for node in ("n1", "n2", "n3"):
        assert vzslave_version in three.vzmaster("hello", node).stdout
    assert "n2    web  replace  ok" in three.vzmaster("deploy").stdout


def test_node_check_finds_each_planted_problem(make_box, tmp_path):
    box = make_box(root_password=PASSWORD, disk_size="256m")
    project = Project(box, tmp_path)
    project.add()
    assert project.vzmaster("node", "check").stdout == "n1: ok\n"
    box.exec(["rm", "/etc/ssh/sshd_config.d/vzslave.conf"])
    box.exec(["sh", "-c", "kill -HUP $(cat /run/sshd.pid)"])
    wait_for(lambda: box.ssh("true", check=False).returncode == 0, what="sshd reloaded")
    box.write_file("/etc/ssh/sshd_config.d/00-lock.conf", b"PermitRootLogin no\n")  # no reload
    box.write_file("/usr/local/bin/vzslave", b"#!/bin/sh\necho vzslave 0.0.1\n", 0o755)
    box.exec(["mount", "--bind", "-o", "ro", "/etc/inittab", "/etc/inittab"])
    box.exec(["sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=240 2>/dev/null; true"])
    done = project.vzmaster("node", "check", check=False)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any("no vzslave Subsystem" in line and "fix: vzmaster node add" in line
               for line in lines)
    assert any("agent 0.0.1, master" in line and "node upgrade n1" in line for line in lines)
    assert any("/etc/inittab is not writable" in line for line in lines)
    assert any("PermitRootLogin no" in line and "locks vz out" in line for line in lines)
    assert any("MiB free on /" in line for line in lines)


PYTHON36 = "/root/.pyenv/versions/3.6.15/bin/python3.6"


def test_a_node_whose_only_python_is_3_6_runs_the_agent_on_it(make_box, tmp_path):
    if not os.path.exists(PYTHON36):
        if os.environ.get("VZ_REQUIRE_SYSTEM") == "1" and os.path.exists("/root/.pyenv"):
            pytest.fail("pyenv is here but not its 3.6.15 (see .ci/install)")
        pytest.skip("no Python 3.6 at " + PYTHON36)
    old = Project(make_box(init="sysv", root_password=PASSWORD, pythons=[PYTHON36]), tmp_path)
    done = old.add()
    assert "Python 3.6.15" in done.stdout and "run by /usr/local/bin/python3.6" in done.stdout
    assert "3.6.15" in old.vzmaster("hello", "n1").stdout


def test_a_node_without_python_3_6_is_told_the_command_that_installs_it(make_box, tmp_path):
    bare = Project(make_box(root_password=PASSWORD, pythons=[]), tmp_path)
    done = bare.add(check=False)
    assert done.returncode == 1
    assert "no Python 3.6 or newer" in done.stderr
    assert "apt-get install -y python3" in done.stderr and "--install-python" in done.stderr
    assert bare.box.exec(["test", "-e", "/usr/local/lib/vz"], check=False).returncode == 1


def test_install_python_installs_it_with_the_nodes_apt_and_the_agent_runs_on_it(
        make_box, tmp_path):
    """A Debian VPS without Python, whose apt reaches a repository holding python3's
    packages (a local one, of Debian's own .debs: the boxes reach no mirror)."""
    repo = find_python_debs()
    require([] if repo else ["run: python3 -m vzmaster.testing.box ensure-python-debs"],
            "no apt repository of python3's packages")
    bare = Project(make_box(root_password=PASSWORD, pythons=[], apt_repo=repo), tmp_path)
    assert bare.box.exec(["sh", "-c", "command -v python3"], check=False).returncode != 0
    bare.add("--install-python")
    assert b"exec /usr/bin/python3" in bare.box.read_file("/usr/local/bin/vzslave")
    assert "version" in bare.vzmaster("hello", "n1").stdout


def test_install_python_runs_apt_on_the_node_and_says_why_no_python_came_of_it(
        make_box, tmp_path):
    """The boxes reach no mirror (nor any DNS: resolv.conf is empty), as a VPS whose
    network is broken: apt-get really runs, and what it said reaches the user."""
    bare = Project(make_box(root_password=PASSWORD, pythons=[]), tmp_path)
    bare.box.write_file("/etc/resolv.conf", b"")
    done = bare.add("--install-python", check=False)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "still no Python 3.6+" in done.stderr
    assert "W: Failed to fetch" in done.stderr and "Temporary failure resolving" in done.stderr
    assert bare.box.exec(["test", "-e", "/usr/local/lib/vz"], check=False).returncode == 1


def test_node_remove_stops_the_apps_takes_out_the_agent_and_with_purge_the_data(fresh):
    fresh.add()
    with open(os.path.join(fresh.directory, "web.tar"), "wb") as image:
        image.write(tb.busybox_image(["sh", "-c", "exec httpd -f -p 8080 -h /"]))
    with open(fresh.config, "a") as config:
        config.write("apps:\n  web: {image: web.tar, health: {tcp: 8080}}\n")
    fresh.vzmaster("deploy")
    fresh.vzmaster("node", "remove", "n1")
    box = fresh.box
    assert b"vzrun" not in box.read_file("/etc/inittab")
    assert box.exec(["test", "-e", "/usr/local/lib/vz"], check=False).returncode == 1
    assert box.exec(["test", "-e", "/etc/ssh/sshd_config.d/vzslave.conf"],
                    check=False).returncode == 1
    assert box.exec(["test", "-d", "/var/lib/vz/apps/web"], check=False).returncode == 0
    assert "n1" not in open(fresh.config).read().split("apps:")[0]
    fresh.add()
    fresh.vzmaster("node", "remove", "n1", "--purge")
    assert box.exec(["test", "-e", "/var/lib/vz"], check=False).returncode == 1


@pytest.mark.parametrize("step", ["login", "probe", "key", "agent", "subsystem", "verify"])
def test_a_run_cut_short_after_any_step_is_finished_by_running_it_again(make_box, tmp_path,
                                                                       step):
    from vzmaster.provision.add import NodeAdd, add_node, public_key_for

    fresh = Project(make_box(root_password=PASSWORD), tmp_path)

    public, private = public_key_for(fresh.box.hub.client_key)
    ask = NodeAdd(name="n1", host=fresh.box.ip, config=fresh.config, public_key=public,
                  private_key=private, known_hosts=fresh.known_hosts, password=PASSWORD,
                  sock_factory=fresh.box.connect)

    def cut(said):
        if said.what == step:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or the master dying here

    with pytest.raises(KeyboardInterrupt):
        add_node(ask, cut)
    assert "n1" not in open(fresh.config).read()
    done = fresh.add()
    assert "changed: " in done.stdout and "n1: done" in done.stdout
    assert "version" in fresh.vzmaster("hello", "n1").stdout


def test_a_login_user_with_sudo_makes_the_node_and_keeps_its_own_key_file(make_box, tmp_path):
    project = Project(make_box(init="sysv", root_password=PASSWORD, login_user="deploy"),
                      tmp_path)
    project.vzmaster("node", "add", "n1", project.box.ip, "--user", "deploy",
                     "--password-file", project.password_file)
    box = project.box
    owner = box.exec(["stat", "-c", "%U %a", "/home/deploy/.ssh/authorized_keys"]).stdout
    assert owner.decode().split() == ["deploy", "600"]
    assert "user: deploy" in open(project.config).read()
    assert "version" in project.vzmaster("hello", "n1").stdout


def test_a_login_user_sudo_refuses_is_one_line_and_nothing_changes(make_box, tmp_path):
    project = Project(make_box(root_password=PASSWORD, login_user="deploy",
                               sudo="password"), tmp_path)
    done = project.vzmaster("node", "add", "n1", project.box.ip, "--user", "deploy",
                            "--password-file", project.password_file, check=False)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "NOPASSWD" in done.stderr
    assert project.box.exec(["test", "-e", "/home/deploy/.ssh"], check=False).returncode == 1


def test_an_unreachable_host_is_one_line_and_exit_3(fresh):
    done = fresh.vzmaster("node", "add", "n9", "10.200.0.250", "--password-file",
                          fresh.password_file, "--connect-timeout", "2", check=False)
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot reach" in done.stderr
    assert "n9" not in open(fresh.config).read()


def auth_methods(box):
    """What box's sshd offers root, as it answers a "none" auth."""
    transport = paramiko.Transport(box.connect())
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_none("root")
        return set(refused.value.allowed_types)
    finally:
        transport.close()


def test_a_password_asked_through_keyboard_interactive_works_and_can_be_turned_off(
        make_box, tmp_path):
    box = make_box(root_password=PASSWORD, password_auth="keyboard-interactive")
    assert auth_methods(box) == {"publickey", "keyboard-interactive"}
    Project(box, tmp_path).add("--disable-password-login")
    assert auth_methods(box) == {"publickey"}
