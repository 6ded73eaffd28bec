"""Containers: started, stopped, restarted and reported through the node's own init.

A started container is one ``respawn`` line in the inittab (``ROOT/bin/vzrun NAME``:
supervision.py, launcher.py) and a state directory, ROOT/containers/NAME/: its
settings.json (settings.py), plan.marshal (plans.py), run record and boot marker
(runio.py). The inittab is the truth for "enabled": an entry the sysadmin
commented out or deleted while the container was wanted running is *disabled by the
administrator*, and only a start with ``override`` puts it back (states.py derives the
status). Every change takes the container's lock, then the inittab's. A start or stop
marks itself in settings.json before it touches the inittab and clears the mark at the
end, so a vzslave killed midway leaves a mark that the next request finishes.
"""

import os
import time
from typing import Any, Callable, List, Optional, Set, Tuple

from vzslave import fs, logs, mounts, plans, procs
from vzslave.bundles import BundleStore
from vzslave.config import Layout
from vzslave.errors import (BusyError, DisabledByAdminError, InittabError, NoSuchBundleError,
                            NoSuchContainerError)
from vzslave.health import Instance
from vzslave.inittab import Entry, allocate_id, used_ids
from vzslave.launcher import install_launcher
from vzslave.names import validate_name
from vzslave.records import ContainerStatus
from vzslave.runio import read_run_record, record_number
from vzslave.settings import DEFAULT_LOG_MAX, Settings, ids_in_use, trees_in_use
from vzslave.states import ContainerState, Mark, Wanted, derive
from vzslave.supervision import Entries, Supervision, is_active

DEFAULT_GRACE = 10.0  # seconds between TERM and KILL at stop
START_WAIT = 10.0  # how long start waits for init to run the app (busybox: ~1-2 s)
MIN_UPTIME = 1.0  # how long the app must stay up before start says "running"


class Containers:
    """The containers of one node."""

    def __init__(self, layout: Layout, bundles: BundleStore,
                 supervision: Optional[Callable[[], Supervision]] = None) -> None:
        self.layout = layout
        self.bundles = bundles
        self.entries = Entries(layout, supervision)

    def start(self, name: str, override: bool = False, runtime: Optional[str] = None,
              runtime_args: Optional[List[str]] = None, log_max: Optional[int] = None,
              log_keep: Optional[int] = None, syslog: Optional[bool] = None,
              monitor: Optional[bool] = None, wait: bool = True,
              min_uptime: float = MIN_UPTIME, source: Optional[str] = None) -> ContainerStatus:
        """Have init run the container; with ``wait``, until the app has stayed up for
        ``min_uptime`` seconds, or crash-loops, or START_WAIT passes.

        Starting a running container only records the options given; ``restart``
        applies them and a newly unpacked bundle. Options not given keep their
        earlier values. ``source`` (apps.py) is an app's release bundle to run; an app's
        container keeps running its release, not a bundle of its name.
        """
        validate_name("container", name)
        with self._lock(name):
            self.entries.reload_if_pending()
            self._repair(name)
            settings = self._settings(name)
            if source:
                settings.source = source
            tree = settings.source or self._bundle_tree(name)
            settings.ask(runtime=runtime, log_max=log_max, log_keep=log_keep, syslog=syslog,
                         monitor=monitor, runtime_args=None if runtime_args is None
                         else plans.check_runtime_args(runtime_args))
            plan = plans.make_plan(self.layout, name, tree, settings)
            with self.entries.locked() as tab:
                text = tab.read()
                entry = self.entries.find(text, name)
                already = is_active(entry)
                if not already and settings.wants_running and not override:
                    raise DisabledByAdminError(
                        "container {!r} was disabled by the node's administrator: its {} "
                        "entry is {}. Start it with override to put the entry back".format(
                            name, self.entries.supervision.inittab,
                            "commented out" if entry else "deleted"),
                        {"entry": entry.line if entry else None})
                settings.wanted = Wanted.RUNNING
                if already:
                    # New options are kept, and take effect (with the bundle as it is
                    # then) at restart, which re-prepares mounts.
                    self._save(name, settings)
                else:
                    settings.mark(Mark.STARTING)
                    settings.placed(plan["bundle"], plan["warnings"])
                    settings.entry_id = settings.entry_id or allocate_id(
                        used_ids(text), ids_in_use(self.layout.containers, but=name))
                    self._save(name, settings)
                    plans.write_plan(self.layout.container_dir(name), plan)
                    install_launcher(self.layout)
                    fs.unlink_quietly(self._run_path(name))
                    mounts.prepare(plan)  # no-op for runc/crun and mount-namespace plans
                    self.entries.put(tab, text, name, settings.entry_id, entry is not None)
            if not already:
                settings.unmark(Mark.STARTING)
                self._save(name, settings)
        # Waited for without the lock: a stop may come meanwhile, and is not kept BUSY.
        return self._wait_running(name, min_uptime) if wait else self._status_of(name)

    def stop(self, name: str, grace: float = DEFAULT_GRACE) -> ContainerStatus:
        """Remove the entry, reload init, end every process, release every mount.

        Works on a full disk: should a write fail for space, the container's processes
        are frozen (they can fill no more) and the node's reserve is given back first.
        """
        validate_name("container", name)
        with self._lock(name):
            self.entries.reload_if_pending()
            settings = self._settings(name)
            if not settings.found:
                raise NoSuchContainerError(_no_such(name))
            settings.wanted = Wanted.STOPPED
            settings.mark(Mark.STOPPING)
            settings.unmark(Mark.STARTING)
            self._with_space(name, lambda: self._save(name, settings))
            self._finish_stop(name, settings, grace)
            status = self._status_of(name)
        fs.keep_reserve(self.layout.reserve)
        return status

    def switch(self, name: str, source: str, grace: float = DEFAULT_GRACE,
               override: bool = False, **options: Any) -> None:
        """Run the release bundle ``source`` as container ``name``, in place of the one
        it runs, with the start ``options`` given (the others kept).

        A running container's inittab entry stays: the new plan replaces the old one,
        then the old instance is ended, and init respawns the runner into the new plan
        (whose first spawn ends what the old one left). Init never lacks the entry, so a
        vzslave killed at any point leaves one release or the other running, and the
        gap is init's own respawn latency. Otherwise (stopped, or runc/crun, whose
        container id both would share) it is a stop, then a start.
        """
        validate_name("container", name)
        with self._lock(name):
            self.entries.reload_if_pending()
            self._repair(name)
            settings = self._settings(name)
            old = plans.load_plan(self.layout.container_dir(name))
            swap = (old is not None and settings.wants_running and old["runtime"] == "builtin"
                    and options.get("runtime") in (None, "builtin")
                    and settings.options.runtime == "builtin"
                    and is_active(self.entries.find(self.entries.read(), name)))
            if swap:
                assert old is not None
                settings.source = source
                settings.ask(**options)
                plan = plans.make_plan(self.layout, name, source, settings)
                plan["replaces"] = [old["rootfs"]] if old["rootfs"] != plan["rootfs"] else []
                settings.mark(Mark.SWITCHING)
                settings.placed(plan["bundle"], plan["warnings"])
                self._save(name, settings)
                fs.checkpoint(self.layout.root, "switch-marked")
                mounts.prepare(plan)  # no-op for mount-namespace plans
                # Taken before the write: a runner started since may read the new plan
                # (init respawns one within a tick of the old instance's end, on sysvinit).
                written = procs.boot_ticks()
                plans.write_plan(self.layout.container_dir(name), plan)
                fs.checkpoint(self.layout.root, "switch-planned")
                self._finish_switch(name, settings, old, plan["generation"], written, grace)
        if not swap:
            if settings.wants_running:
                self.stop(name, grace)
            self.start(name, override=override, wait=False, source=source, **options)

    def restart(self, name: str, grace: float = DEFAULT_GRACE,
                min_uptime: float = MIN_UPTIME) -> ContainerStatus:
        """Stop, then start with the same settings (and the bundle as it is now)."""
        self.stop(name, grace)
        return self.start(name, min_uptime=min_uptime)

    def status(self, name: Optional[str] = None) -> List[ContainerStatus]:
        """One container's status, or every container's, sorted by name."""
        names = [validate_name("container", name)] if name else fs.visible_names(
            self.layout.containers)
        self.entries.reload_if_pending()
        entries = self.entries.by_name(self.entries.read())  # parsed once for all
        found = []
        for each in names:
            settings = self._settings(each)
            if not settings.found:
                if name:
                    raise NoSuchContainerError(_no_such(name))
                continue
            if self._repair_unlocked(each, settings):
                entries = self.entries.by_name(self.entries.read())
                settings = self._settings(each)
            found.append(self._status_of(each, entries.get(each), settings))
        return found

    def status_if_any(self, name: str) -> Optional[ContainerStatus]:
        """The status of container ``name``; None if it has none."""
        try:
            return self.status(name)[0]
        except NoSuchContainerError:
            return None

    def instance(self, name: str) -> Instance:
        """The instance of the plan written last (a switch's new release): its pid while
        it runs, its spawns; the health check's view (vzslave/health.py)."""
        plan = plans.load_plan(self.layout.container_dir(name)) or {}
        record = read_run_record(self._run_path(name))
        if record.get("generation", "") != plan.get("generation", ""):
            return Instance(None, 0, ContainerState.STARTING, "")  # not yet respawned
        status = self._status_of(name)
        return Instance(status.pid if status.state == ContainerState.RUNNING else None,
                        record_number(record, "spawns"), status.state,
                        status.last_error or status.last_exit or "")

    def repair(self, name: str) -> None:
        """Finish what a killed vzslave left of a start, stop or switch of ``name``."""
        with self._lock(name):
            self.entries.reload_if_pending()
            self._repair(name)

    def detach(self, name: str) -> None:
        """Forget the release a stopped app container would start (apps.py: the failed
        first release of an app)."""
        with self._lock(name):
            settings = self._settings(name)
            settings.source = ""
            self._save(name, settings)

    def forget(self, name: str) -> None:
        """Remove a stopped container's state and logs (its bundle is being removed)."""
        with self._lock(name):
            settings = self._settings(name)
            if settings.wants_running or settings.tree:
                raise BusyError("container {!r} is started; stop it first".format(name))
            fs.remove_tree(self.layout.container_dir(name))
            logs.remove_chain(self.layout.log_file(name))

    def upkeep(self) -> None:
        """Per-session upkeep, cheap: a reload a killed session owed init, logs cut back to
        their limits (an app without a monitor that writes much), the disk reserve."""
        try:
            self.entries.reload_if_pending()
        except (OSError, InittabError, BusyError):
            pass  # the next request for a container tries again, and says why
        logs.enforce_all(self.layout.logs, self.log_limits, min(DEFAULT_LOG_MAX, 1 << 20))
        fs.keep_reserve(self.layout.reserve)

    def log_limits(self, name: str) -> Tuple[int, int]:
        """max_bytes and keep of a container's logs, as its settings say."""
        options = self._settings(name).options
        return options.log_max, options.log_keep

    def trees_in_use(self) -> Set[str]:
        """Bundle trees a started container runs from (never garbage)."""
        return trees_in_use(self.layout.containers)

    def _bundle_tree(self, name: str) -> str:
        try:
            return os.path.realpath(self.bundles.path(name))
        except OSError as exc:
            raise NoSuchBundleError(str(exc)) from exc

    def _wait_running(self, name: str, min_uptime: float) -> ContainerStatus:
        """The status once the app has run for ``min_uptime`` or crash-loops (or time is
        up): "running" must mean that it stays up, not that it was exec'd."""
        deadline = time.monotonic() + START_WAIT + min_uptime
        waiting = (ContainerState.RUNNING, ContainerState.STARTING, ContainerState.RESTARTING)
        while True:
            status = self._status_of(name)
            settled = (status.state == ContainerState.RUNNING
                       and (status.uptime or 0.0) >= min_uptime or status.state not in waiting)
            if settled or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    def _with_space(self, name: str, write: Callable[[], None]) -> None:
        """Do ``write``; on a full disk, freeze the container first (it may be what fills
        it), then use the node's reserve."""
        def freeze() -> None:
            plan = plans.load_plan(self.layout.container_dir(name))
            if plan is not None:
                procs.freeze(procs.container_processes(plan["rootfs"]))

        fs.write_with_reserve(write, self.layout.reserve, freeze)

    def _finish_stop(self, name: str, settings: Settings, grace: float) -> None:
        with self.entries.locked() as tab:
            text = tab.read()
            if self.entries.find(text, name) is not None:
                self._with_space(name, lambda: self.entries.remove(tab, text, name))
        plan = plans.load_plan(self.layout.container_dir(name))
        if plan is not None:
            plans.end(plan, self.layout, grace)
        settings.stopped()
        self._with_space(name, lambda: self._save(name, settings))
        self.bundles.collect_garbage(name)

    def _finish_switch(self, name: str, settings: Settings, old: plans.Plan,
                       generation: str, written: int, grace: float) -> None:
        """End the instance of the ``old`` plan, replaced by the plan of ``generation``
        written at ``written`` (boot ticks); init respawns the runner into the new one."""
        # First: sysvinit forgets its respawn count (10 in 2 minutes disables an entry
        # for 5), so the respawn the end of the old instance causes is never refused.
        self.entries.nudge()
        plans.replace(old, self.layout, grace, generation, written)
        fs.checkpoint(self.layout.root, "switch-ended")
        settings.unmark(Mark.SWITCHING)
        self._save(name, settings)

    def _repair(self, name: str) -> None:
        """Finish a start, stop or switch that a killed vzslave left half done (lock held)."""
        settings = self._settings(name)
        if settings.marked(Mark.SWITCHING):
            plan = plans.load_plan(self.layout.container_dir(name))
            if plan is not None:
                # The plan on disk is the one init runs from now on: what it replaces ends.
                settings.placed(plan["bundle"], plan["warnings"])
                if settings.source:
                    settings.source = plan["bundle"]
                if plan.get("replaces"):
                    self.entries.nudge()  # as _finish_switch: before the respawn
                # A runner started before the plan's write may hold the old plan.
                written = procs.boot_ticks(os.stat(os.path.join(
                    self.layout.container_dir(name), plans.PLAN)).st_mtime)
                for rootfs in plan.get("replaces") or ():
                    plans.replace(dict(plan, rootfs=rootfs), self.layout, DEFAULT_GRACE,
                                  plan["generation"], written)
            settings.unmark(Mark.SWITCHING)
            self._save(name, settings)
        if settings.marked(Mark.STOPPING):
            self._finish_stop(name, settings, DEFAULT_GRACE)
        elif settings.marked(Mark.STARTING):
            if not is_active(self.entries.find(self.entries.read(), name)):
                # It never reached the inittab: as if it had not been asked.
                settings.wanted = Wanted.STOPPED
                settings.mark(Mark.STOPPING)
                self._save(name, settings)
                self._finish_stop(name, settings, DEFAULT_GRACE)
            else:
                settings.unmark(Mark.STARTING)
                self._save(name, settings)

    def _repair_unlocked(self, name: str, settings: Settings) -> bool:
        """Repair ``name`` unless a request holds it; True if there was work to do."""
        if not settings.under_way:
            return False
        try:
            with self._lock(name, wait=False):
                self._repair(name)
        except BusyError:
            pass  # a request is working on it right now
        return True

    def _status_of(self, name: str, entry: Optional[Entry] = None,
                   settings: Optional[Settings] = None) -> ContainerStatus:
        """The status of ``name``: from ``settings`` and ``entry`` (None: it has none) as
        the caller read them, or, without settings, from both read here."""
        if settings is None:
            settings = self._settings(name)
            entry = self.entries.find(self.entries.read(), name)
        record = read_run_record(self._run_path(name))
        pid = record_number(record, "pid")
        alive = pid > 0 and procs.same_process(pid, record.get("ticks"))
        state = derive(settings.wanted, is_active(entry), record, alive)
        now = time.time()
        next_retry, last_run = record.get("next_start"), record.get("last_run")
        return ContainerStatus(
            name=name, state=state, pid=pid if alive else None,
            uptime=max(now - float(record.get("started", now)), 0.0)
            if state == ContainerState.RUNNING else None,
            restarts=max(record_number(record, "spawns") - 1, 0),
            last_exit=record.get("last_exit") or None,
            last_error=record.get("last_error") or None,
            next_retry=float(next_retry) if next_retry and state == ContainerState.CRASH_LOOPING
            else None, supervisor=self.entries.supervisor_name, runtime=settings.options.runtime,
            entry=entry.line.rstrip("\r\n") if entry else None, bundle=settings.tree,
            log=self.layout.log_file(name),
            last_run=float(last_run) if last_run else None, warnings=settings.warnings)

    def _run_path(self, name: str) -> str:
        return os.path.join(self.layout.container_dir(name), "run")

    def _settings(self, name: str) -> Settings:
        return Settings.load(self.layout.container_dir(name))

    def _save(self, name: str, settings: Settings) -> None:
        settings.save(self.layout.container_dir(name))

    def _lock(self, name: str, wait: bool = True) -> Any:
        os.makedirs(self.layout.container_dir(name), mode=0o700, exist_ok=True)
        return fs.exclusive_lock(os.path.join(self.layout.locks, "container-{}.lock".format(
            name)), "container {!r}".format(name), blocking=wait)


def _no_such(name: str) -> str:
    return "no container named {!r} on this node; start it first".format(name)
