"""The staging rootfs of a build: files copied in with their link chains, tarballs, /etc.

Paths are copied the way the kernel reaches them: every symlink met on the way
(``/lib -> usr/lib``, ``libz.so.1 -> libz.so.1.2.13``) is recreated as a link and
followed, so the program finds each file under the name it asks for and the image
keeps the distribution's layout. Links inside the rootfs are followed inside it, never
on this machine, so an absolute link in an image means the image's own file.

``exclude`` holds globs over paths in the image: a path is left out when it or one
of its parent directories matches (``/usr/share/doc`` leaves out the whole tree).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import tarfile
from typing import Callable, List, Optional, Sequence

from vzmaster.imaging.errors import BuildError

MAX_LINKS = 40
"""As Linux's MAXSYMLINKS: more links than this on one path is a loop."""

NSSWITCH = (b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
            b"networks: files\nprotocols: files\nservices: files\n")
"""Only "files" and "dns": the chroot has no NSS modules beyond what glibc builds in."""

MOUNT_POINTS = ("/proc", "/dev", "/sys", "/run")
"""Where the runtimes mount; they exist in the image so a read-only root works."""

# Visit = (path relative to the root, its lstat) for each entry met while resolving.
Visit = Callable[[str, os.stat_result], None]


class Missing(Exception):
    """A component of a path does not exist; ``args[0]`` is where resolving stopped."""


def _components(path: str) -> List[str]:
    return [part for part in path.split("/") if part and part != "."]


def resolve_inside(root: str, path: str, visit: Optional[Visit] = None) -> str:
    """The physical path (relative to ``root``) that ``path`` names inside ``root``.

    Links are followed as the kernel follows them, with ``root`` as ``/``: absolute
    targets start again at ``root``, ``..`` never climbs above it. ``visit`` sees every
    entry on the way, links included, so a caller can mirror the chain. Raises Missing
    where a component does not exist, BuildError on a loop of links.
    """
    done: List[str] = []
    todo = _components(path)
    links = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        relative = "/".join(done + [name])
        try:
            info = os.lstat(os.path.join(root, relative))
        except FileNotFoundError:
            raise Missing(relative) from None
        except OSError as error:
            raise BuildError("cannot read {}: {}".format(
                os.path.join(root, relative), error.strerror)) from None
        if visit is not None:
            visit(relative, info)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise BuildError("{}: too many levels of symbolic links".format(path))
            target = os.readlink(os.path.join(root, relative))
            if target.startswith("/"):
                done = []
            todo = _components(target) + todo
        else:
            if todo and not stat.S_ISDIR(info.st_mode):
                raise Missing(relative + "/" + todo[0])
            done.append(name)
    return "/".join(done)


class Rootfs:
    """A rootfs being assembled at ``path`` from files under ``source_root``."""

    def __init__(self, path: str, source_root: str = "/", exclude: Sequence[str] = ()) -> None:
        self.path = path
        self.source_root = source_root
        self.exclude = list(exclude)
        self.copied: List[str] = []
        """Every regular file copied in, by its path on this machine, in order."""
        os.makedirs(path, mode=0o755, exist_ok=True)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (in the image) or a directory above it matches an exclude."""
        parts = _components(path)
        return any(fnmatch.fnmatchcase("/" + "/".join(parts[:end]), pattern)
                   for end in range(1, len(parts) + 1) for pattern in self.exclude)

    def resolve(self, path: str) -> str:
        """Where ``path`` of the image is in the staging tree, links followed inside it."""
        try:
            return os.path.join(self.path, resolve_inside(self.path, path))
        except Missing as missing:
            return os.path.join(self.path, str(missing.args[0]))

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.resolve(path))

    def read(self, path: str) -> bytes:
        try:
            with open(self.resolve(path), "rb") as file:
                return file.read()
        except OSError as error:
            raise BuildError("cannot read {} in the image: {}".format(
                path, error.strerror)) from None

    def add_path(self, path: str) -> None:
        """Copy ``path`` of the source root to the same place, keeping the links met."""
        if not path.startswith("/"):
            raise BuildError("{!r} is not an absolute path".format(path))
        if self.excluded(path):
            return

        def mirror(relative: str, info: os.stat_result) -> None:
            if stat.S_ISLNK(info.st_mode):
                self._link(relative, os.readlink(os.path.join(self.source_root, relative)))
            elif stat.S_ISDIR(info.st_mode):
                self._directory(relative, info.st_mode)

        try:
            found = resolve_inside(self.source_root, path, mirror)
        except Missing:
            raise BuildError("{} does not exist on this machine".format(path)
                             if self.source_root == "/" else
                             "{} does not exist in {}".format(path, self.source_root)) from None
        if not self.excluded("/" + found):
            self._copy(os.path.join(self.source_root, found), found, named=path)

    def add_copy(self, source: str, dest: str) -> None:
        """Copy ``source`` of this machine (a file or a directory tree) to ``dest``."""
        if not dest.startswith("/"):
            raise BuildError("{!r} is not an absolute path in the image".format(dest))
        if not os.path.lexists(source):
            raise BuildError("{} does not exist".format(source))
        relative = "" if os.path.normpath(dest) == "/" else self._parent(dest)
        if not self.excluded("/" + relative):
            self._copy(source, relative, named=source)

    def add_file(self, dest: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` as the file ``dest`` of the image, replacing what was there."""
        target = os.path.join(self.path, self._parent(dest))
        try:
            if os.path.lexists(target) and not os.path.isdir(target):
                os.unlink(target)
            with open(target, "wb") as file:
                file.write(data)
            os.chmod(target, mode)
        except OSError as error:
            raise BuildError("cannot write {} in the image: {}".format(
                dest, error.strerror)) from None

    def add_directory(self, dest: str, mode: int = 0o755) -> None:
        """Make the directory ``dest`` of the image, and its parents, where missing."""
        if not self.exists(dest):
            self._directory(self._parent(dest), mode)

    def add_tarball(self, tarball: str) -> None:
        """Extract a rootfs tarball (``docker export``), refusing members that escape.

        Device nodes and fifos are left out: the node refuses them in images, and the
        runtimes make /dev themselves.
        """
        def keep(member: tarfile.TarInfo, dest: str) -> Optional[tarfile.TarInfo]:
            if member.ischr() or member.isblk() or member.isfifo():
                return None
            # tar_filter's checks (no absolute names, nothing written through a link
            # out of the rootfs) but the image's own modes: setuid and 1777 /tmp stay.
            checked = tarfile.tar_filter(member, dest)
            return checked.replace(mode=member.mode, deep=False)

        if not hasattr(tarfile, "tar_filter"):
            raise BuildError("extracting {} safely needs tarfile's extraction filters: "
                             "Python 3.9.17, 3.10.12, 3.11.4 or later".format(tarball))
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(self.path, numeric_owner=True, filter=keep)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise BuildError("cannot extract {}: {}".format(tarball, error)) from None

    def add_base(self, passwd: Sequence[str], group: Sequence[str]) -> None:
        """The small files a chroot needs, each only where the image has none yet."""
        for directory in MOUNT_POINTS:
            self.add_directory(directory)
        self.add_directory("/tmp", 0o1777)
        for name, data in (("/etc/passwd", "".join(line + "\n" for line in passwd).encode()),
                           ("/etc/group", "".join(line + "\n" for line in group).encode()),
                           ("/etc/nsswitch.conf", NSSWITCH),
                           # Mount points: the node's own files are bound over them.
                           ("/etc/resolv.conf", b""), ("/etc/hosts", b"")):
            if not self.exists(name):
                self.add_file(name, data)

    def _parent(self, dest: str) -> str:
        """``dest`` relative to the rootfs, its parent directories made (links followed)."""
        parent, name = os.path.split(os.path.normpath("/" + dest))
        found = ""
        for part in _components(parent):
            candidate = found + "/" + part if found else part
            try:
                found = resolve_inside(self.path, candidate)
            except Missing:
                self._directory(candidate, 0o755)
                found = candidate
        if not name:
            raise BuildError("{!r} names no file".format(dest))
        return found + "/" + name if found else name

    def _directory(self, relative: str, mode: int) -> None:
        target = os.path.join(self.path, relative)
        if not os.path.lexists(target):
            os.mkdir(target)
            os.chmod(target, stat.S_IMODE(mode))  # as the source: umask would change it

    def _link(self, relative: str, target: str) -> None:
        where = os.path.join(self.path, relative)
        if not os.path.lexists(where):  # the first source of a name wins
            os.symlink(target, where)

    def _copy(self, source: str, relative: str, named: str) -> None:
        """Copy ``source`` to ``relative`` in the rootfs: a file, a link, or a whole tree."""
        try:
            info = os.lstat(source)
            target = os.path.join(self.path, relative)
            if stat.S_ISDIR(info.st_mode):
                self._directory(relative, info.st_mode)
                for name in sorted(os.listdir(source)):
                    child = relative + "/" + name if relative else name
                    if not self.excluded("/" + child):
                        self._copy(os.path.join(source, name), child, named)
            elif stat.S_ISLNK(info.st_mode):
                self._link(relative, os.readlink(source))
            elif stat.S_ISREG(info.st_mode):
                if os.path.lexists(target) and not os.path.isdir(target):
                    os.unlink(target)
                shutil.copy2(source, target)
                self.copied.append(source)
            elif source == named:
                raise BuildError("{} is not a file, directory or link".format(named))
        except OSError as error:
            raise BuildError("cannot copy {}: {}".format(
                error.filename or source, error.strerror)) from None
