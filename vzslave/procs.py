"""The processes of a container, found through /proc, and how they are ended.

A process belongs to a container when its root directory is the container's rootfs or
lies below it. The runner enters the rootfs with pivot_root in a private mount
namespace and detaches the old root, so no process of the container can climb out of
it (chroot in chroot, ``..`` through /proc, setsid and double forks change nothing),
and the root is found by identity, not by name: ``stat`` of /proc/PID/root gives the
directory's device and inode whatever mount namespace the process is in (its
``readlink`` says only "/" once the process has pivoted). A process chrooted deeper
inside the container is found by walking up from its root with ``..``, which stops at
the top of the mount namespace the process sees.

Besides, ``stop`` ends the container's process groups and a runner that init has
spawned but that has not entered the rootfs yet (its command line names the launcher
and the container). Pids are kept with their start time and checked again right before
each signal, so a pid that was reused meanwhile is never signalled.

The monitor imports this module to end what an app left behind, and the runner after an
instance no monitor saw end, so it imports only ``os`` and the runner's leaf at run time.
The start time of a pid is read there (vzslave/runio.py: ``start_time``, also this
module's): every spawn records its own, and need not load this module for it.
"""

import os
import time

from vzslave.runio import start_time as start_time  # this module's too (see above)
from vzslave.runio import stat_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple
    Key = Tuple[int, int]  # (st_dev, st_ino) of a directory
    Found = Dict[int, int]  # pid -> its start time, in clock ticks since boot
    Finder = Callable[[], Found]
    import signal as _signal
else:
    import _signal  # builtin and already loaded; "signal" would import enum

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
LEFTOVER_GRACE = 1.0  # seconds between TERM and KILL for what an ended instance left
_MAX_DEPTH = 4096  # ".." steps from a process's root before the walk gives up


def _read(path: str) -> "Optional[bytes]":
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process exited meanwhile, or it is not ours to read
        return None


def process_group(pid: int) -> "Optional[int]":
    """The process group of ``pid``, or None if it is gone."""
    fields = stat_fields(pid)
    return int(fields[2]) if len(fields) > 2 else None


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    return start_time(pid) is not None


def same_process(pid: int, ticks: "Optional[str]") -> bool:
    """True if ``pid`` runs and started at ``ticks`` (its start time as a record keeps it,
    as text): not a pid reused since. None accepts any start time (an older record)."""
    started = start_time(pid)
    return started is not None and (ticks is None or ticks == str(started))


def key_of(path: str) -> "Key":
    """The identity of the directory at ``path``: (device, inode)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def root_is_inside(pid: int, rootfs: "Key", host: "Key") -> bool:
    """True if the root directory of ``pid`` is ``rootfs`` or lies below it."""
    path = "/proc/{}/root".format(pid)
    try:
        st = os.stat(path)
    except OSError:  # gone, or a kernel thread
        return False
    here = st.st_dev, st.st_ino
    if here == rootfs:
        return True
    if here == host:
        return False  # the common case: a process of the node itself
    # Chrooted somewhere: inside the container only if the rootfs is above. ".." never
    # leaves the process's mount namespace, so a pivoted container's walk stops at its
    # own root; a walk from the node's side reaches the node's root.
    try:
        fd = os.open(path, _DIR)
    except OSError:
        return False
    try:
        for _ in range(_MAX_DEPTH):
            parent = os.open("..", _DIR, dir_fd=fd)
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            above = st.st_dev, st.st_ino
            if above == rootfs:
                return True
            if above == here or above == host:
                return False
            here = above
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


def container_processes(rootfs: str, groups: "Iterable[int]" = (),
                        command: "Optional[bytes]" = None) -> "Found":
    """The live processes whose root is ``rootfs`` or below it, those in one of
    ``groups``, and those whose command line contains ``command`` (NUL-separated argv
    bytes); init and the caller are never among them. Maps each pid to its start time.
    """
    try:
        inside = key_of(rootfs)
    except OSError:
        inside = (-1, -1)  # the rootfs is gone: only groups and the command can match
    host = key_of("/")
    wanted_groups = {g for g in groups if g > 1}
    me = os.getpid()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in (1, me):
            continue
        if not (root_is_inside(pid, inside, host)
                or (wanted_groups and process_group(pid) in wanted_groups)
                or (command is not None and command in (
                    _read("/proc/{}/cmdline".format(pid)) or b""))):
            continue
        started = start_time(pid)
        if started is not None:
            found[pid] = started
    return found


def boot_ticks(when: "Optional[float]" = None) -> int:
    """Now (or unix time ``when``) in the unit of ``start_time``: clock ticks since boot."""
    with open("/proc/uptime", "rb") as uptime:
        seconds = float(uptime.read().split()[0])
    if when is not None:
        seconds -= time.time() - when
    return int(seconds * os.sysconf("SC_CLK_TCK"))


def started_before(command: bytes, ticks: int) -> "Found":
    """The live processes whose command line holds ``command`` that started before
    ``ticks`` (``boot_ticks``); init and the caller are never among them."""
    me = os.getpid()
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, me) and command in (
                _read("/proc/{}/cmdline".format(entry)) or b""):
            started = start_time(int(entry))
            if started is not None and started < ticks:
                found[int(entry)] = started
    return found


def signal_all(found: "Found", signum: int) -> None:
    """Send ``signum`` to each pid that is still the process found (not a reused pid)."""
    for pid, started in found.items():
        if start_time(pid) != started:
            continue  # gone, a zombie, or the pid now names another process
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def end_processes(find: "Finder", grace: float, kill_wait: float = 5.0,
                  poll: float = 0.05) -> "List[int]":
    """TERM what ``find`` returns, KILL what is left after ``grace`` seconds.

    ``find`` is asked again on every poll, so processes that appear meanwhile (a
    respawn racing the reload of init) are ended too. Stopped processes are continued,
    so that they can act on the TERM. Returns the pids still alive ``kill_wait`` seconds
    after the KILL (stuck in the kernel: D state).
    """
    deadline = time.monotonic() + grace
    told: "Set[int]" = set()  # a second TERM means "hurry" to some apps: one each
    found = find()
    while found and time.monotonic() < deadline:
        new = {pid: started for pid, started in found.items() if pid not in told}
        signal_all(new, _signal.SIGTERM)
        signal_all(new, _signal.SIGCONT)
        told.update(new)
        time.sleep(poll)
        found = find()
    deadline = time.monotonic() + kill_wait
    while found and time.monotonic() < deadline:
        signal_all(found, _signal.SIGKILL)
        time.sleep(poll)
        found = find()
    return sorted(found)


def end_container(rootfs: str, runner: int, ticks: "Optional[str]", command: bytes,
                  grace: float) -> "List[int]":
    """End a container's processes as ``stop`` does: those whose root is ``rootfs`` or
    below, the process group of its ``runner`` pid (if still the process started at
    ``ticks``), and those whose command line holds ``command``; the pids that survive
    SIGKILL (see end_processes)."""
    group = process_group(runner) if runner and same_process(runner, ticks) else None
    groups = [group] if group else []
    return end_processes(lambda: container_processes(rootfs, groups, command), grace)


def freeze(found: "Found") -> None:
    """SIGSTOP each process: it runs no more (and writes no more) until it is ended."""
    signal_all(found, _signal.SIGSTOP)
