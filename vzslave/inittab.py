"""vz's entries in the node's inittab, the file's locked atomic rewrite, and init's reload.

Each container is one respawn line whose process is exactly ``LAUNCHER NAME``:
``ID:2345:respawn:LAUNCHER NAME`` for sysvinit, ``::respawn:LAUNCHER NAME`` for
BusyBox init. The file is the sysadmin's: the pure functions below touch only the
lines that are ours and keep every other byte, line endings and odd bytes included
(the text is the file decoded as UTF-8 with surrogateescape). An entry of ours that
the sysadmin commented out, or whose action was changed (e.g. to ``off``), is
disabled by the administrator; the caller decides whether to put it back.
The rules follow sysvinit's read_inittab() and spawn() and BusyBox's init/init.c.
"""

import contextlib
import enum
import errno
import fcntl
import itertools
import os
import re
import signal
import stat
import struct
import tempfile
import time
from typing import Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

from vzslave import fs
from vzslave.errors import BadNameError, BusyError, InittabError, error_from_os
from vzslave.names import validate_name
from vzslave.runio import write_all


class Dialect(enum.Enum):
    """Which init reads the file, and so the shape of our lines."""

    SYSV = "sysv"
    BUSYBOX = "busybox"


def dialect_for(init: str) -> Dialect:
    """The dialect for an init named by facts.detect_init(); InittabError if it has none."""
    if init == "sysvinit":
        return Dialect.SYSV
    if init == "busybox":
        return Dialect.BUSYBOX
    raise InittabError(
        "PID 1 is {}, which ignores /etc/inittab; run the vz fallback supervisor "
        "(see initscripts/) to supervise containers on this node".format(init))


RUNLEVELS = "2345"  # the multi-user levels; S, 0, 1 and 6 must not start containers
MAX_SYSV_PROCESS = 127  # sysvinit <= 3.13 silently drops longer process fields
# Either init runs a process field holding any of these through /bin/sh (strpbrk).
SHELL_CHARS = "~`!$^&*()=|\\{}[];\"'<>?"
_SYSV_ID = re.compile(r"[A-Za-z0-9]{1,4}\Z")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# id:runlevels:action:process, after the blanks sysvinit skips; the process is greedy.
_FIELDS = re.compile(r"[ \t]*([^:]*):([^:]*):([^:]*):(.*)\Z", re.S)
_COMMENT = re.compile(r"[ \t]*#[# \t]*")
_ID_OF_ANY_LINE = re.compile(r"[# \t]*([^:\s#]+):")


class Entry(NamedTuple):
    """One line of ours: ``state`` is "active", "commented" or "off"."""

    name: str
    id: str  # "" for the BusyBox shape
    state: str
    line_index: int  # 0-based, lines split at "\n" only
    line: str  # the line as in the file, without its "\n"


def _lines(text: str) -> List[str]:
    # Only "\n" ends a line for either init; str.splitlines would also split at
    # "\r", "\x0c" or "\x85" and so misnumber or alter the sysadmin's lines.
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _name_in(process: str, launcher: str) -> Optional[str]:
    prefix = launcher + " "
    if not process.startswith(prefix):
        return None
    # Trailing blanks change nothing for either init: both split arguments on them.
    try:
        return validate_name("container", process[len(prefix):].rstrip(" \t"))
    except BadNameError:
        return None


def _classify(content: str, launcher: str) -> Optional[Tuple[str, str, str]]:
    comment = _COMMENT.match(content)
    fields = _FIELDS.match(content[comment.end():] if comment else content)
    if fields is None:
        return None
    name = _name_in(fields.group(4), launcher)
    if name is None:
        return None
    if comment:
        state = "commented"
    elif fields.group(3).lower() == "respawn":  # sysvinit uses strcasecmp
        state = "active"
    else:
        state = "off"
    return name, fields.group(1).strip(" \t"), state


def parse(text: str, launcher: str) -> List[Entry]:
    """Our entries in ``text``, in file order, in every state."""
    found = []
    for index, line in enumerate(_lines(text)):
        content = line[:-1] if line.endswith("\n") else line
        mine = _classify(content, launcher)
        if mine is not None:
            found.append(Entry(mine[0], mine[1], mine[2], index, content))
    return found


def used_ids(text: str) -> Set[str]:
    """The id field of every line shaped ``id:...``, commented out or not."""
    ids = set()
    for line in _lines(text):
        match = _ID_OF_ANY_LINE.match(line)
        if match:
            ids.add(match.group(1))
    return ids


def allocate_id(used: Set[str], avoid: Set[str]) -> str:
    """The lowest id "v000".."vzzz" in neither ``used`` nor ``avoid``."""
    taken = used | avoid
    for digits in itertools.product(_BASE36, repeat=3):  # v000, v001, ... v00z, v010
        candidate = "v" + "".join(digits)
        if candidate not in taken:
            return candidate
    raise InittabError("all {} inittab ids vz uses (v000 to vzzz) are taken; remove stale "
                       "v### lines from the inittab, then retry".format(36 ** 3))


def render_entry(dialect: Dialect, launcher: str, name: str, entry_id: str) -> str:
    """Our active line for ``name``, without "\\n"; InittabError if init would misread it."""
    validate_name("container", name)
    process = launcher + " " + name
    if not os.path.isabs(launcher):
        raise InittabError("the launcher path {!r} is relative, but init runs entries from "
                           "/; use an absolute --root".format(launcher))
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in launcher):
        raise InittabError("the launcher path {!r} holds blanks or control characters, which "
                           "init would split or misread; use a --root without "
                           "them".format(launcher))
    bad = sorted(set(process) & set(SHELL_CHARS + "#"))
    if bad:
        # '#' starts a comment for BusyBox and ends the arguments for sysvinit.
        raise InittabError("the inittab command {!r} holds {}, which init would run through "
                           "/bin/sh or cut at '#'; use a --root without them".format(
                               process, " ".join(bad)))
    if dialect is Dialect.BUSYBOX:
        return "::respawn:" + process
    if len(process) > MAX_SYSV_PROCESS:
        raise InittabError(
            "the inittab command {!r} is {} characters long, but sysvinit up to 3.13 silently "
            "ignores commands over {}; a shorter --root or container name fixes it".format(
                process, len(process), MAX_SYSV_PROCESS))
    if not _SYSV_ID.match(entry_id):
        raise InittabError("inittab id {!r} is not 1 to 4 letters or digits".format(entry_id))
    return "{}:{}:respawn:{}".format(entry_id, RUNLEVELS, process)


def _check_id_free(dialect: Dialect, entry_id: str, text: str) -> None:
    # sysvinit ignores the later of two lines with one id; BusyBox has no ids.
    if dialect is Dialect.SYSV and entry_id in used_ids(text):
        raise InittabError("inittab id {!r} is already used by another line; allocate a "
                           "free one".format(entry_id))


def _check_no_continuation(dialect: Dialect, previous: str) -> None:
    # BusyBox joins a line ending in a backslash with the next, comments included.
    if dialect is Dialect.BUSYBOX and previous.rstrip("\n").endswith("\\"):
        raise InittabError("the inittab line {!r} ends with a backslash, so BusyBox init "
                           "would join our entry to it; remove the backslash, then "
                           "retry".format(previous.rstrip("\n")))


def add_entry(text: str, dialect: Dialect, launcher: str, name: str, entry_id: str) -> str:
    """``text`` with our active line for ``name`` appended; refuses if one is there."""
    line = render_entry(dialect, launcher, name, entry_id)
    for entry in parse(text, launcher):
        if entry.name == name:
            raise InittabError("the inittab already has a {} entry for container {!r} (line "
                               "{}): {}".format(entry.state, name, entry.line_index + 1,
                                                entry.line))
    _check_id_free(dialect, entry_id, text)
    lines = _lines(text)
    if lines:
        _check_no_continuation(dialect, lines[-1])
    if text and not text.endswith("\n"):
        text += "\n"
    return text + line + "\n"


def remove_entry(text: str, launcher: str, name: str) -> str:
    """``text`` without our lines for ``name`` (active, commented or off), all else kept."""
    drop = {entry.line_index for entry in parse(text, launcher) if entry.name == name}
    return "".join(line for index, line in enumerate(_lines(text)) if index not in drop)


def restore_entry(text: str, dialect: Dialect, launcher: str, name: str,
                  entry_id: str) -> str:
    """Put a disabled entry for ``name`` back, active, where it was (else append one)."""
    ours = [entry for entry in parse(text, launcher) if entry.name == name]
    if not ours:
        return add_entry(text, dialect, launcher, name, entry_id)
    active = [entry for entry in ours if entry.state == "active"]
    if active:
        raise InittabError("container {!r} already has an active inittab entry (line "
                           "{})".format(name, active[0].line_index + 1))
    line = render_entry(dialect, launcher, name, entry_id)
    lines = _lines(text)
    first = ours[0].line_index
    drop = {entry.line_index for entry in ours[1:]}  # duplicates would collide
    kept = [each for index, each in enumerate(lines) if index not in drop and index != first]
    _check_id_free(dialect, entry_id, "".join(kept))
    if first:
        _check_no_continuation(dialect, lines[first - 1])
    lines[first] = line + lines[first][len(ours[0].line):]  # its own "\n", or none
    return "".join(each for index, each in enumerate(lines) if index not in drop)


# -- the file ------------------------------------------------------------------

class InittabFile:
    """An inittab on disk: read, and rewrite atomically while holding its lock."""

    def __init__(self, path: str = "/etc/inittab", timeout: Optional[float] = None) -> None:
        self.path = path
        self.timeout = fs.LOCK_WAIT if timeout is None else timeout
        self._fd: Optional[int] = None  # the locked file; its directory while it is missing
        self._exists = False

    @contextlib.contextmanager
    def locked(self) -> Iterator["InittabFile"]:
        """Hold an exclusive flock on the file itself; BusyError naming the holder after
        ``timeout`` s (default fs.LOCK_WAIT: no request waits long behind another).

        The lock is on the file so that every tool that flocks /etc/inittab is
        excluded too. A missing file is locked through its directory.
        """
        if self._fd is not None:
            raise RuntimeError("{} is already locked by this object".format(self.path))
        try:
            self._fd, self._exists = self._acquire(time.monotonic() + self.timeout)
        except OSError as exc:
            raise error_from_os(exc, "locking {}".format(self.path)) from exc
        try:
            yield self
        finally:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    def _acquire(self, deadline: float) -> Tuple[int, bool]:
        while True:
            try:
                fd, exists = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), True
            except FileNotFoundError:
                directory = os.path.dirname(os.path.abspath(self.path))
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                exists = False
            try:
                self._flock(fd, deadline)
                if self._still_named(fd, exists):
                    return fd, exists
            except BaseException:
                os.close(fd)
                raise
            # Replaced (or created) while we waited: our lock guards a dead inode.
            os.close(fd)

    def _flock(self, fd: int, deadline: float) -> None:
        if not fs.flock_until(fd, deadline):
            # No record of ours can go in the sysadmin's file: /proc/locks names the
            # process (another vzslave request, or an admin tool).
            holder = fs.flock_holder(os.fstat(fd))
            raise BusyError("{} stayed locked by {} for {:g} s; try again when it has "
                            "finished".format(self.path, holder.describe(), self.timeout),
                            {"holder": holder.to_wire()})

    def _still_named(self, fd: int, exists: bool) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return not exists
        held = os.fstat(fd)
        return exists and (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)

    def read(self) -> str:
        """The file's text ("" if missing); outside locked() a consistent snapshot."""
        try:
            if self._fd is None:
                with open(self.path, "rb") as source:
                    data = source.read()
            elif not self._exists:
                data = b""
            else:
                data = _read_all(self._fd)
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise error_from_os(exc, "reading {}".format(self.path)) from exc
        return data.decode("utf-8", "surrogateescape")

    def write(self, text: str) -> None:
        """Replace the file with ``text`` atomically, keeping its mode and owner (in locked())."""
        if self._fd is None:
            raise RuntimeError("write {} only inside locked()".format(self.path))
        try:
            self._replace(text.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            raise error_from_os(exc, "writing {}".format(self.path)) from exc

    def _replace(self, data: bytes) -> None:
        held = self._fd
        assert held is not None
        target = os.path.realpath(self.path)  # a symlinked inittab stays a symlink
        directory, name = os.path.split(target)
        owner: Optional[Tuple[int, int]] = None
        mode = 0o644
        if self._exists:
            old = os.fstat(held)
            owner, mode = (old.st_uid, old.st_gid), stat.S_IMODE(old.st_mode)
        fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".vz", dir=directory)
        try:
            write_all(fd, data)
            new = os.fstat(fd)
            if owner is not None and owner != (new.st_uid, new.st_gid):
                os.fchown(fd, owner[0], owner[1])
            os.fchmod(fd, mode)  # after fchown, which may clear set-id bits
            os.fsync(fd)
            # Lock the new inode before it gets the name: whoever opens the name after
            # the rename must wait for us, as we may write again in this locked().
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, target)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._fd, self._exists = fd, True
        os.close(held)  # waiters on the old inode wake, see it replaced, and retry
        fs.fsync_dir(directory)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: List[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# -- telling init --------------------------------------------------------------

INIT_MAGIC = 0x03091969  # sysvinit src/initreq.h
INIT_CMD_RUNLVL = 1
INIT_REQUEST_SIZE = 384
# What `telinit q` sends as sleeptime (checked: Debian 12's telinit writes 3). init
# keeps it as its TERM-to-KILL delay for removed entries, so 0 would mean no grace.
WAIT_BETWEEN_SIGNALS = 3


def init_request(runlevel: str = "Q", sleeptime: int = WAIT_BETWEEN_SIGNALS) -> bytes:
    """A sysvinit ``struct init_request``: magic, cmd, runlevel, sleeptime, 368 zero bytes."""
    return struct.pack("=iiii368x", INIT_MAGIC, INIT_CMD_RUNLVL, ord(runlevel), sleeptime)


def write_initctl(path: str, request: bytes) -> bool:
    """Write ``request`` to init's FIFO at ``path``; False if no init listens there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):  # no reader, or no FIFO
            return False
        raise
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False  # never write a request into a regular file
        try:
            return os.write(fd, request) == len(request)  # < PIPE_BUF: all or nothing
        except BlockingIOError:  # the FIFO is full: init is not reading it
            return False
    finally:
        os.close(fd)


def send_signal(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``."""
    os.kill(pid, sig)


def reload_init(dialect: Dialect, pid1: int = 1,
                initctl_paths: Sequence[str] = ("/run/initctl", "/dev/initctl")) -> None:
    """Make init re-read the inittab, as `telinit q` (sysvinit) or `init -q` (BusyBox) do."""
    try:
        if dialect is Dialect.SYSV:
            request = init_request()
            for path in initctl_paths:
                if write_initctl(path, request):
                    return
        # sysvinit treats SIGHUP as `telinit q`; BusyBox init knows only SIGHUP.
        send_signal(pid1, signal.SIGHUP)
    except OSError as exc:
        raise error_from_os(exc, "telling init (pid {}) to re-read the inittab".format(
            pid1)) from exc
