"""The fleet commands of ``vzmaster``: plan, deploy, ps, and the one-argument forms of
logs, releases and rollback (``logs APP``: every replica; ``logs HOST APP``: one node).
A thin layer over ``vzmaster.fleet.Fleet``: it reads vz.yml, shows progress (rich on a
terminal, plain lines otherwise), and prints the result. cli.py adds these commands and
resolves a vz.yml node name given as HOST to that node's connection options.

Exit status: 0 done (also when a node did not answer but every app has its replicas on
the nodes that did: a warning says so), 1 a step failed or the plan was refused, 2 vz.yml
is missing or wrong, 3 a node went away during the command and nothing else failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from typing import Any, Callable, TextIO

from vzmaster.fleet.events import Events
from vzmaster.output import table
from vzmaster.transports import SSHOptions

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOST = 0, 1, 2, 3
_ACTION_MARKS = {"add": "+", "replace": "~", "start": ">", "remove": "-", "keep": "=",
                 "leave": "!"}


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``-c FILE``: the vz.yml to use (default: $VZ_CONFIG, then vz.yml here or above)."""
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="the vz.yml to use (default: $VZ_CONFIG, then vz.yml in this "
                             "directory or a parent)")


def add_fleet_options(parser: argparse.ArgumentParser) -> None:
    """The options of every fleet command."""
    add_config_option(parser)
    parser.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                        help="skip a node that does not answer within this (default: "
                             "vz.yml's ssh.connect_timeout, else 10)")
    parser.add_argument("--parallel", type=int, default=8, metavar="N",
                        help="nodes worked on at once (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")


def add_commands(commands: Any) -> None:
    """Add plan, deploy and ps (the fleet's own commands) to the subcommands."""
    plan = commands.add_parser("plan", help=cmd_plan.__doc__, description=cmd_plan.__doc__)
    plan.add_argument("apps", nargs="*", metavar="APP", help="only these apps")
    plan.add_argument("--override", action="store_true",
                      help="show what --override would restore")
    deploy = commands.add_parser("deploy", help=cmd_deploy.__doc__,
                                 description=cmd_deploy.__doc__)
    deploy.add_argument("apps", nargs="*", metavar="APP", help="only these apps")
    deploy.add_argument("--override", action="store_true",
                        help="restore inittab lines the nodes' administrators disabled")
    ps = commands.add_parser("ps", help=cmd_ps.__doc__, description=cmd_ps.__doc__)
    ps.add_argument("app", nargs="?", help="only this app")
    ps.add_argument("--no-check", dest="check", action="store_false",
                    help="do not try each replica's health check")
    for parser, func in ((plan, cmd_plan), (deploy, cmd_deploy), (ps, cmd_ps)):
        add_fleet_options(parser)
        parser.set_defaults(fleet_run=func, on_node=False)


def add_fleet_form(parser: argparse.ArgumentParser,
                   func: Callable[[argparse.Namespace], int]) -> None:
    """Let a node command (``logs HOST APP``) also take the fleet form (``logs APP``)."""
    parser.set_defaults(fleet_form=func)
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="the vz.yml (for a node name as HOST, and the APP-only form)")
    parser.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                        help="fleet form: skip a node that does not answer within this")
    parser.add_argument("--parallel", type=int, default=8, metavar="N",
                        help="fleet form: nodes worked on at once (default: %(default)s)")


# -- the commands ---------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what deploy would change on every node of vz.yml, and the drift it sees."""
    with _fleet(args) as fleet:
        plan = fleet.plan(args.apps or None, override=args.override)
    if args.json:
        _print_json({
            "steps": [{"node": s.node, "app": s.app, "action": s.action,
                       "reasons": list(s.reasons)} for s in plan.steps],
            "firewall": [{"node": f.node, "action": f.action, "ports": list(f.ports),
                          "drift": list(f.drift)} for f in plan.firewall],
            "unreachable": plan.unreachable, "warnings": plan.warnings,
            "errors": plan.errors})
    else:
        print(render_plan(plan))
    if plan.errors:
        _complain(["refused: " + error for error in plan.errors])
        return EXIT_FAILED
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    """Build what changed, push in parallel, roll out health-checked, node by node."""
    from vzmaster.fleet import FleetError

    started = time.monotonic()
    with _fleet(args) as fleet, progress_for(sys.stderr) as events:
        try:
            report = fleet.deploy(args.apps or None, override=args.override, events=events)
        except FleetError as exc:
            events.close()
            _complain([exc.message])
            return EXIT_FAILED
    return _report(args, report, "deploy", time.monotonic() - started)


def cmd_ps(args: argparse.Namespace) -> int:
    """One table of every replica in the fleet: app, node, release, state, health."""
    with _fleet(args) as fleet:
        rows, unreachable = fleet.ps(args.app, check=args.check)
    if args.json:
        _print_json([row._asdict() for row in rows])
    else:
        print(table([{
            "app": r.app, "node": r.node, "release": str(r.release or "-"),
            "image": r.image or "-", "state": r.state, "pid": str(r.pid or "-"),
            "uptime": _duration(r.uptime), "restarts": str(r.restarts),
            "health": r.health or "-"} for r in rows],
            ("app", "node", "release", "image", "state", "pid", "uptime", "restarts",
             "health")))
    _complain(["{}: did not answer: {}".format(n, why) for n, why in unreachable.items()])
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    """Every replica's log, each line after its node; -f follows them all."""
    from vzmaster.fleet import FleetError

    with _fleet(args) as fleet:
        width = max(map(len, fleet.config.nodes))
        try:
            for node, line in fleet.logs(args.host, lines=args.lines, follow=args.follow):
                sys.stdout.write("{} | {}\n".format(node.ljust(width), line))
                if args.follow:
                    sys.stdout.flush()
        except FleetError as exc:
            _complain([exc.message])
            return EXIT_FAILED
    return EXIT_OK


def cmd_releases(args: argparse.Namespace) -> int:
    """Each node's releases of an app, newest first (* marks the current one)."""
    with _fleet(args) as fleet:
        found = fleet.releases(args.host)
    rows = []
    problems = []
    for node, releases in found.items():
        if isinstance(releases, str):
            problems.append("{}: {}".format(node, releases))
            continue
        rows += [{"node": node, "release": ("*" if r.current else " ") + str(r.release),
                  "image": r.image, "sha256": r.sha256[:12],
                  "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))}
                 for r in releases]
    if args.json:
        _print_json([{"node": node, **r._asdict()} for node, releases in found.items()
                     if not isinstance(releases, str) for r in releases])
    else:
        print(table(rows, ("node", "release", "image", "sha256", "created")))
    _complain(problems)
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    """Roll every replica of an app back, max_unavailable at a time, health-checked."""
    from vzmaster.fleet import FleetError

    started = time.monotonic()
    with _fleet(args) as fleet, progress_for(sys.stderr) as events:
        try:
            report = fleet.rollback(args.host, args.to, events=events)
        except FleetError as exc:
            events.close()
            _complain([exc.message])
            return EXIT_FAILED
    return _report(args, report, "rollback", time.monotonic() - started)


# -- node names as HOST -------------------------------------------------------------


def node_options(args: argparse.Namespace, host: str) -> SSHOptions | None:
    """The connection options vz.yml gives node ``host``, with the command line's over
    them; None when no vz.yml is found or it has no such node (HOST is then a host)."""
    from vzmaster.fleet.config import find_config, load_config

    explicit = getattr(args, "config", None)
    try:
        path = find_config(explicit, os.environ, os.getcwd())
    except Exception:  # noqa: BLE001 (no vz.yml: HOST is a host name)
        if explicit:
            raise
        return None
    config = load_config(path)
    if host not in config.nodes:
        return None
    options = config.node_options(host)
    given = {"user": args.user, "port": args.port, "key_filename": args.identity,
             "known_hosts": args.known_hosts}
    if args.via != "paramiko":
        given["via"] = args.via
    if args.trust_new_host:
        given["trust_new_host"] = True
    return dataclasses.replace(options, **{k: v for k, v in given.items() if v is not None})


# -- output ----------------------------------------------------------------------------


def render_plan(plan: Any) -> str:
    """The plan as text: a line per change, then drift, warnings and refusals."""
    lines = []
    for step in plan.steps:
        if step.action == "keep":
            continue
        lines.append("{} {} on {}{}".format(
            _ACTION_MARKS[step.action], step.app, step.node,
            ": " + step.action + (" (" + ", ".join(step.reasons) + ")" if step.reasons
                                  else "")))
    for fw in plan.firewall:
        if fw.action != "keep":
            lines.append("~ firewall on {}: {} ({})".format(
                fw.node, fw.action, ", ".join(fw.ports) or "SSH only"))
        for drift in fw.drift:
            lines.append("! firewall on {}: edited by hand: {}".format(fw.node, drift))
    for node, why in plan.unreachable.items():
        lines.append("? {} did not answer: {}".format(node, why))
    for warning in plan.warnings:
        lines.append("! " + warning)
    unchanged = sum(step.action == "keep" for step in plan.steps)
    lines.append("{} change{}, {} replica{} unchanged".format(
        len(plan.changes), "" if len(plan.changes) == 1 else "s", unchanged,
        "" if unchanged == 1 else "s"))
    return "\n".join(lines)


def _report(args: argparse.Namespace, report: Any, what: str, seconds: float) -> int:
    if args.json:
        _print_json({"outcomes": [o._asdict() for o in report.outcomes],
                     "warnings": report.warnings,
                     "unreachable": report.plan.unreachable if report.plan else {},
                     "ok": report.ok, "seconds": round(seconds, 3)})
    else:
        rows = [{"node": o.node or "-", "app": o.app or "-", "action": o.action,
                 "result": o.result, "detail": o.detail.splitlines()[0] if o.detail else ""}
                for o in report.outcomes]
        if rows:
            print(table(rows, ("node", "app", "action", "result", "detail")))
        else:
            print("nothing to change")
        print("{} done in {:.1f} s".format(what, seconds))
    problems = ["warning: " + w for w in report.warnings]
    problems += ["{} {} on {}: {}".format(o.action, o.app, o.node, o.detail)
                 for o in report.failures]
    _complain(problems)
    if any(o.result == "failed" for o in report.outcomes):
        return EXIT_FAILED
    return EXIT_LOST if report.failures else EXIT_OK


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return "{:.0f}s".format(seconds)
    if seconds < 7200:
        return "{:.0f}m".format(seconds / 60)
    return "{:.1f}h".format(seconds / 3600)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _complain(lines: list[str]) -> None:
    sys.stdout.flush()
    for line in lines:
        sys.stderr.write("vzmaster: {}\n".format(line))
    sys.stderr.flush()


def _fleet(args: argparse.Namespace) -> Any:
    from vzmaster.fleet import Fleet, load

    return Fleet(load(getattr(args, "config", None)), parallel=max(1, args.parallel),
                 connect_timeout=args.connect_timeout)


# -- progress -----------------------------------------------------------------------


class PlainProgress(Events):
    """A line per stage change; bytes are not counted line by line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __enter__(self) -> PlainProgress:  # noqa: PYI034 (typing.Self is 3.11+)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stage(self, node: str, app: str, stage: str, detail: str = "") -> None:
        where = " ".join(part for part in (node, app) if part)
        first = detail.splitlines()[0] if detail else ""
        with self._lock:
            self._stream.write("{}: {}{}\n".format(where, stage, " " + first if first else ""))
            self._stream.flush()

    def close(self) -> None:
        """Stop drawing (the live table stays on the screen)."""


class LiveProgress(PlainProgress):
    """A table redrawn in place (rich): one row per node and app, its stage and bytes."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.live import Live

        self._rows: dict[tuple[str, str], tuple[str, str]] = {}
        self._live = Live(self._table(), console=Console(file=stream), refresh_per_second=8)
        self._live.start()

    def _table(self) -> Any:
        from rich.table import Table

        shown = Table(box=None, pad_edge=False)
        for column in ("NODE", "APP", "STAGE", "DETAIL"):
            shown.add_column(column)
        for (node, app), (stage, detail) in sorted(self._rows.items()):
            shown.add_row(node or "-", app or "-", stage, detail)
        return shown

    def stage(self, node: str, app: str, stage: str, detail: str = "") -> None:
        with self._lock:
            self._rows[(node, app)] = (stage, detail.splitlines()[0] if detail else "")
            self._live.update(self._table())

    def progress(self, node: str, app: str, done: int, total: int) -> None:
        with self._lock:
            self._rows[(node, app)] = ("push", "{:.1f}/{:.1f} MB".format(done / 1e6,
                                                                         total / 1e6))
            self._live.update(self._table())

    def close(self) -> None:
        with self._lock:
            self._live.stop()


def progress_for(stream: TextIO) -> PlainProgress:
    """Progress for a terminal (a live table) or plain lines for anything else."""
    return LiveProgress(stream) if stream.isatty() else PlainProgress(stream)
