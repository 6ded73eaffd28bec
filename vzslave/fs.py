"""Filesystem primitives with the guarantees the stores rely on.

Atomic writes (temp + fsync + rename + fsync of the directory), advisory locks
between concurrent vzslave processes, free-space figures, and a tree removal that
never follows a symlink and never crosses into another mount.
"""

import contextlib
import errno
import fcntl
import os
import stat
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional

from vzslave.errors import BusyError, DiskFullError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(path: str) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new, never half."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".{}.tmp{}".format(name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)  # a failed rename must not leave the temporary file behind
        raise
    fsync_dir(directory or ".")


def atomic_symlink(target: str, path: str) -> None:
    """Point the symlink ``path`` at ``target``, replacing any old link in one step."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".{}.lnk{}".format(name, os.getpid()))
    unlink_quietly(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(directory or ".")


def unlink_quietly(path: str) -> bool:
    """Remove the file ``path``; True if it was there (a missing one is no error)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


RESERVE_BYTES = 1024 * 1024


def keep_reserve(path: str, size: int = RESERVE_BYTES) -> None:
    """Hold ``size`` bytes of disk at ``path`` (written, not sparse), if there is room.

    A stop must work on a full disk (an app that floods it is what one stops): its few
    small writes take their space from here. Best effort: never an error.
    """
    try:
        if os.lstat(path).st_size >= size:
            return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        atomic_write(path, bytes(size), 0o600)
    except OSError:
        pass  # no room now: the next session tries again


def release_reserve(path: str) -> bool:
    """Give the reserve's space back to the disk; True if there was one."""
    return unlink_quietly(path)


def write_with_reserve(write: Callable[[], None], reserve: str,
                       first: Callable[[], None]) -> None:
    """Call ``write``; if it fails for want of space (ENOSPC, EDQUOT), call ``first``
    (stop what fills the disk), give the reserve at ``reserve`` back, and write again."""
    try:
        write()
        return
    except (OSError, DiskFullError) as exc:
        number = exc.errno if isinstance(exc, OSError) else exc.details.get("errno")
        if number not in (errno.ENOSPC, errno.EDQUOT):
            raise
    first()
    release_reserve(reserve)
    write()


def visible_names(directory: str) -> List[str]:
    """The sorted names in ``directory`` that do not start with a dot.

    The stores keep their own entries under dot names (.blobs, .trees, temp files),
    out of the namespace of validated names, which never start with a dot.
    """
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


class FreeSpace(NamedTuple):
    """What an unprivileged writer may still use on a filesystem."""

    bytes: int
    inodes: int
    total: int  # the filesystem's size in bytes
    block: int  # its allocation unit


def free_space(path: str) -> FreeSpace:
    """Free bytes and inodes available to non-root writers of ``path``'s filesystem."""
    st = os.statvfs(path)
    # f_favail is 0 on filesystems without an inode limit (btrfs, some tmpfs).
    inodes = st.f_favail if st.f_files else 2 ** 63
    return FreeSpace(st.f_bavail * st.f_frsize, inodes, st.f_blocks * st.f_frsize,
                     st.f_frsize)


LOCK_WAIT = 5.0  # seconds a request waits for a lock another request holds
_LOCK_POLL = 0.05  # seconds between attempts (flock has no timeout)
_activity = ""  # what this process does now: the op it serves, recorded in its locks


def checkpoint(root: str, step: str) -> None:
    """The crash tests' hook: pause at ``step`` if ROOT/.pause has a "STEP SECONDS" line
    for it (saying so in ROOT/.reached), so a test can SIGKILL vzslave right there.
    Costs one failed open where no test asked."""
    try:
        with open(os.path.join(root, ".pause"), "rb") as source:
            lines = source.read().decode("ascii", "replace").splitlines()
    except OSError:
        return
    for line in lines:
        words = line.split()
        if len(words) == 2 and words[0] == step:
            atomic_write(os.path.join(root, ".reached"), step.encode(), 0o600)
            time.sleep(min(float(words[1]), 600.0))


def set_activity(what: str) -> None:
    """Name what this process is doing (the op it serves) in the locks it takes next."""
    global _activity
    _activity = what


def _pause(seconds: float) -> None:
    """Wait before the next attempt at a held lock (a seam for tests)."""
    time.sleep(seconds)


def flock_until(fd: int, deadline: float) -> bool:
    """Take an exclusive flock on ``fd``, trying until ``deadline`` (time.monotonic());
    False if another process still holds it then. flock itself has no timeout."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _pause(min(_LOCK_POLL, left))


class LockHolder(NamedTuple):
    """Who holds a lock, as far as can be told: ``op`` and ``since`` only if ours."""

    pid: Optional[int]
    program: str  # "vzslave" if the holder recorded itself, else its /proc comm or ""
    op: str  # "" if unknown
    since: Optional[float]  # unix time it was taken
    client: str = ""  # the SSH client's address (SSH_CLIENT) of a vzslave holder
    user: str = ""  # the user that vzslave runs as

    def describe(self) -> str:
        """'vzslave pid 123 of root from 192.0.2.1 (app.deploy since 12:00:01)', or what
        is known of it."""
        if not self.pid:
            return "another process"
        who = "{} pid {}".format(self.program or "process", self.pid)
        if self.user:
            who += " of {}".format(self.user)
        if self.client:
            who += " from {}".format(self.client)
        if self.since is None:
            return who
        return "{} ({}since {})".format(who, self.op + " " if self.op else "",
                                        time.strftime("%H:%M:%S", time.localtime(self.since)))

    def to_wire(self) -> Dict[str, Any]:
        """The ``holder`` map of a BUSY error's details."""
        return {"pid": self.pid, "program": self.program or None, "op": self.op or None,
                "since": self.since, "client": self.client or None,
                "user": self.user or None}


@contextlib.contextmanager
def exclusive_lock(path: str, what: str, blocking: bool = True) -> Iterator[int]:
    """Hold an exclusive flock on ``path`` (created if needed), recording the holder.

    With ``blocking``, wait up to LOCK_WAIT seconds for another holder to finish;
    without, try once. Then raise BusyError naming ``what`` and the holder: no
    request waits long behind another. The file holds "PID OP SINCE" while locked.
    flock locks vanish with their process: a killed vzslave leaves none behind (its
    stale record is recognised by its dead pid).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if not flock_until(fd, time.monotonic() + (LOCK_WAIT if blocking else 0.0)):
            holder = lock_holder(path)
            for _ in range(10):  # a holder of ours writes its record just after its flock
                if holder.program == "vzslave":
                    break
                _pause(0.01)
                holder = lock_holder(path)
            raise BusyError("{} is in use by {}; try again when it has finished".format(
                what, holder.describe()), {"holder": holder.to_wire()})
        _write_record(fd, "{} {} {:.3f} {} {}\n".format(
            os.getpid(), _activity or "-", time.time(), _client(), _user()))
        try:
            yield fd
        finally:
            _write_record(fd, "")  # before the unlock: the next holder finds it empty
    finally:
        os.close(fd)


def _write_record(fd: int, record: str) -> None:
    # The record only explains a BUSY answer: failing to write it (a full disk)
    # must not fail the request that holds the lock.
    try:
        os.ftruncate(fd, 0)
        if record:
            os.pwrite(fd, record.encode(), 0)
    except OSError:
        pass


def _client() -> str:
    """The address the SSH client connected from (sshd's SSH_CLIENT), "-" if local."""
    words = os.environ.get("SSH_CLIENT", "").split()
    return words[0] if words and all(c in "0123456789abcdefABCDEF.:" for c in words[0]) else "-"


def _user() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def lock_holder(path: str) -> LockHolder:
    """Who holds the flock on ``path``: its record if it is ours, else /proc/locks."""
    try:
        with open(path, "rb") as record:
            fields = record.read(200).decode("ascii", "replace").split()
            st = os.fstat(record.fileno())
    except OSError:
        return LockHolder(None, "", "", None)
    try:
        pid, op, since = int(fields[0]), fields[1], float(fields[2])
    except (IndexError, ValueError):
        pid = 0  # empty (just taken, or by a tool of someone else's) or garbage
    if pid > 0 and _alive(pid):
        client, user = (fields[3:5] + ["-", "-"])[:2]
        return LockHolder(pid, "vzslave", "" if op == "-" else op, since,
                          "" if client == "-" else client, "" if user == "-" else user)
    return flock_holder(st)


def flock_holder(st: os.stat_result) -> LockHolder:
    """Who holds a flock on the file ``st`` describes, from /proc/locks alone."""
    found = _flock_pid(st.st_dev, st.st_ino)
    return LockHolder(found, _comm(found) if found else "", "", None)


def _comm(pid: int) -> str:
    try:
        with open("/proc/{}/comm".format(pid)) as comm:
            return comm.read().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user
    return True


def _flock_pid(dev: int, ino: int) -> Optional[int]:
    """The pid /proc/locks gives for a flock on this inode (None if it names none)."""
    wanted = "{:02x}:{:02x}:{}".format(os.major(dev), os.minor(dev), ino)
    try:
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have a "->".
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            try:
                return int(fields[4]) or None
            except ValueError:
                return None
    return None


def is_locked(path: str) -> bool:
    """True if some process holds a flock on ``path`` right now."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def mount_points() -> List[str]:
    """Every mount point of this mount namespace, as /proc/self/mountinfo lists them."""
    found: List[str] = []
    try:
        with open("/proc/self/mountinfo", "rb") as info:
            lines = info.read().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split(b" ")
        if len(fields) >= 5:
            found.append(os.fsdecode(_unescape_mountinfo(fields[4])))
    return found


def mounts_under(path: str) -> List[str]:
    """Mount points at or below ``path``, as /proc/self/mountinfo lists them."""
    top = os.path.realpath(path)
    return [point for point in mount_points()
            if point == top or point.startswith(top.rstrip("/") + "/")]


def _unescape_mountinfo(field: bytes) -> bytes:
    # The kernel writes space, tab, newline and backslash as \ooo octal escapes.
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out += field[i:i + 1]
            i += 1
    return bytes(out)


def remove_tree(path: str) -> None:
    """Delete ``path`` and everything below it; a missing path is not an error.

    Never follows a symlink and never enters another filesystem: a rootfs with a
    live bind mount inside raises BusyError instead of deleting the mounted data.
    Directories without write permission are opened up first, so non-root owners
    can remove trees unpacked from images with 0555 directories.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    mounted = mounts_under(path)
    if mounted:
        raise BusyError("{} has mounts under it ({}); stop what uses it first".format(
            path, ", ".join(mounted[:3])), {"mounts": mounted})
    parent, name = os.path.split(os.path.abspath(path))
    parent_fd = os.open(parent, _DIR_FLAGS)
    try:
        _remove_dir_at(parent_fd, name, st.st_dev)
    finally:
        os.close(parent_fd)


def _remove_dir_at(parent_fd: int, name: str, device: int) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        if st.st_dev != device:
            raise BusyError("refusing to delete across a mount point at {}".format(name),
                            {"mounts": [name]})
        if st.st_mode & 0o700 != 0o700 and os.geteuid() != 0:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
        for child in os.listdir(fd):
            child_st = os.lstat(child, dir_fd=fd)
            if stat.S_ISDIR(child_st.st_mode):
                _remove_dir_at(fd, child, device)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


_libc: Optional[Any] = None  # a ctypes.CDLL, imported only when first needed


def sync_filesystem(path: str) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (syncfs, else sync)."""
    global _libc
    if _libc is None:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc symbols
    fd = os.open(path, _DIR_FLAGS)
    try:
        syncfs = getattr(_libc, "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            # Kernels before 2.6.39 (some OpenVZ guests) have no syncfs.
            os.sync()
    finally:
        os.close(fd)
