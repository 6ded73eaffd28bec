"""A vz state root with one container on a busybox rootfs, and the runner started the
way init starts it: for the integration tests of the runner (as root)."""

import marshal
import os
import shutil
import signal
import subprocess
import sys

from vzslave import linux, oci
from vzslave.runio import read_run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "id", "pwd", "env", "cat", "ls", "ps", "hostname", "ip", "grep", "touch",
           "sleep", "true", "kill", "echo")
NAME = "box"


def mount(dest, kind, source, flags, data=""):
    return {"destination": dest, "type": kind, "source": source, "flags": flags,
            "data": data, "bind": False, "recursive": False, "remount_readonly": False,
            "propagation": 0}


NOSUID, NODEV, NOEXEC = linux.MS_NOSUID, linux.MS_NODEV, linux.MS_NOEXEC
# As vzslave/oci.py resolves the runc spec's default mounts.
DEFAULT_MOUNTS = [
    mount("/proc", "proc", "proc", NOSUID | NOEXEC | NODEV),
    mount("/dev", "tmpfs", "tmpfs", NOSUID | linux.MS_STRICTATIME, "mode=755,size=65536k"),
    mount("/dev/pts", "devpts", "devpts", NOSUID | NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    mount("/dev/shm", "tmpfs", "shm", NOSUID | NOEXEC | NODEV, "mode=1777,size=65536k"),
    mount("/dev/mqueue", "mqueue", "mqueue", NOSUID | NOEXEC | NODEV),
    mount("/sys", "sysfs", "sysfs", NOSUID | NOEXEC | NODEV | linux.MS_RDONLY),
]
DEVICES = [{"path": path, "type": "c", "major": major, "minor": minor, "mode": 0o666,
            "uid": 0, "gid": 0}
           for path, major, minor in (("/dev/null", 1, 3), ("/dev/zero", 1, 5),
                                      ("/dev/full", 1, 7), ("/dev/random", 1, 8),
                                      ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))]
LINKS = [["/dev/fd", "/proc/self/fd"], ["/dev/stdin", "/proc/self/fd/0"],
         ["/dev/stdout", "/proc/self/fd/1"], ["/dev/stderr", "/proc/self/fd/2"],
         ["/dev/ptmx", "pts/ptmx"]]


class Box(object):
    """A vz state root holding one container with a busybox rootfs."""

    def __init__(self, base):
        self.root = os.path.join(base, "vz")
        self.rootfs = os.path.join(self.root, "bundles", NAME, "rootfs")
        self.state = os.path.join(self.root, "containers", NAME)
        self.log = os.path.join(self.root, "logs", NAME + ".log")
        for directory in (self.rootfs + "/bin", self.rootfs + "/tmp", self.state,
                          os.path.dirname(self.log)):
            os.makedirs(directory)
        os.chmod(self.rootfs + "/tmp", 0o1777)
        shutil.copy(BUSYBOX, self.rootfs + "/bin/busybox")
        for applet in APPLETS:
            os.symlink("busybox", self.rootfs + "/bin/" + applet)
        self.plan = None
        self.groups = []

    def make_plan(self, script, **process):
        """A plan running ``sh -c script``, with default mounts and no namespaces."""
        self.plan = {
            "version": 1, "name": NAME, "bundle": os.path.dirname(self.rootfs),
            "rootfs": self.rootfs, "readonly": False, "namespaces": [],
            "hostname": None, "domainname": None, "mounts": list(DEFAULT_MOUNTS),
            "devices": DEVICES, "links": LINKS,
            "masked_paths": ["/proc/kcore", "/proc/cpuinfo", "/sys/firmware"],
            "readonly_paths": ["/proc/sys", "/proc/sysrq-trigger"], "rootfs_propagation": 0,
            "process": dict({
                "args": ["sh", "-c", script], "env": ["PATH=/bin", "HOME=/"], "cwd": "/",
                "uid": 0, "gid": 0, "additional_gids": [], "umask": None, "rlimits": [],
                "no_new_privileges": False, "capabilities": None, "oom_score_adj": None},
                **process),
            "warnings": [], "runtime": "builtin", "runtime_path": None,
            "state_dir": self.state,
            "log": {"path": self.log, "max_bytes": 1 << 20, "keep": 2, "syslog": False},
            "backoff": {"initial": 1.0, "max": 60.0, "stable": 30.0},
        }
        return self.plan

    def with_namespaces(self, *kinds):
        flags = {"mount": linux.CLONE_NEWNS, "uts": linux.CLONE_NEWUTS,
                 "ipc": linux.CLONE_NEWIPC, "network": linux.CLONE_NEWNET,
                 "pid": linux.CLONE_NEWPID}
        self.plan["namespaces"] = [{"type": kind, "flag": flags[kind], "path": None}
                                   for kind in kinds]

    def start(self, *python_options, python=sys.executable, pass_fds=()):
        """Start the runner as init would; returns the Popen."""
        with open(os.path.join(self.state, "plan.marshal"), "wb") as out:
            marshal.dump(self.plan, out)
        code = ("import sys; sys.path.insert(0, {!r}); from vzslave.runner import main; "
                "main(sys.argv[1:], {!r})".format(ROOT, self.root))
        proc = subprocess.Popen([python, "-IS"] + list(python_options)
                                + ["-c", code, NAME], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=pass_fds)
        self.groups.append(proc.pid)  # setsid: the runner's pid is its process group
        return proc

    def run(self, *python_options, timeout=30, python=sys.executable, pass_fds=()):
        """Run the runner to the app's end; returns (exit status, runner's own output)."""
        proc = self.start(*python_options, python=python, pass_fds=pass_fds)
        try:
            out = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return proc.returncode, out.decode()

    def kill(self):
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass

    def read_log(self):
        with open(self.log) as source:
            return source.read()

    def record(self):
        return read_run_record(os.path.join(self.state, "run"))


# What a config without a capabilities section gets, as numbers, for a root app.
DEFAULT_CAPS = [oci.CAPABILITIES[name] for name in oci.DEFAULT_CAPABILITIES]
ROOT_CAPS = {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS,
             "inheritable": [], "ambient": []}
