"""What the extractor does with benign images: links, modes, owners, times, formats.

The hostile side is tests/unit/test_unpack_hostile.py. Tarballs are built at run
time with tests/tarballs.py.
"""

import io
import os
import random
import stat
import tarfile
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from tests import tarballs as tb
from vzslave.errors import BadImageError, UnsafeImageError
from vzslave.formats import available_formats, decompressed
from vzslave.unpack import ExtractResult

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="owners and setid bits need root")


def extract(tmp_path: Path, *members: tb.Member, **kwargs: Any) -> Tuple[Path, ExtractResult]:
    """Extract the bundle of ``members`` to tmp_path/b; returns (its rootfs, the result)."""
    result = tb.extract_image(tb.make_tar(tb.bundle(*members)), tmp_path / "b", **kwargs)
    return tmp_path / "b" / "rootfs", result


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def tree(root: Path) -> Dict[str, Tuple[Any, ...]]:
    """Every entry under ``root``: type and permission bits, owner, mtime, contents."""
    seen: Dict[str, Tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                content: object = Path(path).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            seen[os.path.relpath(path, str(root))] = (
                st.st_mode, st.st_uid, st.st_gid, st.st_mtime, content)
    return seen


# -- links ----------------------------------------------------------------------


def test_absolute_symlink_inside_rootfs_is_kept_as_is(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.file("rootfs/bin/busybox", b"\x7fELF", mode=0o755),
                        tb.symlink("rootfs/bin/sh", "/bin/busybox"))
    assert os.readlink(str(rootfs / "bin" / "sh")) == "/bin/busybox"


def test_relative_symlink_within_the_tree_is_kept_as_is(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.file("rootfs/bin/busybox", b"\x7fELF"),
                        tb.symlink("rootfs/usr/bin/env", "../../bin/busybox"))
    assert os.readlink(str(rootfs / "usr" / "bin" / "env")) == "../../bin/busybox"
    assert (rootfs / "usr" / "bin" / "env").read_bytes() == b"\x7fELF"


def test_dangling_symlink_inside_the_tree_is_allowed(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.symlink("rootfs/etc/mtab", "/proc/mounts"),
                        tb.symlink("rootfs/etc/localtime", "../usr/share/zoneinfo/UTC"))
    assert os.readlink(str(rootfs / "etc" / "mtab")) == "/proc/mounts"
    assert os.readlink(str(rootfs / "etc" / "localtime")) == "../usr/share/zoneinfo/UTC"


def test_symlink_climbing_exactly_to_the_root_filesystem_is_allowed(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.symlink("rootfs/a/b/top", "../.."),
                        tb.symlink("rootfs/a/b/abs", "/a/b/../.."))
    assert os.readlink(str(rootfs / "a" / "b" / "top")) == "../.."
    assert os.readlink(str(rootfs / "a" / "b" / "abs")) == "/a/b/../.."


def test_symlink_chain_that_stays_inside_is_allowed(tmp_path: Path) -> None:
    """usrmerge style: /lib -> usr/lib, and a link that goes through it and back up."""
    rootfs, _ = extract(tmp_path, tb.directory("rootfs/usr/lib"),
                        tb.symlink("rootfs/lib", "usr/lib"),
                        tb.symlink("rootfs/etc/ld", "../lib/../etc"))
    assert os.readlink(str(rootfs / "etc" / "ld")) == "../lib/../etc"


def test_symlink_loop_is_refused_as_the_kernel_would_not_resolve_it(tmp_path: Path) -> None:
    """A loop is broken inside the container (ELOOP); past 40 hops userland resolvers
    could be led anywhere, so such links are refused, loops included."""
    with pytest.raises(UnsafeImageError, match="40 hops"):
        extract(tmp_path, tb.symlink("rootfs/a", "b"), tb.symlink("rootfs/b", "a/.."))


def test_hardlinks_inside_the_tree_share_an_inode(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.file("rootfs/bin/busybox", b"\x7fELF", mode=0o755),
                        tb.hardlink("rootfs/bin/ls", "rootfs/bin/busybox"),
                        tb.hardlink("rootfs/usr/bin/env", "./rootfs/bin/ls"))
    inodes = {os.lstat(str(rootfs / p)).st_ino for p in ("bin/busybox", "bin/ls", "usr/bin/env")}
    assert len(inodes) == 1
    assert os.lstat(str(rootfs / "bin" / "ls")).st_nlink == 3


# -- modes ----------------------------------------------------------------------


def test_file_modes_are_kept(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.file("rootfs/bin/tool", mode=0o750),
                        tb.file("rootfs/etc/shadow", mode=0o640),
                        tb.file("rootfs/etc/secret", mode=0o000),
                        tb.file("rootfs/tmp/sticky", mode=0o1644))
    assert [mode_of(rootfs / p) for p in ("bin/tool", "etc/shadow", "etc/secret", "tmp/sticky")] \
        == [0o750, 0o640, 0o000, 0o1644]


def test_tmp_directory_keeps_mode_1777(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.directory("rootfs/tmp", mode=0o1777),
                        tb.file("rootfs/tmp/x"))
    assert mode_of(rootfs / "tmp") == 0o1777


@needs_root
def test_read_only_directories_keep_mode_0555_with_their_contents(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.directory("rootfs/ro", mode=0o555),
                        tb.file("rootfs/ro/inside", b"x"),
                        tb.directory("rootfs/ro/sub", mode=0o555),
                        tb.file("rootfs/ro/sub/deeper", b"y"))
    assert mode_of(rootfs / "ro") == mode_of(rootfs / "ro" / "sub") == 0o555
    assert (rootfs / "ro" / "sub" / "deeper").read_bytes() == b"y"


def test_without_root_directories_stay_writable_by_their_owner(tmp_path: Path) -> None:
    """An unprivileged vzslave must still be able to manage (and remove) the tree."""
    rootfs, _ = extract(tmp_path, tb.directory("rootfs/ro", mode=0o555),
                        tb.file("rootfs/ro/inside", b"x"), as_root=False)
    assert mode_of(rootfs / "ro") == 0o755


def test_setuid_and_setgid_bits_are_stripped_from_files_by_default(tmp_path: Path) -> None:
    rootfs, result = extract(tmp_path, tb.file("rootfs/bin/su", mode=0o4755),
                             tb.file("rootfs/usr/bin/wall", mode=0o2755),
                             tb.file("rootfs/bin/plain", mode=0o755))
    assert mode_of(rootfs / "bin" / "su") == mode_of(rootfs / "usr" / "bin" / "wall") == 0o755
    assert result.setid_stripped == ["rootfs/bin/su", "rootfs/usr/bin/wall"]


@needs_root
def test_setid_bits_are_kept_with_keep_setid_as_root(tmp_path: Path) -> None:
    rootfs, result = extract(tmp_path, tb.file("rootfs/bin/su", mode=0o4755, uid=0, gid=0),
                             tb.file("rootfs/usr/bin/wall", mode=0o2755, uid=0, gid=5),
                             as_root=True, keep_setid=True)
    assert mode_of(rootfs / "bin" / "su") == 0o4755
    assert mode_of(rootfs / "usr" / "bin" / "wall") == 0o2755
    assert result.setid_stripped == []


def test_keep_setid_is_ignored_without_root(tmp_path: Path) -> None:
    rootfs, result = extract(tmp_path, tb.file("rootfs/bin/su", mode=0o4755),
                             as_root=False, keep_setid=True)
    assert mode_of(rootfs / "bin" / "su") == 0o755
    assert result.setid_stripped == ["rootfs/bin/su"]


def test_setgid_on_directories_is_kept(tmp_path: Path) -> None:
    rootfs, result = extract(tmp_path, tb.directory("rootfs/srv/shared", mode=0o2775))
    assert mode_of(rootfs / "srv" / "shared") == 0o2775
    assert result.setid_stripped == []


# -- owners and times ------------------------------------------------------------


@needs_root
def test_numeric_owners_are_kept_as_root_ignoring_names(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path,
                        tb.file("rootfs/home/u/f", uid=1234, gid=5678, uname="root", gname="root"),
                        tb.directory("rootfs/home/u", uid=1234, gid=5678, uname="root"),
                        as_root=True)
    for path in (rootfs / "home" / "u", rootfs / "home" / "u" / "f"):
        st = os.lstat(str(path))
        assert (st.st_uid, st.st_gid) == (1234, 5678)


@needs_root
def test_symlink_owners_are_kept_as_root(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.symlink("rootfs/l", "/x", uid=42, gid=43), as_root=True)
    st = os.lstat(str(rootfs / "l"))
    assert (st.st_uid, st.st_gid) == (42, 43)


def test_without_root_owners_are_the_extracting_user(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.file("rootfs/f", uid=1234, gid=5678), as_root=False)
    st = os.lstat(str(rootfs / "f"))
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_mtimes_are_kept_on_files_directories_and_symlinks(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.directory("rootfs/etc", mtime=1_000_000_000),
                        tb.file("rootfs/etc/hosts", mtime=1_100_000_000),
                        tb.symlink("rootfs/etc/mtab", "/proc/mounts", mtime=1_200_000_000))
    assert os.lstat(str(rootfs / "etc")).st_mtime == 1_000_000_000
    assert os.lstat(str(rootfs / "etc" / "hosts")).st_mtime == 1_100_000_000
    assert os.lstat(str(rootfs / "etc" / "mtab")).st_mtime == 1_200_000_000
    assert os.lstat(str(rootfs)).st_mtime == tb.MTIME


def test_absurd_mtime_does_not_fail_the_image(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.file("rootfs/f", b"x", pax={"mtime": "1e300"}))
    assert (rootfs / "f").read_bytes() == b"x"


# -- names and structure ----------------------------------------------------------


def test_implicit_parent_directories_are_created_0755(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.file("rootfs/usr/share/doc/README", b"x"))
    assert [mode_of(rootfs / p) for p in ("usr", "usr/share", "usr/share/doc")] == [0o755] * 3


def test_directory_entry_after_its_contents_sets_its_mode(tmp_path: Path) -> None:
    """A directory may appear after (and besides) the parents made for its contents."""
    rootfs, _ = extract(tmp_path, tb.file("rootfs/var/log/x"),
                        tb.directory("rootfs/var/log", mode=0o750),
                        tb.directory("rootfs/var/log", mode=0o700))
    assert mode_of(rootfs / "var" / "log") == 0o700


def test_leading_dot_slash_on_names_is_accepted(tmp_path: Path) -> None:
    image = tb.make_tar([tb.file("./config.json", tb.config_json("rootfs")),
                         tb.directory("./rootfs"), tb.file("./rootfs/etc/hosts", b"h"),
                         tb.hardlink("./rootfs/etc/hosts2", "./rootfs/etc/hosts")])
    result = tb.extract_image(image, tmp_path / "b")
    assert (tmp_path / "b" / "rootfs" / "etc" / "hosts2").read_bytes() == b"h"
    assert result.root_dir == "rootfs"


def test_dot_slash_entry_is_ignored(tmp_path: Path) -> None:
    """``tar -C bundle -cf - .`` starts with "./"; its mode must not reach dest."""
    image = tb.make_tar([tb.directory("./", mode=0o777)] + tb.bundle(tb.file("rootfs/x")))
    result = tb.extract_image(image, tmp_path / "b")
    assert sorted(os.listdir(str(tmp_path / "b"))) == ["config.json", "rootfs"]
    assert mode_of(tmp_path / "b") == 0o700
    assert result.files == 3


def test_config_json_may_come_after_the_root_filesystem(tmp_path: Path) -> None:
    image = tb.make_tar([tb.directory("rootfs"), tb.file("rootfs/x"),
                         tb.file("config.json", tb.config_json("rootfs"))])
    assert tb.extract_image(image, tmp_path / "b").root_dir == "rootfs"


def test_config_json_is_extracted_verbatim(tmp_path: Path) -> None:
    config = tb.config_json("rootfs", hostname="web1")
    image = tb.make_tar(tb.bundle(config=config))
    tb.extract_image(image, tmp_path / "b")
    assert (tmp_path / "b" / "config.json").read_bytes() == config


@pytest.mark.parametrize("root_path", ["./fs", "fs/", "fs"])
def test_root_directory_may_have_any_name_that_config_json_gives(
        tmp_path: Path, root_path: str) -> None:
    image = tb.make_tar([tb.file("config.json", tb.config_json(root_path)),
                         tb.directory("fs"), tb.file("fs/etc/hosts")])
    assert tb.extract_image(image, tmp_path / "b").root_dir == "fs"


def test_image_with_an_empty_root_filesystem_extracts(tmp_path: Path) -> None:
    rootfs, result = extract(tmp_path)
    assert os.listdir(str(rootfs)) == []
    assert result.files == 2


def test_old_style_and_contiguous_regular_files_are_regular_files(tmp_path: Path) -> None:
    rootfs, _ = extract(tmp_path, tb.Member("rootfs/old", tarfile.AREGTYPE, data=b"o"),
                        tb.Member("rootfs/contig", tarfile.CONTTYPE, data=b"c"))
    assert (rootfs / "old").read_bytes() == b"o"
    assert (rootfs / "contig").read_bytes() == b"c"


def test_file_contents_larger_than_the_copy_block_are_written_exactly(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(2 * 1024 * 1024 + 12345)
    rootfs, _ = extract(tmp_path, tb.file("rootfs/blob", data))
    assert (rootfs / "blob").read_bytes() == data


# -- formats and results ----------------------------------------------------------

# Every directory explicit: made-up parents would carry the time of the extraction.
SAMPLE = tb.bundle(
    tb.directory("rootfs/bin"), tb.file("rootfs/bin/busybox", b"\x7fELF" * 1000, mode=0o755),
    tb.symlink("rootfs/bin/sh", "busybox"), tb.hardlink("rootfs/bin/ls", "rootfs/bin/busybox"),
    tb.directory("rootfs/tmp", mode=0o1777), tb.directory("rootfs/etc"),
    tb.file("rootfs/etc/hostname", b"box\n"),
    *[tb.directory("rootfs" + "/long" * depth) for depth in range(1, 31)],
    tb.file("rootfs/" + "long/" * 30 + "name", b"deep"),
)


@pytest.mark.parametrize("fmt", tb.FORMATS)
def test_all_formats_extract_identically(tmp_path: Path, fmt: str) -> None:
    tb.extract_image(tb.make_tar(SAMPLE), tmp_path / "plain")
    tb.extract_image(tb.make_tar(SAMPLE, fmt=fmt), tmp_path / "b", fmt=fmt)
    assert tree(tmp_path / "b") == tree(tmp_path / "plain")


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT],
                         ids=["ustar", "gnu"])
def test_ustar_and_gnu_tarballs_extract_like_pax(tmp_path: Path, tar_format: int) -> None:
    tb.extract_image(tb.make_tar(SAMPLE), tmp_path / "pax")
    tb.extract_image(tb.make_tar(SAMPLE, tar_format=tar_format), tmp_path / "b")
    assert tree(tmp_path / "b") == tree(tmp_path / "pax")


def test_decompressed_passes_a_plain_tar_through(tmp_path: Path) -> None:
    stream = io.BytesIO(b"raw")
    with decompressed(stream, "tar") as out:
        assert out is stream


def test_unknown_format_is_a_bad_image() -> None:
    with pytest.raises(BadImageError):
        with decompressed(io.BytesIO(b"PK\x03\x04"), "zip"):
            pass


def test_extract_result_counts_members_and_bytes(tmp_path: Path) -> None:
    """files counts every member made (config.json and directories too); bytes counts
    regular-file data once per file, hard links adding nothing."""
    members = tb.bundle(tb.file("rootfs/a", b"x" * 1000), tb.file("rootfs/b", b""),
                        tb.hardlink("rootfs/c", "rootfs/a"), tb.symlink("rootfs/d", "a"),
                        tb.file("rootfs/sub/e", b"y" * 24))
    result = tb.extract_image(tb.make_tar(members), tmp_path / "b")
    assert result == ExtractResult(root_dir="rootfs", files=7,
                                   bytes=len(members[0].data) + 1024, setid_stripped=[])


def test_available_formats_include_tar_zst() -> None:
    assert available_formats() == list(tb.FORMATS)


def test_existing_dest_is_refused_and_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "keep").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        tb.extract_image(tb.make_tar(tb.bundle()), dest)
    assert (dest / "keep").read_bytes() == b"mine"
