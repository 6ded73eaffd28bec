"""The attack corpus: hostile images the extractor must refuse without a trace.

Every tarball is built at run time (tests/tarballs.py). Each refusal asserts the
error class, that the error names the offending member, that the half-made bundle
is gone, and that nothing outside it changed: the directory holding ``dest`` also
holds a sentinel tree (``outside/victim`` and friends) that attacks aim at, by
relative paths (``../outside/victim`` from dest) and by absolute ones. ``@OUT@`` in
a member spec stands for the sentinel directory's absolute path.

The snapshot compares paths, types, contents, link targets, modes, owners, mtimes,
inode numbers, link counts and ctimes, so even a hard link made and removed again
(which bumps the victim's ctime) is caught.
"""

import dataclasses
import os
import random
import stat
import tarfile
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests import tarballs as tb
from vzslave.config import Limits
from vzslave.oci import MAX_CONFIG
from vzslave.errors import (
    BadImageError,
    DiskFullError,
    UnsafeImageError,
    VzError,
)

OUT = "@OUT@"
VICTIM = b"the victim's original bytes\n"
IS_ROOT = os.geteuid() == 0
try:
    from zstandard import ZstdError
except ImportError:  # the extractor may be using the zstd program instead
    ZstdError = Exception  # type: ignore[misc,assignment]

NOT_RAISED = pytest.fail.Exception  # what pytest.raises raises when nothing was raised
needs_root = pytest.mark.skipif(not IS_ROOT, reason="owners are only applied as root")


# -- the arena: dest beside a sentinel tree ---------------------------------------


@dataclasses.dataclass
class Arena:
    root: Path  # holds dest and the sentinels
    dest: Path  # where the bundle goes: root/b, so "../outside" from dest is a sentinel
    outside: Path


def make_arena(root: Path) -> Arena:
    outside = root / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "victim").write_bytes(VICTIM)
    (outside / "sub" / "keep").write_bytes(b"keep")
    os.symlink("victim", str(outside / "link"))
    os.chmod(str(outside / "victim"), 0o640)
    os.utime(str(outside / "victim"), (1_000_000, 1_000_000))
    return Arena(root, root / "b", outside)


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    return make_arena(tmp_path)


def snapshot(root: Path) -> Dict[str, Tuple[Any, ...]]:
    """Everything under ``root`` (not root's own times: dest comes and goes in it)."""
    seen: Dict[str, Tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content: object = f.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            seen[os.path.relpath(path, str(root))] = (
                st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                st.st_ino, st.st_nlink, content)
    return seen


def without_dest(seen: Dict[str, Tuple[Any, ...]]) -> Dict[str, Tuple[Any, ...]]:
    """A snapshot with the bundle (``b``) and everything in it left out."""
    return {path: v for path, v in seen.items() if path != "b" and not path.startswith("b/")}


def placed(members: List[tb.Member], arena: Arena) -> List[tb.Member]:
    """``members`` with @OUT@ replaced by the sentinel directory's absolute path."""
    def sub(text: str) -> str:
        return text.replace(OUT, str(arena.outside))
    return [m.replace(name=sub(m.name), linkname=sub(m.linkname),
                      pax={k: sub(v) for k, v in (m.pax or {}).items()}) for m in members]


def assert_refused(arena: Arena, image: bytes, error: Type[VzError], member: Optional[str],
                   says: str = "", fmt: str = "tar", **extract_args: Any) -> VzError:
    """Extraction raises ``error`` naming ``member``; dest is gone, the sentinels intact."""
    before = snapshot(arena.root)
    with pytest.raises(error) as caught:
        tb.extract_image(image, arena.dest, fmt=fmt, **extract_args)
    message = str(caught.value)
    if member is not None:
        member = member.replace(OUT, str(arena.outside))
        assert caught.value.details.get("member") == member
        assert repr(member) in message
    assert says in message
    assert not os.path.lexists(str(arena.dest))
    assert snapshot(arena.root) == before
    return caught.value


def refuse(arena: Arena, members: List[tb.Member], error: Type[VzError],
           member: Optional[str], **kwargs: Any) -> VzError:
    return assert_refused(arena, tb.make_tar(placed(members, arena)), error, member, **kwargs)


def unsafe(*members: tb.Member, member: str, id: str) -> object:
    """A parametrize case: the bundle plus ``members``, refused as unsafe at ``member``."""
    return pytest.param(tb.bundle(*members), member, id=id)


# -- paths ----------------------------------------------------------------------

PATH_ATTACKS = [
    unsafe(tb.file(OUT + "/victim", b"pwned"), member=OUT + "/victim", id="absolute-path"),
    unsafe(tb.file("/" + OUT + "/victim", b"pwned"), member="/" + OUT + "/victim",
           id="absolute-path-double-slash"),
    unsafe(tb.file("../outside/victim", b"pwned"), member="../outside/victim",
           id="dotdot-leading"),
    unsafe(tb.file("./../outside/victim", b"pwned"), member="./../outside/victim",
           id="dotdot-after-dot-slash"),
    unsafe(tb.file("rootfs/../../outside/victim", b"pwned"),
           member="rootfs/../../outside/victim", id="dotdot-rootfs-up-up"),
    unsafe(tb.file("rootfs/a/../../../outside/victim", b"pwned"),
           member="rootfs/a/../../../outside/victim", id="dotdot-middle"),
    unsafe(tb.directory("rootfs/.."), member="rootfs/..", id="dotdot-trailing-directory"),
    unsafe(tb.file("rootfs/a/../b", b"x"), member="rootfs/a/../b",
           id="dotdot-that-stays-inside-is-still-refused"),
    unsafe(tb.file("rootfs/ok", b"pwned", pax={"path": OUT + "/victim"}),
           member=OUT + "/victim", id="pax-path-absolute"),
    unsafe(tb.file("rootfs/ok", b"pwned", pax={"path": "rootfs/../../outside/victim"}),
           member="rootfs/../../outside/victim", id="pax-path-dotdot"),
    unsafe(tb.file("rootfs/ok", b"x", pax={"path": "rootfs/a\x00/../../../outside/victim"}),
           member="rootfs/a\x00/../../../outside/victim", id="pax-path-with-nul"),
]


@pytest.mark.parametrize("members, member", PATH_ATTACKS)
def test_path_escapes_are_refused(arena: Arena, members: List[tb.Member], member: str) -> None:
    refuse(arena, members, UnsafeImageError, member)


def test_gnu_longname_with_dotdot_is_refused(arena: Arena) -> None:
    name = "rootfs/" + "a" * 120 + "/../../../outside/victim"
    image = tb.make_tar(tb.bundle(tb.file(name, b"pwned")), tar_format=tarfile.GNU_FORMAT)
    assert b"././@LongLink" in image  # really a GNU long-name member
    assert_refused(arena, image, UnsafeImageError, name)


def test_ustar_prefix_field_with_dotdot_is_refused(arena: Arena) -> None:
    """Names over 100 characters split into ustar's prefix and name fields."""
    name = "rootfs/" + "b" * 90 + "/../../../outside/victim"
    image = tb.make_tar(tb.bundle(tb.file(name, b"pwned")), tar_format=tarfile.USTAR_FORMAT)
    assert_refused(arena, image, UnsafeImageError, name)


def test_pax_global_header_rewriting_paths_is_refused(arena: Arena) -> None:
    """A global header's path reaches every later member that has its own header."""
    victim = str(arena.outside / "victim")
    image = tb.make_tar(tb.bundle(tb.file("rootfs/ok", b"pwned", pax={"comment": "hi"})),
                        global_pax={"path": victim})
    assert_refused(arena, image, UnsafeImageError, victim)


# -- symlinks -------------------------------------------------------------------

SYMLINK_ATTACKS = [
    unsafe(tb.symlink("rootfs/esc", "../../outside"), tb.file("rootfs/esc/victim", b"pwned"),
           member="rootfs/esc/victim", id="dotdot-symlink-then-file-through-it"),
    unsafe(tb.symlink("rootfs/evil", OUT), tb.file("rootfs/evil/victim", b"pwned"),
           member="rootfs/evil/victim", id="absolute-symlink-then-file-through-it"),
    unsafe(tb.symlink("rootfs/evil", OUT), tb.directory("rootfs/evil/new"),
           member="rootfs/evil/new", id="absolute-symlink-then-directory-through-it"),
    unsafe(tb.symlink("rootfs/evil", OUT), tb.symlink("rootfs/evil/new", "/x"),
           member="rootfs/evil/new", id="absolute-symlink-then-symlink-through-it"),
    unsafe(tb.file("rootfs/f", b"x"), tb.symlink("rootfs/evil", OUT),
           tb.hardlink("rootfs/evil/new", "rootfs/f"),
           member="rootfs/evil/new", id="absolute-symlink-then-hardlink-through-it"),
    unsafe(tb.symlink("rootfs/evil", OUT), tb.file("rootfs/evil/../evil/victim", b"pwned"),
           member="rootfs/evil/../evil/victim", id="symlink-then-file-via-dotdot-spelling"),
    unsafe(tb.symlink("rootfs/up", "../../outside"), member="rootfs/up",
           id="relative-symlink-leaving-the-bundle"),
    unsafe(tb.symlink("rootfs/conf", "../config.json"), member="rootfs/conf",
           id="symlink-to-the-bundles-config-json"),
    unsafe(tb.symlink("rootfs/bundle", ".."), member="rootfs/bundle",
           id="symlink-to-the-bundle-directory"),
    unsafe(tb.symlink("rootfs/a/b/c", "../../../x"), member="rootfs/a/b/c",
           id="deep-symlink-one-level-too-many"),
    unsafe(tb.symlink("rootfs/x", "/../outside"), member="rootfs/x",
           id="absolute-target-climbing-above-root"),
    unsafe(tb.directory("rootfs/a"), tb.symlink("rootfs/a/l", ".."),
           tb.symlink("rootfs/m", "a/l/.."), member="rootfs/m",
           id="chained-relative-links-each-fine-alone"),
    unsafe(tb.symlink("rootfs/m", "a/l/.."), tb.directory("rootfs/a"),
           tb.symlink("rootfs/a/l", ".."), member="rootfs/m",
           id="chained-links-in-reverse-order"),
    unsafe(tb.symlink("rootfs/r", "/"), tb.symlink("rootfs/m", "r/.."), member="rootfs/m",
           id="chained-via-a-link-to-the-root"),
    unsafe(tb.symlink("rootfs/d/l", "/d"), tb.symlink("rootfs/m", "d/l/l/../../.."),
           member="rootfs/m", id="chained-via-a-self-referencing-absolute-link"),
    unsafe(tb.symlink("rootfs/x", "ok", pax={"linkpath": "../../outside"}), member="rootfs/x",
           id="pax-linkpath-rewrite"),
]


@pytest.mark.parametrize("members, member", SYMLINK_ATTACKS)
def test_symlink_escapes_are_refused(arena: Arena, members: List[tb.Member],
                                     member: str) -> None:
    refuse(arena, members, UnsafeImageError, member)


def test_gnu_longlink_symlink_escape_is_refused(arena: Arena) -> None:
    target = "./" * 60 + "../../outside"
    image = tb.make_tar(tb.bundle(tb.symlink("rootfs/l", target)), tar_format=tarfile.GNU_FORMAT)
    assert_refused(arena, image, UnsafeImageError, "rootfs/l")


def test_symlink_escape_padded_past_the_hop_limit_is_refused(arena: Arena) -> None:
    members = tb.bundle(tb.symlink("rootfs/A", "."),
                        tb.symlink("rootfs/L", "A/" * 41 + "../../outside"))
    refuse(arena, members, UnsafeImageError, "rootfs/L")


# -- hard links -----------------------------------------------------------------

HARDLINK_ATTACKS = [
    unsafe(tb.hardlink("rootfs/h", OUT + "/victim"), member="rootfs/h",
           id="hardlink-to-absolute-path"),
    unsafe(tb.hardlink("rootfs/h", "../outside/victim"), member="rootfs/h",
           id="hardlink-dotdot-leading"),
    unsafe(tb.hardlink("rootfs/h", "rootfs/../../outside/victim"), member="rootfs/h",
           id="hardlink-dotdot-middle"),
    unsafe(tb.hardlink("rootfs/h", OUT + "/victim"), tb.file("rootfs/h", b"pwned"),
           member="rootfs/h", id="hardlink-outside-then-overwrite"),
    unsafe(tb.hardlink("rootfs/h", "../outside/victim"), tb.file("rootfs/h", b"pwned"),
           member="rootfs/h", id="hardlink-dotdot-then-overwrite"),
    unsafe(tb.hardlink("rootfs/h", "rootfs/ok", pax={"linkpath": OUT + "/victim"}),
           member="rootfs/h", id="hardlink-pax-linkpath-absolute"),
    unsafe(tb.hardlink("rootfs/h", "rootfs/missing"), member="rootfs/h",
           id="hardlink-to-missing-member"),
    unsafe(tb.hardlink("rootfs/h", "rootfs/f"), tb.file("rootfs/f", b"x"), member="rootfs/h",
           id="hardlink-to-later-member"),
    unsafe(tb.hardlink("rootfs/h", "rootfs/h"), member="rootfs/h", id="hardlink-to-itself"),
    unsafe(tb.symlink("rootfs/s", OUT + "/victim"), tb.hardlink("rootfs/h", "rootfs/s"),
           member="rootfs/h", id="hardlink-to-symlink"),
    unsafe(tb.directory("rootfs/d"), tb.hardlink("rootfs/h", "rootfs/d"), member="rootfs/h",
           id="hardlink-to-directory"),
    unsafe(tb.file("rootfs/d/x"), tb.hardlink("rootfs/h", "rootfs/d"), member="rootfs/h",
           id="hardlink-to-implicit-directory"),
    unsafe(tb.hardlink("rootfs/h", "rootfs"), member="rootfs/h",
           id="hardlink-to-root-directory"),
    unsafe(tb.symlink("rootfs/o", OUT), tb.hardlink("rootfs/h", "rootfs/o/victim"),
           member="rootfs/h", id="hardlink-through-symlinked-directory"),
    unsafe(tb.hardlink("rootfs/h", "config.json"), member="rootfs/h",
           id="hardlink-to-config-json"),
]


@pytest.mark.parametrize("members, member", HARDLINK_ATTACKS)
def test_hardlink_escapes_are_refused(arena: Arena, members: List[tb.Member],
                                      member: str) -> None:
    refuse(arena, members, UnsafeImageError, member)


# -- the same name twice -------------------------------------------------------

DUPLICATES = [
    unsafe(tb.file("rootfs/f", b"1"), tb.file("rootfs/f", b"2"), member="rootfs/f",
           id="file-then-file"),
    unsafe(tb.symlink("rootfs/f", OUT + "/victim"), tb.file("rootfs/f", b"pwned"),
           member="rootfs/f", id="symlink-then-file"),
    unsafe(tb.file("rootfs/f", b"1"), tb.symlink("rootfs/f", OUT + "/victim"),
           member="rootfs/f", id="file-then-symlink"),
    unsafe(tb.directory("rootfs/d"), tb.file("rootfs/d", b"1"), member="rootfs/d",
           id="dir-then-file"),
    unsafe(tb.file("rootfs/d", b"1"), tb.directory("rootfs/d"), member="rootfs/d",
           id="file-then-dir"),
    unsafe(tb.directory("rootfs/d"), tb.symlink("rootfs/d", OUT), member="rootfs/d",
           id="dir-then-symlink"),
    unsafe(tb.file("rootfs/d/x"), tb.symlink("rootfs/d", OUT), member="rootfs/d",
           id="implicit-dir-then-symlink"),
    unsafe(tb.symlink("rootfs/d", OUT), tb.directory("rootfs/d"), member="rootfs/d",
           id="symlink-then-dir"),
    unsafe(tb.file("rootfs/f", b"1"), tb.hardlink("rootfs/h", "rootfs/f"),
           tb.file("rootfs/h", b"rewritten through the shared inode"), member="rootfs/h",
           id="hardlink-then-file"),
    unsafe(tb.file("rootfs/f", b"1"), tb.file("./rootfs//./f", b"2"), member="./rootfs//./f",
           id="same-file-spelled-differently"),
    unsafe(tb.file("config.json", tb.config_json("rootfs")), member="config.json",
           id="config-json-twice"),
    unsafe(tb.file("rootfs/f", b"1"), tb.file("rootfs/f/x", b"2"), member="rootfs/f/x",
           id="path-through-a-file"),
]


@pytest.mark.parametrize("members, member", DUPLICATES)
def test_members_appearing_twice_are_refused(arena: Arena, members: List[tb.Member],
                                             member: str) -> None:
    refuse(arena, members, UnsafeImageError, member)


# -- member types ---------------------------------------------------------------

SPECIAL_TYPES = [
    unsafe(tb.chardev("rootfs/dev/mem", 1, 1), member="rootfs/dev/mem", id="character-device"),
    unsafe(tb.blockdev("rootfs/dev/sda", 8, 0), member="rootfs/dev/sda", id="block-device"),
    unsafe(tb.fifo("rootfs/run/fifo"), member="rootfs/run/fifo", id="fifo"),
    unsafe(tb.Member("rootfs/z", b"Z", data=b"hidden"), member="rootfs/z", id="unknown-type"),
    unsafe(tb.Member("rootfs/v", b"V"), member="rootfs/v", id="gnu-volume-header"),
]


@pytest.mark.parametrize("members, member", SPECIAL_TYPES)
def test_members_other_than_files_dirs_and_links_are_refused(
        arena: Arena, members: List[tb.Member], member: str) -> None:
    refuse(arena, members, UnsafeImageError, member)


# -- the top level --------------------------------------------------------------

CONFIG = tb.file("config.json", tb.config_json("rootfs"))
TOP_LEVEL = [
    pytest.param([CONFIG, tb.symlink("rootfs", "/"), tb.file("rootfs/etc/passwd", b"pwned")],
                 "rootfs", id="rootfs-symlink-to-host-root"),
    pytest.param([CONFIG, tb.symlink("rootfs", OUT), tb.file("rootfs/victim", b"pwned")],
                 "rootfs", id="rootfs-symlink-to-outside"),
    pytest.param(tb.bundle(tb.symlink("rootfs", "/")), "rootfs",
                 id="rootfs-symlink-after-rootfs-dir"),
    pytest.param(tb.bundle(tb.directory("other")), "other", id="second-top-level-directory"),
    pytest.param(tb.bundle(tb.file("other/x", b"x")), "other/x",
                 id="second-top-level-directory-implicit"),
    pytest.param(tb.bundle(tb.file("README", b"x")), "README", id="top-level-file"),
    pytest.param(tb.bundle(tb.symlink("lib", "rootfs/lib")), "lib", id="top-level-symlink"),
    pytest.param([tb.symlink("config.json", OUT + "/victim"), tb.directory("rootfs")],
                 "config.json", id="config-json-symlink"),
    pytest.param([tb.directory("config.json"), tb.directory("rootfs")], "config.json",
                 id="config-json-directory"),
    pytest.param([tb.directory("rootfs"), tb.file("rootfs/x", tb.config_json()),
                  tb.hardlink("config.json", "rootfs/x")], "config.json",
                 id="config-json-hardlink"),
    pytest.param([tb.file("config.json", b"", size=MAX_CONFIG + 1)], "config.json",
                 id="config-json-over-the-limit-start-reads"),
    pytest.param([tb.file("config.json", tb.config_json(".vzbundle.json")),
                  tb.directory(".vzbundle.json")], ".vzbundle.json",
                 id="root-directory-with-a-dot-name"),
    pytest.param(tb.bundle(tb.symlink(".", "/")), ".", id="dot-entry-as-symlink"),
    pytest.param(tb.bundle(tb.file("./", b"x")), "./", id="dot-entry-as-file"),
]


@pytest.mark.parametrize("members, member", TOP_LEVEL)
def test_top_level_other_than_config_and_one_directory_is_refused(
        arena: Arena, members: List[tb.Member], member: str) -> None:
    refuse(arena, members, UnsafeImageError, member)


BAD_CONFIGS = [
    pytest.param(tb.config_json("other"), id="root-path-names-another-directory"),
    pytest.param(tb.config_json("/rootfs"), id="root-path-absolute"),
    pytest.param(tb.config_json("../rootfs"), id="root-path-dotdot"),
    pytest.param(tb.config_json("rootfs/.."), id="root-path-rootfs-dotdot"),
    pytest.param(tb.config_json(42), id="root-path-not-a-string"),
    pytest.param(b'{"root": {}}', id="no-root-path"),
    pytest.param(b'["rootfs"]', id="not-an-object"),
    pytest.param(b'{"root": ', id="not-json"),
    pytest.param(b'\xff\xfe{}', id="not-utf-8"),
]


@pytest.mark.parametrize("config", BAD_CONFIGS)
def test_bad_config_json_is_a_bad_image(arena: Arena, config: bytes) -> None:
    members = tb.bundle(tb.file("rootfs/x", b"x"), config=config)
    refuse(arena, members, BadImageError, None, says="config.json")


@pytest.mark.parametrize("members", [
    pytest.param([tb.directory("rootfs"), tb.file("rootfs/x")], id="no-config-json"),
    pytest.param([tb.file("config.json", tb.config_json())], id="no-root-directory"),
    pytest.param([], id="no-members"),
])
def test_image_that_is_not_a_bundle_is_a_bad_image(arena: Arena,
                                                   members: List[tb.Member]) -> None:
    refuse(arena, members, BadImageError, None)


# -- damaged images -------------------------------------------------------------


def big_image(fmt: str = "tar") -> bytes:
    """A bundle with one 256 KiB incompressible file: damage in the middle of the
    compressed stream lands in that file's data, well after the first read."""
    data = random.Random(0).randbytes(256 * 1024)
    return tb.make_tar(tb.bundle(tb.file("rootfs/big", data)), fmt=fmt)


def flip(image: bytes, at: int, count: int = 4) -> bytes:
    return image[:at] + bytes(b ^ 0x5A for b in image[at:at + count]) + image[at + count:]


def test_tarball_truncated_inside_a_member_is_a_bad_image(arena: Arena) -> None:
    image = big_image()
    assert_refused(arena, image[:4096], BadImageError, None, says="'rootfs/big'")


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.xz", "tar.zst"])
def test_truncated_compressed_image_is_a_bad_image(arena: Arena, fmt: str) -> None:
    image = big_image(fmt)
    assert_refused(arena, image[:len(image) // 2], BadImageError, None, fmt=fmt)


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.xz", "tar.zst"])
def test_compressed_image_damaged_in_the_middle_is_a_bad_image(arena: Arena, fmt: str) -> None:
    """The damage changes file data; only the format's checksum can tell."""
    image = big_image(fmt)
    assert_refused(arena, flip(image, len(image) // 2), BadImageError, None, fmt=fmt)


def test_gzip_crc_mismatch_is_a_bad_image(arena: Arena) -> None:
    image = tb.make_tar(tb.bundle(tb.file("rootfs/f", b"x")), fmt="tar.gz")
    assert_refused(arena, flip(image, len(image) - 8), BadImageError, None, fmt="tar.gz")


@pytest.mark.parametrize("image", [
    pytest.param(b"", id="empty"),
    pytest.param(b"not a tarball at all\n" * 100, id="text"),
    pytest.param(b"\0" * 10240, id="only-zero-blocks"),
])
def test_stream_that_is_not_a_tarball_is_a_bad_image(arena: Arena, image: bytes) -> None:
    assert_refused(arena, image, BadImageError, None)


MAGIC = {"tar.gz": b"\x1f\x8b\x08\x00", "tar.xz": b"\xfd7zXZ\x00",
         "tar.zst": b"\x28\xb5\x2f\xfd"}


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.xz", "tar.zst"])
def test_garbage_after_the_compression_magic_is_a_bad_image(arena: Arena, fmt: str) -> None:
    """The node sniffs the format from the magic; what follows may still be garbage."""
    assert_refused(arena, MAGIC[fmt] + b"\xff" * 2048, BadImageError, None, fmt=fmt)


def _header_offset(image: bytes, name: str) -> int:
    offset = image.index(name.encode() + b"\0")
    assert offset % 512 == 0
    return offset


@pytest.mark.parametrize("damage", ["bad-checksum", "truncated-at-a-header"])
def test_tarball_damaged_between_members_is_a_bad_image(arena: Arena, damage: str) -> None:
    image = tb.make_tar(tb.bundle(tb.file("rootfs/a", b"a"), tb.file("rootfs/b", b"b")),
                        tar_format=tarfile.USTAR_FORMAT)
    offset = _header_offset(image, "rootfs/b")
    if damage == "bad-checksum":
        image = image[:offset + 148] + b"0000000\0" + image[offset + 156:]
    else:
        image = image[:offset]
    assert_refused(arena, image, BadImageError, None)


# -- limits ---------------------------------------------------------------------


def test_member_over_the_size_cap_is_refused(arena: Arena) -> None:
    members = tb.bundle(tb.file("rootfs/small", b"x" * 100), tb.file("rootfs/big", b"x" * 101))
    refuse(arena, members, UnsafeImageError, "rootfs/big",
           limits=Limits(max_member_size=100))


def test_member_claiming_a_huge_size_is_refused_before_reading(arena: Arena) -> None:
    """Nothing follows the header: the refusal must come from the size field alone."""
    members = tb.bundle(tb.file("rootfs/huge", b"", size=9 * 1024 ** 4))
    refuse(arena, members, UnsafeImageError, "rootfs/huge")


def test_more_members_than_the_entry_cap_are_refused(arena: Arena) -> None:
    members = tb.bundle(*[tb.file("rootfs/f{}".format(i), b"x") for i in range(3)])
    refuse(arena, members, UnsafeImageError, "rootfs/f2", limits=Limits(max_entries=4))


def test_path_longer_than_the_cap_is_refused(arena: Arena) -> None:
    name = "rootfs/" + "n" * 34  # 41 characters
    members = tb.bundle(tb.file("rootfs/" + "n" * 33, b"fits"), tb.file(name, b"x"))
    refuse(arena, members, UnsafeImageError, name, limits=Limits(max_path_length=40))


def test_path_deeper_than_the_cap_is_refused(arena: Arena) -> None:
    members = tb.bundle(tb.file("rootfs/a/b/c", b"fits"), tb.file("rootfs/a/b/c2/d", b"x"))
    refuse(arena, members, UnsafeImageError, "rootfs/a/b/c2/d",
           limits=Limits(max_path_depth=4))


def test_hardlink_target_deeper_than_the_cap_is_refused(arena: Arena) -> None:
    members = tb.bundle(tb.hardlink("rootfs/h", "rootfs/a/b/c/d"))
    refuse(arena, members, UnsafeImageError, "rootfs/h", limits=Limits(max_path_depth=4))


def test_image_bigger_than_the_free_space_is_disk_full(arena: Arena) -> None:
    """Space is counted in 4 KiB blocks, as the disk will use it: config.json, rootfs and
    rootfs/a fit in three; the message says which member tipped it over."""
    members = tb.bundle(tb.file("rootfs/a", b"x" * 1000), tb.file("rootfs/b", b"x" * 1000))
    refuse(arena, members, DiskFullError, None, says="'rootfs/b'", space=3 * 4096 + 100)


def test_image_with_more_members_than_free_inodes_is_disk_full(arena: Arena) -> None:
    members = tb.bundle(*[tb.file("rootfs/f{}".format(i)) for i in range(5)])
    refuse(arena, members, DiskFullError, None, says="inodes", inodes=6)


def test_implicit_parent_directories_count_against_free_inodes(arena: Arena) -> None:
    members = tb.bundle(tb.file("rootfs/a/b/c/d/e/f/g/h", b"x"))  # 9 inodes, 3 members
    refuse(arena, members, DiskFullError, None, says="inodes", inodes=5)


def test_negative_member_sizes_do_not_buy_free_space(arena: Arena) -> None:
    refunds = [tb.file("rootfs/r{}".format(i), b"", size=-511) for i in range(4)]
    members = tb.bundle(*refunds, tb.file("rootfs/big", b"x" * 2000))
    image = tb.make_tar(members, tar_format=tarfile.GNU_FORMAT)
    config_size = len(members[0].data)
    # Either refusal is right: the negative size itself, or the space it tried to buy.
    before = snapshot(arena.root)
    with pytest.raises((UnsafeImageError, DiskFullError, BadImageError)):
        tb.extract_image(image, arena.dest, space=config_size + 1000)
    assert not os.path.lexists(str(arena.dest))
    assert snapshot(arena.root) == before


@needs_root
@pytest.mark.parametrize("uid, gid, tar_format", [
    pytest.param(2 ** 32 - 1, 0, tarfile.PAX_FORMAT, id="uid-minus-one-as-unsigned"),
    pytest.param(2 ** 32, 0, tarfile.PAX_FORMAT, id="uid-over-32-bits"),
    pytest.param(2 ** 70, 0, tarfile.PAX_FORMAT, id="uid-enormous"),
    pytest.param(-1, 0, tarfile.GNU_FORMAT, id="uid-negative"),
    pytest.param(0, 2 ** 32, tarfile.PAX_FORMAT, id="gid-over-32-bits"),
])
def test_out_of_range_owners_are_refused_as_root(arena: Arena, uid: int, gid: int,
                                                 tar_format: int) -> None:
    image = tb.make_tar(tb.bundle(tb.file("rootfs/f", b"x", uid=uid, gid=gid)),
                        tar_format=tar_format)
    assert_refused(arena, image, UnsafeImageError, "rootfs/f", as_root=True)


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["gnu-longname", "pax-path"])
def test_huge_name_header_is_refused_without_reading_it_into_memory(
        arena: Arena, tar_format: int) -> None:
    name = "rootfs/" + "a" * (16 * 1024 * 1024)
    image = tb.make_tar(tb.bundle(tb.file(name)), fmt="tar.zst", tar_format=tar_format)
    tracemalloc.start()
    try:
        with pytest.raises((UnsafeImageError, BadImageError)):
            tb.extract_image(image, arena.dest, fmt="tar.zst")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if peak > 4 * 1024 * 1024:
        pytest.fail("a {}-byte name made the extractor hold {} bytes".format(len(name), peak))


def test_refusal_of_a_huge_name_names_it_briefly(arena: Arena) -> None:
    """The error crosses the wire and lands in logs: a 1 MiB name must not ride along."""
    name = "rootfs/" + "a" * (1024 * 1024)
    error = assert_refused(arena, tb.make_tar(tb.bundle(tb.file(name))), UnsafeImageError,
                           None)
    assert len(str(error)) < 4096
    assert name.startswith(str(error.details["member"]).rstrip(".\u2026"))
    assert len(error.details["member"]) < 4096


# -- names: weird but harmless, and weird and refused ---------------------------

# Accepted: none of these is "..", absolute or NUL-bearing, so each names one entry
# inside the rootfs, byte for byte. Backslashes, newlines, leading dashes and
# non-UTF-8 bytes are a problem for whoever later prints or globs the names, not for
# the extractor, which never passes names through a shell. Refused (above): any ".."
# component even when it stays inside, absolute names, NUL (only possible via PAX),
# "." or "./" as anything but a directory, and components over the filesystem's 255
# bytes.
WEIRD_BUT_FINE = [
    "...", "..a", "a..", ". .", " ..", "..\\..\\outside", "a\nb", "-rf", "*", "~",
    "%2e%2e", ".hidden", "\u00fcn\u00efc\u00f6d\u00e9", "\udcff\udcfe", "\u2025",
    "x" * 255,
]


@pytest.mark.parametrize("name", WEIRD_BUT_FINE, ids=lambda name: ascii(name)[:40])
def test_weird_but_harmless_names_are_extracted_verbatim(arena: Arena, name: str) -> None:
    before = snapshot(arena.root)
    tb.extract_image(tb.make_tar(tb.bundle(tb.file("rootfs/" + name, b"data"))), arena.dest)
    assert os.listdir(str(arena.dest / "rootfs")) == [name]
    assert (arena.dest / "rootfs" / name).read_bytes() == b"data"
    assert without_dest(snapshot(arena.root)) == before


@pytest.mark.parametrize("name", ["x" * 256, "\u00e9" * 128],
                         ids=["256-ascii", "128-two-byte-chars"])
def test_name_component_too_long_for_the_filesystem_is_refused(arena: Arena, name: str) -> None:
    refuse(arena, tb.bundle(tb.file("rootfs/" + name, b"x")),
           (UnsafeImageError, BadImageError), "rootfs/" + name)  # type: ignore[arg-type]


# -- property: whatever the member list, no escape ------------------------------

_tame = st.sampled_from(["a", "b", "c"])
_wild = st.sampled_from(["a", "b", "..", ".", ""])


def _paths(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(parts, min_size=1, max_size=4).map("/".join)


_tame_names = _paths(_tame).map("rootfs/".__add__)
# Absolute names point into the sentinel directory, never at the host's own files.
_wild_names = st.one_of(_tame_names, _paths(_wild).map("rootfs/".__add__), _paths(_wild),
                        _paths(_wild).map((OUT + "/").__add__))
_link_targets = st.one_of(
    _paths(_wild), _paths(_wild), _paths(_wild).map("/".__add__),
    _paths(_tame).map("rootfs/".__add__), _paths(_wild).map("rootfs/".__add__),
    st.sampled_from([OUT, OUT + "/victim", "../outside/victim", "../../outside",
                     "rootfs/../outside/victim", "/", ".."]))


@st.composite
def _member_lists(draw: st.DrawFn) -> List[tb.Member]:
    """Random member lists; half of them "tame": plausible names that never collide and
    hard links to earlier files, so that many images extract and the symlink check is
    what stands between them and an escape. Symlink targets are always wild."""
    tame = draw(st.booleans())
    members: List[tb.Member] = []
    kinds: Dict[str, str] = {}  # tame lists: every path so far, incl. parents
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["file", "dir", "symlink", "symlink", "hardlink"]))
        name = draw(_tame_names if tame else _wild_names)
        if tame:
            parents = ["/".join(name.split("/")[:i]) for i in range(2, name.count("/") + 1)]
            files = [path for path, k in kinds.items() if k == "file"]
            if name in kinds or any(kinds.get(p, "dir") != "dir" for p in parents) or \
                    (kind == "hardlink" and not files):
                continue  # the corpus covers collisions; here they would hide the links
            kinds.update((p, "dir") for p in parents)
            kinds[name] = "file" if kind in ("file", "hardlink") else kind
        if kind == "file":
            members.append(tb.file(name, draw(st.sampled_from([b"", b"pwned"]))))
        elif kind == "dir":
            members.append(tb.directory(name))
        elif kind == "symlink":
            members.append(tb.symlink(name, draw(_link_targets)))
        elif tame:
            members.append(tb.hardlink(name, draw(st.sampled_from(sorted(files)))))
        else:
            members.append(tb.hardlink(name, draw(st.one_of(_tame_names, _link_targets))))
    return members


def resolve_confined(root: str, link: str, limit: int = 2000) -> Optional[List[str]]:
    """Where the symlink ``link`` (a path under ``root``) leads, as components under root.

    Followed as in a chroot at ``root``: absolute targets start at root, ``..`` at the
    top is an escape (AssertionError). Components are taken lexically (a missing
    directory is a directory), which is at least as strict as the kernel. None if
    the resolution does not end within ``limit`` hops (a loop reaches nothing).
    """
    position = os.path.relpath(os.path.dirname(link), root).split("/")
    position = [p for p in position if p not in ("", ".")]
    pending = os.readlink(link).split("/")
    if pending[0] == "":
        position = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            assert position, "symlink {} escapes {}".format(link, root)
            position.pop()
            continue
        position.append(part)
        here = os.path.join(root, *position)
        if os.path.islink(here):
            hops += 1
            if hops > limit:
                return None
            position.pop()
            target = os.readlink(here)
            if target.startswith("/"):
                position = []
            pending = target.split("/") + pending
    return position


def check_extracted_tree(dest: str) -> None:
    """No symlink under the rootfs leads out; no name in dest is linked from elsewhere."""
    rootfs = os.path.join(dest, "rootfs")
    names_by_inode: Dict[Tuple[int, int], int] = {}
    nlinks: Dict[Tuple[int, int], int] = {}
    for directory, dirs, files in os.walk(dest):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st_ = os.lstat(path)
            assert stat.S_ISREG(st_.st_mode) or stat.S_ISDIR(st_.st_mode) or \
                stat.S_ISLNK(st_.st_mode), path
            if stat.S_ISLNK(st_.st_mode):
                assert path.startswith(rootfs + "/"), path
                resolve_confined(rootfs, path)
            elif stat.S_ISREG(st_.st_mode):
                key = (st_.st_dev, st_.st_ino)
                names_by_inode[key] = names_by_inode.get(key, 0) + 1
                nlinks[key] = st_.st_nlink
    assert names_by_inode == nlinks  # every hard link to a file is inside dest


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_member_lists())
def test_random_member_lists_never_escape(members: List[tb.Member]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        arena = make_arena(Path(tmp))
        image = tb.make_tar(placed(tb.bundle(*members), arena))
        before = snapshot(arena.root)
        try:
            tb.extract_image(image, arena.dest)
        except (UnsafeImageError, BadImageError, DiskFullError) as error:
            event(type(error).__name__)
            assert not os.path.lexists(str(arena.dest))
        else:
            event("extracted")
            check_extracted_tree(str(arena.dest))
        assert without_dest(snapshot(arena.root)) == before
