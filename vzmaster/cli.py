"""The ``vzmaster`` command: the Client API, one subcommand per operation.

Exit status: 0 success, 1 the node refused or failed a request (or a build failed, or
a started app does not stay up), 2 bad usage, 3 the node could not be reached or the
connection failed, 130 interrupted, 141 the reader of the output went away (``| head``).
HOST may list several nodes separated by commas; each is driven in turn (``logs -f``
follows them all at once) and the exit status is the worst of them.

Every subcommand takes one path: ``dispatch`` runs it on each host through ``run``, a
node command with a Client, a local one (build, inspect) once, without. A subcommand
gets a ``Call`` (its arguments, host and output), returns what it shows
(vzmaster/output.py, records made by vzmaster/views.py) and raises what failed:
``run`` catches vz's one root, ``Error``, and picks the exit status by its family.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import queue
import sys
import threading
from typing import Callable, Sequence

from vzmaster import fleetcli, nodecli, views
from vzmaster.appcli import add_commands as add_app_commands
from vzmaster.client import Client
from vzmaster.errors import TransportError, describe
from vzmaster.imaging.command import add_commands as add_build_commands
from vzmaster.output import Call, Output, OutputClosed, ProgressBar, Shown
from vzmaster.transports import SSHOptions
from vzslave import __version__
from vzslave.errors import Error

EXIT_REMOTE, EXIT_USAGE, EXIT_TRANSPORT, EXIT_INTERRUPTED, EXIT_PIPE = 1, 2, 3, 130, 141


def cmd_hello(node: Client, call: Call) -> Shown:
    """Print the node's facts."""
    return Shown([views.facts(node.hello())])


def cmd_push(node: Client, call: Call) -> Shown:
    """Upload an image file (resuming an interrupted upload)."""
    bar = ProgressBar("{} {}".format(call.host, call.args.image))
    info = node.upload_image(call.args.image, name=call.args.name, progress=bar)
    return Shown([views.image(info)])


def cmd_images(node: Client, call: Call) -> Shown:
    """List the node's images."""
    return Shown([views.image(info) for info in node.images()], views.IMAGE_COLUMNS)


def cmd_bundles(node: Client, call: Call) -> Shown:
    """List the node's bundles."""
    return Shown([views.bundle(info) for info in node.bundles()], views.BUNDLE_COLUMNS)


def cmd_unpack(node: Client, call: Call) -> Shown:
    """Unpack an image into a bundle."""
    args = call.args
    return Shown([views.bundle(node.unpack(args.image, args.bundle,
                                           keep_setid=args.keep_setid))])


def cmd_rm_image(node: Client, call: Call) -> None:
    """Remove an image."""
    node.remove_image(call.args.name)


def cmd_rm_bundle(node: Client, call: Call) -> None:
    """Remove a bundle."""
    node.remove_bundle(call.args.name)


def cmd_start(node: Client, call: Call) -> Shown:
    """Start a container from its bundle under the node's init."""
    args = call.args
    status = node.start(args.app, override=args.override, runtime=args.runtime,
                        runtime_args=args.runtime_arg,
                        log_max=args.log_max, log_keep=args.log_keep,
                        syslog=True if args.syslog else None, monitor=args.monitor,
                        min_uptime=args.min_uptime)
    if status.state == "running":
        return Shown([views.status(status)])
    # Exit status 0 would say "deployed" of an app that cannot stay up.
    tail = list(node.logs(args.app, tail=args.log_lines))
    return Shown([views.start_failure(status, tail)], status=EXIT_REMOTE,
                 complaint="{} is {} after start{}".format(
                     args.app, status.state,
                     ": " + status.last_error if status.last_error else ""))


def cmd_stop(node: Client, call: Call) -> Shown:
    """Stop a container: its entry, its processes, its mounts."""
    return Shown([views.status(node.stop(call.args.app, grace=call.args.grace))])


def cmd_restart(node: Client, call: Call) -> Shown:
    """Restart a container (it then runs its bundle as unpacked now)."""
    return Shown([views.status(node.restart(call.args.app, grace=call.args.grace))])


def cmd_status(node: Client, call: Call) -> Shown:
    """Show one container's status, or all containers'."""
    statuses = [node.status(call.args.app)] if call.args.app else node.status()
    return Shown([views.status(st) for st in statuses], views.STATUS_COLUMNS)


def cmd_logs(node: Client, call: Call) -> None:
    """Print a container's log; -f follows it."""
    # No ``with``: after Ctrl-C has closed the client, closing the stream would raise
    # "this client is closed" in place of the KeyboardInterrupt. The client's own
    # close ends the stream in any case.
    args = call.args
    for line in node.logs(args.app, tail=args.lines, follow=args.follow):
        call.line(line)


def common_options() -> argparse.ArgumentParser:
    """The options every subcommand on a node takes: how to connect, how to print."""
    common = argparse.ArgumentParser(add_help=False)
    ssh = common.add_argument_group("connection")
    ssh.add_argument("-l", "--user", help="log in as USER (default: ~/.ssh/config, then you)")
    ssh.add_argument("-p", "--port", type=int, help="SSH port (default: ~/.ssh/config, 22)")
    ssh.add_argument("-i", "--identity", help="private key file")
    ssh.add_argument("--known-hosts", help="known_hosts file (default: ~/.ssh/known_hosts)")
    ssh.add_argument("--trust-new-host", action="store_true",
                     help="accept and record an unknown host key (never a changed one)")
    ssh.add_argument("--via", choices=("paramiko", "openssh"), default="paramiko",
                     help="SSH implementation (default: %(default)s)")
    ssh.add_argument("--timeout", type=float, default=15.0, help="connect timeout, seconds")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    return common


def add_start_options(start: argparse.ArgumentParser) -> None:
    """The options of ``vzmaster start``: container.start's, and what to show."""
    start.add_argument("--override", action="store_true",
                       help="restore an inittab entry the node's administrator disabled")
    start.add_argument("--runtime", choices=("builtin", "runc", "crun"),
                       help="what runs the bundle (default: builtin, or as before)")
    start.add_argument("--runtime-arg", action="append", metavar="--OPT[=VALUE]",
                       help="a global option for runc or crun, written with '=' "
                            "(--runtime-arg=--cgroup-manager=disabled); repeatable")
    start.add_argument("--log-max", type=int, metavar="BYTES",
                       help="rotate the log past this size (default 10 MiB)")
    start.add_argument("--log-keep", type=int, metavar="N",
                       help="rotated log files kept (default 3)")
    start.add_argument("--syslog", action="store_true",
                       help="also send the container's output to the node's syslog")
    start.add_argument("--monitor", action=argparse.BooleanOptionalAction, default=None,
                       help="keep a small vz process as the app's parent: hard log cap, "
                            "exit codes in status, orphans ended (default: on)")
    start.add_argument("--min-uptime", type=float, metavar="SECONDS",
                       help="how long the app must stay up to count as started "
                            "(default 1)")
    start.add_argument("--log-lines", type=int, default=20, metavar="N",
                       help="log lines shown when the app does not stay up "
                            "(default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vzmaster``."""
    common = common_options()
    # Connection options go after the subcommand: on both levels argparse would let
    # the subcommand's defaults overwrite what was given before it.
    parser = argparse.ArgumentParser(
        prog="vzmaster",
        description="Deploy and run apps on vz nodes over SSH. HOST is a hostname or "
                    "~/.ssh/config alias (several: comma-separated), or local[:ROOT] for "
                    "a vzslave on this machine.")
    parser.add_argument("--version", action="version", version="vzmaster " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def add(name: str, func: Callable[[Client, Call], Shown | None],
            *arguments: tuple[str, str]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=func.__doc__,
                                  description=func.__doc__)
        sub.add_argument("host", metavar="HOST")
        for arg, text in arguments:
            sub.add_argument(arg, help=text)
        sub.set_defaults(run=func, on_node=True)
        return sub

    add("hello", cmd_hello)
    push = add("push", cmd_push, ("image", "image file (.tar, .tar.gz, .txz, .tar.zst)"))
    push.add_argument("--name", help="name on the node (default: the file name)")
    add("images", cmd_images)
    add("rm-image", cmd_rm_image, ("name", "image name"))
    unpack = add("unpack", cmd_unpack, ("image", "image name"), ("bundle", "bundle name"))
    unpack.add_argument("--keep-setid", action="store_true",
                        help="keep setuid/setgid bits (removed by default; needs root)")
    add("bundles", cmd_bundles)
    add("rm-bundle", cmd_rm_bundle, ("name", "bundle name"))
    add_start_options(add("start", cmd_start, ("app", "container (its bundle's name)")))
    for name, func in (("stop", cmd_stop), ("restart", cmd_restart)):
        sub = add(name, func, ("app", "container"))
        sub.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                         help="between TERM and KILL (default: %(default)s)")
    status = add("status", cmd_status)
    status.add_argument("app", nargs="?", help="container (default: all)")
    logs = add("logs", cmd_logs, ("app", "container"))
    logs.add_argument("-n", "--lines", type=int, default=100, help="last N lines (default 100)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines until interrupted")
    add_app_commands(add)
    add_build_commands(commands)
    fleetcli.add_commands(commands)
    nodecli.add_commands(commands)
    # One argument: the fleet form (``logs APP``: every replica); two: one node's.
    for name, fleet_func in (("logs", fleetcli.cmd_logs),
                             ("releases", fleetcli.cmd_releases),
                             ("rollback", fleetcli.cmd_rollback)):
        sub = commands.choices[name]
        for action in sub._actions:  # noqa: SLF001 (argparse has no API to relax one)
            if action.dest == "app":
                action.nargs = "?"
        fleetcli.add_fleet_form(sub, fleet_func)
    return parser


def ssh_options(args: argparse.Namespace, host: str) -> SSHOptions:
    """How to reach ``host``: a node of vz.yml (-c, $VZ_CONFIG or found here or above)
    with the command line's options over its own, or a host name as given."""
    if vz_yml_may_name(host):
        options = fleetcli.node_options(args, host)
        if options is not None:
            return options
    return SSHOptions(host, user=args.user, port=args.port, key_filename=args.identity,
                      known_hosts=args.known_hosts, trust_new_host=args.trust_new_host,
                      via=args.via, connect_timeout=args.timeout)


def run(args: argparse.Namespace, host: str, output: Output) -> int:
    """Run the subcommand on one host ("" for build, inspect); show what it shows or why
    it failed; return its exit status."""
    call = Call(args, host, output)
    shown: Shown | None
    try:
        if args.on_node:
            with Client(options=ssh_options(args, host)) as node:
                shown = args.run(node, call)
        else:
            shown = args.run(call)
    except Error as exc:
        output.error(host, describe(exc))
        return EXIT_TRANSPORT if isinstance(exc, TransportError) else EXIT_REMOTE
    except OSError as exc:  # a local file: the image to push, the key, ...
        output.error(host, str(exc))
        return EXIT_REMOTE
    if shown is None:
        return 0
    output.show(host, shown)
    if shown.complaint:
        output.error(host, shown.complaint)
    return shown.status


def vz_yml_may_name(host: str) -> bool:
    """Whether ``host`` could be a node name of vz.yml: not local[:ROOT], not user@host,
    not an IP address (so a broken vz.yml nearby never stands in the way of one)."""
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return not host.startswith("local") and "@" not in host


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command on each of its hosts; the worst exit status."""
    node_run = getattr(args, "node_run", None)
    if node_run is not None:
        status: int = node_run(args)
        return status
    fleet_run = getattr(args, "fleet_run", None)
    if fleet_run is None and getattr(args, "fleet_form", None) and args.app is None:
        fleet_run = args.fleet_form
    if fleet_run is not None:
        try:
            status = fleet_run(args)
        except Error as exc:
            from vzmaster.fleet.config import ConfigError

            print("vzmaster: " + describe(exc), file=sys.stderr)
            return fleetcli.EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_REMOTE
        return status
    hosts = [h for h in args.host.split(",") if h] if args.on_node else [""]
    together = len(hosts) > 1 and bool(getattr(args, "follow", False))
    output = Output(json_mode=args.json, hosts=hosts, together=together)
    status = 0
    try:
        if together:
            status = _run_together(args, hosts, output)
        else:
            for host in hosts:
                output.header(host)
                status = max(status, run(args, host, output))
        output.finish()
    except KeyboardInterrupt:
        output.stop()  # hosts still running in threads print nothing more
        raise
    return status


def _run_together(args: argparse.Namespace, hosts: Sequence[str], output: Output) -> int:
    """Run the command on every host at once, a thread each (``logs -f`` of several)."""
    results: queue.Queue[int | BaseException] = queue.Queue()

    def drive(host: str) -> None:
        try:
            results.put(run(args, host, output))
        except BaseException as exc:  # the main thread raises it: a closed output, a bug
            results.put(exc)

    for host in hosts:
        threading.Thread(target=drive, args=(host,), name="vz " + host, daemon=True).start()
    status = 0
    for _ in hosts:
        result = results.get()
        if isinstance(result, BaseException):
            raise result
        status = max(status, result)
    return status


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line parsed; after ``run``, what follows ``--`` is the command."""
    words = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    # argparse would give run's "*" positional nothing and refuse what follows "--".
    if words[:1] == ["run"] and "--" in words:
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1:]
    args = build_parser().parse_args(words)
    if words[:1] == ["run"]:
        args.argv = list(args.argv) + command
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``vzmaster`` command."""
    try:
        args = parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                            format="%(name)s: %(message)s")
        status = dispatch(args)
    except KeyboardInterrupt:
        print("vzmaster: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    except (OutputClosed, BrokenPipeError):
        _forget_stdout()
        status = EXIT_PIPE
    sys.exit(status)


def _forget_stdout() -> None:
    """Point fd 1 at /dev/null: its reader is gone, and Python flushes it at exit."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return  # not a file (a test's capture): nothing is flushed to a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    main()
