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
- seccomp (``--seccomp default``): a deny-list on SCMP_ACT_ALLOW of what Docker's
  default profile keeps from a container without CAP_SYS_ADMIN (``DENIED``, clone
  with namespace flags, clone3 as ENOSYS, unsafe personalities), for this machine's
  arch and its compat arches. Written so that runc and libseccomp read it the same
  way: no rule has the default action, no rule tests an argument twice.

Each option is checked here and refused naming the option as typed; the whole
config is then checked by the node's own reader (``vzslave.oci``), so what builds is
what a node accepts.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from vzmaster.imaging.errors import BuildError
from vzslave import oci, seccomp
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

# What the default seccomp profile refuses with EPERM, by why. Docker's default profile
# (an allow-list) leaves these out for a container without CAP_SYS_ADMIN; the kernel
# would refuse most without the capability anyway: the filter takes away the attack
# surface behind the capability check.
DENIED = (
    # mounts, the new mount API, changing the root
    "mount", "umount", "umount2", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "pivot_root",
    # kernel code and kernel-wide state
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module", "bpf", "perf_event_open", "reboot",
    "swapon", "swapoff", "acct", "syslog", "lookup_dcookie", "nfsservctl", "uselib", "ustat",
    "sysfs", "_sysctl", "quotactl", "quotactl_fd", "iopl", "ioperm", "vm86", "vm86old",
    "vhangup", "fanotify_init", "sethostname", "setdomainname",
    # the keyrings and clocks, which no namespace separates
    "keyctl", "add_key", "request_key", "settimeofday", "stime", "clock_settime",
    "clock_settime64", "clock_adjtime", "clock_adjtime64", "adjtimex",
    # namespaces, and reaching into other processes (the node's PID namespace is shared)
    "unshare", "setns", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "pidfd_getfd", "process_madvise",
    # file handles reach files outside the chroot; io_uring and userfaultfd: kernel bugs
    "open_by_handle_at", "name_to_handle_at", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register")
CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                    0x40000000)  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, both, and the query.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
ENOSYS = 38


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
    seccomp: str = "default"        # default, unconfined or a JSON file of linux.seccomp


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
    linux: Dict[str, Any] = {
        "namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "ipc"}],
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    }
    profile = _seccomp(options.seccomp)
    if profile is not None:
        linux["seccomp"] = profile
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
        "linux": linux,
    }


def check_with_node_reader(config: Dict[str, Any], bundle: str) -> None:
    """Refuse ``config`` if a node would: the node's own reader, on the staged bundle."""
    try:
        oci.build_plan(config, bundle, "built", check_machine())
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


def build_machine() -> str:
    """This machine's arch as uname -m says it on Linux (macOS says arm64)."""
    machine = os.uname().machine
    return "aarch64" if machine == "arm64" else machine


def check_machine() -> str:
    """The machine seccomp profiles are checked for: this one if the node side knows it.

    The node compiles the filter for its own machine at start; here only whether the
    profile is valid matters, which any known machine tells.
    """
    machine = build_machine()
    return machine if machine in seccomp.MACHINES else "x86_64"


def default_seccomp(machine: str) -> Dict[str, Any]:
    """The default profile: a deny-list for ``machine`` and its compat arches."""
    errno_rule = {"action": "SCMP_ACT_ERRNO", "errnoRet": 1}  # EPERM
    rules: List[Dict[str, Any]] = [dict(errno_rule, names=list(DENIED))]
    rules += [dict(errno_rule, names=["clone"], args=[_arg(0, "SCMP_CMP_MASKED_EQ", flag, flag)])
              for flag in CLONE_NAMESPACES]
    # glibc falls back from clone3 to clone on ENOSYS, and clone3's flags are behind a
    # pointer, out of a filter's reach: clone's rules above decide instead.
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    rules += [dict(errno_rule, names=["personality"], args=[arg])
              for arg in _personality_tests()]
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": seccomp.arches_for(machine),
            "syscalls": rules}


def _arg(index: int, op: str, value: int, value_two: int = 0) -> Dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def _personality_tests() -> List[Dict[str, Any]]:
    """Tests that, ORed, hold for every personality(2) argument but PERSONALITIES.

    Strategy: one test per rule, as libseccomp (under runc) ORs several rules of one
    syscall but cannot express "not one of" in one. PERSONALITIES are the values whose
    bits outside 0x20008 are all 0, and all-ones. Any other 32-bit value has a bit k
    outside 0x20008 set next to a clear bit, in a cycle over those 30 bits (a test of
    two bits each), or has them all set and bit 3 or 17 clear (two more tests). Values
    above 32 bits are refused by one more test.
    """
    kept = 0x20008
    bits = [bit for bit in range(32) if not kept >> bit & 1]
    tests = [_arg(0, "SCMP_CMP_GT", 0xFFFFFFFF)]
    for position, bit in enumerate(bits):
        clear = bits[(position + 1) % len(bits)]
        tests.append(_arg(0, "SCMP_CMP_MASKED_EQ", 1 << bit | 1 << clear, 1 << bit))
    tests += [_arg(0, "SCMP_CMP_MASKED_EQ", 1 << bits[0] | 1 << clear, 1 << bits[0])
              for clear in (3, 17)]
    return tests


def _seccomp(option: str) -> Optional[Dict[str, Any]]:
    """linux.seccomp for ``--seccomp``: the default profile, none, or a file's."""
    if option == "default":
        return default_seccomp(build_machine())
    if option == "unconfined":
        return None
    try:
        with open(option, "rb") as source:
            profile = json.loads(source.read().decode("utf-8"))
    except OSError as exc:
        raise BuildError("--seccomp {!r}: cannot read it ({}); give default, unconfined or a "
                         "JSON file holding a linux.seccomp object".format(
                             option, exc.strerror)) from None
    except ValueError as exc:
        raise BuildError("--seccomp {!r}: not JSON: {}".format(option, exc)) from None
    if isinstance(profile, dict) and ("archMap" in profile or any(
            isinstance(rule, dict) and ("includes" in rule or "excludes" in rule)
            for rule in profile.get("syscalls") or [])):
        raise BuildError("--seccomp {!r}: this is a Docker profile (archMap, includes, "
                         "excludes), whose rules depend on Docker's settings; give the "
                         "linux.seccomp object of a config.json instead".format(option))
    try:
        seccomp.compile_filter(profile, check_machine())
    except VzError as error:
        raise BuildError("--seccomp {!r}: {}".format(option, error.message)) from None
    return profile if profile else None
