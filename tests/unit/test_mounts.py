"""The container's mounts (vzslave/mounts.py) over real directories, with linux faked:
the image's symlinks refused, destinations made, devices, recursive options."""

import errno
import os

import pytest

from tests.conftest import requires_root
from tests.runnerfakes import FakeLinux, make_plan, mount, rootfs_bind
from vzslave import linux, mounts as mount_code
from vzslave.errors import BadConfigError
from vzslave.runio import RunnerError


@pytest.fixture
def mounts(monkeypatch):
    """Fake linux only: real directories are walked, nothing is mounted."""
    recorded = []
    monkeypatch.setattr(mount_code, "linux", FakeLinux(recorded))
    return recorded


@requires_root
def test_a_symlinked_mount_destination_is_refused(tmp_path, mounts):
    plan = make_plan(tmp_path)
    os.symlink("/etc", os.path.join(plan["rootfs"], "proc"))
    with pytest.raises(RunnerError, match="mount destination /proc is a symlink in "
                                                 "the image; refusing"):
        mount_code.mount_plan(plan, only_missing=False)
    assert mounts == [rootfs_bind(plan)]


@requires_root
def test_a_symlink_inside_a_mount_destination_is_refused(tmp_path, mounts):
    plan = make_plan(tmp_path)
    plan["mounts"] = [mount("/dev/pts", "devpts")]
    os.symlink(str(tmp_path), os.path.join(plan["rootfs"], "dev"))
    with pytest.raises(RunnerError, match="/dev/pts goes through dev, a symlink"):
        mount_code.mount_plan(plan, only_missing=False)
    assert mounts == [rootfs_bind(plan)] and not os.path.exists(str(tmp_path / "pts"))


@requires_root
def test_a_symlinked_file_bind_target_is_refused(tmp_path, mounts):
    plan = make_plan(tmp_path)
    plan["mounts"] = [mount("/etc/resolv.conf", "bind", "/etc/hostname", bind=True)]
    os.mkdir(os.path.join(plan["rootfs"], "etc"))
    os.symlink("/etc/passwd", os.path.join(plan["rootfs"], "etc", "resolv.conf"))
    with pytest.raises(RunnerError, match="/etc/resolv.conf is a symlink"):
        mount_code.mount_plan(plan, only_missing=False)
    assert mounts == [rootfs_bind(plan)]


@requires_root
def test_a_symlinked_masked_path_is_refused(tmp_path, mounts):
    plan = make_plan(tmp_path)
    plan.update(mounts=[], masked_paths=["/secret"])
    os.symlink("/etc", os.path.join(plan["rootfs"], "secret"))
    with pytest.raises(RunnerError, match="masked path /secret is a symlink"):
        mount_code.mount_plan(plan, only_missing=False)


@requires_root
def test_prepare_refuses_with_bad_config_and_releases(tmp_path, mounts, monkeypatch):
    plan = make_plan(tmp_path)
    os.symlink("/etc", os.path.join(plan["rootfs"], "proc"))
    monkeypatch.setattr(mount_code, "release", lambda p: mounts.append(("release",)) or [])
    with pytest.raises(BadConfigError, match="/proc is a symlink") as raised:
        mount_code.prepare(plan)
    assert mounts == [rootfs_bind(plan), ("release",)]
    assert raised.value.details == {"step": "mounts"}


def test_missing_destinations_are_made_as_directories_and_empty_files(tmp_path, mounts):
    plan = make_plan(tmp_path)
    plan["mounts"] = [mount("/a/b", "tmpfs"),
                      mount("/etc/hostname", "bind", "/etc/hostname", bind=True, ro=True)]
    mount_code.mount_plan(plan, only_missing=False)
    assert os.path.isdir(os.path.join(plan["rootfs"], "a", "b"))
    assert os.path.getsize(os.path.join(plan["rootfs"], "etc", "hostname")) == 0
    source = mounts[2][1]  # the node's file, opened first: mounted through its fd
    assert source.startswith("/proc/self/fd/")
    assert [m[1:] for m in mounts] == [
        rootfs_bind(plan)[1:], ("tmpfs", "tmpfs", 0), (source, None, linux.MS_BIND),
        (None, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
         | (os.statvfs(plan["rootfs"]).f_flag & linux.MS_LOCKED))]


def test_recursive_options_are_applied_to_the_mount_made(tmp_path, mounts):
    plan = make_plan(tmp_path)
    plan["mounts"] = [dict(mount("/srv", "bind", "/usr", bind=True, recursive=True),
                           setattr=[linux.MOUNT_ATTR_RDONLY, 0])]
    mount_code.mount_plan(plan, only_missing=False)
    source = mounts[1][1]  # the node's directory, opened first: mounted through its fd
    assert source.startswith("/proc/self/fd/")
    assert mounts == [rootfs_bind(plan), ("mount", source, None, linux.MS_BIND | linux.MS_REC),
                      ("mount_setattr", linux.MOUNT_ATTR_RDONLY, 0)]


def test_devices_are_made_only_on_a_dev_tmpfs_mounted_here(tmp_path, mounts, monkeypatch):
    plan = make_plan(tmp_path)
    plan.update(mounts=[], devices=[{"path": "/dev/null", "type": "c", "major": 1,
                                      "minor": 3, "mode": 0o666, "uid": 0, "gid": 0}],
                links=[["/dev/fd", "/proc/self/fd"]])
    mount_code.mount_plan(plan, only_missing=False)
    assert not os.path.exists(os.path.join(plan["rootfs"], "dev"))


def test_without_mknod_a_device_is_bound_from_the_host(tmp_path, mounts, monkeypatch):
    plan = make_plan(tmp_path)
    plan.update(mounts=[mount("/dev", "tmpfs")],
                devices=[{"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                          "mode": 0o666, "uid": 0, "gid": 0}],
                links=[["/dev/fd", "/proc/self/fd"]])

    def mknod(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(mount_code.os, "mknod", mknod)
    mount_code.mount_plan(plan, only_missing=False)
    node = os.path.join(plan["rootfs"], "dev", "null")
    assert os.path.isfile(node) and os.stat(node).st_mode & 0o777 == 0o666
    assert mounts[-1][1:] == ("/dev/null", None, linux.MS_BIND)
    assert os.readlink(os.path.join(plan["rootfs"], "dev", "fd")) == "/proc/self/fd"


