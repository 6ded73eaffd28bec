"""The container runner: init runs it at every (re)spawn, and it becomes the app.

Each container's inittab line runs ``ROOT/bin/vzrun NAME``, a launcher that calls
``main``. The runner reads the exec plan (vzslave/oci.py made it at start time), paces
crash loops, points stdio at the log, ends what the previous instance left behind,
sets the container up and then *execs* the app. By default a small monitor of ours
stays as the app's parent (it pumps the output into the log under a hard cap and sees
how the app ends); with ``monitor`` off and no PID namespace or syslog, the app takes
over the runner's pid and nothing of ours stays beside it.

The app enters its rootfs with pivot_root in a private mount namespace, the old root
detached, as runc does: a root app that chroots again and climbs with ``..`` ends at
its own root. Nodes that cannot pivot_root get a chroot, decided and warned about at
start (vzslave/plans.py), without CAP_SYS_CHROOT.

Speed matters, so this module imports almost nothing at the top: no typing (~10 ms),
json, re, socket, signal (enum) or ctypes; ``vzslave.linux`` reaches libc only when a
syscall Python lacks is needed, and the plan is marshal, not JSON. Its one other
import is its leaf, vzslave/runio.py: its error and I/O, the run record it keeps, the
boot marker, a pid's start time (each module costs a spawn ~0.1 ms). The mount code
(vzslave/mounts.py) and the process finder (vzslave/procs.py) are imported only by a
spawn that needs them; the monitor's log pump (vzslave/logs.py) only by the monitor.
"""

import marshal
import os
import sys
import time

from vzslave import linux
from vzslave.runio import (
    RunnerError,
    RunState,
    boot_marked,
    os_message,
    read_run_record,
    record_number,
    start_time,
    store_run_record,
    write_quietly,
    write_run_record,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any, Dict, List, Optional
    Plan = Dict[str, Any]
else:
    import _signal  # builtin and already loaded; "signal" would import enum

IDLE = 60.0  # seconds a runner that cannot make progress sleeps, so init does not spin
_RELAYED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
DRAIN = 2.0  # seconds the monitor reads output left in the pipe after the app ended


class Spawn(object):
    """One spawn of a container: its plan, its run record, where failures are written."""

    def __init__(self, name: str, plan: "Plan") -> None:
        self.name = name
        self.plan = plan
        self.record_path = os.path.join(plan["state_dir"], "run")
        self.record: "Dict[str, str]" = {}
        self.record_fd = -1  # the record, kept open for writing once in the rootfs
        self.monitored = False  # a monitor parent owns the record's pid
        self.last_cap = -1
        # The previous instance ran with no monitor to end its leftovers (or its monitor
        # was killed): what it left must be looked for before this one starts.
        self.leftovers_possible = False

    def say(self, text: str) -> None:
        """Write one diagnostic line to the log (fd 2)."""
        line = "vz: {}: {}\n".format(self.name, text.replace("\n", " "))
        write_quietly(2, line.encode("utf-8", "replace"))

    def store(self) -> bool:
        """Write the spawn's record: by path, or through the fd kept open into the rootfs."""
        return store_run_record(self.record_path, self.record, self.record_fd)


def main(argv: "List[str]", root: str) -> None:
    """Set up container ``argv[0]`` as its plan says and exec its app; init's entry point."""
    name = argv[0] if len(argv) == 1 else ""
    if not name or "/" in name or name.startswith("."):
        write_quietly(2, b"usage: vzrun NAME\n")
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
        fail(spawn, step, os_message(exc))
    except Exception as exc:  # a plan of the wrong shape: report it, never spin
        fail(spawn, step, "bad plan or runner bug: {!r}".format(exc))


def _note(path: str, line: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError:
        fd = 2
    write_quietly(fd, line.encode("utf-8", "replace"))


def fail(spawn: Spawn, step: str, message: str, line: "Optional[str]" = None) -> None:
    """Report a failed step to the log and the run record, then exit 127 (steps 3-19)."""
    spawn.say(line or "cannot start: {}: {}".format(step, message))
    spawn.record.update(state=RunState.FAILED,
                        last_error=line or "{}: {}".format(step, message))
    if not spawn.store():
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


def backoff_delay(streak: int, initial: float, maximum: float) -> float:
    """Seconds to wait before a spawn after ``streak`` short runs in a row."""
    # The exponent is capped: 2.0 ** 1024 overflows a float after ~17 h of crash-looping.
    return 0.0 if streak <= 0 else min(initial * 2.0 ** min(streak - 1, 64), maximum)


def pace_restarts(spawn: Spawn, now: float) -> None:
    """Step 2: count short runs in a row and sleep the backoff delay before going on."""
    old = read_run_record(spawn.record_path)
    backoff = spawn.plan["backoff"]
    streak = 0
    record = dict(old)
    if old.get("state") in RunState.ALL:
        try:
            lasted = now - float(old.get("started", ""))
        except ValueError:
            lasted = 0.0
        if old.get("state") == RunState.RUNNING:
            # It ended with nobody of ours as its parent (no monitor): its exit status
            # went to init. What is known: how long it ran, and that vz did not stop it
            # (a stop removes the entry, so nothing respawns after it).
            record.update(last_exit="ended on its own (exit status unknown: no monitor)",
                          last_run="{:.3f}".format(lasted))
            spawn.leftovers_possible = True
        elif old.get("state") != RunState.EXITED:  # the monitor wrote both for an exited app
            record["last_run"] = "{:.3f}".format(lasted)
        streak = record_number(old, "streak") + 1 if lasted < backoff["stable"] else 0
    generation = spawn.plan.get("generation", "")
    if generation != old.get("generation", generation):
        # The first spawn of a release switched to (containers.switch): its counts start
        # afresh, and what the replaced release left runs on until end_previous ends it.
        old = {}
        record = {}
        streak = 0
        spawn.leftovers_possible = True
    recent = (old.get("recent", "").split() + ["{:.3f}".format(now)])[-10:]
    record.update(pid=str(os.getpid()), ticks=str(start_time(os.getpid()) or ""),
                  state=RunState.RUNNING, started="{:.3f}".format(now), next_start="",
                  streak=str(streak), spawns=str(record_number(old, "spawns") + 1),
                  supervisor=spawn.plan["runtime"], recent=" ".join(recent),
                  generation=generation)
    spawn.record = record
    delay = backoff_delay(streak, backoff["initial"], backoff["max"])
    if delay > 0:
        # The runner stays alive meanwhile, so init does not respawn it: this keeps
        # sysvinit under its rate limit and busybox from restarting every second.
        record.update(state=RunState.WAITING, next_start="{:.3f}".format(now + delay))
        spawn.store()
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
        rotate(path, log["keep"], log["max_bytes"])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o640)
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


def end_previous(spawn: Spawn) -> None:
    """Step 5: end what is left of the previous instance before a new one starts.

    A forking server killed by a signal leaves its workers behind, holding its ports:
    every new instance would then fail to bind. Like systemd's KillMode=control-group,
    whatever still runs inside the container's root gets TERM, then KILL. Looked for
    only after an instance that no monitor saw end: a first spawn follows a stop that
    ended everything, a monitor ends the leftovers itself.
    """
    if not spawn.leftovers_possible:
        return
    from vzslave import procs
    # A switched-to release also ends what runs in the rootfs it replaced.
    roots = [spawn.plan["rootfs"]] + list(spawn.plan.get("replaces") or ())

    def left_behind() -> "Dict[int, int]":
        found = {}
        for rootfs in roots:
            found.update(procs.container_processes(rootfs))
        return found

    left = left_behind()
    if not left:
        return
    spawn.say("ending {} process(es) left by the previous instance: {}".format(
        len(left), " ".join(str(pid) for pid in sorted(left))))
    stuck = procs.end_processes(left_behind, procs.LEFTOVER_GRACE)
    if stuck:
        raise RunnerError("clean", "processes {} of the previous instance survive SIGKILL "
                          "(stuck in the kernel?)".format(stuck))


def runtime_command(plan: "Dict[str, Any]", *command: str) -> "List[str]":
    """runc's or crun's argv: the container's own global options go before the command."""
    return [plan["runtime_path"]] + list(plan.get("runtime_args", ())) + list(command)


def exec_runtime(spawn: Spawn) -> None:
    """Step 6 (runc or crun only): delete a stale container, then exec ``RUNTIME run``."""
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


def set_up_host_mounts(spawn: Spawn) -> None:
    """Step 7: the mounts of a plan without a mount namespace of its own live in the
    node's (vzslave made them at start, and marked the boot); after a reboot they are
    made again here, before the app's private mount namespace is entered."""
    plan = spawn.plan
    if _has_namespace(plan, "mount") or boot_marked(plan["state_dir"]):
        return  # the fast path: the mount code is not even imported
    from vzslave import mounts
    mounts.set_up(plan)


def _has_namespace(plan: "Plan", kind: str) -> bool:
    return any(ns["type"] == kind for ns in plan["namespaces"])


def add_secrets(spawn: Spawn) -> None:
    """Step 7b: an app release's secrets into the app's environment, read at every spawn
    from the node's secret store (0600; the plan names the file, never a value)."""
    path = spawn.plan.get("secrets")
    if not path:
        return
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as exc:
        raise RunnerError("secrets", "cannot read the secret store {}: {}; deploy the "
                          "release again".format(path, exc.strerror)) from exc
    secrets = [item.decode("utf-8", "surrogateescape") for item in data.split(b"\0") if item]
    names = set(item.split("=", 1)[0] for item in secrets)
    process = spawn.plan["process"]
    process["env"] = [item for item in process["env"]
                      if item.split("=", 1)[0] not in names] + secrets


def start_monitor(spawn: Spawn) -> None:
    """Step 8: fork the monitor, when the plan has one, before entering namespaces.

    The monitor stays in the node's namespaces (its mounts keep nothing of the node
    busy); only the app's side goes on to enter the container's. A PID namespace is
    made first, since it applies to the children of the process that asks for it.
    """
    plan = spawn.plan
    pid_ns = [ns for ns in plan["namespaces"] if ns["type"] == "pid"]
    if not (pid_ns or plan["log"].get("syslog") or plan.get("monitor")):
        return
    if pid_ns:
        join_or_create(pid_ns[0])
    fork_monitor(spawn)


def join_or_create(ns: "Dict[str, Any]") -> None:
    """setns into the namespace at ``ns["path"]``, or unshare a new one."""
    if not ns.get("path"):
        linux.unshare(ns["flag"])
        return
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


def fork_monitor(spawn: Spawn) -> None:
    """Fork; the child goes on to the next step, the parent becomes the monitor.

    With syslog or ``monitor`` the app writes into a pipe that the monitor pumps into
    the log under a hard size cap (and to syslog); a monitor that only a PID namespace
    asked for leaves the app on the log file itself.
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
    """The monitor: relay signals to ``child``, pump its output, and once the child has
    ended (waited for, not read to EOF: its orphans may hold the pipe), end what is left
    of the container, record how the app ended, and exit so that init respawns."""
    for name in ("SIGTTOU", "SIGTTIN", "SIGTSTP"):
        _signal.signal(getattr(_signal, name), _signal.SIG_IGN)

    def relay(signum: int, frame: "Any") -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for name in _RELAYED:
        _signal.signal(getattr(_signal, name), relay)
    started = time.time()
    if reader < 0:
        status = os.waitpid(child, 0)[1]
    else:
        status = _pump_until_exit(spawn, child, reader)
    lasted = time.time() - started
    if os.WIFSIGNALED(status):
        code, ended = 128 + os.WTERMSIG(status), "signal {}".format(os.WTERMSIG(status))
    else:
        code, ended = os.WEXITSTATUS(status), "exit {}".format(os.WEXITSTATUS(status))
    # The child may have written a failure into the record meanwhile: keep it.
    spawn.record = read_run_record(spawn.record_path) or spawn.record
    spawn.record_fd = -1  # write by path, atomically: the monitor still can
    if spawn.record.get("state") != RunState.FAILED:
        spawn.record["state"] = RunState.EXITED
    spawn.record.update(last_exit=ended, last_run="{:.3f}".format(lasted))
    spawn.store()
    os._exit(code)


def _pump_until_exit(spawn: Spawn, child: int, reader: int) -> int:
    """Pump the app's output into the log until the app has ended; its wait status."""
    import select

    from vzslave import procs
    from vzslave.logs import LogPump
    log = spawn.plan["log"]
    pump = LogPump(log["path"], log["max_bytes"], log["keep"],
                   syslog_ident="vz/" + spawn.name if log.get("syslog") else None)
    # SIGCHLD wakes the select through this pipe: no polling, no wait for EOF.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda signum, frame: None)
    status = None
    open_reader = True
    while status is None:
        ready = select.select([reader, wake_r] if open_reader else [wake_r], [], [], 1.0)[0]
        if reader in ready:
            data = os.read(reader, 65536)
            if data:
                pump.write(data)
            else:
                open_reader = False  # every writer closed; the app may still run
        if wake_r in ready:
            os.read(wake_r, 4096)
        pid, waited = os.waitpid(child, os.WNOHANG)
        if pid:
            status = waited
    # Workers the app left behind still hold the pipe (and its ports): end them, so the
    # next instance starts clean, then take the last of the output.
    rootfs = spawn.plan["rootfs"]
    procs.end_processes(lambda: procs.container_processes(rootfs), procs.LEFTOVER_GRACE)
    deadline = time.monotonic() + DRAIN
    while open_reader and time.monotonic() < deadline:
        if not select.select([reader], [], [], max(deadline - time.monotonic(), 0))[0]:
            break
        data = os.read(reader, 65536)
        if not data:
            break
        pump.write(data)
    pump.close()
    return status


def enter_namespaces(spawn: Spawn) -> None:
    """Step 9: join (setns) or create (unshare) the namespaces, PID aside (step 8).

    A vz container always gets a mount namespace of its own (entering the rootfs with
    pivot_root needs one); a joined mount namespace is the parent of that private one.
    runch's (plan mount_ns "config") have the mount namespace the config says, as in
    runc: a joined one is entered as it is, and none means a chroot in the caller's.
    """
    plan = spawn.plan
    flags = 0
    kinds: "Dict[str, bool]" = {}  # type -> created here (not joined)
    for ns in plan["namespaces"]:
        if ns["type"] == "pid":
            continue
        kinds[ns["type"]] = not ns.get("path")
        if ns.get("path"):
            join_or_create(ns)
        else:
            flags |= ns["flag"]
    if (plan.get("mount_ns", "private") == "private" and not kinds.get("mount")
            and plan.get("enter", "pivot_root") == "pivot_root"):
        flags |= linux.CLONE_NEWNS
    if flags:
        linux.unshare(flags)
    if flags & linux.CLONE_NEWNS or "mount" in kinds:
        # Nothing mounted for the container may propagate back to the host.
        propagation = plan.get("rootfs_propagation") or linux.MS_REC | linux.MS_SLAVE
        linux.mount(None, "/", None, propagation)
        if propagation & linux.MS_SHARED:
            from vzslave.mounts import make_parent_private
            make_parent_private(plan["rootfs"])
    if "uts" in kinds:
        if plan.get("hostname") is not None:
            linux.sethostname(plan["hostname"])
        if plan.get("domainname") is not None:
            linux.setdomainname(plan["domainname"])
    if kinds.get("network"):
        linux.loopback_up()


def set_up_mounts(spawn: Spawn) -> None:
    """Step 10: the mounts of a plan with a mount namespace, made in it at every spawn."""
    if _has_namespace(spawn.plan, "mount"):
        from vzslave import mounts
        mounts.set_up(spawn.plan)


def set_sysctls(spawn: Spawn) -> None:
    """Step 10b: linux.sysctl, in the container's namespaces, before the rootfs hides /proc.

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


def set_oom_score_adj(spawn: Spawn) -> None:
    """Step 11: the OOM killer's preference, written before the rootfs hides /proc."""
    value = spawn.plan["process"].get("oom_score_adj")
    if value is not None:
        with open("/proc/self/oom_score_adj", "w") as out:
            out.write(str(value))


def record_running(spawn: Spawn) -> None:
    """Step 12: record the running state (outside the rootfs, so before entering it)."""
    if not spawn.monitored:  # else the monitor recorded its own pid before the fork
        # The start time tells this pid from a reuse of it: nobody signals a stranger.
        spawn.record.update(state=RunState.RUNNING, pid=str(os.getpid()),
                            ticks=str(start_time(os.getpid()) or ""),
                            started="{:.3f}".format(time.time()))
        write_run_record(spawn.record_path, spawn.record)
    if spawn.record_fd < 0:
        spawn.record_fd = os.open(spawn.record_path, os.O_WRONLY | os.O_CLOEXEC)


def enter_root(spawn: Spawn) -> None:
    """Step 13: enter the rootfs (pivot_root, or chroot where the node cannot), then
    chdir to the process's cwd."""
    plan = spawn.plan
    process = plan["process"]
    # Inside the rootfs the standard library and /proc are out of reach: get what the
    # later steps need now.
    if process.get("rlimits"):
        import resource  # noqa: F401  # set_rlimits finds it in sys.modules
    if process.get("capabilities") is not None:
        spawn.last_cap = linux.cap_last_cap()
    if (process.get("capabilities") is not None or process.get("no_new_privileges")
            or spawn.monitored or spawn.plan.get("seccomp")):
        linux.preload()
    if plan.get("enter", "pivot_root") == "pivot_root":
        pivot_into(plan["rootfs"])
    else:
        os.chroot(plan["rootfs"])
    cwd = process["cwd"]
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise RunnerError("root", "cannot chdir to {} in the rootfs: {}".format(
            cwd, exc.strerror)) from exc


def pivot_into(rootfs: str) -> None:
    """Make ``rootfs`` (a mount point) the root of this mount namespace, and detach the
    old root, as runc does: unlike chroot, nothing is left above "/" to climb to."""
    old = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        try:
            # pivot_root(".", "."): the old root ends up stacked on the new one.
            linux.pivot_root(".", ".")
        except OSError as exc:
            raise RunnerError("root", "cannot pivot_root into {}: {}".format(
                rootfs, exc.strerror)) from exc
        os.fchdir(old)
        # rslave first, so that detaching the old root does not propagate to the node.
        linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
        linux.umount2(".", linux.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def set_rlimits(spawn: Spawn) -> None:
    """Step 14: resource limits (-1 is unlimited)."""
    rlimits = spawn.plan["process"].get("rlimits")
    if rlimits:
        import resource
        for kind, soft, hard in rlimits:
            resource.setrlimit(kind, (soft, hard))  # RLIM_INFINITY is -1 on Linux


def set_seccomp_privileged(spawn: Spawn) -> None:
    """Step 14b (without no_new_privileges): the seccomp filter, while CAP_SYS_ADMIN holds.

    As runc: the kernel takes a filter from a process without no_new_privileges only
    with CAP_SYS_ADMIN, which the next steps drop. The runner's own calls after it
    (prctl, setgroups, setgid, setuid, capset, rt_sigaction, execve) must pass the filter.
    """
    if spawn.plan.get("seccomp") and not spawn.plan["process"].get("no_new_privileges"):
        install_seccomp(spawn)


def set_seccomp(spawn: Spawn) -> None:
    """Step 18b (with no_new_privileges): the seccomp filter, as the last step before exec."""
    if spawn.plan.get("seccomp") and spawn.plan["process"].get("no_new_privileges"):
        install_seccomp(spawn)


def install_seccomp(spawn: Spawn) -> None:
    """Install the plan's compiled filter (vzslave/seccomp.py made it at start time)."""
    seccomp = spawn.plan["seccomp"]
    try:
        linux.seccomp_filter(seccomp["program"], seccomp["syscall"], seccomp["flags"],
                             seccomp.get("optional_flags", 0))
    except OSError as exc:
        raise RunnerError("seccomp", "the kernel refused the seccomp filter ({}): it needs "
                          "CONFIG_SECCOMP_FILTER, and every flag and action the profile uses; "
                          "remove linux.seccomp to run without".format(exc.strerror)) from exc


def drop_bounding_set(spawn: Spawn) -> None:
    """Step 15: drop every capability outside capabilities.bounding (or fail the spawn)."""
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
    """Step 16: supplementary groups, then gid, then uid, in that order; then umask."""
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
    """Step 17: effective, permitted and inheritable sets, then the ambient ones."""
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
    """Step 18: no_new_privileges: setuid bits and file capabilities stop working."""
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
    """os.execvpe without its warnings import (out of reach in the rootfs)."""
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
    """Exec the plan's process (PATH from its env, searched inside the rootfs); OSError."""
    args = process["args"]
    env = dict(item.split("=", 1) for item in process["env"] if "=" in item)
    reset_signals()
    execvpe(args[0], args, env)


def exec_app(spawn: Spawn) -> None:
    """Step 19: exec the app, or report why it cannot be and exit 127."""
    args = spawn.plan["process"]["args"]
    if spawn.monitored:  # setuid cleared it
        linux.prctl(linux.PR_SET_PDEATHSIG, _signal.SIGKILL)
    try:
        exec_process(spawn.plan["process"])
    except OSError as exc:
        line = "cannot exec {}: {}".format(args[0], exc.strerror)
        fail(spawn, "exec", line, line)


_STEPS = (("log", open_log), ("session", start_session), ("clean", end_previous),
          ("runtime", exec_runtime), ("mounts", set_up_host_mounts),
          ("secrets", add_secrets), ("monitor", start_monitor),
          ("namespaces", enter_namespaces),
          ("mounts", set_up_mounts), ("oom_score_adj", set_oom_score_adj),
          ("sysctl", set_sysctls),
          ("record", record_running), ("root", enter_root), ("rlimits", set_rlimits),
          ("seccomp", set_seccomp_privileged),
          ("bounding", drop_bounding_set), ("user", change_user),
          ("capabilities", set_capabilities), ("no_new_privileges", set_no_new_privileges),
          ("seccomp", set_seccomp), ("exec", exec_app))
# The steps after the namespaces, without the runner's bookkeeping (record) and the
# exec: vzslave/runch.py runs them in the container process it holds before exec.
SETUP_STEPS = (("mounts", set_up_mounts), ("oom_score_adj", set_oom_score_adj),
               ("sysctl", set_sysctls),
               ("root", enter_root), ("rlimits", set_rlimits),
               ("seccomp", set_seccomp_privileged),
               ("bounding", drop_bounding_set), ("user", change_user),
               ("capabilities", set_capabilities), ("no_new_privileges", set_no_new_privileges),
               ("seccomp", set_seccomp))
