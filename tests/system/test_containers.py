"""Containers under a real init (busybox init and sysvinit as PID 1), through real sshd
and vzmaster.Client: start, crash backoff, stop, sysadmin edits, logs."""

import re
import shutil
import threading
import time

import pytest

from tests import tarballs as tb
from tests.system.conftest import (INITTAB, ROOT, admin_lines, box_mounts, box_pids, connect,
                                   deploy, proc_status, wait_for)
from vzmaster import DisabledByAdminError, NoSuchContainerError

def test_start_runs_the_app_chrooted_as_its_user_with_env_cwd_and_rlimits(box, digests,
                                                                           tmp_path):
    deploy(box, digests, tmp_path, "web",
           ["sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) cwd=$(pwd) "
            "greeting=$GREETING nofile=$(ulimit -n); exec sleep 1000"],
           process={"user": {"uid": 4242, "gid": 4243}, "cwd": "/tmp",
                    "env": ["PATH=/bin", "GREETING=hi"],
                    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 321}]})
    with connect(box, digests) as node:
        status = node.start("web")
        assert status.state == "running", status
        assert status.supervisor == {"busybox": "busybox", "sysv": "sysvinit"}[box.init]
        line = wait_for(lambda: [x for x in node.logs("web", tail=10) if "uid=" in x],
                        what="the app's first line")[0]
    assert line == "uid=4242 gid=4243 groups=4243 cwd=/tmp greeting=hi nofile=321"
    [app] = box_pids(box, status.bundle + "/rootfs")  # the sleep, under our monitor
    assert proc_status(box, app)["Uid"].split()[0] == "4242"
    assert proc_status(box, app)["PPid"] == str(status.pid)
    assert status.entry is not None and status.entry.endswith(ROOT + "/bin/vzrun web")


def test_a_killed_app_comes_back_and_repeated_crashes_wait_longer_each_time(box, digests,
                                                                           tmp_path):
    deploy(box, digests, tmp_path, "crashy", ["sh", "-c", "echo up; exit 3"])
    with connect(box, digests) as node:
        node.start("crashy")
        time.sleep(16)
        # Between an exit and the runner's next record it is "restarting".
        status = wait_for(lambda: (lambda s: s if s.state == "crash-looping" else None)(
            node.status("crashy")), timeout=3, what="crash-looping")
    assert status.next_retry is not None and status.next_retry > time.time()
    record = dict(line.split(" ", 1) for line in box.read_file(
        ROOT + "/containers/crashy/run").decode().splitlines())
    spawns = [float(t) for t in record["recent"].split()]
    gaps = [b - a for a, b in zip(spawns, spawns[1:])]
    # Waits of 0, 1, 2, 4, 8 s (busybox adds its own ~1 s to each): far below
    # sysvinit's limit of 10 spawns in 120 s.
    assert 3 <= len(spawns) <= 6, spawns
    assert all(later > earlier + 0.5 for earlier, later in zip(gaps, gaps[1:])), gaps
    assert "respawning too fast" not in box.console_log()


def test_killing_a_running_app_gets_it_respawned(box, digests, tmp_path):
    deploy(box, digests, tmp_path, "sleeper", ["sleep", "1000"])
    with connect(box, digests) as node:
        first = node.start("sleeper")
        box.exec(["kill", "-KILL", str(first.pid)])
        second = wait_for(lambda: (lambda s: s if s.state == "running" and s.pid != first.pid
                                   else None)(node.status("sleeper")), what="a respawn")
    assert second.restarts == 1


def test_stop_leaves_no_process_and_no_mount_of_the_container(box, digests, tmp_path):
    deploy(box, digests, tmp_path, "family",
           ["sh", "-c", "sleep 1000 & (trap '' TERM; exec sleep 1001) & exec sleep 1002"])
    with connect(box, digests) as node:
        status = node.start("family")
        rootfs = status.bundle + "/rootfs"
        wait_for(lambda: len(box_pids(box, rootfs)) == 3, what="three processes")
        assert box_mounts(box, rootfs)
        stopped = node.stop("family", grace=1)
    assert stopped.state == "stopped"
    assert box_pids(box, rootfs) == []
    assert box_mounts(box, rootfs) == []
    assert b"vzrun family" not in box.read_file(INITTAB)


def test_the_sysadmins_lines_are_byte_identical_after_100_start_stop_cycles(box, digests,
                                                                           tmp_path):
    box.write_file(INITTAB, box.read_file(INITTAB) + b"# admin's note: keep\n\n"
                   b"#xx:2345:respawn:/bin/false\n")
    before = box.read_file(INITTAB)
    deploy(box, digests, tmp_path, "cycle", ["sleep", "1000"])
    with connect(box, digests) as node:
        for cycle in range(100):
            # Waiting for busybox init (~1-2 s a spawn) on every cycle would take
            # minutes; stopping a container still being spawned is part of the test.
            status = node.start("cycle", wait=cycle % 10 == 0)
            assert status.state in ("running", "starting"), status
            assert node.stop("cycle", grace=1).state == "stopped"
    assert box.read_file(INITTAB) == before
    assert box_pids(box, status.bundle + "/rootfs") == []


def test_an_entry_commented_out_by_the_admin_is_reported_disabled_and_not_restored(
        box, digests, tmp_path):
    deploy(box, digests, tmp_path, "tamed", ["sleep", "1000"])
    with connect(box, digests) as node:
        status = node.start("tamed")
        text = box.read_file(INITTAB).decode()
        box.write_file(INITTAB, re.sub(r"(?m)^(.*vzrun tamed)$", r"#\1", text).encode())
        box.reload_init()
        wait_for(lambda: not box_pids(box, status.bundle + "/rootfs")
                 or box.init == "busybox", what="init to drop the entry")
        assert node.status("tamed").state == "disabled"
        with pytest.raises(DisabledByAdminError):
            node.start("tamed")
        assert node.status("tamed").state == "disabled"
        assert "#" + status.entry in box.read_file(INITTAB).decode()
        assert node.start("tamed", override=True).state == "running"


def test_two_clients_starting_and_stopping_different_containers_keep_inittab_consistent(
        box, digests, tmp_path):
    before = admin_lines(box)
    for name in ("left", "right"):
        deploy(box, digests, tmp_path, name, ["sleep", "1000"])
    failures = []

    def churn(name):
        try:
            with connect(box, digests) as node:
                for _ in range(8):
                    node.start(name)
                    node.stop(name, grace=1)
                node.start(name)
        except Exception as exc:  # reported below, in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures
    text = box.read_file(INITTAB).decode()
    assert len(re.findall(r"vzrun left$", text, re.M)) == 1
    assert len(re.findall(r"vzrun right$", text, re.M)) == 1
    assert admin_lines(box) == before
    with connect(box, digests) as node:
        assert {s.name: s.state for s in node.status()} == {"left": "running",
                                                            "right": "running"}


def counted_lines(count):
    """A shell loop printing "PID N" for N in 0..count-1, then sleeping."""
    return ["sh", "-c", 'i=0; while [ $i -lt {} ]; do echo "$$ $i"; i=$((i+1)); done; '
            "exec sleep 1000".format(count)]


def test_logs_follow_sees_every_line_once_across_a_restart_and_rotation(box, digests,
                                                                        tmp_path):
    deploy(box, digests, tmp_path, "talker", counted_lines(400))
    with connect(box, digests) as node, connect(box, digests) as other:
        first = node.start("talker", log_max=2048, log_keep=2)
        wait_for(lambda: len(list(other.logs("talker", tail=1000))) >= 400,
                 what="the first run's lines")
        lines = []
        with node.logs("talker", tail=1000, follow=True) as stream:
            for line in stream:
                if line.startswith("vz: "):  # the runner's own line at each spawn
                    continue
                lines.append(line)
                if len(lines) == 400:
                    box.exec(["kill", "-KILL", str(first.pid)])  # respawn rotates the log
                if len(lines) == 800:
                    break
        cursor = stream.cursor
        assert [line for line in other.logs("talker", cursor=cursor)] == []
    assert box.exec(["test", "-e", ROOT + "/logs/talker.log.1"]).returncode == 0
    runs = {}
    for line in lines:
        pid, number = line.split()
        runs.setdefault(pid, []).append(int(number))
    assert sorted(runs.values()) == [list(range(400))] * 2


def test_logs_tail_returns_the_last_lines(box, digests, tmp_path):
    deploy(box, digests, tmp_path, "counter", counted_lines(50))
    with connect(box, digests) as node:
        node.start("counter")
        wait_for(lambda: any(line.endswith(" 49") for line in node.logs("counter", tail=1)),
                 what="the last line")
        assert [line.split()[1] for line in node.logs("counter", tail=3)] == ["47", "48", "49"]


def test_a_flooding_app_under_a_monitor_stays_within_its_log_cap(box, digests, tmp_path):
    deploy(box, digests, tmp_path, "flood", ["yes", "a fairly long line of flood output"])
    with connect(box, digests) as node:
        assert node.start("flood", log_max=64 * 1024, log_keep=2, monitor=True).state == \
            "running"
        second = ROOT + "/logs/flood.log.2"
        wait_for(lambda: box.exec(["test", "-e", second], check=False).returncode == 0,
                 timeout=30, what="two rotations")
        time.sleep(1)

        def sizes_now():
            # Rotations go on many times a second: a name the glob found may be renamed
            # before its stat. Look again until a listing caught at least two files.
            found = [int(size) for size in box.exec(
                ["sh", "-c", "cd " + ROOT + "/logs && for f in flood.log*; do "
                 "stat -c %s $f 2>/dev/null; done; true"]).stdout.split()]
            return found if len(found) >= 2 else None

        sizes = wait_for(sizes_now, timeout=10, what="a listing of the rotating log")
        node.stop("flood", grace=1)
    assert 2 <= len(sizes) <= 3
    assert all(size <= 64 * 1024 for size in sizes), sizes


def test_a_big_log_without_a_monitor_is_cut_back_at_the_next_session(box, digests,
                                                                     tmp_path):
    deploy(box, digests, tmp_path, "gush",
           ["sh", "-c", "yes 'a fairly long line of output' | head -c 3000000; "
            "exec sleep 1000"])
    with connect(box, digests) as node:
        node.start("gush", log_max=64 * 1024, log_keep=2, monitor=False)
        wait_for(lambda: int(box.exec(["stat", "-c", "%s", ROOT + "/logs/gush.log"]).stdout)
                 >= 3000000, what="the output")
    with connect(box, digests) as node:  # hello cuts the logs of running apps back
        sizes = [int(size) for size in box.exec(
            ["sh", "-c", "stat -c %s " + ROOT + "/logs/gush.log*"]).stdout.split()]
        assert node.status("gush").state == "running"
    assert sizes[0] == 0 and all(size <= 64 * 1024 for size in sizes), sizes


@pytest.mark.parametrize("op", ["start", "stop"])
def test_a_vzslave_killed_mid_request_leaves_a_state_the_next_request_repairs(
        box, digests, tmp_path, op):
    before = admin_lines(box)
    deploy(box, digests, tmp_path, "fragile", ["sleep", "1000"])
    for delay in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1):
        with connect(box, digests) as node:
            if op == "stop":
                node.start("fragile")
            call = threading.Thread(target=lambda: _swallow(
                lambda: getattr(node, op)("fragile")))
            call.start()
            time.sleep(delay)
            box.exec(["pkill", "-KILL", "-f", "-x", ".*-m vzslave"])
            call.join(30)
        with connect(box, digests) as node:
            text = box.read_file(INITTAB).decode()
            entries = re.findall(r"^[^#\n]*vzrun fragile$", text, re.M)
            try:
                status = node.status("fragile")
            except NoSuchContainerError:  # a first start killed before it wrote anything
                assert op == "start" and entries == [], text
                continue
            assert status.state in ("running", "starting", "stopped"), status
            assert len(entries) == (0 if status.state == "stopped" else 1), (status, text)
            assert node.stop("fragile", grace=1).state == "stopped"
            assert box_pids(box, status.bundle + "/rootfs" if status.bundle else "/none") == []
    assert admin_lines(box) == before


def _swallow(call):
    try:
        call()
    except Exception:  # the session dies with the killed vzslave: expected
        pass


def runc_spec_image(tmp_path, args):
    """An image of the bundle `runc spec` makes, with a busybox rootfs and ``args``."""
    import json
    import subprocess
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    subprocess.run(["runc", "spec"], cwd=spec_dir, check=True)
    config = json.loads((spec_dir / "config.json").read_text())
    config["process"].update(terminal=False, args=args)
    return tb.busybox_image(args, **{k: v for k, v in config.items() if k != "root"})


# crun 1.8 raises RLIMIT_MEMLOCK to load its eBPF device filter, which a guest without
# CAP_SYS_RESOURCE (these boxes, many VPS) may not: there it runs without cgroups.
RUNTIME_ARGS = {"builtin": None, "runc": None, "crun": ["--cgroup-manager=disabled"]}


@pytest.mark.parametrize("runtime", ["builtin", "runc", "crun"])
def test_a_runc_spec_bundle_runs_unchanged_under_the_runner_runc_and_crun(
        box, digests, tmp_path, runtime):
    if runtime != "builtin" and not shutil.which(runtime):
        pytest.skip(runtime + " is not installed")
    path = tmp_path / "spec.tar"
    path.write_bytes(runc_spec_image(tmp_path, ["sh", "-c", "echo pid=$$ host=$(hostname); "
                                                 "exec sleep 1000"]))
    with connect(box, digests) as node:
        node.upload_image(str(path), "spec.tar")
        node.unpack("spec.tar", "spec")
        status = node.start("spec", runtime=runtime, runtime_args=RUNTIME_ARGS[runtime])
        line = wait_for(lambda: [x for x in node.logs("spec") if not x.startswith("vz: ")],
                        what="the app's line or the runtime's error")[0]
        assert line == "pid=1 host=runc"  # its own PID and UTS namespaces
        assert status.state == "running", status
        assert node.stop("spec", grace=1).state == "stopped"
    assert box_pids(box, status.bundle + "/rootfs") == []


def test_runtime_args_reach_runc_at_run_and_at_delete(box, digests, tmp_path):
    path = tmp_path / "spec.tar"
    path.write_bytes(runc_spec_image(tmp_path, ["sleep", "1000"]))
    with connect(box, digests) as node:
        node.upload_image(str(path), "spec.tar")
        node.unpack("spec.tar", "spec")
        node.start("spec", runtime="runc", runtime_args=["--root=/run/vz-test-runc"])
        assert wait_for(lambda: runc_states(box), what="runc's state under its --root") == [
            "vz-spec"]
        node.stop("spec", grace=1)
    assert runc_states(box) == []


def runc_states(box):
    """The containers runc keeps state for under /run/vz-test-runc."""
    return box.exec(["sh", "-c", "ls /run/vz-test-runc 2>/dev/null; true"]).stdout.decode().split()
