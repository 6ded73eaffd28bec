"""The vz supervisor: sysvinit's respawn semantics for nodes whose PID 1 ignores inittab.

On systemd or upstart nodes ``vzslave.supervision.detect_supervision`` writes the
entries to ROOT/containers/inittab and sends SIGHUP to the pid in
ROOT/containers/supervisor.pid. This daemon (started by one of initscripts/) runs
the ``respawn`` entries of that file as sysvinit would: each in its own session
with stdio on /dev/null; respawned when it exits (after 1 s if it lived less, a
floor against a spin; the runner paces crash loops itself); on SIGHUP a removed
entry, or one whose action changed, gets SIGTERM to its process group and SIGKILL
3 s later, a changed command starts when the old process exits, a new entry
starts at once. SIGTERM or SIGINT stops every entry the same way, then exits 0.

python-daemon is needed only to detach (not with ``--foreground``), so it is
imported inside ``main``: ``import vzslave.supervisor`` needs the standard library.
"""

import logging
import os
import select
import signal
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

from vzslave import fs
from vzslave.command import argument_parser, log_to_file
from vzslave.config import Layout
from vzslave.supervision import SUPERVISOR_PID
from vzslave.errors import BusyError, VzError
from vzslave.inittab import SHELL_CHARS

RESPAWN_FLOOR = 1.0  # seconds: an entry that lived less waits this long before respawning
WAIT_BETWEEN_SIGNALS = 3.0  # sysvinit's TERM-to-KILL delay for removed entries
DYING_POLL = 0.1  # seconds between checks that a TERMed group is empty
RUNLEVELS = "2345"  # we are "multi-user": an entry runs if its levels meet these
# What sysvinit gives its children at boot, not whatever our own starter had.
CHILD_ENV = {"PATH": "/sbin:/usr/sbin:/bin:/usr/bin", "SHELL": "/bin/sh"}

log = logging.getLogger("vzslave.supervisor")


class Entry(NamedTuple):
    """One enabled ``respawn`` line: its id and the argv it runs."""

    id: str
    argv: Tuple[str, ...]


def parse_entries(text: str) -> Dict[str, Entry]:
    """The respawn entries of a sysv inittab that run in levels 2-5, by id, in file order.

    As sysvinit: blanks before a line are skipped, ``#`` starts a comment line, the
    action is case-insensitive, an empty runlevels field means every level, the later
    of two lines with one id is ignored, ids over 4 characters are dropped, and ``#``
    ends the arguments. Unlike it, no process runs through /bin/sh: a process field
    holding shell characters is skipped (vz never writes one).
    """
    found: Dict[str, Entry] = {}
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        fields = line.split(":", 3)
        if len(fields) != 4 or not fields[0] or len(fields[0]) > 4 or fields[0] in found:
            continue
        entry_id, levels, action, process = fields
        if action.strip(" \t").lower() != "respawn":
            continue
        if levels and not set(levels) & set(RUNLEVELS):
            continue
        if set(process) & set(SHELL_CHARS):
            log.warning("line %d skipped: the vz supervisor runs no shell, and %r holds "
                        "shell characters", number, process)
            continue
        argv = tuple(process.split("#", 1)[0].split())
        if argv:
            found[entry_id] = Entry(entry_id, argv)
    return found


class Changes(NamedTuple):
    """What a reread asks for: ids to stop now, ids to start now."""

    stop: List[str]
    start: List[str]


def diff_entries(old: Dict[str, Entry], new: Dict[str, Entry],
                 running: List[str]) -> Changes:
    """Removed running entries stop; new ones start; a changed command waits for its exit."""
    stop = [entry_id for entry_id in running if entry_id not in new]
    start = [entry_id for entry_id in new if entry_id not in old and entry_id not in running]
    return Changes(stop, start)


# -- the system-changing steps (small, so tests can fake them) ----------------------


def spawn(argv: Tuple[str, ...]) -> int:
    """Fork; the child: new session, stdio on /dev/null, no other fds, cwd /, exec argv."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir("/")
        for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        os.execvpe(argv[0], list(argv), CHILD_ENV)
    finally:
        os._exit(127)  # exec failed: never return into the supervisor's loop


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the process group ``pgid``; False if the group is empty."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


class Supervisor(object):
    """The respawn loop over one inittab file."""

    def __init__(self, inittab: str) -> None:
        self.inittab = inittab
        self.entries: Dict[str, Entry] = {}
        self.children: Dict[int, Tuple[str, float]] = {}  # pid -> (id, started)
        self.due: Dict[str, float] = {}  # id -> when to (re)spawn it
        self.dying: Dict[int, float] = {}  # process group -> when to KILL it
        self.stopping = False
        self._hup = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self._hup = True
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True

    def install_signals(self) -> None:
        """Route SIGCHLD/HUP/TERM/INT to flags, and wake the loop through a self-pipe."""
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def running_ids(self) -> List[str]:
        """Ids that have a live process of ours."""
        return [entry_id for entry_id, _ in self.children.values()]

    def reload(self) -> None:
        """Reread the file and apply the difference, as ``telinit q``."""
        try:
            with open(self.inittab, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            log.error("cannot read %s (%s); keeping the entries as they were",
                      self.inittab, exc)
            return
        new = parse_entries(text)
        changes = diff_entries(self.entries, new, self.running_ids())
        self.entries = new
        for entry_id in list(self.due):
            if entry_id not in new:
                del self.due[entry_id]
        for pid, (entry_id, _) in list(self.children.items()):
            if entry_id in changes.stop:
                log.info("entry %s removed: stopping pid %d", entry_id, pid)
                self.terminate(pid)
        now = time.monotonic()
        for entry_id in changes.start:
            self.due[entry_id] = now

    def terminate(self, pid: int) -> None:
        """TERM the group of ``pid`` (a session leader of ours); KILL it in 3 s."""
        entry_id, started = self.children.pop(pid)
        self.children[pid] = ("", started)  # still ours to reap, but no entry's
        signal_group(pid, signal.SIGTERM)
        self.dying[pid] = time.monotonic() + WAIT_BETWEEN_SIGNALS

    def stop_all(self) -> None:
        """Stop every entry (as at shutdown) and respawn nothing more."""
        self.entries = {}
        self.due = {}
        for pid, (entry_id, _) in list(self.children.items()):
            if entry_id:
                log.info("stopping %s (pid %d)", entry_id, pid)
                self.terminate(pid)

    def start_due(self, now: float) -> None:
        """Spawn every entry whose time has come."""
        for entry_id, when in list(self.due.items()):
            if when <= now:
                del self.due[entry_id]
                argv = self.entries[entry_id].argv
                try:
                    pid = spawn(argv)
                except OSError as exc:  # fork failed (EAGAIN, ENOMEM): try again later
                    log.error("cannot start %s: %s", entry_id, exc)
                    self.due[entry_id] = now + RESPAWN_FLOOR
                    continue
                self.children[pid] = (entry_id, now)
                log.info("started %s: pid %d: %s", entry_id, pid, " ".join(argv))

    def reap(self, now: float) -> None:
        """Collect exited children; schedule the respawn of those still wanted."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry_id, started = self.children.pop(pid, ("", now))
            if not entry_id:
                continue
            log.info("%s (pid %d) exited with status %d", entry_id, pid, status)
            if entry_id in self.entries and not self.stopping:
                lived = now - started
                self.due[entry_id] = now if lived >= RESPAWN_FLOOR else now + RESPAWN_FLOOR

    def kill_overdue(self, now: float) -> None:
        """KILL the groups still alive 3 s after their TERM; forget the empty ones."""
        for pgid, deadline in list(self.dying.items()):
            if not signal_group(pgid, 0):
                del self.dying[pgid]
            elif deadline <= now:
                log.info("process group %d outlived SIGTERM: SIGKILL", pgid)
                signal_group(pgid, signal.SIGKILL)
                del self.dying[pgid]

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT has stopped every entry (install_signals first)."""
        self.reload()
        stopped = False
        while True:
            now = time.monotonic()
            if self.stopping and not stopped:
                self.stop_all()
                stopped = True
            elif self._hup and not self.stopping:
                self._hup = False
                self.reload()
            self.reap(now)
            self.kill_overdue(now)
            if stopped and not self.children and not self.dying:
                return
            self.start_due(now)
            deadlines = list(self.due.values()) + list(self.dying.values())
            if self.dying:
                # A TERMed group's other members are not our children: no SIGCHLD says
                # when they are gone, so look again soon (as sysvinit does, every 10 ms).
                deadlines.append(now + DYING_POLL)
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            select.select([self._wake_r], [], [], timeout)
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass


# -- the command --------------------------------------------------------------------


def _remove_pid_file(path: str) -> None:
    try:
        with open(path) as f:
            mine = f.read().strip() == str(os.getpid())
        if mine:
            os.unlink(path)
    except OSError:
        pass


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: ``python3 -m vzslave.supervisor [--root ROOT] [--foreground]``."""
    parser = argument_parser("vz-supervisor", "Run the respawn entries of ROOT/containers/"
                             "inittab as sysvinit would (for nodes whose PID 1 ignores "
                             "/etc/inittab).")
    parser.add_argument("--foreground", action="store_true",
                        help="stay attached (systemd Type=simple, upstart)")
    args = parser.parse_args(argv)
    context = None
    if not args.foreground:
        try:
            import daemon  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            sys.exit("vz-supervisor: python-daemon is not installed, so it cannot detach. "
                     "Run 'pip install python-daemon' (or install vz with the [supervisor] "
                     "extra), or run it with --foreground.")
    layout = Layout(os.path.abspath(args.root))
    try:
        layout.make_dirs()
    except OSError as exc:
        sys.exit("vz-supervisor: cannot create the state root {}: {}".format(layout.root, exc))
    pid_file = os.path.join(layout.containers, SUPERVISOR_PID)
    try:
        with fs.exclusive_lock(os.path.join(layout.locks, "supervisor"), "",
                               blocking=False) as lock:
            if not args.foreground:
                # The lock's open file survives the detaching forks, and so does the lock.
                context = daemon.DaemonContext(files_preserve=[lock], umask=0o022,
                                               signal_map={})
                context.open()
            log_to_file(log, os.path.join(layout.log_dir, "supervisor.log"), "vz-supervisor",
                        echo=args.foreground)
            supervisor = Supervisor(os.path.join(layout.containers, "inittab"))
            # Handlers first: a SIGHUP sent as soon as the pid file exists must not kill us.
            supervisor.install_signals()
            fs.atomic_write(pid_file, "{}\n".format(os.getpid()).encode())
            log.info("started: pid %d, inittab %s", os.getpid(), supervisor.inittab)
            try:
                supervisor.run()
            finally:
                _remove_pid_file(pid_file)
            log.info("every entry stopped: exiting")
    except BusyError:
        sys.exit("vz-supervisor: another supervisor already runs on {} (its pid is in {}); "
                 "stop it first".format(layout.root, pid_file))
    except VzError as exc:
        sys.exit("vz-supervisor: {}".format(exc))


if __name__ == "__main__":
    main()
