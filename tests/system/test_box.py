"""System tests of vzmaster.testing.box: real namespaces, a real init as PID 1, stock OpenSSH."""

import concurrent.futures
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.system.conftest import require_boxes, wait_for
from vzmaster.testing.box import SRC_DIR, BoxError, Hub, find_sysvinit, sweep_stale


def dead(pid):
    """True once pid is gone or a zombie (the host's init reaps orphans lazily)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def netns_names():
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def pids_in_namespace(kind, ident):
    """Host pids whose /proc/PID/ns/<kind> link is ident (e.g. 'pid:[4026532]')."""
    found = []
    for ns in glob.glob(f"/proc/[0-9]*/ns/{kind}"):
        try:
            if os.readlink(ns) == ident:
                found.append(int(ns.split("/")[2]))
        except OSError:
            pass    # the process exited while we looked
    return found


def mount_lines_naming(text):
    lines = []
    for path in glob.glob("/proc/[0-9]*/mountinfo"):
        try:
            with open(path) as f:
                lines += [line for line in f if text in line]
        except OSError:
            pass
    return lines


def assert_nothing_left(prefix_or_netns, state_dir, namespaces=()):
    assert not [n for n in netns_names() if n.startswith(prefix_or_netns)]
    assert not os.path.exists(state_dir)
    assert not mount_lines_naming(state_dir)
    for kind, ident in namespaces:
        assert not pids_in_namespace(kind, ident), f"processes left in {ident}"


def box_namespaces(box):
    return [(kind, os.readlink(f"/proc/{box.pid1}/ns/{kind}")) for kind in ("pid", "net", "mnt")]


def respawn_line(init, ident, command):
    return f"{ident}:2345:respawn:{command}" if init == "sysv" else f"::respawn:{command}"


# -- access ----------------------------------------------------------------


def test_box_is_reachable_by_ssh_with_the_hub_key(box):
    assert box.ssh("echo hello").stdout == b"hello\n"
    # A list is quoted word by word for the remote shell.
    assert box.ssh(["echo", "a  b", "$HOME"]).stdout == b"a  b $HOME\n"


def test_ssh_rejects_a_wrong_host_key_and_a_wrong_client_key(box, tmp_path):
    other = str(tmp_path / "other")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True)
    wrong_hosts = tmp_path / "known_hosts"
    wrong_hosts.write_text("10.200.0.* " + " ".join(open(other + ".pub").read().split()[:2]))
    argv = box.ssh_argv("true", extra_opts=["-o", f"UserKnownHostsFile={wrong_hosts}"])
    done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    assert done.returncode == 255
    assert b"Host key verification failed" in done.stderr

    argv = box.ssh_argv("true")
    argv[argv.index(box.hub.client_key)] = other
    done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    assert done.returncode == 255
    assert b"Permission denied" in done.stderr


def test_connect_gives_a_socket_paramiko_logs_in_over(box):
    paramiko = pytest.importorskip("paramiko")
    sock = box.connect()
    client = paramiko.SSHClient()
    client.load_host_keys(box.hub.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(box.ip, username="root", key_filename=box.hub.client_key, sock=sock,
                       look_for_keys=False, allow_agent=False, timeout=10)
        _, stdout, _ = client.exec_command("hostname")
        assert stdout.read() == f"{box.name}\n".encode()
    finally:
        client.close()


def test_echo_subsystem_round_trips_one_megabyte(box):
    data = os.urandom(1 << 20)
    done = box.ssh(subsystem="echo", input=data)
    assert hashlib.sha256(done.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_vzslave_subsystem_runs_this_source_tree(box):
    config = box.exec(["/usr/sbin/sshd", "-T"]).stdout.decode()
    assert f"subsystem vzslave {box.vzslave_command}" in config
    assert box.vzslave_command.endswith(f"PYTHONPATH={SRC_DIR} {sys.executable} -m vzslave")
    done = box.ssh(["/usr/bin/env", f"PYTHONPATH={SRC_DIR}", sys.executable, "-c",
                    "import vzslave, msgpack; print(vzslave.__file__)"])
    assert done.stdout.decode().strip() == os.path.join(SRC_DIR, "vzslave", "__init__.py")


# -- the node ----------------------------------------------------------------


def test_pid1_is_the_requested_init(box):
    exe = box.exec(["readlink", "/proc/1/exe"]).stdout.decode().strip()
    if box.init == "busybox":
        assert exe == os.path.realpath(shutil.which("busybox"))
    else:
        assert exe == "/usr/sbin/init"
        assert box.read_file("/proc/1/exe") == open(find_sysvinit(), "rb").read()
        assert box.read_file("/proc/1/cmdline").startswith(b"init [2]")
        assert box.read_file("/run/runlevel")    # sysvinit's own, in the box's /run


def test_hostname_is_vps_n(box):
    assert box.name == f"vps{box.index}"
    assert box.ip == f"10.200.0.{10 + box.index}"
    assert box.ssh("hostname").stdout.decode() == f"{box.name}\n"


def test_box_sees_only_its_own_processes(box):
    pids = box.exec(["sh", "-c", "ls -d /proc/[0-9]*"]).stdout.split()
    assert b"/proc/1" in pids
    assert len(pids) < 10


def test_console_log_gets_what_init_and_its_children_write(box):
    assert "Server listening on 0.0.0.0 port 22" in box.console_log()   # sshd -e via init
    if box.init == "sysv":
        assert "INIT: Entering runlevel: 2" in box.console_log()


def test_init_respawns_a_killed_sshd(box):
    old = box.read_file("/run/sshd.pid").strip()
    box.exec(["kill", "-KILL", old.decode()])

    def new_sshd_answers():
        done = box.ssh("cat /run/sshd.pid", check=False, timeout=10)
        return done.returncode == 0 and done.stdout.strip() != old

    wait_for(new_sshd_answers, timeout=10)


def test_reload_init_starts_a_line_added_to_inittab(box):
    inittab = box.read_file("/etc/inittab")
    line = respawn_line(box.init, "zz", "/bin/sleep 4242")
    box.write_file("/etc/inittab", inittab + line.encode() + b"\n")
    box.reload_init()

    def sleeper():
        done = box.exec(["pgrep", "-f", "^/bin/sleep 4242"], check=False)
        return done.stdout.split()

    first = wait_for(sleeper, timeout=10)
    box.exec(["kill", first[0].decode()])
    wait_for(lambda: sleeper() and sleeper() != first, timeout=10)


def test_disk_is_a_tmpfs_of_the_requested_size_and_fills_up(make_box):
    box = make_box(disk_size="32m")
    df = box.exec(["df", "-k", "/"]).stdout.decode().splitlines()[1].split()
    assert df[1] == str(32 * 1024)
    done = box.exec(["dd", "if=/dev/zero", "of=/var/lib/vz/fill", "bs=1M", "count=64"],
                    check=False)
    assert done.returncode != 0
    assert b"No space left on device" in done.stderr
    assert not os.path.exists("/var/lib/vz/fill")


def test_state_root_is_writable_and_private_to_the_box(box):
    box.write_file("/var/lib/vz/hello/x.txt", b"hi\n", mode=0o600)
    assert box.read_file("/var/lib/vz/hello/x.txt") == b"hi\n"
    assert box.exec(["stat", "-c", "%a %U", "/var/lib/vz/hello/x.txt"]).stdout == b"600 root\n"
    assert not os.path.exists("/var/lib/vz/hello")
    with pytest.raises(BoxError):
        box.read_file("/var/lib/vz/nothing-here")


def test_two_boxes_reach_each_other_by_ip(make_box):
    first, second = make_box("busybox"), make_box("sysv")
    probe = "import socket, sys; print(socket.create_connection((sys.argv[1], 22), 3).recv(8))"
    for here, there in ((first, second), (second, first)):
        done = here.exec([sys.executable, "-c", probe, there.ip])
        assert done.stdout == b"b'SSH-2.0-'\n"


def test_boxes_made_in_worker_threads_outlive_the_threads(make_box):
    # PR_SET_PDEATHSIG follows the forking thread: boxes must not die with it.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        boxes = list(pool.map(lambda init: make_box(init), ["busybox", "sysv", "busybox"]))
    assert len({b.ip for b in boxes}) == 3
    time.sleep(0.2)
    for the_box in boxes:
        assert the_box.running()
        assert the_box.ssh("hostname").stdout.decode() == f"{the_box.name}\n"


# -- teardown ------------------------------------------------------------------


def test_close_leaves_no_netns_process_or_mount(make_box):
    box = make_box("sysv")
    namespaces = box_namespaces(box)
    box.close()
    assert_nothing_left(box.netns, box.state_dir, namespaces)
    assert not box.running()
    box.close()    # idempotent


def test_power_cut_kills_the_box_and_close_cleans_up(make_box):
    box = make_box("busybox")
    namespaces = box_namespaces(box)
    box.kill()
    assert not box.running()
    assert not pids_in_namespace(*namespaces[0])
    assert os.path.exists(box.state_dir)         # kept for inspection
    assert "Server listening on 0.0.0.0 port 22" in box.console_log()   # kept, readable
    assert box.ssh("true", check=False, timeout=15).returncode == 255
    box.close()
    assert_nothing_left(box.netns, box.state_dir, namespaces)


@pytest.mark.parametrize("init, bad_init", [
    ("busybox", "/bin/false"),              # init starts, then exits at once
    ("sysv", "/nonexistent/sbin/init"),     # fails while writing the box's files
], ids=["busybox", "sysv"])
def test_setup_failure_cleans_up_and_raises_box_error(hub, init, bad_init):
    ours = hub.prefix + "-"  # other runs on this machine make and remove their own
    before_netns = {n for n in netns_names() if n.startswith(ours)}
    before_dirs = set(os.listdir(hub.workdir))
    with pytest.raises(BoxError) as raised:
        hub.box(init=init, init_path=bad_init, ready_timeout=5)
    if init == "busybox":
        assert "init exited" in str(raised.value)
    assert {n for n in netns_names() if n.startswith(ours)} == before_netns
    assert set(os.listdir(hub.workdir)) == before_dirs
    assert not [line for line in mount_lines_naming(hub.workdir) if "/vps" in line]


def test_hub_close_removes_its_netns_workdir_and_boxes(hub):
    # The session hub is only asked for so that unmet requirements skip this test.
    with Hub() as other:
        box = other.box()
        namespaces = box_namespaces(box)
        assert other.netns in netns_names()
    assert_nothing_left(other.prefix + "-", other.workdir, namespaces)
    other.close()    # idempotent


def test_a_killed_runner_takes_its_boxes_and_the_next_hub_sweeps_its_netns(hub, tmp_path):
    script = ("import time; from vzmaster.testing.box import Hub; h = Hub(); b = h.box(); "
              "print(b.pid1, h.prefix, flush=True); time.sleep(60)")
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=SRC_DIR, start_new_session=True)
    try:
        pid1, prefix = runner.stdout.readline().decode().split()
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    assert re.fullmatch(rf"vzt{runner.pid}", prefix)
    wait_for(lambda: dead(pid1), timeout=5)
    assert [n for n in netns_names() if n.startswith(prefix + "-")]
    sweep_stale()
    assert not [n for n in netns_names() if n.startswith(prefix + "-")]
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}-*"))


def test_a_vanished_box_answers_nothing_not_even_a_reset(make_box):
    gone = make_box()
    gone.vanish()
    assert not gone.running()
    with pytest.raises(OSError):
        gone.connect(timeout=1)
    gone.close()


def test_a_disconnected_box_runs_on_unreachable_until_reconnected(make_box):
    cut = make_box()
    cut.disconnect()
    with pytest.raises(OSError):
        cut.connect(timeout=1)
    assert cut.running()
    cut.reconnect()
    cut.connect().close()


# -- systemd boxes: the vz supervisor's hosts ---------------------------------


@pytest.fixture
def systemd_box(make_box):
    require_boxes("systemd")
    return make_box("systemd")


def test_a_systemd_box_boots_its_own_target_and_starts_none_of_the_hosts_units(systemd_box):
    assert systemd_box.exec(["systemctl", "is-system-running"]).stdout == b"running\n"
    running = systemd_box.exec(["systemctl", "list-units", "--plain", "--no-legend",
                                "--state=running", "--type=service"]).stdout.decode()
    assert {line.split()[0] for line in running.splitlines()} <= {
        "vz-box-sshd.service", "systemd-journald.service"}


def test_a_systemd_box_cannot_write_the_hosts_kernel_settings(systemd_box):
    done = systemd_box.exec(["sh", "-c", "echo 1 > /proc/sys/kernel/sysrq"], check=False)
    assert done.returncode != 0
    assert systemd_box.exec(["findmnt", "-no", "OPTIONS", "/sys"]).stdout.startswith(b"ro,")


def test_a_systemd_box_has_its_own_cgroup_tree_and_close_removes_it(systemd_box):
    seen_from_the_host = open(f"/proc/{systemd_box.pid1}/cgroup").read()
    assert seen_from_the_host.endswith(f"0::/{systemd_box.netns}/init.scope\n")
    namespaces = box_namespaces(systemd_box)
    systemd_box.close()
    assert_nothing_left(systemd_box.netns, systemd_box.state_dir, namespaces)
    out = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t cgroup2 c /mnt && ls /mnt"],
                         capture_output=True, text=True, check=True).stdout
    assert systemd_box.netns not in out.split()
