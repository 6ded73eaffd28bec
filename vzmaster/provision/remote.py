"""A login session on a node that may have nothing of vz yet: commands, files.

Every command is an argv list, joined with shell quoting word by word (SSH carries one
command string; nothing of ours is ever interpolated into a shell script: scripts are
constants that take their data as positional arguments). A user other than root runs
commands through ``sudo -n`` (never a password prompt). Files are written through a
temporary name beside the target, checked by sha256, and renamed into place, so a
dropped connection leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import shlex
import threading
from typing import Callable, NamedTuple, Sequence

import paramiko

from vzmaster.transports import SSHOptions
from vzmaster.transports.paramiko import login, paramiko_errors
from vzslave.errors import Error

# $1 target, $2 octal mode, $3 sha256: the bytes come on stdin.
_WRITE = ('set -e; rm -f "$1".vz-new.*; t="$1.vz-new.$$"; trap \'rm -f "$t"\' EXIT; umask 077; '
          'cat > "$t"; '
          'h=$(sha256sum "$t" 2>/dev/null | cut -d" " -f1) || h=; '
          'if [ -n "$h" ] && [ "$h" != "$3" ]; then echo "sha256 mismatch: $h" >&2; exit 3; '
          'fi; chmod "$2" "$t"; mv -f "$t" "$1"; trap - EXIT')


class ProvisionError(Error):
    """Setting a node up failed: what failed, what the node said, and what to do."""


class Done(NamedTuple):
    """A command's end on the node."""

    status: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class Shell:
    """A logged-in SSH session for setting a node up."""

    def __init__(self, client: paramiko.SSHClient, label: str, sudo: bool) -> None:
        self.client = client
        self.label = label
        self.sudo = sudo  # commands go through sudo -n: the login user is not root

    @classmethod
    def open(cls, options: SSHOptions,
             on_new_key: Callable[[str, str], None] | None = None) -> Shell:
        """Log in as ``options`` say (a password, or keys)."""
        client, label = login(options, on_new_key)
        return cls(client, label, sudo=label.split("@", 1)[0] != "root")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Shell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, argv: Sequence[str], input: bytes = b"", check: bool = True,
            timeout: float = 120.0, privileged: bool = True) -> Done:
        """Run ``argv`` on the node (as root: through sudo -n for another user, unless
        ``privileged`` is False); ProvisionError on a non-zero exit with ``check``."""
        words = list(argv)
        if self.sudo and privileged:
            words = ["sudo", "-n", "--"] + words
        command = shlex.join(words)
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ProvisionError("{}: the SSH session is gone".format(self.label))
        with paramiko_errors(self.label, lost="the link broke while running " + argv[0]):
            channel = transport.open_session(timeout=timeout)
            try:
                channel.settimeout(timeout)
                channel.exec_command(command)
                if input:
                    channel.sendall(input)
                channel.shutdown_write()
                # Both streams at once: they share the channel's window, so a command
                # with much to say on stderr would stall while only stdout is read.
                errors: list[bytes] = []
                reader = threading.Thread(target=lambda: errors.append(
                    channel.makefile_stderr("rb").read()), daemon=True)
                reader.start()
                stdout = channel.makefile("rb").read()
                reader.join(timeout)
                stderr = b"".join(errors)
                status = channel.recv_exit_status()
            finally:
                channel.close()
        done = Done(status, stdout, stderr)
        if self.sudo and privileged and status == 1 and b"sudo:" in stderr and (
                b"password" in stderr or b"not allowed" in stderr
                or b"not in the sudoers" in stderr):
            user = self.label.split("@", 1)[0]
            raise ProvisionError("{}: {} may not use sudo without a password there ({}): "
                                 "add '{} ALL=(ALL) NOPASSWD: ALL' to /etc/sudoers.d/vz, "
                                 "or log in as root".format(self.label, user,
                                                            _last_line(stderr), user))
        if check and status != 0:
            raise ProvisionError("{}: {} exited {}: {}".format(
                self.label, shlex.join(list(argv))[:200], status,
                _last_line(stderr) or _last_line(stdout) or "(no output)"))
        return done

    def sh(self, script: str, *args: str, input: bytes = b"", check: bool = True,
           privileged: bool = True) -> Done:
        """A constant shell ``script`` with ``args`` as $1, $2, ..."""
        return self.run(["sh", "-c", script, "sh", *args], input=input, check=check,
                        privileged=privileged)

    def read_file(self, path: str, privileged: bool = True) -> bytes | None:
        """The bytes of ``path`` on the node; None if it does not exist."""
        done = self.sh('[ -e "$1" ] || exit 3; cat -- "$1"', path, check=False,
                       privileged=privileged)
        if done.status == 3:
            return None
        if done.status != 0:
            raise ProvisionError("{}: cannot read {}: {}".format(
                self.label, path, _last_line(done.stderr)))
        return done.stdout

    def sha256_of(self, path: str, privileged: bool = True) -> str | None:
        """The sha256 of ``path`` on the node; None if it does not exist."""
        done = self.sh('[ -e "$1" ] || exit 3; sha256sum -- "$1"', path, check=False,
                       privileged=privileged)
        if done.status == 3:
            return None
        words = done.text.split()
        if done.status == 0 and words:
            return words[0]
        data = self.read_file(path, privileged)  # no sha256sum on the node
        return None if data is None else hashlib.sha256(data).hexdigest()

    def write_file(self, path: str, data: bytes, mode: int = 0o644,
                   privileged: bool = True) -> bool:
        """Make ``path`` hold ``data`` (atomically, checked by sha256); False if it
        already did (nothing is written)."""
        if self.sha256_of(path, privileged) == hashlib.sha256(data).hexdigest():
            return False
        self.sh(_WRITE, path, "{:o}".format(mode), hashlib.sha256(data).hexdigest(),
                input=data, privileged=privileged)
        return True


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
