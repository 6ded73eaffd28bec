"""The monitor: the runner's parent half, which stays beside the app (issue 10).

The runner forks it at step 8 when the plan asks for a monitor (the default), syslog or
a PID namespace; the child goes on to set up and exec the app. The monitor relays
signals to the app, pumps its output into the log under a hard size cap (and to
syslog), and once the app has ended, ends what is left of the container, records how
the app ended in the run record (RunState.EXITED, or the child's FAILED kept) and
exits with the app's status, so that init respawns.

Imported only by a spawn that forks a monitor: like the runner, it imports almost
nothing at the top (select and the log pump only once there is output to pump).
"""

import os
import time

from vzslave import linux, procs
from vzslave.runio import RunState, read_run_record, store_run_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any, Dict
    Plan = Dict[str, Any]
else:
    import _signal  # builtin and already loaded; "signal" would import enum

_RELAYED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
DRAIN = 2.0  # seconds the monitor reads output left in the pipe after the app ended


def fork_monitor(name: str, plan: "Plan", record_path: str, record: "Dict[str, str]") -> None:
    """Fork; return in the child, which goes on to the next step; the parent becomes the
    monitor and never returns. The run record must say running before this call.

    With syslog or ``monitor`` the app writes into a pipe that the monitor pumps into
    the log under a hard size cap (and to syslog); a monitor that only a PID namespace
    asked for leaves the app on the log file itself.
    """
    pumped = bool(plan["log"].get("syslog") or plan.get("monitor"))
    reader, writer = os.pipe() if pumped else (-1, -1)
    child = os.fork()
    if child == 0:
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
    monitor(name, plan, record_path, record, child, reader)


def monitor(name: str, plan: "Plan", record_path: str, record: "Dict[str, str]", child: int,
            reader: int) -> None:
    """The monitor: relay signals to ``child``, pump its output, and once the child has
    ended (waited for, not read to EOF: its orphans may hold the pipe), end what is left
    of the container, record how the app ended, and exit so that init respawns."""
    for signame in ("SIGTTOU", "SIGTTIN", "SIGTSTP"):
        _signal.signal(getattr(_signal, signame), _signal.SIG_IGN)

    def relay(signum: int, frame: "Any") -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for signame in _RELAYED:
        _signal.signal(getattr(_signal, signame), relay)
    started = time.time()
    if reader < 0:
        status = os.waitpid(child, 0)[1]
    else:
        status = _pump_until_exit(name, plan, child, reader)
    lasted = time.time() - started
    if os.WIFSIGNALED(status):
        code, ended = 128 + os.WTERMSIG(status), "signal {}".format(os.WTERMSIG(status))
    else:
        code, ended = os.WEXITSTATUS(status), "exit {}".format(os.WEXITSTATUS(status))
    # The child may have written a failure into the record meanwhile: keep it. Written
    # by path, atomically: the monitor, outside the rootfs, still can.
    record = read_run_record(record_path) or record
    if record.get("state") != RunState.FAILED:
        record["state"] = RunState.EXITED
    record.update(last_exit=ended, last_run="{:.3f}".format(lasted))
    store_run_record(record_path, record)
    os._exit(code)


def _pump_until_exit(name: str, plan: "Plan", child: int, reader: int) -> int:
    """Pump the app's output into the log until the app has ended; its wait status."""
    import select
    from vzslave.logs import LogPump
    log = plan["log"]
    pump = LogPump(log["path"], log["max_bytes"], log["keep"],
                   syslog_ident="vz/" + name if log.get("syslog") else None)
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
    rootfs = plan["rootfs"]
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
