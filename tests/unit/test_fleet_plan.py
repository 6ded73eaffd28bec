"""The plan against fake node states: add, replace and why, start, remove, keep, leave;
the firewall; unreachable nodes; refusals."""

from vzmaster.fleet.images import LocalImage
from vzmaster.fleet.plan import FLEET_LABEL, Desired, NodeState, make_plan
from vzslave.records import AppDiff, AppInfo, ContainerStatus, NodeFacts

FLEET = "shop"
IMAGE = LocalImage("web", "/i/web.tar", "ab" * 32, 10, "web-abababababab.tar", False)


def desired(app="web", replicas=2, eligible=("a", "b", "c"), ports=("8080/tcp",),
            image=IMAGE):
    return {app: Desired(app, image, {}, replicas, eligible, ports)}


def facts(mem=1 << 30):
    return NodeFacts(1, "1", "h", "6.1", "x86_64", "busybox", "3.11", "/var/lib/vz", 0,
                     1 << 30, 1000, ["tar"], mem, mem)


def app(name="web", current=1, state="running", fleet=FLEET):
    return AppInfo(name, current, [current] if current else [], 3, state, [],
                   {FLEET_LABEL: fleet} if fleet else {})


def status(name="web", state="running"):
    return ContainerStatus(name, state, 10, 5.0, 0, None, None, None, "busybox", "builtin",
                           None, "/b", "/l")


def node(name, apps=(), changes=None, state="running", firewall=None, wanted=False):
    infos = {info.app: info for info in apps}
    diffs = {info.app: AppDiff(info.app, info.current, list(changes or []), state)
             for info in apps}
    statuses = {info.app: status(info.app, state) for info in apps}
    return NodeState(name, None, facts(), infos, statuses, diffs, firewall, wanted)


def gone(name):
    return NodeState(name, "cannot reach {} port 22: timed out".format(name))


def actions(plan):
    return sorted((s.node, s.app, s.action) for s in plan.steps)


def test_a_new_app_is_added_on_as_many_nodes_as_replicas():
    plan = make_plan(desired(), {n: node(n) for n in "abc"}, FLEET)
    assert [s.action for s in plan.steps] == ["add", "add"]


def test_a_replica_whose_settings_differ_is_replaced_naming_what_differs():
    states = {"a": node("a", [app()], ["image", "env"]), "b": node("b", [app()]),
              "c": node("c")}
    plan = make_plan(desired(), states, FLEET)
    assert [(s.node, s.action, s.reasons) for s in plan.steps] == [
        ("a", "replace", ("image", "env")), ("b", "keep", ())]


def test_nothing_changed_means_no_changes():
    states = {"a": node("a", [app()]), "b": node("b", [app()]), "c": node("c")}
    assert make_plan(desired(), states, FLEET).changes == []


def test_a_replica_stopped_by_hand_is_started():
    states = {"a": node("a", [app(state="stopped")], state="stopped"), "b": node("b", [app()]),
              "c": node("c")}
    plan = make_plan(desired(), states, FLEET)
    assert ("a", "web", "start") in actions(plan)


def test_a_replica_disabled_by_the_administrator_is_left_alone_with_a_warning():
    states = {"a": node("a", [app(state="disabled")], state="disabled"),
              "b": node("b", [app()]), "c": node("c")}
    plan = make_plan(desired(), states, FLEET)
    assert ("a", "web", "leave") in actions(plan)
    assert any("disabled by the node's administrator" in w for w in plan.warnings)


def test_override_restores_a_disabled_replica():
    states = {"a": node("a", [app(state="disabled")], state="disabled"),
              "b": node("b", [app()]), "c": node("c")}
    plan = make_plan(desired(), states, FLEET, override=True)
    [step] = [s for s in plan.steps if s.node == "a"]
    assert step.action == "replace" and "restore (--override)" in step.reasons


def test_an_unreachable_nodes_replica_is_placed_on_a_node_that_answered():
    states = {"a": gone("a"), "b": node("b", [app()]), "c": node("c")}
    plan = make_plan(desired(), states, FLEET)
    assert actions(plan) == [("b", "web", "keep"), ("c", "web", "add")]
    assert plan.unreachable == {"a": "cannot reach a port 22: timed out"}
    assert plan.warnings == ["web: node a did not answer; its replicas are placed on the "
                             "nodes that did"]


def test_a_surplus_replica_of_the_fleet_is_removed():
    states = {n: node(n, [app()]) for n in "abc"}
    plan = make_plan(desired(), states, FLEET)
    [removal] = [s for s in plan.steps if s.action == "remove"]
    assert removal.reasons[0].startswith("surplus: placed on ")


def test_an_app_of_another_fleet_is_left_alone():
    states = {"a": node("a", [app(fleet="other")]), "b": node("b"), "c": node("c")}
    plan = make_plan(desired(replicas=1, eligible=("b",)), states, FLEET)
    assert ("a", "web", "remove") not in actions(plan)
    assert plan.warnings == ["web on a: not deployed by fleet 'shop'; left alone"]


def test_an_app_no_longer_declared_is_removed_only_by_a_whole_fleet_plan():
    states = {"a": node("a", [app("old")]), "b": node("b"), "c": node("c")}
    whole = make_plan(desired(), states, FLEET)
    only_web = make_plan(desired(), states, FLEET, only=["web"])
    assert ("a", "old", "remove") in actions(whole)
    assert ("a", "old", "remove") not in actions(only_web)


def test_an_image_still_to_build_shows_as_such():
    states = {"a": node("a", [app()]), "b": node("b"), "c": node("c")}
    plan = make_plan(desired(image=None, replicas=1), states, FLEET)
    assert plan.steps[0].reasons == ("image (to build)",)


def test_too_few_nodes_is_a_warning_not_an_error():
    states = {"a": node("a"), "b": gone("b"), "c": gone("c")}
    plan = make_plan(desired(), states, FLEET)
    assert plan.errors == []
    assert any("1 of 2 replicas found no node" in w for w in plan.warnings)


def test_a_port_clash_is_an_error():
    apps = {**desired("web", None, ("a",)), **desired("proxy", None, ("a",))}
    plan = make_plan(apps, {"a": node("a")}, FLEET)
    assert plan.errors == ["apps proxy and web both declare port 8080/tcp and are both "
                           "pinned to node a"]


class Firewall:
    def __init__(self, active=True, ports=(), drift=()):
        self.active, self.ports, self.drift = active, list(ports), list(drift)


def test_a_firewall_node_opens_the_ports_of_the_apps_placed_there():
    states = {"a": node("a", firewall=Firewall(active=False), wanted=True)}
    plan = make_plan(desired(replicas=1, eligible=("a",)), states, FLEET)
    assert [(f.node, f.action, f.ports) for f in plan.firewall] == [
        ("a", "apply", ("8080/tcp",))]


def test_a_firewall_as_declared_is_kept_and_an_edited_one_applied_again():
    wanted = desired(replicas=1, eligible=("a",))
    same = make_plan(wanted, {"a": node("a", [app()], firewall=Firewall(
        ports=["8080/tcp"]), wanted=True)}, FLEET)
    edited = make_plan(wanted, {"a": node("a", [app()], firewall=Firewall(
        ports=["8080/tcp"], drift=["a rule was added"]), wanted=True)}, FLEET)
    assert [f.action for f in same.firewall] == ["keep"]
    assert [(f.action, f.drift) for f in edited.firewall] == [("apply", ("a rule was added",))]


def test_a_firewall_no_longer_wanted_is_removed():
    plan = make_plan(desired(replicas=1, eligible=("a",)),
                     {"a": node("a", firewall=Firewall(), wanted=False)}, FLEET)
    assert [f.action for f in plan.firewall] == ["remove"]
