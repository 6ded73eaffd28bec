"""The node agent behind the real Debian OpenSSH sshd, in "VPS in a box" hosts with a
real busybox init or sysvinit as PID 1, driven by vzmaster.Client and by plain ssh -s."""

import hashlib
import shutil
import sys
import threading
import time

import pytest

from tests import tarballs as tb
from tests.conftest import random_bytes, sample_image
from tests.system.conftest import connect
from vzmaster import (
    Client, ConnectError, DiskFullError, HostKeyError, TransportError, VzError,
)
from vzmaster.testing.box import SRC_DIR
from vzslave.protocol import Decoder, Reply, Request, encode

ROOT = "/var/lib/vz"


def in_box_sha256(box, path):
    return box.exec(["sha256sum", path]).stdout.split()[0].decode()


@pytest.mark.parametrize("via", ["paramiko", "openssh"])
def test_a_client_pushes_and_unpacks_through_real_sshd(box, digests, image_file, via):
    path = image_file(sample_image(b"in a box"))
    with connect(box, digests, via) as node:
        assert node.facts.init == {"busybox": "busybox", "sysv": "sysvinit"}[box.init]
        assert node.facts.hostname == box.name and node.facts.root == ROOT
        info = node.upload_image(path)
        node.unpack(info.name, "app")
        assert [b.name for b in node.bundles()] == ["app"]
    assert in_box_sha256(box, ROOT + "/images/app.tar.gz") == info.sha256
    assert box.read_file(ROOT + "/bundles/app/rootfs/bin/app") == b"in a box"
    mode = box.exec(["stat", "-c", "%a %u", ROOT + "/bundles/app/rootfs/tmp"]).stdout
    assert mode.split() == [b"1777", b"0"]


def test_plain_ssh_s_speaks_the_protocol(box):
    request = encode(Request(1, "hello", {"versions": [1]})) + encode(
        Request(2, "image.list", {}))
    done = box.ssh(subsystem="vzslave", input=request)
    decoder = Decoder()
    decoder.feed(done.stdout)
    decoder.feed(b"")
    hello, images = decoder.next_frame(), decoder.next_frame()
    assert isinstance(hello, Reply) and hello.result["facts"]["hostname"] == box.name
    assert images == Reply(2, {"images": []})
    assert done.stderr == b""


def test_an_unknown_host_key_is_refused_and_trusting_it_records_it(make_box, digests, tmp_path):
    box = make_box()
    known = str(tmp_path / "known_hosts")
    with pytest.raises(HostKeyError, match="ssh-keyscan"):
        connect(box, digests, known_hosts=known)
    with connect(box, digests, known_hosts=known, trust_new_host=True) as node:
        assert node.images() == []
    with connect(box, digests, known_hosts=known) as node:  # now known: no option needed
        assert node.images() == []


def test_openssh_refuses_an_unknown_host_key_with_advice(make_box, digests, tmp_path):
    box = make_box()
    with pytest.raises(HostKeyError, match="trust_new_host"):
        connect(box, digests, via="openssh", known_hosts=str(tmp_path / "empty"))


def test_an_upload_cut_by_a_dropped_connection_resumes(make_box, digests, image_file):
    """When the TCP connection drops mid-upload (three times, at different points),
    sshd ends vzslave; the next push resumes from what the node kept and the image
    arrives whole; no incomplete image is ever listed."""
    box = make_box(init="sysv")
    data = random_bytes(24 << 20)
    path = image_file(data, "big.img")
    kept = []
    for cut_mb in (3, 9, 17):
        sock = box.connect()

        def cut_when(done, _total, sock=sock, cut=cut_mb << 20):
            if done >= cut:
                sock.shutdown(2)  # the link drops, as when a vendor's network hiccups

        with pytest.raises(TransportError):
            with connect(box, digests, sock=sock) as node:
                node.upload_image(path, progress=cut_when)
        with connect(box, digests) as node:
            assert node.images() == []
            kept.append(node.probe_image("big.img")[1].size)
    # Each try resumed and added to what the node kept. (What was in flight when the
    # link dropped is lost, so the kept sizes trail the cut points by a varying amount.)
    assert 1 << 20 <= kept[0] < kept[1] < kept[2]
    starts = []
    with connect(box, digests) as node:
        info = node.upload_image(path, progress=lambda done, _: starts.append(done))
    assert starts[0] == kept[2]  # the last push started where the node's prefix ends
    assert info.sha256 == hashlib.sha256(data).hexdigest() == in_box_sha256(
        box, ROOT + "/images/big.img")


def test_a_disk_that_fills_during_an_upload_keeps_the_old_image(make_box, digests, image_file):
    box = make_box(disk_size="96m")
    with connect(box, digests) as node:
        old = node.upload_image(image_file(random_bytes(1 << 20, seed=1), "app.img"))
        free = node.hello().free_bytes
        new_path = image_file(random_bytes(free - (24 << 20), seed=2), "app.img")
        filled = []

        def fill_when(done, _total):
            if done > 8 << 20 and not filled:
                filled.append(box.exec(["fallocate", "-l", "40M", "/filler"]))

        with pytest.raises(DiskFullError, match="filled up .* resumes"):
            node.upload_image(new_path, progress=fill_when)
        assert node.images() == [old]
    assert in_box_sha256(box, ROOT + "/images/app.img") == old.sha256


def test_a_disk_that_fills_during_an_unpack_keeps_the_old_bundle(make_box, digests, image_file):
    box = make_box(disk_size="48m")
    with connect(box, digests) as node:
        node.upload_image(image_file(sample_image(b"old"), "old.tgz"))
        node.unpack("old.tgz", "app")
        box.exec(["fallocate", "-l", "{}".format(node.hello().free_bytes - (6 << 20)),
                  "/filler"])
        many = [tb.file("rootfs/f{}".format(i), b"x") for i in range(3000)]
        node.upload_image(image_file(tb.make_tar(tb.bundle(*many), fmt="tar.gz"), "new.tgz"))
        with pytest.raises(DiskFullError, match="free some space"):
            node.unpack("new.tgz", "app")
        assert [(b.name, b.image) for b in node.bundles()] == [("app", "old.tgz")]
    assert box.read_file(ROOT + "/bundles/app/rootfs/bin/app") == b"old"
    assert len(box.exec(["ls", ROOT + "/bundles/.trees"]).stdout.split()) == 1


def test_vzslave_killed_mid_unpack_leaves_the_old_bundle(make_box, digests, image_file):
    box = make_box()
    members = [tb.file("rootfs/data/f{}".format(i), b"y" * 100) for i in range(3000)]
    members.append(tb.file("rootfs/big", bytes(96 << 20)))
    with connect(box, digests) as node:
        node.upload_image(image_file(sample_image(b"old"), "old.tgz"))
        node.unpack("old.tgz", "app")
        node.upload_image(image_file(tb.make_tar(tb.bundle(*members), fmt="tar.gz"),
                                     "new.tgz"))
    failures = []

    def unpack():
        try:
            with connect(box, digests) as node:
                node.unpack("new.tgz", "app")
        except (TransportError, VzError) as exc:
            failures.append(exc)

    worker = threading.Thread(target=unpack)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        trees = box.exec(["ls", ROOT + "/bundles/.trees"]).stdout.split()
        if len(trees) == 2:
            break
    box.exec(["pkill", "-KILL", "-f", "--", "-m vzslave"])  # only the box sees these
    worker.join()
    assert len(trees) == 2 and isinstance(failures[0], TransportError)
    assert box.read_file(ROOT + "/bundles/app/rootfs/bin/app") == b"old"
    with connect(box, digests) as node:
        assert [(b.name, b.image) for b in node.bundles()] == [("app", "old.tgz")]
        node.unpack("new.tgz", "app")  # and the next request repairs: one tree again
    assert len(box.exec(["ls", ROOT + "/bundles/.trees"]).stdout.split()) == 1


def test_a_key_restricted_to_vzslave_by_a_forced_command_works(make_box, digests, hub):
    """sshd_config.d/vzslave.conf suggests restrict,command="vzslave" for deploy keys."""
    box = make_box()
    with open(hub.client_key + ".pub") as pub:
        key = pub.read().strip()
    box.write_file("/etc/ssh/authorized_keys_root",
                   'restrict,command="{}" {}\n'.format(box.vzslave_command, key).encode())
    with connect(box, digests) as node:
        assert node.facts.hostname == box.name
    assert box.ssh("echo shell", check=False).stdout == b""  # no shell for that key


def sudo_box(make_box, hub, sudoers):
    """A box whose Subsystem line runs vzslave through `sudo -n`, with a user "deploy"
    (key login) whose sudoers entry is ``sudoers``."""
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (.ci/install installs it)")
    box = make_box(vzslave_command="/usr/bin/sudo -n /usr/bin/env PYTHONPATH={} {} -m vzslave"
                   .format(SRC_DIR, sys.executable))
    box.write_file("/etc/passwd", box.read_file("/etc/passwd") +
                   b"deploy:x:4242:4242::/tmp:/bin/sh\n")
    box.write_file("/etc/group", box.read_file("/etc/group") + b"deploy:x:4242:\n")
    box.write_file("/etc/shadow", box.read_file("/etc/shadow") +
                   b"deploy:*:19000:0:99999:7:::\n", mode=0o640)
    with open(hub.client_key + ".pub", "rb") as pub:
        box.write_file("/etc/ssh/authorized_keys_deploy", pub.read())
    box.write_file("/etc/sudoers.d/deploy", sudoers, mode=0o440)
    return box


def connect_as_deploy(box, digests):
    opts = box.ssh_options()
    return Client(opts["host"], user="deploy", key_filename=opts["key_filename"],
                  known_hosts=opts["known_hosts"], sock=box.connect(), ssh_config=None,
                  digests=digests)


def test_a_user_with_passwordless_sudo_gets_a_root_vzslave(make_box, hub, digests):
    """The original workflow: log in as a user with passwordless sudo; the Subsystem
    line runs vzslave through `sudo -n` (as sshd_config.d/vzslave.conf describes)."""
    box = sudo_box(make_box, hub, b"deploy ALL=(ALL) NOPASSWD: ALL\n")
    with connect_as_deploy(box, digests) as node:
        assert (node.facts.uid, node.facts.root) == (0, ROOT)


def test_a_subsystem_that_fails_to_start_gets_advice(make_box, hub, digests):
    """sshd discards a subsystem's stderr (OpenSSH 9.2, checked), so sudo's complaint
    is lost: the error must say where to look instead."""
    box = sudo_box(make_box, hub, b"# deploy may not sudo\n")
    with pytest.raises(ConnectError, match="Subsystem vzslave"):
        connect_as_deploy(box, digests)
