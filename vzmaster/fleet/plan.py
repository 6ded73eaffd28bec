"""Desired against actual: what a deploy would do on each node, as data (no I/O).

``make_plan`` takes what vz.yml declares (``Desired``, one per app), what every node that
answered reported (``NodeState``), and the placement, and says per node and app: add,
replace (and why), start (stopped by hand), remove (a surplus replica, or an app no
longer declared), keep, or leave alone (disabled by the node's administrator); then the
firewall of each node that has one, and every drift it saw.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple

from vzmaster.fleet.images import LocalImage
from vzmaster.fleet.placement import Candidate, Demand, Placement, place
from vzslave.records import AppDiff, AppInfo, ContainerStatus, NodeFacts
from vzslave.states import ContainerState

FLEET_LABEL = "vz.fleet"  # the label that marks an app deployed by a fleet: its name

ADD, REPLACE, START, REMOVE, KEEP, LEAVE = "add", "replace", "start", "remove", "keep", "leave"
CHANGES = (ADD, REPLACE, START, REMOVE)


class Desired(NamedTuple):
    """One app as vz.yml declares it, in the terms a node's deploy takes."""

    app: str
    image: LocalImage | None  # None: a build is pending (plan without building)
    settings: dict[str, Any]  # app.deploy's: env, secrets, volumes, health, release, labels,
    # and the start options
    replicas: int | None  # None: one on each eligible node
    eligible: tuple[str, ...]  # the nodes its ``nodes:`` allows, in vz.yml's order
    ports: tuple[str, ...]  # "8080/tcp", ...


class NodeState(NamedTuple):
    """What one node reported, or why it could not be asked."""

    name: str
    error: str | None  # unreachable: why; None when it answered
    facts: NodeFacts | None = None
    apps: dict[str, AppInfo] = {}
    statuses: dict[str, ContainerStatus] = {}
    diffs: dict[str, AppDiff] = {}  # for the declared apps the node has
    firewall: Any = None  # FirewallStatus of a node with ``firewall: true``
    firewall_wanted: bool = False


class Step(NamedTuple):
    """What a deploy does to one app on one node."""

    node: str
    app: str
    action: str  # ADD, REPLACE, START, REMOVE, KEEP or LEAVE
    reasons: tuple[str, ...] = ()  # what differs, or why


class FirewallStep(NamedTuple):
    """What a deploy does to one node's firewall chain."""

    node: str
    action: str  # "apply", "remove" or KEEP
    ports: tuple[str, ...]  # what vz's chain opens (besides SSH) once done
    drift: tuple[str, ...]  # edits of vz's chain by hand, as the node reported them


class Plan(NamedTuple):
    """Everything a deploy would do, and what it cannot."""

    steps: list[Step]
    firewall: list[FirewallStep]
    unreachable: dict[str, str]  # node -> why
    warnings: list[str]
    errors: list[str]  # a deploy refuses to start while there are any
    placement: Placement

    @property
    def changes(self) -> list[Step]:
        """The steps that change something."""
        return [step for step in self.steps if step.action in CHANGES]


def make_plan(desired: Mapping[str, Desired], states: Mapping[str, NodeState],
              fleet: str, only: Iterable[str] | None = None, override: bool = False) -> Plan:
    """The plan for the apps in ``only`` (default: all, and undeclared apps of the fleet
    are removed), given every declared app (placement weighs them all)."""
    selected = set(desired) if only is None else set(only)
    reached = {name: state for name, state in states.items() if state.error is None}
    unreachable = {name: str(state.error) for name, state in states.items()
                   if state.error is not None}
    placement = place(
        [Demand(d.app, d.replicas, d.eligible, frozenset(d.ports)) for d in desired.values()],
        [_candidate(state) for state in reached.values()])
    steps: list[Step] = []
    warnings: list[str] = []
    for app in sorted(selected):
        want = desired[app]
        targets = placement.nodes.get(app, ())
        for node in targets:
            steps.append(_step(node, want, reached[node], override))
        for node, state in sorted(reached.items()):
            if node in targets or app not in state.apps:
                continue
            if state.apps[app].labels.get(FLEET_LABEL) == fleet:
                steps.append(Step(node, app, REMOVE, ("surplus: placed on {}".format(
                    ", ".join(targets) or "no node"),)))
            else:
                warnings.append("{} on {}: not deployed by fleet {!r}; left alone".format(
                    app, node, fleet))
        lost = sorted(node for node in unreachable if node in want.eligible)
        if app in placement.short:
            warnings.append("{}: {} of {} replicas found no node (nodes that answered and "
                            "its nodes: allows: {})".format(
                                app, placement.short[app], want.replicas,
                                ", ".join(n for n in want.eligible if n in reached)
                                or "none"))
        elif want.replicas is not None and lost:
            warnings.append("{}: node{} {} did not answer; its replicas are placed on the "
                            "nodes that did".format(app, "s" if len(lost) > 1 else "",
                                                    ", ".join(lost)))
        elif lost:
            warnings.append("{}: node{} {} did not answer; {} replica there is not "
                            "updated".format(app, "s" if len(lost) > 1 else "",
                                             ", ".join(lost), "each" if len(lost) > 1
                                             else "its"))
    if only is None:
        for node, state in sorted(reached.items()):
            for app, info in sorted(state.apps.items()):
                if app not in desired and info.labels.get(FLEET_LABEL) == fleet:
                    steps.append(Step(node, app, REMOVE, ("no longer in vz.yml",)))
    for step in steps:
        if step.action == LEAVE:
            warnings.append("{} on {}: {}".format(step.app, step.node, step.reasons[0]))
    return Plan(steps, _firewall(desired, reached, placement), unreachable, warnings,
                list(placement.clashes), placement)


def _candidate(state: NodeState) -> Candidate:
    runs = frozenset(app for app, info in state.apps.items() if info.current is not None)
    facts = state.facts
    return Candidate(state.name, runs, facts.mem_available if facts else 0,
                     facts.free_bytes if facts else 0)


def _step(node: str, want: Desired, state: NodeState, override: bool) -> Step:
    info = state.apps.get(want.app)
    if info is None or info.current is None:
        return Step(node, want.app, ADD, ("new",))
    diff = state.diffs.get(want.app)
    changes = ["image (to build)"] if want.image is None else list(
        diff.changes if diff else ["unknown"])
    status = state.statuses.get(want.app)
    current = status.state if status else info.state
    if current == ContainerState.DISABLED:
        if not override:
            return Step(node, want.app, LEAVE, (
                "its inittab line was disabled by the node's administrator; left alone "
                "(deploy --override restores it)",))
        return Step(node, want.app, REPLACE, tuple(changes) + ("restore (--override)",))
    if changes:
        return Step(node, want.app, REPLACE, tuple(changes))
    if current == ContainerState.STOPPED:
        return Step(node, want.app, START, ("stopped by hand",))
    return Step(node, want.app, KEEP)


def _firewall(desired: Mapping[str, Desired], reached: Mapping[str, NodeState],
              placement: Placement) -> list[FirewallStep]:
    found = []
    for node, state in sorted(reached.items()):
        active = bool(state.firewall is not None and state.firewall.active)
        if not state.firewall_wanted:
            if active:
                found.append(FirewallStep(node, "remove", (), ()))
            continue
        ports = tuple(sorted({port for app, nodes in placement.nodes.items()
                              if node in nodes for port in desired[app].ports}))
        drift = tuple(state.firewall.drift) if state.firewall is not None else ()
        same = active and sorted(state.firewall.ports) == sorted(ports)
        found.append(FirewallStep(node, KEEP if same and not drift else "apply", ports, drift))
    return found
