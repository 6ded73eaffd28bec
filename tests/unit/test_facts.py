"""Node facts and init detection."""

import os

import pytest

from vzslave import facts


def fake_proc(tmp_path, exe_name, content=b"", comm="init"):
    """A /proc with a PID 1 whose exe is a file named ``exe_name`` holding ``content``."""
    binary = tmp_path / "bin" / exe_name
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_bytes(content)
    pid1 = tmp_path / "proc" / "1"
    pid1.mkdir(parents=True)
    os.symlink(binary, pid1 / "exe")
    (pid1 / "comm").write_text(comm + "\n")
    return str(tmp_path / "proc")


@pytest.mark.parametrize("name,content,expected", [
    ("busybox", b"", "busybox"),
    ("init", b"...BusyBox v1.35.0...", "busybox"),
    ("systemd", b"", "systemd"),
    ("init", b"\0INIT_VERSION=sysvinit-3.06\0", "sysvinit"),
    ("init", b"upstart 1.13", "upstart"),
    ("init", b"nothing known", "unknown"),
])
def test_the_init_flavour_is_read_from_pid_1(tmp_path, name, content, expected):
    assert facts.detect_init(fake_proc(tmp_path, name, content)) == expected


def test_the_real_sysvinit_binary_is_recognised():
    path = "/opt/vz-test/sysvinit/sbin/init"
    if not os.path.exists(path):
        pytest.skip("sysvinit's init is not extracted "
                    "(python3 -m vzmaster.testing.box ensure-sysvinit)")
    with open(path, "rb") as binary:
        content = binary.read()
    flavours = [name for name, marker in facts._INIT_MARKERS if marker in content]
    assert flavours[0] == "sysvinit"


def test_node_facts_describe_this_machine(layout):
    node = facts.node_facts(layout)
    assert node.root == layout.root
    assert node.uid == os.geteuid()
    assert "tar" in node.formats and node.free_bytes > 0


def test_memory_is_read_from_meminfo_in_bytes(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  524288 kB\nMemFree:  1000 kB\nMemAvailable:  262144 kB\n")
    assert facts.memory(str(meminfo)) == (512 << 20, 256 << 20)


def test_memory_available_on_an_old_kernel_is_free_plus_buffers_plus_cache(tmp_path):
    """When the kernel predates MemAvailable (OpenVZ 6's 2.6.32), free + buffers +
    cache stands in for it."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 524288 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 3 kB\n")
    assert facts.memory(str(meminfo)) == (512 << 20, 123 * 1024)


def test_memory_of_an_unreadable_meminfo_is_zero(tmp_path):
    assert facts.memory(str(tmp_path / "missing")) == (0, 0)
