"""The vz supervisor on a node whose PID 1 ignores /etc/inittab (systemd, upstart): a
unit or job that runs ``/usr/local/bin/vzslave supervisor --foreground`` (the agent's
own tree, so nothing else is installed; in the foreground, so python-daemon is not
needed), enabled and started. A changed unit is reloaded but a running supervisor is
never restarted by node add: that would restart every container (initscripts/README.md).
"""

from __future__ import annotations

from vzmaster.provision.remote import ProvisionError, Shell
from vzmaster.provision.sshd import LAUNCHER
from vzmaster.provision.steps import Step

ROOT = "/var/lib/vz"
SYSTEMD_UNIT = "/etc/systemd/system/vz-supervisor.service"
UPSTART_JOB = "/etc/init/vz-supervisor.conf"


def systemd_unit(root: str = ROOT) -> bytes:
    """The systemd unit (as initscripts/vz-supervisor.service, run by the agent)."""
    return """\
# Written by vzmaster node add: the vz supervisor runs the respawn entries of
# {root}/containers/inittab, as sysvinit would run /etc/inittab's (systemd ignores it).
[Unit]
Description=vz container supervisor (inittab respawn entries)
After=local-fs.target network.target
RequiresMountsFor={root}

[Service]
Type=simple
ExecStart={launcher} supervisor --foreground --root {root}
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
TimeoutStopSec=20
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
""".format(root=root, launcher=LAUNCHER).encode()


def upstart_job(root: str = ROOT) -> bytes:
    """The upstart job (as initscripts/vz-supervisor.conf, run by the agent)."""
    return """\
# Written by vzmaster node add: the vz supervisor (upstart ignores /etc/inittab).
description "vz container supervisor (inittab respawn entries)"
start on runlevel [2345]
stop on runlevel [!2345]
respawn
kill timeout 20
exec {launcher} supervisor --foreground --root {root}
""".format(root=root, launcher=LAUNCHER).encode()


def install_supervisor(shell: Shell, init: str) -> Step:
    """The supervisor's unit or job for ``init`` written, enabled and running."""
    if init == "systemd":
        return _install_systemd_unit(shell)
    if init == "upstart":
        changed = shell.write_file(UPSTART_JOB, upstart_job(), 0o644)
        if changed:
            shell.run(["initctl", "reload-configuration"])
        running = b"start/running" in shell.run(["status", "vz-supervisor"],
                                                check=False).stdout
        if not running:
            shell.run(["start", "vz-supervisor"])
        return Step("supervisor", changed or not running, "upstart job " + UPSTART_JOB)
    raise ProvisionError("{}: PID 1 is {}, which ignores /etc/inittab, and vz knows no way "
                         "to run its supervisor under it: see initscripts/README.md".format(
                             shell.label, init))


def _install_systemd_unit(shell: Shell) -> Step:
    # No daemon-reload for a new unit: systemd loads a unit file it has not seen when
    # it is named, and refuses a reload with under 16 MB free in /run (systemd 249+),
    # which is all a 128 MB VPS has. A changed unit that systemd has loaded needs one.
    existed = shell.read_file(SYSTEMD_UNIT) is not None
    changed = shell.write_file(SYSTEMD_UNIT, systemd_unit(), 0o644)
    reloaded = existed and changed
    if reloaded:
        shell.run(["systemctl", "daemon-reload"])
    shell.run(["systemctl", "--no-reload", "enable", "vz-supervisor"])
    active = shell.run(["systemctl", "is-active", "--quiet", "vz-supervisor"],
                       check=False).status == 0
    start = ["systemctl", "start", "vz-supervisor"]
    if not active and shell.run(start, check=False).status != 0:
        if not reloaded:
            shell.run(["systemctl", "daemon-reload"])  # 236-245 keep a miss until a reload
        shell.run(start)  # once more: a failure now stops node add with systemctl's words
    return Step("supervisor", changed or not active, "systemd unit {}{}".format(
        SYSTEMD_UNIT, "" if active else ", started"))


def remove_supervisor(shell: Shell) -> str:
    """The unit or job install_supervisor wrote stopped (its containers with it),
    disabled and deleted; its path, or "" when there was none."""
    if shell.read_file(SYSTEMD_UNIT) is not None:
        shell.run(["systemctl", "--no-reload", "disable", "--now", "vz-supervisor"],
                  check=False)
        shell.run(["rm", "-f", "--", SYSTEMD_UNIT])
        shell.run(["systemctl", "daemon-reload"], check=False)
        return SYSTEMD_UNIT
    if shell.read_file(UPSTART_JOB) is not None:
        shell.run(["stop", "vz-supervisor"], check=False)
        shell.run(["rm", "-f", "--", UPSTART_JOB])
        shell.run(["initctl", "reload-configuration"], check=False)
        return UPSTART_JOB
    return ""
