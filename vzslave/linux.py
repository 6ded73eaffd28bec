"""Thin seams over the Linux system calls Python lacks: mount, unshare, setns, prctl...

Each function raises ``OSError(errno, strerror, target)`` on failure. Importing this
module costs nothing: the C library is reached on the first call (or ``preload``),
through ``_ctypes`` directly (~0.5 ms to import) rather than ``ctypes`` (~3.5 ms, of
a ~10 ms runner), with the few ctypes types it needs built here (errno included).

Standard library only, Python 3.6+.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
# The flags a bind remount must repeat: the kernel refuses to clear them silently
# (statvfs reports them with the same bit values as MS_*).
MS_LOCKED = (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SYNCHRONOUS | MS_MANDLOCK | MS_NOATIME
             | MS_NODIRATIME | MS_RELATIME)

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# unshare(2) / setns(2) namespace flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_IS_SET = 1

CAPABILITY_VERSION_3 = 0x20080522
# capabilities(7) by number, without the CAP_ prefix (vzslave.oci maps names to them).
CAPABILITY_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")

# mount_setattr(2), Linux 5.12+: one number on every architecture (the unified table).
SYS_MOUNT_SETATTR = 442
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70  # the atime field: RELATIME (0), NOATIME or STRICTATIME
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# pivot_root(2) has no C library wrapper: it is called through syscall(2).
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "i386": 217, "i486": 217, "i586": 217,
                   "i686": 217, "armv7l": 218, "armv6l": 218, "ppc64le": 203,
                   "s390x": 217, "riscv64": 41, "loongarch64": 41}

# seccomp(2) / prctl(2) filter installation
SECCOMP_SET_MODE_FILTER = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
_ENOSYS, _EINVAL = 38, 22  # without importing errno on the runner's path

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 1

_handle = 0
_functions: "Dict[str, Any]" = {}
_types: "Any" = None  # (function type, char array type), made by preload()


def preload() -> None:
    """Reach the C library now: after chroot the _ctypes extension cannot be imported."""
    global _types, _handle
    if _types is not None:
        return
    import _ctypes
    ct: "Any" = _ctypes
    # What ctypes/__init__.py builds, without its ~3 ms import: a function pointer type
    # that saves errno for get_errno(), returning a C int.
    c_int = type("c_int", (ct._SimpleCData,), {"_type_": "i"})
    c_char = type("c_char", (ct._SimpleCData,), {"_type_": "c"})
    function = type("Function", (ct.CFuncPtr,), {
        "_flags_": ct.FUNCFLAG_CDECL | ct.FUNCFLAG_USE_ERRNO, "_restype_": c_int})
    # None: the program itself, whose global scope holds the C library's symbols.
    _handle = ct.dlopen(None, 2)  # RTLD_NOW
    _types = (function, lambda size: type("Buffer", (ct.Array,),
                                           {"_type_": c_char, "_length_": size})())


def _call(name: str, args: "Tuple[Any, ...]", target: "Optional[str]" = None) -> int:
    """Call the C function ``name``; return its result, or raise OSError if it is -1."""
    function = _functions.get(name)
    if function is None:
        preload()
        import _ctypes
        function = _functions[name] = _types[0](_ctypes.dlsym(_handle, name))
    result: int = function(*(os.fsencode(a) if isinstance(a, str) else a for a in args))
    if result == -1:
        import _ctypes
        number = _ctypes.get_errno()
        raise OSError(number, os.strerror(number), target)
    return result


def mount(source: "Optional[str]", target: str, fstype: "Optional[str]", flags: int,
          data: "Optional[str]" = None) -> None:
    """mount(2); ``target`` is usually "/proc/self/fd/N" of a safely opened directory."""
    _call("mount", (source, target, fstype, flags, data or None), target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2); MNT_DETACH for a lazy unmount of a busy mount."""
    _call("umount2", (target, flags), target)


def unshare(flags: int) -> None:
    """unshare(2): move this process into new namespaces (CLONE_NEW* flags)."""
    _call("unshare", (flags,), "unshare {:#x}".format(flags))


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make ``new_root`` the root of this mount namespace."""
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, "pivot_root: unknown system call number on {}".format(
            os.uname().machine), new_root)  # ENOSYS: the caller falls back as if absent
    _call("syscall", (number, new_root, put_old), new_root)


def setns(fd: int, nstype: int) -> None:
    """setns(2): join the namespace open on ``fd``."""
    _call("setns", (fd, nstype), "/proc/self/fd/{}".format(fd))


def sethostname(name: str) -> None:
    """sethostname(2), in the current UTS namespace."""
    raw = os.fsencode(name)
    _call("sethostname", (raw, len(raw)), name)


def setdomainname(name: str) -> None:
    """setdomainname(2), in the current UTS namespace."""
    raw = os.fsencode(name)
    _call("setdomainname", (raw, len(raw)), name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); returns its (non-negative) result."""
    return _call("prctl", (option, arg2, arg3, arg4, arg5), "prctl {}".format(option))


def _native(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, sys.byteorder)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) (version 3) of this thread; each set is a 64-bit mask of cap numbers."""
    header = _native(CAPABILITY_VERSION_3) + _native(0)
    low = _native(effective) + _native(permitted) + _native(inheritable)
    high = _native(effective >> 32) + _native(permitted >> 32) + _native(inheritable >> 32)
    data = low + high
    _call("capset", (header, data), "capset")


def cap_name(number: int) -> str:
    """CAP_NAME of capability ``number`` (its number for one this table lacks)."""
    if 0 <= number < len(CAPABILITY_NAMES):
        return "CAP_" + CAPABILITY_NAMES[number]
    return "capability {}".format(number)


def capget(pid: int = 0) -> "Tuple[int, int, int]":
    """capget(2): the (effective, permitted, inheritable) masks of ``pid`` (0: self)."""
    preload()
    data = _types[1](24)
    _call("capget", (_native(CAPABILITY_VERSION_3) + _native(pid), data), "capget")
    words = [int.from_bytes(data.raw[i:i + 4], sys.byteorder) for i in range(0, 24, 4)]
    return (words[0] | words[3] << 32, words[1] | words[4] << 32, words[2] | words[5] << 32)


def seccomp_filter(program: bytes, syscall: int, flags: int = 0,
                   optional_flags: int = 0) -> None:
    """Install ``program`` (struct sock_filter[]) for this thread with seccomp(2).

    ``syscall`` is seccomp's number on this arch (glibc has no wrapper). Flags in
    ``optional_flags`` are dropped if the kernel refuses them (EINVAL). Kernels without
    seccomp(2) (ENOSYS, before 3.17) get prctl(PR_SET_SECCOMP), which takes no flags
    but TSYNC's meaning holds for a single-threaded caller.
    """
    preload()
    import _ctypes
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }: the filter
    # must stay alive (in ``buffer``) until the call returns.
    buffer = _types[1](len(program))
    buffer.raw = program
    pointer_size = 8 if sys.maxsize > 2 ** 32 else 4
    fprog = ((len(program) // 8).to_bytes(2, sys.byteorder) + bytes(pointer_size - 2)
             + _ctypes.addressof(buffer).to_bytes(pointer_size, sys.byteorder))
    try:
        _call("syscall", (syscall, SECCOMP_SET_MODE_FILTER, flags | optional_flags, fprog),
              "seccomp")
        return
    except OSError as exc:
        if exc.errno == _EINVAL and optional_flags:
            return seccomp_filter(program, syscall, flags)
        if exc.errno != _ENOSYS or flags & ~SECCOMP_FILTER_FLAG_TSYNC:
            raise
    _call("prctl", (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0), "prctl PR_SET_SECCOMP")


def cap_last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as source:
            return int(source.read())
    except (OSError, ValueError):
        pass
    # Kernels before 3.2 lack the file: probe the bounding set until EINVAL.
    last = 0
    try:
        while last < 63:
            prctl(PR_CAPBSET_READ, last + 1)
            last += 1
    except OSError:
        pass
    return last


def mount_setattr(fd: int, attr_set: int, attr_clr: int) -> None:
    """mount_setattr(2) with AT_RECURSIVE: the mount open at ``fd`` and every one below."""
    attr = b"".join(value.to_bytes(8, sys.byteorder) for value in (attr_set, attr_clr, 0, 0))
    _call("syscall", (SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr,
                      len(attr)), "/proc/self/fd/{}".format(fd))


_has_mount_setattr: "Optional[bool]" = None


def has_mount_setattr() -> bool:
    """Whether the running kernel has mount_setattr(2) (Linux 5.12+); probed once."""
    global _has_mount_setattr
    if _has_mount_setattr is None:
        try:  # no such fd: EBADF (or EINVAL) where the call exists, ENOSYS where not
            _call("syscall", (SYS_MOUNT_SETATTR, -1, b"", 0, None, 0))
            _has_mount_setattr = True
        except OSError as exc:
            _has_mount_setattr = exc.errno != 38  # ENOSYS
    return _has_mount_setattr


def loopback_up() -> None:
    """Bring "lo" up in the current network namespace (the ip link set lo up ioctl)."""
    import fcntl
    # A socket from libc, not the socket module: that import alone costs ~9 ms.
    sock = _call("socket", (2, 2 | 0o2000000, 0), "socket")  # AF_INET, SOCK_DGRAM|CLOEXEC
    try:
        request = b"lo".ljust(40, b"\0")
        flags = int.from_bytes(fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[16:18],
                               sys.byteorder)
        if not flags & _IFF_UP:
            request = request[:16] + (flags | _IFF_UP).to_bytes(2, sys.byteorder)
            fcntl.ioctl(sock, _SIOCSIFFLAGS, request.ljust(40, b"\0"))
    finally:
        os.close(sock)
