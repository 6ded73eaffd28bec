"""The processes of a container, found through /proc, and how they are ended.

A container's processes are those whose root directory is its rootfs (chroot
survives setsid and double forks), those in its process group (the runner makes
one with setsid), and a runner that init has spawned but that has not reached its
chroot yet (its command line names the launcher and the container).
"""

import os
import signal
import time
from typing import Callable, Iterable, List, Optional, Set

Finder = Callable[[], List[int]]


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process exited meanwhile, or it is not ours to read
        return None


def process_group(pid: int) -> Optional[int]:
    """The process group of ``pid``, or None if it is gone."""
    stat = _read("/proc/{}/stat".format(pid))
    if stat is None:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[2]) if len(fields) > 2 else None


def start_time(pid: int) -> Optional[int]:
    """When ``pid`` started, in clock ticks since boot: tells a pid from its reuse."""
    stat = _read("/proc/{}/stat".format(pid))
    if stat is None:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    stat = _read("/proc/{}/stat".format(pid))
    if stat is None:
        return False
    fields = stat[stat.rfind(b")") + 2:].split()
    return bool(fields) and fields[0] != b"Z"


def container_processes(rootfs: str, groups: Iterable[int] = (),
                        command: Optional[bytes] = None) -> List[int]:
    """Pids chrooted into ``rootfs``, in one of ``groups``, or whose command line
    contains ``command`` (NUL-separated argv bytes), excluding init and ourselves."""
    wanted_groups: Set[int] = {g for g in groups if g > 1}
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in (1, me):
            continue
        try:
            root = os.readlink("/proc/{}/root".format(pid))
        except OSError:
            root = None
        if root == rootfs or (root is not None and root.startswith(rootfs + "/")):
            found.append(pid)
            continue
        if wanted_groups and process_group(pid) in wanted_groups:
            found.append(pid)
            continue
        if command is not None:
            cmdline = _read("/proc/{}/cmdline".format(pid))
            if cmdline is not None and command in cmdline:
                found.append(pid)
    return [pid for pid in found if is_alive(pid)]


def signal_all(pids: Iterable[int], signum: int) -> None:
    """Send ``signum`` to each pid; ones that are already gone are no error."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def end_processes(find: Finder, grace: float, kill_wait: float = 5.0,
                  poll: float = 0.05) -> List[int]:
    """TERM what ``find`` returns, KILL what is left after ``grace`` seconds.

    ``find`` is asked again on every poll, so processes that appear meanwhile (a
    respawn racing the reload of init) are ended too. Returns the pids still alive
    ``kill_wait`` seconds after the KILL (stuck in the kernel: D state).
    """
    deadline = time.monotonic() + grace
    told: Set[int] = set()  # a second TERM means "hurry" to some apps: one each
    pids = find()
    while pids and time.monotonic() < deadline:
        signal_all([pid for pid in pids if pid not in told], signal.SIGTERM)
        told.update(pids)
        time.sleep(poll)
        pids = find()
    deadline = time.monotonic() + kill_wait
    while pids and time.monotonic() < deadline:
        signal_all(pids, signal.SIGKILL)
        time.sleep(poll)
        pids = find()
    return pids
