"""The state layout under one root, and the limits the stores enforce."""

import os
import stat

from vzslave.config import Layout, Limits
from vzslave.fs import FreeSpace


def test_every_path_lies_under_the_state_root(tmp_path):
    layout = Layout(str(tmp_path / "vz"))
    paths = [layout.images, layout.blobs, layout.partial, layout.bundles, layout.trees,
             layout.locks, layout.containers, layout.container_dir("web"), layout.logs,
             layout.bin, layout.launcher, layout.log_dir, layout.policy, layout.reserve]
    assert all(path.startswith(layout.root + os.sep) for path in paths)
    assert len(set(paths)) == len(paths)


def test_make_dirs_makes_every_store_private_to_its_owner(tmp_path):
    layout = Layout(str(tmp_path / "vz"))
    layout.make_dirs()
    layout.make_dirs()  # again: nothing to do, no error
    for path in (layout.root, layout.images, layout.trees, layout.containers, layout.logs):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_an_upload_may_use_the_free_space_less_the_reserve():
    limits = Limits(reserve_bytes=16 << 20)
    assert limits.usable(FreeSpace(bytes=100 << 20, inodes=1, total=10 << 30, block=4096)) \
        == 84 << 20


def test_on_a_small_disk_the_reserve_shrinks_to_two_percent():
    limits = Limits(reserve_bytes=16 << 20)
    assert limits.usable(FreeSpace(bytes=50 << 20, inodes=1, total=100 << 20, block=4096)) \
        == (50 << 20) - (100 << 20) // 50


def test_a_disk_fuller_than_the_reserve_leaves_nothing_usable():
    assert Limits().usable(FreeSpace(bytes=1 << 20, inodes=1, total=10 << 30, block=4096)) == 0
