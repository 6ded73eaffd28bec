"""What a node is: the facts ``hello`` reports, and which init runs as PID 1."""

import os
import sys
from typing import Dict, Tuple

from vzslave import __version__, fs
from vzslave.config import Layout
from vzslave.protocol import PROTOCOL_VERSION
from vzslave.records import NodeFacts
from vzslave.formats import available_formats

# Byte strings found in each init's binary, checked in this order. sysvinit and
# upstart both install /sbin/init, so the name alone cannot tell them apart.
_INIT_MARKERS = (
    ("busybox", b"BusyBox v"),
    ("systemd", b"systemd"),
    ("upstart", b"upstart"),
    ("openrc", b"openrc"),
    ("sysvinit", b"INIT_VERSION"),
)


def detect_init(proc: str = "/proc") -> str:
    """The init running as PID 1: sysvinit, busybox, systemd, upstart, openrc or unknown."""
    try:
        exe = os.readlink(os.path.join(proc, "1", "exe"))
    except OSError:
        exe = ""  # not root: /proc/1/exe is unreadable; fall back to its name
    name = os.path.basename(exe).replace(" (deleted)", "")
    if name in ("busybox", "systemd"):
        return name
    try:
        with open(os.path.join(proc, "1", "exe"), "rb") as binary:
            image = binary.read(8 * 1024 * 1024)
    except OSError:
        image = b""
    for flavour, marker in _INIT_MARKERS:
        if marker in image:
            return flavour
    try:
        with open(os.path.join(proc, "1", "comm")) as comm:
            name = comm.read().strip()
    except OSError:
        return "unknown"
    return name if name in ("systemd", "busybox", "upstart") else "unknown"


def memory(meminfo: str = "/proc/meminfo") -> Tuple[int, int]:
    """(total, available) bytes of RAM; (0, 0) if unreadable. Kernels before 3.14 (OpenVZ
    6's 2.6.32) lack MemAvailable: free + buffers + page cache stands in for it."""
    fields: Dict[str, int] = {}
    try:
        with open(meminfo) as source:
            for line in source:
                name, _, rest = line.partition(":")
                words = rest.split()
                if words and words[0].isdigit():
                    fields[name] = int(words[0]) * 1024  # the file says kB, meaning KiB
    except OSError:
        return 0, 0
    available = fields.get("MemAvailable")
    if available is None:
        available = sum(fields.get(name, 0) for name in ("MemFree", "Buffers", "Cached"))
    return fields.get("MemTotal", 0), available


def node_facts(layout: Layout) -> NodeFacts:
    """The facts of this node, read now."""
    uname = os.uname()
    free = fs.free_space(layout.root)
    mem_total, mem_available = memory()
    return NodeFacts(
        protocol=PROTOCOL_VERSION,
        version=__version__,
        hostname=uname.nodename,
        kernel=uname.release,
        arch=uname.machine,
        init=detect_init(),
        python="{}.{}.{}".format(*sys.version_info[:3]),
        root=layout.root,
        uid=os.geteuid(),
        free_bytes=free.bytes,
        free_inodes=free.inodes,
        formats=available_formats(),
        mem_total=mem_total,
        mem_available=mem_available,
    )
