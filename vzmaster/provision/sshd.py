"""The ``vzslave`` Subsystem in a node's sshd: a drop-in where sshd reads
``sshd_config.d`` (OpenSSH 7.3+ with an Include line), else a marked block at the top of
sshd_config (Subsystem is not allowed inside a Match block, and sshd keeps the first
value it reads). Every change is checked with ``sshd -t`` before sshd is told, and
undone on a failed check with sshd's own words; sshd is told with SIGHUP, which
re-executes the listener and leaves every session (ours too) running.
"""

from __future__ import annotations

import re

from vzmaster.provision.probe import NodeProbe
from vzmaster.provision.remote import ProvisionError, Shell

LAUNCHER = "/usr/local/bin/vzslave"
DROPIN = "/etc/ssh/sshd_config.d/vzslave.conf"
BEGIN = "# BEGIN vz: the vz node agent (vzmaster node add); edits inside are replaced"
END = "# END vz"
_SUBSYSTEM = re.compile(r"^\s*Subsystem\s+vzslave\s", re.IGNORECASE | re.MULTILINE)

# $1 sshd, $2 config file, $3 backup: restore the backup and say why sshd -t failed.
_CHECK = ('out=$("$1" -t 2>&1) && exit 0; if [ -n "$3" ] && [ -e "$3" ]; then '
          'cp -p "$3" "$2"; else rm -f "$2"; fi; echo "$out" >&2; exit 4')
_RELOAD = ('for f in /run/sshd.pid /var/run/sshd.pid; do [ -r "$f" ] && '
           'kill -HUP "$(cat "$f")" && exit 0; done; '
           'command -v systemctl >/dev/null && { systemctl reload ssh 2>/dev/null || '
           'systemctl reload sshd; } && exit 0; '
           'command -v service >/dev/null && { service ssh reload 2>/dev/null || '
           'service sshd reload; } && exit 0; exit 5')


def dropin_text(launcher: str = LAUNCHER) -> bytes:
    """The drop-in file's content."""
    return ("# Written by vzmaster node add: the vz node agent as an SSH subsystem.\n"
            "Subsystem vzslave {}\n".format(launcher)).encode()


def with_block(config: bytes, launcher: str = LAUNCHER, extra: str = "") -> bytes:
    """``config`` with vz's marked block at its top (replacing an earlier one, whose
    ``extra`` lines it keeps unless new ones are given)."""
    text = config.decode("utf-8", "surrogateescape")
    old = re.search(r"(?ms)^" + re.escape(BEGIN) + r"\n(.*?)^" + re.escape(END) + r"\n?", text)
    if old is not None:
        kept = "".join(line + "\n" for line in old.group(1).splitlines()
                       if not _SUBSYSTEM.match(line))
        extra = extra or kept
        text = text[:old.start()] + text[old.end():]
    block = "{}\nSubsystem vzslave {}\n{}{}\n".format(BEGIN, launcher, extra, END)
    return (block + text).encode("utf-8", "surrogateescape")


def without_block(config: bytes) -> bytes:
    """``config`` without vz's marked block."""
    text = config.decode("utf-8", "surrogateescape")
    return re.sub(r"(?ms)^" + re.escape(BEGIN) + r"\n.*?^" + re.escape(END) + r"\n?", "",
                  text).encode("utf-8", "surrogateescape")


def foreign_subsystem(config: bytes) -> bool:
    """Whether sshd_config names a vzslave Subsystem outside vz's block."""
    return bool(_SUBSYSTEM.search(without_block(config).decode("utf-8", "surrogateescape")))


def register(shell: Shell, probe: NodeProbe) -> str:
    """Register the Subsystem; what was done ("" if it already was)."""
    config = shell.read_file(probe.sshd_config) or b""
    if foreign_subsystem(config):
        return ""  # someone registered vzslave by hand: theirs stands (node check says)
    if probe.dropin:
        if not change(shell, probe, DROPIN, dropin_text()):
            return ""
        return "{} (drop-in)".format(DROPIN)
    if not change(shell, probe, probe.sshd_config, with_block(config)):
        return ""
    return "{} (a marked block, backup in {})".format(probe.sshd_config, backup_of(probe))


def backup_of(probe: NodeProbe) -> str:
    """Where sshd_config is copied before vz changes it."""
    return probe.sshd_config + ".vz-backup"


def change(shell: Shell, probe: NodeProbe, path: str, data: bytes) -> bool:
    """``path`` (a drop-in, or sshd_config itself, backed up first) made ``data``,
    checked with sshd -t (undone if refused), and sshd reloaded; False if it held
    ``data`` already."""
    if shell.read_file(path) == data:
        return False
    backup = backup_of(probe) if path == probe.sshd_config else ""
    if backup:
        shell.run(["cp", "-p", probe.sshd_config, backup])
    shell.write_file(path, data, 0o644)
    check(shell, probe, path, backup)
    reload(shell)
    return True


def check(shell: Shell, probe: NodeProbe, path: str, backup: str) -> None:
    """``sshd -t``; on failure the change is undone and ProvisionError says sshd's words."""
    done = shell.sh(_CHECK, probe.sshd_path, path, backup, check=False)
    if done.status != 0:
        said = done.stderr.decode("utf-8", "replace").strip() or "(nothing)"
        raise ProvisionError("{}: sshd -t refused the configuration, which is restored as "
                             "it was: {}".format(shell.label, said))


def reload(shell: Shell) -> None:
    """Tell sshd to re-read its configuration; sessions stay up."""
    done = shell.sh(_RELOAD, check=False)
    if done.status != 0:
        raise ProvisionError("{}: could not tell sshd to reload (no pid file, systemctl or "
                             "service): reload it by hand, then run node add again".format(
                                 shell.label))
