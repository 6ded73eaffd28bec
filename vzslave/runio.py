"""The runner's raw I/O and its error: whole writes to an fd, small reads, the boot marker.

A leaf that imports only ``os``: the runner imports it at every spawn (init execs the
runner at every respawn, so what it imports is paid each time), and so do mounts,
runch, logs and inittab, which share these helpers without importing the runner.

The boot marker, ROOT/containers/NAME/mounts, holds the boot id under which vzslave
prepared a container's mounts in the node's mount namespace: a spawn that finds this
boot's id there mounts nothing; after a reboot the runner mounts again and marks anew.
"""

import os

BOOT_ID = "/proc/sys/kernel/random/boot_id"
MARKER = "mounts"  # in the container's state directory


class RunnerError(Exception):
    """A step of the runner failed; ``step`` names it, ``message`` says why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__("{}: {}".format(step, message))
        self.step = step
        self.message = message


def os_message(exc: OSError) -> str:
    """An OSError as a line for a log or a run record: its text and the file it names."""
    return "{}{}".format(exc.strerror or exc, " ({})".format(exc.filename)
                         if exc.filename else "")


def read_stripped(path: str) -> bytes:
    """The bytes of the small file at ``path``, blanks around them stripped; b"" if unreadable."""
    try:
        with open(path, "rb") as source:
            return source.read().strip()
    except OSError:
        return b""


def write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` to ``fd`` (os.write may write less); its length. OSError."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def write_quietly(fd: int, data: bytes) -> None:
    """write_all for diagnostics, best effort: a failed write has nowhere left to go."""
    try:
        write_all(fd, data)
    except OSError:
        pass


def boot_marked(state_dir: str) -> bool:
    """True if the marker in ``state_dir`` names this boot (an unreadable id never does)."""
    boot = read_stripped(BOOT_ID)
    return bool(boot) and read_stripped(os.path.join(state_dir, MARKER)) == boot


def mark_boot(state_dir: str) -> None:
    """Write this boot's id into the marker of ``state_dir``, replacing it in one rename."""
    path = os.path.join(state_dir, MARKER)
    with open(path + ".tmp", "wb") as out:
        out.write(read_stripped(BOOT_ID) + b"\n")
    os.rename(path + ".tmp", path)


def unmark_boot(state_dir: str) -> None:
    """Remove the marker of ``state_dir``: the next spawn mounts (none is no error)."""
    try:
        os.unlink(os.path.join(state_dir, MARKER))
    except FileNotFoundError:
        pass
