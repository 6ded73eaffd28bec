"""The runner's steps, order and bookkeeping, against recording fakes of os and linux."""

import errno
import os
import resource
import subprocess
import sys

import pytest

import vzslave
from tests.conftest import modules_loaded_by
from vzslave import linux, mounts as mount_code, runio, runner
from vzslave.runio import read_run_record, write_run_record
from tests.runnerfakes import (NAME, Execd, Exited, FakeLinux, FakeOs, make_plan, rootfs_bind, save)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def calls(monkeypatch):
    """Fake os and linux in the runner; yields the list of calls they record."""
    recorded = []
    monkeypatch.setattr(runner, "os", FakeOs(recorded))
    monkeypatch.setattr(runner, "linux", FakeLinux(recorded))
    monkeypatch.setattr(mount_code, "linux", runner.linux)
    monkeypatch.setattr(runner, "reset_signals", lambda: recorded.append(("reset_signals",)))
    monkeypatch.setattr(resource, "setrlimit", lambda *a: recorded.append(("setrlimit",) + a))
    monkeypatch.setattr(runner.time, "sleep", lambda s: recorded.append(("sleep", s)))
    monkeypatch.setattr(runio, "read_stripped", lambda path: b"boot-1")  # marker == boot id
    return recorded


def run_main(root, expect=Execd):
    with pytest.raises(expect) as raised:
        runner.main([NAME], str(root))
    return raised.value


def names(calls):
    return [call[0] if call[0] != "prctl" else "prctl {}".format(call[1]) for call in calls]


def test_steps_run_in_order_from_mounts_to_exec(tmp_path, calls):
    plan = make_plan(tmp_path)
    plan["namespaces"] = [{"type": "mount", "flag": linux.CLONE_NEWNS, "path": None}]
    save(tmp_path, plan)
    run_main(tmp_path)
    wanted = ["unshare", "mount", "fchdir", "pivot_root", "fchdir", "mount", "umount2",
              "chdir", "setrlimit",
              "prctl {}".format(linux.PR_CAPBSET_DROP), "setgroups",
              "prctl {}".format(linux.PR_SET_KEEPCAPS), "setgid", "setuid", "umask", "capset",
              "prctl {}".format(linux.PR_CAP_AMBIENT), "prctl {}".format(linux.PR_SET_NO_NEW_PRIVS),
              "reset_signals", "execve"]
    seen = [n for n in names(calls) if n in wanted]
    seen = [n for i, n in enumerate(seen) if n != "umask" or "setuid" in seen[:i]]
    assert [n for i, n in enumerate(seen) if i == 0 or seen[i - 1] != n] == wanted


def test_the_app_gets_the_plans_identity_and_environment(tmp_path, calls):
    save(tmp_path, make_plan(tmp_path))
    run_main(tmp_path)
    assert ("setgroups", [7]) in calls
    assert ("setgid", 4243) in calls and ("setuid", 4242) in calls
    assert calls[-1] == ("execve", "/usr/bin/app", ["app", "-f"],
                         {"PATH": "/usr/bin:/bin", "HOME": "/"})
    assert ("umask", 0o027) in calls and ("chdir", "/srv") in calls


def test_an_empty_gid_list_clears_roots_supplementary_groups(tmp_path, calls):
    save(tmp_path, make_plan(tmp_path, additional_gids=[], uid=0, gid=0))
    run_main(tmp_path)
    assert ("setgroups", []) in calls


def test_the_bounding_set_keeps_exactly_the_planned_capabilities(tmp_path, calls):
    save(tmp_path, make_plan(tmp_path))
    run_main(tmp_path)
    dropped = [c[2] for c in calls if c[:2] == ("prctl", linux.PR_CAPBSET_DROP)]
    assert dropped == [2, 3]  # cap_last_cap is 3 in the fake; 0 and 1 are kept
    assert ("capset", 1, 3, 1) in calls


def test_a_bounding_set_that_cannot_be_dropped_fails_the_spawn(tmp_path, calls, capfd):
    """When the bounding set cannot be dropped, the spawn fails: no wider set than asked."""
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    runner.linux.prctl_errors[linux.PR_CAPBSET_DROP, 2] = PermissionError(
        errno.EPERM, "Operation not permitted")
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["last_error"] == (
        "capabilities: cannot drop CAP_DAC_READ_SEARCH from the bounding set: Operation not "
        "permitted (dropping needs CAP_SETPCAP)")
    assert "execve" not in names(calls)


def test_capabilities_that_cannot_be_set_fail_the_spawn_naming_the_missing_ones(
        tmp_path, calls):
    """When capset fails, the spawn fails (as runc's create), naming the caps not held."""
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    runner.linux.capset_error = PermissionError(errno.EPERM, "Operation not permitted")
    runner.linux.permitted = 1  # CAP_CHOWN only: CAP_DAC_OVERRIDE (1) is asked for, not held
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["last_error"] == (
        "capabilities: cannot set the capabilities: Operation not permitted; "
        "CAP_DAC_OVERRIDE not available here (not in this host's bounding set?): remove it "
        "from process.capabilities")
    assert "execve" not in names(calls)


def test_an_ambient_capability_that_cannot_be_raised_fails_the_spawn(tmp_path, calls):
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    runner.linux.prctl_errors[linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE] = (
        PermissionError(errno.EPERM, "Operation not permitted"))
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["last_error"] == (
        "capabilities: cannot raise ambient CAP_CHOWN: Operation not permitted")


def test_ambient_capabilities_not_inheritable_are_skipped_with_a_warning_as_runc_does(
        tmp_path, calls, capfd):
    """When an ambient cap is not inheritable (runc spec's config), it is skipped, said."""
    save(tmp_path, make_plan(tmp_path, capabilities={
        "bounding": [1, 2], "effective": [1, 2], "permitted": [1, 2], "inheritable": [1],
        "ambient": [1, 2]}))
    run_main(tmp_path)
    assert [c[3] for c in calls if c[:3] == ("prctl", linux.PR_CAP_AMBIENT,
                                             linux.PR_CAP_AMBIENT_RAISE)] == [1]
    assert ("warning: ambient CAP_DAC_READ_SEARCH not raised: not in "
            "process.capabilities.inheritable and permitted") in capfd.readouterr().err
    assert names(calls)[-1] == "execve"


def test_a_kernel_without_ambient_capabilities_gets_a_warning_as_under_runc(
        tmp_path, calls, capfd):
    """When the kernel has no ambient set (before 4.3), the app runs with a warning."""
    save(tmp_path, make_plan(tmp_path))
    runner.linux.prctl_errors[linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE] = OSError(
        errno.EINVAL, "Invalid argument")
    run_main(tmp_path)
    assert "warning: this kernel has no ambient capabilities" in capfd.readouterr().err
    assert names(calls)[-1] == "execve"


def test_sysctls_are_written_under_proc_sys_before_entering_the_rootfs(tmp_path, calls,
                                                                      monkeypatch):
    plan = make_plan(tmp_path)
    plan["sysctl"] = [["net/ipv4/ip_forward", "1"]]
    save(tmp_path, plan)
    written = []

    class Out(object):
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            written.append((self.path, text))
            calls.append(("sysctl",))

    real_open = open
    monkeypatch.setattr(runner, "open", lambda path, mode="r", *a: Out(path) if (
        path.startswith("/proc/sys/")) else real_open(path, mode, *a), raising=False)
    run_main(tmp_path)
    assert written == [("/proc/sys/net/ipv4/ip_forward", "1")]
    assert names(calls).index("sysctl") < names(calls).index("pivot_root")


def test_a_sysctl_that_cannot_be_written_fails_the_spawn_naming_it(tmp_path, calls):
    plan = make_plan(tmp_path)
    plan["sysctl"] = [["net/no/such/key", "1"]]
    save(tmp_path, plan)
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["last_error"].startswith(
        "sysctl: cannot set linux.sysctl.net.no.such.key to '1': ")


def test_keepcaps_is_skipped_without_capabilities_or_for_root(tmp_path, calls):
    save(tmp_path, make_plan(tmp_path, capabilities=None, no_new_privileges=False))
    run_main(tmp_path)
    assert not [c for c in calls if c[0] in ("prctl", "capset", "preload")]


def test_ctypes_is_preloaded_before_pivot_root_when_later_steps_need_it(tmp_path, calls):
    save(tmp_path, make_plan(tmp_path))
    run_main(tmp_path)
    seen = names(calls)
    assert seen.index("preload") < seen.index("pivot_root")


def plan_mounts(calls, rootfs=None):
    """The mounts of the plan itself: not the private namespace's rslave, not the
    rootfs bound onto itself, not the detaching of the old root."""
    return [c for c in calls if c[0] == "mount" and c[1] not in (None, rootfs)]


def test_the_app_enters_its_rootfs_by_pivot_root_and_detaches_the_old_root(tmp_path, calls):
    save(tmp_path, make_plan(tmp_path))
    run_main(tmp_path)
    seen = [c for c in calls if c[0] in ("unshare", "pivot_root", "umount2", "chroot")]
    assert seen == [("unshare", linux.CLONE_NEWNS), ("pivot_root", ".", "."),
                    ("umount2", ".", linux.MNT_DETACH)]


def test_a_node_that_cannot_pivot_root_runs_the_app_in_a_chroot(tmp_path, calls):
    plan = make_plan(tmp_path)
    plan["enter"] = "chroot"
    save(tmp_path, plan)
    run_main(tmp_path)
    assert ("chroot", plan["rootfs"]) in calls
    assert not [c for c in calls if c[0] in ("unshare", "pivot_root")]


SECCOMP = {"program": b"\x06\x00\x00\x00\x00\x00\xff\x7f", "flags": 1,
           "optional_flags": 4, "syscall": 317}


def test_with_no_new_privileges_seccomp_is_the_last_step_before_exec(tmp_path, calls):
    plan = make_plan(tmp_path)
    plan["seccomp"] = SECCOMP
    save(tmp_path, plan)
    run_main(tmp_path)
    seen = names(calls)
    assert seen[-4:] == ["prctl {}".format(linux.PR_SET_NO_NEW_PRIVS), "seccomp_filter",
                         "reset_signals", "execve"]
    assert ("seccomp_filter", SECCOMP["program"], 317, 1, 4) in calls


def test_without_no_new_privileges_seccomp_goes_in_before_privileges_drop(tmp_path, calls):
    plan = make_plan(tmp_path, no_new_privileges=False)
    plan["seccomp"] = SECCOMP
    save(tmp_path, plan)
    run_main(tmp_path)
    seen = names(calls)
    assert seen.count("seccomp_filter") == 1
    assert seen.index("setrlimit") < seen.index("seccomp_filter")
    assert seen.index("seccomp_filter") < seen.index("prctl {}".format(linux.PR_CAPBSET_DROP))
    assert seen.index("preload") < seen.index("pivot_root")


def test_a_plan_without_seccomp_installs_no_filter_and_preloads_nothing(tmp_path, calls):
    save(tmp_path, make_plan(tmp_path, capabilities=None, no_new_privileges=False))
    run_main(tmp_path)
    assert "seccomp_filter" not in names(calls) and "preload" not in names(calls)


def test_a_refused_filter_fails_the_seccomp_step(tmp_path, calls, capfd):
    plan = make_plan(tmp_path)
    plan["seccomp"] = SECCOMP
    save(tmp_path, plan)
    runner.linux.seccomp_error = OSError(22, "Invalid argument")
    assert run_main(tmp_path, expect=Exited).args == (127,)
    assert "execve" not in names(calls)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["last_error"].startswith("seccomp: the kernel refused the seccomp filter "
                                           "(Invalid argument)")
    assert "cannot start: seccomp: the kernel refused" in capfd.readouterr().err


def test_the_marker_of_this_boot_skips_every_mount(tmp_path, calls):
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    run_main(tmp_path)
    assert plan_mounts(calls, plan["rootfs"]) == []
    assert ("mount", plan["rootfs"], None, linux.MS_BIND | linux.MS_REC) not in calls


def test_the_marker_of_this_boot_skips_importing_the_mount_code(tmp_path, calls,
                                                                monkeypatch):
    save(tmp_path, make_plan(tmp_path))
    monkeypatch.setitem(sys.modules, "vzslave.mounts", None)  # importing it would fail
    monkeypatch.delattr(vzslave, "mounts", raising=False)
    assert isinstance(run_main(tmp_path), Execd)


def test_a_stale_marker_mounts_what_is_missing_and_marks_the_boot(tmp_path, calls,
                                                                  monkeypatch):
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    boot = {"/proc/sys/kernel/random/boot_id": b"boot-2"}
    monkeypatch.setattr(runio, "read_stripped", lambda path: boot.get(path, b"boot-1"))
    run_main(tmp_path)
    assert plan_mounts(calls) == [("mount", plan["rootfs"], None, linux.MS_BIND | linux.MS_REC),
                                  ("mount", "proc", "proc", 0)]
    assert os.path.exists(os.path.join(plan["state_dir"], "mounts"))


def test_an_unreadable_boot_id_never_counts_as_prepared(tmp_path, calls, monkeypatch):
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    monkeypatch.setattr(runio, "read_stripped", lambda path: b"")
    run_main(tmp_path)
    assert plan_mounts(calls, plan["rootfs"]) == [("mount", "proc", "proc", 0)]


def test_stdio_goes_to_the_log_and_other_fds_are_closed(tmp_path, calls, capfd):
    save(tmp_path, make_plan(tmp_path))
    run_main(tmp_path)
    assert [c for c in calls if c[0] in ("dup2", "closerange")] == [
        ("dup2", 0), ("dup2", 1), ("dup2", 2), ("closerange", 3)]
    err = capfd.readouterr().err
    assert "vz: app: spawn 1 at " in err and "(streak 0)" in err
    assert "vz: app: warning: process.terminal is true: ignored" in err


def test_the_run_record_says_running_before_the_app_enters_its_rootfs(tmp_path, calls,
                                                                      monkeypatch):
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    seen = {}
    fake = runner.linux

    def pivot_root(new_root, put_old):
        seen.update(read_run_record(os.path.join(plan["state_dir"], "run")))
        fake.calls.append(("pivot_root", new_root, put_old))

    monkeypatch.setattr(fake, "pivot_root", pivot_root, raising=False)
    run_main(tmp_path)
    assert seen["state"] == "running" and seen["pid"] == str(os.getpid())
    assert seen["spawns"] == "1" and seen["supervisor"] == "builtin"


def test_a_failing_exec_exits_127_and_records_why(tmp_path, calls, monkeypatch, capfd):
    plan = make_plan(tmp_path, args=["/bin/missing"])
    save(tmp_path, plan)
    runner.os.exec_error = FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["state"] == "failed"
    assert record["last_error"] == "cannot exec /bin/missing: No such file or directory"
    assert "vz: app: cannot exec /bin/missing: No such file or directory" in capfd.readouterr().err


def test_exec_searches_the_plans_path_and_reports_the_telling_error(tmp_path, calls):
    plan = make_plan(tmp_path, env=["PATH=/a:/b:/c"])
    save(tmp_path, plan)
    errors = [FileNotFoundError(errno.ENOENT, "x"), PermissionError(errno.EACCES, "denied"),
              FileNotFoundError(errno.ENOENT, "x")]
    fake = runner.os

    def execve(path, args, env):
        fake._record("execve", path)
        raise errors.pop(0)

    fake.execve = execve
    run_main(tmp_path, Exited)
    assert [c[1] for c in calls if c[0] == "execve"] == ["/a/app", "/b/app", "/c/app"]
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["last_error"] == "cannot exec app: denied"


def test_a_failing_mount_exits_127_naming_the_step(tmp_path, calls, monkeypatch, capfd):
    plan = make_plan(tmp_path)
    save(tmp_path, plan)
    monkeypatch.setattr(runio, "read_stripped", lambda path: path.encode())  # a stale marker
    runner.linux.mount_error = OSError(errno.EPERM, "Operation not permitted")
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["state"] == "failed"
    assert record["last_error"] == "mounts: cannot mount proc on /proc: Operation not permitted"
    assert "vz: app: cannot start: mounts: cannot mount proc" in capfd.readouterr().err


def test_a_plan_of_the_wrong_shape_fails_without_spinning(tmp_path, calls):
    plan = make_plan(tmp_path)
    del plan["process"]["cwd"]
    save(tmp_path, plan)
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["state"] == "failed" and "KeyError" in record["last_error"]


def test_a_missing_plan_is_logged_then_the_runner_sleeps_and_exits_1(tmp_path, calls):
    (tmp_path / "logs").mkdir()
    assert run_main(tmp_path, SystemExit).code == 1
    assert ("sleep", runner.IDLE) in calls
    text = (tmp_path / "logs" / "app.log").read_text()
    assert text.startswith("vz: app: cannot start: plan: no plan at ")
    assert "inittab line remains" in text


def test_a_runc_container_is_deleted_then_run_by_runc(tmp_path, calls):
    plan = make_plan(tmp_path)
    plan.update(runtime="runc", runtime_path="/usr/bin/runc")
    save(tmp_path, plan)
    run_main(tmp_path)
    assert ("waitpid", 4321) in calls
    assert calls[-1] == ("execv", "/usr/bin/runc",
                         ["/usr/bin/runc", "run", "--bundle", plan["bundle"], "vz-app"])
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["state"] == "running" and record["supervisor"] == "runc"
    assert "chroot" not in names(calls)


def test_the_containers_runtime_args_go_before_run_and_before_delete(tmp_path, calls):
    plan = make_plan(tmp_path)
    plan.update(runtime="crun", runtime_path="/usr/bin/crun",
                runtime_args=["--cgroup-manager=disabled", "--root=/run/x"])
    save(tmp_path, plan)
    run_main(tmp_path)
    assert calls[-1] == ("execv", "/usr/bin/crun", [
        "/usr/bin/crun", "--cgroup-manager=disabled", "--root=/run/x",
        "run", "--bundle", plan["bundle"], "vz-app"])
    assert runner.runtime_command(plan, "delete", "--force", "vz-app")[:4] == [
        "/usr/bin/crun", "--cgroup-manager=disabled", "--root=/run/x", "delete"]


def test_namespaces_are_joined_then_created_then_set_up(tmp_path, calls):
    plan = make_plan(tmp_path, capabilities=None)
    plan["namespaces"] = [
        {"type": "network", "flag": linux.CLONE_NEWNET, "path": "/proc/self/ns/net"},
        {"type": "mount", "flag": linux.CLONE_NEWNS, "path": None},
        {"type": "uts", "flag": linux.CLONE_NEWUTS, "path": None}]
    plan.update(hostname="box", domainname="example")
    save(tmp_path, plan)
    run_main(tmp_path)
    calls = [c for c in calls if c[0] != "umask"]
    assert calls[calls.index(("setns", linux.CLONE_NEWNET)) + 1:][:6] == [
        ("unshare", linux.CLONE_NEWNS | linux.CLONE_NEWUTS),
        ("mount", None, None, linux.MS_REC | linux.MS_SLAVE),
        ("sethostname", "box"), ("setdomainname", "example"),
        rootfs_bind(plan), ("mount", "proc", "proc", 0)]
    assert ("loopback_up",) not in calls  # a joined network namespace is left as it is


def test_a_namespace_that_cannot_be_joined_is_reported_naming_its_field(tmp_path, calls):
    """When setns refuses a path (a namespace of another type), the error names the field."""
    plan = make_plan(tmp_path, capabilities=None)
    plan["namespaces"] = [{"type": "ipc", "flag": linux.CLONE_NEWIPC,
                           "path": "/proc/self/ns/net", "field": "linux.namespaces[2]"}]
    save(tmp_path, plan)

    def setns(fd, flag):
        raise OSError(errno.EINVAL, "Invalid argument")

    runner.linux.setns = setns
    assert run_main(tmp_path, Exited).args == (127,)
    record = read_run_record(os.path.join(plan["state_dir"], "run"))
    assert record["last_error"] == (
        "namespaces: cannot join the ipc namespace at linux.namespaces[2].path "
        "/proc/self/ns/net: Invalid argument")


# -- backoff and the run record ----------------------------------------------

def test_backoff_doubles_from_initial_up_to_max():
    assert [runner.backoff_delay(s, 1.0, 10.0) for s in range(6)] == [0, 1, 2, 4, 8, 10]


def test_backoff_after_a_very_long_crash_loop_stays_at_max():
    """When an app has crashed quickly a few thousand times in a row (a day at the
    60 s cap), the delay is still the cap: 2.0 ** 1024 would overflow a float."""
    assert runner.backoff_delay(5000, 1.0, 60.0) == 60.0


def pace(tmp_path, record, now=1000.0, monkeypatch=None):
    plan = make_plan(tmp_path)
    path = os.path.join(plan["state_dir"], "run")
    if record is not None:
        write_run_record(path, record)
    spawn = runner.Spawn(NAME, plan)
    runner.pace_restarts(spawn, now)
    return spawn.record


def test_a_short_run_grows_the_streak_and_waits(tmp_path, calls):
    record = pace(tmp_path, {"state": "running", "started": "995", "streak": "2",
                             "spawns": "3"})
    assert record["streak"] == "3" and record["spawns"] == "4" and record["last_run"] == "5.000"
    assert ("sleep", 4.0) in calls


def test_a_stable_run_resets_the_streak(tmp_path, calls):
    record = pace(tmp_path, {"state": "running", "started": "900", "streak": "5"})
    assert record["streak"] == "0"
    assert not [c for c in calls if c[0] == "sleep"]


def test_a_failed_spawn_counts_as_a_short_run(tmp_path, calls):
    record = pace(tmp_path, {"state": "failed", "started": "999", "streak": "0"})
    assert record["streak"] == "1" and ("sleep", 1.0) in calls


def test_the_record_says_waiting_with_the_next_start_while_it_sleeps(tmp_path, calls,
                                                                     monkeypatch):
    seen = {}
    plan_dir = tmp_path / "containers" / NAME

    def sleep(seconds):
        seen.update(read_run_record(str(plan_dir / "run")))

    monkeypatch.setattr(runner.time, "sleep", sleep)
    pace(tmp_path, {"state": "running", "started": "999", "streak": "1"})
    assert seen["state"] == "waiting" and seen["next_start"] == "1002.000"


def test_after_the_wait_the_run_counts_from_its_real_start(tmp_path, calls, monkeypatch):
    """When a spawn fails after a long wait, the next one still sees a short run."""
    monkeypatch.setattr(runner.time, "time", lambda: 1060.5)
    record = pace(tmp_path, {"state": "failed", "started": "999", "streak": "7"})
    assert ("sleep", 60.0) in calls
    assert record["started"] == "1060.500" and record["next_start"] == ""


def test_a_missing_record_is_a_first_spawn(tmp_path, calls):
    record = pace(tmp_path, None)
    assert record["streak"] == "0" and record["spawns"] == "1"
    assert record["recent"] == "1000.000"


def test_recent_keeps_the_last_ten_spawns(tmp_path, calls):
    old = " ".join(str(t) for t in range(20))
    record = pace(tmp_path, {"state": "running", "started": "0", "recent": old})
    assert record["recent"].split() == [str(t) for t in range(11, 20)] + ["1000.000"]


# -- which mount namespace: vz's containers vs runch's (runc's rules) ----------------

def test_a_joined_mount_namespace_gets_a_private_child_for_a_vz_container(tmp_path, calls):
    plan = make_plan(tmp_path, capabilities=None)
    plan["namespaces"] = [{"type": "mount", "flag": linux.CLONE_NEWNS,
                           "path": "/proc/self/ns/mnt"}]
    save(tmp_path, plan)
    run_main(tmp_path)
    seen = [c for c in calls if c[0] in ("setns", "unshare", "pivot_root")]
    assert seen == [("setns", linux.CLONE_NEWNS), ("unshare", linux.CLONE_NEWNS),
                    ("pivot_root", ".", ".")]


def test_under_runch_a_joined_mount_namespace_is_entered_as_it_is(tmp_path, calls):
    """As runc: the app runs in the very mount namespace the config names."""
    plan = make_plan(tmp_path, capabilities=None)
    plan.update(mount_ns="config", namespaces=[
        {"type": "mount", "flag": linux.CLONE_NEWNS, "path": "/proc/self/ns/mnt"}])
    save(tmp_path, plan)
    run_main(tmp_path)
    seen = [c for c in calls if c[0] in ("setns", "unshare", "pivot_root")]
    assert seen == [("setns", linux.CLONE_NEWNS), ("pivot_root", ".", ".")]


def test_under_runch_no_mount_namespace_means_a_chroot_in_the_callers(tmp_path, calls):
    plan = make_plan(tmp_path, capabilities=None)
    plan.update(mount_ns="config", enter="chroot")
    save(tmp_path, plan)
    run_main(tmp_path)
    assert ("chroot", plan["rootfs"]) in calls
    assert not [c for c in calls if c[0] in ("unshare", "pivot_root")]


def test_a_shared_root_propagation_makes_the_rootfs_parent_mount_private(tmp_path, calls,
                                                                        monkeypatch):
    """pivot_root refuses a new root whose parent mount is shared: as runc, that parent
    is made private after "/" gets the asked propagation."""
    plan = make_plan(tmp_path, capabilities=None)
    plan["rootfs_propagation"] = linux.MS_SHARED
    save(tmp_path, plan)
    parent = os.path.dirname(os.path.dirname(plan["rootfs"]))
    monkeypatch.setattr(vzslave.fs, "mount_points", lambda: ["/", parent, plan["rootfs"]])
    run_main(tmp_path)
    mounts = [c for c in calls if c[0] == "mount" and c[1] is None]
    assert mounts[:2] == [("mount", None, None, linux.MS_SHARED),
                          ("mount", None, None, linux.MS_PRIVATE)]


# -- the monitor (real processes: a forked shell as the app; no root) ---------------------

# A runner cut down to what the monitor needs: fork it, and the child (the app's side)
# runs the shell script given.
MONITORED = """
import os, sys
sys.path.insert(0, {root!r})
from vzslave.runner import Spawn, fork_monitor
fork_monitor(Spawn("app", {{"rootfs": {rootfs!r}, "state_dir": {state!r}, "monitor": True,
                           "log": {{"path": {log!r}, "max_bytes": 1 << 20, "keep": 1,
                                    "syslog": False}}}}))
os.execv("/bin/sh", ["sh", "-c", sys.argv[1]])
"""


def monitored(tmp_path, script):
    """Run the monitor over ``script``; (its exit status, the run record, the log)."""
    rootfs, log, record = tmp_path / "rootfs", tmp_path / "app.log", tmp_path / "run"
    rootfs.mkdir(exist_ok=True)
    code = MONITORED.format(root=ROOT, rootfs=str(rootfs), state=str(tmp_path), log=str(log))
    done = subprocess.run([sys.executable, "-S", "-c", code, script], timeout=60,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = log.read_text() if log.exists() else ""
    return done.returncode, read_run_record(str(record)), text + done.stdout.decode()


def test_the_monitor_exits_with_the_apps_status_and_records_it(tmp_path):
    status, record, _ = monitored(tmp_path, "exit 3")
    assert status == 3
    assert record["state"] == "exited" and record["last_exit"] == "exit 3"
    assert float(record["last_run"]) >= 0


def test_the_monitor_pumps_the_apps_output_into_the_log(tmp_path):
    status, _, log = monitored(tmp_path, "echo out; echo err >&2")
    assert status == 0 and log.splitlines() == ["out", "err"]


def test_a_death_by_signal_is_recorded_and_exits_as_128_plus_the_signal(tmp_path):
    status, record, _ = monitored(tmp_path, "kill -TERM $$")
    assert status == 128 + 15 and record["last_exit"] == "signal 15"


def test_a_failure_the_apps_side_recorded_is_kept(tmp_path):
    """When the app's side fails a step (it writes failed, exits 127), the record says
    failed with its error, not exited."""
    fail = tmp_path / "fail.py"
    fail.write_text("import sys; sys.path.insert(0, {!r})\n"
                    "from vzslave.runio import write_run_record\n"
                    "write_run_record({!r}, dict(state='failed', last_error='user: no'))\n"
                    .format(ROOT, str(tmp_path / "run")))
    failing = "{} -S {}; exit 127".format(sys.executable, fail)
    status, record, _ = monitored(tmp_path, failing)
    assert status == 127
    assert (record["state"], record["last_error"], record["last_exit"]) == (
        "failed", "user: no", "exit 127")


def test_without_a_record_from_the_app_the_monitor_keeps_its_own(tmp_path):
    write_run_record(str(tmp_path / "run"), {"state": "running", "spawns": "4"})
    status, record, _ = monitored(tmp_path, "true")
    assert status == 0 and record["state"] == "exited"


# -- what a spawn imports -------------------------------------------------------------

def test_importing_the_runner_loads_only_its_leaf():
    """init execs the runner at every respawn: the mount code, the process finder and the
    log pump stay out until a spawn needs them, vzslave.fs and vzslave.errors for good."""
    loaded = modules_loaded_by("vzslave.runner")
    assert {name for name in loaded if name.startswith("vzslave")} == {
        "vzslave", "vzslave.runner", "vzslave.linux", "vzslave.runio"}
