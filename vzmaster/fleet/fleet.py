"""``Fleet``: every node of a vz.yml at once. What the fleet commands do, as calls.

    fleet = Fleet(load())                   # vz.yml from here or a parent
    report = fleet.deploy()                 # build, push, roll, remove surplus, firewall
    for row in fleet.ps(): print(row)

One SSH session per node, opened in parallel on first use and kept until ``close``; a
node that does not answer within its connect timeout is reported and skipped. Calls
to one node are serialised (a session takes one call at a time); nodes work in
parallel, at most ``parallel`` at once.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, TypeVar

from vzmaster.client import Client
from vzmaster.digests import DigestCache
from vzmaster.errors import TransportError, describe
from vzmaster.fleet import images
from vzmaster.fleet.events import Events
from vzmaster.fleet.config import AppSpec, FleetConfig
from vzmaster.fleet.plan import (
    ADD,
    FLEET_LABEL,
    KEEP,
    REMOVE,
    REPLACE,
    START,
    Desired,
    FirewallStep,
    NodeState,
    Plan,
    Step,
    make_plan,
)
from vzmaster.transports import SSHOptions
from vzslave.errors import Error
from vzslave.records import ContainerStatus, ReleaseInfo

T = TypeVar("T")
Connector = Callable[[str, SSHOptions], Client]
DEFAULT_PARALLEL = 8
DEFAULT_GRACE = 10.0  # seconds between TERM and KILL, for an app vz.yml no longer has


class FleetError(Error):
    """The fleet cannot do what was asked: a port clash, an app not in vz.yml, ..."""


class Outcome(NamedTuple):
    """What became of one step."""

    node: str
    app: str
    action: str
    result: str  # "ok", "failed", "lost" (the node went away), "skipped"
    detail: str  # the release now current, or why it failed, with advice


class Report(NamedTuple):
    """A deploy's or rollback's end."""

    plan: Plan | None
    outcomes: list[Outcome]
    warnings: list[str]

    @property
    def failures(self) -> list[Outcome]:
        """The steps that failed or whose node went away."""
        return [o for o in self.outcomes if o.result in ("failed", "lost")]

    @property
    def ok(self) -> bool:
        return not self.failures


class Replica(NamedTuple):
    """A row of ``ps``: one app on one node."""

    app: str
    node: str
    release: int | None
    image: str | None
    state: str
    pid: int | None
    uptime: float | None
    restarts: int
    health: str  # "passing", "failing: ...", or "" when not asked


class _Secrets(dict):  # type: ignore[type-arg]
    """Secret values: a dict whose repr shows names only, so a Desired never prints them."""

    def __repr__(self) -> str:
        return "<secrets {}>".format(", ".join(sorted(self)) or "none")


class Fleet:
    """The nodes and apps of one vz.yml."""

    def __init__(self, config: FleetConfig, *, connect_timeout: float | None = None,
                 parallel: int = DEFAULT_PARALLEL, connector: Connector | None = None,
                 digests: DigestCache | None = None) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.config = config
        self.parallel = parallel
        self._connect_timeout = connect_timeout
        self._connector = connector or (lambda name, options: Client(
            options=options, digests=self._digests))
        self._digests = digests or DigestCache()
        self._clients: dict[str, Client] = {}
        self._errors: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max(parallel, 1), thread_name_prefix="vz-fleet")

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End every session."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._pool.shutdown(wait=False)

    # -- the commands ---------------------------------------------------------------

    def plan(self, apps: Sequence[str] | None = None, *, override: bool = False,
             events: Events | None = None) -> Plan:
        """What ``deploy(apps)`` would do; builds nothing (an app whose build inputs
        changed shows as ``image (to build)``) and changes nothing."""
        selected = self._selected(apps)
        desired = self._desired(build=False, events=events or Events())
        return make_plan(desired, self.survey(desired), self.config.name,
                         selected if apps else None, override)

    def deploy(self, apps: Sequence[str] | None = None, *, override: bool = False,
               events: Events | None = None) -> Report:
        """Make the nodes run what vz.yml declares: build what changed, push in
        parallel, roll each app ``max_unavailable`` replicas at a time (new replicas at
        once: they take nothing down), remove surplus replicas once the app is healthy
        everywhere, then the firewall. A failed health check rolls that node back (the
        node does) and stops that app's rollout; the other apps go on."""
        events = events or Events()
        selected = self._selected(apps)
        desired = self._desired(build=True, events=events, only=selected)
        plan = make_plan(desired, self.survey(desired), self.config.name,
                         selected if apps else None, override)
        if plan.errors:
            raise FleetError("refused before any change:\n" + "\n".join(
                "  " + error for error in plan.errors))
        outcomes: list[Outcome] = []
        pushed = self._push(plan, desired, events, outcomes)
        for app in sorted({step.app for step in plan.steps}):
            outcomes += self._roll_app(app, plan, desired.get(app), pushed, override, events)
        outcomes += self._apply_firewall(plan.firewall, events)
        return Report(plan, outcomes, list(plan.warnings))

    def rollback(self, app: str, to: int | None = None,
                 events: Events | None = None) -> Report:
        """Roll every replica of ``app`` back (to release ``to``, or each node's previous
        one), ``max_unavailable`` at a time, each batch healthy before the next."""
        events = events or Events()
        spec = self._spec(app)
        states = self.survey({})
        nodes = [name for name, state in states.items()
                 if state.error is None and app in state.apps]
        warnings = ["{}: did not answer ({}); its replica is not rolled back".format(
            name, state.error) for name, state in states.items() if state.error]
        if not nodes:
            raise FleetError("no node that answered runs app {}".format(app))

        def one(node: str) -> Outcome:
            events.stage(node, app, "rollback")
            info = self._call(node, lambda c: c.rollback(
                app, to, grace=spec.grace, progress=self._steps(node, app, events)))
            return Outcome(node, app, "rollback", "ok", "release {}".format(info.release))

        outcomes = self._batches(app, nodes, spec.max_unavailable, "rollback", one, events)
        return Report(None, outcomes, warnings)

    def releases(self, app: str) -> dict[str, list[ReleaseInfo] | str]:
        """Each node's releases of ``app`` (newest first), or why the node could not
        say; nodes without the app are left out."""
        self._spec(app)
        states = self.survey({})
        found: dict[str, list[ReleaseInfo] | str] = {}
        for name, state in states.items():
            if state.error is not None:
                found[name] = "did not answer: " + state.error
            elif app in state.apps:
                found[name] = self._call(name, lambda c: c.releases(app))
        return found

    def ps(self, app: str | None = None, check: bool = True) -> tuple[list[Replica],
                                                                         dict[str, str]]:
        """Every replica of the fleet's apps (or of ``app``), and the nodes that did not
        answer with why. ``check`` tries each replica's health check once."""
        if app is not None:
            self._spec(app)
        states = self.survey({})
        rows: list[Replica] = []

        def health_of(node: str, name: str) -> str:
            result = self._call(node, lambda c: c.check(name))
            return "passing" if result.passed else "failing: " + result.output

        def node_rows(state: NodeState) -> list[Replica]:
            found = []
            for name, info in sorted(state.apps.items()):
                if app is not None and name != app:
                    continue
                if name not in self.config.apps and info.labels.get(FLEET_LABEL) != \
                        self.config.name:
                    continue
                status = state.statuses.get(name)
                release = self._release(state.name, name, info.current)
                health = health_of(state.name, name) if check else ""
                found.append(_replica(name, state.name, info.current, release, status,
                                      info.state, health))
            return found

        reached = [s for s in states.values() if s.error is None]
        for found in self._each(reached, node_rows):
            rows += found
        return sorted(rows, key=lambda r: (r.app, r.node)), {
            name: str(s.error) for name, s in states.items() if s.error is not None}

    def logs(self, app: str, lines: int = 100, follow: bool = False) -> Iterator[
            tuple[str, str]]:
        """``(node, line)`` of every replica's log: the last ``lines`` of each, then with
        ``follow`` the new ones of all as they come. Nodes that do not answer yield
        ``(node, None-marked line)`` via a line starting with "vz: ". FleetError when no
        node that answered runs the app (an empty log would look the same as none)."""
        self._spec(app)
        states = self.survey({})
        nodes = [name for name, state in states.items()
                 if state.error is None and app in state.apps]
        if not nodes:
            raise FleetError("no node that answered runs app {}{}".format(app, "".join(
                "; {} did not answer: {}".format(name, state.error)
                for name, state in states.items() if state.error is not None)))
        for name, state in states.items():
            if state.error is not None:
                yield name, "vz: did not answer: {}".format(state.error)
        merged: queue.Queue[tuple[str, str | None]] = queue.Queue(maxsize=1024)

        def pump(node: str) -> None:
            try:
                with self._lock(node):
                    for line in self._clients[node].logs(app, tail=lines, follow=follow):
                        merged.put((node, line))
            except Error as exc:
                merged.put((node, "vz: {}".format(describe(exc))))
            finally:
                merged.put((node, None))

        for node in nodes:
            threading.Thread(target=pump, args=(node,), daemon=True,
                             name="vz-logs " + node).start()
        open_streams = len(nodes)
        while open_streams:
            node, line = merged.get()
            if line is None:
                open_streams -= 1
            else:
                yield node, line

    # -- reading the nodes ----------------------------------------------------------

    def survey(self, desired: dict[str, Desired]) -> dict[str, NodeState]:
        """Every node's state, asked in parallel; ``desired`` apps get a diff."""
        names = list(self.config.nodes)
        self._connect(names)
        states = {}
        reached = [name for name in names if name in self._clients]
        for state in self._each(reached, lambda name: self._read(name, desired)):
            states[state.name] = state
        for name in names:
            if name not in states:
                states[name] = NodeState(name, self._errors.get(name, "not asked"))
        return {name: states[name] for name in names}

    def _read(self, name: str, desired: dict[str, Desired]) -> NodeState:
        firewall_wanted = bool(self.config.nodes[name].firewall)
        try:
            with self._lock(name):
                client = self._clients[name]
                facts = client.hello()
                apps = {info.app: info for info in client.apps()}
                statuses = {status.name: status for status in client.status()}
                diffs = {}
                for app, want in desired.items():
                    if app in apps and want.image is not None:
                        diffs[app] = client.diff(app, want.image.sha256, **want.settings)
                # A node whose vzslave predates the firewall has none to report.
                firewall = client.firewall() if "firewall.status" in client.info.ops else None
        except TransportError as exc:
            self._lost(name, exc)
            return NodeState(name, describe(exc))
        return NodeState(name, None, facts, apps, statuses, diffs, firewall, firewall_wanted)

    def _connect(self, names: Sequence[str]) -> None:
        todo = [name for name in names if name not in self._clients]

        def connect(name: str) -> None:
            options = self.config.node_options(name, self._connect_timeout)
            try:
                self._clients[name] = self._connector(name, options)
                self._errors.pop(name, None)
            except Error as exc:
                self._errors[name] = describe(exc)
            except OSError as exc:  # a key file that cannot be read, ...
                self._errors[name] = str(exc)

        list(self._each(todo, connect))

    # -- deploying ------------------------------------------------------------------

    def _push(self, plan: Plan, desired: dict[str, Desired], events: Events,
              outcomes: list[Outcome]) -> set[tuple[str, str]]:
        """Put each image on the nodes that will deploy it, nodes in parallel; the
        (node, app) pairs whose image is there."""
        wanted: dict[str, list[str]] = {}
        for step in plan.steps:
            if step.action in (ADD, REPLACE):
                wanted.setdefault(step.node, []).append(step.app)
        pushed: set[tuple[str, str]] = set()

        def push_node(node: str) -> None:
            for app in wanted[node]:
                image = desired[app].image
                assert image is not None
                events.stage(node, app, "push", "{} bytes".format(image.size))
                try:
                    self._upload(node, app, image, events)
                except Error as exc:
                    lost = isinstance(exc, TransportError)
                    outcomes.append(Outcome(node, app, "push", "lost" if lost else "failed",
                                            describe(exc)))
                    events.stage(node, app, "failed", describe(exc))
                    if lost:
                        return
                    continue
                pushed.add((node, app))

        list(self._each(list(wanted), push_node))
        return pushed

    def _upload(self, node: str, app: str, image: images.LocalImage, events: Events) -> None:
        def progress(done: int, total: int) -> None:
            events.progress(node, app, done, total)

        self._call(node, lambda c: c.upload_image(image.path, image.name, progress=progress))

    def _roll_app(self, app: str, plan: Plan, want: Desired | None,
                  pushed: set[tuple[str, str]], override: bool,
                  events: Events) -> list[Outcome]:
        """One app's steps: new replicas at once, stopped ones started, running ones
        replaced ``max_unavailable`` at a time; surplus removed once none failed."""
        steps = {step.node: step for step in plan.steps if step.app == app}
        spec = self.config.apps.get(app)
        grace = spec.grace if spec else DEFAULT_GRACE
        outcomes: list[Outcome] = []
        if want is not None and spec is not None:
            def deploy(node: str) -> Outcome:
                return self._deploy_one(steps[node], want, spec, override,
                                        (node, app) in pushed, events)

            adds = [node for node, step in steps.items() if step.action == ADD]
            outcomes += self._batches(app, adds, len(adds), ADD, deploy, events)
            outcomes += [self._start(step, grace, events) for step in steps.values()
                         if step.action == START]
            if not any(o.result == "failed" for o in outcomes):
                outcomes += self._batches(app, [node for node, step in steps.items()
                                                if step.action == REPLACE],
                                          spec.max_unavailable, REPLACE, deploy, events)
        removals = [node for node, step in steps.items() if step.action == REMOVE]
        if any(o.result in ("failed", "lost") for o in outcomes):
            return outcomes + [Outcome(node, app, REMOVE, "skipped", "kept while the "
                                       "rollout is incomplete") for node in removals]

        def remove(node: str) -> Outcome:
            why = steps[node].reasons[0] if steps[node].reasons else "surplus"
            events.stage(node, app, "remove", why)
            self._call(node, lambda c: c.remove_app(app, volumes=False, grace=grace))
            return Outcome(node, app, REMOVE, "ok", "removed ({}); volumes kept".format(why))

        return outcomes + self._batches(app, removals, len(removals), REMOVE, remove, events)

    def _deploy_one(self, step: Step, want: Desired, spec: AppSpec, override: bool,
                    pushed: bool, events: Events) -> Outcome:
        """The node-side deploy of one replica (its steps reported as events)."""
        image = want.image
        if not pushed or image is None:
            return Outcome(step.node, step.app, step.action, "skipped",
                           "its image is not on the node")
        events.stage(step.node, step.app, "deploy", ", ".join(step.reasons))
        info = self._call(step.node, lambda c: c.deploy(
            step.app, image.name, keep=spec.keep, override=override, grace=spec.grace,
            progress=self._steps(step.node, step.app, events), **want.settings))
        events.stage(step.node, step.app, "healthy", "release {}".format(info.release))
        return Outcome(step.node, step.app, step.action, "ok", "release {}".format(
            info.release))

    def _start(self, step: Step, grace: float, events: Events) -> Outcome:
        """A replica stopped by hand runs its current release again, health-checked."""
        events.stage(step.node, step.app, "start", "stopped by hand")
        try:
            current = self._call(step.node, lambda c: next(
                (r.release for r in c.releases(step.app) if r.current), None))
            info = self._call(step.node, lambda c: c.rollback(
                step.app, current, grace=grace,
                progress=self._steps(step.node, step.app, events)))
        except Error as exc:
            return _failed(step.node, step.app, START, exc, events)
        events.stage(step.node, step.app, "healthy", "release {}".format(info.release))
        return Outcome(step.node, step.app, START, "ok", "release {}".format(info.release))

    @staticmethod
    def _steps(node: str, app: str, events: Events) -> Callable[[str, str], None]:
        """The node's steps of a deploy or rollback (unpack, switch, health) as events."""
        def step(stage: str, detail: str) -> None:
            events.stage(node, app, stage, detail)

        return step

    def _batches(self, app: str, nodes: Sequence[str], size: int, action: str,
                 one: Callable[[str], Outcome], events: Events) -> list[Outcome]:
        """Run ``one`` on ``nodes`` ``size`` at a time, each batch done before the next;
        after a batch with a failure the rest are skipped (a lost node is no failure of
        the app: the rollout goes on without it)."""
        outcomes: list[Outcome] = []
        size = max(size, 1)
        for start in range(0, len(nodes), size):
            batch = nodes[start:start + size]

            def guarded(node: str) -> Outcome:
                try:
                    return one(node)
                except Error as exc:
                    return _failed(node, app, action, exc, events)

            done = list(self._each(batch, guarded))
            outcomes += done
            if any(o.result == "failed" for o in done):
                outcomes += [Outcome(node, app, action, "skipped",
                                     "not started: an earlier batch failed")
                             for node in nodes[start + len(batch):]]
                break
        return outcomes

    def _apply_firewall(self, steps: Sequence[FirewallStep], events: Events) -> list[Outcome]:
        def one(step: FirewallStep) -> Outcome:
            events.stage(step.node, "", "firewall", step.action)
            try:
                if step.action == "remove":
                    self._call(step.node, lambda c: c.remove_firewall())
                else:
                    port = self.config.node_options(step.node).port or 22
                    self._call(step.node, lambda c: c.apply_firewall(
                        list(step.ports), ssh_port=port))
            except Error as exc:
                return _failed(step.node, "", "firewall", exc, events)
            return Outcome(step.node, "", "firewall", "ok", "{}: {}".format(
                step.action, ", ".join(step.ports) or "SSH only"))

        return list(self._each([s for s in steps if s.action != KEEP], one))

    # -- desired state --------------------------------------------------------------

    def _selected(self, apps: Sequence[str] | None) -> list[str]:
        if not apps:
            return list(self.config.apps)
        for app in apps:
            self._spec(app)
        return list(dict.fromkeys(apps))

    def _spec(self, app: str) -> AppSpec:
        try:
            return self.config.apps[app]
        except KeyError:
            raise FleetError("app {!r} is not in {} (it has: {})".format(
                app, self.config.path, ", ".join(self.config.apps) or "no apps")) from None

    def _desired(self, build: bool, events: Events,
                 only: Iterable[str] | None = None) -> dict[str, Desired]:
        """Every declared app's placement needs; for the apps in ``only`` (default all)
        also their image (built when its inputs changed, with ``build``) and settings."""
        wanted = set(self.config.apps if only is None else only)
        found = {}
        for name, spec in self.config.apps.items():
            image: images.LocalImage | None = None
            settings: dict[str, Any] = {}
            if name in wanted:
                image = self._image(spec, build, events)
                settings = self._settings(spec)
            found[name] = Desired(
                name, image, settings, self.config.wanted_count(name),
                tuple(self.config.eligible_nodes(name)), tuple(str(p) for p in spec.ports))
        return found

    def _image(self, spec: AppSpec, build: bool, events: Events) -> images.LocalImage | None:
        if spec.image is not None:
            try:
                return images.file_image(spec.name, spec.image, self._digests)
            except OSError as exc:
                raise FleetError("app {}: cannot read its image {}: {}".format(
                    spec.name, spec.image, exc.strerror or exc)) from exc
        assert spec.build is not None
        image = images.cached_build(self.config.directory, spec.name, spec.build)
        if image is None and build:
            events.stage("", spec.name, "build")
            image = images.build(self.config.directory, spec.name, spec.build)
            events.stage("", spec.name, "built", "{} bytes".format(image.size))
        return image

    def _settings(self, spec: AppSpec) -> dict[str, Any]:
        settings: dict[str, Any] = dict(spec.start)
        settings.update(env=dict(spec.env), volumes=dict(spec.volumes),
                        labels={FLEET_LABEL: self.config.name})
        secrets = self.config.secret_values(spec.name) if spec.secrets else {}
        settings["secrets"] = _Secrets(secrets)
        if spec.health is not None:
            settings["health"] = dict(spec.health)
        if spec.release is not None:
            settings["release"] = list(spec.release)
        return settings

    # -- plumbing -------------------------------------------------------------------

    def _lock(self, node: str) -> threading.Lock:
        return self._locks.setdefault(node, threading.Lock())

    def _call(self, node: str, call: Callable[[Client], T]) -> T:
        """One call on ``node``'s session; a broken link forgets the session."""
        client = self._clients.get(node)
        if client is None:
            raise _NodeGone(self._errors.get(node, "not connected"))
        try:
            with self._lock(node):
                return call(client)
        except TransportError as exc:
            self._lost(node, exc)
            raise

    def _lost(self, node: str, exc: Error) -> None:
        client = self._clients.pop(node, None)
        if client is not None:
            client.close()
        self._errors[node] = describe(exc)

    def _release(self, node: str, app: str, number: int | None) -> ReleaseInfo | None:
        if number is None:
            return None
        found = self._call(node, lambda c: c.releases(app))
        return next((r for r in found if r.release == number), None)

    def _each(self, items: Sequence[Any], work: Callable[[Any], T]) -> Iterator[T]:
        """``work`` on every item, at most ``parallel`` at once, results in order."""
        if len(items) <= 1:
            yield from (work(item) for item in items)
            return
        yield from self._pool.map(work, items)


class _NodeGone(TransportError):
    """The node's session broke earlier in this command."""


def _failed(node: str, app: str, action: str, exc: Error, events: Events) -> Outcome:
    lost = isinstance(exc, TransportError)
    detail = describe(exc)
    if lost:
        detail += " (the node went away; rerun deploy to place its replicas elsewhere)"
    events.stage(node, app, "lost" if lost else "failed", detail)
    return Outcome(node, app, action, "lost" if lost else "failed", detail)


def _replica(app: str, node: str, current: int | None, release: ReleaseInfo | None,
             status: ContainerStatus | None, state: str, health: str) -> Replica:
    return Replica(app=app, node=node, release=current,
                   image=release.image if release else None,
                   state=status.state if status else state,
                   pid=status.pid if status else None,
                   uptime=status.uptime if status else None,
                   restarts=status.restarts if status else 0, health=health)
