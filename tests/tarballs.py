"""Tarballs for tests, built at run time from declarative member specs.

No binary fixtures: a test lists its members and gets the bytes of an image::

    from tests import tarballs as tb

    image = tb.make_tar(tb.bundle(
        tb.directory("rootfs/bin"),
        tb.file("rootfs/bin/busybox", b"\\x7fELF", mode=0o755),
        tb.symlink("rootfs/bin/sh", "busybox"),
    ), fmt="tar.zst")

Headers are written exactly as specified, lies included: ``size`` may differ from
``len(data)``, names may be absolute or hold ``..``, ``pax`` adds extended header
records that override the plain fields (``{"path": "/etc/passwd"}``). That is the
point: these builders make hostile images as easily as benign ones.
"""

import dataclasses
import gzip
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
from typing import Any, Dict, Iterable, List, Mapping, Optional

FORMATS = ("tar", "tar.gz", "tar.xz", "tar.zst")
"""Every image format vzslave reads."""

MTIME = 1_600_000_000
"""The default member mtime (2020-09-13), so that "kept" mtimes are recognisable."""

_BLOCK = 512
_RECORD = 20 * _BLOCK


@dataclasses.dataclass(frozen=True)
class Member:
    """One tar member as a test wants it written. Use the builders below."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: float = MTIME
    size: Optional[int] = None  # header size; None: len(data)
    devmajor: int = 0
    devminor: int = 0
    pax: Optional[Mapping[str, str]] = None  # extended header records (PAX format)

    def replace(self, **changes: Any) -> "Member":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def tarinfo(self) -> tarfile.TarInfo:
        """The header, as tarfile's TarInfo."""
        info = tarfile.TarInfo(self.name)
        info.type = self.type
        info.size = len(self.data) if self.size is None else self.size
        info.linkname = self.linkname
        info.mode = self.mode
        info.uid, info.gid = self.uid, self.gid
        info.uname, info.gname = self.uname, self.gname
        info.mtime = self.mtime
        info.devmajor, info.devminor = self.devmajor, self.devminor
        info.pax_headers = dict(self.pax or {})
        return info


def file(name: str, data: bytes = b"", mode: int = 0o644, **fields: Any) -> Member:
    """A regular file."""
    return Member(name, tarfile.REGTYPE, data=data, mode=mode, **fields)


def directory(name: str, mode: int = 0o755, **fields: Any) -> Member:
    """A directory."""
    return Member(name, tarfile.DIRTYPE, mode=mode, **fields)


def symlink(name: str, target: str, **fields: Any) -> Member:
    """A symbolic link to ``target`` (written verbatim)."""
    fields.setdefault("mode", 0o777)
    return Member(name, tarfile.SYMTYPE, linkname=target, **fields)


def hardlink(name: str, target: str, **fields: Any) -> Member:
    """A hard link to the member named ``target`` (an archive path, not relative)."""
    return Member(name, tarfile.LNKTYPE, linkname=target, **fields)


def chardev(name: str, major: int = 1, minor: int = 3, **fields: Any) -> Member:
    """A character device node (default: 1,3 = /dev/null)."""
    return Member(name, tarfile.CHRTYPE, devmajor=major, devminor=minor, **fields)


def blockdev(name: str, major: int = 8, minor: int = 0, **fields: Any) -> Member:
    """A block device node (default: 8,0 = /dev/sda)."""
    return Member(name, tarfile.BLKTYPE, devmajor=major, devminor=minor, **fields)


def fifo(name: str, **fields: Any) -> Member:
    """A named pipe."""
    return Member(name, tarfile.FIFOTYPE, **fields)


def config_json(root_path: Any = "rootfs", **extra: Any) -> bytes:
    """A minimal OCI config.json naming ``root_path`` as the root filesystem."""
    config = {"ociVersion": "1.0.2", "root": {"path": root_path},
              "process": {"args": ["/bin/sh"], "cwd": "/"}}
    config.update(extra)
    return json.dumps(config).encode()


def bundle(*members: Member, root: str = "rootfs", config: Optional[bytes] = None) -> List[Member]:
    """``config.json`` and the ``root`` directory, then ``members``."""
    return [file("config.json", config_json(root) if config is None else config),
            directory(root)] + list(members)


def make_tar(members: Iterable[Member], fmt: str = "tar",
             tar_format: int = tarfile.PAX_FORMAT,
             global_pax: Optional[Dict[str, str]] = None) -> bytes:
    """The image holding ``members`` in order, compressed as ``fmt`` (see FORMATS).

    ``tar_format`` is tarfile's PAX_FORMAT, GNU_FORMAT or USTAR_FORMAT; it decides
    how long names and big numbers are encoded. ``global_pax`` writes a global
    extended header first.
    """
    out = io.BytesIO()
    if global_pax:
        out.write(tarfile.TarInfo.create_pax_global_header(dict(global_pax)))
    for member in members:
        # Written by hand rather than with TarFile.addfile, which would refuse to
        # write a header whose size disagrees with the data.
        info = member.tarinfo()
        out.write(info.tobuf(tar_format, "utf-8", "surrogateescape"))  # type: ignore[arg-type]
        out.write(member.data)
        out.write(b"\0" * (-len(member.data) % _BLOCK))
    out.write(b"\0" * (2 * _BLOCK))
    out.write(b"\0" * (-out.tell() % _RECORD))
    return compress(out.getvalue(), fmt)


def compress(data: bytes, fmt: str) -> bytes:
    """``data`` (a plain tar) compressed as ``fmt``."""
    if fmt == "tar":
        return data
    if fmt == "tar.gz":
        return gzip.compress(data, mtime=0)
    if fmt == "tar.xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if fmt == "tar.zst":
        try:
            import zstandard
        except ImportError:
            zstd = shutil.which("zstd")
            if zstd is None:
                raise RuntimeError("neither the zstandard module nor the zstd program "
                                   "is installed") from None
            return subprocess.run([zstd, "-q", "-c"], input=data, stdout=subprocess.PIPE,
                                  check=True).stdout
        # With a checksum, as the zstd program writes by default.
        return zstandard.ZstdCompressor(write_checksum=True).compress(data)
    raise ValueError("unknown image format {!r}".format(fmt))


def extract_image(image: bytes, dest: "os.PathLike[str] | str", fmt: str = "tar",
                  limits: Any = None, space: int = 1 << 40, inodes: int = 1 << 40,
                  as_root: Optional[bool] = None, keep_setid: bool = False) -> Any:
    """Run vzslave's extractor on ``image`` bytes; returns its ExtractResult.

    Generous space and inodes unless given; ``as_root`` defaults to whether the
    tests run as root.
    """
    from vzslave.config import Limits
    from vzslave.formats import decompressed
    from vzslave.unpack import extract_bundle

    if as_root is None:
        as_root = os.geteuid() == 0
    with decompressed(io.BytesIO(image), fmt) as stream:
        return extract_bundle(stream, os.fspath(dest), limits or Limits(), space=space,
                              inodes=inodes, as_root=as_root, keep_setid=keep_setid)


BUSYBOX_APPLETS = ("sh", "sleep", "id", "cat", "echo", "ls", "env", "pwd", "true", "yes",
                   "seq", "kill", "grep", "head", "wc", "httpd", "wget", "hostname",
                   "umask", "touch", "mkdir", "date")


def busybox_image(args: List[str], *members: Member, fmt: str = "tar",
                  **config: Any) -> bytes:
    """An image that runs ``args`` in a rootfs of the host's static busybox.

    ``config`` adds or replaces top-level config.json keys; ``process`` is merged
    into the default process (args, cwd /, PATH=/bin).
    """
    process = {"args": list(args), "cwd": "/", "env": ["PATH=/bin"]}
    process.update(config.pop("process", {}))
    document = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": process}
    document.update(config)
    with open(shutil.which("busybox") or "/bin/busybox", "rb") as binary:
        busybox = binary.read()
    base = [directory("rootfs/bin"), file("rootfs/bin/busybox", busybox, mode=0o755),
            directory("rootfs/tmp", mode=0o1777), directory("rootfs/proc"),
            directory("rootfs/dev"), directory("rootfs/etc")]
    base += [symlink("rootfs/bin/" + applet, "busybox") for applet in BUSYBOX_APPLETS]
    return make_tar(bundle(*base, *members, config=json.dumps(document).encode()), fmt=fmt)
