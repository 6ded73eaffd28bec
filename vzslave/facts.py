"""What a node is: the facts ``hello`` reports, and which init runs as PID 1."""

import os
import sys

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


def node_facts(layout: Layout) -> NodeFacts:
    """The facts of this node, read now."""
    uname = os.uname()
    free = fs.free_space(layout.root)
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
    )
