"""``vzmaster node check``: what stands between a node and vz, one line per problem with
its fix. It logs in with the key (as the fleet does), probes, reads sshd's effective
configuration, runs the agent's ``--version``, and says hello; it changes nothing."""

from __future__ import annotations

import shlex
from typing import NamedTuple

from vzmaster.provision import probe
from vzmaster.provision.add import verify_key_login
from vzmaster.provision.remote import Shell
from vzmaster.provision.sshd import LAUNCHER
from vzmaster.transports import SSHOptions
from vzslave import __version__
from vzslave.errors import Error

MIN_FREE = 100 * 1024 * 1024  # bytes: an image and its unpacked release, with room
MAX_SKEW = 5.0  # seconds: TLS, logs and health timings go wrong beyond this
# As vzslave finds it (supervision.py): the pid in its pid file, alive.
_SUPERVISOR_RUNS = '{ read -r pid < "$1/containers/supervisor.pid"; } 2>/dev/null && kill -0 "$pid"'
_INODES = 'df -Pi "$1" 2>/dev/null | awk \'NR==2 {print $4}\''


class Problem(NamedTuple):
    """One thing wrong with a node, and what to do about it."""

    what: str
    fix: str


def check_node(name: str, options: SSHOptions, root: str = "/var/lib/vz") -> list[Problem]:
    """Every problem found on node ``name`` (empty: it is fine)."""
    try:
        shell = Shell.open(options)
    except Error as exc:
        return [Problem("cannot log in: " + exc.message,
                        "check the address and the key, or run vzmaster node add")]
    try:
        with shell:
            problems = _problems(name, options, shell, root)
    except Error as exc:
        return [Problem("the check itself failed: " + exc.message,
                        "run vzmaster node add {} {} again".format(name, options.host))]
    if not problems:
        try:
            verify_key_login(options)
        except Error as exc:
            problems.append(Problem("vzslave does not answer: " + exc.message,
                                    "vzmaster node add {} {}".format(name, options.host)))
    return problems


def sshd_problems(effective: str, user: str, config: str, add: str) -> list[Problem]:
    """What in sshd's configuration (``sshd -T``: the files as the next start or reload
    reads them) stands between vz and the node, logging in as ``user``."""
    settings: dict[str, list[str]] = {}
    for line in effective.lower().splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value.strip())
    problems = []
    if not any(value.startswith("vzslave ") for value in settings.get("subsystem", [])):
        problems.append(Problem("sshd has no vzslave Subsystem", add))
    # The running sshd may still have let this login in: the files are what counts next.
    lockout = "; the next sshd reload locks vz out"
    if settings.get("pubkeyauthentication") == ["no"]:
        problems.append(Problem("sshd refuses key logins (PubkeyAuthentication no)" + lockout,
                                "set PubkeyAuthentication yes in " + config))
    if user == "root" and settings.get("permitrootlogin") == ["no"]:
        problems.append(Problem("sshd refuses root logins (PermitRootLogin no)" + lockout,
                                "set PermitRootLogin prohibit-password in {}, or log in "
                                "as a user with sudo (vz.yml user:)".format(config)))
    allowed = settings.get("allowusers")
    if allowed and not any(entry.split("@")[0] in (user, "*") for entry in allowed):
        problems.append(Problem("sshd's AllowUsers leaves out {}{}".format(user, lockout),
                                "add {} to AllowUsers in {}".format(user, config)))
    return problems


def _problems(name: str, options: SSHOptions, shell: Shell, root: str) -> list[Problem]:
    problems: list[Problem] = []
    found = probe.parse_probe(shell.sh(probe.SCRIPT).text)
    effective = shell.run([found.sshd_path, "-T"], check=False).text
    user = shell.label.split("@", 1)[0]
    problems += sshd_problems(effective, user, found.sshd_config,
                              "vzmaster node add {} {}".format(name, options.host))
    done = shell.run([LAUNCHER, "--version"], check=False)
    agent = done.text.strip().split()[-1] if done.status == 0 and done.text else ""
    if not agent:
        problems.append(Problem("no working agent at " + LAUNCHER,
                                "vzmaster node add {} {}".format(name, options.host)))
    elif agent != __version__:
        problems.append(Problem("agent {}, master {}".format(agent, __version__),
                                "vzmaster node upgrade " + name))
    if found.python is None:
        problems.append(Problem("no Python 3.6 or newer",
                                shlex.join(probe.python_install_command(found))
                                or "install python3"))
    if found.disk_free < MIN_FREE:
        problems.append(Problem("{} MiB free on /".format(found.disk_free >> 20),
                                "free disk space (vzmaster rm-image, old releases)"))
    inodes = shell.sh(_INODES, root, check=False).text.strip()
    if inodes.isdigit() and int(inodes) < 10000:
        problems.append(Problem("{} inodes free under {}".format(inodes, root),
                                "remove unused images and bundles"))
    if found.init not in ("sysvinit", "busybox"):
        if shell.sh(_SUPERVISOR_RUNS, root, check=False).status:
            problems.append(Problem("PID 1 is {}, which ignores /etc/inittab, and no vz "
                                    "supervisor runs".format(found.init),
                                    "vzmaster node add {} {} (it installs and starts "
                                    "one)".format(name, options.host)))
    elif shell.sh('[ -w /etc/inittab ]', check=False).status:
        problems.append(Problem("/etc/inittab is not writable",
                                "chattr -i /etc/inittab, or remount / read-write"))
    if abs(found.clock_skew) > MAX_SKEW:
        problems.append(Problem("the clock is {:+.0f} s off the master's".format(
            found.clock_skew), "run ntpdate, or install chrony / systemd-timesyncd"))
    return problems
