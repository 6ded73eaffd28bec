"""The records that cross the wire as op results, shared by node and client.

Each is a NamedTuple whose fields are exactly the keys of its wire map
(docs/protocol.md). ``from_wire`` ignores keys it does not know, so a newer node
can add fields without breaking an older client.
"""

from typing import Any, Dict, List, NamedTuple, Optional, Type, TypeVar

from vzslave.errors import BadFrameError

T = TypeVar("T")


class ImageInfo(NamedTuple):
    """An image the node holds, complete and verified."""

    name: str
    size: int
    sha256: str
    format: str  # "tar", "tar.gz", "tar.xz", "tar.zst" or "unknown"
    created: float  # unix time it was published on the node


class PartialInfo(NamedTuple):
    """The prefix of an interrupted upload the node kept, so it can be resumed."""

    size: int
    sha256: str  # of those first ``size`` bytes


class BundleInfo(NamedTuple):
    """A bundle unpacked on the node: ``config.json`` plus its root filesystem."""

    name: str
    image: str  # the image it was unpacked from
    sha256: str  # that image's sha256 at the time
    created: float
    files: int  # tarball members extracted
    bytes: int  # regular-file bytes extracted
    setid_stripped: List[str]  # members whose setuid/setgid bits were removed (<= 100)


class NodeFacts(NamedTuple):
    """What ``hello`` tells about the node."""

    protocol: int
    version: str  # vzslave's version
    hostname: str
    kernel: str
    arch: str
    init: str  # "sysvinit", "busybox", "systemd", "upstart", "openrc" or "unknown"
    python: str
    root: str  # the state root
    uid: int  # the user vzslave runs as
    free_bytes: int  # under the state root
    free_inodes: int
    formats: List[str]  # image formats this node can unpack
    mem_total: int = 0  # bytes of RAM (0: the node did not say; older vzslave)
    mem_available: int = 0  # bytes a new process could have without swapping


class ContainerStatus(NamedTuple):
    """Where a container stands, as ``status`` reports it."""

    name: str
    # running | starting | restarting | crash-looping | disabled | stopped
    # ("disabled": the sysadmin commented out or deleted its inittab entry)
    state: str
    pid: Optional[int]  # the app's pid (or the monitor's / runtime's), when alive
    uptime: Optional[float]  # seconds since the app was exec'd, when running
    restarts: int  # spawns since the last start request, less the first
    last_exit: Optional[str]  # "exit N" / "signal N"; None when nothing of ours saw it
    last_error: Optional[str]  # why the runner could not start the app, if it could not
    next_retry: Optional[float]  # unix time of the next attempt, when crash-looping
    supervisor: str  # what runs the inittab entry: "sysvinit", "busybox", "vz-supervisor"
    runtime: str  # "builtin", "runc" or "crun"
    entry: Optional[str]  # the container's inittab line as it stands, if any
    bundle: str  # the bundle tree the container runs from
    log: str  # the log file on the node
    # Fields added later have defaults: a record from an older node still reads.
    last_run: Optional[float] = None  # seconds the previous instance ran
    warnings: List[str] = []  # what the node could not honour as asked (at start)


class ReleaseInfo(NamedTuple):
    """One release of an app: an unpacked image plus the release's own settings."""

    app: str
    release: int  # 1, 2, 3, ... never reused
    image: str  # the image it was unpacked from
    sha256: str  # that image's sha256 at the time
    created: float  # unix time it was unpacked
    current: bool  # the release the app's container runs (or ran, when stopped)
    env: List[str]  # the names of the variables it sets over the image's
    secrets: List[str]  # the names of its secrets (never their values)
    volumes: Dict[str, str]  # volume name -> path in the container
    health: Optional[Dict[str, Any]]  # its health check; None: up for min_uptime
    release_command: Optional[List[str]]  # run once before the switch, if any
    labels: Dict[str, str] = {}  # the deployer's own marks, as given at deploy


class AppInfo(NamedTuple):
    """An app on the node: its releases and the state of its container."""

    app: str
    current: Optional[int]  # the release its container runs, None before any
    releases: List[int]  # the kept releases, newest first
    keep: int  # how many releases deploy keeps
    state: str  # the container's state (ContainerStatus.state), "stopped" if none
    volumes: List[str]  # its volumes' names
    labels: Dict[str, str] = {}  # its current release's labels


class VolumeInfo(NamedTuple):
    """A volume of an app: a directory that outlives releases, mounted read-write."""

    app: str
    name: str
    path: str  # on the node: ROOT/volumes/APP/NAME
    bytes: int  # the space its files take


class RunResult(NamedTuple):
    """A one-off command's end: ``app.run``."""

    release: int
    exit: str  # "exit N" or "signal N" ("timeout" after the deadline's KILL)
    status: int  # the shell's convention: N, 128 + signal
    output: str  # stdout and stderr, merged; the end of it when long
    truncated: bool  # the head of a long output was dropped


class AppDiff(NamedTuple):
    """What deploying an image with given settings would change in an app: ``app.diff``."""

    app: str
    current: Optional[int]  # the release the app's container runs, None before any
    changes: List[str]  # what differs from that release (DIFF_FIELDS); ["new"] if none
    state: str  # the container's state (ContainerStatus.state), "stopped" if none


class HealthResult(NamedTuple):
    """An app's health check tried once: ``app.check``."""

    app: str
    release: Optional[int]  # the release checked, None before any
    passed: bool
    output: str  # what the check saw (the end of a cmd check's output)


# What app.diff compares, in this order: the image's bytes, then the release's settings.
DIFF_FIELDS = ("image", "env", "secrets", "volumes", "health", "release_command", "options",
               "labels")


class FirewallStatus(NamedTuple):
    """The node's firewall chain (vzslave/firewall.py): what vz applied, and how it stands."""

    backend: Optional[str]  # "iptables" or "nft"; None where the node has neither tool
    active: bool  # vz's chain is there and INPUT goes through it (nft: its table is hooked)
    ports: List[str]  # the declared ports vz opened: "8080/tcp", ...
    ssh_ports: List[int]  # the SSH ports it keeps open
    drift: List[str]  # how the chain differs from what vz applied, in words; [] if not at all
    applied: Optional[float]  # unix time of the last apply; None if none stands
    families: List[str] = []  # "ipv4", "ipv6": what the applied chain covers


def to_wire(record: Any) -> Dict[str, Any]:
    """The wire map of a record."""
    return dict(record._asdict())


def from_wire(cls: Type[T], value: Any) -> T:
    """Build record ``cls`` from a wire map; BadFrameError if a field is missing."""
    if not isinstance(value, dict):
        raise BadFrameError("{}: expected a map, got {}".format(
            cls.__name__, type(value).__name__))
    fields = cls._fields  # type: ignore[attr-defined]
    defaults = getattr(cls, "_field_defaults", {})
    missing = [f for f in fields if f not in value and f not in defaults]
    if missing:
        raise BadFrameError("{}: missing {}".format(cls.__name__, ", ".join(missing)))
    return cls(**{f: value[f] for f in fields if f in value})


def optional_from_wire(cls: Type[T], value: Any) -> Optional[T]:
    """Like ``from_wire`` but None stays None."""
    return None if value is None else from_wire(cls, value)
