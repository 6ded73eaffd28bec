"""The host side of "VPS in a box": what this machine must have, and the few system
helpers boxes are made with (commands, namespaces, the console copy, sysvinit's init).

``vzmaster.testing.box`` builds hubs and boxes on these.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from vzslave.errors import Error

INITS = ("busybox", "sysv")         # inits that run /etc/inittab
OTHER_INITS = ("systemd",)         # inits that ignore it: the vz supervisor's hosts
SYSTEMD = "/lib/systemd/systemd"
SYSVINIT_DIR = "/opt/vz-test/sysvinit"
PYTHON_DEBS_DIR = "/opt/vz-test/python-debs"   # python3's own packages, as an apt repository
SSHD = "/usr/sbin/sshd"
_TOOLS = ("unshare", "nsenter", "ip", "ssh", "ssh-keygen", "mount", "umount",
          "pivot_root", "cp", "hostname", "install")
STALE = re.compile(r"vzt(\d+)-")  # vzt<pid>-...: what a run of the tests names
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1


class BoxError(Error):
    """A box or hub could not be created, reached or used (under vz's one root)."""


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library of this process (setns, prctl)."""
    return ctypes.CDLL(None, use_errno=True)


def run(argv: Sequence[str], input: bytes | None = None, timeout: float = 30.0,
         cwd: str | None = None) -> bytes:
    """Run a host command; its failure becomes a BoxError carrying stderr."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL, cwd=cwd,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BoxError(f"{shlex.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise BoxError(f"{shlex.join(argv)}: exit {done.returncode}: {err}")
    return done.stdout


def enter_netns(path: str) -> None:
    """Move this thread into the network namespace at ``path``."""
    # setns() is per thread and a socket keeps the netns it was made in, so one
    # thread parked in the hub netns can mint sockets for all (os.setns is 3.12+).
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc().setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when ``parent`` dies."""
    c = libc()   # loaded before fork: the child only makes the call

    def preexec() -> None:
        c.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:    # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
    return preexec


class Console:
    """Copies a box's console FIFO into console.log from a host thread."""

    def __init__(self, fifo: Path, log: Path) -> None:
        # O_RDWR: the open never blocks and we never read EOF between box writers.
        self._fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe()
        self._log = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._thread = threading.Thread(target=self._copy, daemon=True,
                                        name=f"vz-console-{fifo.parent.name}")
        self._thread.start()

    def _copy(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = [fd for fd, _ in poller.poll()]
            try:
                while True:
                    os.write(self._log, os.read(self._fd, 65536))
            except BlockingIOError:
                pass
            if self._stop_r in ready:
                return

    def stop(self) -> None:
        """Copy what is left, stop the thread, close the FIFO; idempotent."""
        if self._thread.is_alive():
            os.write(self._stop_w, b"x")
            self._thread.join()
            for fd in (self._fd, self._stop_r, self._stop_w, self._log):
                os.close(fd)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a file, for reports."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(none)"


def mkdirs(root: Path, rel: str) -> Path:
    """Make root/rel and missing parents 0755 whatever the umask (sshd's StrictModes)."""
    for sub in [*reversed(Path(rel).parents), Path(rel)]:
        if not (root / sub).exists():
            (root / sub).mkdir()
            os.chmod(root / sub, 0o755)
    return root / rel


def put_file(root: Path, rel: str, data: str | bytes, mode: int = 0o644) -> None:
    """Write root/rel with an exact mode, making its parent directories."""
    path = mkdirs(root, os.path.dirname(rel)) / os.path.basename(rel)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def find_sysvinit(dest: str = SYSVINIT_DIR) -> str | None:
    """Return the path of the extracted sysvinit ``init`` under dest, or None."""
    init = os.path.join(dest, "sbin", "init")
    return init if os.access(init, os.X_OK) else None


def ensure_sysvinit(dest: str = SYSVINIT_DIR) -> str:
    """Extract sysvinit-core's init into dest (never installing it); idempotent; return its path."""
    found = find_sysvinit(dest)
    if found:
        return found
    # Installing sysvinit-core would remove systemd-sysv and 10 other packages:
    # unpack the .deb beside the system instead.
    with tempfile.TemporaryDirectory(prefix="vz-sysvinit-") as tmp:
        run(["apt-get", "download", "sysvinit-core"], timeout=300, cwd=tmp)
        debs = sorted(Path(tmp).glob("sysvinit-core_*.deb"))
        if not debs:
            raise BoxError("apt-get download sysvinit-core produced no .deb")
        staging = os.path.join(tmp, "root")
        run(["dpkg-deb", "-x", str(debs[-1]), staging])
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(staging, dest)
    found = find_sysvinit(dest)
    if not found:
        raise BoxError(f"sysvinit-core unpacked into {dest} but has no sbin/init")
    return found


def find_python_debs(dest: str = PYTHON_DEBS_DIR) -> str | None:
    """Return dest if it holds the apt repository ensure_python_debs makes, else None."""
    return dest if os.path.isfile(os.path.join(dest, "Packages")) else None


def ensure_python_debs(dest: str = PYTHON_DEBS_DIR) -> str:
    """Download python3 and the packages of its own it needs (never installing them)
    into dest, a flat apt repository: what a Debian mirror gives ``apt-get install
    python3``, for the boxes that stand for a VPS without Python. Idempotent."""
    if find_python_debs(dest):
        return dest
    listed = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                  "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                  "python3"]).decode()
    names = sorted({line for line in listed.splitlines()
                    if re.fullmatch(r"(lib)?python3[.0-9]*(-minimal|-stdlib)?", line)})
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vz-python-debs-", dir=parent))
    try:
        run(["apt-get", "download", *names], timeout=600, cwd=str(tmp))
        index = []
        for deb in sorted(tmp.glob("*.deb")):
            control = run(["dpkg-deb", "-f", str(deb)]).decode().rstrip("\n")
            digest = hashlib.sha256(deb.read_bytes()).hexdigest()
            index.append(f"{control}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\n"
                         f"SHA256: {digest}\n")
        put_file(tmp, "Packages", "\n".join(index))
        os.chmod(tmp, 0o755)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def dpkg_status_without(status: str, names: set[str]) -> tuple[str, set[str]]:
    """dpkg's status file as if ``names``, and every package that needs one of them,
    had never been installed; and the names of all those packages."""
    stanzas = [s for s in status.split("\n\n") if s.strip()]
    package = [re.search(r"^Package: (\S+)", s, re.MULTILINE) for s in stanzas]
    gone = set(names)
    while True:
        more = set()
        for stanza, name in zip(stanzas, package):
            if name is None or name.group(1) in gone:
                continue
            for field in re.findall(r"^(?:Pre-)?Depends: (.*)$", stanza, re.MULTILINE):
                for group in field.split(","):
                    wanted = {re.split(r"[ :(]", alt.strip())[0] for alt in group.split("|")}
                    if wanted <= gone:
                        more.add(name.group(1))
        if not more:
            break
        gone |= more
    kept = [s for s, name in zip(stanzas, package) if name is None or name.group(1) not in gone]
    return "\n\n".join(kept) + "\n", gone


def dpkg_files(packages: set[str], info: str = "/var/lib/dpkg/info") -> list[str]:
    """The files (not directories) dpkg installed for ``packages``, and dpkg's own."""
    files = []
    for entry in sorted(os.listdir(info)):
        if entry.rsplit(".", 1)[0].split(":")[0] not in packages:   # NAME[:ARCH].EXT
            continue
        path = os.path.join(info, entry)
        files.append(path)
        if entry.endswith(".list"):
            with open(path) as listing:
                files += [line.rstrip("\n") for line in listing
                          if not os.path.isdir(line.rstrip("\n"))]
    return files


def missing_requirements(init: str = "busybox") -> list[str]:
    """Say why boxes with this init cannot run here; [] when they can."""
    if not sys.platform.startswith("linux"):
        return ["boxes need Linux namespaces"]
    reasons = [] if os.geteuid() == 0 else ["boxes need root (namespaces, mounts, netns)"]
    reasons += [f"{tool} not found in PATH" for tool in _TOOLS if shutil.which(tool) is None]
    if not os.access(SSHD, os.X_OK):
        reasons.append(f"{SSHD} not found (apt-get install openssh-server)")
    if init == "busybox" and shutil.which("busybox") is None:
        reasons.append("busybox not found (apt-get install busybox-static)")
    elif init == "sysv" and find_sysvinit() is None:
        reasons.append(f"no sysvinit init in {SYSVINIT_DIR} "
                       "(run: python3 -m vzmaster.testing.box ensure-sysvinit)")
    elif init == "systemd" and not os.access(SYSTEMD, os.X_OK):
        reasons.append(f"{SYSTEMD} not found (apt-get install systemd)")
    elif init not in INITS + OTHER_INITS:
        reasons.append(f"unknown init {init!r}; expected one of {INITS + OTHER_INITS}")
    return reasons


_REMOVE_CGROUPS = r"""
set -eu
mount -t cgroup2 cgroup2 "$1"
for dir in "$1"/vzt*-b*; do
    [ -d "$dir" ] || continue
    name=${dir##*/}; pid=${name#vzt}; pid=${pid%%-*}
    if [ -n "$2" ]; then [ "$name" = "$2" ] || continue
    elif [ -e "/proc/$pid" ]; then continue; fi
    find "$dir" -depth -type d -exec rmdir {} + && echo "cgroup $name"
done
"""


def remove_cgroups(name: str = "") -> list[str]:
    """Remove the cgroup2 tree a systemd box made (``name``: its netns's name), or with
    no name those of dead runs; return what went. Its processes must be gone."""
    with tempfile.TemporaryDirectory(prefix="vz-cgroup-") as mnt:
        # Mounted in a throwaway mount namespace: the host's mount table never sees it.
        out = run(["unshare", "--mount", "--propagation", "private",
                   "sh", "-c", _REMOVE_CGROUPS, "sh", mnt, name])
    return out.decode().split("\n")[:-1]


def sweep_stale() -> list[str]:
    """Delete netns and temp workdirs named vzt<pid>-* whose pid is dead; return them."""
    removed = []
    netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    for name in netns:
        match = STALE.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            try:
                run(["ip", "netns", "del", name])
                removed.append(name)
            except BoxError:
                pass    # another run swept it first
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    for entry in os.scandir(tempfile.gettempdir()):
        match = STALE.match(entry.name)
        if (match and entry.is_dir(follow_symlinks=False) and entry.path not in mounts
                and not os.path.exists(f"/proc/{match.group(1)}")):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    try:
        removed += remove_cgroups()
    except BoxError:
        pass    # a kernel without cgroup2: no systemd box ran here
    return removed
