"""The runner's leaf: what a spawn needs besides the runner itself and vzslave/linux.py.

init execs the runner at every respawn, and every module it imports costs it ~0.1 ms
of a ~10 ms spawn (bench/runner.py; the interpreter alone is ~8 ms): so one module,
importing only ``os``, holds what every spawn uses and what the rest of vzslave shares
with the runner without importing it (mounts, runch, logs, inittab, procs, states,
containers):

    RunnerError, os_message     a failed step, and an OSError as a line of text
    read_stripped, write_all    small reads, whole writes
    the run record              ROOT/containers/NAME/run, with its states (RunState)
    the boot marker             ROOT/containers/NAME/mounts
    start_time                  a pid's start time, which tells it from a reuse

The run record is ``key value`` lines, one per key of RUN_KEYS, that the runner and its
monitor write at every spawn and vzslave reads for ``status`` and ``stop``: written by
path, atomically (no fsync: it is rewritten at every spawn), or, once the runner has
entered the rootfs, rewritten in place through an fd it opened before.

The boot marker holds the boot id under which vzslave prepared a container's mounts in
the node's mount namespace: a spawn that finds this boot's id there mounts nothing;
after a reboot the runner mounts again and marks anew.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional

BOOT_ID = "/proc/sys/kernel/random/boot_id"
MARKER = "mounts"  # in the container's state directory
RUN_KEYS = ("pid", "ticks", "state", "started", "next_start", "streak", "spawns",
            "last_run", "last_exit", "last_error", "supervisor", "recent",
            "generation")  # the plan's (plans.make_plan): a switch's first spawn starts afresh


class RunState(object):
    """The ``state`` of a run record: where the current spawn is (see vzslave/states.py)."""

    WAITING = "waiting"  # the runner sleeps its backoff delay (``next_start``)
    RUNNING = "running"  # the runner set up, or the app runs (``pid``, ``ticks``)
    FAILED = "failed"  # a step failed (``last_error``); the runner exited 127
    EXITED = "exited"  # the monitor saw the app end (``last_exit``, ``last_run``)
    ALL = (WAITING, RUNNING, FAILED, EXITED)


class RunnerError(Exception):
    """A step of the runner failed; ``step`` names it, ``message`` says why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__("{}: {}".format(step, message))
        self.step = step
        self.message = message


def os_message(exc: OSError) -> str:
    """An OSError as a line for a log or a run record: its text and the file it names."""
    return "{}{}".format(exc.strerror or exc, " ({})".format(exc.filename)
                         if exc.filename else "")


def read_stripped(path: str) -> bytes:
    """The bytes of the small file at ``path``, blanks around them stripped; b"" if unreadable."""
    try:
        with open(path, "rb") as source:
            return source.read().strip()
    except OSError:
        return b""


def write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` to ``fd`` (os.write may write less); its length. OSError."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def read_to_end(fd: int) -> bytes:
    """Everything left to read on ``fd`` (a pipe a child reports through), to EOF."""
    chunks: "List[bytes]" = []
    while True:
        data = os.read(fd, 4096)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def write_quietly(fd: int, data: bytes) -> None:
    """write_all for diagnostics, best effort: a failed write has nowhere left to go."""
    try:
        write_all(fd, data)
    except OSError:
        pass


# -- the run record ----------------------------------------------------------------------

def read_run_record(path: str) -> "Dict[str, str]":
    """The run record at ``path`` as a dict of strings; {} if there is none."""
    try:
        with open(path, "rb") as source:
            text = source.read().decode("utf-8", "replace")
    except OSError:
        return {}
    record = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            record[key] = value
    return record


def render_run_record(record: "Mapping[str, str]") -> bytes:
    """The text of a run record: one ``key value`` line per key of RUN_KEYS."""
    return "".join("{} {}\n".format(key, str(record.get(key, "")).replace("\n", " "))
                   for key in RUN_KEYS).encode("utf-8", "replace")


def write_run_record(path: str, record: "Mapping[str, str]") -> None:
    """Replace the run record at ``path`` atomically (no fsync: it is rewritten often)."""
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, ".{}.{}".format(base, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_quietly(fd, render_run_record(record))
    finally:
        os.close(fd)
    os.rename(tmp, path)


def store_run_record(path: str, record: "Mapping[str, str]", fd: int = -1) -> bool:
    """Write ``record``: by ``path``, or through ``fd`` when the runner holds one (in the
    rootfs or after setuid the state directory is out of reach); False if it failed."""
    try:
        if fd < 0:
            write_run_record(path, record)
        else:
            data = render_run_record(record)
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        return True
    except OSError:
        return False


def record_number(record: "Mapping[str, str]", key: str) -> int:
    """The whole number under ``key`` (pid, spawns, streak); 0 if absent or garbled."""
    try:
        return int(record.get(key) or 0)
    except ValueError:
        return 0


# -- the boot marker ---------------------------------------------------------------------

def boot_marked(state_dir: str) -> bool:
    """True if the marker in ``state_dir`` names this boot (an unreadable id never does)."""
    boot = read_stripped(BOOT_ID)
    return bool(boot) and read_stripped(os.path.join(state_dir, MARKER)) == boot


def mark_boot(state_dir: str) -> None:
    """Write this boot's id into the marker of ``state_dir``, replacing it in one rename."""
    path = os.path.join(state_dir, MARKER)
    with open(path + ".tmp", "wb") as out:
        out.write(read_stripped(BOOT_ID) + b"\n")
    os.rename(path + ".tmp", path)


def unmark_boot(state_dir: str) -> None:
    """Remove the marker of ``state_dir``: the next spawn mounts (none is no error)."""
    try:
        os.unlink(os.path.join(state_dir, MARKER))
    except FileNotFoundError:
        pass


# -- /proc/PID/stat ----------------------------------------------------------------------

def stat_fields(pid: int) -> "List[bytes]":
    """The fields of /proc/PID/stat after the command name; [] if the pid is gone."""
    try:
        with open("/proc/{}/stat".format(pid), "rb") as source:
            stat = source.read()
    except OSError:  # the process exited meanwhile, or it is not ours to read
        return []
    # The command name may hold spaces and parentheses: fields start after the last ")".
    return stat[stat.rfind(b")") + 2:].split()


def start_time(pid: int) -> "Optional[int]":
    """When ``pid`` started, in clock ticks since boot: tells a pid from its reuse.

    None if the pid is gone or a zombie (it has ended; only its parent's wait is due).
    """
    fields = stat_fields(pid)
    if len(fields) <= 19 or fields[0] == b"Z":
        return None
    return int(fields[19])
