#!/usr/bin/env python3
"""The runner's own cost: one spawn of ``ROOT/bin/vzrun NAME`` to the app's end, against
chroot, runc, crun and a bare Python start; and what stays resident beside a container.

Part 1 (spawn): every case runs `/bin/true` from a static busybox rootfs, from
exec to exit, timed by the parent (posix_spawn + waitpid), round robin:

    python3 -IS -c pass          the interpreter's floor, which the launcher pays
    chroot ROOTFS /bin/true      the floor of any chroot runner
    vzrun, plain bundle          the builtin runner as init runs it, mounts prepared
                                 (mounts.prepare, as container.start does): no namespace
    vzrun, runc-spec bundle      the same runner on `runc spec`'s config: 5 namespaces
                                 (pid: a monitor forks), caps, no_new_privileges, ro root
    vzrun, plain + seccomp       the plain bundle with `vzmaster build`'s default seccomp
                                 profile (compiled at start; installed, then the exec
                                 and /bin/true run under it)
    vzrun, plain, monitor        the default mode: a monitor forks, waits for the app,
                                 looks for leftovers, records the exit, then exits
    vzrun, plain, respawn        exec mode after an instance no monitor saw end (no
                                 backoff): the runner looks for its leftovers first
    runc run / crun run          the runc-spec bundle (terminal false, args /bin/true)

crun refuses this host's hybrid cgroup layout ("cgroups in hybrid mode not supported"),
with or without --cgroup-manager=disabled, because it checks the layout before the
manager. It runs from a private mount namespace where /sys/fs/cgroup is a bare cgroup2
mount, with --cgroup-manager=disabled: so crun does no cgroup work at all, while runc
(cgroupfs v1) does. The parent switches into that namespace (setns) around each crun
spawn, outside the timed span.

Part 2 (resident memory): the same cases with `/bin/sleep`, and the VmRSS, RssAnon, Pss
and private memory (smaps_rollup) of every process that is not the app: the builtin
runner in exec mode (none), with a monitor (pid namespace, syslog, monitor=True), runc
and crun run in the foreground, and conmon (podman's monitor) over runc when conmon is
installed.

Part 3 (output): an app writing --flood-mb MB of lines as fast as it can, into the log
file itself (exec mode) or through the monitor's pump (the default): wall time, the
CPU seconds of the whole tree, and the log files left (the pump's cap is 10 MiB x 4).

With ``--base DIR`` (another checkout of vz, e.g. ``git worktree add DIR main``), part 1
also times the plain, monitor and respawn cases through a second launcher whose vzslave
is DIR's, in the same round robin: the runner's own cost before and after a change.

Run as root: python3 bench/runner.py [--runs 31] [--python /usr/bin/python3] [--base DIR]
"""

from __future__ import annotations

import argparse
import json
import marshal
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vzmaster.imaging.ociconfig import default_seccomp  # noqa: E402
from vzslave import linux, mounts, oci  # noqa: E402
from vzslave.launcher import render_launcher  # noqa: E402
from vzslave.plans import BACKOFF  # noqa: E402

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "true", "sleep")
CRUN_ERROR = "cgroups in hybrid mode not supported"


class State:
    """A vz state root (ROOT/bin/vzrun, containers/, logs/) holding the bench's bundles."""

    def __init__(self, work: str, python: str, base: str | None = None) -> None:
        self.root = os.path.join(work, "vz")
        self.python = python
        for sub in ("bin", "containers", "logs", "bundles"):
            os.makedirs(os.path.join(self.root, sub))
        self.launcher = self.write_launcher("vzrun", None)
        # The same plans and state, run by another checkout's vzslave (--base).
        self.base_launcher = self.write_launcher("vzrun-base", base) if base else ""
        self.plans: dict[str, dict[str, Any]] = {}

    def write_launcher(self, name: str, path: str | None) -> str:
        """ROOT/bin/NAME, running the vzslave at ``path`` (this one's by default)."""
        launcher = os.path.join(self.root, "bin", name)
        text = render_launcher(launcher, self.root, python=self.python)
        if path is not None:
            text = render_launcher(launcher, self.root, python=self.python,
                                   path=os.path.abspath(path))
        with open(launcher, "wb") as out:
            out.write(text)
        os.chmod(launcher, 0o755)
        return launcher

    def bundle(self, name: str, args: list[str], spec: bool,
               linux: dict[str, Any] | None = None) -> str:
        """A bundle of a busybox rootfs: `runc spec`'s config, or a bare process config."""
        bundle = os.path.join(self.root, "bundles", name)
        rootfs = os.path.join(bundle, "rootfs")
        for sub in ("bin", "proc", "dev", "sys", "tmp", "etc"):
            os.makedirs(os.path.join(rootfs, sub))
        shutil.copy(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(rootfs, "bin", applet))
        if spec:
            subprocess.run(["runc", "spec"], cwd=bundle, check=True)
            with open(os.path.join(bundle, "config.json")) as source:
                config = json.load(source)
            config["process"].update(terminal=False, args=args)
        else:  # as tests/tarballs.py busybox_image writes it
            config = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                      "process": {"args": args, "cwd": "/", "env": ["PATH=/bin"]}}
            if linux:
                config["linux"] = linux
        with open(os.path.join(bundle, "config.json"), "w") as out:
            json.dump(config, out)
        return bundle

    def container(self, name: str, bundle: str, **log: Any) -> dict[str, Any]:
        """Write the plan of container ``name`` as container.start does; prepare mounts."""
        plan = oci.build_plan(oci.load_config(bundle), bundle, name)
        state_dir = os.path.join(self.root, "containers", name)
        os.makedirs(state_dir)
        monitor = bool(log.pop("monitor", False))
        plan.update(runtime="builtin", runtime_path=None, state_dir=state_dir,
                    log=dict({"path": os.path.join(self.root, "logs", name + ".log"),
                              "max_bytes": 10 << 20, "keep": 3, "syslog": False}, **log),
                    backoff=dict(BACKOFF), monitor=monitor)
        self.plans[name] = plan
        self.save(name)
        if not any(ns["type"] == "mount" for ns in plan["namespaces"]):
            mounts.prepare(plan)
        return plan

    def save(self, name: str) -> None:
        """Write the plan of container ``name`` where the runner reads it."""
        with open(os.path.join(self.root, "containers", name, "plan.marshal"), "wb") as out:
            marshal.dump(self.plans[name], out)

    def fresh(self, name: str) -> None:
        """Forget the last spawn, as container.start does: no streak, so no backoff."""
        try:
            os.unlink(os.path.join(self.root, "containers", name, "run"))
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Unmount what prepare mounted."""
        for plan in self.plans.values():
            mounts.release(plan)


class CrunNamespace:
    """A mount namespace where /sys/fs/cgroup is pure cgroup2, held by a sleeping child."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && "
             "echo ready && exec sleep 100000"], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("cannot make a cgroup2-only mount namespace for crun")
        self.inside = os.open("/proc/{}/ns/mnt".format(self.proc.pid), os.O_RDONLY)
        self.outside = os.open("/proc/self/ns/mnt", os.O_RDONLY)

    def enter(self) -> None:
        linux.setns(self.inside, linux.CLONE_NEWNS)

    def leave(self) -> None:
        linux.setns(self.outside, linux.CLONE_NEWNS)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.inside)
        os.close(self.outside)


_NULL = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDWR, 0),
         (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)]


def spawn(argv: list[str], quiet: bool = True) -> int:
    """Start argv (stdio on /dev/null unless ``quiet`` is false); its pid."""
    return os.posix_spawn(argv[0], argv, dict(os.environ),
                          file_actions=_NULL if quiet else [])


def timed_run(argv: list[str]) -> float:
    """Seconds from spawn to exit of argv; raises if it fails."""
    started = time.perf_counter()
    pid = spawn(argv)
    status = os.waitpid(pid, 0)[1]
    elapsed = time.perf_counter() - started
    if status != 0:
        raise RuntimeError("{} failed (wait status {})".format(argv, status))
    return elapsed


class Case:
    """One timed case: argv, with what to do before (untimed) and around the spawn."""

    def __init__(self, label: str, argv: list[str], before: Callable[[], None] = lambda: None,
                 enter: Callable[[], None] = lambda: None,
                 leave: Callable[[], None] = lambda: None) -> None:
        self.label, self.argv, self.before = label, argv, before
        self.enter, self.leave = enter, leave

    def run(self) -> float:
        self.before()
        self.enter()
        try:
            return timed_run(self.argv)
        finally:
            self.leave()


def crun_works(crun: str, bundle: str, ns: CrunNamespace | None) -> str:
    """'' if crun runs the bundle, else its error."""
    if ns:
        ns.enter()
    try:
        done = subprocess.run([crun, "--cgroup-manager=disabled", "run", "--bundle", bundle,
                               "vzbench-probe"], capture_output=True, timeout=30)
    finally:
        if ns:
            ns.leave()
    return "" if done.returncode == 0 else (done.stderr.decode().strip() or "exit {}".format(
        done.returncode))


class Crun:
    """How crun can run here: argv (empty if it cannot), the namespace it needs, why."""

    def __init__(self, probe_bundle: str) -> None:
        self.argv: list[str] = []
        self.ns: CrunNamespace | None = None
        path = shutil.which("crun")
        self.error = "not installed" if path is None else crun_works(path, probe_bundle, None)
        if path is None:
            return
        if self.error:
            try:
                self.ns = CrunNamespace()
            except (OSError, RuntimeError) as exc:
                self.error += "; and no cgroup2 namespace: {}".format(exc)
                return
            again = crun_works(path, probe_bundle, self.ns)
            if again:
                self.error += "; in a cgroup2-only mount namespace: " + again
                self.close()
                return
        self.argv = [path, "--cgroup-manager=disabled", "run"]

    def enter(self) -> None:
        if self.ns:
            self.ns.enter()

    def leave(self) -> None:
        if self.ns:
            self.ns.leave()

    def close(self) -> None:
        if self.ns:
            self.ns.close()
            self.ns = None


def spawn_cases(state: State, runs: int, crun: Crun) -> None:
    plain = state.bundle("plain", ["/bin/true"], spec=False)
    spec = state.bundle("spec", ["/bin/true"], spec=True)
    filtered = state.bundle("seccomp", ["/bin/true"], spec=False, linux={
        "seccomp": default_seccomp(os.uname().machine)})
    state.container("plain", plain)
    state.container("specrun", spec)
    state.container("seccomp", filtered)
    state.container("plainmon", plain, monitor=True)
    state.container("respawn", plain)
    # No backoff, and no streak either: past 1024 quick runs in a row backoff_delay's
    # 2 ** streak no longer fits a float, and the runner fails (long --runs, --base).
    state.plans["respawn"]["backoff"] = {"initial": 0.0, "max": 0.0, "stable": 0.0}
    state.save("respawn")
    rootfs = os.path.join(plain, "rootfs")
    cases = [
        Case("python3 -IS -c pass", [state.python, "-IS", "-c", "pass"]),
        Case("chroot ROOTFS /bin/true", [shutil.which("chroot") or "/usr/sbin/chroot",
                                         rootfs, "/bin/true"]),
        Case("vzrun, plain bundle (prepared)", [state.launcher, "plain"],
             before=lambda: state.fresh("plain")),
        Case("vzrun, runc-spec bundle (ns+caps+nnp)", [state.launcher, "specrun"],
             before=lambda: state.fresh("specrun")),
        Case("vzrun, plain + build's seccomp profile", [state.launcher, "seccomp"],
             before=lambda: state.fresh("seccomp")),
        Case("vzrun, plain, monitor (the default)", [state.launcher, "plainmon"],
             before=lambda: state.fresh("plainmon")),
        Case("vzrun, plain, respawn (exec mode)", [state.launcher, "respawn"]),
        Case("runc run, runc-spec bundle", [shutil.which("runc") or "runc", "run",
                                            "--bundle", spec, "vzbench-runc"]),
    ]
    if crun.argv:
        cases.append(Case("crun run, runc-spec bundle" + (" (*)" if crun.ns else ""),
                          crun.argv + ["--bundle", spec, "vzbench-crun"],
                          enter=crun.enter, leave=crun.leave))
    # --base: the same case through the other checkout, run next to it (each first in
    # every other round), so that both see the same moment of this noisy machine.
    twins: dict[str, Case] = {}
    if state.base_launcher:
        for case, name in ((cases[2], "plain"), (cases[5], "plainmon"), (cases[6], "respawn")):
            twins[case.label] = Case(case.label.replace("vzrun", "vzrun at base", 1),
                                     [state.base_launcher, name], before=case.before)
    everything = cases + list(twins.values())
    for case in everything:
        case.run()  # warm up: page cache, runtimes' state dirs
    samples: dict[str, list[float]] = {case.label: [] for case in everything}
    for round_ in range(runs):
        for case in cases:
            pair = [case, twins[case.label]] if case.label in twins else [case]
            for each in pair if round_ % 2 == 0 else pair[::-1]:
                samples[each.label].append(each.run() * 1000)
    medians = {label: statistics.median(s) for label, s in samples.items()}
    print("Spawn to exit of /bin/true, median of {} runs, round robin (ms)".format(runs))
    for case in everything:
        s = sorted(samples[case.label])
        print("  {:42} {:7.2f}   (p10 {:6.2f}, p90 {:6.2f})".format(
            case.label, medians[case.label], s[len(s) // 10], s[len(s) * 9 // 10]))
    if not crun.argv:
        print("  crun: not measurable here: {}".format(crun.error))
    elif crun.ns:
        print("  (*) crun refuses the host's cgroups ({!r}): run in a private mount "
              "namespace\n      with /sys/fs/cgroup as bare cgroup2 and --cgroup-manager="
              "disabled (no cgroup work)".format(crun.error.splitlines()[0]))
    vz, vz_spec = medians[cases[2].label], medians[cases[3].label]
    py, chroot = medians[cases[0].label], medians[cases[1].label]
    print()
    for label, value in medians.items():
        if label.startswith(("runc", "crun")):
            print("  vzrun plain / {:34} {:5.2f}x   runc-spec under vzrun / it: {:5.2f}x".format(
                label.split(",")[0], vz / value, vz_spec / value))
    print("  vzrun plain / chroot                       {:5.2f}x   (+{:.1f} ms)".format(
        vz / chroot, vz - chroot))
    print("  vzrun plain - python3 -IS -c pass          {:+.1f} ms (the runner's own work "
          "after the interpreter start)".format(vz - py))
    print("  vzrun seccomp - vzrun plain                {:+.2f} ms (installing the filter, "
          "and the app under it)".format(medians[cases[4].label] - vz))
    for here, twin in twins.items():
        base = twin.label
        print("  {:42} {:5.3f}x   ({:+.2f} ms; the runner's own work: {:+.1f}%)".format(
            here.split(" (")[0] + " / at base", medians[here] / medians[base],
            medians[here] - medians[base],
            100 * (medians[here] - medians[base]) / (medians[base] - py)))


# -- part 2: resident memory --------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    try:
        with open("/proc/{}/status".format(pid)) as source:
            return dict(line.rstrip("\n").split(":\t", 1) for line in source if ":\t" in line)
    except OSError:
        return {}


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir("/proc/{}/task".format(pid)):
        try:
            with open("/proc/{}/task/{}/children".format(pid, task)) as source:
                found += [int(p) for p in source.read().split()]
        except OSError:
            pass
    return found


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    result, todo = [], [pid]
    while todo:
        each = todo.pop()
        result.append(each)
        todo += _children(each)
    return result


def wait_for_app(pids: Callable[[], list[int]], timeout: float = 20) -> list[int]:
    """Wait until the app, `sleep`, runs among ``pids()``; its pids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # By name: a runtime's pivot_root hides the rootfs path from /proc/PID/root.
        apps = [p for p in pids() if _status(p).get("Name") == "sleep"]
        if apps:
            time.sleep(0.3)  # let the runtime settle (runc's init exits, crun frees)
            return apps
        time.sleep(0.02)
    raise RuntimeError("the app never ran")


def _rollup(pid: int) -> dict[str, int]:
    """Pss and the private kB of ``pid`` (smaps_rollup, Linux 4.14+; {} without it)."""
    found = {}
    try:
        with open("/proc/{}/smaps_rollup".format(pid)) as source:
            for line in source:
                key, _, value = line.partition(":")
                if key in ("Pss", "Private_Clean", "Private_Dirty"):
                    found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


def rss_line(label: str, ours: list[int]) -> str:
    if not ours:
        return "  {:44} {:>3} {:>10} {:>10} {:>10} {:>10}   {}".format(
            label, 0, "-", "-", "-", "-", "nothing of ours")
    rss = anon = pss = private = 0
    names = []
    for pid in ours:
        status = _status(pid)
        rss += int(status.get("VmRSS", "0 kB").split()[0])
        anon += int(status.get("RssAnon", "0 kB").split()[0])
        rollup = _rollup(pid)
        pss += rollup.get("Pss", 0)
        private += rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
        names.append("{}[{}]".format(status.get("Name", "?"), pid))
    return "  {:44} {:>3} {:>7} kB {:>7} kB {:>7} kB {:>7} kB   {}".format(
        label, len(ours), rss, anon, pss, private, " ".join(names))


def kill_tree(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def resident_cases(state: State, crun: Crun, work: str) -> None:
    plain = state.bundle("sleep", ["/bin/sleep", "100000"], spec=False)
    spec = state.bundle("specsleep", ["/bin/sleep", "100000"], spec=True)
    state.container("sleep", plain)
    state.container("sleepmon", plain, monitor=True)
    state.container("sleepsys", plain, syslog=True)
    state.container("sleepns", spec)
    print("\nResident beside one running `sleep` (/proc/PID/status and smaps_rollup)")
    print("  {:44} {:>3} {:>10} {:>10} {:>10} {:>10}   {}".format(
        "case", "n", "VmRSS", "RssAnon", "Pss", "private", "processes"))
    for label, name in (
            ("vzrun, exec mode (monitor=False)", "sleep"),
            ("vzrun, monitor (the default)", "sleepmon"),
            ("vzrun, syslog=True (monitor pumps output)", "sleepsys"),
            ("vzrun, runc-spec bundle (pid ns: monitor)", "sleepns")):
        state.fresh(name)
        pid = spawn([state.launcher, name])
        apps = wait_for_app(lambda pid=pid: tree(pid))
        print(rss_line(label, [p for p in tree(pid) if p not in apps]))
        kill_tree(tree(pid))
        reap(pid)
    runtimes = [("runc run (foreground)", [shutil.which("runc") or "runc", "run", "--bundle",
                                           spec, "vzbench-runc-rss"], None)]
    if crun.argv:
        runtimes.append(("crun run (foreground{})".format(", (*)" if crun.ns else ""),
                         crun.argv + ["--bundle", spec, "vzbench-crun-rss"], crun))
    for label, argv, via in runtimes:
        if via:
            via.enter()
        try:
            pid = spawn(argv)
        finally:
            if via:
                via.leave()
        apps = wait_for_app(lambda pid=pid: tree(pid))
        print(rss_line(label, [p for p in tree(pid) if p not in apps]))
        kill_tree(apps)
        reap(pid)
    conmon = shutil.which("conmon")
    if conmon is None:
        print("  conmon: not installed")
        return
    run_dir = os.path.join(work, "conmon")
    os.makedirs(run_dir)
    cid = "vzbench-conmon"
    pidfile = os.path.join(run_dir, "conmon.pid")
    done = subprocess.run([conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
                           "-r", shutil.which("runc") or "runc", "-b", spec,
                           "-p", os.path.join(run_dir, "ctr.pid"), "-P", pidfile,
                           "-l", "k8s-file:" + os.path.join(run_dir, "ctr.log"),
                           "--exit-dir", run_dir, "--socket-dir-path", run_dir,
                           "--log-level", "error"], capture_output=True, timeout=30)
    try:
        if done.returncode != 0:
            print("  conmon: failed: {}".format(done.stderr.decode().strip()))
            return
        deadline = time.monotonic() + 10  # conmon's daemon half runs `runc create` later
        while b'"created"' not in subprocess.run(["runc", "state", cid], capture_output=True,
                                                 ).stdout and time.monotonic() < deadline:
            time.sleep(0.02)
        subprocess.run(["runc", "start", cid], check=True, timeout=30)
        with open(pidfile) as source:
            monitor = int(source.read().strip())
        apps = wait_for_app(lambda: tree(monitor))
        print(rss_line("conmon over runc (runc create + start)",
                       [p for p in tree(monitor) if p not in apps]))
    finally:
        subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True)
        time.sleep(0.3)
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)


# -- part 3: the app's output, into the file or through the monitor ---------------


def flood_cases(state: State, megabytes: int, runs: int) -> None:
    line = "a line of flood output, as an app that logs too much writes it"
    script = "yes '{}' | head -c {}".format(line, megabytes * 1000 * 1000)
    bundle = state.bundle("flood", ["/bin/sh", "-c", script], spec=False)
    for sub in ("yes", "head"):
        os.symlink("busybox", os.path.join(bundle, "rootfs", "bin", sub))
    cases = [("exec mode: the app writes the file", "floodexec", False),
             ("monitor (default): the pump writes it", "floodmon", True)]
    for _, name, monitor in cases:
        state.container(name, bundle, monitor=monitor)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for _, name, _ in cases}
    for _ in range(runs):
        for _, name, _ in cases:
            state.fresh(name)
            for entry in os.listdir(os.path.join(state.root, "logs")):
                if entry.startswith(name + ".log"):
                    os.unlink(os.path.join(state.root, "logs", entry))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            os.waitpid(spawn([state.launcher, name]), 0)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            samples[name].append((wall, cpu))
    print("\nAn app writing {} MB of lines to its log, median of {} runs".format(megabytes,
                                                                            runs))
    print("  {:40} {:>8} {:>8} {:>9}   {}".format("case", "wall s", "CPU s", "MB/s",
                                                  "log files left (MB)"))
    for label, name, _ in cases:
        wall = statistics.median(w for w, _ in samples[name])
        cpu = statistics.median(c for _, c in samples[name])
        files = sorted(e for e in os.listdir(os.path.join(state.root, "logs"))
                       if e.startswith(name + ".log"))
        sizes = " ".join("{}={:.1f}".format(e[len(name):], os.path.getsize(
            os.path.join(state.root, "logs", e)) / 1e6) for e in files)
        print("  {:40} {:8.2f} {:8.2f} {:9.0f}   {}".format(label, wall, cpu,
                                                         megabytes / wall, sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--python", default="/usr/bin/python3",
                        help="the interpreter of the launcher's #! line (a node's python3)")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--flood-mb", type=int, default=200,
                        help="MB the flooding app writes in part 3 (0: skip it)")
    parser.add_argument("--base", default=None, metavar="DIR",
                        help="another vz checkout: time its runner too (before/after)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it mounts, chroots and runs runc and crun")
    with tempfile.TemporaryDirectory(prefix="vzbench-") as work:
        state = State(work, args.python, args.base)
        crun = Crun(state.bundle("probe", ["/bin/true"], spec=True))
        try:
            spawn_cases(state, args.runs, crun)
            if not args.skip_rss:
                resident_cases(state, crun, work)
            if args.flood_mb:
                flood_cases(state, args.flood_mb, max(args.runs // 10, 3))
        finally:
            crun.close()
            state.release()
    print("\n{}; {} {}".format(subprocess.run([args.python, "--version"], capture_output=True,
                                                text=True).stdout.strip(),
                                 *[subprocess.run([r, "--version"], capture_output=True,
                                                  text=True).stdout.split("\n")[0]
                                   for r in ("runc", "crun")]))


if __name__ == "__main__":
    main()
