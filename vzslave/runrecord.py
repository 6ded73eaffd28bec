"""The run record, ROOT/containers/NAME/run: what the runner says of the current spawn.

``key value`` lines, one per key of RUN_KEYS, that the runner and its monitor write at
every spawn and vzslave reads for ``status`` and ``stop``. Its ``state`` is a RunState
(vzslave/states.py): waiting (backoff, ``next_start``), running (``pid``, ``ticks``: the
pid's start time, which tells it from a reuse), failed (``last_error``) or exited (the
monitor saw the app end: ``last_exit``, ``last_run``).

Written by path, atomically (no fsync: it is rewritten at every spawn); once the runner
has entered the rootfs, through an fd it opened before, rewritten in place. The runner
imports this module at every spawn: it imports only ``os`` and vzslave's leaves.
"""

import os

from vzslave.runio import write_quietly

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Mapping

RUN_KEYS = ("pid", "ticks", "state", "started", "next_start", "streak", "spawns",
            "last_run", "last_exit", "last_error", "supervisor", "recent")


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
