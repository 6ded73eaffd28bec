"""Packing a bundle (config.json and a staged rootfs) into an image file, and reading one back.

Same inputs, same bytes: an image's sha256 names what it holds, so packing twice, on
another day or from a tree made in another order, must give the same file. So:

- PAX tar, members in a fixed order: config.json, then the rootfs directory and its
  tree depth first, names sorted; the node's extractor wants a parent before its
  children, and sorting makes the order independent of the directory's own;
- every mtime is ``mtime``, else SOURCE_DATE_EPOCH, else 0; owners are the staging
  files' numbers without names (names would say who built it, not who runs it), the
  building user's own files counting as root's;
  modes keep the permission, setuid, setgid and sticky bits; whole-second times and
  ustar-sized fields mean an extended header only for what ustar cannot hold;
- a hard-linked file is stored once, at its first path in that order, and its other
  paths are links to it: which path was made first does not matter;
- config.json is the config, indented, in the caller's key order.

zstd (level 19, worker threads, content size and checksum in the frame) or xz (preset 6:
an 8 MiB dictionary, so a node decompresses in under 16 MiB), chosen by the image
file's name. The tar is made while it is compressed, never held whole: its size is
known from the plan before the first byte, as zstd's frame header needs. The image
appears by rename only once complete; a failure leaves an older one as it was.

Sockets, fifos and device nodes are left out: a tar has no type for a socket, and the
node's extractor refuses a whole image for a fifo or a device node (the runtimes make
/dev themselves).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import lzma
import os
import posixpath
import secrets
import shlex
import stat
import tarfile
from typing import (TYPE_CHECKING, Any, BinaryIO, Callable, Generator, Iterator, Mapping,
                    NamedTuple, Protocol, TypeVar)

import zstandard

from vzmaster.imaging.errors import BuildError
from vzslave.formats import decompressed, sniff_format
from vzslave.oci import DEFAULT_MOUNTS
from vzslave.oci import MAX_CONFIG as _MAX_CONFIG  # what a node accepts

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

T = TypeVar("T")

_CHUNK = 1024 * 1024
ZSTD_THREADS = max(1, min(8, os.cpu_count() or 1))
"""zstd workers: each holds a job of 4 windows (32 MiB at level 19), so at most 8."""
_SUFFIXES = ((".tar.zst", "zst"), (".tzst", "zst"), (".tar.xz", "xz"), (".txz", "xz"))
_COMPRESSION_NAMES = {"tar": "tar", "tar.gz": "gz", "tar.xz": "xz", "tar.zst": "zst"}


class PackResult(NamedTuple):
    """The image file pack_bundle wrote."""

    path: str
    sha256: str  # of the image file, hex
    size: int  # bytes of the image file
    compression: str  # "zst" or "xz"
    files: int  # rootfs members that are not directories (hard links included)
    content_bytes: int  # bytes of regular-file data, each hard-linked file once


class ImageSummary(NamedTuple):
    """What inspect_image found in an image file."""

    path: str
    sha256: str
    size: int
    compression: str  # "tar", "gz", "xz" or "zst", from the content
    files: int  # members other than config.json that are not directories
    content_bytes: int  # bytes of regular-file data
    args: list[str]
    env: list[str]
    cwd: str
    user: str  # "uid:gid"
    readonly: bool  # root.readonly
    mounts: list[str]  # "type destination", the node's defaults if config.json has none
    root: str  # root.path


# -- compressions -------------------------------------------------------------


class _Sink:
    """The temp file, hashing and counting what is written to it."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.file.write(data)


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _pump(source: BinaryIO, compressor: _Compressor, sink: _Sink) -> None:
    while True:
        chunk = source.read(_CHUNK)
        if not chunk:
            break
        sink.write(compressor.compress(chunk))
    sink.write(compressor.flush())


def _zstd(source: BinaryIO, size: int, sink: _Sink) -> None:
    # Streaming with worker threads gives the same bytes for any count >= 1 (zstd >= 1.4.7
    # made it so; threads=0 would differ), so a 2-core laptop and a 32-core builder agree.
    options = zstandard.ZstdCompressor(level=19, write_checksum=True, write_content_size=True,
                                       threads=ZSTD_THREADS)
    _pump(source, options.compressobj(size=size), sink)


def _xz(source: BinaryIO, size: int, sink: _Sink) -> None:
    _pump(source, lzma.LZMACompressor(lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6), sink)


_COMPRESSORS: dict[str, Callable[[BinaryIO, int, _Sink], None]] = {"zst": _zstd, "xz": _xz}


def compression_for(path: str) -> str:
    """The compression ("zst" or "xz") the image file name ``path`` asks for."""
    lowered = path.lower()
    for suffix, compression in _SUFFIXES:
        if lowered.endswith(suffix):
            return compression
    raise BuildError("cannot tell how to compress the image {!r} from its name: name it "
                     "NAME.tar.zst (zstd; or .tzst) or NAME.txz (xz; or .tar.xz)".format(path))


# -- planning the tar ---------------------------------------------------------


class _Entry(NamedTuple):
    header: bytes
    rel: str | None  # the staging path whose data follows the header, if any
    size: int


def _header(name: str, st: os.stat_result | None, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    if st is not None:
        info.mode = stat.S_IMODE(st.st_mode)
        # What a build run by a user (who cannot chown) made is root's in the image, as
        # with fakeroot: the same inputs give the same bytes whoever builds them.
        info.uid = 0 if st.st_uid == os.geteuid() else st.st_uid
        info.gid = 0 if st.st_gid == os.getegid() else st.st_gid
    return info


def _encode(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _unreadable(rootfs: str, rel: str, exc: OSError) -> BuildError:
    return BuildError("cannot read /{} of the rootfs {}: {}".format(
        rel, rootfs, exc.strerror or exc))


def _walk(rootfs: str, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Every path under ``rootfs``, relative, depth first with names sorted."""
    try:
        names = sorted(os.listdir(os.path.join(rootfs, rel)))
    except OSError as exc:
        raise _unreadable(rootfs, rel, exc) from exc
    for name in names:
        path = rel + "/" + name if rel else name
        try:
            st = os.lstat(os.path.join(rootfs, path))
        except OSError as exc:
            raise _unreadable(rootfs, path, exc) from exc
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(rootfs, path)


def _plan(rootfs: str, root_name: str, mtime: int) -> tuple[list[_Entry], int, int]:
    """The rootfs members in order, the count of non-directories and the data bytes."""
    try:
        top = os.stat(rootfs)
    except OSError as exc:
        raise BuildError("cannot read the rootfs {}: {}".format(rootfs, exc.strerror)) from exc
    if not stat.S_ISDIR(top.st_mode):
        raise BuildError("the rootfs {} is not a directory".format(rootfs))
    info = _header(root_name, top, mtime)
    info.type = tarfile.DIRTYPE
    entries = [_Entry(_encode(info), None, 0)]
    first_paths: dict[tuple[int, int], str] = {}
    files = content = 0
    for rel, st in _walk(rootfs):
        info = _header(root_name + "/" + rel, st, mtime)
        data = None
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in first_paths:
                info.type, info.linkname = tarfile.LNKTYPE, first_paths[key]
            else:
                first_paths[key] = info.name
                info.size, data = st.st_size, rel
                content += st.st_size
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            try:
                info.linkname = os.readlink(os.path.join(rootfs, rel))
            except OSError as exc:
                raise _unreadable(rootfs, rel, exc) from exc
        else:
            # A socket has no tar type; a fifo or device node would make the node refuse
            # the whole image (the runtimes make /dev): left out, as rootfs leaves them.
            continue
        files += not info.isdir()
        entries.append(_Entry(_encode(info), data, info.size))
    return entries, files, content


def _padding(size: int, unit: int) -> bytes:
    return b"\0" * (-size % unit)


def _config_member(document: bytes, mtime: int) -> bytes:
    """config.json's header and data: root's, like the files a node makes for it."""
    info = _header("config.json", None, mtime)
    info.mode, info.size = 0o644, len(document)
    return _encode(info) + document + _padding(len(document), tarfile.BLOCKSIZE)


def _tar_size(head: bytes, entries: list[_Entry]) -> int:
    size = len(head) + sum(len(entry.header) + entry.size +
                           len(_padding(entry.size, tarfile.BLOCKSIZE)) for entry in entries)
    size += 2 * tarfile.BLOCKSIZE  # the end-of-archive blocks
    return size + len(_padding(size, tarfile.RECORDSIZE))


# -- making the tar as it is read ---------------------------------------------


def _file_data(rootfs: str, rel: str, size: int) -> Generator[bytes, None, None]:
    """The data of a staging file, checked to be the ``size`` bytes its header says."""
    def read(fd: int, count: int) -> bytes:
        try:
            return os.read(fd, count)
        except OSError as exc:
            raise _unreadable(rootfs, rel, exc) from exc

    try:
        fd = os.open(os.path.join(rootfs, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(rootfs, rel, exc) from exc
    changed = BuildError("/{} of the rootfs {} changed while it was packed; pack again when "
                         "nothing writes to it".format(rel, rootfs))
    try:
        left = size
        while left:
            chunk = read(fd, min(left, _CHUNK))
            if not chunk:
                raise changed
            left -= len(chunk)
            yield chunk
        if read(fd, 1):
            raise changed
    finally:
        os.close(fd)


def _tar_chunks(head: bytes, entries: list[_Entry],
                rootfs: str) -> Generator[bytes, None, None]:
    """The tar up to its end: ``head``, then the members of ``entries``."""
    yield head
    for entry in entries:
        yield entry.header
        if entry.rel is not None:
            yield from _file_data(rootfs, entry.rel, entry.size)
            yield _padding(entry.size, tarfile.BLOCKSIZE)


class _TarReader(io.RawIOBase):
    """The bytes of ``chunks``, made as they are read, then the end of the archive:
    zero blocks up to ``size`` bytes in all."""

    def __init__(self, chunks: Generator[bytes, None, None], size: int) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                if self._left <= 0:
                    return 0
                chunk = b"\0" * self._left
            self._pending = memoryview(chunk)
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._left -= count
        return count

    def close(self) -> None:
        self._chunks.close()  # closes the staging file it may hold open
        super().close()


# -- writing the image --------------------------------------------------------


def _source_date(mtime: int | None) -> int:
    if mtime is not None:
        return mtime
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise BuildError("SOURCE_DATE_EPOCH={!r} is not a whole number of seconds since "
                         "1970: set it to one (such as git log -1 --format=%ct) or unset "
                         "it".format(text))
    return int(text)


def _root_name(config: Mapping[str, Any]) -> str:
    """The rootfs directory's name in the image: config.json's root.path."""
    root = config.get("root")
    path = root.get("path") if isinstance(root, dict) else None
    name = posixpath.normpath(path) if isinstance(path, str) and path else ""
    # The node takes the one top-level directory, not a dot name, as the rootfs.
    if not name or "/" in name or "\0" in name or name.startswith(".") or \
            name == "config.json":
        raise BuildError("config.json's root.path {!r} cannot name the rootfs directory of "
                         "an image: give one plain name, such as \"rootfs\"".format(path))
    return name


def _write_atomically(output: str, write: Callable[[BinaryIO], T]) -> T:
    """Make ``output`` with ``write``, so that it is whole or not there (nor any temp)."""
    directory = os.path.dirname(output) or "."
    temp = os.path.join(directory, ".vz-build-{}.tmp".format(secrets.token_hex(8)))
    try:
        # Not mkstemp: its 0600 would ignore the umask, as other files the user makes don't.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise BuildError("cannot write the image {}: {}".format(output, exc.strerror)) from exc
    try:
        with os.fdopen(fd, "wb") as file:
            result = write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, output)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the first failure is the one to tell
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise BuildError("cannot write the image {}: {}".format(
                output, exc.strerror or exc)) from exc
        raise
    return result


def pack_bundle(config: Mapping[str, Any], rootfs: str, output: str,
                compression: str | None = None, mtime: int | None = None) -> PackResult:
    """Pack ``config`` and the staged ``rootfs`` directory into the image file ``output``.

    ``compression`` ("zst" or "xz") defaults to what the name asks (compression_for);
    ``mtime`` to SOURCE_DATE_EPOCH, else 0. Everything is checked before ``output``'s
    directory is touched.
    """
    if compression is None:
        compression = compression_for(output)
    compress = _COMPRESSORS.get(compression)
    if compress is None:
        raise BuildError("unknown compression {!r}: use {}".format(
            compression, " or ".join(sorted(_COMPRESSORS))))
    when = _source_date(mtime)
    try:
        document = (json.dumps(config, indent=2, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise BuildError("the config cannot be written as JSON: {}".format(exc)) from exc
    entries, files, content = _plan(rootfs, _root_name(config), when)
    head = _config_member(document, when)
    size = _tar_size(head, entries)

    def write(file: BinaryIO) -> _Sink:
        sink = _Sink(file)
        chunks = _tar_chunks(head, entries, rootfs)
        with io.BufferedReader(_TarReader(chunks, size), _CHUNK) as source:
            compress(source, size, sink)
        return sink

    sink = _write_atomically(output, write)
    return PackResult(output, sink.hash.hexdigest(), sink.size, compression, files, content)


# -- reading an image back ----------------------------------------------------


class _StrictTarInfo(tarfile.TarInfo):
    """A TarInfo that calls a missing or damaged header damage: after the first member,
    tarfile would take it for the end of the archive and say nothing."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _StrictTarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as exc:
            if len(buf) == tarfile.BLOCKSIZE and buf.count(0) == tarfile.BLOCKSIZE:
                raise  # a zero block: the end of the archive
            raise tarfile.ReadError("the tar archive stops short or has a bad header "
                                    "({})".format(exc)) from exc


def _digest(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as image:
        for block in iter(lambda: image.read(_CHUNK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _scan(tar_stream: BinaryIO, path: str) -> tuple[int, int, bytes | None]:
    """Non-directory members, their data bytes and config.json's data, of a tar."""
    files = content = 0
    config = None
    with tarfile.open(fileobj=tar_stream, mode="r|", tarinfo=_StrictTarInfo) as tar:
        while True:
            member = tar.next()
            if member is None:
                break
            tar.members = []  # type: ignore[attr-defined]  # stream mode keeps them all
            name = "/".join(part for part in member.name.split("/") if part not in ("", "."))
            if name == "config.json" and member.isreg():
                if member.size > _MAX_CONFIG:
                    raise BuildError("the config.json of {} has {} bytes, more than a node "
                                     "takes ({})".format(path, member.size, _MAX_CONFIG))
                reader = tar.extractfile(member)
                config = reader.read() if reader is not None else b""
            elif not member.isdir():
                files += 1
                content += member.size if member.isreg() else 0
    while tar_stream.read(_CHUNK):
        pass  # to the end, so that a checksum or a cut after the archive tells
    return files, content, config


def _read_image(path: str) -> tuple[str, int, int, bytes | None]:
    """The compression, non-directory members, data bytes and config.json of an image."""
    with open(path, "rb") as image:
        fmt = sniff_format(image.read(tarfile.BLOCKSIZE))
        if fmt not in _COMPRESSION_NAMES:
            raise BuildError("{} is not a tarball (.tar, .tar.gz, .tar.xz or .tar.zst)".format(
                path))
        image.seek(0)
        try:
            with decompressed(image, fmt) as tar_stream:
                return (_COMPRESSION_NAMES[fmt],) + _scan(tar_stream, path)
        except BuildError:
            raise
        except Exception as exc:  # tarfile, zlib, lzma, zstd, and the node's own errors
            raise BuildError("the image {} is damaged: {}".format(
                path, exc or type(exc).__name__)) from exc


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _mount_word(mount: Any) -> str:
    """"type destination"; "bind" for a bind mount, as the node decides it."""
    mount = _dict(mount)
    options = _strings(mount.get("options"))
    kind = "bind" if {"bind", "rbind"} & set(options) else str(mount.get("type") or "?")
    return "{} {}".format(kind, mount.get("destination"))


def inspect_image(path: str) -> ImageSummary:
    """What the image file ``path`` holds: its format (by content), size, sha256,
    members and the gist of its config.json."""
    try:
        sha256, size = _digest(path)
        compression, files, content, document = _read_image(path)
    except OSError as exc:
        raise BuildError("cannot read the image {}: {}".format(path, exc.strerror)) from exc
    if document is None:
        raise BuildError("the image {} has no config.json: it is not an OCI bundle".format(path))
    try:
        config = json.loads(document)
    except ValueError as exc:
        raise BuildError("the config.json of {} is not valid JSON: {}".format(path, exc)) \
            from exc
    if not isinstance(config, dict):
        raise BuildError("the config.json of {} is not valid JSON for a config: it is not an "
                         "object".format(path))
    process, root = _dict(config.get("process")), _dict(config.get("root"))
    user = _dict(process.get("user"))
    mounts = config.get("mounts") or DEFAULT_MOUNTS  # as the node does
    if not isinstance(mounts, list):
        mounts = []
    return ImageSummary(
        path=path, sha256=sha256, size=size, compression=compression, files=files,
        content_bytes=content, args=_strings(process.get("args")),
        env=_strings(process.get("env")), cwd=str(process.get("cwd", "/")),
        user="{}:{}".format(user.get("uid", 0), user.get("gid", 0)),
        readonly=root.get("readonly") is True,
        mounts=[_mount_word(mount) for mount in mounts],
        root=str(root.get("path", "")))


def human_size(size: int) -> str:
    """``size`` bytes for people: "512 B", "1.2 MiB"."""
    value, units = float(size), ["B", "KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return "{} B".format(size) if units[0] == "B" else "{:.1f} {}".format(value, units[0])


def render_summary(summary: ImageSummary) -> str:
    """``summary`` as labelled lines, for ``vzmaster inspect``."""
    rows = [
        ("image", ["{} ({}, {})".format(summary.path, summary.compression,
                                        human_size(summary.size))]),
        ("sha256", [summary.sha256]),  # whole: to compare with sha256sum or a node's
        ("files", ["{} ({} unpacked)".format(summary.files, human_size(summary.content_bytes))]),
        ("args", [shlex.join(summary.args) or "(none)"]),
        ("user", [summary.user]),
        ("cwd", [summary.cwd]),
        ("env", summary.env or ["(none)"]),
        ("root", ["{} ({})".format(summary.root,
                                   "read-only" if summary.readonly else "writable")]),
        ("mounts", [", ".join(summary.mounts) or "(none)"]),
    ]
    return "".join("{:<8}{}\n".format(label if index == 0 else "", value)
                   for label, values in rows for index, value in enumerate(values))
