"""``vzmaster node upgrade``: the master's vzslave on a node, switched by one rename of
the launcher; ``--rollback`` switches back. Running containers are not touched: their
inittab lines run ROOT/bin/vzrun, which names the agent tree it was written for, and
every tree stays on the node (they are small), so a respawn never loses its code.

The launcher's previous content is kept in /usr/local/lib/vz/previous, so a rollback
needs nothing from the master.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

from vzmaster.provision.add import AGENT_DIR, install_agent, launcher_text, verify_key_login
from vzmaster.provision.remote import ProvisionError, Shell
from vzmaster.provision.sshd import LAUNCHER
from vzmaster.transports import SSHOptions

PREVIOUS = AGENT_DIR + "/previous"
_EXEC = re.compile(rb"^exec (\S+) -I (\S+) ", re.MULTILINE)


class Upgraded(NamedTuple):
    """What became of one node's agent."""

    before: str  # the agent tree the launcher ran
    after: str
    version: str  # what hello says now
    changed: bool


def launcher_target(text: bytes | None) -> tuple[str, str] | None:
    """(python, agent tree) of a launcher node add wrote; None for anything else."""
    found = _EXEC.search(text or b"")
    return (found.group(1).decode(), found.group(2).decode()) if found else None


def upgrade(options: SSHOptions, agent: Callable[[], Any],
            rollback: bool = False) -> Upgraded:
    """Install ``agent()`` (an AgentBuild) on the node, or with ``rollback`` the
    previous one; verified by a new login and hello."""
    with Shell.open(options) as shell:
        current = shell.read_file(LAUNCHER)
        target = launcher_target(current)
        if target is None:
            raise ProvisionError("{}: {} was not written by vzmaster node add: run node add "
                                 "first".format(shell.label, LAUNCHER))
        python, before = target
        if rollback:
            previous = shell.read_file(PREVIOUS)
            back = launcher_target(previous)
            if previous is None or back is None:
                raise ProvisionError("{}: no earlier agent to roll back to".format(
                    shell.label))
            after = back[1]
            new = previous
        else:
            after, _ = install_agent(shell, python, agent())
            new = launcher_text(python, after)
        if new == current:
            return Upgraded(before, after, verify_key_login(options).version, False)
        assert current is not None
        shell.write_file(PREVIOUS, current, 0o644)
        shell.write_file(LAUNCHER, new, 0o755)
    return Upgraded(before, after, verify_key_login(options).version, True)
