"""The ``vzmaster`` command: the Client API, one subcommand per operation.

Exit status: 0 success, 1 the node refused or failed a request (or a build failed, or
a started app does not stay up),
2 bad usage, 3 the node could not be reached or the connection failed, 130 interrupted.
HOST may list several nodes separated by commas; each is driven in turn and the
exit status is the worst of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Callable, Sequence, TextIO

from vzmaster.imaging.command import add_commands as add_build_commands
from vzmaster.client import Client
from vzslave import __version__
from vzmaster.errors import TransportError
from vzslave.errors import ErrorCode, VzError
from vzslave.records import to_wire

EXIT_REMOTE, EXIT_USAGE, EXIT_TRANSPORT, EXIT_INTERRUPTED = 1, 2, 3, 130


class ProgressBar:
    """A one-line progress bar on a terminal; silent when not on one."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.first: int | None = None
        self.drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        """Redraw (at most ten times a second, and at the end)."""
        now = time.monotonic()
        if self.first is None:
            self.first = done  # resumed uploads start above zero; rate counts new bytes
        if not self.enabled or (now - self.drawn < 0.1 and done < total):
            return
        self.drawn = now
        fraction = done / total if total else 1.0
        rate = (done - self.first) / max(now - self.started, 1e-6)
        eta = (total - done) / rate if rate > 0 else 0.0
        bar = "#" * int(fraction * 30)
        self.stream.write("\r{} {:3.0f}% |{:<30}| {:.1f}/{:.1f} MB {:.0f} MB/s ETA {:.0f}s ".format(
            self.label, fraction * 100, bar, done / 1e6, total / 1e6, rate / 1e6, eta))
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def cmd_hello(node: Client, args: argparse.Namespace) -> Any:
    """Print the node's facts."""
    facts = node.hello()
    if args.json:
        return to_wire(facts)
    return "\n".join("{:12} {}".format(k, v) for k, v in to_wire(facts).items())


def cmd_push(node: Client, args: argparse.Namespace) -> Any:
    """Upload an image file (resuming an interrupted upload)."""
    bar = ProgressBar("{} {}".format(args.host_label, args.image))
    info = node.upload_image(args.image, name=args.name, progress=bar)
    return to_wire(info) if args.json else "{} {} sha256:{}".format(
        info.name, info.size, info.sha256)


def cmd_images(node: Client, args: argparse.Namespace) -> Any:
    """List the node's images."""
    rows = [to_wire(i) for i in node.images()]
    if args.json:
        return rows
    for row in rows:
        row["sha256"] = row["sha256"][:12]
        row["created"] = _when(row["created"])
    return _table(rows, ("name", "size", "format", "sha256", "created"))


def cmd_rm_image(node: Client, args: argparse.Namespace) -> Any:
    """Remove an image."""
    node.remove_image(args.name)
    return None


def cmd_unpack(node: Client, args: argparse.Namespace) -> Any:
    """Unpack an image into a bundle."""
    info = node.unpack(args.image, args.bundle, keep_setid=args.keep_setid)
    if args.json:
        return to_wire(info)
    note = ""
    if info.setid_stripped:
        note = " (setuid/setgid removed from {}{})".format(
            ", ".join(info.setid_stripped[:3]), ", ..." if len(info.setid_stripped) > 3 else "")
    return "{}: {} files, {} bytes{}".format(info.name, info.files, info.bytes, note)


def cmd_bundles(node: Client, args: argparse.Namespace) -> Any:
    """List the node's bundles."""
    rows = [to_wire(b) for b in node.bundles()]
    if args.json:
        return rows
    for row in rows:
        row["created"] = _when(row["created"])
    return _table(rows, ("name", "image", "files", "bytes", "created"))


def cmd_rm_bundle(node: Client, args: argparse.Namespace) -> Any:
    """Remove a bundle."""
    node.remove_bundle(args.name)
    return None


def _status_rows(statuses: list[Any]) -> str:
    rows = []
    for st in statuses:
        row = to_wire(st)
        detail = []
        if st.next_retry:
            detail.append("retry in {:.0f}s".format(max(st.next_retry - time.time(), 0)))
        if st.last_exit:
            detail.append("last " + st.last_exit)
        if st.last_error:
            detail.append(st.last_error)
        if st.state == "disabled":
            detail.append("entry disabled by the administrator; start --override restores it")
        row.update(pid=st.pid or "-", uptime=_duration(st.uptime),
                   detail="; ".join(detail) or "-")
        rows.append(row)
    return _table(rows, ("name", "state", "pid", "uptime", "restarts", "runtime", "detail"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class AppNotRunning(Exception):
    """A command did what it was asked, but the app does not run: print, exit 1."""

    def __init__(self, result: Any, message: str) -> None:
        super().__init__(message)
        self.result = result


def cmd_start(node: Client, args: argparse.Namespace) -> Any:
    """Start a container from its bundle under the node's init."""
    status = node.start(args.app, override=args.override, runtime=args.runtime,
                        runtime_args=args.runtime_arg,
                        log_max=args.log_max, log_keep=args.log_keep,
                        syslog=True if args.syslog else None, monitor=args.monitor,
                        min_uptime=args.min_uptime)
    if status.state == "running":
        return to_wire(status) if args.json else _status_rows([status])
    # Exit status 0 would say "deployed" of an app that cannot stay up.
    tail = [line for line in node.logs(args.app, tail=args.log_lines)]
    result: Any = dict(to_wire(status), log=tail) if args.json else (
        _status_rows([status]) + "\n\nlast lines of its log:\n"
        + "\n".join("  " + line for line in tail))
    raise AppNotRunning(result, "{} is {} after start{}".format(
        args.app, status.state, ": " + status.last_error if status.last_error else ""))


def cmd_stop(node: Client, args: argparse.Namespace) -> Any:
    """Stop a container: its entry, its processes, its mounts."""
    status = node.stop(args.app, grace=args.grace)
    return to_wire(status) if args.json else _status_rows([status])


def cmd_restart(node: Client, args: argparse.Namespace) -> Any:
    """Restart a container (it then runs its bundle as unpacked now)."""
    status = node.restart(args.app, grace=args.grace)
    return to_wire(status) if args.json else _status_rows([status])


def cmd_status(node: Client, args: argparse.Namespace) -> Any:
    """Show one container's status, or all containers'."""
    statuses = [node.status(args.app)] if args.app else node.status()
    return [to_wire(s) for s in statuses] if args.json else _status_rows(statuses)


def cmd_logs(node: Client, args: argparse.Namespace) -> Any:
    """Print a container's log; -f follows it."""
    with node.logs(args.app, tail=args.lines, follow=args.follow) as lines:
        for line in lines:
            args.out.write(line + "\n")
            if args.follow:
                args.out.flush()
    return None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vzmaster``."""
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

    def add(name: str, func: Callable[[Client, argparse.Namespace], Any],
            *arguments: tuple[str, str]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=func.__doc__,
                                  description=func.__doc__)
        sub.add_argument("host", metavar="HOST")
        for arg, text in arguments:
            sub.add_argument(arg, help=text)
        sub.set_defaults(func=func)
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
    start = add("start", cmd_start, ("app", "container (its bundle's name)"))
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
    add_build_commands(commands)
    return parser


def _describe(exc: BaseException) -> str:
    if isinstance(exc, VzError):
        code = exc.code_number
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
        return "{}: {}".format(name, exc.message)
    return str(exc) or type(exc).__name__


def run_on(host: str, args: argparse.Namespace, out: TextIO) -> int:
    """Run the command on one host; print its result or its error; return the status."""
    args.host_label = host
    args.out = out
    try:
        with Client(host, user=args.user, port=args.port, key_filename=args.identity,
                    known_hosts=args.known_hosts, trust_new_host=args.trust_new_host,
                    via=args.via, connect_timeout=args.timeout) as node:
            result = args.func(node, args)
    except AppNotRunning as exc:
        print(json.dumps(exc.result, indent=2) if args.json else exc.result, file=out)
        print("vzmaster: {}: {}".format(host, exc), file=sys.stderr)
        return EXIT_REMOTE
    except VzError as exc:
        print("vzmaster: {}: {}".format(host, _describe(exc)), file=sys.stderr)
        return EXIT_REMOTE
    except TransportError as exc:
        print("vzmaster: {}: {}".format(host, _describe(exc)), file=sys.stderr)
        return EXIT_TRANSPORT
    except OSError as exc:  # a local file: the image to push, the key, ...
        print("vzmaster: {}".format(exc), file=sys.stderr)
        return EXIT_REMOTE
    if result is not None:
        text = json.dumps(result, indent=2) if args.json else str(result)
        print(text, file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``vzmaster`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(name)s: %(message)s")
    if getattr(args, "local", None) is not None:  # build, inspect: no node involved
        try:
            sys.exit(args.local(args))
        except KeyboardInterrupt:
            print("vzmaster: interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
    hosts = [h for h in args.host.split(",") if h]
    status = 0
    try:
        for host in hosts:
            if len(hosts) > 1 and not args.json:
                print("== {}".format(host))
            status = max(status, run_on(host, args, sys.stdout))
    except KeyboardInterrupt:
        print("vzmaster: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    sys.exit(status)


if __name__ == "__main__":
    main()
