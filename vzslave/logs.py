"""Container logs: bounded files, rotated with no process of ours beside the app,
read with a cursor the client owns.

``NAME.log`` is the current file; ``NAME.log.1`` (newest) ... ``NAME.log.KEEP`` are the
rotated generations. Two ways to rotate, for two kinds of writer:

- ``rotate``: by rename, while nobody has the file open for writing (the runner before
  it opens the log for the app it execs; ``LogPump``, which owns its fd).
- ``trim``: "copytruncate", while the app holds the file open with O_APPEND. The tail is
  copied to ``NAME.log.1``, then the file is truncated to 0; O_APPEND writers go on at the
  new end of the same inode, so no hole appears. Lines written between the end of the
  copy and the truncation are lost: the copy catches up once with what arrived during
  its long first pass, so the window is the short second pass, not the whole copy. The
  copy may end inside a line (a partial line, or a write that the kernel makes visible
  page by page): ``.1`` then ends that piece with a newline of its own.

``enforce`` leaves at most KEEP generations, none above max_bytes: at most
(KEEP+1)*max_bytes in all. The runner imports this module to rotate, and its monitor to
pump: it imports only os, errno and the runner's leaf vzslave/runio.py (typing only for
mypy: it costs ~10 ms).

Readers find files by inode: a cursor's inode now at ``NAME.log.K`` was rotated by
rename; the same inode with fewer bytes than the cursor's offset was truncated by
``trim``, and reading restarts at 0 (what ``trim`` copied to ``.1`` is not re-read).
Callers serialise the writers of one chain (the container's lock); readers need none.
"""

import errno
import os

from vzslave.runio import write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, NamedTuple, Optional, Set, Tuple

MIB = 1024 * 1024
_BLOCK = 64 * 1024  # reading back for tail, looking for a line start
_CHUNK = MIB  # one copy step
_ATTEMPTS = 10  # to find the file after a rotated one while rotations go on
_SYSLOG_LINE = 8192  # a partial line longer than this goes to syslog as it is
_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


if TYPE_CHECKING:
    class Cursor(NamedTuple):
        """Where a reader stopped: the file (by inode) and the offset in it."""

        inode: int
        offset: int
else:
    class Cursor(tuple):
        """Where a reader stopped: the file (by inode) and the offset in it.

        A NamedTuple for mypy; at run time this, as typing costs ~10 ms to import.
        """

        __slots__ = ()
        inode = property(lambda self: self[0])
        offset = property(lambda self: self[1])

        def __new__(cls, inode, offset):
            return tuple.__new__(cls, (inode, offset))

        def __getnewargs__(self):
            return tuple(self)

        def __repr__(self):
            return "Cursor(inode={!r}, offset={!r})".format(*self)


def generation(path: str, n: int) -> str:
    """The path of generation ``n``: the current file for 0, else ``path.N``."""
    return path if n == 0 else "{}.{}".format(path, n)


def _open(path: str, flags: int = os.O_RDONLY, mode: int = 0o640) -> "Optional[int]":
    try:
        return os.open(path, flags | _FLAGS, mode)
    except FileNotFoundError:
        return None


def _stat(path: str) -> "Optional[os.stat_result]":
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _inode(path: str) -> "Optional[int]":
    st = _stat(path)
    return None if st is None else st.st_ino


def _quietly(call: "Callable[..., None]", *paths: str) -> None:
    """``os.unlink`` or ``os.rename``, a missing file being no error."""
    try:
        call(*paths)
    except FileNotFoundError:
        pass


def _existing_generations(path: str) -> "List[int]":
    """The numbers N of the ``path.N`` files there are, whatever keep says: a loop over
    ``keep`` would run for ever with keep 10**12."""
    directory, name = os.path.split(path)
    found = []
    for entry in os.listdir(directory or "."):
        suffix = entry[len(name) + 1:]
        if entry.startswith(name + ".") and suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def _shift(path: str, keep: int) -> None:
    """Drop generations from ``keep`` on; rename each other one a step up, oldest first."""
    for n in reversed(_existing_generations(path)):
        if n >= keep:
            _quietly(os.unlink, generation(path, n))
        else:
            _quietly(os.rename, generation(path, n), generation(path, n + 1))


def rotate(path: str, keep: int, max_bytes: int = 0) -> bool:
    """Rotate by rename if ``path`` holds more than ``max_bytes``; say if it did.

    Only while no process has ``path`` open for writing (it would go on writing into
    ``path.1``). With keep 0 the file is deleted. With ``max_bytes``, the rotated file
    keeps only its last ``max_bytes`` (from a line start): no generation ever holds
    more than that, however far past it the file had grown.
    """
    st = _stat(path)
    if st is None or st.st_size <= max_bytes:
        return False
    if keep <= 0:
        _quietly(os.unlink, path)
        return True
    _shift(path, keep)
    _quietly(os.rename, path, generation(path, 1))
    if max_bytes:
        fd = _open(generation(path, 1), os.O_RDWR)
        if fd is not None:
            try:
                _keep_tail(fd, max_bytes)
            finally:
                os.close(fd)
    return True


def _copy(src: int, dst: int, start: int, end: int) -> None:
    """Append bytes ``start``..``end`` of ``src`` to ``dst`` (fewer if ``src`` ends)."""
    while start < end:
        count = min(end - start, _CHUNK)
        try:
            sent = os.sendfile(dst, src, start, count)
        except OSError as exc:  # filesystems without file-to-file sendfile
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            sent = write_all(dst, os.pread(src, count, start))
        if sent == 0:
            return
        start += sent


def _line_start(fd: int, start: int, end: int) -> int:
    """The first line start at or after ``start``, or ``start`` if none is near."""
    if start == 0:
        return 0
    newline = os.pread(fd, min(_BLOCK, end - start + 1), start - 1).find(b"\n")
    # None nearby, or only the final one: rather a partial line than nothing.
    return start if newline < 0 or start + newline >= end else start + newline


def _keep_tail(fd: int, max_bytes: int) -> None:
    """Cut the file of ``fd`` in place to its last ``max_bytes``, from a line start."""
    size = os.fstat(fd).st_size
    if size <= max_bytes:
        return
    start = _line_start(fd, size - max_bytes, size)
    done = 0  # moving bytes towards 0 in ascending chunks never overwrites unread ones
    while start + done < size:
        data = os.pread(fd, min(_CHUNK, size - start - done), start + done)
        if not data:
            break
        done += os.pwrite(fd, data, done)
    os.ftruncate(fd, done)


def trim(path: str, max_bytes: int, keep: int) -> bool:
    """Copytruncate ``path`` if it holds more than ``max_bytes``; say if it did.

    For a file an O_APPEND writer keeps open: shift the generations, copy the last
    ``max_bytes`` to ``path.1``, truncate ``path`` to 0 (the module docstring says
    which lines this can lose).
    """
    fd = _open(path, os.O_RDWR)
    if fd is None:
        return False
    try:
        st = os.fstat(fd)
        if st.st_size <= max_bytes:
            return False
        if keep <= 0:
            os.ftruncate(fd, 0)
            return True
        _shift(path, keep)
        out = os.open(generation(path, 1), os.O_RDWR | os.O_CREAT | os.O_TRUNC | _FLAGS,
                      st.st_mode & 0o777)
        try:
            size = st.st_size
            try:
                _copy(fd, out, _line_start(fd, max(size - max_bytes, 0), size), size)
                # Strategy: one catch-up pass with what arrived during the first, so only
                # this short pass lies between the last byte copied and the truncation.
                _copy(fd, out, size, os.fstat(fd).st_size)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    os.ftruncate(fd, 0)  # a full disk is worse than a lost tail of log
                raise
            os.ftruncate(fd, 0)
            end = os.fstat(out).st_size
            if end and os.pread(out, 1, end - 1) != b"\n":
                os.pwrite(out, b"\n", end)  # a cut line must not run into the next one
            _keep_tail(out, max_bytes)
        finally:
            os.close(out)
        return True
    finally:
        os.close(fd)


def enforce(path: str, max_bytes: int, keep: int) -> None:
    """Bound the log: trim the current file, cut generations above ``max_bytes`` to
    their tail, delete generations beyond ``keep``."""
    trim(path, max_bytes, keep)
    for n in _existing_generations(path):
        if n > keep:
            _quietly(os.unlink, generation(path, n))
            continue
        fd = _open(generation(path, n), os.O_RDWR)
        if fd is not None:
            try:
                if os.fstat(fd).st_size > max_bytes:
                    _keep_tail(fd, max_bytes)
            finally:
                os.close(fd)


def enforce_all(directory: str, limits: "Callable[[str], Tuple[int, int]]",
                past: int) -> None:
    """enforce() every container's chain in ``directory`` that has a file over ``past``
    bytes, with the (max_bytes, keep) that ``limits(NAME)`` gives for NAME.log.

    Called at every session, so it stays cheap: a stat per file, ``limits`` asked only
    of chains with a big file. A full disk is no error: enforce cuts what it can.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    big = set()
    for entry in entries:
        base, _, number = entry.name.rpartition(".")
        name = entry.name if not number.isdigit() else base  # NAME.log or NAME.log.N
        if not name.endswith(".log"):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_size > past:
                big.add(name[:-4])
        except OSError:
            continue
    for name in sorted(big):
        max_bytes, keep = limits(name)
        try:
            enforce(os.path.join(directory, name + ".log"), max_bytes, keep)
        except OSError:
            pass


def remove_chain(path: str) -> None:
    """Remove the log at ``path`` and every ``path.N`` there is."""
    directory, name = os.path.split(path)
    for entry in os.listdir(directory or "."):
        if entry == name or (entry.startswith(name + ".") and entry[len(name) + 1:].isdigit()):
            _quietly(os.unlink, os.path.join(directory, entry))


def _generations(path: str, keep: "Optional[int]") -> "List[Tuple[int, int]]":
    """(n, inode) of the rotated generations 1..keep that exist; keep None: up to a gap."""
    found = []
    for index, n in enumerate(_existing_generations(path)):
        if keep is None and n != index + 1:
            break  # a gap: what lies beyond is not part of the chain
        if keep is not None and n > keep:
            break
        st = _stat(generation(path, n))
        if st is not None:
            found.append((n, st.st_ino))
    return found


def _open_inode(path: str, inode: int, keep: "Optional[int]") -> "Optional[int]":
    """An fd on the file of ``inode``, current or rotated; None if it is gone."""
    for n in [0] + [n for n, ino in _generations(path, keep) if ino == inode]:
        fd = _open(generation(path, n))
        if fd is not None:
            if os.fstat(fd).st_ino == inode:  # not rotated again since we looked
                return fd
            os.close(fd)
    return None


def tail(path: str, lines: int, keep: int,
         max_bytes_out: int = MIB) -> "Tuple[bytes, Cursor]":
    """The last ``lines`` lines (the last may be partial), reaching into rotated
    generations if needed, at most ``max_bytes_out``; and a cursor at the end of ``path``."""
    chunks: List[bytes] = []  # newest first
    wanted, total, last = lines, 0, True
    seen: Set[int] = set()

    def back(fd: int, end: int) -> None:
        """Collect ``fd`` backwards from ``end`` until enough lines or bytes."""
        nonlocal wanted, total, last
        while end > 0 and total < max_bytes_out:
            size = min(_BLOCK, end, max_bytes_out - total)
            end -= size
            block = os.pread(fd, size, end)
            high = len(block)
            if last and block:
                last = False
                high -= block.endswith(b"\n")  # it ends the last line, it starts none
            newline = block.rfind(b"\n", 0, high)
            while newline >= 0:
                wanted -= 1
                if wanted == 0:
                    chunks.append(block[newline + 1:])
                    return
                newline = block.rfind(b"\n", 0, newline)
            chunks.append(block)
            total += len(block)

    cursor = Cursor(0, 0)
    for n in [0] + [n for n in _existing_generations(path) if n <= keep]:
        fd = _open(generation(path, n))
        if fd is None:
            continue
        try:
            st = os.fstat(fd)
            if n == 0:
                cursor = Cursor(st.st_ino, st.st_size)
            # A known inode was renamed since we read it as a newer generation.
            if st.st_ino not in seen and wanted > 0 and total < max_bytes_out:
                seen.add(st.st_ino)
                back(fd, st.st_size)
        finally:
            os.close(fd)
        if wanted <= 0 or total >= max_bytes_out:
            break
    return b"".join(reversed(chunks)), cursor


def read_from(path: str, cursor: Cursor, limit: int,
              keep: "Optional[int]" = None) -> "Tuple[bytes, Cursor]":
    """At most ``limit`` bytes from ``cursor`` on, and the cursor after them: a Follower
    for one read (see there for rotations). Cursor(0, 0) starts at 0 of ``path``."""
    follower = Follower(path, cursor, keep)
    try:
        return follower.read(limit), follower.cursor
    finally:
        follower.close()


class Follower:
    """Reads a log as it grows, across rotations; never blocks or sleeps.

    Holds the fd of the file it reads, so a file renamed away is still read to its end
    before the next newer one is read from 0. A cursor on a file that is gone (or
    Cursor(0, 0)) starts at 0 of the current file.
    """

    def __init__(self, path: str, cursor: Cursor, keep: "Optional[int]") -> None:
        self._path, self._keep = path, keep
        self._next: Optional[int] = None  # the newer file, once ours was rotated away
        self._inode, self._offset = 0, 0
        self._fd = _open_inode(path, cursor.inode, keep) if cursor.inode else None
        if self._fd is not None:
            self._inode, self._offset = cursor
        else:  # unknown or gone: 0 of the current file, now or once it exists
            self._fd = _open(path)
            self._inode = os.fstat(self._fd).st_ino if self._fd is not None else 0

    @property
    def cursor(self) -> Cursor:
        """Where the next read starts."""
        return Cursor(self._inode, self._offset)

    def read(self, limit: int) -> bytes:
        """What was written since the last read, at most ``limit`` bytes; b"" if nothing."""
        chunks: List[bytes] = []
        while limit > 0:
            if self._fd is None:
                self._fd = _open(self._path)
                if self._fd is None:
                    break
                self._inode, self._offset = os.fstat(self._fd).st_ino, 0
            if self._offset > os.fstat(self._fd).st_size:  # truncated by trim
                self._offset = 0
            data = os.pread(self._fd, limit, self._offset)
            if data:
                chunks.append(data)
                self._offset += len(data)
                limit -= len(data)
            elif self._next is None:
                self._next = self._successor()
                if self._next is None:
                    break
                # Read ours once more: it may have grown between that read and the rename.
            else:
                os.close(self._fd)
                self._fd, self._next = self._next, None
                self._inode, self._offset = os.fstat(self._fd).st_ino, 0
        return b"".join(chunks)

    def _successor(self) -> "Optional[int]":
        """An fd on the file after ours if ours was rotated away, else None."""
        for attempt in range(_ATTEMPTS):
            current = _stat(self._path)
            if current is None or current.st_ino == self._inode:
                return None
            generations = _generations(self._path, self._keep)
            ours = [n for n, inode in generations if inode == self._inode]
            if not ours and attempt < _ATTEMPTS - 1:
                # Missed while a rotation moved it from one name to the next (the names
                # are stat'ed one by one): look again before taking it for gone.
                continue
            # Not found: ours was the oldest and is gone, so the oldest left comes next.
            n = ours[0] if ours else 1 + max([n for n, _ in generations] or [0])
            fd = _open(generation(self._path, n - 1))
            if fd is None:
                continue
            if os.fstat(fd).st_ino == self._inode:  # ours, moved meanwhile: never next
                os.close(fd)
                continue
            # A rotation may have shifted the chain meanwhile. Files only move up, so if
            # ours (or nothing) is still at n and this one still at n - 1, it is next.
            if (_inode(generation(self._path, n)) == (self._inode if ours else None)
                    and _inode(generation(self._path, n - 1)) == os.fstat(fd).st_ino):
                return fd
            os.close(fd)
        return None

    def close(self) -> None:
        """Release the files."""
        for fd in (self._fd, self._next):
            if fd is not None:
                os.close(fd)
        self._fd = self._next = None


class LogPump:
    """Writes output we read from a pipe to a log whose files never exceed ``max_bytes``,
    rotating by rename; optionally sends complete lines to syslog too."""

    def __init__(self, path: str, max_bytes: int, keep: int,
                 syslog_ident: "Optional[str]" = None) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1, not {}".format(max_bytes))
        self._path, self._max, self._keep = path, max_bytes, keep
        self._size = 0
        self._fd: Optional[int] = self._open()
        self._partial = b""
        self._syslog: Any = None
        if syslog_ident is not None:
            import syslog  # lazily: only monitor mode with syslog pays for it

            syslog.openlog(syslog_ident, 0, syslog.LOG_DAEMON)
            self._syslog = syslog

    def _open(self) -> int:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _FLAGS, 0o640)
        self._size = os.fstat(fd).st_size
        return fd

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first whenever the next bytes would pass the cap."""
        if self._fd is None:
            raise ValueError("write to a closed LogPump")
        if self._syslog is not None:
            self._to_syslog(data)
        while data:
            room = self._max - self._size
            if len(data) <= room:
                cut = len(data)
            else:  # keep lines whole, unless one is longer than a whole file
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1
                if cut == 0 and self._size == 0:
                    cut = room
            if cut == 0:
                os.close(self._fd)
                self._fd = None
                rotate(self._path, self._keep)
                self._fd = self._open()
                continue
            self._size += write_all(self._fd, data[:cut])
            data = data[cut:]

    def _to_syslog(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _SYSLOG_LINE:  # a line with no end must not grow unbounded
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            self._syslog.syslog(self._syslog.LOG_INFO, text)

    def close(self) -> None:
        """Send a last partial line to syslog and close the file."""
        if self._syslog is not None:
            if self._partial:
                self._to_syslog(b"\n")
            self._syslog.closelog()
            self._syslog = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
