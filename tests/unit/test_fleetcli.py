"""The fleet commands' own parts: the plan as text, exit statuses, node names as HOST."""

import argparse

from vzmaster import fleetcli
from vzmaster.cli import parse_args
from vzmaster.fleet.fleet import Outcome, Report
from vzmaster.fleet.placement import Placement
from vzmaster.fleet.plan import FirewallStep, Plan, Step


def plan(**fields):
    values = dict(steps=[], firewall=[], unreachable={}, warnings=[], errors=[],
                  placement=Placement({}, {}, []))
    values.update(fields)
    return Plan(**values)


def test_the_plan_shows_a_line_per_change_and_counts_the_rest():
    text = fleetcli.render_plan(plan(steps=[
        Step("a", "web", "add", ("new",)), Step("b", "web", "replace", ("image", "env")),
        Step("c", "web", "keep")], unreachable={"d": "timed out"},
        firewall=[FirewallStep("a", "apply", ("8080/tcp",), ("a rule was added",))]))
    assert text.splitlines() == [
        "+ web on a: add (new)",
        "~ web on b: replace (image, env)",
        "~ firewall on a: apply (8080/tcp)",
        "! firewall on a: edited by hand: a rule was added",
        "? d did not answer: timed out",
        "2 changes, 1 replica unchanged"]


def report(*results):
    return Report(plan(), [Outcome("a", "web", "add", result, "") for result in results], [])


def args(**fields):
    return argparse.Namespace(json=False, **fields)


def test_a_failed_step_exits_1_and_a_lost_node_alone_3(capsys):
    assert fleetcli._report(args(), report("ok"), "deploy", 1.0) == 0  # noqa: SLF001
    assert fleetcli._report(args(), report("ok", "lost"), "deploy", 1.0) == 3  # noqa: SLF001
    assert fleetcli._report(args(), report("lost", "failed"), "deploy", 1.0) == 1  # noqa: SLF001


def test_one_argument_to_logs_is_the_fleet_form_two_the_node_form():
    fleet = parse_args(["logs", "web", "-f"])
    node = parse_args(["logs", "fra1", "web"])
    assert (fleet.host, fleet.app, fleet.fleet_form) == ("web", None, fleetcli.cmd_logs)
    assert (node.host, node.app) == ("fra1", "web")


def test_a_node_name_from_vz_yml_gives_its_options_with_the_command_lines_over_them(
        tmp_path, monkeypatch):
    (tmp_path / "vz.yml").write_text(
        "ssh: {user: deploy, port: 2222}\nnodes:\n  fra1: {host: 203.0.113.10}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VZ_CONFIG", raising=False)
    given = parse_args(["hello", "fra1", "-l", "root"])
    options = fleetcli.node_options(given, "fra1")
    assert (options.host, options.user, options.port) == ("203.0.113.10", "root", 2222)
    assert fleetcli.node_options(given, "203.0.113.99") is None


def test_without_a_vz_yml_host_is_a_host(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VZ_CONFIG", raising=False)
    assert fleetcli.node_options(parse_args(["hello", "fra1"]), "fra1") is None
