"""The container runner: init runs it at every (re)spawn, and it becomes the app.

Each container's inittab line runs ``ROOT/bin/vzrun NAME``, a launcher that calls
``main``. The runner reads the exec plan (vzslave/oci.py made it at start time), paces
crash loops, points stdio at the log, sets the container up and then *execs* the app,
which takes over the runner's pid: no process of ours stays beside a running container
(except the small monitor that a PID namespace, syslog output or ``monitor`` asks for).

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
    from typing import Any, Dict, List, Optional
    Plan = Dict[str, Any]
else:
    import _signal  # builtin and already loaded; "signal" would import enum

RUN_KEYS = ("pid", "state", "started", "next_start", "streak", "spawns", "last_run",
            "last_exit", "last_error", "supervisor", "recent")
IDLE = 60.0  # seconds a runner that cannot make progress sleeps, so init does not spin
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
    if spawn.plan.get("runtime", "builtin") == "builtin":  # runc/crun apply it all
        for warning in spawn.plan.get("warnings") or ():
            spawn.say("warning: {}".format(warning))


def start_session(spawn: Spawn) -> None:
    """Step 4: make the container one session and process group, which stop kills."""
    try:
        os.setsid()
    except OSError:
        pass  # EPERM: already a session leader (init did it)


def runtime_command(plan: "Dict[str, Any]", *command: str) -> "List[str]":
    """runc's or crun's argv: the container's own global options go before the command."""
    return [plan["runtime_path"]] + list(plan.get("runtime_args", ())) + list(command)


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
            os.execv(runtime, runtime_command(spawn.plan, "delete", "--force", container))
        finally:
            os._exit(127)
    os.waitpid(pid, 0)  # a failed delete only means there was nothing to delete
    record_running(spawn)
    reset_signals()
    try:
        os.execv(runtime, runtime_command(spawn.plan, "run", "--bundle", spawn.plan["bundle"],
                                          container))
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
            try:
                fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    linux.setns(fd, ns["flag"])
                finally:
                    os.close(fd)
            except OSError as exc:  # EINVAL: a namespace of another type (or none)
                raise RunnerError("namespaces", "cannot join the {} namespace at {}.path {}: "
                                  "{}".format(ns["type"], ns.get("field", "linux.namespaces"),
                                              ns["path"], exc.strerror)) from exc
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
        linux.unshare(linux.CLONE_NEWPID)  # for the children: the next step forks


def start_monitor(spawn: Spawn) -> None:
    """Step 6 (end): fork the monitor if a PID namespace, syslog or the plan needs one."""
    plan = spawn.plan
    if (any(ns["type"] == "pid" for ns in plan["namespaces"]) or plan["log"].get("syslog")
            or plan.get("monitor")):
        fork_monitor(spawn)


def fork_monitor(spawn: Spawn) -> None:
    """Fork; the child goes on to step 7, the parent becomes the monitor.

    With syslog or an explicit ``monitor`` the app writes into a pipe that the monitor
    pumps into the log under a hard size cap (and to syslog); a monitor that only a
    PID namespace asked for leaves the app on the log file itself.
    """
    pumped = bool(spawn.plan["log"].get("syslog") or spawn.plan.get("monitor"))
    reader, writer = os.pipe() if pumped else (-1, -1)
    record_running(spawn)  # before the fork: the child may fail (and write) at once
    child = os.fork()
    if child == 0:
        spawn.monitored = True
        # The app must not outlive the monitor, whose pid is all init knows of.
        linux.prctl(linux.PR_SET_PDEATHSIG, _signal.SIGKILL)
        if pumped:
            os.dup2(writer, 1)
            os.dup2(writer, 2)
            os.close(reader)
            os.close(writer)
        return
    if pumped:
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
                       syslog_ident="vz/" + spawn.name if log.get("syslog") else None)
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



def set_up_mounts(spawn: Spawn) -> None:
    """Step 7: the plan's mounts (vzslave/mounts.py); skipped when prepared this boot."""
    plan = spawn.plan
    if not any(ns["type"] == "mount" for ns in plan["namespaces"]):
        boot = _read("/proc/sys/kernel/random/boot_id")
        if boot and _read(os.path.join(plan["state_dir"], "mounts")) == boot:
            return  # the fast path: the mount code is not even imported
    from vzslave import mounts
    mounts.set_up(plan)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as source:
            return source.read().strip()
    except OSError:
        return b""


def prepare(plan: "Plan") -> None:
    """Mount the plan in the host's mount namespace (see vzslave.mounts.prepare)."""
    from vzslave import mounts
    mounts.prepare(plan)


def release(plan: "Plan") -> "List[str]":
    """Unmount everything at or under the rootfs (see vzslave.mounts.release)."""
    from vzslave import mounts
    return mounts.release(plan)


def set_oom_score_adj(spawn: Spawn) -> None:
    """Step 8: the OOM killer's preference, written before chroot hides /proc."""
    value = spawn.plan["process"].get("oom_score_adj")
    if value is not None:
        with open("/proc/self/oom_score_adj", "w") as out:
            out.write(str(value))


def set_sysctls(spawn: Spawn) -> None:
    """Step 8 (end): linux.sysctl, in the container's namespaces, before chroot hides /proc.

    /proc/sys/net and the IPC sysctls show the namespaces of the process that opens them,
    whichever /proc it is, so the host's /proc serves.
    """
    for path, value in spawn.plan.get("sysctl") or ():
        try:
            with open("/proc/sys/" + path, "w") as out:
                out.write(value)
        except OSError as exc:
            raise RunnerError("sysctl", "cannot set linux.sysctl.{} to {!r}: {}".format(
                path.replace("/", "."), value, exc.strerror)) from exc


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
    """Step 12: drop every capability outside capabilities.bounding (or fail the spawn)."""
    caps = spawn.plan["process"].get("capabilities")
    if caps is None:
        return
    keep = set(caps["bounding"])
    for cap in range(spawn.last_cap + 1):
        if cap not in keep:
            try:
                linux.prctl(linux.PR_CAPBSET_DROP, cap)
            except OSError as exc:  # EPERM: no CAP_SETPCAP; a wider set than asked: fail
                raise RunnerError("capabilities", "cannot drop {} from the bounding set: {} "
                                  "(dropping needs CAP_SETPCAP)".format(
                                      linux.cap_name(cap), exc.strerror)) from exc


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
    except OSError as exc:
        raise RunnerError("capabilities", "cannot set the capabilities: {}{}".format(
            exc.strerror, _unavailable(caps))) from exc
    ambient = caps.get("ambient") or []
    # The kernel raises only what is permitted and inheritable too; runc skips the rest
    # silently (so runc spec's own config, whose inheritable set is empty, runs): say it.
    skipped = [cap for cap in ambient
               if cap not in caps["inheritable"] or cap not in caps["permitted"]]
    if skipped:
        spawn.say("warning: ambient {} not raised: not in process.capabilities.inheritable "
                  "and permitted".format(", ".join(linux.cap_name(cap) for cap in skipped)))
    for cap in ambient:
        if cap in skipped:
            continue
        try:
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, cap)
        except OSError as exc:
            if exc.errno == 22:  # EINVAL: kernels before 4.3 have no ambient set (runc too)
                spawn.say("warning: this kernel has no ambient capabilities (Linux 4.3+): "
                          "process.capabilities.ambient is not applied")
                return
            raise RunnerError("capabilities", "cannot raise ambient {}: {}".format(
                linux.cap_name(cap), exc.strerror)) from exc


def _unavailable(caps: "Dict[str, List[int]]") -> str:
    """Why capset failed, where this process can tell: the asked caps it does not have."""
    try:
        _, permitted, _ = linux.capget()
    except OSError:
        return ""
    missing = [cap for cap in sorted(set(caps["permitted"]) | set(caps["effective"]))
               if not permitted >> cap & 1]
    if not missing:
        return ""
    return ("; {} not available here (not in this host's bounding set?): remove {} from "
            "process.capabilities").format(", ".join(linux.cap_name(cap) for cap in missing),
                                           "it" if len(missing) == 1 else "them")


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


def exec_process(process: "Dict[str, Any]") -> None:
    """Exec the plan's process (PATH from its env, searched inside the chroot); OSError."""
    args = process["args"]
    env = dict(item.split("=", 1) for item in process["env"] if "=" in item)
    reset_signals()
    execvpe(args[0], args, env)


def exec_app(spawn: Spawn) -> None:
    """Step 16: exec the app, or report why it cannot be and exit 127."""
    args = spawn.plan["process"]["args"]
    if spawn.monitored:  # setuid cleared it
        linux.prctl(linux.PR_SET_PDEATHSIG, _signal.SIGKILL)
    try:
        exec_process(spawn.plan["process"])
    except OSError as exc:
        line = "cannot exec {}: {}".format(args[0], exc.strerror)
        fail(spawn, "exec", line, line)


_STEPS = (("log", open_log), ("session", start_session), ("runtime", exec_runtime),
          ("namespaces", enter_namespaces), ("namespaces", start_monitor),
          ("mounts", set_up_mounts), ("oom_score_adj", set_oom_score_adj),
          ("sysctl", set_sysctls),
          ("record", record_running), ("chroot", change_root), ("rlimits", set_rlimits),
          ("bounding", drop_bounding_set), ("user", change_user),
          ("capabilities", set_capabilities), ("no_new_privileges", set_no_new_privileges),
          ("exec", exec_app))
# The steps after the namespaces, without the runner's bookkeeping (record) and the
# exec: vzslave/runch.py runs them in the container process it holds before exec.
SETUP_STEPS = (("mounts", set_up_mounts), ("oom_score_adj", set_oom_score_adj),
               ("sysctl", set_sysctls),
               ("chroot", change_root), ("rlimits", set_rlimits),
               ("bounding", drop_bounding_set), ("user", change_user),
               ("capabilities", set_capabilities), ("no_new_privileges", set_no_new_privileges))
