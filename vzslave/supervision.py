"""What runs the containers' inittab entries on this node, and our entries in its file.

PID 1 when it honours /etc/inittab (sysvinit, BusyBox init); else the vz supervisor
(vzslave/supervisor.py, started from initscripts/), which runs ROOT/containers/inittab
and reloads on SIGHUP. ``Entries`` finds, adds and removes our lines in that file (under
its lock, vzslave/inittab.py) and tells init, never losing a reload: a mark on disk,
ROOT/containers/.reload-pending, covers the gap between the write and the reload.
"""

import contextlib
import os
import signal
import time
from typing import Callable, Dict, Iterator, NamedTuple, Optional

from vzslave import fs, procs
from vzslave.config import Layout
from vzslave.errors import InittabError
from vzslave.facts import detect_init
from vzslave.inittab import (
    Dialect,
    Entry,
    InittabFile,
    add_entry,
    dialect_for,
    parse,
    reload_init,
    remove_entry,
    restore_entry,
)

SUPERVISOR_PID = "supervisor.pid"  # in ROOT/containers: the fallback supervisor's pid
RELOAD_PENDING = ".reload-pending"  # in ROOT/containers: the inittab was written, init
# may not have reloaded it yet (a vzslave killed in between): the next one reloads
TEST_PAUSE = ".test-pause-after-inittab-write"  # test seam: seconds to sleep in that gap


class Supervision(NamedTuple):
    """What keeps the inittab entries running on this node, and how to tell it."""

    name: str  # "sysvinit", "busybox" or "vz-supervisor"
    inittab: str  # the file holding the entries
    dialect: Dialect
    reload: Callable[[], None]


def detect_supervision(layout: Layout, inittab: str = "/etc/inittab") -> Supervision:
    """PID 1 when it honours inittab; else the fallback supervisor (initscripts/)."""
    init = detect_init()
    if init in ("sysvinit", "busybox"):
        dialect = dialect_for(init)
        return Supervision(init, inittab, dialect, lambda: reload_init(dialect))
    pid = _supervisor_pid(layout)
    if pid is None:
        raise InittabError(
            "PID 1 of this node is {}, which does not run /etc/inittab entries, and the vz "
            "supervisor is not running. Install and start it from vz's initscripts/ "
            "(see initscripts/README.md), then retry".format(init))

    def reload() -> None:
        os.kill(pid, signal.SIGHUP)

    return Supervision("vz-supervisor", os.path.join(layout.containers, "inittab"),
                       Dialect.SYSV, reload)


def _supervisor_pid(layout: Layout) -> Optional[int]:
    try:
        with open(os.path.join(layout.containers, SUPERVISOR_PID)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if procs.is_alive(pid) else None


def is_active(entry: Optional[Entry]) -> bool:
    """True for an entry init runs: there, not commented out, its action respawn."""
    return entry is not None and entry.state == "active"


class Entries:
    """Our entries (``LAUNCHER NAME``) in the inittab of this node's supervision."""

    def __init__(self, layout: Layout,
                 detect: Optional[Callable[[], Supervision]] = None) -> None:
        self.layout = layout
        self._detect = detect or (lambda: detect_supervision(layout))
        self._supervision: Optional[Supervision] = None

    @property
    def supervision(self) -> Supervision:
        """How this node runs inittab entries (detected once per session); InittabError."""
        if self._supervision is None:
            self._supervision = self._detect()
        return self._supervision

    @property
    def supervisor_name(self) -> str:
        """The supervision's name for status; "none" where nothing runs the entries."""
        try:
            return self.supervision.name
        except InittabError:
            return "none"

    def read(self) -> str:
        """The inittab's text; "" where nothing runs the entries."""
        try:
            path = self.supervision.inittab
        except InittabError:
            return ""
        return InittabFile(path).read()

    def by_name(self, text: str) -> Dict[str, Entry]:
        """Our entries in ``text``, by container name."""
        return {entry.name: entry for entry in parse(text, self.layout.launcher)}

    def find(self, text: str, name: str) -> Optional[Entry]:
        """Container ``name``'s entry in ``text``, in any state; None if it has none."""
        for entry in parse(text, self.layout.launcher):
            if entry.name == name:
                return entry
        return None

    @contextlib.contextmanager
    def locked(self) -> Iterator[InittabFile]:
        """The inittab, locked against other writers (vzslave sessions, the admin's tools)."""
        with InittabFile(self.supervision.inittab).locked() as tab:
            yield tab

    def put(self, tab: InittabFile, text: str, name: str, entry_id: str,
            exists: bool) -> None:
        """Add the entry of ``name`` to ``text``, or restore it where it ``exists``
        (commented out or off), write the file and reload init (``tab`` locked)."""
        sup = self.supervision
        if exists:
            text = restore_entry(text, sup.dialect, self.layout.launcher, name, entry_id)
        else:
            text = add_entry(text, sup.dialect, self.layout.launcher, name, entry_id)
        self.apply(tab, text)

    def remove(self, tab: InittabFile, text: str, name: str) -> None:
        """Remove the entry of ``name`` from ``text``, write it and reload init."""
        self.apply(tab, remove_entry(text, self.layout.launcher, name))

    def apply(self, tab: InittabFile, text: str) -> None:
        """Write the inittab and have init reload it (the inittab's lock held).

        A mark on disk covers the gap: a vzslave killed after the write but before the
        reload leaves it, and the next session reloads init (``reload_if_pending``).
        """
        fs.atomic_write(self._pending_path, b"", 0o600)
        tab.write(text)
        pause = _seconds_in(os.path.join(self.layout.containers, TEST_PAUSE))
        if pause:
            time.sleep(pause)
        self.supervision.reload()
        fs.unlink_quietly(self._pending_path)

    def nudge(self) -> None:
        """Before vz makes init respawn an entry: sysvinit re-reads the (unchanged)
        inittab and forgets its respawn counts (``fail_cancel``), so back-to-back
        deploys never trip its limit. Nothing elsewhere: BusyBox init has no limit, and
        a SIGHUP would only put it into its 1 s sleep before it reaps the old instance
        (a switch then waited two sleeps, not one)."""
        if self.supervision.name != "sysvinit":
            return
        with self.locked():
            self.supervision.reload()

    @property
    def _pending_path(self) -> str:
        return os.path.join(self.layout.containers, RELOAD_PENDING)

    def reload_if_pending(self) -> None:
        """Reload init if a killed session wrote the inittab and did not reload it."""
        if not os.path.exists(self._pending_path):
            return
        try:
            tab = InittabFile(self.supervision.inittab)
        except InittabError:
            return  # nothing runs the entries now; the mark waits for what will
        with tab.locked():
            if os.path.exists(self._pending_path):
                self.supervision.reload()
                fs.unlink_quietly(self._pending_path)


def _seconds_in(path: str) -> float:
    """The number of seconds a test wrote into ``path``; 0 without one."""
    try:
        with open(path, "rb") as source:
            seconds = float(source.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0
    return min(seconds, 600.0) if seconds > 0 else 0.0  # NaN is not > 0
