"""``vzmaster node add``: make a fresh VPS a node of vz.yml (vzmaster/provision/).

The password never goes on argv: it comes from --password-file, a prompt
(--ask-password) or $VZ_PASSWORD. The key authorized on the node is vz.yml's ``ssh.key``
(its .pub beside it), else --key, else ~/.ssh/id_ed25519. Exit status: 0 done (or
nothing to do), 1 a step failed (the message names it and what to do), 2 usage, 3 the
node could not be reached or logged in to.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TYPE_CHECKING, Any

from vzmaster.errors import TransportError
from vzslave.errors import Error

if TYPE_CHECKING:
    from vzmaster.provision.steps import Step

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TRANSPORT = 0, 1, 2, 3
DEFAULT_KEY = "~/.ssh/id_ed25519"


def add_commands(commands: Any) -> None:
    """``vzmaster node add``."""
    node = commands.add_parser("node", help="make a VPS a vz node (node add)",
                               description="Set up nodes from the master over SSH.")
    sub = node.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    sub.required = True
    add = sub.add_parser("add", help=cmd_add.__doc__, description=cmd_add.__doc__)
    add.add_argument("name", metavar="NAME", help="the node's name in vz.yml")
    add.add_argument("host", metavar="HOST", help="its address (or an ~/.ssh/config alias)")
    add.add_argument("-c", "--config", metavar="FILE",
                     help="vz.yml (default: $VZ_CONFIG, then vz.yml here or above, else "
                          "./vz.yml, created)")
    add.add_argument("--user", help="log in as (default: vz.yml's ssh.user, else root)")
    add.add_argument("--port", type=int, help="SSH port (default: vz.yml's ssh.port, else 22)")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-file", metavar="FILE",
                        help="the login password, from this file (first line)")
    secret.add_argument("--ask-password", action="store_true", help="prompt for it")
    add.add_argument("--key", metavar="PUBKEY",
                     help="the public key to authorize (default: vz.yml's ssh.key + .pub, "
                          "else {}.pub)".format(DEFAULT_KEY))
    add.add_argument("--groups", default="", metavar="A,B", help="its groups in vz.yml")
    add.add_argument("--disable-password-login", action="store_true",
                     help="after the key login is verified, turn password login off")
    add.add_argument("--install-python", action="store_true",
                     help="install Python 3 with the node's package manager if it has none")
    add.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    add.set_defaults(node_run=cmd_add, on_node=False)
    check = sub.add_parser("check", help=cmd_check.__doc__, description=cmd_check.__doc__)
    check.add_argument("nodes", nargs="*", metavar="NODE", help="default: every node")
    upgrade = sub.add_parser("upgrade", help=cmd_upgrade.__doc__,
                             description=cmd_upgrade.__doc__)
    upgrade.add_argument("nodes", nargs="*", metavar="NODE", help="default (or 'all'): "
                         "every node")
    upgrade.add_argument("--rollback", action="store_true",
                         help="switch back to the agent each node ran before")
    remove = sub.add_parser("remove", help=cmd_remove.__doc__, description=cmd_remove.__doc__)
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--purge", action="store_true",
                        help="also delete the state root (images, releases, volumes: data)")
    for parser, func in ((check, cmd_check), (upgrade, cmd_upgrade), (remove, cmd_remove)):
        parser.add_argument("-c", "--config", metavar="FILE", help="vz.yml")
        parser.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS")
        parser.add_argument("-v", "--verbose", action="store_true")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(node_run=func, on_node=False)


def cmd_add(args: argparse.Namespace) -> int:
    """Make a fresh VPS a vz node: key, agent, Subsystem, verify, vz.yml."""
    from vzmaster.provision.add import NodeAdd, add_node, public_key_for

    try:
        config, ssh = _vz_yml(args.config)
        private = args.key[:-4] if args.key and args.key.endswith(".pub") else (
            ssh.get("key") or DEFAULT_KEY)
        public_line, private = public_key_for(os.path.expanduser(private), args.key)
        ask = NodeAdd(
            name=args.name, host=args.host, config=config, public_key=public_line,
            private_key=private, known_hosts=ssh.get("known_hosts") or os.path.expanduser(
                "~/.ssh/known_hosts"), user=args.user or ssh.get("user") or "root",
            port=args.port if args.port is not None else int(ssh.get("port") or 22),
            password=_password(args), groups=tuple(g for g in args.groups.split(",") if g),
            disable_password_login=args.disable_password_login,
            install_python=args.install_python, connect_timeout=args.connect_timeout)
        added = add_node(ask, _say)
    except Error as exc:
        print("vzmaster: node add {}: {}".format(args.name, exc.message), file=sys.stderr)
        return EXIT_TRANSPORT if isinstance(exc, TransportError) else EXIT_FAILED
    print("{}: {}".format(args.name, "done" if added.changed else
                          "nothing to change: it is a vz node already"))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Diagnose nodes: one line per problem, with its fix; exit 1 if any."""
    from vzmaster.fleet.config import load
    from vzmaster.provision.check import check_node

    config = load(args.config)
    names = _names(config, args.nodes)
    status = EXIT_OK
    for name in names:
        problems = check_node(name, config.node_options(name, args.connect_timeout))
        if not problems:
            print("{}: ok".format(name))
        for problem in problems:
            print("{}: {}; fix: {}".format(name, problem.what, problem.fix))
            status = EXIT_FAILED
    return status


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Install this master's vzslave on the nodes (containers keep running); --rollback."""
    from vzmaster.agent import build_agent
    from vzmaster.fleet.config import load
    from vzmaster.provision.add import cache_dir
    from vzmaster.provision.upgrade import upgrade

    config = load(args.config)
    status = EXIT_OK
    built: list[Any] = []

    def agent() -> Any:
        if not built:
            built.append(build_agent(cache_dir()))
        return built[0]

    for name in _names(config, args.nodes):
        try:
            done = upgrade(config.node_options(name, args.connect_timeout), agent,
                           rollback=args.rollback)
        except Error as exc:
            print("vzmaster: node upgrade {}: {}".format(name, exc.message), file=sys.stderr)
            status = max(status, EXIT_TRANSPORT if isinstance(exc, TransportError)
                         else EXIT_FAILED)
            continue
        print("{}: {}".format(name, "vzslave {} ({} -> {})".format(
            done.version, os.path.basename(done.before), os.path.basename(done.after))
            if done.changed else "vzslave {}, nothing to change".format(done.version)))
    return status


def cmd_remove(args: argparse.Namespace) -> int:
    """Stop vz's containers on a node, take out its Subsystem and agent, drop it from
    vz.yml; --purge deletes its state (the apps' data) too."""
    from vzmaster.fleet.config import load
    from vzmaster.provision.remove import remove_node
    from vzmaster.provision.vzyml import remove_node as forget

    config = load(args.config)
    options = config.node_options(args.name, args.connect_timeout)
    try:
        remove_node(options, purge=args.purge, say=_say)
    except Error as exc:
        print("vzmaster: node remove {}: {}".format(args.name, exc.message), file=sys.stderr)
        return EXIT_TRANSPORT if isinstance(exc, TransportError) else EXIT_FAILED
    forget(config.path, args.name)
    print("{}: removed from {}".format(args.name, config.path))
    return EXIT_OK


def _say(step: Step) -> None:
    """A step's line, as it happens."""
    print("{:16} {}{}".format(step.what, "changed: " if step.changed else "", step.detail),
          flush=True)


def _names(config: Any, given: list[str]) -> list[str]:
    """The nodes named (node or group names), or all of vz.yml's."""
    if not given or given == ["all"]:
        return list(config.nodes)
    return list(config.expand(given))


def _password(args: argparse.Namespace) -> str | None:
    from vzmaster.provision.remote import ProvisionError

    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as source:
                return source.readline().rstrip("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError("password file {}: {}".format(args.password_file, exc)) from exc
    if args.ask_password:
        return getpass.getpass("password for {}@{}: ".format(args.user or "root", args.host))
    return os.environ.get("VZ_PASSWORD")


def _vz_yml(explicit: str | None) -> tuple[str, dict[str, str]]:
    """vz.yml's path (found, or ./vz.yml to create) and its ssh: key and known_hosts,
    resolved as vz.yml resolves them (relative to its directory, ~ expanded)."""
    from vzmaster.fleet.config import ConfigError, find_config
    from vzmaster.provision.vzyml import read_ssh

    try:
        path = find_config(explicit, os.environ, os.getcwd())
    except ConfigError:
        if explicit:
            path = os.path.abspath(explicit)
        else:
            path = os.path.abspath("vz.yml")
    ssh = read_ssh(path)
    directory = os.path.dirname(path)
    found = {key: os.path.join(directory, os.path.expanduser(value))
             for key, value in ssh.items() if key in ("key", "known_hosts") and value}
    found.update({key: ssh[key] for key in ("user", "port") if ssh.get(key)})
    return path, found
