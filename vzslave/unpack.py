"""Extract an image (a tarball of an OCI bundle) as hostile input.

Python's own tar filters had escape bugs until 3.11.13/3.12.11 and the node may run
an older Python, so tarfile is used only to *read* headers and data; every file is
created here, relative to directory file descriptors, never following a symlink.

The policy, member by member (a refusal names the member and nothing is left):

- the top level holds ``config.json`` (a regular file) and one directory, the root
  filesystem, which config.json's ``root.path`` must name ("rootfs" by convention);
- paths are relative, without ``..``, within the length and depth caps, with no
  component over 255 bytes; a leading ``./`` is fine;
- regular files, directories, symlinks and hard links only: device nodes, fifos,
  sparse files and anything else are refused (the runner creates the few device
  nodes a container needs), as is data on a member that is not a regular file (GNU
  tar would skip it, tarfile would read it as headers: two views of one image);
- no path may pass through a symlink or a file the image made earlier, and no
  member may appear twice (except a directory), so nothing is written through a
  link;
- hard links point at a regular file the image made earlier, in the same tree;
- every symlink must resolve inside its tree within the kernel's 40 hops: absolute
  targets resolve relative to the root filesystem, as they will inside the
  container; ``..`` past that root is refused because vzslave and the runner act on
  these paths from outside the chroot; longer chains and loops are refused because
  userland resolvers (realpath) have no hop limit and could be led out;
- damage is an error, never a short image: a bad header after the first member
  (which tarfile would take for the end), a missing end-of-archive, a bad gzip CRC,
  more than 1 MiB after the end; extended headers over 1 MiB are refused before
  tarfile reads them into memory;
- member count, member size, total name bytes and symlink resolution work are
  capped, and the image must fit the free space and inodes, counted in filesystem
  blocks as the disk will use them (config.Limits; DiskFullError);
- modes are kept (1777 on tmp directories included) and, when vzslave runs as root,
  numeric owners too. Setuid and setgid bits on files are **removed** unless the
  caller asks to keep them and vzslave runs as root: an image from elsewhere should
  not gain a root-owned setuid program silently. BundleInfo.setid_stripped lists
  the members affected. Setgid on directories (group inheritance) is kept.
"""

import collections
import json
import os
import stat
import tarfile
from typing import (
    BinaryIO,
    Callable,
    Dict,
    List,
    NamedTuple,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from vzslave import fs
from vzslave.oci import MAX_CONFIG as _MAX_CONFIG  # what start reads: one limit
from vzslave.config import Limits
from vzslave.errors import (
    BadImageError,
    DiskFullError,
    UnsafeImageError,
    error_from_os,
)

_COPY_BLOCK = 1024 * 1024
_MAX_LINK_HOPS = 40  # the kernel's limit (MAXSYMLINKS); userland resolvers may go on
_MAX_LINK_STEPS = 2000000  # path components walked checking all symlinks of one image
_MAX_NAME_BYTES = 64 * 1024 * 1024  # member names and link targets, all together
_MAX_EXTENDED_HEADER = 1024 * 1024  # a GNU long name or PAX header, read whole by tarfile
_MAX_TRAILER = 1024 * 1024  # data after the end-of-archive blocks
_NAME_MAX = 255  # bytes in one path component (ext4, tmpfs, xfs, btrfs)
_EXTENDED_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                   tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_FILE, _DIRECTORY, _SYMLINK = "file", "directory", "symlink"

T = TypeVar("T")

# Not in typeshed, but in tarfile since Python 3.2 (checked on 3.6 and 3.11).
_HEADER_DAMAGE = (getattr(tarfile, "InvalidHeaderError"),  # noqa: B009
                  getattr(tarfile, "TruncatedHeaderError"))  # noqa: B009


class ExtractResult(NamedTuple):
    """What an extraction produced."""

    root_dir: str  # the root filesystem's directory name
    files: int  # members extracted
    bytes: int  # regular-file bytes written
    setid_stripped: List[str]  # members that lost setuid/setgid bits (first 100)


class _Refused(Exception):
    """Internal: the policy refused a member."""


class _Damaged(Exception):
    """Internal: a tar header is damaged (tarfile would take it for the end)."""


class _CheckedTarInfo(tarfile.TarInfo):
    """TarInfo that reports damage instead of ending the archive early, and refuses
    extended headers too big to read into memory before looking at them."""

    @classmethod
    def frombuf(cls, buf: Union[bytes, bytearray], encoding: str,
                errors: str) -> "_CheckedTarInfo":
        if not buf:
            # A tar archive ends with zero blocks: a stream that just stops was cut.
            raise _Damaged("the archive stops without its end-of-archive blocks (truncated)")
        try:
            return super().frombuf(buf, encoding, errors)
        except _HEADER_DAMAGE as exc:
            # tarfile treats these as the end of the archive after the first member:
            # the rest of a damaged image would vanish without a word.
            raise _Damaged("a damaged tar header ({})".format(exc)) from exc

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and self.size > _MAX_EXTENDED_HEADER:
            # Refused, so the stream is abandoned: peek at the header to name the member.
            head = tarfile_.fileobj.read(2048).split(b"\0")[0]
            name = head.partition(b" path=")[2] if b" path=" in head else head
            raise _Refused("an extended tar header of {} bytes (the cap is {})".format(
                self.size, _MAX_EXTENDED_HEADER), name.decode("utf-8", "replace"))
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Refused("sparse files are not supported; build the image without --sparse")
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]


def _short(name: str) -> str:
    """A member name cut to a length fit for messages and logs."""
    return name if len(name) <= 1024 else name[:1024] + "..."


def extract_bundle(tar_stream: BinaryIO, dest: str, limits: Limits, space: int,
                   inodes: int, as_root: bool, keep_setid: bool,
                   block_size: int = 4096) -> ExtractResult:
    """Extract the bundle tarball ``tar_stream`` into the new directory ``dest``.

    ``space`` (bytes, counted in ``block_size`` blocks as the disk will) and
    ``inodes`` are what the extraction may use. On any failure ``dest`` is removed
    before the error is raised: UnsafeImageError (policy), BadImageError (not a
    bundle tarball), DiskFullError, or an OSError.
    """
    os.mkdir(dest, 0o700)
    try:
        with _Extractor(dest, limits, space, inodes, as_root, keep_setid,
                        block_size) as extractor:
            return extractor.run(tar_stream)
    except BaseException:
        fs.remove_tree(dest)
        raise


class _Extractor:
    def __init__(self, dest: str, limits: Limits, space: int, inodes: int,
                 as_root: bool, keep_setid: bool, block_size: int) -> None:
        self.limits = limits
        self.space = space
        self.inodes = inodes
        self.block_size = max(block_size, 512)
        self.used = 0  # bytes of disk the tree takes, in whole blocks
        self.created = 0  # inodes the tree takes
        self.name_bytes = 0
        self.member = ""  # the member being extracted, for messages
        self.as_root = as_root
        self.keep_setid = keep_setid and as_root
        self.root_fd = os.open(dest, _DIR)
        self.kinds: Dict[str, str] = {}  # every path made, by kind
        self.links: Dict[str, str] = {}  # symlink path -> target
        self.dirs: Dict[str, tarfile.TarInfo] = {}  # explicit directory members
        self.root_dir: Optional[str] = None
        self.count = 0
        self.total = 0
        self.stripped: List[str] = []
        self._parent_cache = ("", -1)  # (parent path, fd): members come grouped by dir

    def __enter__(self) -> "_Extractor":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._parent_cache[1] >= 0:
            os.close(self._parent_cache[1])
        os.close(self.root_fd)

    # -- the walk ------------------------------------------------------------

    def run(self, tar_stream: BinaryIO) -> ExtractResult:
        tar = self._read_header(lambda: tarfile.open(
            fileobj=tar_stream, mode="r|", tarinfo=_CheckedTarInfo))
        with tar:
            while True:
                member = self._read_header(tar.next)
                if member is None:
                    break
                # Stream mode keeps every header in tar.members; a big image would
                # hold them all in memory for nothing.
                tar.members = []  # type: ignore[attr-defined]
                try:
                    self._extract(tar, member)
                except _Refused as exc:
                    raise UnsafeImageError("unsafe image member {!r}: {}".format(
                        _short(member.name), exc), {"member": _short(member.name)}) from None
                except OSError as exc:
                    raise error_from_os(
                        exc, "unpacking member {!r}".format(_short(member.name))) from exc
        self._read_to_the_end(tar_stream)
        self._check_symlinks()
        self._check_config()
        self._finish_directories()
        assert self.root_dir is not None
        return ExtractResult(self.root_dir, self.count, self.total, self.stripped[:100])

    def _read_header(self, read: Callable[[], T]) -> T:
        """Run a tarfile call that reads headers, mapping its failures to vz errors."""
        try:
            return read()
        except _Refused as exc:
            reason, name = exc.args
            raise UnsafeImageError("unsafe image member {!r}: {}".format(_short(name), reason),
                                   {"member": _short(name)}) from None
        except Exception as exc:  # tarfile, zlib, lzma, zstd and _Damaged errors
            if self.count == 0 and isinstance(exc, tarfile.ReadError):
                raise BadImageError("the image is not a readable tarball: {}".format(
                    exc)) from exc
            raise BadImageError("the image is damaged after {} members: {}".format(
                self.count, exc or type(exc).__name__)) from exc

    def _read_to_the_end(self, tar_stream: BinaryIO) -> None:
        # tarfile stops at the end-of-archive blocks; reading on to the end makes
        # gzip check its CRC and refuses an image with data hidden after the end.
        left = 0
        try:
            while True:
                block = tar_stream.read(65536)
                if not block:
                    return
                left += len(block)
                if left > _MAX_TRAILER:
                    raise BadImageError("the image has more than {} bytes after the end of "
                                        "its tar archive".format(_MAX_TRAILER))
        except BadImageError:
            raise
        except Exception as exc:
            raise BadImageError("the image is damaged at its end: {}".format(
                exc or type(exc).__name__)) from exc

    def _extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.member = member.name
        path = self._checked_path(member.name)
        if not path:
            if not member.isdir():
                raise _Refused("a member without a name")
            return  # "./": the bundle directory itself, which vzslave owns
        self.count += 1
        if self.count > self.limits.max_entries:
            raise _Refused("the image has more than {} members".format(self.limits.max_entries))
        if member.size < 0:
            raise _Refused("a negative size in its header")
        if member.size and not member.isreg():
            # GNU tar skips such data, tarfile reads it as the next header: the two
            # would see different images. Neither needs it.
            raise _Refused("a {} with {} bytes of data".format(_kind_word(member), member.size))
        self.name_bytes += len(member.name) + len(member.linkname)
        if self.name_bytes > _MAX_NAME_BYTES:
            raise _Refused("the image's names take more than {} bytes".format(_MAX_NAME_BYTES))
        if self.as_root and not (0 <= member.uid < 2 ** 32 - 1 and 0 <= member.gid < 2 ** 32 - 1):
            raise _Refused("owner {}:{} is out of range".format(member.uid, member.gid))
        parts = path.split("/")
        self._check_top_level(parts, member)
        self._check_ancestors(parts)
        previous = self.kinds.get(path)
        if previous is not None and not (previous == _DIRECTORY and member.isdir()):
            raise _Refused("it appears twice in the image (already a {})".format(previous))
        if member.isdir():
            self._make_directory(path)
            self.dirs[path] = member
        elif member.isreg():
            self._make_file(tar, member, path)
        elif member.issym():
            self._make_symlink(member, path)
        elif member.islnk():
            self._make_hardlink(member, path)
        elif member.ischr() or member.isblk():
            raise _Refused("device nodes are not allowed in images")
        elif member.isfifo():
            raise _Refused("fifos are not allowed in images")
        else:
            raise _Refused("unsupported tar member type {!r}".format(member.type))

    def _checked_path(self, name: str) -> str:
        if "\x00" in name:
            raise _Refused("NUL byte in the name")
        if name.startswith("/"):
            raise _Refused("absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise _Refused("'..' in the path")
        if len(name) > self.limits.max_path_length:
            raise _Refused("path longer than {} characters".format(self.limits.max_path_length))
        if len(parts) > self.limits.max_path_depth:
            raise _Refused("path deeper than {} levels".format(self.limits.max_path_depth))
        for part in parts:
            if len(os.fsencode(part)) > _NAME_MAX:
                raise _Refused("a path component longer than {} bytes".format(_NAME_MAX))
        return "/".join(parts)

    def _check_top_level(self, parts: List[str], member: tarfile.TarInfo) -> None:
        top = parts[0]
        if len(parts) == 1 and top == "config.json":
            if not member.isreg():
                raise _Refused("config.json must be a regular file")
            if member.size > _MAX_CONFIG:
                raise _Refused("config.json is larger than {} bytes".format(_MAX_CONFIG))
            return
        if len(parts) == 1 and not member.isdir():
            raise _Refused("only config.json and the root filesystem directory may be at "
                           "the top of an image")
        if self.root_dir is None:
            if top.startswith("."):
                raise _Refused("the root filesystem directory may not be a dot name")
            self.root_dir = top
        elif top != self.root_dir:
            raise _Refused("a second top-level directory (the first was {!r}); an image "
                           "holds config.json and one root filesystem".format(self.root_dir))

    def _check_ancestors(self, parts: List[str]) -> None:
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            kind = self.kinds.get(ancestor)
            if kind == _SYMLINK:
                raise _Refused("its path goes through the symlink {!r}".format(ancestor))
            if kind == _FILE:
                raise _Refused("its path goes through the file {!r}".format(ancestor))

    # -- making things -------------------------------------------------------

    def _parent_fd(self, path: str) -> Tuple[int, str]:
        parent, _, base = path.rpartition("/")
        cached_path, cached_fd = self._parent_cache
        if parent == cached_path and cached_fd >= 0:
            return cached_fd, base
        fd = os.dup(self.root_fd)
        try:
            walked = []
            for part in parent.split("/") if parent else []:
                walked.append(part)
                if "/".join(walked) not in self.kinds:
                    self._mkdir_at(fd, part, "/".join(walked))
                child = os.open(part, _DIR, dir_fd=fd)  # O_NOFOLLOW: defence in depth
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        if cached_fd >= 0:
            os.close(cached_fd)
        self._parent_cache = (parent, fd)
        return fd, base

    def _mkdir_at(self, parent_fd: int, name: str, path: str) -> None:
        self._charge(self.block_size)
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)  # final modes come at the end
        except FileExistsError:
            pass
        self.kinds[path] = _DIRECTORY

    def _charge(self, size: int) -> None:
        """Account for one new inode holding ``size`` bytes, in whole blocks."""
        blocks = -(-size // self.block_size)
        self.used += blocks * self.block_size
        self.created += 1
        if self.used > self.space or self.created > self.inodes:
            what = "bytes" if self.used > self.space else "inodes"
            raise DiskFullError(
                "the image needs more than the {} {} free on the node (member {!r} is "
                "past that); free some space and unpack again".format(
                    self.space if what == "bytes" else self.inodes, what,
                    _short(self.member)), {"member": _short(self.member)})

    def _make_directory(self, path: str) -> None:
        parent_fd, base = self._parent_fd(path)
        if path not in self.kinds:
            self._mkdir_at(parent_fd, base, path)

    def _make_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        if member.size > self.limits.max_member_size:
            raise _Refused("{} bytes, over the {}-byte cap for one member".format(
                member.size, self.limits.max_member_size))
        self._charge(member.size)
        parent_fd, base = self._parent_fd(path)
        fd = os.open(base, _NEW_FILE, 0o600, dir_fd=parent_fd)
        self.kinds[path] = _FILE
        try:
            self._copy_data(tar, member, fd)
            self._apply_metadata(fd, member, path)
        finally:
            os.close(fd)
        self.total += member.size

    def _copy_data(self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
        source = tar.extractfile(member)
        assert source is not None
        remaining = member.size
        while remaining > 0:
            try:
                block = source.read(min(_COPY_BLOCK, remaining))
            except Exception as exc:
                raise BadImageError("the image is damaged inside member {!r}: {!r}".format(
                    member.name, exc)) from exc
            if not block:
                raise BadImageError("the image ends inside member {!r}".format(member.name))
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view):]
            remaining -= len(block)

    def _apply_metadata(self, fd: int, member: tarfile.TarInfo, path: str) -> None:
        mode = member.mode & 0o7777
        if mode & (stat.S_ISUID | stat.S_ISGID) and not self.keep_setid:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
            self.stripped.append(path)
        if self.as_root:
            os.fchown(fd, member.uid, member.gid)  # before chmod: chown clears setid
        os.fchmod(fd, mode)
        _set_mtime(member, fd=fd)

    def _make_symlink(self, member: tarfile.TarInfo, path: str) -> None:
        target = member.linkname
        if not target or "\x00" in target or len(target) > 4095:
            raise _Refused("a symlink with an empty or invalid target")
        # Up to 60 bytes live in the inode itself (ext4 "fast" symlinks).
        self._charge(len(os.fsencode(target)) if len(target) > 60 else 0)
        parent_fd, base = self._parent_fd(path)
        os.symlink(target, base, dir_fd=parent_fd)
        self.kinds[path] = _SYMLINK
        self.links[path] = target
        if self.as_root:
            os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        _set_mtime(member, name=base, dir_fd=parent_fd)

    def _make_hardlink(self, member: tarfile.TarInfo, path: str) -> None:
        if member.linkname.startswith("/"):
            raise _Refused("a hard link to the absolute path {!r}".format(member.linkname))
        target = self._checked_path(member.linkname)
        if self.kinds.get(target) != _FILE:
            raise _Refused("a hard link to {!r}, which is not a regular file earlier in the "
                           "image".format(member.linkname))
        if target.split("/")[0] != path.split("/")[0]:
            raise _Refused("a hard link between config.json and the root filesystem")
        target_parent, target_base = target.rpartition("/")[::2]
        source_fd = self._open_dir(target_parent)
        try:
            parent_fd, base = self._parent_fd(path)
            os.link(target_base, base, src_dir_fd=source_fd, dst_dir_fd=parent_fd,
                    follow_symlinks=False)
        finally:
            os.close(source_fd)
        self.kinds[path] = _FILE

    def _open_dir(self, path: str) -> int:
        fd = os.dup(self.root_fd)
        for part in path.split("/") if path else []:
            child = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd

    # -- after the last member -----------------------------------------------

    def _check_symlinks(self) -> None:
        budget = [_MAX_LINK_STEPS]
        for path, target in self.links.items():
            verdict = self._resolve(path, target, budget)
            if verdict is not None:
                raise UnsafeImageError("unsafe image member {!r}: the symlink to {!r} {}".format(
                    _short(path), _short(target), verdict), {"member": _short(path)})

    def _resolve(self, path: str, target: str, budget: List[int]) -> Optional[str]:
        """Follow ``target`` as the kernel would inside the chroot; None if it stays in.

        Else the reason it does not: it steps out with '..', or it needs more than
        the kernel's 40 hops (loops included). Such a link is broken inside the
        container anyway, and userland resolvers such as realpath() have no hop limit:
        a chain padded past 40 hops would lead them out.
        """
        top, _, rest = path.partition("/")
        position = [] if target.startswith("/") else rest.split("/")[:-1]
        pending = collections.deque(target.split("/"))
        hops = 0
        while pending:
            budget[0] -= 1
            if budget[0] < 0:
                return "is one of too many or too long symlinks to check"
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not position:
                    return "leads out of its root filesystem"
                position.pop()
                continue
            position.append(part)
            here = "/".join([top] + position)
            link = self.links.get(here)
            if link is not None:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    return "needs more than {} hops (or loops)".format(_MAX_LINK_HOPS)
                position.pop()
                if link.startswith("/"):
                    position = []
                pending.extendleft(reversed(link.split("/")))
        return None

    def _finish_directories(self) -> None:
        # Deepest first, so a read-only directory does not block its children's
        # metadata; setgid on directories is group inheritance, kept as is.
        for path in sorted(self.kinds, key=lambda p: p.count("/"), reverse=True):
            if self.kinds[path] != _DIRECTORY:
                continue
            member = self.dirs.get(path)
            fd = self._open_dir(path)
            try:
                if member is None:
                    os.fchmod(fd, 0o755)
                    continue
                if self.as_root:
                    os.fchown(fd, member.uid, member.gid)
                mode = member.mode & 0o7777
                if not self.as_root:
                    mode |= 0o700  # so the unprivileged owner can still manage the tree
                os.fchmod(fd, mode)
                _set_mtime(member, fd=fd)
            finally:
                os.close(fd)

    def _check_config(self) -> None:
        if self.kinds.get("config.json") != _FILE:
            raise BadImageError("the image has no config.json at its top level")
        if self.root_dir is None:
            raise BadImageError("the image has no root filesystem directory")
        fd = os.open("config.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=self.root_fd)
        with os.fdopen(fd, "rb") as config_file:
            raw = config_file.read(_MAX_CONFIG + 1)
        try:
            config = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise BadImageError("config.json is not valid JSON: {}".format(exc)) from exc
        if not isinstance(config, dict):
            raise BadImageError("config.json must hold a JSON object")
        root = config.get("root")
        root_path = root.get("path") if isinstance(root, dict) else None
        if root_path is None:
            raise BadImageError("config.json has no root.path")
        normalized = root_path[2:] if isinstance(root_path, str) and root_path.startswith(
            "./") else root_path
        if not isinstance(normalized, str) or normalized.rstrip("/") != self.root_dir:
            raise BadImageError("config.json's root.path is {!r} but the image's root "
                                "filesystem directory is {!r}".format(root_path, self.root_dir))


def _kind_word(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "directory"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    return "special file"


def _set_mtime(member: tarfile.TarInfo, fd: Optional[int] = None, name: Optional[str] = None,
               dir_fd: Optional[int] = None) -> None:
    try:
        mtime = int(member.mtime)
        if fd is not None:
            os.utime(fd, (mtime, mtime))
        else:
            os.utime(name, (mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)  # type: ignore
    except (OverflowError, ValueError, TypeError):
        pass  # an absurd mtime is not worth refusing the image for
