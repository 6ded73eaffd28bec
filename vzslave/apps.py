"""Apps: numbered releases of an image, deployed with a health-gated switch, rolled back,
pruned; volumes that outlive them, secrets kept out of everything but their store.

An app is a container of the app's name (vzslave/containers.py) whose source is one
release's bundle (vzslave/releases.py has the layout on disk). A deploy:

1. checks every argument, then takes the app's lock (one deploy, rollback or remove
   at a time: a second is refused BUSY, naming the holder);
2. reserves the next number in app.json (``deploying``: the repair's clue), unpacks the
   image into a staging directory, writes release.json and the secrets, and renames the
   staging directory to ``releases/N``: complete, or not listed at all;
3. runs the release command, if any, as a one-off of the new release (vzslave/oneoff.py);
   if it fails nothing has changed but the release's removal;
4. switches the container to the new release (Containers.switch: the inittab entry
   stays, init respawns into the new plan);
5. waits for the health check (vzslave/health.py). If it fails, the container is
   switched back to the release it ran before and HEALTH_FAILED carries the check's
   output and the new release's last log lines;
6. records the release as current and prunes: releases beyond ``keep`` (never the
   current one), their secrets, then images that no kept release uses.

A vzslave killed anywhere leaves the entry running the old plan or the new one; the
next deploy, rollback or remove of the app repairs the rest (``_repair``): staging
directories go, and a reserved release becomes current if the container runs it, or
is removed if it never ran.
"""

import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from vzslave import fs, health, logs, oneoff, plans, procs, releases
from vzslave.bundles import BundleStore
from vzslave.config import Layout
from vzslave.containers import DEFAULT_GRACE, Containers
from vzslave.errors import (BadRequestError, BusyError, HealthCheckError, NoSuchAppError,
                            NoSuchImageError, NoSuchReleaseError, ReleaseCommandError)
from vzslave.images import ImageStore
from vzslave.names import validate_name
from vzslave.records import (DIFF_FIELDS, AppDiff, AppInfo, HealthResult, ReleaseInfo,
                             RunResult, VolumeInfo)
from vzslave.releases import Release
from vzslave.settings import Settings
from vzslave.states import ContainerState

LOG_TAIL = 20  # log lines a HEALTH_FAILED error carries
RELEASE_TIMEOUT = 600.0  # seconds a release command may run
# The steps a deploy (unpack, release, switch, health) or a rollback (switch, health)
# reports as it starts each, to a client that asked (app.deploy's ``progress``).
Report = Optional[Callable[[str, str], None]]


class Apps:
    """The apps of one node."""

    def __init__(self, layout: Layout, images: ImageStore, bundles: BundleStore,
                 containers: Containers) -> None:
        self.layout = layout
        self.images = images
        self.bundles = bundles
        self.containers = containers

    # -- deploy and rollback ---------------------------------------------------------

    def deploy(self, app: str, image: str, env: Optional[Dict[str, Any]] = None,
               secrets: Optional[Dict[str, Any]] = None,
               volumes: Optional[Dict[str, Any]] = None,
               health_spec: Optional[Dict[str, Any]] = None,
               release_command: Optional[List[str]] = None, keep: int = releases.DEFAULT_KEEP,
               override: bool = False, grace: float = DEFAULT_GRACE,
               options: Optional[Dict[str, Any]] = None,
               labels: Optional[Dict[str, Any]] = None,
               report: Report = None) -> ReleaseInfo:
        """Unpack ``image`` as the app's next release and switch to it once healthy;
        ``report(stage, detail)`` hears each step as it starts (STAGES)."""
        say = report or _silent
        validate_name("app", app)
        validate_name("image", image)
        asked = _checked(env, secrets, volumes, health_spec, release_command, options, labels)
        env, secret_values, volume_map, spec, command, options, label_map = asked
        keep = releases.check_keep(keep)
        image_info = self.images.get(image)  # NO_SUCH_IMAGE before anything changes
        self._refuse_bundle_container(app)
        with self._lock(app):
            self._repair(app)
            state = releases.read_app(self.layout, app)
            previous = self._current(app, state)
            number = max([int(state.get("next") or 1)] + [
                n + 1 for n in releases.numbers(self.layout, app)])
            state.update(next=number + 1, deploying=number, keep=keep)
            releases.write_app(self.layout, app, state)
            fs.checkpoint(self.layout.root, "reserved")
            try:
                say("unpack", "release {} from {}".format(number, image))
                release = self._unpack(app, number, image, image_info.sha256, env,
                                       secret_values, volume_map, spec, command, options,
                                       label_map)
                fs.checkpoint(self.layout.root, "published")
                if command is not None:
                    say("release", " ".join(command))
                    self._release_command(release, command)
                fs.checkpoint(self.layout.root, "release-command")
                say("switch", "release {}".format(number))
                self._switch(release, grace, override)
                fs.checkpoint(self.layout.root, "switched")
                say("health", _describe_check(spec))
                passed, seen = self._wait_healthy(release)
                fs.checkpoint(self.layout.root, "checked")
                if not passed:
                    raise self._unhealthy(app, number, seen, self._restore(app, previous, grace))
            except BaseException:
                if not self._runs(app, number):  # else the switch back failed: it stays
                    self._drop(app, number)
                    state.pop("deploying", None)
                    releases.write_app(self.layout, app, state)
                raise
            state.update(current=number)
            state.pop("deploying", None)
            releases.write_app(self.layout, app, state)
            fs.checkpoint(self.layout.root, "recorded")
            self._prune(app, keep, number)
            fs.checkpoint(self.layout.root, "pruned")
            return self._info(app, number, number)

    def rollback(self, app: str, release: Optional[int] = None,
                 grace: float = DEFAULT_GRACE, report: Report = None) -> ReleaseInfo:
        """Switch the app to ``release`` (default: the newest older than the current one),
        health-checked as a deploy; nothing is transferred or unpacked."""
        validate_name("app", app)
        with self._lock(app):
            self._repair(app)
            state = self._state(app)
            current = self._current(app, state)
            kept = releases.numbers(self.layout, app)
            if release is None:
                older = [n for n in kept if current is None or n < current]
                if not older:
                    raise NoSuchReleaseError(
                        "app {!r} has no release older than {} to roll back to (kept: "
                        "{})".format(app, current, _listed(kept)), {"releases": kept})
                release = older[0]
            target = self._release(app, release)
            say = report or _silent
            say("switch", "release {}".format(release))
            self._switch(target, grace, override=False)
            say("health", _describe_check(target.health))
            passed, seen = self._wait_healthy(target)
            if not passed:
                raise self._unhealthy(app, release, seen, self._restore(app, current, grace))
            state["current"] = release
            releases.write_app(self.layout, app, state)
            return self._info(app, release, release)

    def diff(self, app: str, sha256: str, env: Optional[Dict[str, Any]] = None,
             secrets: Optional[Dict[str, Any]] = None,
             volumes: Optional[Dict[str, Any]] = None,
             health_spec: Optional[Dict[str, Any]] = None,
             release_command: Optional[List[str]] = None,
             options: Optional[Dict[str, Any]] = None,
             labels: Optional[Dict[str, Any]] = None) -> AppDiff:
        """What deploying the image of ``sha256`` with these settings would change: the
        fields (DIFF_FIELDS) in which it differs from the release the app runs. Checked as
        a deploy checks them, so equal settings written differently compare equal;
        nothing changes on the node."""
        validate_name("app", app)
        asked = _checked(env, secrets, volumes, health_spec, release_command, options, labels)
        statuses = self.containers.status_if_any(app)
        state = statuses.state if statuses else ContainerState.STOPPED
        release = self._current_release(app, releases.read_app(self.layout, app))
        if release is None:
            return AppDiff(app=app, current=None, changes=["new"], state=state)
        current = release.number
        have = (release.env, releases.read_secrets(self.layout, app, current),
                release.volumes, release.health, release.release_command, release.options,
                release.labels)
        changes = ["image"] if release.sha256 != sha256 else []
        changes += [field for field, old, new in zip(DIFF_FIELDS[1:], have, asked)
                    if old != new]
        return AppDiff(app=app, current=current, changes=changes, state=state)

    def check(self, app: str) -> HealthResult:
        """The app's health now: its current release's check tried once (no retries, no
        min_uptime); without a check, whether its container runs."""
        validate_name("app", app)
        release = self._current_release(app, self._state(app))
        statuses = self.containers.status_if_any(app)
        state = statuses.state if statuses else ContainerState.STOPPED
        if release is None or state != ContainerState.RUNNING:
            return HealthResult(app=app, release=release.number if release else None,
                                passed=False, output="the app is {}".format(state))
        spec = release.health
        if spec is None or not set(spec) & {"tcp", "http", "cmd"}:
            return HealthResult(app=app, release=release.number, passed=True,
                                output="running (no check declared)")
        passed, seen = self._probe(release, spec, spec["timeout"])
        return HealthResult(app=app, release=release.number, passed=passed, output=seen)

    # -- reading ----------------------------------------------------------------------

    def releases(self, app: str) -> List[ReleaseInfo]:
        """The app's kept releases, newest first, the current one marked."""
        validate_name("app", app)
        state = self._state(app)
        current = self._current(app, state)
        found = []
        for number in releases.numbers(self.layout, app):
            release = releases.read(releases.release_dir(self.layout, app, number))
            if release is not None:
                found.append(_release_info(release, number == current))
        return found

    def list(self) -> List[AppInfo]:
        """Every app on the node, sorted by name."""
        found = []
        for app in fs.visible_names(self.layout.apps):
            state = releases.read_app(self.layout, app)
            kept = releases.numbers(self.layout, app)
            statuses = self.containers.status_if_any(app)
            if not state or not (kept or statuses):
                continue  # a first deploy that failed: only its numbering is kept
            current = self._current_release(app, state)
            found.append(AppInfo(
                app=app, current=self._current(app, state),
                releases=kept, keep=int(state.get("keep") or releases.DEFAULT_KEEP),
                state=statuses.state if statuses else ContainerState.STOPPED,
                volumes=self._volume_names(app),
                labels=dict(current.labels) if current else {}))
        return found

    def volumes(self, app: str) -> List[VolumeInfo]:
        """The app's volumes (those of a removed app too, until removed themselves)."""
        validate_name("app", app)
        directory = os.path.join(self.layout.volumes, app)
        return [VolumeInfo(app, name, os.path.join(directory, name),
                           _disk_usage(os.path.join(directory, name)))
                for name in self._volume_names(app)]

    def _volume_names(self, app: str) -> List[str]:
        directory = os.path.join(self.layout.volumes, app)
        return fs.visible_names(directory) if os.path.isdir(directory) else []

    # -- one-offs ---------------------------------------------------------------------

    def run(self, app: str, argv: List[str], timeout: float = RELEASE_TIMEOUT) -> RunResult:
        """Run ``argv`` once in the app's current release; its output and exit status."""
        validate_name("app", app)
        argv = releases.check_command(argv, "argv")
        current = self._current(app, self._state(app))
        if current is None:
            raise NoSuchReleaseError("app {!r} has no release to run in yet".format(app))
        release = self._release(app, current)
        outcome = self._one_off(release, argv, timeout)
        return RunResult(current, outcome.exit, outcome.status, outcome.output,
                         outcome.truncated)

    # -- removal ----------------------------------------------------------------------

    def remove(self, app: str, volumes: bool = False, grace: float = DEFAULT_GRACE) -> None:
        """Stop the app, delete its releases, settings, secrets and unused images; its
        volumes only with ``volumes``."""
        validate_name("app", app)
        with self._lock(app):
            self._state(app)  # NO_SUCH_APP
            settings = Settings.load(self.layout.container_dir(app))
            if settings.found:
                if settings.wants_running or settings.tree:
                    self.containers.stop(app, grace)
                self.containers.forget(app)
            dropped = [releases.read(releases.release_dir(self.layout, app, n))
                       for n in releases.numbers(self.layout, app)]
            fs.remove_tree(self.layout.app_dir(app))
            _remove_quietly(os.path.join(self.layout.secrets, app))
            if volumes:
                _remove_quietly(os.path.join(self.layout.volumes, app))
            self._remove_unused_images([r for r in dropped if r is not None])

    def remove_volume(self, app: str, name: str) -> None:
        """Delete one volume; BusyError while a release that mounts it runs."""
        validate_name("app", app)
        validate_name("volume", name)
        directory = releases.volume_dir(self.layout, app, name)
        with self._lock(app):
            if not os.path.isdir(directory):
                raise NoSuchAppError("app {!r} has no volume {!r}".format(app, name))
            current = self._current(app, releases.read_app(self.layout, app))
            status = self.containers.status_if_any(app)
            if current is not None and status and status.state != ContainerState.STOPPED:
                release = self._release(app, current)
                if name in release.volumes:
                    raise BusyError("volume {!r} is mounted by release {} of app {!r}, "
                                    "which runs; stop the app first".format(
                                        name, current, app), {"release": current})
            fs.remove_tree(directory)

    # -- the steps --------------------------------------------------------------------

    def _unpack(self, app: str, number: int, image: str, sha256: str, env: Dict[str, str],
                secrets: Dict[str, str], volumes: Dict[str, str],
                spec: Optional[Dict[str, Any]], command: Optional[List[str]],
                options: Dict[str, Any], labels: Dict[str, str]) -> Release:
        """Unpack release ``number`` into a staging directory, write its settings and
        secrets, and publish it under its number in one rename."""
        parent = releases.releases_dir(self.layout, app)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        staging = os.path.join(parent, ".{}.{}".format(number, os.getpid()))
        info = self.bundles.extract(image, staging, app)
        release = Release(app, number, staging, image, sha256, info.created, env,
                          sorted(secrets), volumes, spec, command, options, labels)
        try:
            releases.write(release)
            releases.write_secrets(self.layout, app, number, secrets)
            fs.checkpoint(self.layout.root, "unpacked")
            final = releases.release_dir(self.layout, app, number)
            os.rename(staging, final)
            fs.fsync_dir(parent)
        except BaseException:
            _remove_quietly(staging)
            fs.unlink_quietly(releases.secret_file(self.layout, app, number))
            raise
        return release._replace(directory=final)

    def _plan(self, release: Release) -> plans.Plan:
        settings = Settings(dict(release.options))
        return plans.make_plan(self.layout, release.app, release.directory, settings)

    def _one_off(self, release: Release, argv: List[str], timeout: float) -> oneoff.Outcome:
        plan = self._plan(release)
        if plan["runtime"] != "builtin":
            raise BadRequestError("one-off commands need runtime builtin, and release {} "
                                  "of app {!r} runs under {}".format(
                                      release.number, release.app, plan["runtime"]))
        scratch = os.path.join(self.layout.app_dir(release.app), "oneoff")
        return oneoff.run(plan, argv, timeout, scratch)

    def _release_command(self, release: Release, command: List[str]) -> None:
        outcome = self._one_off(release, command, RELEASE_TIMEOUT)
        if outcome.status != 0:
            raise ReleaseCommandError(
                "the release command of release {} of app {!r} failed ({}); release {} "
                "keeps running. Its output ends: {}".format(
                    release.number, release.app, outcome.exit,
                    "the previous release" if release.number > 1 else "nothing",
                    outcome.output[-2000:].strip() or "(nothing)"),
                {"release": release.number, "exit": outcome.exit,
                 "output": outcome.output})

    def _switch(self, release: Release, grace: float, override: bool) -> None:
        self.containers.switch(release.app, release.directory, grace, override,
                               **release.options)

    def _wait_healthy(self, release: Release) -> Tuple[bool, str]:
        spec = release.health
        min_uptime = spec["min_uptime"] if spec else health.DEFAULTS["min_uptime"]
        return health.wait_healthy(
            spec, min_uptime, lambda: self.containers.instance(release.app),
            lambda spec, timeout: self._probe(release, spec, timeout))

    def _probe(self, release: Release, spec: Dict[str, Any],
               timeout: float) -> Tuple[bool, str]:
        """One try of a tcp, http or cmd check of ``release``, as it runs now."""
        if "cmd" in spec:
            outcome = self._one_off(release, spec["cmd"], timeout)
            return outcome.status == 0, "{}: {}{}".format(
                " ".join(spec["cmd"]), outcome.exit,
                ": " + outcome.output[-500:].strip() if outcome.output.strip() else "")
        plan = plans.load_plan(self.layout.container_dir(release.app)) or {}
        pid = None
        if any(ns["type"] == "network" for ns in plan.get("namespaces") or ()):
            inside = procs.container_processes(plan["rootfs"])
            pid = min(inside) if inside else None
        return health.probe_in(pid, spec, timeout)

    def _unhealthy(self, app: str, number: int, seen: str,
                   restored: Optional[int]) -> HealthCheckError:
        """HEALTH_FAILED for release ``number``: what the check saw, what runs now, and
        the app's last log lines."""
        return HealthCheckError(
            "release {} of app {} did not come up healthy: {}; {}".format(
                number, app, seen, "release {} runs again".format(restored) if restored
                else "the app is stopped (it had no release before)"),
            {"release": number, "output": seen, "restored": restored,
             "log": self._log_tail(app)})

    def _restore(self, app: str, previous: Optional[int], grace: float) -> Optional[int]:
        """After a failed check: the release that ran before runs again (or none)."""
        if previous is not None and os.path.isdir(releases.release_dir(
                self.layout, app, previous)):
            release = self._release(app, previous)
            self._switch(release, grace, override=False)
            self._wait_healthy(release)  # serving again before the error is answered
            return previous
        self.containers.stop(app, grace)
        self.containers.detach(app)  # a start must not bring the failed release back
        return None

    def _prune(self, app: str, keep: int, current: int) -> None:
        """Remove the releases beyond the newest ``keep`` (never ``current``), then the
        images that only they used."""
        numbers = releases.numbers(self.layout, app)
        dropped = []
        for number in numbers[keep:]:
            if number != current:
                release = releases.read(releases.release_dir(self.layout, app, number))
                self._drop(app, number)
                if release is not None:
                    dropped.append(release)
        self._remove_unused_images(dropped)

    def _runs(self, app: str, number: int) -> bool:
        """True if the app's container is placed on release ``number`` (started)."""
        tree = Settings.load(self.layout.container_dir(app)).tree
        return bool(tree) and os.path.realpath(tree) == os.path.realpath(
            releases.release_dir(self.layout, app, number))

    def _drop(self, app: str, number: int) -> None:
        """Remove release ``number``'s tree and secrets (never the running one's)."""
        directory = releases.release_dir(self.layout, app, number)
        if self._runs(app, number):
            return
        if os.path.isdir(directory):
            # Renamed first: a release is listed complete or not at all.
            doomed = os.path.join(os.path.dirname(directory), ".{}.drop".format(number))
            os.rename(directory, doomed)
            _remove_quietly(doomed)
        fs.unlink_quietly(releases.secret_file(self.layout, app, number))

    def _remove_unused_images(self, dropped: List[Release]) -> None:
        """Remove the images of ``dropped`` releases that no kept release (of any app)
        and no bundle uses, if the name still holds the bytes those releases had."""
        if not dropped:
            return
        used = set()
        for app in fs.visible_names(self.layout.apps):
            for number in releases.numbers(self.layout, app):
                release = releases.read(releases.release_dir(self.layout, app, number))
                if release is not None:
                    used.add((release.image, release.sha256))
        used.update((info.image, info.sha256) for info in self.bundles.list())
        for release in dropped:
            if (release.image, release.sha256) in used:
                continue
            try:
                if self.images.get(release.image).sha256 == release.sha256:
                    self.images.remove(release.image)
            except (NoSuchImageError, BusyError):
                pass  # gone already, or being uploaded again right now

    # -- state ------------------------------------------------------------------------

    def _repair(self, app: str) -> None:
        """Finish what a killed deploy left (the app's lock held)."""
        parent = releases.releases_dir(self.layout, app)
        if os.path.isdir(parent):
            for name in os.listdir(parent):
                if name.startswith("."):
                    _remove_quietly(os.path.join(parent, name))
        state = releases.read_app(self.layout, app)
        number = state.get("deploying")
        if number is None:
            return
        self.containers.repair(app)
        if self._running_release(app) == number:
            state["current"] = number  # it runs: the interrupted deploy had switched
        else:
            self._drop(app, int(number))
        state.pop("deploying", None)
        releases.write_app(self.layout, app, state)

    def _state(self, app: str) -> Dict[str, Any]:
        state = releases.read_app(self.layout, app)
        if not state:
            raise NoSuchAppError("no app named {!r} on this node; deploy it first".format(app))
        return state

    def _current(self, app: str, state: Dict[str, Any]) -> Optional[int]:
        """The release the app's container runs (or last ran); else app.json's."""
        running = self._running_release(app)
        if running is not None:
            return running
        current = state.get("current")
        return int(current) if isinstance(current, int) else None

    def _current_release(self, app: str, state: Dict[str, Any]) -> Optional[Release]:
        current = self._current(app, state)
        return None if current is None else releases.read(
            releases.release_dir(self.layout, app, current))

    def _running_release(self, app: str) -> Optional[int]:
        settings = Settings.load(self.layout.container_dir(app))
        source = settings.source
        parent = os.path.realpath(releases.releases_dir(self.layout, app))
        if source and os.path.dirname(os.path.realpath(source)) == parent:
            name = os.path.basename(source)
            return int(name) if name.isdigit() else None
        return None

    def _release(self, app: str, number: int) -> Release:
        release = releases.read(releases.release_dir(self.layout, app, number))
        if release is None:
            self._state(app)
            raise NoSuchReleaseError("app {!r} has no release {} (kept: {})".format(
                app, number, _listed(releases.numbers(self.layout, app))),
                {"releases": releases.numbers(self.layout, app)})
        return release

    def _info(self, app: str, number: int, current: int) -> ReleaseInfo:
        return _release_info(self._release(app, number), number == current)

    def _log_tail(self, app: str) -> str:
        data, _ = logs.tail(self.layout.log_file(app), LOG_TAIL,
                            self.containers.log_limits(app)[1])
        return data.decode("utf-8", "replace")

    def _refuse_bundle_container(self, app: str) -> None:
        settings = Settings.load(self.layout.container_dir(app))
        if settings.found and settings.wants_running and not settings.source:
            raise BusyError("a container named {!r} runs bundle {!r}; stop it first, or "
                            "deploy the app under another name".format(app, app),
                            {"container": app})

    def _lock(self, app: str) -> Any:
        return fs.exclusive_lock(os.path.join(self.layout.locks, "app-{}.lock".format(app)),
                                 "app {!r}".format(app), blocking=False)


def _silent(stage: str, detail: str) -> None:
    """A report nobody hears."""


def _describe_check(spec: Optional[Dict[str, Any]]) -> str:
    if not spec:
        return "up for {:g} s".format(health.DEFAULTS["min_uptime"])
    kind = next((key for key in ("tcp", "http", "cmd") if key in spec), None)
    what = "up for {:g} s".format(spec["min_uptime"]) if kind is None else "{} {}".format(
        kind, " ".join(spec[kind]) if kind == "cmd" else spec[kind])
    return "{}, within {:g} s".format(what, spec["timeout"]) if kind else what


def _checked(env: Optional[Dict[str, Any]], secrets: Optional[Dict[str, Any]],
             volumes: Optional[Dict[str, Any]], health_spec: Optional[Dict[str, Any]],
             release_command: Optional[List[str]], options: Optional[Dict[str, Any]],
             labels: Optional[Dict[str, Any]]) -> Tuple[Any, ...]:
    """A deploy's settings checked and in the form a release records them (the order of
    DIFF_FIELDS after "image"): BadRequestError before anything changes."""
    options = {key: value for key, value in (options or {}).items() if value is not None}
    if options.get("runtime_args") is not None:
        plans.check_runtime_args(options["runtime_args"])
    return (releases.check_env(env or {}), releases.check_env(secrets or {}, "secrets"),
            releases.check_volumes(volumes or {}), health.check_spec(health_spec),
            None if release_command is None
            else releases.check_command(release_command, "release"),
            options, releases.check_labels(labels or {}))


def _release_info(release: Release, current: bool) -> ReleaseInfo:
    return ReleaseInfo(app=release.app, release=release.number, image=release.image,
                       sha256=release.sha256, created=release.created, current=current,
                       env=sorted(release.env), secrets=sorted(release.secrets),
                       volumes=dict(release.volumes), health=release.health,
                       release_command=release.release_command, labels=release.labels)


def _listed(numbers: List[int]) -> str:
    return ", ".join(map(str, numbers)) or "none"


def _remove_quietly(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            fs.remove_tree(path)
        else:
            fs.unlink_quietly(path)
    except (OSError, BusyError):
        pass  # the next repair tries again


def _disk_usage(path: str) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                pass
    return total
