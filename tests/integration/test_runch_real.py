"""runch for real, as root: a busybox bundle from `runc spec`, through the OCI lifecycle.

The same bundle directory also runs under runc (and crun), which is what "runc
compatible" means here. The container's output goes to a file: it inherits runch's
stdio, and a pipe would stay open as long as the container runs.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import requires_root
from vzslave.fs import mounts_under

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "sleep", "touch", "cat", "true")

pytestmark = [
    requires_root,
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc (for runc spec)"),
]


class Bundle(object):
    """A bundle made by `runc spec` around a busybox rootfs, and runch's state root."""

    def __init__(self, base):
        self.dir = os.path.join(base, "bundle")
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.state_root = os.path.join(base, "runch")
        self.out = os.path.join(base, "out")
        for directory in ("bin", "tmp"):
            os.makedirs(os.path.join(self.rootfs, directory))
        shutil.copy(BUSYBOX, os.path.join(self.rootfs, "bin", "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(self.rootfs, "bin", applet))
        subprocess.run(["runc", "spec"], cwd=self.dir, check=True, timeout=30)
        self.ids = []

    def configure(self, script, readonly=True, host_mounts=False, host_pids=False):
        """Run ``sh -c script``, no terminal; without a mount or PID namespace if asked."""
        path = os.path.join(self.dir, "config.json")
        with open(path) as source:
            config = json.load(source)
        config["process"].update(terminal=False, args=["sh", "-c", script])
        config["root"]["readonly"] = readonly
        if host_mounts:
            config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                             if ns["type"] != "mount"]
        if host_pids:
            config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                             if ns["type"] != "pid"]
        with open(path, "w") as out:
            json.dump(config, out)

    def runch(self, *args, check=True, timeout=30):
        """Run runch; returns (exit status, its stderr). The container writes to self.out."""
        if args[0] in ("create", "run"):
            self.ids.append(args[-1])
        err = self.out + ".err"
        with open(self.out, "ab") as out, open(err, "wb") as errors:
            proc = subprocess.run(
                [sys.executable, "-m", "vzslave.runch", "--root", self.state_root] + list(args),
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=errors,
                timeout=timeout)
        with open(err) as source:
            text = source.read()
        if check:
            assert proc.returncode == 0, text
        return proc.returncode, text

    def state(self, container_id):
        proc = subprocess.run(
            [sys.executable, "-m", "vzslave.runch", "--root", self.state_root, "state",
             container_id], cwd=ROOT, stdout=subprocess.PIPE, check=True, timeout=30)
        return json.loads(proc.stdout.decode())

    def output(self):
        with open(self.out) as source:
            return source.read()


@pytest.fixture
def bundle(tmp_path):
    made = Bundle(str(tmp_path))
    yield made
    for container_id in made.ids:
        made.runch("delete", "--force", container_id, check=False)
    assert mounts_under(str(tmp_path)) == []


def wait_for(predicate):
    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_create_start_kill_delete_walks_the_oci_lifecycle(bundle):
    marker = os.path.join(bundle.rootfs, "tmp", "marker")
    bundle.configure("touch /tmp/marker; exec sleep 60", readonly=False, host_mounts=True)
    bundle.runch("create", "--bundle", bundle.dir, "c1")
    state = bundle.state("c1")
    assert state["status"] == "created" and state["pid"] > 0
    assert state["bundle"] == bundle.dir and state["id"] == "c1"
    assert not os.path.exists(marker)  # set up, but the app has not run
    assert len(mounts_under(bundle.rootfs)) > 3  # no mount namespace: in the host
    bundle.runch("start", "c1")
    assert bundle.state("c1")["status"] == "running"
    wait_for(lambda: os.path.exists(marker))
    bundle.runch("kill", "c1", "KILL")
    wait_for(lambda: bundle.state("c1")["status"] == "stopped")
    bundle.runch("delete", "c1")
    assert mounts_under(bundle.rootfs) == []
    assert not os.path.exists(os.path.join(bundle.state_root, "c1"))


def test_refusals_exit_1_with_a_message_like_runc(bundle):
    bundle.configure("exec sleep 60")
    bundle.runch("create", "--bundle", bundle.dir, "c1")
    status, err = bundle.runch("create", "--bundle", bundle.dir, "c1", check=False)
    assert status == 1 and "container with id c1 exists" in err
    bundle.runch("start", "c1")
    status, err = bundle.runch("start", "c1", check=False)
    assert status == 1 and "c1 is running, not created" in err
    status, err = bundle.runch("delete", "c1", check=False)
    assert status == 1 and "delete it with --force" in err
    bundle.runch("delete", "--force", "c1")
    assert not os.path.exists(os.path.join(bundle.state_root, "c1"))


def test_a_failing_setup_makes_create_fail_and_leaves_nothing(bundle):
    os.symlink("/etc", os.path.join(bundle.rootfs, "proc"))
    bundle.configure("true", host_mounts=True)
    status, err = bundle.runch("create", "--bundle", bundle.dir, "c1", check=False)
    assert status == 1 and "mount destination /proc is a symlink in the image" in err
    assert os.listdir(bundle.state_root) == []
    assert mounts_under(bundle.rootfs) == []


def test_run_exits_with_the_apps_status_and_deletes(bundle):
    bundle.configure("echo pid=$$ under runch; exit 7")
    status, err = bundle.runch("run", "--bundle", bundle.dir, "c1", check=False)
    assert status == 7, err
    assert "pid=1 under runch" in bundle.output()
    assert os.listdir(bundle.state_root) == []


def test_run_reports_a_death_by_signal_as_128_plus_the_signal(bundle):
    bundle.configure("kill -9 $$", host_pids=True)  # a PID namespace's pid 1 ignores it
    status, err = bundle.runch("run", "--bundle", bundle.dir, "c1", check=False)
    assert status == 128 + 9, err


@pytest.mark.parametrize("runtime", ["runch", "runc", "crun"])
def test_the_same_runc_spec_bundle_runs_under_runch_runc_and_crun(bundle, runtime):
    bundle.configure("echo pid=$$ under " + runtime)
    if runtime == "runch":
        status, err = bundle.runch("run", "--bundle", bundle.dir, "c1", check=False)
    else:
        path = shutil.which(runtime)
        if path is None:
            pytest.skip("{} is not installed".format(runtime))
        with open(bundle.out, "ab") as out:
            proc = subprocess.run([path, "run", "--bundle", bundle.dir, "vz-runch-test"],
                                  stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.PIPE, timeout=60)
        subprocess.run([path, "delete", "--force", "vz-runch-test"], timeout=30,
                       stderr=subprocess.DEVNULL)
        status, err = proc.returncode, proc.stderr.decode()
        if status != 0 and runtime == "crun" and "cgroup" in err:
            pytest.skip("crun cannot run containers on this host's cgroups: " + err)
    assert status == 0, err
    assert "pid=1 under " + runtime in bundle.output()


def test_create_shows_the_plans_warnings_on_stderr(bundle):
    """When the config asks for what runch skips (runc spec's cgroup mount), create says so."""
    bundle.configure("true")
    status, err = bundle.runch("create", "--bundle", bundle.dir, "c1")
    assert "runch: warning: mounts[6] (/sys/fs/cgroup): cgroup mounts are skipped" in err


def test_run_detached_leaves_the_container_running(bundle):
    bundle.configure("exec sleep 60")
    bundle.runch("run", "-d", "--bundle", bundle.dir, "c1")
    assert bundle.state("c1")["status"] == "running"
    bundle.runch("delete", "--force", "c1")
    assert not os.path.exists(os.path.join(bundle.state_root, "c1"))


def test_rro_makes_every_mount_below_a_bind_read_only(bundle, tmp_path):
    """When a bind mount says rro, mounts below its source are read-only too (not just it)."""
    source = tmp_path / "data"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(source / "sub")], check=True)
    try:
        bundle.configure("touch /data/sub/x 2>/dev/null && echo writable || echo read-only")
        path = os.path.join(bundle.dir, "config.json")
        with open(path) as source_file:
            config = json.load(source_file)
        config["mounts"].append({"destination": "/data", "type": "bind", "source": str(source),
                                 "options": ["rbind", "rro"]})
        with open(path, "w") as out:
            json.dump(config, out)
        bundle.runch("run", "--bundle", bundle.dir, "c1")
        assert "read-only" in bundle.output()
    finally:
        subprocess.run(["umount", "-l", str(source / "sub")], check=True)


def drop_from_bounding_set(cap):
    """A preexec_fn: the runch exec'd next cannot hold ``cap`` (as on hosts without it)."""
    def drop():
        from vzslave import linux
        linux.prctl(linux.PR_CAPBSET_DROP, cap)
    return drop


def test_capabilities_the_host_cannot_give_fail_create_as_in_runc(bundle):
    """When a capability asked for is not in the host's bounding set, create fails."""
    bundle.configure("true")
    path = os.path.join(bundle.dir, "config.json")
    with open(path) as source:
        config = json.load(source)
    for key in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][key].append("CAP_SYS_TIME")
    with open(path, "w") as out:
        json.dump(config, out)
    proc = subprocess.run(
        [sys.executable, "-m", "vzslave.runch", "--root", bundle.state_root, "create",
         "--bundle", bundle.dir, "c1"], cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30,
        preexec_fn=drop_from_bounding_set(25))  # CAP_SYS_TIME
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "CAP_SYS_TIME not available here" in err
    assert os.listdir(bundle.state_root) == []


def test_a_namespaced_sysctl_is_set_in_the_container_only(bundle):
    with open("/proc/sys/net/ipv4/ip_default_ttl") as source:
        host = source.read()
    bundle.configure("cat /proc/sys/net/ipv4/ip_default_ttl")
    path = os.path.join(bundle.dir, "config.json")
    with open(path) as source:
        config = json.load(source)
    config["linux"]["sysctl"] = {"net.ipv4.ip_default_ttl": "42"}
    with open(path, "w") as out:
        json.dump(config, out)
    bundle.runch("run", "--bundle", bundle.dir, "c1")
    assert bundle.output().strip() == "42"
    with open("/proc/sys/net/ipv4/ip_default_ttl") as source:
        assert source.read() == host
