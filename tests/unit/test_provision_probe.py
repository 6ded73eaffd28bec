"""The probe's output parsed: Pythons ranked, sshd's Include, virtualisation, room."""

from vzmaster.provision import probe

OUTPUT = """\
os_id=debian
os_version=12
os_name=Debian GNU/Linux 12 (bookworm)
os_like=
pid1_exe=/usr/sbin/init
pid1_comm=init
init=sysvinit
python=3.11.2 /usr/bin/python3
python=3.11.2 /usr/bin/python3.11
python=3.5.3 /usr/bin/python3.5
python=3.12.1 /usr/local/bin/python3.12
sshd_path=/usr/sbin/sshd
sshd_version=OpenSSH_9.2p1
sshd_config=/etc/ssh/sshd_config
sshd_include=yes
virt=openvz
disk_free_kb=1024
mem_total_kb=524288
mem_available_kb=262144
uid=0
home=/root
clock=1000
"""


def test_the_newest_python_from_3_6_is_chosen():
    found = probe.parse_probe(OUTPUT, now=1000)
    assert found.python == "/usr/local/bin/python3.12"
    assert [v for v, _ in found.pythons] == [(3, 12, 1), (3, 11, 2), (3, 11, 2)]


def test_usr_bin_wins_between_equal_versions():
    found = probe.parse_probe(OUTPUT.replace("python=3.12.1 /usr/local/bin/python3.12\n", ""))
    assert found.python == "/usr/bin/python3"


def test_a_node_without_python_3_6_has_none():
    found = probe.parse_probe("python=3.5.3 /usr/bin/python3\n")
    assert found.python is None and found.python_version == "none"


def test_sshd_reads_a_dropin_only_from_7_3_with_an_include_line():
    assert probe.parse_probe(OUTPUT).dropin
    assert not probe.parse_probe(OUTPUT.replace("OpenSSH_9.2p1", "OpenSSH_7.2p2")).dropin
    assert not probe.parse_probe(OUTPUT.replace("sshd_include=yes", "sshd_include=no")).dropin


def test_room_virtualisation_and_clock_are_read():
    found = probe.parse_probe(OUTPUT, now=990)
    assert (found.disk_free, found.mem_total, found.mem_available) == (1 << 20, 512 << 20,
                                                                      256 << 20)
    assert (found.virt, found.init, found.uid, found.clock_skew) == ("openvz", "sysvinit", 0, 10)


def test_garbage_lines_are_ignored():
    found = probe.parse_probe("hello\n=x\npython=abc /x\nuid=root\n")
    assert found.python is None and found.uid == -1 and found.os_id == "unknown"


def test_the_python_install_command_follows_the_os_family():
    debian = probe.parse_probe("os_id=ubuntu\nos_like=debian\n")
    alpine = probe.parse_probe("os_id=alpine\n")
    centos = probe.parse_probe('os_id=centos\nos_like=rhel fedora\n')
    assert probe.python_install_command(debian)[-1].endswith("apt-get install -y python3")
    assert probe.python_install_command(alpine) == ["apk", "add", "python3"]
    assert "yum install -y python3" in probe.python_install_command(centos)[-1]
    assert probe.python_install_command(probe.parse_probe("os_id=plan9\n")) == []
