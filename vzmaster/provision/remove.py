"""``vzmaster node remove``: a node no longer vz's. Its containers are stopped (their
inittab lines go, their processes end), the vz supervisor's unit (systemd, upstart) is
stopped and deleted, the Subsystem is taken out of sshd (checked with
``sshd -t``, sshd reloaded), the agent and its launcher are deleted, and with ``purge``
the state root too (images, releases, volumes, logs: the data). Then vz.yml forgets it.
A rerun after an interruption finishes what is left."""

from __future__ import annotations

from typing import Callable

from vzmaster.client import Client
from vzmaster.errors import ConnectError
from vzmaster.provision import probe, sshd
from vzmaster.provision.add import AGENT_DIR, NO_PASSWORD
from vzmaster.provision.remote import Shell
from vzmaster.provision.steps import Step
from vzmaster.provision.supervisor import remove_supervisor
from vzmaster.transports import SSHOptions

# $1: the root to delete, only if it is vz's (it holds vz's own layout).
_PURGE = '[ -d "$1/images" ] || [ -d "$1/bundles" ] || exit 0; rm -rf -- "$1"; echo purged'


def remove_node(options: SSHOptions, purge: bool = False, root: str = "/var/lib/vz",
                say: Callable[[Step], None] = lambda step: None) -> list[Step]:
    """Undo node add on the node ``options`` reach (with the key)."""
    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        say(step)

    try:
        with Client(options=options) as node:
            stopped = [status.name for status in node.status() if status.state != "stopped"]
            for name in stopped:
                node.stop(name)
        done(Step("containers", bool(stopped), "stopped: " + (", ".join(stopped) or "none")))
    except ConnectError as exc:
        if "subsystem" not in exc.message:
            raise
        done(Step("containers", False, "no vzslave answers: nothing to stop"))
    with Shell.open(options) as shell:
        found = probe.parse_probe(shell.sh(probe.SCRIPT).text)
        unit = remove_supervisor(shell)
        done(Step("supervisor", bool(unit), "stopped and deleted " + unit if unit else "none"))
        done(Step("subsystem", _unregister(shell, found), "taken out of sshd"))
        gone = shell.sh('[ -e "$1" ] || [ -e "$2" ]', sshd.LAUNCHER, AGENT_DIR,
                        check=False).status == 0
        shell.run(["rm", "-rf", "--", sshd.LAUNCHER, AGENT_DIR])
        done(Step("agent", gone, "deleted {} and {}".format(sshd.LAUNCHER, AGENT_DIR)))
        if purge:
            purged = shell.sh(_PURGE, root).text.strip() == "purged"
            done(Step("state", purged, "deleted " + root))
    return steps


def _unregister(shell: Shell, found: probe.NodeProbe) -> bool:
    removed = [path for path in (sshd.DROPIN, NO_PASSWORD) if shell.read_file(path) is not None]
    if removed:
        shell.run(["rm", "-f", "--", *removed])
    config = shell.read_file(found.sshd_config) or b""
    if sshd.change(shell, found, found.sshd_config, sshd.without_block(config)):
        return True  # and sshd reloaded, which also drops the drop-ins removed
    if removed:
        sshd.reload(shell)
    return bool(removed)
