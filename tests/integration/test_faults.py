"""Faults during uploads and unpacks: cut connections, killed vzslave, full disks."""

import hashlib
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from tests import tarballs as tb
from tests.conftest import random_bytes, requires_root, sample_image
from vzmaster import Client, ConnectionLostError, DiskFullError, LocalTransport, TransportError

IMAGE_SIZE = 3 * 1024 * 1024 + 12345  # a dozen data frames and a ragged end


class CuttingTransport(LocalTransport):
    """A local vzslave whose link is cut after ``cut_at`` bytes from the client."""

    def __init__(self, root, cut_at, how):
        super().__init__(root=root)
        self.cut_at, self.how, self.sent = cut_at, how, 0

    def send(self, data):
        if self.sent + len(data) <= self.cut_at:
            self.sent += len(data)
            return super().send(data)
        super().send(data[:self.cut_at - self.sent])
        self.sent = self.cut_at
        if self.how == "kill":
            self._proc.kill()  # vzslave dies with whatever it had written
        else:
            self._proc.stdin.close()  # the link drops: vzslave sees EOF mid-frame
        raise ConnectionLostError("cut by the test after {} bytes".format(self.cut_at))


def cut_points(total, count, seed=7):
    """Edges (in the hello, at frame boundaries, in the end frame) and random points."""
    rng = random.Random(seed)
    points = {0, 1, 40, 100, 200, total - 1, total - 60}
    while len(points) < count:
        points.add(rng.randrange(total))
    return sorted(points)


def bytes_sent_by_one_upload(root, path, digests):
    transport = CuttingTransport(root, cut_at=1 << 40, how="eof")
    with Client(transport=transport, digests=digests) as node:
        node.upload_image(path)
        node.remove_image(os.path.basename(path))
    return transport.sent


@pytest.mark.parametrize("how", ["eof", "kill"])
def test_an_upload_cut_anywhere_resumes_and_completes(tmp_path, image_file, digests, how):
    """When the link is cut at any of 24 points, the next push completes the image with
    the right sha256, resumes rather than restarts once data had been written, and no
    incomplete image is ever listed."""
    data = random_bytes(IMAGE_SIZE)
    path = image_file(data, "big.img")
    root = str(tmp_path / "node")
    total = bytes_sent_by_one_upload(root, path, digests)
    resumed = 0
    for cut in cut_points(total, 24):
        try:
            with Client(transport=CuttingTransport(root, cut, how), digests=digests) as node:
                node.upload_image(path)
        except TransportError:
            pass
        else:
            assert cut >= total - 60, "only a cut after the end frame may go unnoticed"
        with Client("local:" + root, digests=digests) as node:
            assert [i.name for i in node.images()] in ([], ["big.img"])
            image, kept = node.probe_image("big.img")
            starts = []
            info = node.upload_image(path, progress=lambda done, _, s=starts: s.append(done))
            if image is None:  # the cut came before the image was published
                # It resumes exactly at what the node kept (how much that is depends on
                # what was in flight when the link went: not on the cut point alone).
                assert starts[0] == (kept.size if kept else 0), (cut, kept, starts[0])
                resumed += starts[0] > 0
            assert info.sha256 == hashlib.sha256(data).hexdigest()
            assert node.probe_image("big.img")[1] is None
            node.remove_image("big.img")
    assert resumed > 0


def unpack_in_background(root, image, bundle):
    """Start ``bundle.unpack`` in a vzslave child; return the child and the thread."""
    transport = LocalTransport(root=root)
    client = Client(transport=transport)
    worker = threading.Thread(target=lambda: _quietly(client.unpack, image, bundle))
    worker.start()
    return transport, worker


def _quietly(func, *args):
    try:
        func(*args)
    except TransportError:
        pass


def big_image(marker):
    """An image that takes a while to unpack: 4000 files and 64 MiB of zeros."""
    members = [tb.file("rootfs/data/f{}".format(i), b"x" * 100) for i in range(4000)]
    members.append(tb.file("rootfs/big", bytes(64 << 20)))
    members.append(tb.file("rootfs/marker", marker))
    return tb.make_tar(tb.bundle(*members), fmt="tar.gz")


def test_vzslave_killed_mid_unpack_leaves_the_old_bundle_intact(tmp_path, image_file, digests):
    root = str(tmp_path / "node")
    with Client("local:" + root, digests=digests) as node:
        node.upload_image(image_file(sample_image(b"old"), "old.tgz"))
        node.unpack("old.tgz", "app")
        node.upload_image(image_file(big_image(b"new"), "new.tgz"))
    trees = os.path.join(root, "bundles", ".trees")
    transport, worker = unpack_in_background(root, "new.tgz", "app")
    deadline = time.monotonic() + 20
    while len(os.listdir(trees)) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(transport._proc.pid, signal.SIGKILL)  # the new tree is being extracted
    worker.join()
    transport.close()
    with open(os.path.join(root, "bundles", "app", "rootfs", "bin", "app"), "rb") as app:
        assert app.read() == b"old"
    with Client("local:" + root, digests=digests) as node:
        assert [(b.name, b.image) for b in node.bundles()] == [("app", "old.tgz")]
        node.unpack("new.tgz", "app")
    assert len(os.listdir(trees)) == 1


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs for the node's state (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "vzt-disk", str(mount)], check=True)
    yield str(mount)
    subprocess.run(["umount", "-l", str(mount)], check=True)


@requires_root
def test_an_unpack_that_fills_the_disk_fails_clearly_and_keeps_the_old_bundle(
        small_disk, image_file, digests):
    """When a bundle's files take more blocks than the disk has (2000 one-byte files:
    8 MB of blocks for 2 kB of data), the unpack fails with DISK_FULL naming a member,
    the old bundle stays, and no tree is left behind."""
    root = os.path.join(small_disk, "vz")
    tiny_files = [tb.file("rootfs/f{}".format(i), b"x") for i in range(2000)]
    with Client("local:" + root, digests=digests) as node:
        node.upload_image(image_file(sample_image(b"old"), "old.tgz"))
        node.unpack("old.tgz", "app")
        node.upload_image(image_file(tb.make_tar(tb.bundle(*tiny_files), fmt="tar.gz"),
                                     "many.tgz"))
        with pytest.raises(DiskFullError, match="member"):
            node.unpack("many.tgz", "app")
        assert [(b.name, b.image) for b in node.bundles()] == [("app", "old.tgz")]
    assert len(os.listdir(os.path.join(root, "bundles", ".trees"))) == 1


@requires_root
def test_an_upload_bigger_than_the_disk_is_refused_before_sending_and_keeps_the_old(
        small_disk, image_file, digests):
    root = os.path.join(small_disk, "vz")
    with Client("local:" + root, digests=digests) as node:
        old = node.upload_image(image_file(sample_image(b"old"), "app.tgz"))
        sent = []
        with pytest.raises(DiskFullError, match="free some space"):
            node.upload_image(image_file(random_bytes(8 << 20), "app.tgz"),
                              progress=lambda done, _: sent.append(done))
        # Refused early, not after 8 MB (how early depends on scheduling: the client
        # streams without waiting, and only looks for an answer between frames).
        assert sent[-1] <= 4 << 20
        assert node.images() == [old]
