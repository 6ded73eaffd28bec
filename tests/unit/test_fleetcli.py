"""The fleet commands' own parts: the plan as text, exit statuses, node names as HOST."""

import argparse
import io

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


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_progress_is_a_live_table_of_nodes_and_apps():
    screen = Terminal()
    with fleetcli.progress_for(screen) as events:
        assert isinstance(events, fleetcli.LiveProgress)
        events.stage("fra1", "web", "push", "2767554 bytes")
        events.progress("fra1", "web", 1_000_000, 2_767_554)
        events.stage("ams1", "web", "health", "http http://127.0.0.1:8080/, within 20 s")
    drawn = screen.getvalue()
    assert "fra1" in drawn and "1.0/2.8 MB" in drawn and "ams1" in drawn and "health" in drawn


def test_elsewhere_progress_is_a_plain_line_per_stage():
    stream = io.StringIO()
    with fleetcli.progress_for(stream) as events:
        events.stage("fra1", "web", "deploy", "image, env\nmore")
        events.progress("fra1", "web", 1, 2)
        events.stage("", "web", "build")
    assert stream.getvalue() == "fra1 web: deploy image, env\nweb: build\n"


def test_an_ip_address_as_host_never_reads_vz_yml():
    from vzmaster.cli import vz_yml_may_name

    assert not vz_yml_may_name("203.0.113.10") and not vz_yml_may_name("2001:db8::1")
    assert not vz_yml_may_name("local:/tmp/x") and vz_yml_may_name("fra1")
