"""Where each app's replicas go: a pure function of what is declared and what the nodes
that answered report.

The rules, in order:

1. Only nodes that answered are candidates, and only those an app's ``nodes:`` allows.
2. An app pinned to nodes (``nodes:`` without ``replicas``) gets one replica on each of
   them; ``replicas: N`` gets N replicas on N distinct nodes.
3. Two apps that declare the same port never share a node. Pinned apps that would are a
   clash (refused before any change); a replicated app goes around them.
4. Stability first: a node that already runs the app keeps it. Then the node with the
   fewest apps placed, then the most available memory, then the most free disk, then
   the name (so the same inputs always give the same answer).

Apps keep the nodes they run on before any new replica is placed, so an app that is
already placed is never pushed off its nodes by one that is not.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence


class Candidate(NamedTuple):
    """A node as placement sees it."""

    name: str
    runs: frozenset[str] = frozenset()  # apps that have a replica there now
    mem_available: int = 0  # bytes
    free_bytes: int = 0  # disk under the node's state root


class Demand(NamedTuple):
    """What one app asks for."""

    app: str
    replicas: int | None  # None: one on each eligible node
    eligible: tuple[str, ...]  # the nodes its ``nodes:`` allows (all of them without)
    ports: frozenset[str] = frozenset()  # "8080/tcp", ...


class Placement(NamedTuple):
    """Each app's nodes, and what could not be met."""

    nodes: dict[str, tuple[str, ...]]  # app -> its nodes, in preference order
    short: dict[str, int]  # app -> replicas that found no node
    clashes: list[str]  # port clashes of pinned apps, one sentence each


def place(demands: Sequence[Demand], candidates: Sequence[Candidate]) -> Placement:
    """Place every app's replicas on the candidates (the nodes that answered)."""
    by_name = {node.name: node for node in candidates}
    chosen: dict[str, list[str]] = {demand.app: [] for demand in demands}
    ports_on: dict[str, dict[str, str]] = {name: {} for name in by_name}  # port -> app
    clashes: list[str] = []

    def fits(demand: Demand, node: str) -> bool:
        return all(ports_on[node].get(port, demand.app) == demand.app
                   for port in demand.ports)

    def take(demand: Demand, node: str) -> None:
        chosen[demand.app].append(node)
        for port in demand.ports:
            ports_on[node][port] = demand.app

    def load(node: str) -> int:
        return sum(node in nodes for nodes in chosen.values())

    # Pinned apps first: they have no choice, so the others go around them.
    for demand in sorted((d for d in demands if d.replicas is None), key=lambda d: d.app):
        for node in _reachable(demand, by_name):
            if fits(demand, node):
                take(demand, node)
            else:
                other = next(ports_on[node][port] for port in sorted(demand.ports)
                             if ports_on[node].get(port, demand.app) != demand.app)
                clashes.append("apps {} and {} both declare port {} and are both pinned "
                               "to node {}".format(other, demand.app, ", ".join(
                                   sorted(demand.ports & _ports_of(other, demands))), node))
    replicated = sorted((d for d in demands if d.replicas is not None), key=lambda d: d.app)
    # Then every replicated app keeps the nodes it runs on (stability) ...
    for demand in replicated:
        keep = [node for node in _reachable(demand, by_name)
                if demand.app in by_name[node].runs and fits(demand, node)]
        for node in sorted(keep, key=lambda n: _preference(by_name[n], load(n)))[
                :demand.replicas]:
            take(demand, node)
    # ... and only then are the missing replicas placed, least loaded node first.
    for demand in replicated:
        assert demand.replicas is not None
        while len(chosen[demand.app]) < demand.replicas:
            free = [node for node in _reachable(demand, by_name)
                    if node not in chosen[demand.app] and fits(demand, node)]
            if not free:
                blocked = [node for node in _reachable(demand, by_name)
                           if node not in chosen[demand.app]]
                if blocked:
                    clashes.append("app {} needs {} replicas, but nodes {} already run "
                                   "apps with its ports ({})".format(
                                       demand.app, demand.replicas, ", ".join(blocked),
                                       ", ".join(sorted(demand.ports))))
                break
            take(demand, min(free, key=lambda n: _preference(by_name[n], load(n))))
    short = {demand.app: demand.replicas - len(chosen[demand.app]) for demand in replicated
             if demand.replicas is not None and len(chosen[demand.app]) < demand.replicas}
    return Placement({app: tuple(nodes) for app, nodes in chosen.items()}, short, clashes)


def _reachable(demand: Demand, by_name: dict[str, Candidate]) -> list[str]:
    return [node for node in demand.eligible if node in by_name]


def _preference(node: Candidate, load: int) -> tuple[int, int, int, str]:
    return (load, -node.mem_available, -node.free_bytes, node.name)


def _ports_of(app: str, demands: Iterable[Demand]) -> frozenset[str]:
    return next((d.ports for d in demands if d.app == app), frozenset())
