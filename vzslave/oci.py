"""Turn an OCI bundle's config.json (runtime-spec 1.x) into the runner's exec plan.

The plan (ROOT/containers/NAME/plan.*) is all the chroot runner reads at each spawn:
names are resolved to numbers and paths made absolute here, and whatever the runner
cannot do is refused here, at start, as ``BadConfigError`` naming ``details["field"]``.
Pure but for ``load_config``, the realpath of the bundle and its rootfs, and two looks
at the node: namespace files (opened for their type) and whether mount_setattr(2) exists.

Policy, field by field (fields not listed are ignored, for forward compatibility)::

    field                         honoured how / refused why
    ociVersion                    required; major version 1, else refused
    root.path                     required; its realpath must be the bundle dir (".", as
                                  runc allows) or lie inside it
    root.readonly                 kept ("readonly")
    process.args, process.cwd     required: a non-empty list of strings; an absolute path
    process.env                   "K=V" strings; absent: PATH only
    process.terminal              true is accepted with a warning: no terminal under init
                                  (runch refuses it, as runc does without a console socket)
    process.consoleSize           ignored (it only goes with a terminal)
    process.user                  uid, gid, umask, additionalGids kept; username ignored
    process.rlimits               names -> numbers; unknown, duplicate, soft > hard refused;
                                  2**64-1 (RLIM_INFINITY) becomes -1, as in `resource`
    process.noNewPrivileges,
      process.oomScoreAdj         kept
    process.capabilities          names -> numbers per set; unknown names refused; a set
                                  the runner cannot apply fails the spawn (as runc's create);
                                  absent: DEFAULT_CAPABILITIES (bounding; also effective and
                                  permitted for uid 0), never all of root's
    process.apparmorProfile,
      selinuxLabel, ioPriority,
      scheduler, execCPUAffinity  refused when set: the runner has no such step
    hostname, domainname          kept; refused without a uts namespace
    mounts                        absolute destinations without ".."; options -> MS_* flags
                                  as runc maps them, the rest -> data (where mount(2) ignores
                                  it, on a bind mount: key=value dropped with a warning, other
                                  words refused as unknown); rro, rnosuid... (runc's
                                  recursive options) -> mount_setattr(2) with AT_RECURSIVE,
                                  refused where the kernel lacks it (before 5.12); relative
                                  bind sources are in the bundle, without ".." (walked without
                                  following the image's symlinks); absolute ones are node
                                  paths, not in vz's bundle store; absent or empty: runc's
                                  defaults (/proc with nosuid,noexec,nodev); cgroup and
                                  cgroup2 mounts dropped with a warning; idmapped mounts refused
    linux.namespaces              mount uts ipc network cgroup pid kept (pid first, before
                                  the monitor forks; path -> setns, refused unless it opens as
                                  a namespace of the entry's type); user, time and duplicates
                                  refused: the runner does no ID mappings or time offsets.
                                  vz's containers always get a private mount namespace
                                  (pivot_root needs one), a child of a joined one; runch,
                                  as runc, enters a joined one as it is and, without one,
                                  runs the app in a chroot
    linux.devices                 added to the default nodes (same path replaces); under /dev
    linux.maskedPaths,
      linux.readonlyPaths         kept
    linux.rootfsPropagation       -> MS_* flags
    linux.resources               devices rules that deny, or allow only nodes the runner
                                  makes (nothing else is in /dev: a deny holds by
                                  construction); any other non-empty key refused: no cgroups
    linux.seccomp                 compiled to a BPF filter for this node's arch
                                  (vzslave/seccomp.py: its choices where the spec is
                                  silent); listeners (SCMP_ACT_NOTIFY) and other machines
                                  than x86_64, i386, aarch64, arm refused
    linux.cgroupsPath             refused when set (after linux.resources): no cgroups
    linux.sysctl                  kept (written under /proc/sys in the container's
                                  namespaces) where runc keeps it: ipc ones with an ipc
                                  namespace, net.* with a network one, kernel.domainname
                                  with a uts one; others refused: they would change the host
    linux.uidMappings, gidMappings,
      timeOffsets, intelRdt,
      personality, mountLabel,
      memoryPolicy, netDevices    refused when set: the runner has no such step
    hooks                         refused when any list is non-empty: no hooks are run
    annotations                   ignored

Every refusal names the way out: remove the field, or set the container's runtime to
runc or crun, which run the bundle unchanged. Standard library only (Python 3.6+).
"""

import collections
import errno
import fcntl
import json
import os
import posixpath
import stat
import sys
from typing import Any, Dict, List, Optional, Tuple

from vzslave import linux as kernel
from vzslave.errors import BadConfigError, NoSuchBundleError, error_from_os
from vzslave.names import validate_name

MAX_CONFIG = 1 << 20
RLIM_INFINITY = 2 ** 64 - 1
_UINT32 = 2 ** 32 - 1

CAPABILITIES: Dict[str, int] = {
    "CAP_" + name: number for number, name in enumerate(kernel.CAPABILITY_NAMES)}
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
# What a config without a capabilities section gets (and what vzmaster build writes):
# Docker's default set less CAP_MKNOD (a node has no device cgroup: a device node of
# the node's disk would be its disk) and CAP_NET_RAW (the app shares the node's
# network: raw and packet sockets would sniff and forge the node's traffic).
# docs/security.md gives the reasoning for each one kept.
DEFAULT_CAPABILITIES = sorted("CAP_" + name for name in (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
    "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"))

RLIMITS: Dict[str, int] = {"RLIMIT_" + name: number for number, name in enumerate((
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
    "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"))}

CLONE_FLAGS: Dict[str, int] = {
    "mount": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "network": 0x40000000,
    "cgroup": 0x02000000, "pid": 0x20000000, "user": 0x10000000, "time": 0x00000080,
}
_NSFS_NAMES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "network": "net", "cgroup": "cgroup",
               "pid": "pid", "user": "user", "time": "time"}
_NS_GET_NSTYPE = 0xB703  # ioctl(2) on a namespace file: its CLONE_NEW* type (Linux 4.11+)
_REFUSED_NAMESPACES = {
    "user": "a user namespace, which needs ID mappings the chroot runner does not do",
    "time": "a time namespace, which the chroot runner does not make",
}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 0x10, 0x20, 0x40, 0x80
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x100, 0x400, 0x800, 0x1000
MS_REC, MS_SILENT, MS_UNBINDABLE, MS_PRIVATE = 0x4000, 0x8000, 0x20000, 0x40000
MS_SLAVE, MS_SHARED, MS_RELATIME, MS_I_VERSION = 0x80000, 0x100000, 0x200000, 0x800000
MS_STRICTATIME, MS_LAZYTIME = 0x1000000, 0x2000000

# (option that sets, option that clears, bits), as runc's specconv maps mount options;
# the options not named here go to the mount's "data".
_FLAG_OPTIONS = [
    ("ro", "rw", MS_RDONLY), ("nosuid", "suid", MS_NOSUID), ("nodev", "dev", MS_NODEV),
    ("noexec", "exec", MS_NOEXEC), ("sync", "async", MS_SYNCHRONOUS),
    ("dirsync", "", MS_DIRSYNC), ("remount", "", MS_REMOUNT), ("mand", "nomand", MS_MANDLOCK),
    ("noatime", "atime", MS_NOATIME), ("nodiratime", "diratime", MS_NODIRATIME),
    ("relatime", "norelatime", MS_RELATIME), ("strictatime", "nostrictatime", MS_STRICTATIME),
    ("lazytime", "nolazytime", MS_LAZYTIME), ("iversion", "noiversion", MS_I_VERSION),
    ("silent", "loud", MS_SILENT), ("nosymfollow", "", MS_NOSYMFOLLOW), ("", "defaults", 0)]
MOUNT_FLAGS: Dict[str, Tuple[bool, int]] = dict(
    [(on, (True, bits)) for on, off, bits in _FLAG_OPTIONS if on]
    + [(off, (False, bits)) for on, off, bits in _FLAG_OPTIONS if off])
# Recursive mount attributes (runc's "rro" family), applied with mount_setattr(2):
# option -> (MOUNT_ATTR_* bits to set, bits to clear). The atime options are one field of
# the kernel's, so each clears the whole field; the negated ones go back to relatime,
# the kernel's default (rnorelatime: strictatime).
_RECURSIVE_FLAGS = (
    ("ro", "rw", kernel.MOUNT_ATTR_RDONLY), ("nosuid", "suid", kernel.MOUNT_ATTR_NOSUID),
    ("nodev", "dev", kernel.MOUNT_ATTR_NODEV), ("noexec", "exec", kernel.MOUNT_ATTR_NOEXEC),
    ("nodiratime", "diratime", kernel.MOUNT_ATTR_NODIRATIME),
    ("nosymfollow", "symfollow", kernel.MOUNT_ATTR_NOSYMFOLLOW))
RECURSIVE_OPTIONS: Dict[str, Tuple[int, int]] = dict(
    [("r" + on, (bits, 0)) for on, off, bits in _RECURSIVE_FLAGS]
    + [("r" + off, (0, bits)) for on, off, bits in _RECURSIVE_FLAGS]
    + [(option, (bits, kernel.MOUNT_ATTR__ATIME)) for option, bits in (
        ("rrelatime", kernel.MOUNT_ATTR_RELATIME), ("rnoatime", kernel.MOUNT_ATTR_NOATIME),
        ("rstrictatime", kernel.MOUNT_ATTR_STRICTATIME), ("ratime", kernel.MOUNT_ATTR_RELATIME),
        ("rnostrictatime", kernel.MOUNT_ATTR_RELATIME),
        ("rnorelatime", kernel.MOUNT_ATTR_STRICTATIME))])
PROPAGATION: Dict[str, int] = {
    prefix + name: bits | recursive
    for name, bits in (("private", MS_PRIVATE), ("shared", MS_SHARED), ("slave", MS_SLAVE),
                       ("unbindable", MS_UNBINDABLE))
    for prefix, recursive in (("", 0), ("r", MS_REC))}

DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
# runc spec's mounts, except /sys/fs/cgroup (skipped anyway); /proc gets nosuid,noexec,nodev
# as Docker mounts it: nothing in /proc is meant to be executed or opened as a device.
DEFAULT_MOUNTS: List[Dict[str, Any]] = [
    {"destination": dest, "type": kind, "source": source, "options": options.split(",")}
    for dest, kind, source, options in (
        ("/proc", "proc", "proc", "nosuid,noexec,nodev"),
        ("/dev", "tmpfs", "tmpfs", "nosuid,strictatime,mode=755,size=65536k"),
        ("/dev/pts", "devpts", "devpts",
         "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ("/dev/shm", "tmpfs", "shm", "nosuid,noexec,nodev,mode=1777,size=65536k"),
        ("/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev"),
        ("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"))]
DEFAULT_DEVICES = [("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
                   ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0)]
LINKS = [["/dev/fd", "/proc/self/fd"], ["/dev/stdin", "/proc/self/fd/0"],
         ["/dev/stdout", "/proc/self/fd/1"], ["/dev/stderr", "/proc/self/fd/2"],
         ["/dev/ptmx", "pts/ptmx"]]
# Device cgroup rules may allow these besides the nodes made: devpts serves them.
_PTY_RULES: List[List[Any]] = [["c", 5, 2], ["c", 136, None]]

_RUNC = "set runtime to runc or crun to run this bundle unchanged"
_WAY_OUT = "remove the field, or " + _RUNC
# (section, key, what the chroot runner does not do): refused when set to anything non-empty.
_UNSUPPORTED = [
    ("process", "apparmorProfile", "apply AppArmor profiles"),
    ("process", "selinuxLabel", "apply SELinux labels"),
    ("process", "ioPriority", "set I/O priorities"),
    ("process", "scheduler", "set scheduling policies"),
    ("process", "execCPUAffinity", "set CPU affinity"),
    ("linux", "uidMappings", "make user namespaces, which ID mappings need"),
    ("linux", "gidMappings", "make user namespaces, which ID mappings need"),
    ("linux", "timeOffsets", "make time namespaces, which time offsets need"),
    ("linux", "intelRdt", "apply Intel RDT settings"),
    ("linux", "personality", "set the personality"),
    ("linux", "mountLabel", "apply SELinux mount labels"),
    ("linux", "memoryPolicy", "set memory policies"),
    ("linux", "netDevices", "move network devices")]

_JSON_TYPES: Dict[type, str] = {
    bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
    dict: "an object"}


def _bad(field: str, message: str) -> BadConfigError:
    return BadConfigError(message, {"field": field})


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "null")  # json.loads makes exactly these types


def _get(obj: Dict[str, Any], key: str, cls: type, field: str, default: Any = None) -> Any:
    """``obj[key]`` checked to be a ``cls`` (bool is no int); ``default`` if absent/null."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, cls) or (cls is int and isinstance(value, bool)):
        raise _bad(field, "{} must be {}, not {}".format(
            field, _JSON_TYPES[cls], _kind(value)))
    return value


def _object(value: Any, field: str) -> Dict[str, Any]:
    if value is None:
        raise _bad(field, "{} is missing: an OCI config.json must set it".format(field))
    if not isinstance(value, dict):
        raise _bad(field, "{} must be an object, not {}".format(field, _kind(value)))
    return value


def _ranged(value: Any, field: str, low: int, high: int) -> int:
    """``value``, an integer (not a bool) from ``low`` to ``high``; else refused."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(field, "{} must be an integer from {} to {}, not {}".format(
            field, low, high, "missing" if value is None else json.dumps(value)))
    return value


def _strings(obj: Dict[str, Any], key: str, field: str) -> List[str]:
    values = _get(obj, key, list, field, [])
    for index, value in enumerate(values):
        if not isinstance(value, str) or "\0" in value:
            raise _bad("{}[{}]".format(field, index), "{}[{}] must be a string without NUL "
                       "characters, not {}".format(field, index, json.dumps(value)))
    return list(values)


def _absolute(value: Any, field: str, dotdot: bool = False) -> str:
    """An absolute path, normalised; ``..`` components refused unless ``dotdot``."""
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise _bad(field, "{} must be an absolute path, not {}".format(
            field, "missing" if value is None else json.dumps(value)))
    if not dotdot and ".." in value.split("/"):
        raise _bad(field, "{} must not contain '..': {}".format(field, value))
    return "/" + posixpath.normpath(value).lstrip("/")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def load_config(bundle: str, max_bytes: int = MAX_CONFIG) -> Dict[str, Any]:
    """Read BUNDLE/config.json: a regular file (never followed as a symlink), a JSON object."""
    where = os.path.join(bundle, "config.json")
    try:
        dir_fd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NoSuchBundleError("no bundle directory at {}".format(bundle)) from exc
    except OSError as exc:
        raise error_from_os(exc, "cannot open the bundle") from exc
    try:
        # O_NONBLOCK: a fifo named config.json must not hang the open.
        fd = os.open("config.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            raise _bad("config.json", "{} {}: an OCI bundle needs a config.json file next to "
                       "its rootfs".format(where, "is missing" if exc.errno == errno.ENOENT
                                           else "is a symbolic link")) from exc
        raise error_from_os(exc, "cannot open config.json") from exc
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _bad("config.json", "{} is not a regular file".format(where))
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _bad("config.json", "{} is larger than {} bytes: is it really an OCI "
                   "config?".format(where, max_bytes))
    try:
        config = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise _bad("config.json", "{} is not valid JSON: {}".format(where, exc)) from exc
    if not isinstance(config, dict):
        raise _bad("config.json", "{} must hold a JSON object, not {}".format(
            where, _kind(config)))
    return config


def build_plan(config: Dict[str, Any], bundle: str, name: str,
               machine: Optional[str] = None) -> Dict[str, Any]:
    """Validate ``config`` and resolve it into the plan (all but the keys vzslave adds).

    ``machine`` (uname -m) is what seccomp filters are compiled for: this node's own
    unless given.
    """
    validate_name("container", name)
    version = config.get("ociVersion")
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise _bad("ociVersion", "ociVersion must be a 1.x runtime-spec version, not {}; "
                   "vz reads runtime-spec 1.0 to 1.2".format(json.dumps(version)))
    process = _object(config.get("process"), "process")
    linux = _get(config, "linux", dict, "linux", {})
    _refuse_unsupported(config, process, linux)
    bundle_dir = os.path.realpath(bundle)
    root = _object(config.get("root"), "root")
    warnings: List[str] = []
    namespaces = _namespaces(linux)
    devices = _devices(linux)
    _check_resources(linux, devices)
    _check_cgroups_path(linux)
    return {
        "version": 1, "name": name, "bundle": bundle_dir,
        "rootfs": _rootfs(_get(root, "path", str, "root.path", ""), bundle_dir),
        "readonly": _get(root, "readonly", bool, "root.readonly", False),
        "namespaces": namespaces,
        "hostname": _uts_name(config, "hostname", namespaces),
        "domainname": _uts_name(config, "domainname", namespaces),
        "process": _process(process, warnings),
        "mounts": _mounts(config, bundle_dir, warnings),
        "devices": devices,
        "links": [list(link) for link in LINKS],
        "masked_paths": _paths(linux, "maskedPaths"),
        "readonly_paths": _paths(linux, "readonlyPaths"),
        "rootfs_propagation": _propagation(linux),
        "seccomp": _seccomp(linux, machine or os.uname().machine, warnings),
        "sysctl": _sysctls(linux, namespaces),
        "warnings": warnings,
        # How the app enters its rootfs; plans.py turns it into "chroot" on nodes
        # that cannot pivot_root (with a warning, and without CAP_SYS_CHROOT).
        "enter": "pivot_root",
    }


def _refuse_unsupported(config: Dict[str, Any], process: Dict[str, Any],
                        linux: Dict[str, Any]) -> None:
    sections = {"process": process, "linux": linux}
    for section, key, why in _UNSUPPORTED:
        if not _empty(sections[section].get(key)):
            field = "{}.{}".format(section, key)
            raise _bad(field, "{} is set, but the chroot runner does not {}: {}".format(
                field, why, _WAY_OUT))
    hooks = _get(config, "hooks", dict, "hooks", {})
    for key in sorted(hooks):
        if not _empty(hooks[key]):
            raise _bad("hooks." + key, "hooks.{} is set, but the chroot runner does not run "
                       "hooks: {}".format(key, _WAY_OUT))


def _rootfs(path: str, bundle_dir: str) -> str:
    if not path:
        raise _bad("root.path", "root.path is missing: name the bundle's rootfs directory "
                   "(usually \"rootfs\")")
    rootfs = os.path.realpath(os.path.join(bundle_dir, path))
    inside = os.path.relpath(rootfs, bundle_dir)
    if inside == ".." or inside.startswith("../"):  # "." is the bundle dir: the spec allows it
        raise _bad("root.path", "root.path {} resolves to {}, which is not inside the bundle "
                   "{}: keep the rootfs in the bundle (usually root.path \"rootfs\")".format(
                       json.dumps(path), rootfs, bundle_dir))
    if not os.path.isdir(rootfs):
        raise _bad("root.path", "root.path {} is not a directory in the bundle: unpack a "
                   "rootfs there".format(json.dumps(path)))
    return rootfs


def _namespaces(linux: Dict[str, Any]) -> List[Dict[str, Any]]:
    result: List[Dict[str, Any]] = []
    for index, item in enumerate(_get(linux, "namespaces", list, "linux.namespaces", [])):
        field = "linux.namespaces[{}]".format(index)
        kind = _object(item, field).get("type")
        if isinstance(kind, str) and kind in _REFUSED_NAMESPACES:
            raise _bad(field, "{} asks for {}: remove the entry, or {}".format(
                field, _REFUSED_NAMESPACES[kind], _RUNC))
        if not isinstance(kind, str) or kind not in CLONE_FLAGS:
            raise _bad(field, "{} has an unknown type {}: use mount, uts, ipc, network, "
                       "cgroup or pid".format(field, json.dumps(kind)))
        if any(ns["type"] == kind for ns in result):
            raise _bad(field, "{} repeats the {} namespace: list each type once".format(
                field, kind))
        path = item.get("path")
        if path:
            path = _absolute(path, field + ".path", dotdot=True)
            _check_namespace_file(path, kind, field + ".path")
        result.append({"type": kind, "flag": CLONE_FLAGS[kind], "path": path or None,
                       "field": field})
    # Joining or making the pid namespace last: it only applies to children, and the
    # other setns calls must still see this process's own namespaces.
    return sorted(result, key=lambda ns: ns["type"] == "pid")


def _check_namespace_file(path: str, kind: str, field: str) -> None:
    """Refuse ``path`` unless it opens, and is a ``kind`` namespace where the kernel says.

    NS_GET_NSTYPE (Linux 4.11+) tells the type; where it cannot, setns(2) will.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _bad(field, "{} {} cannot be opened ({}): name a {} namespace, such as "
                   "/proc/PID/ns/{}".format(field, path, exc.strerror, kind,
                                           _NSFS_NAMES[kind])) from exc
    try:
        actual = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        return
    finally:
        os.close(fd)
    if actual != CLONE_FLAGS[kind]:
        names = {flag: name for name, flag in CLONE_FLAGS.items()}
        raise _bad(field, "{} {} is {}, but the entry's type is {}: name a namespace of "
                   "that type, such as /proc/PID/ns/{}".format(
                       field, path, "a namespace of type {}".format(names[actual])
                       if actual in names else "not a namespace", kind, _NSFS_NAMES[kind]))


def _uts_name(config: Dict[str, Any], key: str, namespaces: List[Dict[str, Any]]) -> Any:
    value = _get(config, key, str, key)
    if value and not any(ns["type"] == "uts" for ns in namespaces):
        raise _bad(key, "{} is set, but a {} needs a uts namespace: add {{\"type\": \"uts\"}} "
                   "to linux.namespaces, or remove {}".format(key, key, key))
    return value or None


def _process(process: Dict[str, Any], warnings: List[str]) -> Dict[str, Any]:
    args = _strings(process, "args", "process.args")
    if not args:
        raise _bad("process.args", "process.args is missing or empty: name the program to run")
    if _get(process, "terminal", bool, "process.terminal", False):
        warnings.append("process.terminal is true, but a container under init has no "
                        "terminal: its stdin is /dev/null and its output goes to the log")
    user = _get(process, "user", dict, "process.user", {})
    umask = user.get("umask")
    oom = process.get("oomScoreAdj")
    env = _strings(process, "env", "process.env") if "env" in process else list(DEFAULT_ENV)
    for index, entry in enumerate(env):
        if "=" not in entry:
            raise _bad("process.env[{}]".format(index), "process.env[{}] must be NAME=VALUE, "
                       "not {}".format(index, json.dumps(entry)))
    return {
        "args": args, "env": env,
        "cwd": _absolute(process.get("cwd"), "process.cwd", dotdot=True),
        "uid": _ranged(user.get("uid", 0), "process.user.uid", 0, _UINT32),
        "gid": _ranged(user.get("gid", 0), "process.user.gid", 0, _UINT32),
        "additional_gids": [
            _ranged(gid, "process.user.additionalGids[{}]".format(index), 0, _UINT32)
            for index, gid in enumerate(_get(user, "additionalGids", list,
                                             "process.user.additionalGids", []))],
        "umask": None if umask is None else _ranged(umask, "process.user.umask", 0, 0o777),
        "rlimits": _rlimits(process),
        "no_new_privileges": _get(process, "noNewPrivileges", bool,
                                  "process.noNewPrivileges", False),
        "capabilities": _capabilities(process, _ranged(user.get("uid", 0), "process.user.uid",
                                                       0, _UINT32)),
        "oom_score_adj": None if oom is None else _ranged(oom, "process.oomScoreAdj", -1000, 1000),
    }


def _rlimits(process: Dict[str, Any]) -> List[List[int]]:
    result: List[List[int]] = []
    for index, item in enumerate(_get(process, "rlimits", list, "process.rlimits", [])):
        field = "process.rlimits[{}]".format(index)
        kind = _object(item, field).get("type")
        if not isinstance(kind, str) or kind not in RLIMITS:
            raise _bad(field + ".type", "{}.type {} is not a Linux rlimit (RLIMIT_CPU ... "
                       "RLIMIT_RTTIME): fix or remove it".format(field, json.dumps(kind)))
        if any(limit[0] == RLIMITS[kind] for limit in result):
            raise _bad(field + ".type", "{}.type repeats {}: set each rlimit once".format(
                field, kind))
        soft = _ranged(item.get("soft"), field + ".soft", 0, RLIM_INFINITY)
        hard = _ranged(item.get("hard"), field + ".hard", 0, RLIM_INFINITY)
        if soft > hard:
            raise _bad(field, "{} ({}) has soft {} above hard {}: the kernel refuses "
                       "that".format(field, kind, soft, hard))
        result.append([RLIMITS[kind]] + [-1 if v == RLIM_INFINITY else v for v in (soft, hard)])
    return result


def _capabilities(process: Dict[str, Any], uid: int) -> Dict[str, List[int]]:
    caps = _get(process, "capabilities", dict, "process.capabilities")
    if caps is None:
        # Never "leave them as they are": that would be all of root's.
        numbers = [CAPABILITIES[name] for name in DEFAULT_CAPABILITIES]
        own = numbers if uid == 0 else []
        return {"bounding": numbers, "effective": own, "inheritable": [], "permitted": own,
                "ambient": []}
    result: Dict[str, List[int]] = {}
    for key in CAPABILITY_SETS:
        field = "process.capabilities." + key
        numbers = []
        for index, cap in enumerate(_strings(caps, key, field)):
            if cap not in CAPABILITIES:
                raise _bad("{}[{}]".format(field, index), "{}[{}] is {}, not a Linux "
                           "capability (CAP_CHOWN ... CAP_CHECKPOINT_RESTORE): fix or remove "
                           "it".format(field, index, json.dumps(cap)))
            if CAPABILITIES[cap] not in numbers:
                numbers.append(CAPABILITIES[cap])
        result[key] = numbers
    return result


def _mounts(config: Dict[str, Any], bundle_dir: str,
            warnings: List[str]) -> List[Dict[str, Any]]:
    result: List[Dict[str, Any]] = []
    for index, item in enumerate(_get(config, "mounts", list, "mounts", []) or DEFAULT_MOUNTS):
        field = "mounts[{}]".format(index)
        mount = _mount(_object(item, field), field, bundle_dir, warnings)
        if mount is None:
            warnings.append("{} ({}): cgroup mounts are skipped by the chroot "
                            "runner".format(field, item.get("destination")))
        else:
            result.append(mount)
    return result


def _mount(item: Dict[str, Any], field: str, bundle_dir: str,
           warnings: List[str]) -> Optional[Dict[str, Any]]:
    """One plan mount, or None for a cgroup mount (the runner makes no cgroups)."""
    destination = _absolute(item.get("destination"), field + ".destination")
    kind = _get(item, "type", str, field + ".type", "")
    for key in ("uidMappings", "gidMappings"):
        if not _empty(item.get(key)):
            raise _bad("{}.{}".format(field, key), "{}.{} asks for an idmapped mount, which "
                       "the chroot runner does not make: {}".format(field, key, _WAY_OUT))
    bind, recursive, flags, propagation = kind == "bind", False, 0, 0
    attr_set, attr_clr = 0, 0
    data: List[str] = []
    for option in _strings(item, "options", field + ".options"):
        if option in ("bind", "rbind"):
            bind, recursive = True, recursive or option == "rbind"
        elif option in PROPAGATION:
            propagation = PROPAGATION[option]
        elif option in MOUNT_FLAGS:
            set_bits, bits = MOUNT_FLAGS[option]
            flags = flags | bits if set_bits else flags & ~bits
        elif option in RECURSIVE_OPTIONS:
            if not kernel.has_mount_setattr():
                raise _bad(field + ".options", "{}.options has {}, which needs mount_setattr(2) "
                           "(Linux 5.12+), and this kernel lacks it: use {} (not recursive), "
                           "or remove it".format(field, option, option[1:]))
            on, off = RECURSIVE_OPTIONS[option]
            attr_set, attr_clr = (attr_set & ~off) | on, (attr_clr & ~on) | off
        elif option.split("=")[0] in ("idmap", "ridmap"):
            raise _bad(field + ".options", "{}.options asks for an idmapped mount ({}), which "
                       "the chroot runner does not make: remove the option, or {}".format(
                           field, option, _RUNC))
        else:
            data.append(option)
    if kind in ("cgroup", "cgroup2") and not bind:
        return None
    if bind and data:
        # mount(2) ignores the data of a bind mount. An unknown word (a typo, another
        # runtime's extension) must not silently do nothing; a filesystem's key=value
        # (mode=755, which runtime-tools' own tests put on binds) is only said.
        unknown = [option for option in data if "=" not in option]
        if unknown:
            raise _bad(field + ".options", "{}.options has {}, which is not a mount option "
                       "runc or vz knows: fix or remove it".format(
                           field, json.dumps(unknown[0])))
        warnings.append("{}.options {}: filesystem options mean nothing on a bind mount: "
                        "ignored".format(field, ",".join(data)))
        data = []
    source = _get(item, "source", str, field + ".source", "")
    in_bundle = None
    if bind:
        if not source or "\0" in source:
            raise _bad(field + ".source", "{} is a bind mount without a source: name the "
                       "file or directory to bind".format(field))
        if not source.startswith("/"):
            # Inside the bundle, among the image's own (untrusted) files: the runner walks
            # it without following symlinks, and it may not climb out.
            if ".." in source.split("/"):
                raise _bad(field + ".source", "{}.source {} climbs out of the bundle with "
                           "'..': give a node path as an absolute path".format(
                               field, json.dumps(source)))
            in_bundle = posixpath.normpath(source)
            source = os.path.join(bundle_dir, in_bundle)
        else:
            source = posixpath.normpath(source)
    elif not kind:
        raise _bad(field + ".type", "{} has no type: name the filesystem type, or use "
                   "the bind option".format(field))
    return {"destination": destination, "type": kind or "bind", "source": source or kind,
            "field": field, "in_bundle": in_bundle, "flags": flags, "data": ",".join(data),
            "bind": bind,
            "recursive": recursive,
            # The kernel ignores MS_RDONLY (and every other flag) on the first bind mount(2);
            # a read-only bind needs a second, remounting call.
            "remount_readonly": bind and bool(flags & MS_RDONLY),
            "propagation": propagation,
            # MOUNT_ATTR_* to set and clear on it and every mount below it (rro...).
            "setattr": [attr_set, attr_clr]}


def _devices(linux: Dict[str, Any]) -> List[Dict[str, Any]]:
    devices = collections.OrderedDict(
        (path, {"path": path, "type": "c", "major": major, "minor": minor, "mode": 0o666,
                "uid": 0, "gid": 0}) for path, major, minor in DEFAULT_DEVICES)
    for index, item in enumerate(_get(linux, "devices", list, "linux.devices", [])):
        field = "linux.devices[{}]".format(index)
        path = _absolute(_object(item, field).get("path"), field + ".path")
        if not path.startswith("/dev/"):
            raise _bad(field + ".path", "{}.path must be under /dev, not {}".format(field, path))
        kind = item.get("type")
        if kind not in ("c", "b", "u", "p"):
            raise _bad(field + ".type", "{}.type must be c, b, u or p, not {}".format(
                field, json.dumps(kind)))
        number = 0 if kind == "p" else None  # a fifo has no device number
        devices[path] = {  # the same path replaces a default node in its place
            "path": path, "type": "c" if kind == "u" else kind,
            "major": _ranged(item.get("major", number), field + ".major", 0, 4095),
            "minor": _ranged(item.get("minor", number), field + ".minor", 0, 2 ** 20 - 1),
            "mode": _ranged(item.get("fileMode", 0o666), field + ".fileMode", 0, 0o177777) & 0o7777,
            "uid": _ranged(item.get("uid", 0), field + ".uid", 0, _UINT32),
            "gid": _ranged(item.get("gid", 0), field + ".gid", 0, _UINT32),
        }
    return list(devices.values())


def _check_resources(linux: Dict[str, Any], devices: List[Dict[str, Any]]) -> None:
    resources = _get(linux, "resources", dict, "linux.resources", {})
    for key in sorted(resources):
        if key != "devices" and not _empty(resources[key]):
            field = "linux.resources." + key
            raise _bad(field, "{} is set, but cgroup limits are not applied by the chroot "
                       "runner: {}".format(field, _WAY_OUT))
    made = [[d["type"], d["major"], d["minor"]] for d in devices] + _PTY_RULES
    for index, rule in enumerate(_get(resources, "devices", list, "linux.resources.devices", [])):
        field = "linux.resources.devices[{}]".format(index)
        if not _get(_object(rule, field), "allow", bool, field + ".allow", False):
            continue  # nothing but the nodes the runner makes is in /dev: a deny holds
        if [rule.get("type"), rule.get("major"), rule.get("minor")] not in made:
            raise _bad(field, "{} allows devices beyond the nodes the chroot runner makes, "
                       "and it applies no device cgroup: allow only those nodes (add others "
                       "to linux.devices), or {}".format(field, _RUNC))


def _check_cgroups_path(linux: Dict[str, Any]) -> None:
    """Refused after linux.resources: a cgroup limit is the more telling field to name."""
    if not _empty(linux.get("cgroupsPath")):
        raise _bad("linux.cgroupsPath", "linux.cgroupsPath is set, but the chroot runner does "
                   "not put containers in cgroups: {}".format(_WAY_OUT))


# The sysctls the kernel keeps per IPC namespace, besides fs.mqueue.* (runc's list).
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _sysctls(linux: Dict[str, Any], namespaces: List[Dict[str, Any]]) -> List[List[str]]:
    """linux.sysctl as [path under /proc/sys, value] pairs, refused as runc refuses them:
    a sysctl outside a namespace of the container's own would change the host."""
    kinds = {ns["type"] for ns in namespaces}
    result: List[List[str]] = []
    sysctl = _get(linux, "sysctl", dict, "linux.sysctl", {})
    for key in sorted(sysctl):
        field = "linux.sysctl." + key
        value = sysctl[key]
        if not isinstance(value, str) or "\0" in value:
            raise _bad(field, "{} must be a string, not {}".format(field, json.dumps(value)))
        path = key.replace(".", "/")
        if "\0" in key or any(part in ("", ".", "..") for part in path.split("/")):
            raise _bad(field, "{} is not a sysctl name: write it as in sysctl(8), e.g. "
                       "net.ipv4.ip_forward".format(field))
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            needed = "ipc"
        elif key.startswith("net."):
            needed = "network"
        elif key == "kernel.domainname":
            needed = "uts"
        elif key == "kernel.hostname":
            raise _bad(field, "{} is set: use the hostname field instead".format(field))
        else:
            raise _bad(field, "{} is not in a separate kernel namespace: setting it would "
                       "change the host; remove it".format(field))
        if needed not in kinds:
            raise _bad(field, "{} would change the host's: it needs the container's own {} "
                       "namespace; add {{\"type\": \"{}\"}} to linux.namespaces, or remove "
                       "it".format(field, needed, needed))
        result.append([path, value])
    return result


def _paths(linux: Dict[str, Any], key: str) -> List[str]:
    field = "linux." + key
    return [_absolute(path, "{}[{}]".format(field, index))
            for index, path in enumerate(_strings(linux, key, field))]


def _propagation(linux: Dict[str, Any]) -> int:
    value = _get(linux, "rootfsPropagation", str, "linux.rootfsPropagation", "")
    if value and value not in PROPAGATION:
        raise _bad("linux.rootfsPropagation", "linux.rootfsPropagation must be one of {}, "
                   "not {}".format(", ".join(PROPAGATION), json.dumps(value)))
    return PROPAGATION.get(value, 0)


def _seccomp(linux: Dict[str, Any], machine: str,
             warnings: List[str]) -> Optional[Dict[str, Any]]:
    """The compiled filter as the runner installs it, or None without one."""
    section = linux.get("seccomp")
    if section is None:
        return None
    from vzslave.seccomp import compile_filter  # its tables load only for bundles with one
    made = compile_filter(section, machine, 64 if sys.maxsize > 2 ** 32 else 32)
    if made is None:
        return None
    warnings.extend(made.warnings)
    return {"program": made.program, "flags": made.flags,
            "optional_flags": made.optional_flags, "syscall": made.syscall}
