"""The ``vzmaster`` commands for apps on one node: deploy-image, releases, rollback, apps,
rm-app, run, volumes, rm-volume. cli.py adds them with the common options."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any, Callable

from vzmaster import views
from vzmaster.client import Client
from vzmaster.output import Call, ProgressBar, Shown
from vzslave.errors import BadRequestError

Add = Callable[..., argparse.ArgumentParser]


def cmd_deploy_image(node: Client, call: Call) -> Shown:
    """Push an image file (resuming), then deploy it as the app's next release."""
    args = call.args
    # Every option is read before the upload: a typo must not cost a transfer.
    env, secrets = _pairs(args.env, "--env"), _secrets(args.secret)
    volumes, health = _volumes(args.volume), _health(args)
    release = _argv(args.release, "--release")
    bar = ProgressBar("{} {}".format(call.host, args.image))
    image = node.upload_image(args.image, name=args.name, progress=bar)
    info = node.deploy(
        args.app, image.name, env=env, secrets=secrets, volumes=volumes, health=health,
        release=release, keep=args.keep, override=args.override, grace=args.grace,
        runtime=args.runtime, log_max=args.log_max, log_keep=args.log_keep,
        monitor=args.monitor)
    return Shown([views.release(info)])


def cmd_releases(node: Client, call: Call) -> Shown:
    """List an app's releases, newest first (* marks the current one)."""
    return Shown([views.release(info) for info in node.releases(call.args.app)],
                 views.RELEASE_COLUMNS)


def cmd_rollback(node: Client, call: Call) -> Shown:
    """Switch an app back to its previous release (or --to N), health-checked."""
    return Shown([views.release(node.rollback(call.args.app, call.args.to,
                                              grace=call.args.grace))])


def cmd_apps(node: Client, call: Call) -> Shown:
    """List the node's apps."""
    return Shown([views.app(info) for info in node.apps()], views.APP_COLUMNS)


def cmd_rm_app(node: Client, call: Call) -> None:
    """Stop an app and delete its releases, settings and secrets (--volumes: those too)."""
    node.remove_app(call.args.app, volumes=call.args.volumes, grace=call.args.grace)


def cmd_run(node: Client, call: Call) -> Shown:
    """Run a command once in the app's current release; exit with its status."""
    argv = list(call.args.argv)
    if not argv:
        raise BadRequestError("run needs a command after the app: vzmaster run HOST APP -- "
                              "ARGV...")
    result = node.run(call.args.app, argv, timeout=call.args.run_timeout)
    for line in result.output.splitlines():
        call.line(line)
    return Shown([], status=result.status, complaint="" if result.status == 0 else
                 "the command ended with {}{}".format(
                     result.exit, " (its output's start was cut)" if result.truncated else ""))


def cmd_volumes(node: Client, call: Call) -> Shown:
    """List an app's volumes."""
    return Shown([views.volume(info) for info in node.volumes(call.args.app)],
                 views.VOLUME_COLUMNS)


def cmd_rm_volume(node: Client, call: Call) -> None:
    """Delete one of an app's volumes (its data is gone)."""
    node.remove_volume(call.args.app, call.args.name)


def add_commands(add: Add) -> None:
    """Add the app commands through cli.build_parser's ``add``."""
    deploy = add("deploy-image", cmd_deploy_image, ("app", "app name"),
                 ("image", "image file (.tar, .tar.gz, .txz, .tar.zst)"))
    deploy.add_argument("--name", help="the image's name on the node (default: file name)")
    deploy.add_argument("--env", action="append", default=[], metavar="K=V",
                        help="an environment variable over the image's; repeatable")
    deploy.add_argument("--secret", action="append", default=[], metavar="K[=V]",
                        help="a secret: K alone takes the value from this environment "
                             "(keeping it off the command line); repeatable")
    deploy.add_argument("--volume", action="append", default=[], metavar="NAME:/PATH",
                        help="a volume mounted at PATH, kept across releases; repeatable")
    deploy.add_argument("--health", metavar="tcp:PORT|http:URL|cmd:'ARGV'",
                        help="how to tell the new release is up (default: it stays up)")
    deploy.add_argument("--health-timeout", type=float, metavar="SECONDS",
                        help="how long the check may take to pass (default 30)")
    deploy.add_argument("--min-uptime", type=float, metavar="SECONDS",
                        help="how long the app must stay up after passing (default 2)")
    deploy.add_argument("--release", metavar="'ARGV'",
                        help="a command run once in the new release before the switch "
                             "(migrations); its failure stops the deploy")
    deploy.add_argument("--keep", type=int, default=3, metavar="N",
                        help="releases kept for rollback (default: %(default)s)")
    deploy.add_argument("--override", action="store_true",
                        help="restore an inittab entry the node's administrator disabled")
    deploy.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                        help="between TERM and KILL of the old release (default 10)")
    deploy.add_argument("--runtime", choices=("builtin", "runc", "crun"))
    deploy.add_argument("--log-max", type=int, metavar="BYTES")
    deploy.add_argument("--log-keep", type=int, metavar="N")
    deploy.add_argument("--monitor", action=argparse.BooleanOptionalAction, default=None)
    add("releases", cmd_releases, ("app", "app name"))
    rollback = add("rollback", cmd_rollback, ("app", "app name"))
    rollback.add_argument("--to", type=int, metavar="N", help="the release to run "
                          "(default: the one before the current one)")
    rollback.add_argument("--grace", type=float, default=10.0, metavar="SECONDS")
    add("apps", cmd_apps)
    rm_app = add("rm-app", cmd_rm_app, ("app", "app name"))
    rm_app.add_argument("--volumes", action="store_true", help="delete its volumes too")
    rm_app.add_argument("--grace", type=float, default=10.0, metavar="SECONDS")
    run = add("run", cmd_run, ("app", "app name"))
    # "*" and not REMAINDER: options after APP stay options; "--" starts the command.
    run.add_argument("argv", nargs="*", metavar="-- ARGV", help="the command and its args")
    run.add_argument("--run-timeout", type=float, default=600.0, metavar="SECONDS",
                     help="kill the command after this long (default: %(default)s)")
    add("volumes", cmd_volumes, ("app", "app name"))
    add("rm-volume", cmd_rm_volume, ("app", "app name"), ("name", "volume name"))


def _pairs(items: list[str], option: str, sep: str = "=",
           form: str = "NAME=VALUE") -> dict[str, str]:
    """``option``'s NAME<sep>VALUE words as a map; BadRequestError for a malformed one."""
    found = {}
    for item in items:
        name, found_sep, value = item.partition(sep)
        if not found_sep or not name:
            raise BadRequestError("{} takes {}, not {!r}".format(option, form, item))
        found[name] = value
    return found


def _secrets(items: list[str]) -> dict[str, str]:
    """--secret K=V as given; --secret K from this process's environment."""
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in os.environ:
                raise BadRequestError("--secret {0}: {0} is not set in this environment; "
                                      "export it first (its value stays off the command "
                                      "line)".format(name))
            value = os.environ[name]
        found[name] = value
    return found


def _volumes(items: list[str]) -> dict[str, str]:
    return _pairs(items, "--volume", ":", "NAME:/PATH")


def _health(args: argparse.Namespace) -> dict[str, Any] | None:
    spec: dict[str, Any] = {}
    if args.health is not None:
        kind, sep, value = args.health.partition(":")
        if not sep or kind not in ("tcp", "http", "cmd"):
            raise BadRequestError("--health takes tcp:PORT, http:URL or cmd:'ARGV', not "
                                  "{!r}".format(args.health))
        spec = {"tcp": int(value) if value.isdigit() else value} if kind == "tcp" else (
            {"http": kind + ":" + value} if kind == "http" else {"cmd": _argv(value, "--health")})
    return _timing(spec, args) or None


def _timing(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.health_timeout is not None:
        spec["timeout"] = args.health_timeout
    if args.min_uptime is not None:
        spec["min_uptime"] = args.min_uptime
    return spec


def _argv(text: str | None, option: str = "--release") -> list[str] | None:
    """A command given as one shell-quoted string (split here, never run by a shell)."""
    if text is None:
        return None
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise BadRequestError("{} {!r}: {} (quote it as for a shell)".format(
            option, text, exc)) from exc
