"""Recording fakes of os and vzslave.linux for the runner's unit tests, and the plan
they run: the runner's steps are checked call by call, nothing is mounted or exec'd."""

import os
import resource

from vzslave import linux

NAME = "app"


def make_plan(root, **process):
    """A plan as vzslave/oci.py + containers.py would write it, rooted in ``root``."""
    rootfs = root / "bundle" / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)
    state = root / "containers" / NAME
    state.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    plan = {
        "version": 1, "name": NAME, "bundle": str(rootfs.parent), "rootfs": str(rootfs),
        "readonly": False, "namespaces": [], "hostname": None, "domainname": None,
        "mounts": [mount("/proc", "proc")], "devices": [], "links": [],
        "masked_paths": [], "readonly_paths": [], "rootfs_propagation": 0,
        "process": dict({
            "args": ["app", "-f"], "env": ["PATH=/usr/bin:/bin", "HOME=/"], "cwd": "/srv",
            "uid": 4242, "gid": 4243, "additional_gids": [7], "umask": 0o027,
            "rlimits": [[resource.RLIMIT_NOFILE, 512, 1024]], "no_new_privileges": True,
            "capabilities": {"bounding": [0, 1], "effective": [0], "permitted": [0, 1],
                             "inheritable": [0], "ambient": [0]},
            "oom_score_adj": None}, **process),
        "warnings": ["process.terminal is true: ignored"],
        "runtime": "builtin", "runtime_path": None, "state_dir": str(state),
        "log": {"path": str(root / "logs" / (NAME + ".log")), "max_bytes": 1 << 20,
                "keep": 2, "syslog": False},
        "backoff": {"initial": 1.0, "max": 60.0, "stable": 30.0},
    }
    return plan


def mount(dest, kind, source=None, flags=0, data="", bind=False, recursive=False, ro=False):
    return {"destination": dest, "type": kind, "source": source or kind, "flags": flags,
            "data": data, "bind": bind, "recursive": recursive, "remount_readonly": ro,
            "propagation": 0}


def save(root, plan):
    import marshal
    with open(os.path.join(str(root), "containers", NAME, "plan.marshal"), "wb") as out:
        marshal.dump(plan, out)


class Exited(BaseException):
    """os._exit in a fake: ends main() without ending pytest."""


class Execd(BaseException):
    """A successful exec in a fake."""


class FakeOs(object):
    """os, with the calls that change the process recorded instead of made."""

    def __init__(self, calls, exec_error=None, fork_pid=4321):
        self.calls = calls
        self.exec_error = exec_error
        self.fork_pid = fork_pid

    def __getattr__(self, name):
        return getattr(os, name)

    def _record(self, *call):
        self.calls.append(call)

    def chroot(self, path):
        self._record("chroot", path)

    def chdir(self, path):
        self._record("chdir", path)

    def fchdir(self, fd):
        self._record("fchdir")

    def setgroups(self, groups):
        self._record("setgroups", groups)

    def setgid(self, gid):
        self._record("setgid", gid)

    def setuid(self, uid):
        self._record("setuid", uid)

    def umask(self, mask):
        self._record("umask", mask)
        return 0o022

    def setsid(self):
        self._record("setsid")

    def dup2(self, fd, fd2):
        self._record("dup2", fd2)

    def closerange(self, low, high):
        self._record("closerange", low)

    def fork(self):
        self._record("fork")
        return self.fork_pid

    def waitpid(self, pid, options):
        self._record("waitpid", pid)
        return pid, 0

    def execv(self, path, args):
        self._record("execv", path, args)
        raise Execd()

    def execve(self, path, args, env):
        self._record("execve", path, args, env)
        if self.exec_error is not None:
            raise self.exec_error
        raise Execd()

    def _exit(self, code):
        self._record("_exit", code)
        raise Exited(code)


class FakeLinux(object):
    """vzslave.linux, recording each call."""

    def __init__(self, calls, mount_error=None, last_cap=3):
        self.calls = calls
        self.mount_error = mount_error
        self.last_cap = last_cap
        self.seccomp_error = None
        self.prctl_errors = {}  # (option, arg2) -> the OSError that prctl raises
        self.capset_error = None
        self.permitted = (1 << 64) - 1  # what capget reports

    def mount_setattr(self, fd, attr_set, attr_clr):
        self.calls.append(("mount_setattr", attr_set, attr_clr))

    def __getattr__(self, name):
        return getattr(linux, name)  # the constants

    def mount(self, source, target, fstype, flags, data=None):
        self.calls.append(("mount", source, fstype, flags))
        if self.mount_error is not None and fstype is not None:  # a filesystem, not a bind
            raise self.mount_error

    def umount2(self, target, flags=0):
        self.calls.append(("umount2", target, flags))

    def unshare(self, flags):
        self.calls.append(("unshare", flags))

    def pivot_root(self, new_root, put_old):
        self.calls.append(("pivot_root", new_root, put_old))

    def setns(self, fd, flag):
        self.calls.append(("setns", flag))

    def sethostname(self, name):
        self.calls.append(("sethostname", name))

    def setdomainname(self, name):
        self.calls.append(("setdomainname", name))

    def loopback_up(self):
        self.calls.append(("loopback_up",))

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0):
        self.calls.append(("prctl", option, arg2) + ((arg3,) if arg3 else ()))
        if (option, arg2) in self.prctl_errors:
            raise self.prctl_errors[option, arg2]
        return 0

    def capset(self, effective, permitted, inheritable):
        self.calls.append(("capset", effective, permitted, inheritable))
        if self.capset_error is not None:
            raise self.capset_error

    def capget(self, pid=0):
        return 0, self.permitted, 0

    def cap_last_cap(self):
        return self.last_cap

    def preload(self):
        self.calls.append(("preload",))

    def seccomp_filter(self, program, syscall, flags=0, optional_flags=0):
        self.calls.append(("seccomp_filter", program, syscall, flags, optional_flags))
        if self.seccomp_error is not None:
            raise self.seccomp_error


def rootfs_bind(plan):
    """The first mount of every mount_plan: the rootfs onto itself (pivot_root needs it)."""
    return ("mount", plan["rootfs"], None, linux.MS_BIND | linux.MS_REC)
