"""ldd-trace: the files the dynamic loader loads to run some programs, found by reading ELF.

``needed_files`` gives each program, its loader (PT_INTERP) and every DT_NEEDED library,
resolved the way glibc's ld.so resolves them, breadth first: a name with a '/' is a path;
otherwise DT_RPATH of the object and of the objects that loaded it up to the program
(only when the object has no DT_RUNPATH), then ``library_path`` (as LD_LIBRARY_PATH),
DT_RUNPATH of the object itself, the directories of ld.so.conf (standing in for
ld.so.cache), and the loader's default directories. A name already loaded (as a name,
a path or a soname) or a file already loaded under another name is not loaded again.

Key decisions:
- Nothing is run (no ldd, no loader): that is unsafe on untrusted programs and wrong
  for another machine or a sysroot.
- Every path is inside ``root``: links, absolute or with '..', are followed inside it as
  the kernel would follow them after chroot, never out to this machine.
- Paths are reported as the loader opens them (``/lib64/ld-linux-x86-64.so.2``, not
  the file it links to), normalized; the caller copies them with their link chains.
- $ORIGIN of the program is the directory of its real path (ld.so reads
  /proc/self/exe); of a library, the directory it was opened from, links unresolved.
- Which glibc owns the root is read from where its loader really is: a loader in
  ``/lib/<triplet>/`` is Debian's multiarch glibc ($LIB = lib/<triplet>, defaults
  /lib/<triplet>, /usr/lib/<triplet>, /lib, /usr/lib); otherwise upstream's
  ($LIB = the loader's lib64 or lib).
- A file of another ELF class or machine is stepped over as ld.so steps over it; a
  file that is not ELF stops the search, as it stops ld.so (except in ld.so.conf
  directories: ldconfig leaves such files out of the cache).
- Relative directories (in RPATH, RUNPATH, ``library_path``) are taken from /, the
  working directory an image's app gets unless told otherwise.
- Not modelled: glibc-hwcaps and legacy hwcap subdirectories (the baseline library
  runs everywhere), LD_PRELOAD, setuid rules, musl's loader.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import stat
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE
from elftools.elf.segments import InterpSegment

from vzmaster.imaging.errors import BuildError
from vzmaster.imaging.rootfs import Missing, resolve_inside
from vzslave.oci import DEFAULT_ENV

PATH = DEFAULT_ENV[0][len("PATH="):]
"""Where a bare program name is looked up: the PATH an image's app gets, not this shell's."""

MAX_SCRIPTS = 4
"""As Linux's BINPRM_MAX_RECURSION: how deep #! interpreters may nest."""

HEAD = 256
"""As Linux's BINPRM_BUF_SIZE: how much of a file the kernel reads to find #!."""

DF_1_NODEFLIB = 0x800
PLATFORMS = {3: "i686", 62: "x86_64", 183: "aarch64"}
"""AT_PLATFORM, which $PLATFORM expands to, by e_machine."""

DST = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")
MACHINES = {value: name[3:] for name, value in ENUM_E_MACHINE.items() if isinstance(value, int)}
SUGGEST = "put it in the image with --add or add its directory with --library-path"


class _Other(Exception):
    """The file is ELF for another class or machine: ld.so steps over it."""


class _Unloadable(Exception):
    """The file is not an ELF file ld.so can load: ld.so stops there with an error."""


@dataclass(frozen=True)
class _Elf:
    """What the loader reads of one ELF file."""

    bits: int
    order: int  # EI_DATA
    machine: int
    interp: Optional[str]
    needed: tuple[str, ...]
    rpath: Optional[str]  # None when DT_RUNPATH is there too: ld.so ignores it then
    runpath: Optional[str]
    soname: Optional[str]
    nodeflib: bool


@dataclass
class _Object:
    """One loaded object: ``shown`` as reported, $ORIGIN, the object that loaded it."""

    shown: str
    origin: str
    elf: _Elf
    loader: Optional[_Object]


def needed_files(programs: Iterable[str], root: str = "/",
                 library_path: Sequence[str] = ()) -> list[str]:
    """Paths (inside ``root``, sorted, each once) of ``programs`` and all they load.

    A program is a path (a relative one from the current directory, or from ``root``
    when there is one) or a bare name looked up in PATH; a #! script brings its
    interpreter (and, for ``#!/usr/bin/env PROG``, PROG). Any failure raises BuildError
    and nothing is returned.
    """
    root = os.path.abspath(root)
    conf = _ld_so_conf(root, "/etc/ld.so.conf", set())
    found: set[str] = set()
    for program in programs:
        found.update(_program(root, _locate(root, program), list(library_path), conf, 0))
    return sorted(found)


# -- paths inside the root -----------------------------------------------------------


def _under(root: str) -> str:
    return "" if root == "/" else " under " + root


def _norm(path: str) -> str:
    path = os.path.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _host(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _resolve(root: str, path: str) -> Optional[str]:
    """The real path inside ``root`` of absolute ``path``, or None if it does not exist."""
    try:
        return "/" + resolve_inside(root, path)
    except Missing:
        return None


def _glob(root: str, pattern: str) -> list[str]:
    """Paths matching ``pattern`` inside ``root``; wildcards only in the last part."""
    directory, name = os.path.split(pattern)
    real = _resolve(root, directory)
    if real is None:
        return []
    matches = glob.glob(os.path.join(glob.escape(_host(root, real)), name))
    return sorted(os.path.join(directory, os.path.basename(match)) for match in matches)


def _ld_so_conf(root: str, path: str, seen: set[str]) -> list[str]:
    """The directories ldconfig would put in the cache from ``path`` and its includes."""
    real = _resolve(root, path)
    if real is None or real in seen:
        return []
    seen.add(real)
    try:
        with open(_host(root, real), encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError as error:
        raise BuildError("cannot read {}{}: {}".format(path, _under(root),
                                                       error.strerror)) from None
    dirs: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        words = line.split()
        if not words or words[0] == "hwcap":
            continue
        if words[0] == "include":
            for pattern in words[1:]:
                for match in _glob(root, os.path.join(os.path.dirname(path), pattern)):
                    dirs += _ld_so_conf(root, match, seen)
        else:
            directory = line.split("=", 1)[0].rstrip()  # old "DIR=TYPE" lines
            if directory.startswith("/"):
                dirs.append(_norm(directory))
    return dirs


def _locate(root: str, program: str) -> str:
    """The path of ``program``: as given, or the first executable of its name in PATH."""
    if "/" in program:
        return _norm(os.path.abspath(program) if root == "/" else "/" + program)
    for directory in PATH.split(":"):
        path = directory + "/" + program
        real = _resolve(root, path)
        if real is not None:
            info = os.stat(_host(root, real))
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o111:
                return path
    raise BuildError("no program named {!r} in PATH ({}){}; give its path".format(
        program, PATH, _under(root)))


# -- reading ELF ----------------------------------------------------------------------


def _head(root: str, real: str, shown: str) -> bytes:
    try:
        with open(_host(root, real), "rb") as file:
            return file.read(HEAD)
    except OSError as error:
        raise BuildError("cannot read {}{}: {}".format(shown, _under(root),
                                                       error.strerror)) from None


def _half(head: bytes, offset: int) -> int:
    """The 16-bit field of the ELF header at ``offset``, in the file's byte order."""
    return int.from_bytes(head[offset:offset + 2], "little" if head[5] == 1 else "big")


def _check(head: bytes, want: Optional[_Elf]) -> None:
    """Raise _Unloadable or _Other where ld.so's open_verify would refuse or skip."""
    if len(head) < 64 or head[:4] != b"\x7fELF":
        raise _Unloadable("file too short" if head[:4] == b"\x7fELF" or len(head) < 4
                          else "invalid ELF header")
    if head[4] not in (1, 2) or head[5] not in (1, 2):
        raise _Unloadable("invalid ELF header")
    if want is not None and head[4] * 32 != want.bits:
        raise _Other("{}-bit".format(head[4] * 32))
    if want is not None and head[5] != want.order:
        raise _Unloadable("wrong byte order")
    machine = _half(head, 18)
    if want is not None and machine != want.machine:
        raise _Other("for {}".format(MACHINES.get(machine, machine)))
    if _half(head, 16) not in (2, 3):  # ET_EXEC, ET_DYN
        raise _Unloadable("only ET_DYN and ET_EXEC can be loaded")


def _parse(root: str, real: str, shown: str) -> _Elf:
    """The loader's view of the ELF file at ``real``, which passed _check."""
    host = _host(root, real)
    try:
        info = os.stat(host)
        return _read_elf(host, (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
    except OSError as error:
        raise BuildError("cannot read {}{}: {}".format(shown, _under(root),
                                                       error.strerror)) from None
    except (ELFError, ConstructError, ValueError) as error:
        raise BuildError("{}{} is not a readable ELF file ({})".format(
            shown, _under(root), error)) from None


def interpreter_of(path: str) -> Optional[str]:
    """PT_INTERP of the ELF file ``path`` of this machine; None if it has none, is not
    ELF or cannot be read (strace-trace adds what the kernel loaded, when it can)."""
    try:
        with open(path, "rb") as file:
            if file.read(4) != b"\x7fELF":
                return None
        info = os.stat(path)
        return _read_elf(path, (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)).interp
    except (OSError, ELFError, ConstructError, ValueError):
        return None


# Keyed by the file's identity and version too: libc is read once for a whole build,
# not once per program (pyelftools spends ~3 ms finding a file's string table).
@functools.lru_cache(maxsize=1024)
def _read_elf(host: str, version: tuple[int, int, int, int]) -> _Elf:
    with open(host, "rb") as file:
        head = file.read(20)
        elf = ELFFile(file)
        interp: Optional[str] = None
        needed: list[str] = []
        tags: dict[str, str] = {}
        flags = 0
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interp = segment.get_interp_name()
            elif isinstance(segment, DynamicSegment):
                for tag in segment.iter_tags():
                    kind = tag.entry.d_tag
                    if kind == "DT_FLAGS_1":
                        flags = tag.entry.d_val
                    elif kind in ("DT_NEEDED", "DT_RPATH", "DT_RUNPATH", "DT_SONAME"):
                        # pyelftools sets .needed, .rpath, ... from the string table
                        value = getattr(tag, kind[3:].lower())
                        if kind == "DT_NEEDED":
                            needed.append(value)
                        else:
                            tags[kind] = value
    return _Elf(bits=head[4] * 32, order=head[5], machine=_half(head, 18), interp=interp,
                needed=tuple(needed),
                rpath=None if "DT_RUNPATH" in tags else tags.get("DT_RPATH"),
                runpath=tags.get("DT_RUNPATH"), soname=tags.get("DT_SONAME"),
                nodeflib=bool(flags & DF_1_NODEFLIB))


def _system(bits: int, loader: str) -> tuple[str, list[str]]:
    """($LIB, default directories) of the glibc whose loader really is at ``loader``."""
    where = os.path.basename(os.path.dirname(loader))
    if "-linux-" in where:  # Debian's multiarch glibc: its slibdir is /lib/<triplet>
        return "lib/" + where, ["/lib/" + where, "/usr/lib/" + where, "/lib", "/usr/lib"]
    lib = where if where in ("lib", "lib32", "lib64", "libx32") else "lib{}".format(
        "64" if bits == 64 else "")
    return lib, ["/" + lib, "/usr/" + lib]


# -- programs and their loads -----------------------------------------------------------


def _program(root: str, shown: str, library_path: list[str], conf: list[str],
             depth: int) -> list[str]:
    """The files to run the program at ``shown``: itself, its loader and libraries."""
    real = _resolve(root, shown)
    if real is None:
        raise BuildError("{} does not exist{}".format(shown, _under(root)))
    head = _head(root, real, shown)
    if head.startswith(b"#!"):
        return [shown] + _script(root, shown, head, library_path, conf, depth)
    if head[:4] != b"\x7fELF":
        what = "it starts with {!r}".format(head[:16]) if head else "it is empty"
        raise BuildError("{}{} is not an ELF program ({}); ldd-trace needs ELF programs or "
                         "#! scripts: add other files with --add".format(shown, _under(root),
                                                                         what))
    try:
        _check(head, None)
    except _Unloadable as why:
        raise BuildError("{}{} is not a loadable ELF program ({})".format(
            shown, _under(root), why)) from None
    elf = _parse(root, real, shown)
    if elf.interp is None:
        return [shown]  # static: the kernel maps it alone
    return _Load(root, shown, real, elf, library_path, conf).run()


def _script(root: str, shown: str, head: bytes, library_path: list[str], conf: list[str],
            depth: int) -> list[str]:
    """The files of the interpreter on a #! line; for env, also of the program it runs."""
    if depth == MAX_SCRIPTS:
        raise BuildError("{}{}: #! interpreters nest deeper than Linux allows ({})".format(
            shown, _under(root), MAX_SCRIPTS))
    line = os.fsdecode(head[2:].split(b"\n", 1)[0]).strip(" \t")
    parts = re.split(r"[ \t]+", line, maxsplit=1)
    if not parts[0]:
        raise BuildError("{}{} starts with #! but names no interpreter".format(
            shown, _under(root)))
    # The kernel opens a relative interpreter from the working directory: / in an image.
    interpreter = _norm("/" + parts[0])
    if _resolve(root, interpreter) is None:
        raise BuildError("{} is run by {} (its #! line), which does not exist{}".format(
            shown, interpreter, _under(root)))
    files = _program(root, interpreter, library_path, conf, depth + 1)
    if os.path.basename(interpreter) == "env" and len(parts) > 1:
        words = [word for word in parts[1].split()
                 if not word.startswith("-") and "=" not in word]
        if words:
            files += _program(root, _locate(root, words[0]), library_path, conf, depth + 1)
    return files


class _Load:
    """One program's load as ld.so does it: the loader first, then breadth first."""

    def __init__(self, root: str, shown: str, real: str, elf: _Elf,
                 library_path: list[str], conf: list[str]) -> None:
        self.root, self.conf, self.under = root, conf, _under(root)
        self.names: dict[str, _Object] = {}
        self.files: dict[tuple[int, int], _Object] = {}
        self.main = _Object(shown, os.path.dirname(real), elf, None)
        self._register(self.main, self._identity(real), [])
        self.loaded = [self.main]
        self.rtld, rtld_real = self._loader(elf.interp or "")
        self.lib, self.defaults = _system(elf.bits, rtld_real)
        self.extra = self._expand(library_path, self.main)

    def run(self) -> list[str]:
        index = 0
        while index < len(self.loaded):
            needer = self.loaded[index]
            index += 1
            for name in needer.elf.needed:
                if name not in self.names:
                    self._load(name, needer)
        return [self.rtld.shown] + [loaded.shown for loaded in self.loaded]

    def _identity(self, real: str) -> tuple[int, int]:
        try:
            info = os.stat(_host(self.root, real))
        except OSError as error:
            raise BuildError("cannot read {}{}: {}".format(real, self.under,
                                                           error.strerror)) from None
        return info.st_dev, info.st_ino

    def _register(self, loaded: _Object, identity: tuple[int, int], names: list[str]) -> None:
        self.files.setdefault(identity, loaded)
        for name in names + [loaded.elf.soname or ""]:
            if name:
                self.names.setdefault(name, loaded)

    def _loader(self, interp: str) -> tuple[_Object, str]:
        shown = _norm("/" + interp)
        real = _resolve(self.root, shown)
        which = "{} needs the loader {}, which".format(self.main.shown, shown)
        if real is None:
            raise BuildError("{} does not exist{}".format(which, self.under))
        head = _head(self.root, real, shown)
        try:
            _check(head, self.main.elf)
        except _Other as why:
            raise BuildError("{} is {}, unlike the program (wrong architecture)".format(
                which, why)) from None
        except _Unloadable as why:
            raise BuildError("{} is not a loadable ELF file ({})".format(which, why)) from None
        rtld = _Object(shown, os.path.dirname(shown), _parse(self.root, real, shown), None)
        self._register(rtld, self._identity(real), [interp, shown])
        return rtld, real

    def _load(self, name: str, needer: _Object) -> None:
        path, real, head = self._open(name, needer) if "/" in name else self._search(name, needer)
        identity = self._identity(real)
        if identity in self.files:  # the same file under another name: ld.so reuses it
            self.names[name] = self.files[identity]
            return
        shown = _norm(path)
        loaded = _Object(shown, os.path.dirname(path), _parse(self.root, real, shown),
                         needer)
        self._register(loaded, identity, [name, path])
        self.loaded.append(loaded)

    def _open(self, name: str, needer: _Object) -> tuple[str, str, bytes]:
        """A needed name with a '/': a path (from / when relative, like the app's cwd)."""
        path = self._expand([name], needer)[0]
        real = _resolve(self.root, path)
        which = "{}, needed by {},".format(name, needer.shown)
        if real is None:
            raise BuildError("{} does not exist{}; put it there with --add".format(
                which, self.under))
        head = _head(self.root, real, _norm(path))
        try:
            _check(head, self.main.elf)
        except (_Other, _Unloadable) as why:
            raise BuildError("{} is not a loadable ELF file for it ({})".format(
                which, why)) from None
        return path, real, head

    def _search(self, name: str, needer: _Object) -> tuple[str, str, bytes]:
        """The first file named ``name`` that ld.so would take, where it looks for it."""
        searched: list[str] = []
        skipped: list[str] = []
        for directory, cached in self._dirs(needer):
            if _norm(directory) not in searched:
                searched.append(_norm(directory))
            path = directory.rstrip("/") + "/" + name
            real = _resolve(self.root, path)
            if real is None:
                continue
            head = _head(self.root, real, _norm(path))
            try:
                _check(head, self.main.elf)
            except _Other as why:
                skipped.append("{} ({})".format(_norm(path), why))
                continue
            except _Unloadable as why:
                if cached:
                    continue
                raise BuildError(
                    "{}{} is not a loadable ELF file ({}), and the loader stops there "
                    "looking for {}, needed by {}; remove it, or put the right directory "
                    "first with --library-path".format(_norm(path), self.under, why, name,
                                                       needer.shown)) from None
            return path, real, head
        stepped = "; stepped over {}".format(", ".join(skipped)) if skipped else ""
        raise BuildError("{}, needed by {}, was not found{} in {}{}; {}".format(
            name, needer.shown, self.under, ", ".join(searched), stepped, SUGGEST))

    def _dirs(self, needer: _Object) -> list[tuple[str, bool]]:
        """Where ld.so looks for what ``needer`` needs; True marks ld.so.cache's stand-in."""
        dirs: list[str] = []
        if needer.elf.runpath is None:
            chain: Optional[_Object] = needer
            while chain is not None:
                dirs += self._expand((chain.elf.rpath or "").split(":"), chain)
                chain = chain.loader
        dirs += self.extra
        dirs += self._expand((needer.elf.runpath or "").split(":"), needer)
        found = [(directory, False) for directory in dirs]
        if not needer.elf.nodeflib:
            found += [(directory, True) for directory in self.conf]
            found += [(directory, False) for directory in self.defaults]
        return found

    def _expand(self, entries: Iterable[str], owner: _Object) -> list[str]:
        """``entries`` with $ORIGIN, $LIB and $PLATFORM substituted, empty ones dropped."""
        expanded: list[str] = []
        for entry in entries:
            entry = DST.sub(lambda match: self._token(match.group(1) or match.group(2), owner),
                            entry)
            if entry:
                expanded.append(entry if entry.startswith("/") else "/" + entry)
        return expanded

    def _token(self, token: str, owner: _Object) -> str:
        if token == "ORIGIN":
            return owner.origin
        if token == "LIB":
            return self.lib
        platform = PLATFORMS.get(self.main.elf.machine)
        if platform is None:
            raise BuildError("{} uses $PLATFORM, which ldd-trace cannot expand for {}; add "
                             "its libraries with --add".format(
                                 owner.shown, MACHINES.get(self.main.elf.machine, "?")))
        return platform
