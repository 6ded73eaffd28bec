"""The runner for real, as root: a busybox rootfs, real mounts, namespaces and exec.

Each run starts the runner the way init does (``python3 -IS`` running the launcher
code, argv = the container name) and waits for the app to end; every mount the host
namespace received is released at the end of the test.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import requires_root
from tests.runnerbox import BUSYBOX, NAME, Box
from vzslave import linux, mounts
from vzslave.fs import mounts_under

pytestmark = [
    requires_root,
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]


@pytest.fixture
def box(tmp_path):
    made = Box(str(tmp_path))
    yield made
    made.kill()
    if made.plan is not None:
        assert mounts.release(made.plan) == []
    assert mounts_under(str(tmp_path)) == []


def test_the_app_runs_chrooted_as_its_user_with_env_cwd_limits_and_umask(box):
    box.make_plan("echo pid=$$; id; pwd; env; ulimit -n; umask; ls /proc/self; "
                  "cat /proc/self/oom_score_adj; ls -l /dev/null /dev/fd",
                  uid=4242, gid=4242, env=["PATH=/bin", "HOME=/", "FOO=bar"], cwd="/tmp",
                  rlimits=[[7, 512, 1024]], umask=0o027, oom_score_adj=100)
    status, out = box.run()
    log = box.read_log()
    assert status == 0, log + out
    lines = log.splitlines()
    assert lines[0].startswith("vz: box: spawn 1 at ") and lines[0].endswith("(streak 0)")
    assert "uid=4242 gid=4242" in lines
    assert "/tmp" in lines and "FOO=bar" in lines and "HOME=/" in lines
    assert "512" in lines and "0027" in lines and "100" in lines
    assert "status" in lines  # /proc is mounted
    assert any(line.startswith("crw-rw-rw-") and line.endswith("/dev/null") for line in lines)
    assert any(line.endswith("/dev/fd -> /proc/self/fd") for line in lines)
    record = box.record()
    assert record["state"] == "running" and "pid={}".format(record["pid"]) in lines


def test_the_app_takes_over_the_runners_pid(box):
    box.make_plan("echo pid=$$")
    proc = box.start()
    proc.communicate(timeout=30)
    assert "pid={}".format(proc.pid) in box.read_log().splitlines()


def test_masked_and_readonly_paths_are_enforced(box):
    box.make_plan("cat /proc/cpuinfo | grep -c . ; ls /sys/firmware | grep -c . ; "
                  "echo 1 > /proc/sys/kernel/ns_last_pid || echo ro-proc-sys")
    status, out = box.run()
    log = box.read_log()
    assert log.splitlines()[1:3] == ["0", "0"], log
    assert "ro-proc-sys" in log


def test_a_readonly_root_refuses_writes(box):
    box.make_plan("touch /tmp/x || echo ro-root; touch /dev/shm/x && echo shm-rw")
    box.plan["readonly"] = True
    box.run()
    log = box.read_log()
    assert "ro-root" in log and "shm-rw" in log


def test_mounts_prepared_this_boot_are_not_redone(box):
    box.make_plan("ls /proc/self >/dev/null 2>&1 && echo proc-here || echo proc-missing")
    mounts.prepare(box.plan)
    with open(os.path.join(box.state, "mounts")) as marker, \
            open("/proc/sys/kernel/random/boot_id") as boot:
        assert marker.read() == boot.read()
    linux.umount2(os.path.join(box.rootfs, "proc"), linux.MNT_DETACH)
    box.run()
    assert box.read_log().splitlines()[-1] == "proc-missing"  # the marker said: all done
    os.unlink(os.path.join(box.state, "mounts"))
    box.run()
    assert box.read_log().splitlines()[-1] == "proc-here"
    assert os.path.exists(os.path.join(box.state, "mounts"))


def test_a_prepared_spawn_imports_neither_ctypes_nor_the_mount_code(box):
    box.make_plan("true")
    mounts.prepare(box.plan)
    status, out = box.run("-X", "importtime")
    imports = out + box.read_log()  # -X importtime writes to stderr, the log after step 3
    assert status == 0 and "vzslave.runner" in imports
    for module in ("ctypes", "vzslave.fs", "typing", "json", "re\n", "socket", "signal",
                   "vzslave.seccomp", "vzslave.syscalls"):
        assert "| " + module not in imports


def test_a_prepared_spawn_without_a_monitor_loads_only_the_runner_and_its_leaf(box):
    """The fast path init takes at every respawn: as many modules as before the runner's
    leaf (vzslave/runio.py) took procs' place; no mount code, no fs, no errors."""
    box.make_plan("true")
    mounts.prepare(box.plan)
    status, out = box.run("-X", "importtime")
    imports = out + box.read_log()
    loaded = {line.rsplit("|", 1)[1].strip() for line in imports.splitlines()
              if line.startswith("import time:") and "|" in line}
    assert status == 0 and {name for name in loaded if name.startswith("vzslave")} == {
        "vzslave", "vzslave.runner", "vzslave.linux", "vzslave.runio"}


def test_namespaces_give_the_app_pid_1_a_hostname_and_loopback(box):
    box.make_plan("echo pid=$$; hostname; ip link show lo; exit 7")
    box.with_namespaces("mount", "uts", "ipc", "network", "pid")
    box.plan["hostname"] = "vzbox"
    proc = box.start()
    out = proc.communicate(timeout=30)[0]
    log = box.read_log()
    assert proc.returncode == 7, log + out.decode()
    assert "pid=1" in log.splitlines() and "vzbox" in log.splitlines()
    assert ",UP," in log or ",UP>" in log
    record = box.record()
    assert record["last_exit"] == "exit 7" and record["pid"] == str(proc.pid)
    assert mounts_under(box.rootfs) == []  # they lived in the container's namespace


def test_the_monitor_relays_signals_and_records_a_death_by_signal(box):
    box.make_plan("trap 'echo got-term; exit 0' TERM; echo ready; "
                  "while true; do sleep 0.05; done")
    box.with_namespaces("mount", "pid")
    proc = box.start()
    deadline = time.time() + 20
    while "ready" not in (open(box.log).read() if os.path.exists(box.log) else ""):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0 and "got-term" in box.read_log()
    assert box.record()["last_exit"] == "exit 0"


def test_killing_the_monitor_kills_the_app(box):
    box.make_plan("echo ready; exec sleep 60")
    box.with_namespaces("mount", "pid")
    proc = box.start()
    deadline = time.time() + 20
    while "ready" not in (open(box.log).read() if os.path.exists(box.log) else ""):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=30)
    while True:  # the app is in the monitor's process group (the runner's setsid)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.time() < deadline
        time.sleep(0.02)


def test_syslog_output_is_pumped_into_the_log_by_the_monitor(box):
    box.make_plan("echo hello from the app; kill -TERM $$")
    box.plan["log"]["syslog"] = True
    status, out = box.run()
    assert status == 128 + signal.SIGTERM
    assert "hello from the app" in box.read_log()
    assert box.record()["last_exit"] == "signal {}".format(int(signal.SIGTERM))


def test_no_new_privileges_is_set_in_the_app(box):
    box.make_plan("grep NoNewPrivs /proc/self/status", no_new_privileges=True)
    box.run()
    assert "NoNewPrivs:\t1" in box.read_log()


def status_lines(log):
    return dict(line.split(":\t") for line in log.splitlines() if line.startswith("Cap"))


def test_a_non_root_app_keeps_exactly_its_planned_capabilities(box):
    caps = {"bounding": [0, 10], "effective": [10], "permitted": [10], "inheritable": [10],
            "ambient": [10]}  # CAP_CHOWN, CAP_NET_BIND_SERVICE
    box.make_plan("grep Cap /proc/self/status", uid=4242, gid=4242, capabilities=caps)
    box.run()
    found = status_lines(box.read_log())
    assert found == {"CapInh": "0000000000000400", "CapPrm": "0000000000000400",
                     "CapEff": "0000000000000400", "CapBnd": "0000000000000401",
                     "CapAmb": "0000000000000400"}, box.read_log()


def test_a_root_app_is_held_to_its_bounding_set(box):
    caps = {"bounding": [0], "effective": [0], "permitted": [0], "inheritable": [],
            "ambient": []}
    box.make_plan("grep Cap /proc/self/status", capabilities=caps)
    box.run()
    found = status_lines(box.read_log())
    assert found["CapBnd"] == found["CapEff"] == "0000000000000001"


def test_release_leaves_no_mount_under_the_rootfs(box):
    box.make_plan("true")
    box.plan["readonly"] = True
    mounts.prepare(box.plan)
    box.run()
    assert len(mounts_under(box.rootfs)) > 5
    assert mounts.release(box.plan) == []
    assert mounts_under(box.rootfs) == []
    assert not os.path.exists(os.path.join(box.state, "mounts"))


def test_a_symlinked_proc_is_refused_and_nothing_is_mounted_outside(box, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(box.rootfs, "proc"))
    box.make_plan("true")
    status, out = box.run()
    assert status == 127
    assert ("vz: box: cannot start: mounts: mount destination /proc is a symlink in the "
            "image; refusing") in box.read_log()
    assert box.record()["state"] == "failed"
    assert mounts_under(str(outside)) == []


def test_a_missing_program_exits_127_and_says_so(box):
    box.make_plan("true")
    box.plan["process"]["args"] = ["/bin/nonexistent"]
    status, out = box.run()
    assert status == 127
    assert ("vz: box: cannot exec /bin/nonexistent: No such file or directory"
            in box.read_log())
    assert box.record()["last_error"] == "cannot exec /bin/nonexistent: No such file or directory"


def test_a_crash_loop_waits_longer_at_each_spawn(box):
    box.make_plan("exit 3")
    box.plan["backoff"] = {"initial": 0.2, "max": 0.8, "stable": 30.0}
    delays = []
    for _ in range(5):
        proc = box.start()
        waited = None
        while proc.poll() is None:
            record = box.record()
            if record.get("state") == "waiting":
                waited = float(record["next_start"]) - float(record["started"])
            time.sleep(0.01)
        proc.communicate(timeout=30)
        delays.append(None if waited is None else round(waited, 1))
    assert delays == [None, 0.2, 0.4, 0.8, 0.8]
    streaks = [line[-2] for line in box.read_log().splitlines() if "spawn" in line]
    assert streaks == ["0", "1", "2", "3", "4"]
    assert box.record()["spawns"] == "5"


PYTHONS = [path for path in ("/root/.pyenv/versions/3.6.15/bin/python3.6",
                             "/root/.pyenv/versions/3.13.0/bin/python3.13", "/usr/bin/python3")
           if os.path.exists(path)]


@pytest.mark.parametrize("python", PYTHONS or [None])
def test_every_step_runs_on_each_python_here(box, python):
    if python is None:
        pytest.skip("no other Python installed")
    caps = {"bounding": [0, 10], "effective": [10], "permitted": [10], "inheritable": [10],
            "ambient": [10]}
    box.make_plan("echo pid=$$; id; ulimit -n; grep -E 'CapAmb|NoNewPrivs' /proc/self/status",
                  uid=4242, gid=4242, rlimits=[[7, 512, 1024]], no_new_privileges=True,
                  capabilities=caps)
    box.with_namespaces("mount", "uts", "network", "pid")
    box.plan["log"]["syslog"] = True
    status, out = box.run(python=python)
    lines = box.read_log().splitlines()
    assert status == 0, lines + [out]
    assert lines[1:] == ["pid=1", "uid=4242 gid=4242", "512", "CapAmb:\t0000000000000400",
                         "NoNewPrivs:\t1"]


@pytest.mark.parametrize("python", PYTHONS or [None])
def test_host_namespace_mounts_run_on_each_python_here(box, python):
    if python is None:
        pytest.skip("no other Python installed")
    box.make_plan("ls /proc/self/fd; ls /dev/null")
    box.plan["readonly"] = True
    status, out = box.run(python=python)
    assert status == 0 and "/dev/null" in box.read_log(), box.read_log() + out
    assert os.path.exists(os.path.join(box.state, "mounts"))


@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_a_runc_or_crun_container_runs_under_its_runtime(box, runtime):
    path = shutil.which(runtime)
    if path is None:
        pytest.skip("{} is not installed".format(runtime))
    import json
    bundle = os.path.dirname(box.rootfs)
    subprocess.run([path, "spec"], cwd=bundle, check=True, timeout=30)
    with open(os.path.join(bundle, "config.json")) as source:
        config = json.load(source)
    config["process"].update(terminal=False, args=["sh", "-c", "echo pid=$$ under " + runtime])
    with open(os.path.join(bundle, "config.json"), "w") as out:
        json.dump(config, out)
    box.make_plan("unused")
    box.plan.update(runtime=runtime, runtime_path=path)
    status, out = box.run(timeout=60)
    if status != 0 and "cgroups in hybrid mode not supported" in box.read_log():
        pytest.skip("{} cannot run containers on this host's cgroups".format(runtime))
    assert status == 0, box.read_log() + out
    assert "pid=1 under " + runtime in box.read_log()
    record = box.record()
    assert record["supervisor"] == runtime and record["state"] == "running"
    subprocess.run([path, "delete", "--force", "vz-" + NAME], timeout=30,
                   stderr=subprocess.DEVNULL)
