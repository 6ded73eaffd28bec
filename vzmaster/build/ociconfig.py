"""config.json from build options, and the user's /etc/passwd and /etc/group lines.

The config is an OCI runtime-spec 1.0.2 document shaped for a service on a VPS:

- namespaces: mount, pid and ipc. The app shares the node's network (it serves on the
  node's addresses, no port mapping). Its own PIDs keep it from seeing or signalling
  the node's processes, and end its orphans with it; its own IPC keeps it off the
  node's shared memory; runc needs a mount namespace, and it keeps the container's
  mounts off the node's table.
- mounts: runc's /proc, /dev, /dev/pts, /dev/shm; the node's /etc/resolv.conf and
  /etc/hosts bound read-only (DNS is the node's business, not the build machine's);
  then the user's binds and tmpfs mounts.
- vz's default capabilities (vzslave.oci.DEFAULT_CAPABILITIES: Docker's less MKNOD and
  NET_RAW; effective only for root), no-new-privileges, runc's
  masked and read-only /proc paths, and a device rule that denies all but the nodes
  every runtime makes.

Each option is checked here and refused naming the option as typed; the whole
config is then checked by the node's own reader (``vzslave.oci``), so what builds is
what a node accepts.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from vzmaster.build.errors import BuildError
from vzslave import oci
from vzslave.errors import VzError

OCI_VERSION = "1.0.2"
DEFAULT_PATH = oci.DEFAULT_ENV[0]
DEFAULT_CAPABILITIES = oci.DEFAULT_CAPABILITIES  # docs/security.md says why each one
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
NODE_FILES = ("/etc/resolv.conf", "/etc/hosts")

# Always in the image's tables: root, and nobody for daemons that drop privileges to it.
BASE_PASSWD = {0: "root:x:0:0:root:/root:/bin/sh",
               65534: "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"}
BASE_GROUP = {0: "root:x:0:", 65534: "nogroup:x:65534:"}

_SIZE = re.compile(r"^[0-9]+[kmg]?$|^[0-9]{1,2}%$|^100%$")


class Options(NamedTuple):
    """What goes into config.json besides the user; the build command's options."""

    args: Sequence[str]
    env: Sequence[str] = ()
    cwd: str = "/"
    readonly: bool = False
    binds: Sequence[str] = ()       # NODE_PATH:DEST[:ro|rw]
    tmpfs: Sequence[str] = ()       # DEST[:SIZE]
    rlimits: Sequence[str] = ()     # NAME=SOFT[:HARD]
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()    # names, or ALL
    node_dns: bool = True


class User(NamedTuple):
    """Who the app runs as, and the passwd and group lines the image gets."""

    uid: int
    gid: int
    passwd: Tuple[str, ...] = ()
    group: Tuple[str, ...] = ()


def _table(data: Optional[bytes]) -> List[List[str]]:
    """The entries of a passwd or group file with a numeric id, as lists of fields."""
    rows = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2].isdigit() and not line.startswith("#"):
            rows.append(fields)
    return rows


def _lookup(rows: List[List[str]], key: str) -> Optional[List[str]]:
    """The row whose name, or id when ``key`` is a number, is ``key``."""
    column = 2 if key.isdigit() else 0
    return next((row for row in rows if row[column] == key), None)


def resolve_user(spec: Optional[str], passwd: Optional[bytes],
                 group: Optional[bytes]) -> User:
    """``USER[:GROUP]`` (names or numbers; None: root) against the source's tables."""
    users, groups = _table(passwd), _table(group)
    name, _, group_name = (spec or "0").partition(":")
    row = _lookup(users, name)
    if row is None and not name.isdigit():
        raise BuildError("--user {!r}: there is no user {!r} in /etc/passwd; give a "
                         "number or a user of the system the files come from".format(
                             spec, name))
    uid = int(row[2]) if row else int(name)
    gid = int(row[3]) if row else uid
    if group_name:
        group_row = _lookup(groups, group_name)
        if group_row is None and not group_name.isdigit():
            raise BuildError("--user {!r}: there is no group {!r} in /etc/group".format(
                spec, group_name))
        gid = int(group_row[2]) if group_row else int(group_name)
    # root, nobody, then the app's user: the order getpwent() users expect.
    return User(uid, gid, _lines(users, BASE_PASSWD, uid if row else None),
                _lines(groups, BASE_GROUP, gid))


def _lines(rows: List[List[str]], base: Dict[int, str], extra: Optional[int]) -> Tuple[str, ...]:
    """The base entries (as the source's table has them, if it does) and ``extra``'s."""
    wanted = list(base) + ([extra] if extra is not None and extra not in base else [])
    found = {int(row[2]): ":".join(row) for row in reversed(rows)}  # first entry wins
    return tuple(found.get(number, base.get(number, "")) for number in wanted
                 if number in found or number in base)


def make_config(options: Options, user: User) -> Dict[str, Any]:
    """The config.json document for ``options``, run as ``user``; refuses bad options."""
    if not options.args:
        raise BuildError("the app's command line is empty: give it after -- "
                         "(vzmaster build ... -- /usr/bin/app ARGS)")
    if not options.cwd.startswith("/"):
        raise BuildError("--cwd {!r}: the working directory must be an absolute "
                         "path".format(options.cwd))
    capabilities = _capabilities(options.cap_add, options.cap_drop)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": user.uid, "gid": user.gid},
            "args": list(options.args),
            "env": _env(options.env),
            "cwd": options.cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities if user.uid == 0 else [],
                "permitted": capabilities if user.uid == 0 else [],
            },
            "rlimits": _rlimits(options.rlimits),
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": options.readonly},
        "mounts": _mounts(options),
        "linux": {
            "namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "ipc"}],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }


def check_with_node_reader(config: Dict[str, Any], bundle: str) -> None:
    """Refuse ``config`` if a node would: the node's own reader, on the staged bundle."""
    try:
        oci.build_plan(config, bundle, "built")
    except VzError as error:
        field = error.details.get("field")
        raise BuildError("the config would be refused by the node: {}{}".format(
            error.message, " (field {})".format(field) if field else "")) from None


def _env(env: Sequence[str]) -> List[str]:
    for item in env:
        name, equals, _ = item.partition("=")
        if not equals or not name:
            raise BuildError("--env {!r}: write NAME=VALUE".format(item))
    has_path = any(item.startswith("PATH=") for item in env)
    return list(env) if has_path else [DEFAULT_PATH, *env]


def _capabilities(add: Sequence[str], drop: Sequence[str]) -> List[str]:
    def known(name: str, option: str) -> str:
        full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
        if full not in oci.CAPABILITIES:
            raise BuildError("{} {!r}: no such capability (see capabilities(7))".format(
                option, name))
        return full

    dropped = {"ALL"} if any(name.upper() == "ALL" for name in drop) else {
        known(name, "--cap-drop") for name in drop}
    kept = set() if "ALL" in dropped else set(DEFAULT_CAPABILITIES) - dropped
    return sorted(kept | {known(name, "--cap-add") for name in add})


def _rlimits(rlimits: Sequence[str]) -> List[Dict[str, Any]]:
    made: List[Dict[str, Any]] = []
    for item in rlimits:
        name, equals, values = item.partition("=")
        kind = name.upper() if name.upper().startswith("RLIMIT_") else "RLIMIT_" + name.upper()
        if not equals or kind not in oci.RLIMITS:
            raise BuildError("--rlimit {!r}: write NAME=SOFT[:HARD] with NAME one of {}".format(
                item, ", ".join(sorted(n[7:].lower() for n in oci.RLIMITS))))
        soft_text, _, hard_text = values.partition(":")
        try:
            soft, hard = (oci.RLIM_INFINITY if text == "unlimited" else int(text)
                          for text in (soft_text, hard_text or soft_text))
        except ValueError:
            raise BuildError("--rlimit {!r}: limits are numbers or 'unlimited'".format(
                item)) from None
        if soft > hard:
            raise BuildError("--rlimit {!r}: the soft limit is above the hard one".format(item))
        if any(limit["type"] == kind for limit in made):
            raise BuildError("--rlimit {!r}: each limit may be given once".format(item))
        made.append({"type": kind, "soft": soft, "hard": hard})
    return made


def _mounts(options: Options) -> List[Dict[str, Any]]:
    made = [dict(mount) for mount in oci.DEFAULT_MOUNTS
            if mount["destination"] in ("/proc", "/dev", "/dev/pts", "/dev/shm")]
    if options.node_dns:
        made += [{"destination": path, "type": "bind", "source": path,
                  "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
                 for path in NODE_FILES]
    for item in options.binds:
        parts = item.split(":")
        mode = parts[2] if len(parts) == 3 else "rw"
        if (len(parts) not in (2, 3) or mode not in ("ro", "rw")
                or not all(part.startswith("/") for part in parts[:2])):
            raise BuildError("--bind {!r}: write NODE_PATH:DEST[:ro], both absolute "
                             "paths".format(item))
        made.append({"destination": parts[1], "type": "bind", "source": parts[0],
                     "options": ["rbind", mode, "nosuid", "nodev"]})
    for item in options.tmpfs:
        dest, _, size = item.partition(":")
        if not dest.startswith("/") or (size and not _SIZE.match(size)):
            raise BuildError("--tmpfs {!r}: write DEST[:SIZE], DEST an absolute path, "
                             "SIZE like 64m".format(item))
        made.append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "nodev", "mode=1777"]
                     + (["size=" + size] if size else [])})
    return made
