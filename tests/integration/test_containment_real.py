"""Attacks from inside a container on the runner as init runs it (root only).

Each test runs tests/attack.c in a busybox rootfs with vz's default capabilities for a
root app, the way vzslave plans it, and checks that nothing reached the node; one
control test shows the escape working where vz would not allow it (a bare chroot that
keeps CAP_SYS_CHROOT), so the attack is real. docs/security.md is the model.
"""

import os
import shutil
import subprocess

import pytest

from tests.conftest import requires_root
from tests.runnerbox import BUSYBOX, ROOT_CAPS, Box
from vzslave import mounts, oci, procs
from vzslave.fs import mounts_under

pytestmark = [
    requires_root,
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]

CHROOT_CAP = oci.CAPABILITIES["CAP_SYS_CHROOT"]


@pytest.fixture
def box(tmp_path, attack):
    made = Box(str(tmp_path))
    shutil.copy(attack, os.path.join(made.rootfs, "bin", "attack"))
    yield made
    made.kill()
    for pid in procs.container_processes(made.rootfs):
        os.kill(pid, 9)
    if made.plan is not None:
        assert mounts.release(made.plan) == []
    assert mounts_under(str(tmp_path)) == []


@pytest.fixture
def node_file(tmp_path):
    """A file of the node's that no container has: what an escape would reach."""
    path = tmp_path / "node-secret"
    path.write_text("the node's own\n")
    return str(path)


def attack(box, *args, **plan):
    """Run ``attack ARGS`` as a root app with vz's default capabilities; its one line."""
    box.make_plan("exec /bin/attack " + " ".join(args), capabilities=ROOT_CAPS)
    box.plan.update(plan)
    box.run()
    lines = [line for line in box.read_log().splitlines() if not line.startswith("vz: ")]
    assert lines, box.read_log()
    return lines[-1]


def without_chroot(caps):
    return {key: [cap for cap in numbers if cap != CHROOT_CAP] for key, numbers in caps.items()}


def test_a_root_app_that_chroots_and_climbs_out_stays_in_its_rootfs(box, tmp_path):
    target = str(tmp_path / "escaped")
    line = attack(box, "chroot-escape", target)
    assert line.startswith("contained"), line
    assert not os.path.exists(target)


def test_a_bare_chroot_that_keeps_cap_sys_chroot_is_escaped(box, tmp_path):
    """The control: the same attack leaves a plain chroot, so the test above can fail."""
    target = str(tmp_path / "escaped")
    assert attack(box, "chroot-escape", target, enter="chroot") == "ESCAPED"
    assert os.path.exists(target)


def test_the_chroot_fallback_takes_cap_sys_chroot_and_holds(box, tmp_path):
    target = str(tmp_path / "escaped")
    box.make_plan("exec /bin/attack chroot-escape " + target,
                  capabilities=without_chroot(ROOT_CAPS))
    box.plan["enter"] = "chroot"
    box.run()
    assert "contained" in box.read_log().splitlines()[-1], box.read_log()
    assert not os.path.exists(target)


def test_dotdot_through_proc_self_root_stays_inside(box, node_file):
    line = attack(box, "read", "/proc/self/root/../../../../../.." + node_file)
    assert line == "denied: No such file or directory", line


def test_the_root_of_init_and_of_node_processes_is_out_of_reach(box, node_file):
    node_process = subprocess.Popen(["sleep", "60"])
    try:
        for pid in (1, node_process.pid):
            line = attack(box, "read", "/proc/{}/root{}".format(pid, node_file))
            assert line.startswith("denied: "), (pid, line)
    finally:
        node_process.kill()
        node_process.wait()


def test_no_fd_of_the_node_reaches_the_app(box):
    """When init (sysvinit does) or anyone else leaves fds open across the exec of the
    runner, an fd on the node's root among them, none reaches the app."""
    node_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        box.make_plan("exec /bin/attack fds", capabilities=ROOT_CAPS)
        box.run(pass_fds=(node_root,))
    finally:
        os.close(node_root)
    assert box.read_log().splitlines()[-1] == "no fd above 2", box.read_log()


def test_a_block_device_of_the_nodes_disk_cannot_be_made(box):
    assert attack(box, "mknod", "8", "0") == "mknod: Operation not permitted"


def test_an_image_symlink_given_as_bind_source_is_refused(box, tmp_path):
    os.symlink("/etc", os.path.join(box.rootfs, "hostetc"))
    box.make_plan("ls /mnt/etc-of-the-node")
    box.plan["mounts"].append({
        "destination": "/mnt/etc-of-the-node", "type": "bind",
        "source": os.path.join(box.plan["bundle"], "rootfs/hostetc"),
        "in_bundle": "rootfs/hostetc", "flags": 0, "data": "", "bind": True,
        "recursive": False, "remount_readonly": False, "propagation": 0})
    status, out = box.run()
    assert status == 127
    assert ("cannot start: mounts: bind source rootfs/hostetc is a symlink in the image; "
            "refusing") in box.read_log()


def test_a_node_path_into_the_bundle_store_is_refused_as_bind_source(box):
    box.make_plan("true")
    box.plan["mounts"].append({
        "destination": "/mnt/other", "type": "bind", "source": box.plan["bundle"],
        "in_bundle": None, "flags": 0, "data": "", "bind": True, "recursive": False,
        "remount_readonly": False, "propagation": 0})
    status, out = box.run()
    assert status == 127 and "leads into vz's bundle store" in box.read_log()


def test_a_node_path_into_another_bundle_is_refused_as_bind_source(box, tmp_path):
    """When the config names another image's tree by a node path (vzslave's plans carry
    the whole store of trees), the bind is refused: those files are that image's."""
    other = os.path.join(os.path.dirname(os.path.dirname(box.rootfs)), "other", "rootfs")
    os.makedirs(other)
    box.make_plan("true")
    box.plan["store"] = os.path.dirname(box.plan["bundle"])
    box.plan["mounts"].append({
        "destination": "/mnt/other", "type": "bind", "source": other, "in_bundle": None,
        "flags": 0, "data": "", "bind": True, "recursive": False, "remount_readonly": False,
        "propagation": 0})
    status, out = box.run()
    assert status == 127 and "leads into vz's bundle store" in box.read_log()


def test_what_an_instance_left_behind_is_ended_before_the_next_starts(box):
    """When an app without a monitor exits and leaves a setsid'd grandchild behind (a
    forking server's workers), the next spawn ends it before the new app runs."""
    box.make_plan("exec /bin/attack orphan 1000", capabilities=ROOT_CAPS)
    box.run()
    [orphan] = procs.container_processes(box.rootfs)
    box.run()  # whose app leaves an orphan of its own
    assert orphan not in procs.container_processes(box.rootfs)
    assert "ending 1 process(es) left by the previous instance: {}".format(
        orphan) in box.read_log()


def test_the_monitor_ends_what_the_app_left_as_soon_as_it_ends(box):
    """When the app ends, the monitor does not wait for its orphans to close the log
    pipe (they never would): it ends them, records the exit and exits, so that init
    respawns at once."""
    box.make_plan("/bin/attack orphan 1000; echo the app ends; exit 3",
                  capabilities=ROOT_CAPS)
    box.plan["monitor"] = True
    status, out = box.run(timeout=30)
    assert status == 3
    assert procs.container_processes(box.rootfs) == {}
    record = box.record()
    assert record["state"] == "exited" and record["last_exit"] == "exit 3"
    assert "the app ends" in box.read_log()


def test_without_a_monitor_the_next_spawn_records_how_the_last_one_ended(box):
    box.make_plan("exit 0")
    box.run()
    box.run()
    record = box.record()
    assert record["last_exit"] == "ended on its own (exit status unknown: no monitor)"
    assert float(record["last_run"]) >= 0
