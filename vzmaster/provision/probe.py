"""What a node is, asked in one round trip before anything is changed: its OS, its init,
its Pythons, its sshd (and whether that reads ``Include``), whether it is an OpenVZ or
LXC guest, its free disk and memory, and its clock against ours.

``SCRIPT`` is a constant POSIX sh script (busybox ash, dash, bash) that prints
``key=value`` lines; ``parse_probe`` (pure) makes a ``NodeProbe`` of them.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

MIN_PYTHON = (3, 6)
INCLUDE_SINCE = (7, 3)  # OpenSSH's first release with Include in sshd_config

SCRIPT = r"""
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os_id=${ID:-unknown}"; echo "os_version=${VERSION_ID:-}"; echo "os_name=${PRETTY_NAME:-}"
echo "os_like=${ID_LIKE:-}"
exe=$(readlink /proc/1/exe 2>/dev/null); echo "pid1_exe=$exe"
echo "pid1_comm=$(cat /proc/1/comm 2>/dev/null)"
if grep -qa 'BusyBox v' /proc/1/exe 2>/dev/null; then echo "init=busybox"
elif grep -qa systemd /proc/1/exe 2>/dev/null; then echo "init=systemd"
elif grep -qa upstart /proc/1/exe 2>/dev/null; then echo "init=upstart"
elif grep -qa openrc /proc/1/exe 2>/dev/null; then echo "init=openrc"
elif grep -qa INIT_VERSION /proc/1/exe 2>/dev/null; then echo "init=sysvinit"
else echo "init=unknown"; fi
for p in python3 python3.14 python3.13 python3.12 python3.11 python3.10 python3.9 \
         python3.8 python3.7 python3.6 /usr/bin/python3 /usr/local/bin/python3; do
  path=$(command -v "$p" 2>/dev/null) || continue
  v=$("$path" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) \
    && echo "python=$v $path"
done
sshd=$(command -v sshd 2>/dev/null || echo /usr/sbin/sshd); echo "sshd_path=$sshd"
echo "sshd_version=$("$sshd" -V 2>&1 | grep -o 'OpenSSH_[0-9][0-9.p]*' | head -n 1)"
conf=/etc/ssh/sshd_config; echo "sshd_config=$conf"
if grep -Eqi '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' "$conf" \
   2>/dev/null; then echo "sshd_include=yes"; else echo "sshd_include=no"; fi
[ -d /etc/ssh/sshd_config.d ] && echo "sshd_dropin_dir=yes"
[ -e /proc/vz ] || [ -e /proc/user_beancounters ] && echo "virt=openvz"
grep -qa 'container=lxc' /proc/1/environ 2>/dev/null && echo "virt=lxc"
[ -e /run/systemd/container ] && echo "virt=$(cat /run/systemd/container)"
df -Pk / 2>/dev/null | awk 'NR==2 {print "disk_free_kb=" $4}'
awk '/^MemTotal:/ {print "mem_total_kb=" $2} /^MemAvailable:/ {print "mem_available_kb=" $2}' \
  /proc/meminfo 2>/dev/null
echo "uid=$(id -u)"; echo "home=$HOME"; echo "clock=$(date +%s)"
[ -w /etc/inittab ] && echo "inittab_writable=yes"
exit 0
"""


class NodeProbe(NamedTuple):
    """A node as SCRIPT saw it."""

    os_id: str
    os_name: str
    os_like: tuple[str, ...]
    init: str  # sysvinit, busybox, systemd, upstart, openrc or unknown
    pythons: tuple[tuple[tuple[int, int, int], str], ...]  # (version, path), best first
    sshd_path: str
    sshd_version: tuple[int, int] | None  # OpenSSH's (major, minor)
    sshd_config: str
    sshd_include: bool  # sshd_config includes sshd_config.d/*.conf
    virt: str | None  # openvz, lxc, or what systemd says; None on a VM or metal
    disk_free: int  # bytes under /
    mem_total: int
    mem_available: int
    uid: int
    home: str
    clock_skew: float  # the node's clock minus ours, seconds (1 s resolution)

    @property
    def python(self) -> str | None:
        """The interpreter vz will use: the newest Python >= 3.6, /usr/bin first on a tie."""
        return self.pythons[0][1] if self.pythons else None

    @property
    def python_version(self) -> str:
        return ".".join(map(str, self.pythons[0][0])) if self.pythons else "none"

    @property
    def dropin(self) -> bool:
        """Whether sshd reads a drop-in file: Include support and a config that includes."""
        return bool(self.sshd_include and self.sshd_version
                    and self.sshd_version >= INCLUDE_SINCE)


def parse_probe(text: str, now: float | None = None) -> NodeProbe:
    """The NodeProbe of SCRIPT's output (``now``: our clock when it ran)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[a-z_0-9]+", key):
            values.setdefault(key, []).append(value.strip())

    def one(key: str, default: str = "") -> str:
        return values.get(key, [default])[0]

    def kb(key: str) -> int:
        value = one(key, "0")
        return int(value) * 1024 if value.isdigit() else 0

    pythons = []
    seen = set()
    for item in values.get("python", []):
        version, _, path = item.partition(" ")
        parts = version.split(".")
        if len(parts) != 3 or not all(part.isdigit() for part in parts) or not path:
            continue
        numbers = (int(parts[0]), int(parts[1]), int(parts[2]))
        if numbers[:2] >= MIN_PYTHON and (numbers, path) not in seen:
            seen.add((numbers, path))
            pythons.append((numbers, path))
    pythons.sort(key=lambda item: (item[0], item[1].startswith("/usr/bin/")), reverse=True)
    found = re.match(r"OpenSSH_(\d+)\.(\d+)", one("sshd_version"))
    clock = one("clock")
    return NodeProbe(
        os_id=one("os_id", "unknown"), os_name=one("os_name"),
        os_like=tuple(one("os_like").split()), init=one("init", "unknown"),
        pythons=tuple(pythons), sshd_path=one("sshd_path", "/usr/sbin/sshd"),
        sshd_version=(int(found.group(1)), int(found.group(2))) if found else None,
        sshd_config=one("sshd_config", "/etc/ssh/sshd_config"),
        sshd_include=one("sshd_include") == "yes", virt=one("virt") or None,
        disk_free=kb("disk_free_kb"), mem_total=kb("mem_total_kb"),
        mem_available=kb("mem_available_kb"),
        uid=int(one("uid", "-1")) if one("uid", "-1").lstrip("-").isdigit() else -1,
        home=one("home", "/root"),
        clock_skew=(int(clock) - (time.time() if now is None else now))
        if clock.isdigit() else 0.0)


def python_install_command(probe: NodeProbe) -> list[str]:
    """The command that installs Python 3 on the node's OS (what --install-python runs)."""
    family = {probe.os_id, *probe.os_like}
    if family & {"debian", "ubuntu"}:
        # Non-interactive: a debconf question would wait on a terminal nobody sees.
        return ["sh", "-c", "apt-get update && DEBIAN_FRONTEND=noninteractive "
                            "apt-get install -y python3"]
    if family & {"alpine"}:
        return ["apk", "add", "python3"]
    if family & {"fedora", "rhel", "centos", "rocky", "almalinux"}:
        return ["sh", "-c", "command -v dnf >/dev/null && dnf install -y python3 "
                            "|| yum install -y python3"]
    if family & {"arch"}:
        return ["pacman", "-Sy", "--noconfirm", "python"]
    if family & {"opensuse", "suse", "sles"}:
        return ["zypper", "--non-interactive", "install", "python3"]
    return []
