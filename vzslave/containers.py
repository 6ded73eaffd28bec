"""Containers: started, stopped and reported through the node's own init.

A started container is one ``respawn`` line in the inittab (``ROOT/bin/vzrun NAME``)
and a state directory, ROOT/containers/NAME/:

    settings.json   what was asked (wanted state, runtime, log limits), the entry id,
                    the bundle tree in use, and the flags of a start or stop under way
    plan.marshal    the exec plan the runner reads at every spawn (vzslave/oci.py)
    run             the runner's record of the current spawn (vzslave/runrecord.py)
    mounts          the boot id under which the plan's mounts were prepared (runio.py)

The inittab is the source of truth for "enabled": an entry the sysadmin commented
out or deleted while the container was wanted running is *disabled by the
administrator*, and only a start with ``override`` puts it back.

Every change takes the container's lock, then the inittab's. A start or stop marks
itself in settings.json before it touches the inittab and clears the mark at the
end, so a vzslave killed midway leaves a mark that the next request finishes
(``repair``).
"""

import errno
import json
import marshal
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set

from vzslave import fs, linux, logs, mounts, oci, procs, runner
from vzslave.bundles import BundleStore
from vzslave.config import Layout
from vzslave.errors import (
    BadRequestError,
    BusyError,
    DisabledByAdminError,
    DiskFullError,
    InittabError,
    NoRuntimeError,
    NoSuchBundleError,
    NoSuchContainerError,
    PolicyDeniedError,
)
from vzslave.facts import detect_init
from vzslave.inittab import (
    Dialect,
    InittabFile,
    add_entry,
    allocate_id,
    dialect_for,
    parse,
    reload_init,
    remove_entry,
    restore_entry,
    used_ids,
)
from vzslave.names import validate_name
from vzslave.policy import load_policy
from vzslave.records import ContainerStatus
from vzslave.runio import RunnerError, os_message
from vzslave.runrecord import read_run_record, record_number

RUNTIMES = ("builtin", "runc", "crun")
DEFAULT_GRACE = 10.0  # seconds between TERM and KILL at stop
START_WAIT = 10.0  # how long start waits for init to run the app (busybox: ~1-2 s)
MIN_UPTIME = 1.0  # how long the app must stay up before start says "running"
RELOAD_PENDING = ".reload-pending"  # in ROOT/containers: the inittab was written, init
# may not have reloaded it yet (a vzslave killed in between): the next one reloads
TEST_PAUSE = ".test-pause-after-inittab-write"  # test seam: seconds to sleep in that gap
DEFAULT_LOG_MAX = 10 * 1024 * 1024
DEFAULT_LOG_KEEP = 3
BACKOFF = {"initial": 1.0, "max": 60.0, "stable": 30.0}
SUPERVISOR_PID = "supervisor.pid"  # in ROOT/containers: the fallback supervisor's pid

MAX_RUNTIME_ARGS = 16


def check_runtime_args(args: List[str]) -> List[str]:
    """Global options for runc or crun (e.g. ``--cgroup-manager=disabled``).

    Only ``--name`` or ``--name=value``: a word that is not an option could turn
    ``runc run`` into another command, and the same options go before ``delete``.
    """
    if len(args) > MAX_RUNTIME_ARGS:
        raise BadRequestError("at most {} runtime_args, not {}".format(
            MAX_RUNTIME_ARGS, len(args)))
    for arg in args:
        if (not isinstance(arg, str) or not arg.startswith("--") or len(arg) < 3
                or len(arg) > 4096 or "\0" in arg):
            raise BadRequestError("runtime_args must be global options written as --name "
                                  "or --name=value, not {!r}".format(arg),
                                  {"field": "runtime_args"})
    return list(args)


_LAUNCHER = """#!{python} -IS
# Written by vzslave. init runs this for each container: {launcher} NAME
import sys
sys.path.insert(0, {path!r})
from vzslave.runner import main
main(sys.argv[1:], {root!r})
"""


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


class Containers:
    """The containers of one node."""

    def __init__(self, layout: Layout, bundles: BundleStore,
                 supervision: Optional[Callable[[], Supervision]] = None) -> None:
        self.layout = layout
        self.bundles = bundles
        self._detect = supervision or (lambda: detect_supervision(layout))
        self._supervision: Optional[Supervision] = None

    @property
    def supervision(self) -> Supervision:
        """How this node runs inittab entries (detected once per session)."""
        if self._supervision is None:
            self._supervision = self._detect()
        return self._supervision

    # -- the ops -------------------------------------------------------------

    def start(self, name: str, override: bool = False, runtime: Optional[str] = None,
              runtime_args: Optional[List[str]] = None, log_max: Optional[int] = None,
              log_keep: Optional[int] = None, syslog: Optional[bool] = None,
              monitor: Optional[bool] = None, wait: bool = True,
              min_uptime: float = MIN_UPTIME) -> ContainerStatus:
        """Have init run the container; with ``wait``, until the app has stayed up for
        ``min_uptime`` seconds, or crash-loops, or START_WAIT passes.

        Starting a running container only records the options given; ``restart``
        applies them and a newly unpacked bundle. Options not given keep their
        earlier values.
        """
        validate_name("container", name)
        bundle = self._bundle_tree(name)
        with self._lock(name):
            self._reload_if_pending()
            self._repair(name)
            settings = self._settings(name)
            if runtime_args is not None:
                settings["runtime_args"] = check_runtime_args(runtime_args)
            settings.update({k: v for k, v in (("runtime", runtime), ("log_max", log_max),
                                               ("log_keep", log_keep), ("syslog", syslog),
                                               ("monitor", monitor))
                             if v is not None})
            plan = self._plan(name, bundle, settings)
            sup = self.supervision
            tab = InittabFile(sup.inittab)
            with tab.locked():
                text = tab.read()
                entry = _entry(text, self.layout.launcher, name)
                if entry is not None and entry.state == "active":
                    # Already running: new options are kept, and take effect (with
                    # the bundle as it is then) at restart, which re-prepares mounts.
                    settings["wanted"] = "running"
                    self._save(name, settings)
                    already = True
                else:
                    already = False
                    if settings.get("wanted") == "running" and not override:
                        raise DisabledByAdminError(
                            "container {!r} was disabled by the node's administrator: its "
                            "{} entry is {}. Start it with override to put the entry "
                            "back".format(name, sup.inittab,
                                          "commented out" if entry else "deleted"),
                            {"entry": entry.line if entry else None})
                    settings.update(wanted="running", starting=True, tree=plan["bundle"],
                                    warnings=plan["warnings"])
                    settings["id"] = settings.get("id") or self._allocate_id(text, name)
                    self._save(name, settings)
                    self._write_plan(name, plan)
                    self._install_launcher()
                    fs.unlink_quietly(self._run_path(name))
                    mounts.prepare(plan)  # no-op for runc/crun and mount-namespace plans
                    self._apply(tab, _with_entry(text, sup.dialect, self.layout.launcher,
                                                 name, settings["id"], entry is not None))
            if not already:
                settings.pop("starting", None)
                self._save(name, settings)
        # Waited for without the lock: a stop may come meanwhile, and is not kept BUSY.
        return self._wait_running(name, min_uptime) if wait else self._status_of(name, None)

    def stop(self, name: str, grace: float = DEFAULT_GRACE) -> ContainerStatus:
        """Remove the entry, reload init, end every process, release every mount.

        Works on a full disk: should a write fail for space, the container's processes
        are frozen (they can fill no more) and the node's reserve is given back first.
        """
        validate_name("container", name)
        with self._lock(name):
            self._reload_if_pending()
            settings = self._settings(name, must_exist=True)
            settings.update(wanted="stopped", stopping=True)
            settings.pop("starting", None)
            self._with_space(name, lambda: self._save(name, settings))
            self._finish_stop(name, settings, grace)
            status = self._status_of(name, None)
        fs.keep_reserve(self.layout.reserve)
        return status

    def restart(self, name: str, grace: float = DEFAULT_GRACE,
                min_uptime: float = MIN_UPTIME) -> ContainerStatus:
        """Stop, then start with the same settings (and the bundle as it is now)."""
        self.stop(name, grace)
        return self.start(name, min_uptime=min_uptime)

    def status(self, name: Optional[str] = None) -> List[ContainerStatus]:
        """One container's status, or every container's, sorted by name."""
        names = [validate_name("container", name)] if name else fs.visible_names(
            self.layout.containers)
        self._reload_if_pending()
        text = self._read_inittab()
        entries = self._entries(text)
        found = []
        for each in names:
            settings = self._settings(each)
            if not settings and not os.path.isfile(self._settings_path(each)):
                if name:
                    raise NoSuchContainerError(_no_such(name))
                continue
            if self._repair_unlocked(each, settings):
                text = self._read_inittab()
                entries = self._entries(text)
                settings = self._settings(each)
            found.append(self._status_of(each, text, entries, settings))
        return found

    def forget(self, name: str) -> None:
        """Remove a stopped container's state and logs (its bundle is being removed)."""
        with self._lock(name):
            settings = self._settings(name)
            if settings.get("wanted") == "running" or settings.get("tree"):
                raise BusyError("container {!r} is started; stop it first".format(name))
            fs.remove_tree(self.layout.container_dir(name))
            for entry in os.listdir(self.layout.logs):
                if entry == name + ".log" or (entry.startswith(name + ".log.")
                                              and entry[len(name) + 5:].isdigit()):
                    fs.unlink_quietly(os.path.join(self.layout.logs, entry))

    def upkeep(self) -> None:
        """Per-session upkeep, cheap: a reload a killed session owed init, logs of running
        apps cut back to their limits, the disk reserve for stops on a full disk."""
        try:
            self._reload_if_pending()
        except (OSError, InittabError, BusyError):
            pass  # the next request for a container tries again, and says why
        self.trim_logs()
        fs.keep_reserve(self.layout.reserve)

    def _entries(self, text: str) -> Dict[str, Any]:
        """Our inittab entries in ``text``, by container name."""
        return {entry.name: entry for entry in parse(text, self.layout.launcher)}

    def log_path(self, name: str) -> str:
        """The current log file of a container."""
        return os.path.join(self.layout.logs, validate_name("container", name) + ".log")

    def log_limits(self, name: str) -> Dict[str, int]:
        """max_bytes and keep of a container's logs."""
        settings = self._settings(name)
        return {"max_bytes": int(settings.get("log_max", DEFAULT_LOG_MAX)),
                "keep": int(settings.get("log_keep", DEFAULT_LOG_KEEP))}

    def trim_logs(self) -> None:
        """Cut every container's log files, all generations, back to their limits.

        The runner rotates at every spawn and the monitor caps what it pumps; this bounds
        an app without a monitor that runs for long and writes much. Called at every
        session, so it must stay cheap: a stat per file, settings read only for a file
        past 1 MiB.
        """
        try:
            entries = list(os.scandir(self.layout.logs))
        except OSError:
            return
        big = set()
        for entry in entries:
            base, _, number = entry.name.rpartition(".")
            name = entry.name if not number.isdigit() else base  # NAME.log or NAME.log.N
            if not name.endswith(".log"):
                continue
            name = name[:-4]
            try:
                if entry.stat(follow_symlinks=False).st_size > min(DEFAULT_LOG_MAX, 1 << 20):
                    big.add(name)
            except OSError:
                continue
        for name in sorted(big):
            limits = self.log_limits(name)
            try:
                logs.enforce(os.path.join(self.layout.logs, name + ".log"),
                             limits["max_bytes"], limits["keep"])
            except OSError:
                pass  # a full disk: enforce has cut what it could

    def trees_in_use(self) -> Set[str]:
        """Bundle trees a started container runs from (never garbage)."""
        used = set()
        for name in fs.visible_names(self.layout.containers):
            tree = self._settings(name).get("tree")
            if tree:
                used.add(tree)
        return used

    # -- start and stop ------------------------------------------------------

    def _bundle_tree(self, name: str) -> str:
        try:
            return os.path.realpath(self.bundles.path(name))
        except OSError as exc:
            raise NoSuchBundleError(str(exc)) from exc

    def _plan(self, name: str, tree: str, settings: Dict[str, Any]) -> Dict[str, Any]:
        if not os.path.isdir(tree):
            raise NoSuchBundleError("no bundle named {!r} on this node: unpack an image "
                                    "into it first".format(name))
        config = oci.load_config(tree)
        policy = load_policy(self.layout.policy)
        policy.check_config(config, tree)  # first: a refusal names the policy's field
        plan = oci.build_plan(config, tree, name)
        mounts.check_bind_sources(plan)
        kind = settings.get("runtime", "builtin")
        if kind not in RUNTIMES:
            raise BadRequestError("runtime must be one of {}, not {!r}".format(
                ", ".join(RUNTIMES), kind))
        policy.check_start(kind, list(settings.get("runtime_args", [])))
        path = None
        if kind != "builtin":
            path = shutil.which(kind, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                           "/usr/bin:/sbin:/bin")
            if path is None:
                raise NoRuntimeError("container {!r} is set to run under {}, which is not "
                                     "installed on this node; install it or start with "
                                     "runtime builtin".format(name, kind))
        else:
            if not isinstance(config["process"].get("capabilities"), dict):
                _fit_default_capabilities(plan)
            self._choose_entry(plan, policy.chroot_fallback)
        plan.update(
            runtime=kind, runtime_path=path,
            runtime_args=list(settings.get("runtime_args", [])) if path else [],
            state_dir=self.layout.container_dir(name), store=self.layout.trees,
            log={"path": os.path.join(self.layout.logs, name + ".log"),
                 "max_bytes": int(settings.get("log_max", DEFAULT_LOG_MAX)),
                 "keep": int(settings.get("log_keep", DEFAULT_LOG_KEEP)),
                 "syslog": bool(settings.get("syslog", False))},
            backoff=dict(BACKOFF),
            # A monitor of ours stays as the app's parent: a hard cap on the log (it
            # pumps the output), exit codes in status, orphans ended when the app ends.
            # On by default (DEVELOPERS.md, "A monitor beside each app"); off, nothing of ours
            # stays beside the app, and only sessions cut its log back.
            monitor=bool(settings.get("monitor", True)))
        return plan

    @staticmethod
    def _choose_entry(plan: Dict[str, Any], fallback: bool) -> None:
        """pivot_root where the node can; else chroot (warned, without CAP_SYS_CHROOT)."""
        why = probe_pivot_root(plan["rootfs"])
        if why is None:
            return
        if not fallback:
            raise PolicyDeniedError(
                "this node cannot enter containers with pivot_root ({}), and its policy "
                "forbids the chroot fallback".format(why),
                {"field": None, "policy": "chroot_fallback"})
        plan["enter"] = "chroot"
        # chroot() again is how a root app leaves a chroot: take the means away.
        chroot_cap = oci.CAPABILITIES["CAP_SYS_CHROOT"]
        for numbers in plan["process"]["capabilities"].values():
            if chroot_cap in numbers:
                numbers.remove(chroot_cap)
        plan["warnings"].append(
            "this node cannot pivot_root into the rootfs ({}): the app runs in a plain "
            "chroot, without CAP_SYS_CHROOT (docs/security.md)".format(why))

    def _write_plan(self, name: str, plan: Dict[str, Any]) -> None:
        fs.atomic_write(os.path.join(self.layout.container_dir(name), "plan.marshal"),
                        marshal.dumps(plan), 0o600)

    def _install_launcher(self) -> None:
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        text = _LAUNCHER.format(python=sys.executable, launcher=self.layout.launcher,
                                path=package_parent, root=self.layout.root).encode()
        if len(text.split(b"\n", 1)[0]) > 127:
            raise InittabError("the Python interpreter's path {} is too long for a #! line "
                               "(127 bytes on older kernels)".format(sys.executable))
        try:
            with open(self.layout.launcher, "rb") as current:
                if current.read() == text:
                    return
        except OSError:
            pass
        fs.atomic_write(self.layout.launcher, text, 0o755)

    def _allocate_id(self, text: str, name: str) -> str:
        avoid = set()
        for other in fs.visible_names(self.layout.containers):
            if other != name:
                entry_id = self._settings(other).get("id")
                if entry_id:
                    avoid.add(entry_id)
        return allocate_id(used_ids(text), avoid)

    def _wait_running(self, name: str, min_uptime: float) -> ContainerStatus:
        """The status once the app has run for ``min_uptime`` or crash-loops (or time is
        up): "running" must mean that it stays up, not that it was exec'd."""
        deadline = time.monotonic() + START_WAIT + min_uptime
        while True:
            status = self._status_of(name, None)
            settled = (status.state == "running" and (status.uptime or 0.0) >= min_uptime
                       or status.state not in ("running", "starting", "restarting"))
            if settled or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    def _apply(self, tab: InittabFile, text: str) -> None:
        """Write the inittab and have init reload it (the inittab's lock held).

        A mark on disk covers the gap: a vzslave killed after the write but before the
        reload leaves it, and the next session reloads init (``_reload_if_pending``).
        """
        fs.atomic_write(self._pending_path, b"", 0o600)
        tab.write(text)
        pause = _seconds_in(os.path.join(self.layout.containers, TEST_PAUSE))
        if pause:
            time.sleep(pause)
        self.supervision.reload()
        fs.unlink_quietly(self._pending_path)

    @property
    def _pending_path(self) -> str:
        return os.path.join(self.layout.containers, RELOAD_PENDING)

    def _reload_if_pending(self) -> None:
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

    def _with_space(self, name: str, write: Callable[[], None]) -> None:
        """Do ``write``; if the disk is full, freeze the container (it may be what fills
        it), give the node's reserve back, and try once more."""
        try:
            write()
            return
        except (OSError, DiskFullError) as exc:
            number = exc.errno if isinstance(exc, OSError) else exc.details.get("errno")
            if number not in (errno.ENOSPC, errno.EDQUOT):
                raise
        plan = self._load_plan(name)
        if plan is not None:
            procs.freeze(procs.container_processes(plan["rootfs"]))
        fs.release_reserve(self.layout.reserve)
        write()

    def _finish_stop(self, name: str, settings: Dict[str, Any], grace: float) -> None:
        sup = self.supervision
        tab = InittabFile(sup.inittab)
        with tab.locked():
            text = tab.read()
            if _entry(text, self.layout.launcher, name) is not None:
                self._with_space(name, lambda: self._apply(
                    tab, remove_entry(text, self.layout.launcher, name)))
        plan = self._load_plan(name)
        if plan is not None:
            self._end_processes(name, plan, grace)
            if plan["runtime"] != "builtin" and plan.get("runtime_path"):
                subprocess.run(runner.runtime_command(plan, "delete", "--force", "vz-" + name),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30, check=False)
            stuck = mounts.release(plan)
            if stuck:
                raise BusyError("container {!r} is stopped, but these mounts could not be "
                                "released: {}".format(name, ", ".join(stuck)),
                                {"mounts": stuck})
        for key in ("stopping", "id", "tree"):
            settings.pop(key, None)
        self._with_space(name, lambda: self._save(name, settings))
        self.bundles.collect_garbage(name)

    def _end_processes(self, name: str, plan: Dict[str, Any], grace: float) -> None:
        record = read_run_record(self._run_path(name))
        # A runner spawned by init but not yet in its rootfs: "vzrun\0NAME\0".
        command = "{}\0{}\0".format(self.layout.launcher, name).encode()
        survivors = procs.end_container(plan["rootfs"], record_number(record, "pid"),
                                        record.get("ticks"), command, grace)
        if survivors:
            raise BusyError("container {!r}: processes {} survive SIGKILL (stuck in the "
                            "kernel?); stop it again later".format(name, survivors),
                            {"pids": survivors})

    # -- repair --------------------------------------------------------------

    def _repair(self, name: str) -> None:
        """Finish a start or stop that a killed vzslave left half done (lock held)."""
        settings = self._settings(name)
        if settings.get("stopping"):
            self._finish_stop(name, settings, DEFAULT_GRACE)
        elif settings.get("starting"):
            text = self._read_inittab()
            entry = _entry(text, self.layout.launcher, name)
            if entry is None or entry.state != "active":
                # It never reached the inittab: as if it had not been asked.
                settings.update(wanted="stopped", stopping=True)
                self._save(name, settings)
                self._finish_stop(name, settings, DEFAULT_GRACE)
            else:
                settings.pop("starting")
                self._save(name, settings)

    def _repair_unlocked(self, name: str, settings: Dict[str, Any]) -> bool:
        """Repair ``name`` unless a request holds it; True if there was work to do."""
        if not (settings.get("stopping") or settings.get("starting")):
            return False
        try:
            with self._lock(name, wait=False):
                self._repair(name)
        except BusyError:
            pass  # a request is working on it right now
        return True

    # -- status --------------------------------------------------------------

    def _status_of(self, name: str, text: Optional[str],
                   entries: Optional[Dict[str, Any]] = None,
                   settings: Optional[Dict[str, Any]] = None) -> ContainerStatus:
        if text is None:
            text = self._read_inittab()
        if settings is None:
            settings = self._settings(name)
        record = read_run_record(self._run_path(name))
        entry = (entries.get(name) if entries is not None
                 else _entry(text, self.layout.launcher, name))
        now = time.time()
        pid = record_number(record, "pid")
        alive = pid > 0 and procs.same_process(pid, record.get("ticks"))
        uptime = None
        if settings.get("wanted") != "running":
            state = "stopped"
        elif entry is None or entry.state != "active":
            state = "disabled"
        elif not record:
            state = "starting"
        elif record.get("state") in ("waiting", "failed"):
            state = "crash-looping"
        elif alive and record.get("state") == "running":
            state = "running"
            uptime = max(now - float(record.get("started", now)), 0.0)
        else:
            state = "restarting"
        spawns = record_number(record, "spawns")
        next_retry = record.get("next_start")
        last_run = record.get("last_run")
        return ContainerStatus(
            name=name, state=state, pid=pid if alive else None, uptime=uptime,
            restarts=max(spawns - 1, 0), last_exit=record.get("last_exit") or None,
            last_error=record.get("last_error") or None,
            next_retry=float(next_retry) if next_retry and state == "crash-looping" else None,
            supervisor=self._supervisor_name(), runtime=settings.get("runtime", "builtin"),
            entry=entry.line.rstrip("\r\n") if entry else None,
            bundle=settings.get("tree") or "", log=os.path.join(self.layout.logs, name + ".log"),
            last_run=float(last_run) if last_run else None,
            warnings=list(settings.get("warnings") or []))

    def _supervisor_name(self) -> str:
        try:
            return self.supervision.name
        except InittabError:
            return "none"

    def _read_inittab(self) -> str:
        try:
            path = self.supervision.inittab
        except InittabError:
            return ""
        return InittabFile(path).read()

    # -- settings ------------------------------------------------------------

    def _run_path(self, name: str) -> str:
        return os.path.join(self.layout.container_dir(name), "run")

    def _settings_path(self, name: str) -> str:
        return os.path.join(self.layout.container_dir(name), "settings.json")

    def _settings(self, name: str, must_exist: bool = False) -> Dict[str, Any]:
        try:
            with open(self._settings_path(name), "rb") as f:
                value = json.loads(f.read().decode("utf-8"))
            return value if isinstance(value, dict) else {}
        except FileNotFoundError:
            if must_exist:
                raise NoSuchContainerError(_no_such(name)) from None
            return {}
        except (OSError, ValueError):
            return {}

    def _save(self, name: str, settings: Dict[str, Any]) -> None:
        os.makedirs(self.layout.container_dir(name), mode=0o700, exist_ok=True)
        fs.atomic_write(self._settings_path(name),
                        json.dumps(settings, sort_keys=True, indent=1).encode(), 0o600)

    def _load_plan(self, name: str) -> Optional[Dict[str, Any]]:
        try:
            with open(os.path.join(self.layout.container_dir(name), "plan.marshal"),
                      "rb") as f:
                plan = marshal.load(f)
        except (OSError, ValueError, EOFError, TypeError):
            return None
        return plan if isinstance(plan, dict) else None

    def _lock(self, name: str, wait: bool = True) -> Any:
        os.makedirs(self.layout.container_dir(name), mode=0o700, exist_ok=True)
        return fs.exclusive_lock(os.path.join(self.layout.locks, "container-{}.lock".format(
            name)), "container {!r}".format(name), blocking=wait)


def _entry(text: str, launcher: str, name: str) -> Any:
    for entry in parse(text, launcher):
        if entry.name == name:
            return entry
    return None


def _with_entry(text: str, dialect: Dialect, launcher: str, name: str, entry_id: str,
                exists: bool) -> str:
    if exists:
        return restore_entry(text, dialect, launcher, name, entry_id)
    return add_entry(text, dialect, launcher, name, entry_id)


def _fit_default_capabilities(plan: Dict[str, Any]) -> None:
    """vz's default set, less what this node's bounding set lacks (some guests), warned.

    Asked for by name, a capability the node lacks fails the spawn, as runc's create
    fails; the defaults were asked for by nobody.
    """
    bounding = _bounding_set()
    caps = plan["process"]["capabilities"]
    missing = sorted({cap for numbers in caps.values() for cap in numbers
                      if not bounding >> cap & 1})
    if not missing:
        return
    for key, numbers in caps.items():
        caps[key] = [cap for cap in numbers if cap not in missing]
    plan["warnings"].append(
        "this node's bounding set lacks {}: the app runs without {} of vz's default "
        "capabilities".format(", ".join(linux.cap_name(cap) for cap in missing),
                              "it" if len(missing) == 1 else "them"))


def _bounding_set() -> int:
    """The capability bounding set vzslave runs with: the node's, as a mask."""
    try:
        with open("/proc/self/status", "rb") as source:
            for line in source:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return (1 << 64) - 1  # unknown: let the spawn say what it cannot have


def _seconds_in(path: str) -> float:
    """The number of seconds a test wrote into ``path``; 0 without one."""
    try:
        with open(path, "rb") as source:
            seconds = float(source.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0
    return min(seconds, 600.0) if seconds > 0 else 0.0  # NaN is not > 0


def probe_pivot_root(rootfs: str) -> Optional[str]:
    """None if a container can enter ``rootfs`` with pivot_root on this node; else why not.

    Tried for real in a throwaway child: a private mount namespace, the rootfs bound
    onto itself, pivot_root, the old root detached. It fails on kernels or guests that
    refuse new mount namespaces (some OpenVZ 6 guests) or where the root is an
    initramfs (pivot_root cannot move it).
    """
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child; the parent reads its verdict
        try:
            os.close(reader)
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
            linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
            runner.pivot_into(rootfs)
            os.write(writer, b"ok")
        except BaseException as exc:
            text = exc.message if isinstance(exc, RunnerError) else (
                os_message(exc) if isinstance(exc, OSError) else repr(exc))
            os.write(writer, text.encode("utf-8", "replace")[:1000])
        finally:
            os._exit(0)
    os.close(writer)
    try:
        verdict = b""
        while True:
            data = os.read(reader, 4096)
            if not data:
                break
            verdict += data
    finally:
        os.close(reader)
        os.waitpid(child, 0)
    if verdict == b"ok":
        return None
    return verdict.decode("utf-8", "replace") or "the probe process died"




def _no_such(name: str) -> str:
    return "no container named {!r} on this node; start it first".format(name)
