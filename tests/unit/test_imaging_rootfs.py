"""Assembling a rootfs: link chains kept, excludes, tarballs, the small files of a chroot."""

import io
import os
import tarfile

import pytest

from vzmaster.imaging.errors import BuildError
from vzmaster.imaging.rootfs import Rootfs


@pytest.fixture
def host(tmp_path):
    """A source root shaped like a merged-/usr Debian: /lib -> usr/lib, versioned links."""
    root = tmp_path / "host"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib64").mkdir()
    (root / "usr/bin").mkdir()
    (root / "lib").symlink_to("usr/lib")
    (root / "lib64").symlink_to("usr/lib64")
    (root / "usr/lib/x86_64-linux-gnu/libz.so.1.2.13").write_bytes(b"libz")
    (root / "usr/lib/x86_64-linux-gnu/libz.so.1").symlink_to("libz.so.1.2.13")
    (root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(b"ld")
    (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    (root / "usr/bin/app").write_bytes(b"app")
    (root / "usr/bin/app").chmod(0o755)
    (root / "usr/share/doc/app").mkdir(parents=True)
    (root / "usr/share/doc/app/README").write_bytes(b"doc")
    (root / "usr/share/app").mkdir(parents=True)
    (root / "usr/share/app/data").write_bytes(b"data")
    return root


@pytest.fixture
def rootfs(tmp_path, host):
    return Rootfs(str(tmp_path / "rootfs"), source_root=str(host))


def test_a_path_through_a_directory_link_keeps_the_link(rootfs):
    rootfs.add_path("/lib/x86_64-linux-gnu/libz.so.1")
    staged = rootfs.path
    assert os.readlink(os.path.join(staged, "lib")) == "usr/lib"
    assert os.readlink(os.path.join(staged, "usr/lib/x86_64-linux-gnu/libz.so.1")) == \
        "libz.so.1.2.13"
    with open(os.path.join(staged, "lib/x86_64-linux-gnu/libz.so.1"), "rb") as f:
        assert f.read() == b"libz"


def test_a_chain_of_links_with_dotdot_is_followed_like_the_kernel(rootfs):
    rootfs.add_path("/lib64/ld-linux-x86-64.so.2")
    assert rootfs.read("/lib64/ld-linux-x86-64.so.2") == b"ld"
    assert os.path.islink(os.path.join(rootfs.path, "usr/lib64/ld-linux-x86-64.so.2"))


def test_copied_files_keep_their_mode_and_are_recorded(rootfs, host):
    rootfs.add_path("/usr/bin/app")
    assert os.stat(os.path.join(rootfs.path, "usr/bin/app")).st_mode & 0o777 == 0o755
    assert rootfs.copied == [str(host / "usr/bin/app")]


def test_a_directory_is_copied_whole_except_what_is_excluded(tmp_path, host):
    rootfs = Rootfs(str(tmp_path / "rootfs"), source_root=str(host),
                    exclude=["/usr/share/doc"])
    rootfs.add_path("/usr/share")
    assert rootfs.read("/usr/share/app/data") == b"data"
    assert not os.path.exists(os.path.join(rootfs.path, "usr/share/doc"))


def test_a_missing_path_is_refused_naming_it(rootfs):
    with pytest.raises(BuildError, match="/usr/bin/nothere does not exist"):
        rootfs.add_path("/usr/bin/nothere")


def test_a_relative_path_is_refused(rootfs):
    with pytest.raises(BuildError, match="not an absolute path"):
        rootfs.add_path("usr/bin/app")


def test_a_link_loop_is_refused(tmp_path, host):
    (host / "loop").symlink_to("loop")
    rootfs = Rootfs(str(tmp_path / "rootfs"), source_root=str(host))
    with pytest.raises(BuildError, match="too many levels"):
        rootfs.add_path("/loop/x")


def test_add_copy_puts_a_directory_at_its_destination(rootfs, host):
    rootfs.add_copy(str(host / "usr/share/app"), "/srv/app")
    assert rootfs.read("/srv/app/data") == b"data"


def test_base_files_are_written_only_where_missing(rootfs):
    rootfs.add_file("/etc/passwd", b"mine:x:5:5::/:/bin/sh\n")
    rootfs.add_base(["root:x:0:0:root:/root:/bin/sh"], ["root:x:0:"])
    assert rootfs.read("/etc/passwd") == b"mine:x:5:5::/:/bin/sh\n"
    assert rootfs.read("/etc/group") == b"root:x:0:\n"
    assert rootfs.read("/etc/resolv.conf") == b""
    assert b"hosts: files dns" in rootfs.read("/etc/nsswitch.conf")
    assert os.stat(os.path.join(rootfs.path, "tmp")).st_mode & 0o7777 == 0o1777
    assert all(os.path.isdir(os.path.join(rootfs.path, d)) for d in ("proc", "dev", "sys"))


def test_resolve_follows_absolute_links_inside_the_rootfs_not_the_host(rootfs):
    rootfs.add_file("/etc/real", b"inside")
    os.symlink("/etc/real", os.path.join(rootfs.path, "etc/abs"))
    assert rootfs.read("/etc/abs") == b"inside"


def make_tarball(path, members):
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def member(name, kind=tarfile.REGTYPE, data=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, (data if kind == tarfile.REGTYPE else None)


def test_a_rootfs_tarball_is_extracted_without_its_device_nodes(tmp_path, rootfs):
    tarball = tmp_path / "export.tar"
    make_tarball(tarball, [member("bin", tarfile.DIRTYPE), member("bin/app", data=b"x"),
                           member("etc", tarfile.DIRTYPE),
                           member("etc/mtab", tarfile.SYMTYPE, link="/proc/mounts"),
                           member("dev", tarfile.DIRTYPE),
                           member("dev/console", tarfile.CHRTYPE)])
    rootfs.add_tarball(str(tarball))
    assert rootfs.read("/bin/app") == b"x"
    assert os.readlink(os.path.join(rootfs.path, "etc/mtab")) == "/proc/mounts"
    assert not os.path.lexists(os.path.join(rootfs.path, "dev/console"))


def test_a_tarball_writing_through_a_link_out_of_the_rootfs_is_refused(tmp_path, rootfs):
    outside = tmp_path / "outside"
    outside.mkdir()
    tarball = tmp_path / "evil.tar"
    make_tarball(tarball, [member("etc", tarfile.SYMTYPE, link=str(outside)),
                           member("etc/passwd", data=b"owned")])
    with pytest.raises(BuildError, match="cannot extract"):
        rootfs.add_tarball(str(tarball))
    assert os.listdir(outside) == []


def test_a_damaged_tarball_is_refused(tmp_path, rootfs):
    tarball = tmp_path / "bad.tar"
    tarball.write_bytes(b"not a tarball at all" * 40)
    with pytest.raises(BuildError, match="cannot extract"):
        rootfs.add_tarball(str(tarball))
