"""``vzmaster node add``: a fresh VPS, from its address and root password, to a vz node
in vz.yml. Each step checks before it changes anything, so a second run changes nothing
and says so, and a run cut short anywhere is finished by running it again.

1. Log in: with the key if it already works (a rerun after --disable-password-login),
   else with the password. An unknown host key is trusted on first use, explicitly: its
   fingerprint is printed and recorded in vz.yml's known_hosts; a changed key is refused.
2. The master's public key into the login user's authorized_keys (never twice).
3. Probe the node (probe.py): nothing is changed before this succeeds.
4. The agent: the zipapp built here (vzmaster/agent.py), uploaded to
   /usr/local/lib/vz/vzslave-VERSION.pyz and checked by sha256, unzipped beside it and
   byte-compiled by the node's Python (a zipapp compiles every module at every start:
   3x slower; the tree starts as fast as an installed package), and the launcher
   /usr/local/bin/vzslave pinned to that Python and tree, switched by one rename.
5. Where PID 1 ignores /etc/inittab (systemd, upstart): the vz supervisor, run by the
   agent itself (supervisor.py). Then the Subsystem (sshd.py), checked with sshd -t,
   sshd reloaded.
6. Verify from scratch: a new login with the key alone, the subsystem, hello.
7. With --disable-password-login: password login off, and the key login verified again.
8. The node into vz.yml (vzyml.py).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import time
from typing import Any, Callable, NamedTuple

from vzmaster.client import Client
from vzmaster.errors import AuthenticationError, ConnectError, HostKeyError
from vzmaster.provision import keys, probe, sshd, vzyml
from vzmaster.provision.remote import Done, ProvisionError, Shell
from vzmaster.provision.steps import Step
from vzmaster.provision.supervisor import install_supervisor
from vzmaster.transports import SSHOptions
from vzslave.records import NodeFacts

AGENT_DIR = "/usr/local/lib/vz"
NO_PASSWORD = "/etc/ssh/sshd_config.d/vzslave-no-password.conf"


class NodeAdd(NamedTuple):
    """What ``node add`` was asked."""

    name: str
    host: str
    config: str  # vz.yml (created if missing)
    public_key: str  # the key line to authorize
    private_key: str  # its private half, for the verification
    known_hosts: str
    user: str = "root"
    port: int = 22
    password: str | None = None
    groups: tuple[str, ...] = ()
    disable_password_login: bool = False
    install_python: bool = False
    connect_timeout: float = 10.0
    sock_factory: Callable[[], Any] | None = None  # tests: a socket to the node per login


class Added(NamedTuple):
    """``node add``'s result."""

    steps: list[Step]
    facts: NodeFacts
    probe: probe.NodeProbe

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.steps)


def add_node(ask: NodeAdd, say: Callable[[Step], None] = lambda step: None,
             agent: Callable[[], Any] | None = None) -> Added:
    """Make ``ask.host`` a vz node named ``ask.name``; ProvisionError (or a transport
    error) naming the step that failed. ``agent()`` gives the AgentBuild to install."""
    vzyml.check_node(ask.name, _entry(ask))
    if not ask.connect_timeout > 0:
        raise ProvisionError("the connect timeout must be above 0 seconds")
    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        say(step)

    with _login(ask, done) as shell:
        found = probe.parse_probe(shell.sh(probe.SCRIPT).text, time.time())
        done(Step("probe", False, "{}, init {}, Python {}, OpenSSH {}{}".format(
            found.os_name or found.os_id, found.init, found.python_version,
            ".".join(map(str, found.sshd_version or ())) or "?",
            ", " + found.virt if found.virt else "")))
        done(_authorize(shell, found, ask.public_key))
        python = _python(shell, found, ask)
        done(_install_agent(shell, python, agent))
        if found.init in ("systemd", "upstart"):  # PID 1 ignores /etc/inittab
            done(install_supervisor(shell, found.init))
        elif found.init not in ("sysvinit", "busybox"):
            done(Step("supervisor", False, "PID 1 is {}: if it ignores /etc/inittab, "
                      "install the vz supervisor (initscripts/README.md)".format(found.init)))
        registered = sshd.register(shell, found)
        done(Step("subsystem", bool(registered), registered or "registered"))
        facts = _verify(ask)
        done(Step("verify", False, "key login, vzslave {} answers hello".format(
            facts.version)))
        if ask.disable_password_login:
            done(_no_password(shell, found))
            _verify(ask)
    changed = vzyml.add_node(ask.config, ask.name, _entry(ask))
    done(Step("vz.yml", changed, "{} {}".format(
        "added" if changed else "has", "nodes." + ask.name)))
    return Added(steps, facts, found)


def _login(ask: NodeAdd, done: Callable[[Step], None]) -> Shell:
    """A session with the key if it is authorized already, else with the password; an
    unknown host key trusted and recorded, said in the step."""
    base = SSHOptions(ask.host, user=ask.user, port=ask.port, known_hosts=ask.known_hosts,
                      trust_new_host=True, connect_timeout=ask.connect_timeout,
                      ssh_config=None)
    trusted: list[str] = []

    def on_new_key(hostname: str, fingerprint: str) -> None:
        trusted.append("{} {} recorded in {}".format(hostname, fingerprint, ask.known_hosts))

    def options(**fields: Any) -> SSHOptions:
        sock = ask.sock_factory() if ask.sock_factory else None
        return dataclasses.replace(base, sock=sock, **fields)

    shell = None
    how = "key"
    if os.path.exists(ask.private_key):
        try:
            shell = Shell.open(options(key_filename=ask.private_key), on_new_key)
        except AuthenticationError:
            shell = None
    if shell is None:
        if ask.password is None:
            raise ProvisionError("{}@{}: the key is not authorized there yet and no password "
                                 "was given (--password-file, --ask-password or "
                                 "VZ_PASSWORD)".format(ask.user, ask.host))
        how = "password"
        shell = Shell.open(options(password=ask.password), on_new_key)
    done(Step("login", bool(trusted), "{} ({}){}".format(
        shell.label, how, "; new host key " + trusted[0] if trusted else "")))
    return shell


def _authorize(shell: Shell, found: probe.NodeProbe, public_key: str) -> Step:
    """The key into the login user's ~/.ssh/authorized_keys, as that user (0700, 0600).
    Its home is asked as that user: the probe ran as root, through sudo."""
    home = shell.sh('echo "$HOME"', privileged=False).text.strip() or found.home
    path = os.path.join(home or "/root", ".ssh", "authorized_keys")
    existing = shell.read_file(path, privileged=False) or b""
    updated = keys.with_key(existing, public_key)
    if updated is None:
        return Step("key", False, "already in " + path)
    shell.run(["mkdir", "-p", "-m", "700", os.path.dirname(path)], privileged=False)
    shell.write_file(path, updated, 0o600, privileged=False)
    return Step("key", True, "added to " + path)


def _python(shell: Shell, found: probe.NodeProbe, ask: NodeAdd) -> str:
    if found.python is not None:
        return found.python
    command = probe.python_install_command(found)
    if not command:
        raise ProvisionError("{}: no Python 3.6 or newer, and no known way to install one on "
                             "{}: install python3, then run node add again".format(
                                 shell.label, found.os_name or found.os_id))
    if not ask.install_python:
        raise ProvisionError("{}: no Python 3.6 or newer. Install it with `{}` (or pass "
                             "--install-python), then run node add again".format(
                                 shell.label, shlex.join(command)))
    done = shell.run(command, timeout=900)
    again = probe.parse_probe(shell.sh(probe.SCRIPT).text)
    if again.python is None:
        raise ProvisionError("{}: {} ran, but still no Python 3.6+{}".format(
            shell.label, shlex.join(command), _gist(done)))
    return again.python


def _gist(done: Done) -> str:
    """What a package manager said that matters: its errors and warnings, else its last
    line (apt-get update exits 0 when no mirror answered)."""
    lines = [line.strip() for line in (done.stdout + b"\n" + done.stderr).decode(
        "utf-8", "replace").splitlines() if line.strip()]
    said = [line for line in lines if line[:2] in ("E:", "W:") or "rror" in line] or lines[-1:]
    return "; it said: " + " / ".join(said[:2]) if said else ""


# $1 python, $2 the zipapp, $3 the tree: unzipped and byte-compiled beside the zipapp,
# published by one rename (zipimport compiles every module at every start, twice).
_UNPACK = ('[ -d "$3" ] && exit 0; t="$3.vz-new.$$"; rm -rf "$t"; '
           '"$1" -m zipfile -e "$2" "$t" || { rm -rf "$t"; exit 6; }; '
           '"$1" -m compileall -q "$t" >/dev/null 2>&1; mv "$t" "$3" && echo unpacked')


def _install_agent(shell: Shell, python: str, agent: Callable[[], Any] | None) -> Step:
    from vzmaster.agent import build_agent

    built = agent() if agent is not None else build_agent(cache_dir())
    tree, changed = install_agent(shell, python, built)
    switched = shell.write_file(sshd.LAUNCHER, launcher_text(python, tree), 0o755)
    return Step("agent", changed or switched, "vzslave {} ({} bytes) in {}, run by {}".format(
        built.version, built.size, tree, python))


def install_agent(shell: Shell, python: str, built: Any) -> tuple[str, bool]:
    """The zipapp ``built`` (an AgentBuild) on the node, checked by sha256, and its tree
    unzipped and byte-compiled by the node's ``python``: (the tree, whether anything
    was written). Nothing installed earlier is removed: ROOT/bin/vzrun names the tree
    the containers' respawns run from."""
    with open(built.path, "rb") as source:
        data = source.read()
    pyz = "{}/{}".format(AGENT_DIR, built.name)
    tree = "{}/vzslave-{}-{}".format(AGENT_DIR, built.version, built.sha256[:12])
    shell.run(["mkdir", "-p", "-m", "755", AGENT_DIR])
    uploaded = shell.write_file(pyz, data, 0o644)
    unpacked = shell.sh(_UNPACK, python, pyz, tree).text.strip() == "unpacked"
    return tree, uploaded or unpacked


def cache_dir() -> str:
    """Where the agent zipapp is built on this machine (~/.cache/vz/agent)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    path = os.path.join(base, "vz", "agent")
    os.makedirs(path, exist_ok=True)
    return path


def launcher_text(python: str, tree: str) -> bytes:
    """/usr/local/bin/vzslave: the node's Python running the agent's tree, isolated
    (-I: no PYTHONPATH, no user site-packages; a system msgpack is still found), as
    root: a login user other than root (node add --user) goes through sudo -n, so one
    Subsystem line serves both."""
    return ("#!/bin/sh\n# Written by vzmaster node add: the vz node agent.\n"
            "[ \"$(id -u)\" = 0 ] || exec sudo -n -- \"$0\" \"$@\"\n"
            "exec {} -I {} \"$@\"\n".format(python, tree)).encode()


def _verify(ask: NodeAdd) -> NodeFacts:
    """A new login with the key alone, the subsystem, and hello."""
    return verify_key_login(SSHOptions(
        ask.host, user=ask.user, port=ask.port, key_filename=ask.private_key,
        known_hosts=ask.known_hosts, connect_timeout=ask.connect_timeout, ssh_config=None),
        ask.sock_factory)


def verify_key_login(options: SSHOptions, sock_factory: Callable[[], Any] | None = None,
                     settle: float = 10.0) -> NodeFacts:
    """A new session as ``options`` say (no password), the subsystem, and hello. For
    ``settle`` seconds a refused connection is tried again: sshd, told to reload,
    re-executes itself and listens again a moment later."""
    deadline = time.monotonic() + settle
    pause = 0.01  # sshd listens again within tens of ms: poll fast, then back off
    while True:
        try:
            sock = sock_factory() if sock_factory else options.sock
            with Client(options=dataclasses.replace(options, password=None,
                                                    sock=sock)) as node:
                return node.facts
        except (ConnectError, ConnectionRefusedError) as exc:
            if isinstance(exc, (AuthenticationError, HostKeyError)) or (
                    time.monotonic() > deadline):
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


def _no_password(shell: Shell, found: probe.NodeProbe) -> Step:
    """Password login off, through the same mechanism as the Subsystem."""
    # ChallengeResponseAuthentication: sshd before 8.7 turns keyboard-interactive (PAM's
    # password prompt) on through it, whatever KbdInteractiveAuthentication says; 8.7+
    # takes it as an alias.
    lines = (b"PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
             b"ChallengeResponseAuthentication no\n")
    if found.dropin:
        path, data = NO_PASSWORD, b"# Written by vzmaster node add.\n" + lines
    else:
        config = shell.read_file(found.sshd_config) or b""
        path, data = found.sshd_config, sshd.with_block(config, extra=lines.decode())
    if not sshd.change(shell, found, path, data):
        return Step("password login", False, "already off")
    return Step("password login", True, "turned off ({})".format(path))


def _entry(ask: NodeAdd) -> dict[str, Any]:
    entry: dict[str, Any] = {"host": ask.host}
    if ask.user != "root":
        entry["user"] = ask.user
    if ask.port != 22:
        entry["port"] = ask.port
    if ask.groups:
        entry["groups"] = list(ask.groups)
    return entry


def public_key_for(private_key: str, explicit: str | None = None) -> tuple[str, str]:
    """(public key line, private key path): ``explicit`` (a .pub file) or ``private_key``
    + ".pub"; ProvisionError if neither is readable."""
    path = explicit or private_key + ".pub"
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as source:
            line = source.read().strip()
        keys.parse_public_key(line)
    except (OSError, ValueError) as exc:
        raise ProvisionError("public key {}: {}".format(path, exc)) from exc
    private = os.path.expanduser(path[:-4] if path.endswith(".pub") else private_key)
    return line, private


