"""Placement as a pure function: distinct nodes, the count met when enough nodes answer,
stable assignments, groups (eligible nodes) and ports respected."""

from hypothesis import given, settings
from hypothesis import strategies as st

from vzmaster.fleet.placement import Candidate, Demand, place

GiB = 1 << 30


def nodes(*names, runs=None, mem=None):
    runs = runs or {}
    mem = mem or {}
    return [Candidate(name, frozenset(runs.get(name, ())), mem.get(name, GiB), 10 * GiB)
            for name in names]


def test_replicas_go_on_distinct_nodes():
    placed = place([Demand("web", 2, ("a", "b", "c"))], nodes("a", "b", "c"))
    assert len(set(placed.nodes["web"])) == 2


def test_a_node_that_runs_the_app_keeps_it():
    placed = place([Demand("web", 1, ("a", "b", "c"))], nodes("a", "b", "c", runs={"c": ["web"]}))
    assert placed.nodes["web"] == ("c",)


def test_new_replicas_prefer_the_node_with_fewer_apps():
    demands = [Demand("db", 1, ("a", "b")), Demand("web", 1, ("a", "b"))]
    placed = place(demands, nodes("a", "b", runs={"a": ["db"]}))
    assert placed.nodes == {"db": ("a",), "web": ("b",)}


def test_between_equal_loads_more_available_memory_wins():
    placed = place([Demand("web", 1, ("a", "b"))], nodes("a", "b", mem={"b": 2 * GiB}))
    assert placed.nodes["web"] == ("b",)


def test_an_unreachable_nodes_replica_goes_to_another_node():
    """When a node that ran a replica does not answer, its replica goes elsewhere."""
    placed = place([Demand("web", 2, ("a", "b", "c"))],
                   nodes("b", "c", runs={"b": ["web"]}))  # a ran it, a is gone
    assert sorted(placed.nodes["web"]) == ["b", "c"]
    assert placed.short == {}


def test_a_returning_node_makes_one_replica_surplus():
    placed = place([Demand("web", 2, ("a", "b", "c"))],
                   nodes("a", "b", "c", runs={"a": ["web"], "b": ["web"], "c": ["web"]}))
    assert len(placed.nodes["web"]) == 2


def test_too_few_nodes_leave_the_app_short():
    placed = place([Demand("web", 3, ("a", "b", "c"))], nodes("a", "b"))
    assert placed.short == {"web": 1}
    assert placed.clashes == []


def test_a_pinned_app_gets_one_replica_on_each_of_its_nodes():
    placed = place([Demand("agent", None, ("a", "c"))], nodes("a", "b", "c"))
    assert placed.nodes["agent"] == ("a", "c")


def test_apps_with_the_same_port_never_share_a_node():
    demands = [Demand("web", 1, ("a", "b"), frozenset({"80/tcp"})),
               Demand("proxy", 1, ("a", "b"), frozenset({"80/tcp"}))]
    placed = place(demands, nodes("a", "b"))
    assert {placed.nodes["web"], placed.nodes["proxy"]} == {("a",), ("b",)}


def test_pinned_apps_with_the_same_port_on_one_node_are_a_clash():
    demands = [Demand("web", None, ("a",), frozenset({"80/tcp"})),
               Demand("proxy", None, ("a",), frozenset({"80/tcp"}))]
    placed = place(demands, nodes("a"))
    assert placed.clashes == ["apps proxy and web both declare port 80/tcp and are both "
                              "pinned to node a"]


def test_a_replicated_app_that_only_fits_where_its_port_is_taken_is_a_clash():
    demands = [Demand("web", None, ("a",), frozenset({"80/tcp"})),
               Demand("proxy", 1, ("a",), frozenset({"80/tcp"}))]
    placed = place(demands, nodes("a"))
    assert placed.clashes == ["app proxy needs 1 replicas, but nodes a already run apps "
                              "with its ports (80/tcp)"]


def test_the_same_port_over_udp_and_tcp_does_not_clash():
    demands = [Demand("dns", None, ("a",), frozenset({"53/udp"})),
               Demand("web", None, ("a",), frozenset({"53/tcp"}))]
    assert place(demands, nodes("a")).clashes == []


# -- properties ---------------------------------------------------------------------------

NAMES = ["n{}".format(i) for i in range(8)]
APPS = ["app{}".format(i) for i in range(4)]


@st.composite
def fleets(draw):
    reachable = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=8))
    runs = {name: draw(st.frozensets(st.sampled_from(APPS))) for name in reachable}
    candidates = [Candidate(name, runs[name], draw(st.integers(0, 4)) * GiB,
                            draw(st.integers(0, 4)) * GiB) for name in reachable]
    demands = []
    for app in draw(st.lists(st.sampled_from(APPS), unique=True, min_size=1)):
        eligible = tuple(draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1)))
        demands.append(Demand(app, draw(st.integers(1, 8)), eligible))
    return demands, candidates


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_replicas_land_on_distinct_reachable_eligible_nodes(fleet):
    demands, candidates = fleet
    placed = place(demands, candidates)
    reachable = {node.name for node in candidates}
    for demand in demands:
        chosen = placed.nodes[demand.app]
        assert len(set(chosen)) == len(chosen)
        assert set(chosen) <= set(demand.eligible) & reachable


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_the_count_is_met_when_enough_eligible_nodes_answer(fleet):
    demands, candidates = fleet
    placed = place(demands, candidates)
    reachable = {node.name for node in candidates}
    for demand in demands:
        available = len(set(demand.eligible) & reachable)
        assert len(placed.nodes[demand.app]) == min(demand.replicas, available)
        assert placed.short.get(demand.app, 0) == demand.replicas - min(demand.replicas, available)


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_nodes_that_run_an_app_keep_it_up_to_its_count(fleet):
    demands, candidates = fleet
    placed = place(demands, candidates)
    for demand in demands:
        running = [node.name for node in candidates
                   if demand.app in node.runs and node.name in demand.eligible]
        kept = [node for node in placed.nodes[demand.app] if node in running]
        assert len(kept) == min(len(running), demand.replicas)


@settings(max_examples=200, deadline=None)
@given(fleets())
def test_placing_again_what_was_placed_changes_nothing(fleet):
    """When every app runs where it was placed, placing again moves nothing."""
    demands, candidates = fleet
    first = place(demands, candidates)
    runs = {node.name: frozenset(app for app, chosen in first.nodes.items()
                                 if node.name in chosen) for node in candidates}
    again = place(demands, [node._replace(runs=runs[node.name]) for node in candidates])
    assert {app: set(chosen) for app, chosen in again.nodes.items()} == {
        app: set(chosen) for app, chosen in first.nodes.items()}


@settings(max_examples=200, deadline=None)
@given(fleets(), st.sampled_from(["80/tcp", "443/tcp"]))
def test_apps_sharing_a_port_never_share_a_node(fleet, port):
    demands, candidates = fleet
    demands = [demand._replace(ports=frozenset({port})) for demand in demands]
    placed = place(demands, candidates)
    for node in candidates:
        assert sum(node.name in chosen for chosen in placed.nodes.values()) <= 1
