"""A hostile app against a real node (real sshd, busybox init and sysvinit as PID 1),
and a node that cannot be wedged: one test per attack of docs/security.md."""

import re
import threading
import time

import pytest

from tests import tarballs as tb
from tests.system.conftest import (INITTAB, ROOT, admin_lines, box_pids, connect, deploy,
                                   wait_for)
from vzmaster import BadConfigError, BadRequestError, NoSuchContainerError


def attacker(attack):
    """The attack program, as a member of a busybox image."""
    with open(attack, "rb") as binary:
        return tb.file("rootfs/bin/attack", binary.read(), mode=0o755)


def app_lines(node, name):
    return [line for line in node.logs(name, tail=50) if not line.startswith("vz: ")]


def test_a_root_app_that_climbs_out_of_chroot_cannot_touch_the_nodes_inittab(
        box, digests, tmp_path, attack):
    """When a root app with CAP_SYS_CHROOT runs mkdir x; chroot x; chdir ..; chroot .,
    it ends at its own root: the node's inittab (which init would run) is unchanged."""
    before = admin_lines(box)
    deploy(box, digests, tmp_path, "climber",
           ["sh", "-c", "attack chroot-escape /etc/inittab; exec sleep 1000"],
           attacker(attack))
    with connect(box, digests) as node:
        node.start("climber")
        line = wait_for(lambda: app_lines(node, "climber"), what="the attack's verdict")[0]
        node.stop("climber", grace=1)
    assert line.startswith("contained"), line
    assert admin_lines(box) == before and b"escaped" not in box.read_file(INITTAB)


def test_stop_ends_a_double_forked_setsid_child_of_the_app(box, digests, tmp_path, attack):
    deploy(box, digests, tmp_path, "forker",
           ["sh", "-c", "attack orphan 1000; exec sleep 1000"], attacker(attack))
    with connect(box, digests) as node:
        status = node.start("forker", monitor=False)
        rootfs = status.bundle + "/rootfs"
        wait_for(lambda: len(box_pids(box, rootfs)) == 2, what="the app and its orphan")
        assert node.stop("forker", grace=1).state == "stopped"
    assert box_pids(box, rootfs) == []


def test_a_bind_of_an_image_symlink_to_the_nodes_etc_is_refused_at_start(box, digests,
                                                                        tmp_path):
    """When an image holds rootfs/hostetc -> /etc and its config binds rootfs/hostetc, the
    start is refused naming the field: the node's /etc is never bound in."""
    deploy(box, digests, tmp_path, "binder", ["sleep", "1000"],
           tb.symlink("rootfs/hostetc", "/etc"),
           mounts=[{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/mnt", "type": "bind", "source": "rootfs/hostetc",
                    "options": ["rbind", "rw"]}])
    with connect(box, digests) as node:
        with pytest.raises(BadConfigError, match="is a symlink in the image") as raised:
            node.start("binder")
        assert raised.value.details["field"] == "mounts[1].source"
        with pytest.raises(NoSuchContainerError):  # refused before anything was written
            node.status("binder")
    assert b"vzrun binder" not in box.read_file(INITTAB)


def test_a_root_app_cannot_make_a_device_node_of_the_nodes_disk(box, digests, tmp_path,
                                                                attack):
    deploy(box, digests, tmp_path, "mknod", ["sh", "-c", "attack mknod 8 0; exec sleep 1000"],
           attacker(attack))
    with connect(box, digests) as node:
        node.start("mknod")
        line = wait_for(lambda: app_lines(node, "mknod"), what="the attack's verdict")[0]
        node.stop("mknod", grace=1)
    assert line == "mknod: Operation not permitted"


def pause_after_inittab_write(box, seconds):
    """The test seam: vzslave sleeps this long between writing the inittab and reloading
    init (ROOT/containers/.test-pause-after-inittab-write)."""
    path = ROOT + "/containers/.test-pause-after-inittab-write"
    if seconds:
        box.write_file(path, str(seconds).encode())
    else:
        box.exec(["rm", "-f", path])


def kill_vzslave_once_the_inittab_says(box, node, op, name, entry_there):
    """Run ``op`` in a thread, and SIGKILL vzslave as soon as the inittab was written."""
    call = threading.Thread(target=lambda: _swallow(lambda: getattr(node, op)(name)))
    call.start()
    wait_for(lambda: (("vzrun " + name).encode() in box.read_file(INITTAB)) == entry_there,
             what="the inittab write")
    box.exec(["pkill", "-KILL", "-f", "-x", ".*-m vzslave"])
    call.join(30)


def _swallow(call):
    try:
        call()
    except Exception:  # the session dies with the killed vzslave: expected
        pass


def test_a_stop_killed_before_init_reloaded_is_finished_by_the_next_session(box, digests,
                                                                           tmp_path):
    """When vzslave is killed after writing the inittab but before telling init, init
    still runs the app; the next session reloads init, and a stop then says stopped with
    nothing left running."""
    deploy(box, digests, tmp_path, "lost", ["sleep", "1000"])
    with connect(box, digests) as node:
        rootfs = node.start("lost").bundle + "/rootfs"
    pause_after_inittab_write(box, 60)
    with connect(box, digests) as node:
        kill_vzslave_once_the_inittab_says(box, node, "stop", "lost", entry_there=False)
    pause_after_inittab_write(box, 0)
    assert box_pids(box, rootfs)  # init was never told: the app runs on
    with connect(box, digests) as node:  # hello makes the reload owed
        assert node.stop("lost", grace=1).state == "stopped"
        time.sleep(3)  # busybox init would respawn within ~1-2 s if it still had the entry
        assert node.status("lost").state == "stopped"
    assert box_pids(box, rootfs) == []


def test_a_start_killed_before_init_reloaded_is_finished_by_the_next_session(box, digests,
                                                                            tmp_path):
    deploy(box, digests, tmp_path, "late", ["sleep", "1000"])
    pause_after_inittab_write(box, 60)
    with connect(box, digests) as node:
        kill_vzslave_once_the_inittab_says(box, node, "start", "late", entry_there=True)
    pause_after_inittab_write(box, 0)
    with connect(box, digests) as node:
        status = node.start("late")
        assert status.state == "running", status
        assert box_pids(box, status.bundle + "/rootfs")
        node.stop("late", grace=1)


def free_bytes(box, path=ROOT):
    out = box.exec(["df", "-B1", "--output=avail", path]).stdout.split()
    return int(out[-1])


def log_sizes(box, name):
    out = box.exec(["sh", "-c", "cd {}/logs && for f in {}.log*; do [ -e $f ] && "
                    "stat -c '%n %s' $f; done; true".format(ROOT, name)]).stdout.decode()
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}


def test_sixty_seconds_of_flood_leave_free_space_bounded_logs_and_a_working_stop(
        make_box, digests, tmp_path):
    """When an app floods stdout in the default mode for 60 s on a 128 MiB disk, its logs
    stay within log_max per file and log_keep files, the disk keeps free space, and stop
    works."""
    box = make_box(init="busybox", disk_size="128m")
    deploy(box, digests, tmp_path, "flood", ["yes", "a fairly long line of flood output"])
    with connect(box, digests) as node:
        node.start("flood", log_max=1 << 20, log_keep=2)
        time.sleep(60)
        assert node.status("flood").state == "running"
        sizes = log_sizes(box, "flood")
        free = free_bytes(box)
        assert node.stop("flood", grace=1).state == "stopped"
    assert set(sizes) <= {"flood.log", "flood.log.1", "flood.log.2"}, sizes
    assert all(size <= 1 << 20 for size in sizes.values()), sizes
    assert free > 64 << 20, free


def test_stop_works_on_a_disk_the_app_filled(make_box, digests, tmp_path):
    """When the app filled the disk (writing into its own rootfs), stop still stops it:
    the app is frozen, vz's reserve is given back for stop's few writes."""
    box = make_box(init="sysv", disk_size="96m")
    deploy(box, digests, tmp_path, "filler",
           ["sh", "-c", "yes filling the disk > /filler; exec sleep 1000"])
    with connect(box, digests) as node:
        rootfs = node.start("filler").bundle + "/rootfs"
        wait_for(lambda: free_bytes(box) < 64 * 1024, timeout=60, what="a full disk")
        assert node.stop("filler", grace=1).state == "stopped"
        assert node.status("filler").state == "stopped"
    assert box_pids(box, rootfs) == []
    assert "vzrun filler" not in box.read_file(INITTAB).decode()


def test_start_waits_and_reports_an_app_that_cannot_stay_up(box, digests, tmp_path):
    deploy(box, digests, tmp_path, "broken", ["sh", "-c", "echo missing config; exit 3"])
    with connect(box, digests) as node:
        status = node.start("broken")
        node.stop("broken", grace=1)
    assert status.state == "crash-looping", status
    assert status.last_exit == "exit 3"


def test_status_forgets_a_container_whose_bundle_was_removed(box, digests, tmp_path):
    deploy(box, digests, tmp_path, "gone", ["sleep", "1000"])
    with connect(box, digests) as node:
        node.start("gone")
        node.stop("gone", grace=1)
        node.remove_bundle("gone")
        with pytest.raises(NoSuchContainerError):
            node.status("gone")
        assert "gone" not in [s.name for s in node.status()]
    assert box.exec(["test", "-e", ROOT + "/containers/gone"], check=False).returncode != 0
    assert not re.search(rb"gone\.log", box.exec(["ls", ROOT + "/logs"]).stdout)
    assert admin_lines(box)  # nothing of the sysadmin's went with it


def test_absurd_numbers_are_refused_and_wedge_nothing(box, digests, tmp_path):
    """When a client asks for log_keep=10**12 or a grace of inf or NaN, the node says
    BAD_REQUEST naming the argument, and later sessions answer as usual."""
    deploy(box, digests, tmp_path, "sane", ["sleep", "1000"])
    with connect(box, digests) as node:
        with pytest.raises(BadRequestError, match="log_keep"):
            node.start("sane", log_keep=10 ** 12)
        node.start("sane")
        for grace in (float("inf"), float("nan")):
            with pytest.raises(BadRequestError, match="grace"):
                node.stop("sane", grace=grace)
    with connect(box, digests) as node:  # a new session's hello is not held up
        assert node.stop("sane", grace=1).state == "stopped"


def test_an_impossible_frame_is_refused_at_its_header_through_sshd(box):
    """When a frame announces 2 MiB of data (past MAX_FRAME) and the client sends no
    more, the node answers FRAME_TOO_LARGE at once instead of waiting for the bytes."""
    import select
    import subprocess

    from vzslave.protocol import Decoder
    header = (b"\x83\xa4type\xa4data\xa2id\x01\xa4data"
              + b"\xc6" + (2 << 20).to_bytes(4, "big"))
    ssh = subprocess.Popen(box.ssh_argv(subsystem="vzslave"), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ssh.stdin.write(header)
        ssh.stdin.flush()  # and the stream stays open: the 2 MiB never come
        decoder = Decoder()
        frame = None
        while frame is None:
            assert select.select([ssh.stdout], [], [], 15)[0], "no answer from the node"
            data = ssh.stdout.read1(65536)
            decoder.feed(data)
            frame = decoder.next_frame()
            assert data or frame, "the node closed without an answer"
        assert frame.name == "FRAME_TOO_LARGE" and frame.id is None
    finally:
        ssh.kill()
        ssh.wait()
