"""config.json from build options: the shape, each option's checks, the node's reader."""

import json
import os

import pytest

from tests import bpfvm
from vzmaster.imaging.errors import BuildError
from vzmaster.imaging.ociconfig import (
    DEFAULT_PATH,
    Options,
    User,
    build_machine,
    check_with_node_reader,
    default_seccomp,
    make_config,
    resolve_user,
)
from vzslave import oci, seccomp
from vzslave.syscalls import TABLES

ROOT = User(0, 0)
PASSWD = (b"root:x:0:0:root:/root:/bin/bash\n"
          b"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
          b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = b"root:x:0:\nwww-data:x:33:\nstaff:x:50:\nnogroup:x:65534:\n"


def config(**options):
    return make_config(Options(args=["/bin/app"], **options), ROOT)


def test_the_default_config_runs_in_the_hosts_network_with_its_own_mounts_pids_and_ipc():
    made = config()
    assert made["linux"]["namespaces"] == [{"type": "mount"}, {"type": "pid"}, {"type": "ipc"}]
    assert made["process"]["env"] == [DEFAULT_PATH]
    assert made["process"]["noNewPrivileges"] is True
    assert [m["destination"] for m in made["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/etc/resolv.conf", "/etc/hosts"]


def test_the_node_dns_binds_can_be_left_out():
    assert "/etc/resolv.conf" not in [m["destination"] for m in config(node_dns=False)["mounts"]]


def test_env_without_a_path_gets_the_default_path_first():
    assert config(env=["A=1"])["process"]["env"] == [DEFAULT_PATH, "A=1"]
    assert config(env=["PATH=/bin"])["process"]["env"] == ["PATH=/bin"]


@pytest.mark.parametrize("options, words", [
    ({"env": ["NOEQUALS"]}, "--env 'NOEQUALS'"),
    ({"cwd": "relative"}, "--cwd 'relative'"),
    ({"rlimits": ["bogus=1"]}, "--rlimit 'bogus=1'"),
    ({"rlimits": ["nofile=10:5"]}, "soft limit is above the hard"),
    ({"rlimits": ["nofile=ten"]}, "numbers or 'unlimited'"),
    ({"rlimits": ["nofile=1", "NOFILE=2"]}, "each limit may be given once"),
    ({"cap_add": ["CAP_FLY"]}, "--cap-add 'CAP_FLY'"),
    ({"binds": ["/srv"]}, "--bind '/srv'"),
    ({"binds": ["/srv:/data:rx"]}, "--bind '/srv:/data:rx'"),
    ({"tmpfs": ["run"]}, "--tmpfs 'run'"),
])
def test_a_bad_option_is_refused_naming_it(options, words):
    with pytest.raises(BuildError) as caught:
        config(**options)
    assert words in caught.value.message


def test_an_empty_command_line_is_refused():
    with pytest.raises(BuildError, match="command line is empty"):
        make_config(Options(args=[]), ROOT)


def test_rlimits_take_names_in_any_case_and_unlimited():
    assert config(rlimits=["nofile=1024:4096", "RLIMIT_CORE=unlimited"])["process"][
        "rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                       {"type": "RLIMIT_CORE", "soft": oci.RLIM_INFINITY,
                        "hard": oci.RLIM_INFINITY}]


def test_capabilities_can_be_dropped_all_and_added_back():
    caps = config(cap_drop=["ALL"], cap_add=["net_bind_service"])["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == ["CAP_NET_BIND_SERVICE"]


def test_a_user_name_is_looked_up_with_its_group_and_lines():
    user = resolve_user("www-data", PASSWD, GROUP)
    assert (user.uid, user.gid) == (33, 33)
    assert user.passwd[2].startswith("www-data:x:33:33:")
    assert user.group == ("root:x:0:", "nogroup:x:65534:", "www-data:x:33:")


def test_root_and_nobody_are_always_in_the_tables_for_daemons_that_drop_privileges():
    user = resolve_user(None, PASSWD, GROUP)
    assert [line.split(":")[0] for line in user.passwd] == ["root", "nobody"]
    assert [line.split(":")[0] for line in user.group] == ["root", "nogroup"]


def test_numbers_need_no_table_and_a_group_can_be_named():
    assert resolve_user("1000:staff", PASSWD, GROUP)[:2] == (1000, 50)
    assert resolve_user("4242", None, None)[:2] == (4242, 4242)


def test_an_unknown_user_name_is_refused():
    with pytest.raises(BuildError, match="no user 'ghost'"):
        resolve_user("ghost", PASSWD, GROUP)


def test_the_made_config_passes_the_nodes_reader(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    made = config(rlimits=["nofile=64"], binds=["/srv:/data:ro"], tmpfs=["/run:16m"],
                  readonly=True)
    check_with_node_reader(made, str(bundle))


def test_a_config_the_node_would_refuse_is_a_build_error(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    made = config()
    made["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(BuildError, match="would be refused by the node"):
        check_with_node_reader(made, str(bundle))
    assert os.listdir(bundle) == ["rootfs"]


# -- seccomp ---------------------------------------------------------------------------

AUDIT_X86_64, AUDIT_I386 = 0xC000003E, 0x40000003
ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026


def default_program():
    made = seccomp.compile_filter(default_seccomp("x86_64"), "x86_64")
    return made.program


def decide(program, name, args=(), arch=AUDIT_X86_64):
    table = TABLES["SCMP_ARCH_X86_64" if arch == AUDIT_X86_64 else "SCMP_ARCH_X86"]
    return bpfvm.run(program, arch, table[name], args)[0]


def test_the_default_config_has_the_default_seccomp_profile_for_this_machine():
    made = config()["linux"]["seccomp"]
    assert made == default_seccomp(build_machine())
    assert made["defaultAction"] == "SCMP_ACT_ALLOW"


def test_the_default_profile_lists_the_machine_and_its_compat_arches():
    assert default_seccomp("x86_64")["architectures"] == [
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert default_seccomp("aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_unconfined_leaves_seccomp_out():
    assert "seccomp" not in config(seccomp="unconfined")["linux"]


def test_a_seccomp_file_is_used_as_it_is(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    assert config(seccomp=str(path))["linux"]["seccomp"] == profile


@pytest.mark.parametrize("content, words", [
    (None, "cannot read it"),
    ("{", "not JSON"),
    ('{"defaultAction": "SCMP_ACT_MAYBE"}', "linux.seccomp.defaultAction must be one of"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "archMap": []}', "this is a Docker profile"),
])
def test_a_bad_seccomp_file_is_refused_naming_the_option(tmp_path, content, words):
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BuildError) as caught:
        config(seccomp=str(path))
    assert caught.value.message.startswith("--seccomp {!r}: ".format(str(path)))
    assert words in caught.value.message


def test_the_default_profile_means_the_same_to_runc_and_libseccomp():
    """When runc loads the profile, it skips rules with the default action and ORs tests of
    one argument: the default profile has neither, so both runtimes filter alike."""
    profile = default_seccomp("x86_64")
    for rule in profile["syscalls"]:
        assert rule["action"] != profile["defaultAction"]
        indexes = [arg["index"] for arg in rule.get("args", [])]
        assert len(indexes) == len(set(indexes))
        assert all(any(name in table for table in TABLES.values()) for name in rule["names"])


@pytest.mark.parametrize("name", ["mount", "umount2", "keyctl", "unshare", "setns", "bpf",
                                  "ptrace", "pivot_root", "kexec_load", "open_by_handle_at",
                                  "io_uring_setup", "fsopen", "settimeofday", "reboot"])
def test_the_default_profile_denies_with_eperm(name):
    assert decide(default_program(), name) == EPERM


def test_the_default_profile_denies_int_0x80_calls_by_their_i386_numbers():
    program = default_program()
    assert decide(program, "mount", arch=AUDIT_I386) == EPERM
    assert decide(program, "stime", arch=AUDIT_I386) == EPERM
    assert decide(program, "getpid", arch=AUDIT_I386) == ALLOW


def test_the_default_profile_allows_what_services_use():
    program = default_program()
    for name in ("read", "write", "openat", "execve", "chroot", "socket", "prctl", "setuid"):
        assert decide(program, name) == ALLOW


def test_clone_is_denied_only_with_namespace_flags_and_clone3_says_enosys():
    program = default_program()
    assert decide(program, "clone", (0x01200011,)) == ALLOW  # fork(): CHILD_*TID | SIGCHLD
    assert decide(program, "clone", (0x003D0F00,)) == ALLOW  # pthread_create's flags
    assert decide(program, "clone", (0x10000000 | 0x11,)) == EPERM  # CLONE_NEWUSER
    assert decide(program, "clone", (0x00020000,)) == EPERM  # CLONE_NEWNS
    assert decide(program, "clone3") == ENOSYS


def test_personality_is_allowed_only_with_the_values_docker_allows():
    program = default_program()
    safe = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
    others = [1 << bit for bit in range(32)] + [value + delta for value in safe
                                                for delta in (-1, 1)]
    others += [0x0040000, 0x0400000, 0xFFFFFFF7, 0xFFFDFFFF, 0xFFFDFFF7, 1 << 32, 2 ** 64 - 1]
    others += list(range(0, 0x30000, 7)) + list(range(0xFFFF0000, 0xFFFFFFFF, 13))
    for value in safe:
        assert decide(program, "personality", (value,)) == ALLOW
    for value in {value % 2 ** 64 for value in others} - set(safe):
        assert decide(program, "personality", (value,)) == EPERM, hex(value)
        if value < 2 ** 32:
            assert decide(program, "personality", (value,), arch=AUDIT_I386) == EPERM
