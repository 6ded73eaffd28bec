"""The container runner: init runs it at every (re)spawn, and it becomes the app.

Each container's inittab line runs ``ROOT/bin/vzrun NAME``, a launcher that calls
``main``. The runner reads the exec plan (vzslave/oci.py made it at start time), paces
crash loops, points stdio at the log, sets the container up and then *execs* the app,
which takes over the runner's pid: no process of ours stays beside a running container
(except the small monitor that a PID namespace or syslog output needs).

Speed matters, so this module imports almost nothing at the top: no typing (~10 ms),
json, re, socket, signal (enum) or ctypes; ``vzslave.linux`` reaches libc only when a
syscall Python lacks is needed, and the plan is marshal, not JSON.

The run record, ROOT/containers/NAME/run, is ``key value`` lines (``RUN_KEYS``) that
vzslave reads for ``status``; ``read_run_record`` parses it.
"""

import marshal
import os
import sys
import time

from vzslave import linux

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any, Dict, List, Optional, Set, Tuple
    Plan = Dict[str, Any]
else:
    import _signal  # builtin and already loaded; "signal" would import enum

RUN_KEYS = ("pid", "state", "started", "next_start", "streak", "spawns", "last_run",
            "last_exit", "last_error", "supervisor", "recent")
IDLE = 60.0  # seconds a runner that cannot make progress sleeps, so init does not spin
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RELAYED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


class RunnerError(Exception):
    """A step of the runner failed; ``step`` names it, ``message`` says why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__("{}: {}".format(step, message))
        self.step = step
        self.message = message


class Spawn(object):
    """One spawn of a container: its plan, its run record, where failures are written."""

    def __init__(self, name: str, plan: "Plan") -> None:
        self.name = name
        self.plan = plan
        self.record_path = os.path.join(plan["state_dir"], "run")
        self.record: "Dict[str, str]" = {}
        self.record_fd = -1  # the record, kept open for writing after chroot and setuid
        self.monitored = False  # a monitor parent owns the record's pid
        self.last_cap = -1

    def say(self, text: str) -> None:
        """Write one diagnostic line to the log (fd 2)."""
        line = "vz: {}: {}\n".format(self.name, text.replace("\n", " "))
        _write_all(2, line.encode("utf-8", "replace"))


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # diagnostics are best effort: nowhere left to report to


def main(argv: "List[str]", root: str) -> None:
    """Set up container ``argv[0]`` as its plan says and exec its app; init's entry point."""
    name = argv[0] if len(argv) == 1 else ""
    if not name or "/" in name or name.startswith("."):
        _write_all(2, b"usage: vzrun NAME\n")
        time.sleep(IDLE)
        sys.exit(2)
    try:
        spawn = Spawn(name, load_plan(root, name))
        pace_restarts(spawn, time.time())
    except Exception as exc:  # no plan, or one too broken to pace retries with
        _note(os.path.join(root, "logs", name + ".log"), "vz: {}: cannot start: {}\n".format(
            name, exc if isinstance(exc, RunnerError) else "plan: {!r}".format(exc)))
        time.sleep(IDLE)
        sys.exit(1)
    step = "log"
    try:
        for label, function in _STEPS:
            step = label
            function(spawn)
    except RunnerError as exc:
        fail(spawn, exc.step, exc.message)
    except OSError as exc:
        fail(spawn, step, _os_message(exc))
    except Exception as exc:  # a plan of the wrong shape: report it, never spin
        fail(spawn, step, "bad plan or runner bug: {!r}".format(exc))


def _os_message(exc: OSError) -> str:
    return "{}{}".format(exc.strerror or exc, " ({})".format(exc.filename)
                         if exc.filename else "")


def _note(path: str, line: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError:
        fd = 2
    _write_all(fd, line.encode("utf-8", "replace"))


def fail(spawn: Spawn, step: str, message: str, line: "Optional[str]" = None) -> None:
    """Report a failed step to the log and the run record, then exit 127 (steps 3-16)."""
    spawn.say(line or "cannot start: {}: {}".format(step, message))
    spawn.record.update(state="failed", last_error=line or "{}: {}".format(step, message))
    if not store_record(spawn):
        time.sleep(IDLE)  # no record, no backoff: pace the retries here instead
    os._exit(127)


def load_plan(root: str, name: str) -> "Plan":
    """Step 1: the exec plan that vzslave wrote at start time."""
    path = os.path.join(root, "containers", name, "plan.marshal")
    try:
        with open(path, "rb") as source:
            plan = marshal.load(source)
    except FileNotFoundError:
        raise RunnerError("plan", "no plan at {}: the container was removed but its inittab "
                          "line remains; start it again or remove the line".format(path)) from None
    except (OSError, ValueError, EOFError, TypeError) as exc:
        raise RunnerError("plan", "cannot read {}: {}".format(path, exc)) from exc
    if not isinstance(plan, dict) or plan.get("version") != 1:
        raise RunnerError("plan", "{} is not a version 1 plan; start the container again "
                          "to rewrite it".format(path))
    return plan


def read_run_record(path: str) -> "Dict[str, str]":
    """The run record at ``path`` as a dict of strings; {} if there is none."""
    try:
        with open(path, "rb") as source:
            text = source.read().decode("utf-8", "replace")
    except OSError:
        return {}
    record = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            record[key] = value
    return record


def render_run_record(record: "Dict[str, str]") -> bytes:
    """The text of a run record: one ``key value`` line per key of RUN_KEYS."""
    return "".join("{} {}\n".format(key, str(record.get(key, "")).replace("\n", " "))
                   for key in RUN_KEYS).encode("utf-8", "replace")


def write_run_record(path: str, record: "Dict[str, str]") -> None:
    """Replace the run record at ``path`` atomically (no fsync: it is rewritten often)."""
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, ".{}.{}".format(base, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, render_run_record(record))
    finally:
        os.close(fd)
    os.rename(tmp, path)


def store_record(spawn: Spawn) -> bool:
    """Write the spawn's record: by path, or through the fd kept open past chroot."""
    try:
        if spawn.record_fd < 0:
            write_run_record(spawn.record_path, spawn.record)
        else:  # after chroot or setuid the state directory is out of reach: rewrite in place
            data = render_run_record(spawn.record)
            os.pwrite(spawn.record_fd, data, 0)
            os.ftruncate(spawn.record_fd, len(data))
        return True
    except OSError:
        return False


def backoff_delay(streak: int, initial: float, maximum: float) -> float:
    """Seconds to wait before a spawn after ``streak`` short runs in a row."""
    return 0.0 if streak <= 0 else min(initial * 2 ** (streak - 1), maximum)


def _int(value: "Optional[str]") -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def pace_restarts(spawn: Spawn, now: float) -> None:
    """Step 2: count short runs in a row and sleep the backoff delay before going on."""
    old = read_run_record(spawn.record_path)
    backoff = spawn.plan["backoff"]
    streak = 0
    record = dict(old)
    if old.get("state") in ("running", "waiting", "failed"):
        try:
            lasted = now - float(old.get("started", ""))
        except ValueError:
            lasted = 0.0
        record["last_run"] = "{:.3f}".format(lasted)
        streak = _int(old.get("streak")) + 1 if lasted < backoff["stable"] else 0
    recent = (old.get("recent", "").split() + ["{:.3f}".format(now)])[-10:]
    record.update(pid=str(os.getpid()), state="running", started="{:.3f}".format(now),
                  next_start="", streak=str(streak), spawns=str(_int(old.get("spawns")) + 1),
                  supervisor=spawn.plan["runtime"], recent=" ".join(recent))
    spawn.record = record
    delay = backoff_delay(streak, backoff["initial"], backoff["max"])
    if delay > 0:
        # The runner stays alive meanwhile, so init does not respawn it: this keeps
        # sysvinit under its rate limit and busybox from restarting every second.
        record.update(state="waiting", next_start="{:.3f}".format(now + delay))
        store_record(spawn)
        time.sleep(delay)
        # A failure before the app runs must count as a short run, not as the wait.
        record.update(next_start="", started="{:.3f}".format(time.time()))


def open_log(spawn: Spawn) -> None:
    """Step 3: rotate the log if too big, put it on fds 1 and 2, close every other fd."""
    log = spawn.plan["log"]
    path = log["path"]
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        size = 0
    if size > log["max_bytes"]:
        from vzslave.logs import rotate
        rotate(path, log["keep"])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # sysvinit leaks its own fds into what it spawns: none may reach the app.
    os.closerange(3, max(os.sysconf("SC_OPEN_MAX"), 1024))
    record = spawn.record
    spawn.say("spawn {} at {} (streak {})".format(
        record["spawns"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), record["streak"]))
    for warning in spawn.plan.get("warnings") or ():
        spawn.say("warning: {}".format(warning))


def start_session(spawn: Spawn) -> None:
    """Step 4: make the container one session and process group, which stop kills."""
    try:
        os.setsid()
    except OSError:
        pass  # EPERM: already a session leader (init did it)


def exec_runtime(spawn: Spawn) -> None:
    """Step 5 (runc or crun only): delete a stale container, then exec ``RUNTIME run``."""
    if spawn.plan["runtime"] not in ("runc", "crun"):
        return
    runtime = spawn.plan["runtime_path"]
    container = "vz-" + spawn.name
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.execv(runtime, [runtime, "delete", "--force", container])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)  # a failed delete only means there was nothing to delete
    record_running(spawn)
    reset_signals()
    try:
        os.execv(runtime, [runtime, "run", "--bundle", spawn.plan["bundle"], container])
    except OSError as exc:
        raise RunnerError("runtime", "cannot exec {}: {}".format(runtime, exc.strerror)) from exc


def enter_namespaces(spawn: Spawn) -> None:
    """Step 6: join (setns) or create (unshare) namespaces; fork the monitor if needed."""
    plan = spawn.plan
    flags = 0
    kinds: "Dict[str, bool]" = {}  # type -> created here (not joined)
    for ns in plan["namespaces"]:
        kinds[ns["type"]] = not ns.get("path")
        if ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, ns["flag"])
            finally:
                os.close(fd)
        elif ns["type"] != "pid":
            flags |= ns["flag"]
    if flags:
        linux.unshare(flags)
    if kinds.get("mount"):
        # Nothing mounted for the container may propagate back to the host.
        linux.mount(None, "/", None, plan.get("rootfs_propagation") or
                    linux.MS_REC | linux.MS_SLAVE)
    if "uts" in kinds:
        if plan.get("hostname") is not None:
            linux.sethostname(plan["hostname"])
        if plan.get("domainname") is not None:
            linux.setdomainname(plan["domainname"])
    if kinds.get("network"):
        linux.loopback_up()
    if kinds.get("pid"):
        linux.unshare(linux.CLONE_NEWPID)
    if "pid" in kinds or plan["log"].get("syslog") or plan.get("monitor"):
        fork_monitor(spawn)


def fork_monitor(spawn: Spawn) -> None:
    """Step 6 (end): fork; the child goes on to step 7, the parent becomes the monitor."""
    syslog = bool(spawn.plan["log"].get("syslog"))
    reader, writer = os.pipe() if syslog else (-1, -1)
    record_running(spawn)  # before the fork: the child may fail (and write) at once
    child = os.fork()
    if child == 0:
        spawn.monitored = True
        # The app must not outlive the monitor, whose pid is all init knows of.
        linux.prctl(linux.PR_SET_PDEATHSIG, _signal.SIGKILL)
        if syslog:
            os.dup2(writer, 1)
            os.dup2(writer, 2)
            os.close(reader)
            os.close(writer)
        return
    if syslog:
        os.close(writer)
    monitor(spawn, child, reader)


def monitor(spawn: Spawn, child: int, reader: int) -> None:
    """The monitor: relay signals to ``child``, pump its output, record how it ended."""
    for name in ("SIGTTOU", "SIGTTIN", "SIGTSTP"):
        _signal.signal(getattr(_signal, name), _signal.SIG_IGN)

    def relay(signum: int, frame: "Any") -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for name in _RELAYED:
        _signal.signal(getattr(_signal, name), relay)
    if reader >= 0:
        from vzslave.logs import LogPump
        log = spawn.plan["log"]
        pump = LogPump(log["path"], log["max_bytes"], log["keep"],
                       syslog_ident="vz/" + spawn.name)
        for data in iter(lambda: os.read(reader, 65536), b""):
            pump.write(data)
        pump.close()
    status = os.waitpid(child, 0)[1]
    if os.WIFSIGNALED(status):
        code, ended = 128 + os.WTERMSIG(status), "signal {}".format(os.WTERMSIG(status))
    else:
        code, ended = os.WEXITSTATUS(status), "exit {}".format(os.WEXITSTATUS(status))
    # The child may have written a failure into the record meanwhile: keep it.
    spawn.record = read_run_record(spawn.record_path) or spawn.record
    spawn.record_fd = -1  # write by path, atomically: the monitor still can
    spawn.record["last_exit"] = ended
    store_record(spawn)
    os._exit(code)


def _has_mount_namespace(plan: "Plan") -> bool:
    return any(ns["type"] == "mount" for ns in plan["namespaces"])


def set_up_mounts(spawn: Spawn) -> None:
    """Step 7: the plan's mounts; skipped when prepared in the host this boot."""
    plan = spawn.plan
    fresh = any(ns["type"] == "mount" and not ns.get("path") for ns in plan["namespaces"])
    if fresh:
        mount_plan(plan, only_missing=False)  # they all vanish with the namespace
    elif _has_mount_namespace(plan):
        mount_plan(plan, only_missing=True)  # a joined namespace may hold them already
    else:
        boot = _read("/proc/sys/kernel/random/boot_id")
        if not boot or _read(_marker(plan)) != boot:
            mount_plan(plan, only_missing=True)  # after a reboot: prepare() is stale
            _write_marker(plan)


def _marker(plan: "Plan") -> str:
    return os.path.join(plan["state_dir"], "mounts")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as source:
            return source.read().strip()
    except OSError:
        return b""


def _write_marker(plan: "Plan") -> None:
    tmp = _marker(plan) + ".tmp"
    with open(tmp, "wb") as out:
        out.write(_read("/proc/sys/kernel/random/boot_id") + b"\n")
    os.rename(tmp, _marker(plan))


def prepare(plan: "Plan") -> None:
    """Mount the plan in the host's mount namespace (at start time) and mark the boot.

    Does nothing for plans with a mount namespace or a runc/crun runtime: their runner
    mounts at every spawn. Raises BadConfigError (mounts made so far are released).
    """
    if plan["runtime"] != "builtin" or _has_mount_namespace(plan):
        return
    try:
        mount_plan(plan, only_missing=True)
        _write_marker(plan)
    except (RunnerError, OSError) as exc:
        release(plan)
        from vzslave.errors import BadConfigError
        message = exc.message if isinstance(exc, RunnerError) else _os_message(exc)
        raise BadConfigError("cannot prepare the mounts of container {!r}: {}".format(
            plan["name"], message), {"step": "mounts"}) from exc


def release(plan: "Plan") -> "List[str]":
    """Unmount everything at or under the rootfs, deepest first; the mounts left over."""
    from vzslave.fs import mounts_under
    rootfs = plan["rootfs"]
    for _ in range(8):
        points = mounts_under(rootfs)
        if not points:
            break
        # Deepest first; of mounts stacked on one point, the last mounted (listed last).
        for point in sorted(reversed(points), key=lambda p: p.count("/"), reverse=True):
            try:
                linux.umount2(point, linux.UMOUNT_NOFOLLOW)
            except OSError:
                try:
                    linux.umount2(point, linux.UMOUNT_NOFOLLOW | linux.MNT_DETACH)
                except OSError:
                    pass
    try:
        os.unlink(_marker(plan))
    except FileNotFoundError:
        pass
    return mounts_under(rootfs)


def mount_plan(plan: "Plan", only_missing: bool) -> None:
    """Make the plan's mounts, device nodes, links, masks and read-only paths.

    With ``only_missing``, skip destinations that are mount points already.
    """
    rootfs = plan["rootfs"]
    mounted: "Set[str]" = set()
    if only_missing:
        from vzslave.fs import mounts_under
        mounted = set(mounts_under(rootfs))
    old_umask = os.umask(0)  # device and directory modes exactly as the plan says
    root = os.open(rootfs, _DIR)
    try:
        fresh_dev = False
        for mount in plan["mounts"]:
            if rootfs.rstrip("/") + mount["destination"] not in mounted:
                _mount_one(root, mount)
                fresh_dev |= mount["destination"] == "/dev" and mount["type"] == "tmpfs"
        if fresh_dev:
            for device in plan["devices"]:
                _make_device(root, device)
            for path, target in plan["links"]:
                parent, name = _open_parent(root, path, "link")
                try:
                    os.symlink(target, name, dir_fd=parent)
                except FileExistsError:
                    pass
                finally:
                    os.close(parent)
        for path in plan["masked_paths"]:
            if rootfs.rstrip("/") + path not in mounted:
                _mask(root, path)
        for path in plan["readonly_paths"]:
            _make_readonly(root, path, rootfs)
        if plan["readonly"]:
            _make_readonly(root, "/", rootfs)
    finally:
        os.close(root)
        os.umask(old_umask)


def _step(fd: int, part: str, create: bool, what: str, dest: str, last: bool) -> int:
    """Open directory ``part`` under ``fd`` without following a symlink; -1 if absent."""
    try:
        return os.open(part, _DIR, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            return -1
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        return _step(fd, part, False, what, dest, last)
    except OSError as exc:
        if not _is_link(fd, part):
            raise RunnerError("mounts", "{} {}: cannot open {} in the image: {}".format(
                what, dest, part, exc.strerror)) from exc
        if last:
            raise RunnerError("mounts", "{} {} is a symlink in the image; refusing".format(
                what, dest)) from exc
        raise RunnerError("mounts", "{} {} goes through {}, a symlink in the image; "
                          "refusing".format(what, dest, part)) from exc


def _is_link(fd: int, name: str) -> bool:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode & 0o170000 == 0o120000
    except OSError:
        return False


def _walk(root: int, parts: "List[str]", create: bool, what: str, dest: str) -> int:
    """The directory ``parts`` below ``root``, component by component; -1 if absent."""
    fd = os.dup(root)
    for index, part in enumerate(parts):
        if part == "..":
            os.close(fd)
            raise RunnerError("mounts", "{} {} contains ..; refusing".format(what, dest))
        try:
            child = _step(fd, part, create, what, dest, index == len(parts) - 1)
        finally:
            os.close(fd)
        if child < 0:
            return -1
        fd = child
    return fd


def _parts(dest: str) -> "List[str]":
    return [part for part in dest.split("/") if part and part != "."]


def _open_parent(root: int, dest: str, what: str, create: bool = True) -> "Tuple[int, str]":
    """The directory holding ``dest`` (-1 if absent) and the last component's name."""
    parts = _parts(dest)
    if not parts:
        raise RunnerError("mounts", "{} {} names the root; refusing".format(what, dest))
    return _walk(root, parts[:-1], create, what, dest), parts[-1]


def _open_target(root: int, dest: str, directory: bool, create: bool = True,
                 what: str = "mount destination") -> int:
    """An fd of ``dest`` in the rootfs to mount onto (O_PATH for files); -1 if absent."""
    if directory:
        return _walk(root, _parts(dest), create, what, dest)
    parent, name = _open_parent(root, dest, what, create)
    if parent < 0:
        return -1
    try:
        if create:
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=parent))
            except FileExistsError:
                pass
        if _is_link(parent, name):
            raise RunnerError("mounts", "{} {} is a symlink in the image; refusing".format(
                what, dest))
        try:
            return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            return -1
    finally:
        os.close(parent)


def _mount_fd(fd: int, dest: str, source: "Optional[str]", fstype: "Optional[str]",
              flags: int, data: "Optional[str]" = None) -> None:
    """mount(2) onto the open ``fd`` (never a path the image could redirect)."""
    target = "/proc/self/fd/{}".format(fd)
    try:
        if flags & linux.MS_REMOUNT:
            # Keep nosuid, nodev... of what is below: a remount must not clear them.
            flags |= os.statvfs(target).f_flag & linux.MS_LOCKED
        linux.mount(source, target, fstype, flags, data)
    except OSError as exc:
        raise RunnerError("mounts", "cannot {} {}: {}".format(
            "remount" if flags & linux.MS_REMOUNT or not source else "mount {} on".format(
                source), dest, exc.strerror)) from exc


def _mount_at(root: int, dest: str, directory: bool, source: "Optional[str]",
              fstype: "Optional[str]", flags: int, data: "Optional[str]" = None,
              create: bool = True) -> None:
    """mount(2) onto ``dest`` in the rootfs, opened anew (so onto the mount on top)."""
    fd = _open_target(root, dest, directory, create)
    if fd >= 0:
        try:
            _mount_fd(fd, dest, source, fstype, flags, data)
        finally:
            os.close(fd)


def _mount_one(root: int, mount: "Dict[str, Any]") -> None:
    dest, flags = mount["destination"], mount["flags"]
    directory = True
    if mount["bind"]:
        directory = os.path.isdir(mount["source"])
        _mount_at(root, dest, directory, mount["source"], None,
                  linux.MS_BIND | (linux.MS_REC if mount["recursive"] else 0))
        extra = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT | linux.MS_RDONLY)
        if mount["remount_readonly"] or extra:
            # Options of a bind mount only take effect through a remount.
            _mount_at(root, dest, directory, None, None, linux.MS_BIND | linux.MS_REMOUNT
                      | extra | (linux.MS_RDONLY if mount["remount_readonly"] else 0),
                      create=False)
    else:
        _mount_at(root, dest, True, mount["source"], mount["type"], flags, mount["data"])
    if mount["propagation"]:
        _mount_at(root, dest, directory, None, None, mount["propagation"], create=False)


def _make_device(root: int, device: "Dict[str, Any]") -> None:
    kind = {"b": 0o060000, "p": 0o010000}.get(device["type"], 0o020000)  # S_IFBLK... S_IFCHR
    parent, name = _open_parent(root, device["path"], "device")
    try:
        try:
            os.mknod(name, device["mode"] | kind,
                     os.makedev(device["major"], device["minor"]), dir_fd=parent)
        except FileExistsError:
            return
        except PermissionError:
            # Unprivileged guests (LXC) may not mknod: bind the host's node instead.
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, device["mode"] & 0o777, dir_fd=parent))
            _mount_at(root, device["path"], False, device["path"], None, linux.MS_BIND,
                      create=False)
            return
        os.chown(name, device["uid"], device["gid"], dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def _kind(root: int, path: str, what: str) -> str:
    """"dir", "file" or "" (absent) for ``path`` in the rootfs; refuses symlinks."""
    parent, name = _open_parent(root, path, what, create=False)
    if parent < 0:
        return ""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode & 0o170000
    except FileNotFoundError:
        return ""
    finally:
        os.close(parent)
    if mode == 0o120000:
        raise RunnerError("mounts", "{} {} is a symlink in the image; refusing".format(
            what, path))
    return "dir" if mode == 0o040000 else "file"


def _mask(root: int, path: str) -> None:
    """Hide ``path``: a read-only tmpfs over a directory, /dev/null over anything else."""
    kind = _kind(root, path, "masked path")
    if kind == "dir":
        _mount_at(root, path, True, "tmpfs", "tmpfs", linux.MS_RDONLY, create=False)
    elif kind:
        _mount_at(root, path, False, "/dev/null", None, linux.MS_BIND, create=False)


def _make_readonly(root: int, path: str, rootfs: str) -> None:
    """Bind ``path`` onto itself and remount it read-only, unless it is read-only now."""
    if path == "/":
        def opener() -> int:
            return os.open(rootfs, _DIR)  # by path: onto the mount on top
    else:
        kind = _kind(root, path, "read-only path")
        if not kind:
            return

        def opener() -> int:
            return _open_target(root, path, kind == "dir", False, "read-only path")
    fd = opener()
    try:
        if os.statvfs("/proc/self/fd/{}".format(fd)).f_flag & linux.MS_RDONLY:
            return
        _mount_fd(fd, path, "/proc/self/fd/{}".format(fd), None, linux.MS_BIND | linux.MS_REC)
    finally:
        os.close(fd)
    fd = opener()
    try:
        _mount_fd(fd, path, None, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    finally:
        os.close(fd)


def set_oom_score_adj(spawn: Spawn) -> None:
    """Step 8: the OOM killer's preference, written before chroot hides /proc."""
    value = spawn.plan["process"].get("oom_score_adj")
    if value is not None:
        with open("/proc/self/oom_score_adj", "w") as out:
            out.write(str(value))


def record_running(spawn: Spawn) -> None:
    """Step 9: record the running state (outside the rootfs, so before chroot)."""
    if not spawn.monitored:  # else the monitor recorded its own pid before the fork
        spawn.record.update(state="running", pid=str(os.getpid()),
                            started="{:.3f}".format(time.time()))
        write_run_record(spawn.record_path, spawn.record)
    if spawn.record_fd < 0:
        spawn.record_fd = os.open(spawn.record_path, os.O_WRONLY | os.O_CLOEXEC)


def change_root(spawn: Spawn) -> None:
    """Step 10: chroot into the rootfs, then chdir to the process's cwd."""
    process = spawn.plan["process"]
    # Inside the rootfs the standard library and /proc are out of reach: get what the
    # later steps need now.
    if process.get("rlimits"):
        import resource  # noqa: F401  # set_rlimits finds it in sys.modules
    if process.get("capabilities") is not None:
        spawn.last_cap = linux.cap_last_cap()
    if (process.get("capabilities") is not None or process.get("no_new_privileges")
            or spawn.monitored):
        linux.preload()
    os.chroot(spawn.plan["rootfs"])
    cwd = process["cwd"]
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise RunnerError("chroot", "cannot chdir to {} in the rootfs: {}".format(
            cwd, exc.strerror)) from exc


def set_rlimits(spawn: Spawn) -> None:
    """Step 11: resource limits (-1 is unlimited)."""
    rlimits = spawn.plan["process"].get("rlimits")
    if rlimits:
        import resource
        for kind, soft, hard in rlimits:
            resource.setrlimit(kind, (soft, hard))  # RLIM_INFINITY is -1 on Linux


def drop_bounding_set(spawn: Spawn) -> None:
    """Step 12: drop every capability outside capabilities.bounding, where allowed."""
    caps = spawn.plan["process"].get("capabilities")
    if caps is None:
        return
    keep = set(caps["bounding"])
    for cap in range(spawn.last_cap + 1):
        if cap not in keep:
            try:
                linux.prctl(linux.PR_CAPBSET_DROP, cap)
            except OSError as exc:
                spawn.say("warning: cannot drop capabilities from the bounding set ({}); "
                          "going on".format(exc.strerror))
                return


def change_user(spawn: Spawn) -> None:
    """Step 13: supplementary groups, then gid, then uid, in that order; then umask."""
    process = spawn.plan["process"]
    os.setgroups(list(process.get("additional_gids") or []))
    if process.get("capabilities") is not None and process["uid"] != 0:
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)  # setuid would clear the permitted set
    os.setgid(process["gid"])
    os.setuid(process["uid"])
    os.umask(0o022 if process.get("umask") is None else process["umask"])


def _mask_of(caps: "List[int]") -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << cap
    return mask


def set_capabilities(spawn: Spawn) -> None:
    """Step 14: effective, permitted and inheritable sets, then the ambient ones."""
    caps = spawn.plan["process"].get("capabilities")
    if caps is None:
        return
    try:
        linux.capset(_mask_of(caps["effective"]), _mask_of(caps["permitted"]),
                     _mask_of(caps["inheritable"]))
    except PermissionError as exc:
        spawn.say("warning: cannot set the capabilities ({}); going on".format(exc.strerror))
    for cap in caps.get("ambient") or ():
        try:
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, cap)
        except OSError as exc:  # EINVAL: kernels before 4.3 have no ambient set
            spawn.say("warning: cannot raise ambient capability {} ({}); going on".format(
                cap, exc.strerror))


def set_no_new_privileges(spawn: Spawn) -> None:
    """Step 15: no_new_privileges: setuid bits and file capabilities stop working."""
    if spawn.plan["process"].get("no_new_privileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)


def reset_signals() -> None:
    """Undo what Python and init set up: an ignored SIGPIPE would outlive the exec."""
    for number in range(1, _signal.NSIG):
        try:
            if _signal.getsignal(number) == _signal.SIG_IGN:
                _signal.signal(number, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP and the real-time signals the C library keeps
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def execvpe(program: str, args: "List[str]", env: "Dict[str, str]") -> None:
    """os.execvpe without its warnings import (out of reach after chroot)."""
    if "/" in program:
        os.execve(program, args, env)
    error: "Optional[OSError]" = None
    for directory in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        try:
            os.execve(os.path.join(directory or ".", program), args, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            error = error or exc
        except OSError as exc:  # EACCES, ENOEXEC...: say this, not "not found"
            error = exc if error is None or isinstance(
                error, (FileNotFoundError, NotADirectoryError)) else error
    raise error or FileNotFoundError(2, "No such file or directory", program)


def exec_app(spawn: Spawn) -> None:
    """Step 16: exec the app (PATH from the plan's env, searched inside the chroot)."""
    args = spawn.plan["process"]["args"]
    env = dict(item.split("=", 1) for item in spawn.plan["process"]["env"] if "=" in item)
    if spawn.monitored:  # setuid cleared it
        linux.prctl(linux.PR_SET_PDEATHSIG, _signal.SIGKILL)
    reset_signals()
    try:
        execvpe(args[0], args, env)
    except OSError as exc:
        line = "cannot exec {}: {}".format(args[0], exc.strerror)
        fail(spawn, "exec", line, line)


_STEPS = (("log", open_log), ("session", start_session), ("runtime", exec_runtime),
          ("namespaces", enter_namespaces), ("mounts", set_up_mounts),
          ("oom_score_adj", set_oom_score_adj), ("record", record_running),
          ("chroot", change_root), ("rlimits", set_rlimits), ("bounding", drop_bounding_set),
          ("user", change_user), ("capabilities", set_capabilities),
          ("no_new_privileges", set_no_new_privileges), ("exec", exec_app))
