"""config.json from build options: the shape, each option's checks, the node's reader."""

import os

import pytest

from vzmaster.build.errors import BuildError
from vzmaster.build.ociconfig import (
    DEFAULT_PATH,
    Options,
    User,
    check_with_node_reader,
    make_config,
    resolve_user,
)
from vzslave import oci

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
