"""VPS in a box: throwaway test nodes on this Linux host, for system tests and the quickstart.

A box is a network namespace behind a private hub bridge (10.200.0.0/24, never in
the root netns) plus PID, mount, UTS and IPC namespaces whose PID 1 is a real init
(busybox or sysvinit) over an overlay of ``/`` with a tmpfs disk.  That init runs
the stock OpenSSH ``sshd -D -e`` from an ``/etc/inittab`` respawn line.  Needs root.
A ``systemd`` box (an init that ignores inittab) boots its own target that starts
only sshd, in its own cgroup namespace, with the host's units masked.
DEVELOPERS.md ("Tests") says how the tests use boxes; the teardown leaves no network
namespace, process or mount behind, which tests/system/test_box.py checks.

    with Hub() as hub:
        box = hub.box(init="sysv")
        print(box.ssh("uname -a").stdout)

Mind sysvinit's respawn limit: more than 10 sshd restarts in 120 s disable the
entry for 5 minutes; ``reload_init()`` (``telinit q``) re-enables it.
"""

from __future__ import annotations

import argparse
import compileall
import concurrent.futures
import glob
import os
import re
import shlex
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vzmaster.testing import host
from vzmaster.testing.host import (
    INITS,
    OTHER_INITS,
    PYTHON_DEBS_DIR,
    SYSTEMD,
    SYSVINIT_DIR,
    BoxError,
    ensure_python_debs,
    ensure_sysvinit,
    find_python_debs,
    find_sysvinit,
    missing_requirements,
    sweep_stale,
)

__all__ = ["Box", "BoxError", "Hub", "ensure_python_debs", "ensure_sysvinit",
           "find_python_debs", "find_sysvinit",
           "missing_requirements", "sweep_stale"]

SUBNET = "10.200.0"
MAX_BOXES = 244                      # box N is 10.200.0.(10+N); .255 is broadcast
SRC_DIR = str(Path(__file__).resolve().parents[2])   # holds vzmaster/ and vzslave/
_BOX_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8"}
_SIZE = re.compile(r"[1-9][0-9]*[kmg]?")
_prefix_lock = threading.Lock()
_prefix_count = 0
# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so a box
# started from a worker thread would die with that thread.  Every box is forked
# from this one long-lived thread instead; a SIGKILLed runner still takes them all.
_spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vz-box-spawner")


def _default_prefix() -> str:
    global _prefix_count
    with _prefix_lock:
        _prefix_count += 1
        count = _prefix_count
    # The pid leads, so sweep_stale() can tell a dead run's leftovers.
    return f"vzt{os.getpid()}" if count == 1 else f"vzt{os.getpid()}-{count}"


def _compile_vzslave() -> None:
    """Byte-compile the vzslave the boxes run, as pip does on a real node: boxes see this
    tree read-only, so without it every session would compile every module again
    (~0.12 s of CPU each, where PYTHONDONTWRITEBYTECODE kept this side from caching)."""
    compileall.compile_dir(os.path.join(SRC_DIR, "vzslave"), quiet=1, workers=1)


class Hub:
    """One run's private network (a bridge in its own netns), keys, and boxes."""

    def __init__(self, workdir: str | None = None, prefix: str | None = None) -> None:
        """Sweep dead runs' leftovers, make keys, create the hub netns and its bridge."""
        self.prefix = prefix or _default_prefix()
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", self.prefix):
            raise BoxError(f"bad prefix {self.prefix!r}")
        self.netns = f"{self.prefix}-hub"
        self._lock = threading.Lock()
        self._boxes: dict[int, Box] = {}
        self._cursor = 0
        self._closed = False
        self._sockets: concurrent.futures.ThreadPoolExecutor | None = None
        sweep_stale()
        _compile_vzslave()
        # workdir is the parent: the hub always owns (and removes) a fresh directory.
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-", dir=workdir)
        keys = Path(self.workdir, "keys")
        self.client_key = str(keys / "client")
        self.host_key = str(keys / "hostkey")
        self.known_hosts = str(keys / "known_hosts")
        try:
            keys.mkdir()
            for key in (self.client_key, self.host_key):
                host.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vz-box", "-f", key])
            self.host_public_key = " ".join(Path(self.host_key + ".pub").read_text().split()[:2])
            # The pattern line is for OpenSSH; paramiko's HostKeys has no globs.
            ips = ",".join(f"{SUBNET}.{10 + n}" for n in range(1, MAX_BOXES + 1))
            Path(self.known_hosts).write_text(
                f"{SUBNET}.* {self.host_public_key}\n{ips} {self.host_public_key}\n")
            host.run(["ip", "netns", "add", self.netns])
            # A fixed bridge MAC: by default it follows the lowest port's and would
            # change under the boxes' ARP caches as boxes come and go.
            host.run(["ip", "-n", self.netns, "-batch", "-"], input=(
                "link set lo up\n"
                "link add br0 address 02:76:7a:00:00:01 type bridge\n"
                f"addr add {SUBNET}.1/24 dev br0\n"
                "link set br0 up\n").encode())
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Hub:  # noqa: PYI034 (typing.Self is 3.11+)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def box(self, init: str = "busybox", inittab: Sequence[str] = (), disk_size: str = "512m",
            vzslave_command: str | None = None, ready_timeout: float = 10.0,
            init_path: str | None = None, root_password: str | None = None,
            sshd_include: bool = True, pythons: Sequence[str] | None = None,
            login_user: str | None = None, sudo: str = "nopasswd",
            password_auth: str = "password", apt_repo: str | None = None) -> Box:
        """Start a box, wait until ``ssh true`` works; on failure clean up, raise BoxError.

        With ``root_password`` the box is a VPS as its activation email leaves it: root
        logs in with that password (no key is authorized), sshd has no vzslave
        Subsystem, and the system Python sees no site-packages (no msgpack, no vz).
        ``sshd_include=False`` leaves the ``Include sshd_config.d`` line out of its
        sshd_config, as on sshd before 7.3. ``pythons`` (with ``root_password``): the
        only Python interpreters the VPS has, given as this machine's paths (a pyenv
        3.6, say), found in /usr/local/bin by their names; the system's are hidden.
        ``login_user`` (with ``root_password``): a user who logs in with the same
        password, with ``sudo`` "nopasswd" (sudo without a password), "password" (sudo
        asks for one) or "none" (not in sudoers). ``password_auth`` (with
        ``root_password``): "password", or "keyboard-interactive" for an sshd that takes
        the password only through PAM's prompt (PasswordAuthentication no).
        ``apt_repo`` (with ``root_password``): a flat apt repository (ensure_python_debs)
        that is the box's only package source, and whose packages (and all that need
        them) its dpkg has never installed; its /usr is the overlay's, so apt can write.
        """
        if init not in INITS + OTHER_INITS:
            raise BoxError(f"unknown init {init!r}; expected one of {INITS + OTHER_INITS}")
        if password_auth not in ("password", "keyboard-interactive"):
            raise BoxError(f"bad password_auth {password_auth!r}")
        if not _SIZE.fullmatch(disk_size):
            raise BoxError(f"bad disk_size {disk_size!r} (a tmpfs size like 512m)")
        if any("\n" in line for line in [*inittab, vzslave_command or ""]):
            raise BoxError("inittab lines and vzslave_command must be single lines")
        with self._lock:
            if self._closed:
                raise BoxError("hub is closed")
            # Round robin, so an address is reused as late as possible.
            order = ((self._cursor + step) % MAX_BOXES + 1 for step in range(MAX_BOXES))
            index = next((i for i in order if i not in self._boxes), 0)
            if not index:
                raise BoxError(f"all {MAX_BOXES} box addresses are in use")
            self._cursor = index
            box = self._boxes[index] = Box(self, index, init)
            box.root_password = root_password
            box.sshd_include = sshd_include
            box.pythons = None if pythons is None else [os.path.realpath(p) for p in pythons]
            box.login_user, box.sudo = login_user, sudo
            box.password_auth = password_auth
            box.apt_repo = apt_repo
        try:
            box._start(list(inittab), disk_size, vzslave_command, ready_timeout, init_path)
            with self._lock:
                # close() leaves boxes still starting to their own thread.
                box._ready = not self._closed
            if not box._ready:
                raise BoxError("the hub was closed while the box started")
        except BaseException as exc:
            # A failed setup never gets a teardown: clean up here, then re-raise.
            box.close()
            if isinstance(exc, BoxError) or not isinstance(exc, Exception):
                raise
            raise BoxError(f"{box.name}: setup failed: {exc!r}") from exc
        return box

    def _release(self, index: int) -> None:
        with self._lock:
            self._boxes.pop(index, None)

    def _socket(self) -> socket.socket:
        """Make a TCP socket that lives in the hub netns."""
        with self._lock:
            if self._closed:
                raise BoxError("hub is closed")
            if self._sockets is None:
                self._sockets = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"{self.netns}-sockets",
                    initializer=host.enter_netns, initargs=(f"/run/netns/{self.netns}",))
            sockets = self._sockets
        try:
            sock: socket.socket = sockets.submit(
                socket.socket, socket.AF_INET, socket.SOCK_STREAM).result()
        except (OSError, RuntimeError) as exc:    # RuntimeError: BrokenThreadPool
            raise BoxError(f"cannot make a socket in netns {self.netns}: {exc!r}") from exc
        return sock

    def close(self) -> None:
        """Close every box, delete the hub netns and the workdir; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            boxes = [box for box in self._boxes.values() if box._ready]
            sockets, self._sockets = self._sockets, None
        errors: list[Exception] = []
        for box in boxes:
            try:
                box.close()
            except (BoxError, OSError) as exc:
                errors.append(exc)
        if sockets is not None:
            sockets.shutdown(wait=True)
        try:
            if os.path.exists(f"/run/netns/{self.netns}"):
                host.run(["ip", "netns", "del", self.netns])
        except BoxError as exc:
            errors.append(exc)
        if hasattr(self, "workdir"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]


class Box:
    """One test node: its own netns, PID/mount/UTS/IPC namespaces, real init, sshd."""

    def __init__(self, hub: Hub, index: int, init: str) -> None:
        """Describe box number index of hub; Hub.box() makes and starts boxes."""
        self.hub = hub
        self.index = index
        self.init = init
        self.name = f"vps{index}"
        self.ip = f"{SUBNET}.{10 + index}"
        self.netns = f"{hub.prefix}-b{index}"
        self.state_dir = os.path.join(hub.workdir, self.name)
        self.pid1 = 0
        self.vzslave_command = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: host.Console | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False
        self.root_password: str | None = None  # a fresh VPS: password login, no vz
        self.sshd_include = True
        self.pythons: list[str] | None = None  # a fresh VPS's only interpreters
        self.login_user: str | None = None  # a fresh VPS's user besides root
        self.sudo = "nopasswd"
        self.password_auth = "password"   # or "keyboard-interactive" (through PAM)
        self.apt_repo: str | None = None  # a fresh VPS's only package source

    def __enter__(self) -> Box:  # noqa: PYI034 (typing.Self is 3.11+)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Box {self.name} {self.ip} init={self.init} pid1={self.pid1}>"

    # -- setup -------------------------------------------------------------

    def _start(self, inittab: list[str], disk_size: str, vzslave_command: str | None,
               ready_timeout: float, init_path: str | None) -> None:
        deadline = time.monotonic() + ready_timeout
        state = Path(self.state_dir)
        for sub in ("", "seed", "disk", "newroot"):
            (state / sub).mkdir(mode=0o755)
        if not vzslave_command and re.search(r"\s", SRC_DIR + sys.executable):
            raise BoxError("sshd splits Subsystem commands on spaces: pass vzslave_command=")
        self.vzslave_command = vzslave_command or (
            f"/usr/bin/env PYTHONPATH={SRC_DIR} {sys.executable} -m vzslave")
        init_argv = self._write_seed(state / "seed", inittab, init_path)
        os.mkfifo(state / "console.fifo", 0o600)
        self._console = host.Console(state / "console.fifo", state / "console.log")
        self._make_network()
        script = state / "pid1.sh"
        script.write_text(self._pid1_script(disk_size, init_argv))
        argv = ["ip", "netns", "exec", self.netns,
                "unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
                "--uts", "--ipc", "--propagation", "private", "/bin/sh", str(script)]
        preexec = host.die_with_parent(os.getpid())
        with open(state / "init.out", "wb") as out:
            self._proc = _spawner.submit(lambda: subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_BOX_ENV, start_new_session=True,
                # Safe enough with threads: the child only makes one preloaded libc call.
                preexec_fn=preexec)).result()  # noqa: PLW1509
        self.pid1 = self._find_pid1(deadline)
        self._wait_ready(deadline)

    def _write_seed(self, seed: Path, inittab: list[str], init_path: str | None) -> list[str]:
        """Fill the files copied onto the box's fresh disk; return the argv PID 1 execs."""
        hub = self.hub
        if self.init == "sysv":
            source = init_path or find_sysvinit()
            if source is None:
                raise BoxError(f"no sysvinit init in {SYSVINIT_DIR}; run ensure_sysvinit()")
            # Copied, not bound: it becomes the box's /usr/sbin/init with telinit beside.
            host.put_file(seed, "usr/sbin/init", Path(source).read_bytes(), 0o755)
            os.symlink("init", seed / "usr/sbin/telinit")
            host.mkdirs(seed, "etc/inittab.d")
            init_argv = ["/usr/sbin/init", "2"]   # "2": else it spins asking for a runlevel
            table = ["id:2:initdefault:", "ss:2345:respawn:/usr/sbin/sshd -D -e"]
        elif self.init == "systemd":
            init_argv = self._systemd_seed(seed, inittab)
            table = []
        else:
            busybox = init_path or shutil.which("busybox") or "/bin/busybox"
            os.symlink(busybox, host.mkdirs(seed, "usr/sbin") / "init")
            init_argv = [busybox, "init"]
            table = ["::respawn:/usr/sbin/sshd -D -e"]   # busybox: the tty field stays empty
        host.put_file(seed, "etc/inittab", "\n".join(table + inittab) + "\n")
        host.put_file(seed, "etc/hostname", f"{self.name}\n")
        put = host.put_file
        put(seed, "etc/hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{self.ip}\t{self.name}\n")
        put(seed, "etc/ssh/sshd_config", self._sshd_config())
        put(seed, "etc/ssh/ssh_host_ed25519_key", Path(hub.host_key).read_bytes(), 0o600)
        put(seed, "etc/ssh/ssh_host_ed25519_key.pub", Path(hub.host_key + ".pub").read_bytes())
        shadow = Path("/etc/shadow").read_text()
        if self.root_password is not None:
            hashed = host.run(["openssl", "passwd", "-6", "-stdin"],
                              input=self.root_password.encode()).decode().strip()
            shadow = re.sub(r"^root:[^:]*:", lambda _: "root:{}:".format(hashed), shadow,
                            flags=re.MULTILINE)
            if self.login_user is not None:
                shadow = self._add_login_user(seed, hashed, shadow)
            host.put_file(seed, "etc/shadow", shadow, 0o640)
            os.chown(seed / "etc/shadow", 0, os.stat("/etc/shadow").st_gid)
            host.mkdirs(seed, "etc/ssh/sshd_config.d")
            for python in self.pythons or ():
                os.symlink(python, host.mkdirs(seed, "usr/local/bin") / os.path.basename(python))
            if self.apt_repo is not None:
                self._apt_seed(seed, self.apt_repo)
        else:
            put(seed, "etc/ssh/authorized_keys_root", Path(hub.client_key + ".pub").read_bytes())
        if self.root_password is None and re.search(r"^root:!", shadow, re.MULTILINE):
            # With UsePAM no, sshd refuses a "!"-locked root even with a valid key
            # (Ubuntu-style hosts); "*" still forbids passwords but allows keys.
            unlocked = re.sub(r"^root:![^:]*:", "root:*:", shadow, flags=re.MULTILINE)
            host.put_file(seed, "etc/shadow", unlocked, 0o640)
            os.chown(seed / "etc/shadow", 0, os.stat("/etc/shadow").st_gid)
        host.mkdirs(seed, "var/lib/vz")   # the node state root: must exist, on the box's disk
        # An opaque /root with Debian's stock dotfiles: the host's (say, a pyenv
        # .bashrc) would run on every ssh command.
        for dot in ("bashrc", "profile"):
            stock = Path(f"/usr/share/base-files/dot.{dot}")
            host.put_file(seed, f"root/.{dot}", stock.read_bytes() if stock.exists() else b"")
        os.chmod(seed / "root", 0o700)
        os.setxattr(seed / "root", "trusted.overlay.opaque", b"y")
        return init_argv

    def _systemd_seed(self, seed: Path, inittab: list[str]) -> list[str]:
        """A systemd box boots its own target: sshd and nothing else of the host's units.

        The root is the host's: every unit the host enables, everything sysinit would
        start (udev, modules, sysctl, binfmt, time sync: they act on the host's kernel)
        and every timer is masked. What the box then starts is what a test asks for.
        """
        if inittab:
            raise BoxError("systemd ignores /etc/inittab: a systemd box takes no inittab lines")
        put = host.put_file
        put(seed, "etc/systemd/system/vz-box.target", "\n".join([
            "[Unit]", f"Description={self.name}: sshd, and what the tests start",
            "Wants=vz-box-sshd.service", "AllowIsolate=yes", ""]))
        put(seed, "etc/systemd/system/vz-box-sshd.service", "\n".join([
            "[Unit]", "Description=OpenSSH server of the box", "DefaultDependencies=no", "",
            "[Service]", "ExecStart=/usr/sbin/sshd -D -e", "Restart=always", "RestartSec=0.2",
            ""]))
        put(seed, "etc/fstab", "")   # the host's would become mount units
        masked = {"systemd-udevd.service", "systemd-udev-trigger.service",
                  "systemd-udev-settle.service", "console-getty.service", "getty.target"}
        for wants in glob.glob("/etc/systemd/system/*.wants") + [
                f"/lib/systemd/system/{t}.target.wants" for t in ("sysinit", "timers")]:
            masked.update(os.listdir(wants) if os.path.isdir(wants) else ())
        masked.discard("systemd-journald.service")   # its sockets stay: it must start
        for unit in sorted(masked):
            os.symlink("/dev/null", host.mkdirs(seed, "etc/systemd/system") / unit)
        # As systemd-nspawn starts it: "container" tells systemd it is a guest.
        return ["/usr/bin/env", "container=vz-box", SYSTEMD, "--unit=vz-box.target"]

    def _apt_seed(self, seed: Path, repo: str) -> None:
        """apt that knows only ``repo``; dpkg that never installed what it holds."""
        sources = [f for f in glob.glob("/etc/apt/sources.list.d/*") if os.path.isfile(f)]
        for path in sources + ["/etc/apt/sources.list"]:
            host.put_file(seed, path.lstrip("/"), "")
        host.put_file(seed, "etc/apt/sources.list.d/vz-box.sources",
                      f"Types: deb\nURIs: file:{repo}\nSuites: ./\nTrusted: yes\n")
        names = set(re.findall(r"^Package: (\S+)$", Path(repo, "Packages").read_text(),
                               re.MULTILINE))
        status, gone = host.dpkg_status_without(Path("/var/lib/dpkg/status").read_text(),
                                                names)
        host.put_file(seed, "var/lib/dpkg/status", status)
        # Their files go too (pid1.sh deletes them): python3's postinst runs every
        # package's rtupdate hook, and would fail on those of packages never installed.
        Path(self.state_dir, "uninstalled").write_text(
            "".join("." + path + "\n" for path in host.dpkg_files(gone)))

    def _add_login_user(self, seed: Path, hashed: str, shadow: str) -> str:
        """The login user in passwd, group and sudoers; its home; shadow with it."""
        user, uid = self.login_user, 4242
        assert user is not None and re.fullmatch(r"[a-z][a-z0-9_-]{0,30}", user), user
        home = host.mkdirs(seed, f"home/{user}")
        os.chown(home, uid, uid)
        os.chmod(home, 0o755)
        for name, line in (("passwd", f"{user}:x:{uid}:{uid}::/home/{user}:/bin/sh\n"),
                           ("group", f"{user}:x:{uid}:\n")):
            host.put_file(seed, f"etc/{name}", Path(f"/etc/{name}").read_text() + line)
        if self.sudo != "none":
            rule = "NOPASSWD: ALL" if self.sudo == "nopasswd" else "ALL"
            host.put_file(seed, f"etc/sudoers.d/{user}", f"{user} ALL=(ALL) {rule}\n", 0o440)
        return shadow + f"{user}:{hashed}:19000:0:99999:7:::\n"

    def _sshd_config(self) -> str:
        if self.root_password is not None:
            return "\n".join([
                f"# {self.name}: written by vzmaster.testing.box: a fresh VPS, root's password.",
                *(["Include /etc/ssh/sshd_config.d/*.conf"] if self.sshd_include else []),
                "Port 22",
                "HostKey /etc/ssh/ssh_host_ed25519_key",
                "PidFile /run/sshd.pid",
                *(["UsePAM no", "PasswordAuthentication yes", "KbdInteractiveAuthentication no"]
                  if self.password_auth == "password" else
                  # The password through PAM's "Password:" prompt only, as many
                  # vendors' images ship it.
                  ["UsePAM yes", "PasswordAuthentication no", "KbdInteractiveAuthentication yes"]),
                "UseDNS no",
                "PermitRootLogin yes",
                "PrintMotd no",
                "MaxStartups 100",
                "MaxSessions 100",
                "Subsystem sftp internal-sftp",
                ""])
        return "\n".join([
            f"# {self.name}: written by vzmaster.testing.box. Key auth only; one host key per hub.",
            "Port 22",
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            "PidFile /run/sshd.pid",
            "UsePAM no",
            "UseDNS no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AuthorizedKeysFile /etc/ssh/authorized_keys_%u",
            "PrintMotd no",
            # Every client comes from 10.200.0.1: the default 10:30:100 would drop
            # parallel test connections at random.
            "MaxStartups 100",
            "MaxSessions 100",
            "AcceptEnv LANG LC_*",
            "Subsystem echo /bin/cat",
            f"Subsystem vzslave {self.vzslave_command}",
            ""])

    def _make_network(self) -> None:
        host.run(["ip", "netns", "add", self.netns])
        # The veth is born with one end in each namespace: nothing touches the root
        # netns. A MAC derived from the index keeps peers' ARP caches valid on reuse.
        mac = f"02:76:7a:00:01:{self.index:02x}"
        host.run(["ip", "-n", self.hub.netns, "-batch", "-"], input=(
            f"link add vb{self.index} type veth peer name eth0 address {mac} netns {self.netns}\n"
            f"link set vb{self.index} master br0 up\n").encode())
        host.run(["ip", "-n", self.netns, "-batch", "-"], input=(
            f"addr add {self.ip}/24 dev eth0\n"
            "link set eth0 up\n"
            "link set lo up\n"
            f"route add default via {SUBNET}.1\n").encode())

    def _pid1_script(self, disk_size: str, init_argv: list[str]) -> str:
        if re.search(r"[,:\s]", self.state_dir):    # would break overlay's option string
            raise BoxError(f"state dir {self.state_dir!r} must not contain ',', ':' or spaces")
        q = shlex.quote
        # Code under test and its Python, read-only and live (an overlay's lower
        # layer must not change underneath it; /root is opaque in the box).
        wanted = {SRC_DIR, os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
                  os.path.realpath(site.getusersitepackages())}
        if self.apt_repo is not None:
            wanted.discard("/usr")   # the system's Python: the box's apt replaces it
        binds = [b for b in sorted(wanted) if os.path.isdir(b)
                 and not any(b.startswith(other + "/") for other in wanted)]
        lines = [
            "#!/bin/sh",
            f"# PID 1 of {self.name} until it execs init: build the root, pivot into it.",
            "set -eu",
            f"D={q(self.state_dir)}",
            'R="$D/newroot"',
            f"hostname {self.name}",
            f'mount -t tmpfs -o size={disk_size},mode=755 {self.name}-disk "$D/disk"',
            'mkdir -p "$D/disk/upper" "$D/disk/wd"',
            'cp -a "$D/seed/." "$D/disk/upper/"',
            'mount -t overlay overlay -o "lowerdir=/,upperdir=$D/disk/upper,workdir=$D/disk/wd" \\',
            '  "$R"',
            'mount -t proc proc "$R/proc"',
            'mount --rbind /dev "$R/dev"',
            'mount --rbind /sys "$R/sys"',    # ip netns exec mounted this netns's sysfs
        ]
        if self.init == "systemd":
            lines += [
                # As systemd-nspawn does: /sys and /proc/sys read-only, so no unit
                # writes the host's kernel settings; its own cgroup2 subtree, entered
                # here and made the root of a cgroup namespace just before init.
                'mount -o remount,bind,ro "$R/sys"',
                'mount --bind "$R/proc/sys" "$R/proc/sys"',
                'mount -o remount,bind,ro "$R/proc/sys"',
                'mkdir "$D/cgroup"',
                'mount -t cgroup2 cgroup2 "$D/cgroup"',
                f'mkdir "$D/cgroup/{self.netns}"',
                f'echo $$ > "$D/cgroup/{self.netns}/cgroup.procs"',
                'umount "$D/cgroup"',
            ]
        else:
            # ...without the cgroup mounts, which runc and crun need: a cgroup2 view.
            lines.append('mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup" 2>/dev/null || true')
        lines += [
            # Own utmp, initctl. 16 MB, as a 160 MB VPS's (10% of RAM): too little
            # for systemd 249+ to agree to a daemon-reload.
            'mount -t tmpfs -o mode=755,size=16m run "$R/run"',
            'mkdir -m 755 "$R/run/sshd"',
            'mount -t tmpfs -o mode=1777,size=64m tmp "$R/tmp"',
            'mount --bind "$D/console.fifo" "$R/dev/console"',
        ]
        for path in binds:
            lines += [f'mkdir -p "$R"{q(path)}', f'mount -o bind,ro {q(path)} "$R"{q(path)}']
        if self.root_password is not None:
            # No vz and no msgpack for the system's Python: its site-packages are empty.
            for path in sorted(set(glob.glob("/usr/local/lib/python3*/dist-packages")
                                   + glob.glob("/usr/lib/python3*/dist-packages")
                                   + glob.glob("/usr/lib/python3*/site-packages"))):
                lines.append(f'mount -t tmpfs -o size=1m,mode=755 hidden "$R"{q(path)}')
        if self.root_password is not None and self.pythons is not None:
            # Only the given interpreters: the system's become /dev/null (not executable,
            # so `command -v` passes them by); the given ones are bound in read-only.
            hidden = sorted(set(glob.glob("/usr/bin/python3*") + glob.glob("/usr/bin/python")
                                + glob.glob("/usr/local/bin/python3*")))
            if self.apt_repo is not None:
                lines.append('(cd "$R" && xargs -d "\\n" rm -f -- < "$D/uninstalled") || true')
            for path in hidden:
                if self.apt_repo is not None:
                    lines.append(f'rm -f "$R"{q(path)}')   # gone, so dpkg may put it back
                elif not path.endswith("-config"):
                    lines.append(f'mount --bind /dev/null "$R"{q(path)}')
            for prefix in sorted({os.path.dirname(os.path.dirname(p)) for p in self.pythons}):
                lines += [f'mkdir -p "$R"{q(prefix)}',
                          f'mount -o bind,ro {q(prefix)} "$R"{q(prefix)}']
        lines += [
            'mkdir "$R/.oldroot"',
            'cd "$R"',
            "pivot_root . .oldroot",
            "cd /",
            "umount -l /.oldroot",
            "rmdir /.oldroot",
            # As the kernel does for init. busybox init hands its own stdio to
            # respawned children; sysvinit opens /dev/console for them itself.
            "exec >/dev/console 2>&1",
        ]
        if self.init == "systemd":
            # A cgroup2 mounted in the new cgroup namespace shows the box's subtree as /.
            lines.append("exec unshare --cgroup /bin/sh -c " + shlex.quote(
                "mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec " + shlex.join(init_argv)))
        else:
            lines.append("exec " + shlex.join(init_argv))
        lines.append("")
        return "\n".join(lines)

    def _find_pid1(self, deadline: float) -> int:
        """Return the host pid of unshare's child: PID 1 of the box's PID namespace."""
        assert self._proc is not None
        upid = self._proc.pid
        while True:
            self._check_alive()
            try:
                for kid in Path(f"/proc/{upid}/task/{upid}/children").read_text().split():
                    nspid = re.search(r"^NSpid:\s+(.*)$", Path(f"/proc/{kid}/status").read_text(),
                                      re.MULTILINE)
                    if nspid and nspid.group(1).split()[-1] == "1" and int(kid) > 1:
                        return int(kid)
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BoxError(self._report("PID 1 never appeared"))
            time.sleep(0.002)

    def _wait_ready(self, deadline: float) -> None:
        # A refused connect costs microseconds, an ssh attempt ~0.4 s: poll TCP
        # first, then prove a key login (a fresh VPS has none: its banner will do).
        while True:
            self._check_alive()
            try:
                sock = self.connect(timeout=0.5)
                try:
                    sock.settimeout(max(0.5, deadline - time.monotonic()))
                    banner = sock.recv(64)
                finally:
                    sock.close()
                if banner.startswith(b"SSH-"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BoxError(self._report("sshd never answered on :22")) from None
            time.sleep(0.01)
        if self.root_password is not None:
            return
        while True:
            try:
                done = self.ssh("true", check=False, timeout=max(1.0, deadline - time.monotonic()))
                if done.returncode == 0:
                    return
                error = done.stderr.decode(errors="replace").strip()
            except subprocess.TimeoutExpired:
                error = "timed out"
            self._check_alive()
            if time.monotonic() > deadline:
                raise BoxError(self._report(f"ssh true failed: {error}"))
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if not self.running():
            code = self._proc.returncode if self._proc else None
            raise BoxError(self._report(f"the box's init exited (unshare status {code})"))

    def _report(self, what: str) -> str:
        state = Path(self.state_dir)
        return (f"{self.name} ({self.init}, {self.ip}): {what}\n"
                f"--- console.log ---\n{host.tail(state / 'console.log')}\n"
                f"--- init.out ---\n{host.tail(state / 'init.out')}")

    # -- use ---------------------------------------------------------------

    def ssh_argv(self, *remote_cmd: str, subsystem: str | None = None,
                 extra_opts: Sequence[str] = ()) -> list[str]:
        """Return the OpenSSH argv (run in the hub netns) for a remote command or subsystem."""
        hub = self.hub
        # extra_opts go first: ssh keeps the first value it gets for an option.
        argv = ["ip", "netns", "exec", hub.netns, "ssh", "-F", "none", *extra_opts,
                "-i", hub.client_key, "-o", f"UserKnownHostsFile={hub.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "IdentitiesOnly=yes",
                "-o", "LogLevel=ERROR"]
        if subsystem is not None:
            if remote_cmd:
                raise ValueError("give a remote command or a subsystem, not both")
            return argv + ["-s", f"root@{self.ip}", subsystem]
        return argv + [f"root@{self.ip}", *remote_cmd]

    def ssh(self, cmd: str | Sequence[str] | None = None, subsystem: str | None = None,
            input: bytes | None = None, timeout: float = 30,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run cmd (a str as is, a list quoted word by word) or a subsystem over OpenSSH."""
        if (cmd is None) == (subsystem is None):
            raise ValueError("give exactly one of cmd and subsystem")
        words = [] if cmd is None else [cmd if isinstance(cmd, str) else shlex.join(cmd)]
        return subprocess.run(self.ssh_argv(*words, subsystem=subsystem), input=input,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, check=check)

    def exec(self, argv: Sequence[str], input: bytes | None = None, timeout: float = 30,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run argv inside the box's namespaces with nsenter (no ssh involved)."""
        if not self.running():
            raise BoxError(f"{self.name} is not running")
        full = ["nsenter", "-t", str(self.pid1), "-m", "-p", "-n", "-u", "-i", "-r", "-w",
                "--", *argv]
        return subprocess.run(full, input=input, env=_BOX_ENV,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, check=check)

    def connect(self, port: int = 22, timeout: float = 5) -> socket.socket:
        """Return a TCP socket connected to the box from the hub netns (paramiko's sock=)."""
        sock = self.hub._socket()
        try:
            sock.settimeout(timeout)
            sock.connect((self.ip, port))
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    def ssh_options(self) -> dict[str, Any]:
        """Return what a client needs to reach the box: host, port, user, keys, ssh_program."""
        return {"host": self.ip, "port": 22, "user": "root",
                "key_filename": self.hub.client_key, "known_hosts": self.hub.known_hosts,
                "netns": self.hub.netns,
                "ssh_program": ["ip", "netns", "exec", self.hub.netns, "ssh"]}

    def reload_init(self) -> None:
        """Make the box's init re-read /etc/inittab: SIGHUP to its PID 1, never the host's."""
        # While unshare lives it has not reaped pid1, so that pid cannot have been
        # recycled; pid1 > 1 guards the host's init against any bug here.
        if self.pid1 <= 1 or not self.running():
            raise BoxError(f"{self.name} is not running")
        os.kill(self.pid1, signal.SIGHUP)

    def read_file(self, path: str) -> bytes:
        """Return the bytes of a file as the box sees it."""
        done = self.exec(["cat", "--", path], check=False)
        if done.returncode != 0:
            raise BoxError(f"{self.name}: cannot read {path}: {done.stderr.decode().strip()}")
        return done.stdout

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file as the box sees it: root-owned, with mode, parents created."""
        # Through nsenter, not /proc/PID/root: absolute symlinks in the box must
        # resolve inside the box.
        done = self.exec(["install", "-D", "-m", f"{mode:o}", "/dev/stdin", path],
                         input=data, check=False)
        if done.returncode != 0:
            raise BoxError(f"{self.name}: cannot write {path}: {done.stderr.decode().strip()}")

    def console_log(self) -> str:
        """Return what the box wrote to its console so far."""
        try:
            return Path(self.state_dir, "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        """Say whether the box's init is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- teardown ----------------------------------------------------------

    def kill(self) -> None:
        """Power cut: SIGKILL the box's init (the kernel kills its PID ns); keep its state dir."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # Only ever SIGKILL: TERM/USR1/USR2 make busybox init run its shutdown,
            # kill(-1) and reboot(). The pid1 guard is as in reload_init().
            if self.pid1 > 1:
                os.kill(self.pid1, signal.SIGKILL)
            else:
                proc.kill()    # PID 1 not known yet: --kill-child takes it along
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._console is not None:
            self._console.stop()

    def vanish(self) -> None:
        """The VPS and its vendor are gone: a power cut (``kill``) and its network deleted,
        so its address answers nothing, not even a reset."""
        self.kill()
        if os.path.exists(f"/run/netns/{self.netns}"):
            host.run(["ip", "netns", "del", self.netns])

    def disconnect(self) -> None:
        """A network partition: the box runs on, but nothing reaches it (its hub-side veth
        is down, so packets are dropped, not refused)."""
        host.run(["ip", "-n", self.hub.netns, "link", "set", f"vb{self.index}", "down"])

    def reconnect(self) -> None:
        """End a ``disconnect``."""
        host.run(["ip", "-n", self.hub.netns, "link", "set", f"vb{self.index}", "up"])

    def close(self) -> None:
        """Kill the box, delete its netns and state dir; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.kill()
            if os.path.exists(f"/run/netns/{self.netns}"):
                host.run(["ip", "netns", "del", self.netns])   # takes the hub's veth end too
            if self.init == "systemd" and self.pid1:
                host.remove_cgroups(self.netns)
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.hub._release(self.index)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ensure-sysvinit, up (one box until Ctrl-C), down (sweep dead runs)."""
    parser = argparse.ArgumentParser(prog="python3 -m vzmaster.testing.box",
                                     description="VPS in a box: local test nodes (root only).")
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure-sysvinit", help="extract sysvinit's init (never installs it)")
    ensure.add_argument("--dest", default=SYSVINIT_DIR)
    debs = sub.add_parser("ensure-python-debs",
                          help="download python3's packages as an apt repository (never "
                               "installs them): node add --install-python's test")
    debs.add_argument("--dest", default=PYTHON_DEBS_DIR)
    up = sub.add_parser("up", help="start one box and keep it until Ctrl-C")
    up.add_argument("--init", choices=INITS + OTHER_INITS, default="busybox")
    up.add_argument("--disk-size", default="512m")
    sub.add_parser("down", help="delete netns and workdirs left by dead runs")
    args = parser.parse_args(argv)
    if args.command == "ensure-sysvinit":
        print(ensure_sysvinit(args.dest))
        return 0
    if args.command == "ensure-python-debs":
        print(ensure_python_debs(args.dest))
        return 0
    if args.command == "down":
        for name in sweep_stale():
            print("removed", name)
        return 0
    reasons = missing_requirements(args.init)
    if reasons:
        print("cannot start a box here:\n  " + "\n  ".join(reasons), file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):    # clean up as for Ctrl-C
        signal.signal(sig, signal.default_int_handler)
    with Hub() as hub:
        started = time.monotonic()
        box = hub.box(init=args.init, disk_size=args.disk_size)
        print(f"{box.name} ({box.init} init, {args.disk_size} disk) is up at {box.ip} after "
              f"{time.monotonic() - started:.2f} s. Log in with:\n\n"
              f"  {shlex.join(box.ssh_argv())}\n\n"
              f"Console log: {box.state_dir}/console.log\nCtrl-C stops and removes it.",
              flush=True)
        try:
            while box.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        print(f"{box.name}'s init exited:\n{box._report('')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
