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
from vzmaster.errors import TransportError
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
from vzslave.errors import Error, HealthCheckError, VzError, code_name
from vzslave.records import ContainerStatus, ReleaseInfo

T = TypeVar("T")
Connector = Callable[[str, SSHOptions], Client]
DEFAULT_PARALLEL = 8


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
                 digests: DigestCache | None = None,
                 environ: dict[str, str] | None = None) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.config = config
        self.parallel = parallel
        self._connect_timeout = connect_timeout
        self._connector = connector or (lambda name, options: Client(
            options=options, digests=self._digests))
        self._digests = digests or DigestCache()
        self._environ = environ
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
            info = self._call(node, lambda c: c.rollback(app, to, grace=spec.grace))
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
        ``(node, None-marked line)`` via a line starting with "vz: "."""
        self._spec(app)
        states = self.survey({})
        nodes = [name for name, state in states.items()
                 if state.error is None and app in state.apps]
        for name, state in states.items():
            if state.error is not None:
                yield name, "vz: did not answer: {}".format(state.error)
        if not nodes:
            return
        merged: queue.Queue[tuple[str, str | None]] = queue.Queue(maxsize=1024)

        def pump(node: str) -> None:
            try:
                with self._lock(node):
                    for line in self._clients[node].logs(app, tail=lines, follow=follow):
                        merged.put((node, line))
            except Error as exc:
                merged.put((node, "vz: {}".format(_describe(exc))))
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
            return NodeState(name, _describe(exc))
        return NodeState(name, None, facts, apps, statuses, diffs, firewall, firewall_wanted)

    def _connect(self, names: Sequence[str]) -> None:
        todo = [name for name in names if name not in self._clients]

        def connect(name: str) -> None:
            options = self.config.node_options(name, self._connect_timeout)
            try:
                self._clients[name] = self._connector(name, options)
                self._errors.pop(name, None)
            except Error as exc:
                self._errors[name] = _describe(exc)
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
                                            _describe(exc)))
                    events.stage(node, app, "failed", _describe(exc))
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
        steps = [step for step in plan.steps if step.app == app]
        outcomes: list[Outcome] = []
        spec = self.config.apps.get(app)
        grace = spec.grace if spec else 10.0
        if want is not None and spec is not None:
            def change(step: Step) -> Outcome:
                if (step.node, app) not in pushed:
                    return Outcome(step.node, app, step.action, "skipped",
                                   "its image is not on the node")
                image = want.image
                assert image is not None
                events.stage(step.node, app, "deploy", ", ".join(step.reasons))
                info = self._call(step.node, lambda c: c.deploy(
                    app, image.name, keep=spec.keep,
                    override=override, grace=grace, **want.settings))
                events.stage(step.node, app, "healthy", "release {}".format(info.release))
                return Outcome(step.node, app, step.action, "ok",
                               "release {}".format(info.release))

            adds = [s.node for s in steps if s.action == ADD]
            starts = [s for s in steps if s.action == START]
            rolling = [s.node for s in steps if s.action == REPLACE]
            by_node = {s.node: s for s in steps}
            outcomes += self._batches(app, adds, len(adds) or 1, ADD,
                                      lambda node: change(by_node[node]), events)
            for step in starts:
                outcomes.append(self._start(step, grace, events))
            if not [o for o in outcomes if o.result == "failed"]:
                outcomes += self._batches(app, rolling, spec.max_unavailable, REPLACE,
                                          lambda node: change(by_node[node]), events)
        removals = [s for s in steps if s.action == REMOVE]
        if [o for o in outcomes if o.result in ("failed", "lost")]:
            outcomes += [Outcome(s.node, app, REMOVE, "skipped",
                                 "kept while the rollout is incomplete") for s in removals]
            return outcomes

        def remove(node: str) -> Outcome:
            events.stage(node, app, "remove", by_node_reason[node])
            self._call(node, lambda c: c.remove_app(app, volumes=False, grace=grace))
            return Outcome(node, app, REMOVE, "ok", "removed ({}); volumes kept".format(
                by_node_reason[node]))

        by_node_reason = {s.node: s.reasons[0] if s.reasons else "" for s in removals}
        outcomes += self._batches(app, [s.node for s in removals], len(removals) or 1,
                                  REMOVE, remove, events)
        return outcomes

    def _start(self, step: Step, grace: float, events: Events) -> Outcome:
        """A replica stopped by hand runs its current release again, health-checked."""
        events.stage(step.node, step.app, "start", "stopped by hand")
        try:
            current = self._call(step.node, lambda c: next(
                (r.release for r in c.releases(step.app) if r.current), None))
            info = self._call(step.node, lambda c: c.rollback(step.app, current, grace=grace))
        except Error as exc:
            return _failed(step.node, step.app, START, exc, events)
        events.stage(step.node, step.app, "healthy", "release {}".format(info.release))
        return Outcome(step.node, step.app, START, "ok", "release {}".format(info.release))

    def _batches(self, app: str, nodes: Sequence[str], size: int, action: str,
                 one: Callable[[str], Outcome], events: Events) -> list[Outcome]:
        """Run ``one`` on ``nodes`` ``size`` at a time, each batch done before the next;
        after a batch with a failure the rest are skipped (a lost node is no failure of
        the app: the rollout goes on without it)."""
        outcomes: list[Outcome] = []
        for start in range(0, len(nodes), max(size, 1)):
            batch = nodes[start:start + max(size, 1)]

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
        """Every declared app's release settings and image; images of the apps in
        ``only`` (default all) are built when their inputs changed, with ``build``."""
        wanted = set(self.config.apps if only is None else only)
        found = {}
        for name, spec in self.config.apps.items():
            image: images.LocalImage | None = None
            if spec.image is not None:
                image = images.file_image(name, spec.image, self._digests)
            elif spec.build is not None:
                image = images.cached_build(self.config.directory, name, spec.build)
                if image is None and build and name in wanted:
                    events.stage("", name, "build")
                    image = images.build(self.config.directory, name, spec.build)
                    events.stage("", name, "built", "{} bytes".format(image.size))
            found[name] = Desired(
                name, image, self._settings(spec), self.config.wanted_count(name),
                tuple(self.config.eligible_nodes(name)), tuple(str(p) for p in spec.ports))
        return found

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
        self._errors[node] = _describe(exc)

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


def _describe(exc: Error) -> str:
    if isinstance(exc, VzError):
        return "{}: {}".format(code_name(exc.code_number), exc.message)
    return exc.message or type(exc).__name__


def _failed(node: str, app: str, action: str, exc: Error, events: Events) -> Outcome:
    lost = isinstance(exc, TransportError)
    detail = _describe(exc)
    if isinstance(exc, HealthCheckError):
        log = exc.details.get("log")
        if isinstance(log, str) and log.strip():
            detail += "\nlast lines of its log:\n" + "\n".join(
                "  " + line for line in log.strip().splitlines()[-10:])
    elif lost:
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
