"""strace-trace: run a command under strace and list the files it used; and spec files.

A rootfs built from a trace holds exactly the files a sample run of the app touched.
``trace_command`` runs the command under the real ``strace`` (following forks) and
returns every regular file it opened or executed successfully; a spec file lists such
paths, one absolute path a line, for the user to read and edit before the build.

Key decisions:

- strace runs with ``-z`` (successful calls only), ``-y`` (fds print their paths) and
  ``-xx`` (every string byte in hex), so a path with any bytes in it parses without
  ambiguity; the log goes to a file, apart from the command's own stderr.
- Paths are kept as the program named them, made absolute and normalised but not
  resolved: a symlink the program opened stays a symlink in the list.
- Relative paths are resolved against the process's working directory, tracked from
  ``chdir``/``fchdir`` and inherited across forks. A child's calls can be logged before
  the fork that made it returns in the parent, so they wait until it does.
- The kernel, not a traced call, opens an executable's ELF interpreter (PT_INTERP) and
  a script's ``#!`` interpreter: both are read from the executed files and added.
- Only regular files that still exist are listed: directories, FIFOs, files the run
  deleted and the pseudo filesystems (/proc, /sys, /dev) cannot go into a rootfs.
- The command's stdin is /dev/null: a trace is a non-interactive sample run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from vzmaster.imaging.elf import interpreter_of
from vzmaster.imaging.errors import BuildError
from vzslave.fs import atomic_write

_TRACED_CALLS = ("open", "openat", "openat2", "creat", "execve", "execveat",
                 "chdir", "fchdir", "clone", "clone3", "fork", "vfork")
_OPENS = {"open", "openat", "openat2", "creat"}
_EXECS = {"execve", "execveat"}
_FORKS = {"clone", "clone3", "fork", "vfork"}
_DIRFD_FIRST = {"openat", "openat2", "execveat"}
_PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
_STDERR_TAIL = 2000
# The kernel follows at most this many nested #! interpreters; a loop must end too.
_MAX_INTERPRETER_DEPTH = 5

_LINE = re.compile(r"(\d+)\s+(.*)")
_RESUMED = re.compile(r"<\.\.\. \w+ resumed>(.*)")
_UNFINISHED = " <unfinished ...>"
_CALL = re.compile(r"(\w+)\((.*)\)\s+=\s+(-?\d+)")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
_FD = re.compile(r"(AT_FDCWD|-?\d+)(?:<((?:\\x[0-9a-f]{2})*)>)?")


def trace_command(command: str | Sequence[str], *, cwd: str | None = None,
                  stdout: BinaryIO | None = None, timeout: float | None = None,
                  run_for: float | None = None, strace: str = "strace") -> list[str]:
    """Run ``command`` under strace; return the files it opened or executed, sorted.

    ``command`` is an argv list (a string is split like a shell would). Its stdout goes
    to ``stdout`` (inherited when None); it runs in ``cwd`` and is killed after
    ``timeout`` seconds. A failure of strace or of the command raises BuildError.
    ``run_for`` traces a server: after that many seconds it is stopped (SIGTERM, then
    SIGKILL) and what it used so far is the result; exiting earlier is judged as usual.
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise BuildError("nothing to trace: the command is empty")
    strace_path = shutil.which(strace)
    if strace_path is None:
        raise BuildError(f"strace ({strace}) is not installed: tracing a command needs it; "
                         "install it, e.g. apt install strace")
    workdir = os.path.abspath(cwd if cwd is not None else os.getcwd())
    if not os.path.isdir(workdir):
        raise BuildError(f"cannot trace in {workdir}: it is not a directory")
    _check_program(argv[0], workdir)
    with tempfile.TemporaryDirectory(prefix="vz-trace-") as tmp:
        log = os.path.join(tmp, "strace.log")
        _run_strace(strace_path, argv, workdir, log, tmp, stdout, timeout, run_for)
        reader = _LogReader(workdir)
        try:
            with open(log, encoding="ascii", errors="replace") as lines:
                for line in lines:
                    reader.feed(line.rstrip("\n"))
        except OSError as error:
            raise BuildError(f"strace left no readable trace of `{shlex.join(argv)}` "
                             f"({error.strerror}): check that {strace_path} is strace"
                             ) from None
    return sorted(path for path in reader.paths() if _is_rootfs_file(path))


def _check_program(name: str, workdir: str) -> None:
    """Refuse a command that cannot start, before strace would say so less clearly."""
    if "/" in name:
        path = os.path.join(workdir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return
        where = f" (looked in {workdir})" if not name.startswith("/") else ""
    else:
        if shutil.which(name) is not None:
            return
        where = " in PATH"
    raise BuildError(f"cannot trace {name}: command not found{where}, or not executable")


def _run_strace(strace: str, argv: list[str], workdir: str, log: str, tmp: str,
                stdout: BinaryIO | None, timeout: float | None,
                run_for: float | None) -> None:
    """Run the command under strace, logging to ``log``; raise BuildError on failure."""
    shown = shlex.join(argv)
    strace_argv = [strace, "-f", "-qq", "-xx", "-y", "-z", "--seccomp-bpf",
                   "-e", "trace=" + ",".join(_TRACED_CALLS), "-e", "signal=none",
                   "-o", log, "--", *argv]
    out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    try:
        # Files, not pipes: a child left running in the background cannot hold them
        # open and stall the wait; a new session lets one kill reach every process.
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(strace_argv, cwd=workdir, stdin=subprocess.DEVNULL,
                                    stdout=out if stdout is not None else None,
                                    stderr=err, start_new_session=True)
    except OSError as error:
        raise BuildError(f"cannot run {strace} to trace `{shown}`: {error.strerror}") from None
    try:
        status = proc.wait(timeout=timeout if run_for is None else run_for)
    except subprocess.TimeoutExpired:
        if run_for is not None:
            status = _stop_group(proc)
        else:
            raise BuildError(f"`{shown}` did not finish within {timeout:g} s under strace "
                             "and was killed: trace a run that exits by itself, allow more "
                             "time, or trace a server for a set time (--strace-for)"
                             ) from None
    finally:
        _kill_group(proc)
    try:
        if stdout is not None:
            with open(out_path, "rb") as out_file:
                shutil.copyfileobj(out_file, stdout)
        with open(err_path, "rb") as err_file:
            stderr = err_file.read().decode(errors="replace")
    except OSError as error:
        raise BuildError(f"cannot pass on the output of `{shown}`: {error.strerror}") from None
    if status != 0:
        raise BuildError(_failure(shown, status, stderr))


def _tracees(tracer: int) -> list[int]:
    """The processes ``tracer`` (strace) traces. A traced daemon may have left strace's
    session with setsid(), so a signal to the session would miss it; ptrace does not."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("TracerPid:"):
                        if int(line.split()[1]) == tracer:
                            found.append(int(name))
                        break
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """End a traced server that ran its time: TERM to each of its processes, as a
    service manager would, so it may clean up and strace logs to the end; KILL after
    ``grace``. Returns 0: we stopped it, which is no failure of it."""
    for pid in _tracees(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)  # strace exits when its last tracee has
    except subprocess.TimeoutExpired:
        _kill_group(proc)
    return 0


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill every traced process and strace if still running (timeout, interrupt)."""
    if proc.poll() is not None:
        return
    for pid in _tracees(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _failure(shown: str, status: int, stderr: str) -> str:
    """Say why strace or the command failed, in words the user can act on."""
    for line in stderr.splitlines():
        if line.startswith("strace:") and "ptrace" in line and "not permitted" in line:
            return (f"strace may not trace `{shown}`: ptrace is not permitted here "
                    f"({line.strip()}); allow it (sysctl kernel.yama.ptrace_scope=1 or "
                    "lower; in a container, add the SYS_PTRACE capability), or trace on "
                    "another machine")
    if status < 0:
        how = f"was killed by signal {signal.Signals(-status).name}"
    else:
        how = f"exited with status {status}"
    tail = stderr.strip()[-_STDERR_TAIL:]
    said = f"; its stderr ends with:\n{tail}" if tail else " and wrote nothing to stderr"
    return f"the traced command `{shown}` {how}{said}"


@dataclass
class _Cwd:
    """A working directory; processes made with CLONE_FS share one object."""

    path: str | None  # None: unknown, so relative paths cannot be placed


class _LogReader:
    """Turns strace log lines into the set of absolute paths opened or executed."""

    def __init__(self, workdir: str) -> None:
        self._workdir = workdir
        self._cwds: dict[int, _Cwd] = {}
        self._pending: dict[int, list[str]] = {}  # calls of children not yet forked
        self._partial: dict[int, str] = {}  # calls interrupted by another process's
        self._opened: set[str] = set()
        self._executed: list[tuple[str, str | None]] = []

    def feed(self, line: str) -> None:
        """Take one log line: ``PID call(args) = result``, maybe split in two."""
        match = _LINE.fullmatch(line)
        if match is None:
            return
        pid, text = int(match.group(1)), match.group(2)
        resumed = _RESUMED.fullmatch(text)
        if resumed is not None:
            text = self._partial.pop(pid, "") + resumed.group(1)
        elif text.endswith(_UNFINISHED):
            self._partial[pid] = text[:-len(_UNFINISHED)]
            return
        self._call(pid, text)

    def paths(self) -> set[str]:
        """Every path seen, with the interpreters the kernel loaded for the executed."""
        for pid, calls in self._pending.items():
            # Children whose fork was never logged: only absolute paths are placed.
            self._cwds[pid] = _Cwd(None)
            for text in calls:
                self._call(pid, text)
        self._pending.clear()
        found = set(self._opened)
        for program, cwd in self._executed:
            found.update(_interpreters(program, cwd))
        return found

    def _call(self, pid: int, text: str) -> None:
        cwd = self._cwds.get(pid)
        if cwd is None:
            if self._cwds:
                self._pending.setdefault(pid, []).append(text)
                return
            cwd = self._cwds[pid] = _Cwd(self._workdir)  # the first process is the command
        call = _CALL.match(text)
        if call is None:
            return
        name, args, result = call.group(1), call.group(2), int(call.group(3))
        if result < 0:
            return  # a failure -z let through: none should, but it opened nothing
        if name in _FORKS:
            self._forked(cwd, result, "CLONE_FS" in args)
        elif name == "fchdir":
            cwd.path = _fd_path(args, cwd)
        elif name == "chdir":
            cwd.path = _resolve(cwd.path, _first_string(args))
        elif name in _OPENS or name in _EXECS:
            base = _fd_path(args, cwd) if name in _DIRFD_FIRST else cwd.path
            path = _resolve(base, _first_string(args))
            if path is not None:
                self._opened.add(path)
                if name in _EXECS:
                    self._executed.append((path, cwd.path))

    def _forked(self, cwd: _Cwd, child: int, shares_cwd: bool) -> None:
        self._cwds[child] = cwd if shares_cwd else _Cwd(cwd.path)
        for text in self._pending.pop(child, []):
            self._call(child, text)


def _first_string(args: str) -> str | None:
    match = _STRING.search(args)
    return None if match is None else _decode(match.group(1))


def _fd_path(args: str, cwd: _Cwd) -> str | None:
    """The directory a call's first argument (a dirfd) stands for, if known."""
    match = _FD.match(args)
    if match is None:
        return None
    if match.group(1) == "AT_FDCWD" and cwd.path is not None:
        return cwd.path
    return None if match.group(2) is None else _decode(match.group(2))


def _decode(hex_escaped: str) -> str:
    """``\\x2f\\x65`` (strace -xx) to a str, undecodable bytes kept as surrogates."""
    return os.fsdecode(bytes.fromhex(hex_escaped.replace("\\x", "")))


def _resolve(base: str | None, path: str | None) -> str | None:
    """``path`` made absolute against ``base`` and normalised, keeping its symlinks.

    The kernel takes ``..`` after following the symlink before it (``/lib/..`` is
    ``/usr`` when /lib links to usr/lib), so everything up to the last ``..`` is
    resolved on this machine, where the run happened; the rest stays as named.
    """
    if path is None:
        return None
    if not path.startswith("/"):
        if base is None:
            return None
        path = os.path.join(base, path) if path else base
    parts = path.split("/")
    if ".." in parts:
        last = len(parts) - 1 - parts[::-1].index("..")
        path = os.path.join(os.path.realpath("/".join(parts[:last + 1])), *parts[last + 1:])
    path = os.path.normpath(path)
    # POSIX lets normpath keep a leading "//"; a spec wants the one spelling.
    return "/" + path.lstrip("/")


def _interpreters(program: str, cwd: str | None) -> list[str]:
    """The ``#!`` and ELF interpreters the kernel loads to run ``program``, in order."""
    found: list[str] = []
    current: str | None = program
    while current is not None and len(found) < _MAX_INTERPRETER_DEPTH:
        try:
            with open(current, "rb") as file:
                head = file.read(256)
                if head.startswith(b"#!"):
                    words = head[2:].split(b"\n", 1)[0].split()
                    named = os.fsdecode(words[0]) if words else None
                    current = _resolve(cwd, named)
                else:
                    interp = interpreter_of(current)
                    current = None if interp is None else _resolve(cwd, interp)
        except OSError:
            # Executed but unreadable (execute-only): the rootfs copy will say so.
            return found
        if current is not None:
            found.append(current)
    return found


def _is_rootfs_file(path: str) -> bool:
    """Whether ``path`` is a regular file (maybe via symlinks) outside pseudo filesystems."""
    if any(path == root or path.startswith(root + "/") for root in _PSEUDO_ROOTS):
        return False
    return os.path.isfile(path)


def render_spec(paths: Iterable[str]) -> str:
    """The spec text: the paths sorted and deduplicated, one a line, newline-terminated."""
    unique = sorted(set(paths))
    for path in unique:
        if not path.startswith("/") or "\n" in path or path != path.strip():
            raise BuildError(f"cannot put {path!r} in a spec: a spec line is one absolute "
                             "path, with no newline or surrounding blanks")
    return "".join(path + "\n" for path in unique)


def write_spec(paths: Iterable[str], spec: str) -> None:
    """Write ``render_spec(paths)`` to ``spec`` atomically (temp file, fsync, rename)."""
    data = render_spec(paths).encode(errors="surrogateescape")
    try:
        atomic_write(spec, data)
    except OSError as error:
        raise BuildError(f"cannot write the spec {spec}: {error.strerror}") from None


def read_spec(spec: str) -> list[str]:
    """The paths a spec lists, in its order, each once; comments and blanks skipped."""
    try:
        with open(spec, "rb") as file:
            text = file.read().decode(errors="surrogateescape")
    except OSError as error:
        raise BuildError(f"cannot read the spec {spec}: {error.strerror}") from None
    paths: dict[str, None] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        path = line.strip()
        if not path or path.startswith("#"):
            continue
        if not path.startswith("/"):
            raise BuildError(f"{spec}, line {number}: {path!r} is not an absolute path; "
                             "write it from the root, like /usr/bin/perl")
        paths[path] = None
    return list(paths)
