"""Filesystem primitives: atomic replacement, locks, safe tree removal."""

import os
import subprocess

import pytest

from tests.conftest import requires_root
from vzslave import fs
from vzslave.errors import BusyError


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "state"
    path.write_bytes(b"old")
    fs.atomic_write(str(path), b"new", 0o600)
    assert path.read_bytes() == b"new"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(tmp_path) == ["state"]


def test_atomic_symlink_repoints_an_existing_link(tmp_path):
    link = tmp_path / "current"
    fs.atomic_symlink("a", str(link))
    fs.atomic_symlink("b", str(link))
    assert os.readlink(link) == "b"
    assert os.listdir(tmp_path) == ["current"]


def test_a_held_lock_makes_the_second_taker_busy(tmp_path):
    path = str(tmp_path / "lock")
    with fs.exclusive_lock(path, "bundle 'x'"):
        assert fs.is_locked(path)
        with pytest.raises(BusyError, match="bundle 'x'"):
            with fs.exclusive_lock(path, "bundle 'x'"):
                pass
    assert not fs.is_locked(path)


def test_remove_tree_does_not_follow_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"x")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "link").symlink_to(outside)
    (tree / "abs").symlink_to("/")
    fs.remove_tree(str(tree))
    assert not tree.exists()
    assert (outside / "keep").read_bytes() == b"x"


def test_remove_tree_opens_up_read_only_directories(tmp_path):
    tree = tmp_path / "tree"
    (tree / "ro").mkdir(parents=True)
    (tree / "ro" / "f").write_bytes(b"x")
    os.chmod(tree / "ro", 0o555)
    fs.remove_tree(str(tree))
    assert not tree.exists()


def test_remove_tree_of_a_missing_path_is_fine(tmp_path):
    fs.remove_tree(str(tmp_path / "nothing"))


@requires_root
def test_remove_tree_refuses_a_tree_with_a_mount_inside(tmp_path):
    inner = tmp_path / "tree" / "mnt"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "vzt", str(inner)], check=True)
    try:
        (inner / "precious").write_bytes(b"x")
        with pytest.raises(BusyError, match="mounts under it"):
            fs.remove_tree(str(tmp_path / "tree"))
        assert (inner / "precious").exists()
    finally:
        subprocess.run(["umount", str(inner)], check=True)


@requires_root
def test_mounts_under_decodes_escaped_mount_points(tmp_path):
    spaced = tmp_path / "with space"
    spaced.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "vzt", str(spaced)], check=True)
    try:
        assert fs.mounts_under(str(tmp_path)) == [str(spaced)]
    finally:
        subprocess.run(["umount", str(spaced)], check=True)


def test_free_space_reports_bytes_and_inodes(tmp_path):
    free = fs.free_space(str(tmp_path))
    assert free.bytes > 0 and free.inodes > 0


def test_sync_filesystem_runs(tmp_path):
    fs.sync_filesystem(str(tmp_path))
