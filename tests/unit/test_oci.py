"""config.json -> exec plan: what is honoured, how, and what is refused naming the field."""

import copy
import json
import marshal
import os
import shutil
import subprocess

import pytest

from vzslave import oci
from vzslave.errors import BadConfigError, BadNameError, NoSuchBundleError

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUNC_CAPS = [29, 5, 10]  # CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE


@pytest.fixture
def bundle(tmp_path):
    """A bundle directory holding an empty rootfs (realpath, so plans compare equal)."""
    os.mkdir(str(tmp_path / "rootfs"))
    return os.path.realpath(str(tmp_path))


def minimal(**extra):
    config = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
              "process": {"args": ["/bin/sh"], "cwd": "/"}}
    config.update(extra)
    return config


def plan_of(bundle, config=None, **extra):
    return oci.build_plan(minimal(**extra) if config is None else config, bundle, "app")


def spec_config(tool, tmp_path):
    """The config.json that ``tool spec`` writes (skip if the tool is absent)."""
    if shutil.which(tool) is None:
        pytest.skip("{} is not installed".format(tool))
    where = tmp_path / (tool + "-spec")
    where.mkdir()
    subprocess.run([tool, "spec"], cwd=str(where), check=True)
    return json.loads((where / "config.json").read_text())


def mount_named(plan, destination):
    [mount] = [m for m in plan["mounts"] if m["destination"] == destination]
    return mount


# -- the specs runc and crun generate ------------------------------------------

@pytest.mark.parametrize("tool", ["runc", "crun"])
def test_the_config_a_runtime_generates_builds_a_plan(tool, bundle, tmp_path):
    plan = plan_of(bundle, spec_config(tool, tmp_path))
    assert [ns["type"] for ns in plan["namespaces"]] == ["network", "ipc", "uts", "mount", "pid"]
    assert [ns["flag"] for ns in plan["namespaces"]] == [
        0x40000000, 0x08000000, 0x04000000, 0x00020000, 0x20000000]
    assert plan["hostname"] == tool and plan["readonly"] is True
    assert [m["destination"] for m in plan["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    process = plan["process"]
    assert process["args"] == ["sh"] and process["uid"] == 0 and process["gid"] == 0
    assert process["rlimits"] == [[7, 1024, 1024]]
    assert process["capabilities"]["bounding"] == RUNC_CAPS
    assert process["capabilities"]["ambient"] == RUNC_CAPS
    assert process["capabilities"]["inheritable"] == []
    assert process["no_new_privileges"] is True
    assert any(w.startswith("process.terminal is true") for w in plan["warnings"])
    assert any("cgroup mounts are skipped" in w for w in plan["warnings"])
    assert "/proc/kcore" in plan["masked_paths"] and "/proc/sys" in plan["readonly_paths"]


def test_the_plan_has_every_key_of_the_contract_but_those_vzslave_adds(bundle):
    assert set(plan_of(bundle)) == {
        "version", "name", "bundle", "rootfs", "readonly", "namespaces", "hostname",
        "domainname", "mounts", "devices", "links", "masked_paths", "readonly_paths",
        "rootfs_propagation", "process", "seccomp", "sysctl", "warnings", "enter"}


def test_the_plan_survives_marshal_and_json_unchanged(bundle, tmp_path):
    plan = plan_of(bundle, process={"args": ["/bin/sh"], "cwd": "/", "rlimits": [
        {"type": "RLIMIT_CORE", "soft": 2 ** 64 - 1, "hard": 2 ** 64 - 1}]})
    assert marshal.loads(marshal.dumps(plan)) == plan
    assert json.loads(json.dumps(plan)) == plan


def test_a_plan_with_a_seccomp_filter_survives_marshal(bundle):
    plan = plan_of(bundle, linux={"seccomp": DENY_MOUNT})
    assert marshal.loads(marshal.dumps(plan)) == plan


# -- seccomp (the compiler itself: test_seccomp.py) ----------------------------------------

DENY_MOUNT = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
              "flags": ["SECCOMP_FILTER_FLAG_LOG"],
              "syscalls": [{"names": ["mount", "mountt"], "action": "SCMP_ACT_ERRNO"}]}


def test_a_seccomp_section_is_compiled_into_the_plan_for_the_nodes_machine(bundle):
    plan = oci.build_plan(minimal(linux={"seccomp": DENY_MOUNT}), bundle, "app", "x86_64")
    seccomp = plan["seccomp"]
    assert set(seccomp) == {"program", "flags", "optional_flags", "syscall"}
    assert isinstance(seccomp["program"], bytes) and len(seccomp["program"]) % 8 == 0
    assert (seccomp["flags"], seccomp["optional_flags"], seccomp["syscall"]) == (2, 0, 317)
    assert plan["warnings"] == ['linux.seccomp.syscalls[0].names: "mountt" is not a syscall '
                                'of any architecture vz knows; it is skipped']


def test_without_a_seccomp_section_the_plan_has_no_filter(bundle):
    assert plan_of(bundle)["seccomp"] is None
    assert plan_of(bundle, linux={"seccomp": {}})["seccomp"] is None


def test_a_seccomp_section_on_a_machine_without_tables_is_refused(bundle):
    with pytest.raises(BadConfigError, match="not s390x") as caught:
        oci.build_plan(minimal(linux={"seccomp": DENY_MOUNT}), bundle, "app", "s390x")
    assert caught.value.details == {"field": "linux.seccomp"}


def test_a_minimal_config_gets_the_defaults(bundle):
    plan = plan_of(bundle)
    assert plan["bundle"] == bundle and plan["rootfs"] == os.path.join(bundle, "rootfs")
    assert plan["namespaces"] == [] and plan["hostname"] is None
    assert plan["readonly"] is False and plan["rootfs_propagation"] == 0
    assert plan["process"] == {
        "args": ["/bin/sh"], "env": [PATH_ENV], "cwd": "/", "uid": 0, "gid": 0,
        "additional_gids": [], "umask": None, "rlimits": [], "no_new_privileges": False,
        "capabilities": DEFAULTS_FOR_ROOT, "oom_score_adj": None}
    assert plan["warnings"] == [] and plan["enter"] == "pivot_root"


DEFAULT_NUMBERS = [oci.CAPABILITIES[name] for name in oci.DEFAULT_CAPABILITIES]
DEFAULTS_FOR_ROOT = {"bounding": DEFAULT_NUMBERS, "effective": DEFAULT_NUMBERS,
                     "permitted": DEFAULT_NUMBERS, "inheritable": [], "ambient": []}


def test_a_config_without_capabilities_never_gets_all_of_roots():
    """When config.json has no capabilities section, the app gets vz's defaults: no
    CAP_MKNOD (no device cgroup guards the node's disks) and no CAP_NET_RAW (the node's
    network is shared), never every capability root has."""
    assert "CAP_MKNOD" not in oci.DEFAULT_CAPABILITIES
    assert "CAP_NET_RAW" not in oci.DEFAULT_CAPABILITIES
    assert "CAP_SYS_ADMIN" not in oci.DEFAULT_CAPABILITIES


def test_a_non_root_app_without_capabilities_gets_only_the_bounding_set(bundle):
    plan = plan_of(bundle, process={"args": ["/bin/sh"], "cwd": "/",
                                    "user": {"uid": 1000, "gid": 1000}})
    assert plan["process"]["capabilities"] == {
        "bounding": DEFAULT_NUMBERS, "effective": [], "permitted": [], "inheritable": [],
        "ambient": []}


def test_the_bundle_is_resolved_to_its_realpath(bundle, tmp_path):
    os.symlink(bundle, str(tmp_path / "link"))
    plan = oci.build_plan(minimal(), str(tmp_path / "link"), "app")
    assert plan["bundle"] == bundle and plan["rootfs"] == os.path.join(bundle, "rootfs")


def test_an_absolute_root_path_inside_the_bundle_is_accepted(bundle):
    plan = plan_of(bundle, root={"path": os.path.join(bundle, "rootfs")})
    assert plan["rootfs"] == os.path.join(bundle, "rootfs")


def test_the_container_name_is_validated(bundle):
    with pytest.raises(BadNameError):
        oci.build_plan(minimal(), bundle, "../etc")


# -- mounts ----------------------------------------------------------------------

@pytest.mark.parametrize("mounts", [None, []], ids=["absent", "empty"])
def test_without_mounts_the_runc_defaults_are_used(bundle, mounts):
    config = minimal()
    if mounts is not None:
        config["mounts"] = mounts
    plan = plan_of(bundle, config)
    assert [(m["destination"], m["type"], m["source"], m["flags"], m["data"])
            for m in plan["mounts"]] == [
        ("/proc", "proc", "proc", oci.MS_NOSUID | oci.MS_NOEXEC | oci.MS_NODEV, ""),
        ("/dev", "tmpfs", "tmpfs", oci.MS_NOSUID | oci.MS_STRICTATIME, "mode=755,size=65536k"),
        ("/dev/pts", "devpts", "devpts", oci.MS_NOSUID | oci.MS_NOEXEC,
         "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ("/dev/shm", "tmpfs", "shm", oci.MS_NOSUID | oci.MS_NOEXEC | oci.MS_NODEV,
         "mode=1777,size=65536k"),
        ("/dev/mqueue", "mqueue", "mqueue", oci.MS_NOSUID | oci.MS_NOEXEC | oci.MS_NODEV, ""),
        ("/sys", "sysfs", "sysfs",
         oci.MS_NOSUID | oci.MS_NOEXEC | oci.MS_NODEV | oci.MS_RDONLY, "")]
    assert not any(m["bind"] or m["propagation"] for m in plan["mounts"])


def test_mount_options_become_flags_and_the_rest_data(bundle):
    plan = plan_of(bundle, mounts=[{
        "destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "ro", "rw", "noexec", "exec", "nodev", "mode=755",
                    "size=65536k", "noatime", "rslave", "uid=5"]}])
    mount = plan["mounts"][0]
    assert mount["flags"] == oci.MS_NOSUID | oci.MS_NODEV | oci.MS_NOATIME
    assert mount["data"] == "mode=755,size=65536k,uid=5"
    assert mount["propagation"] == oci.MS_SLAVE | oci.MS_REC
    assert mount["bind"] is False and mount["remount_readonly"] is False


def test_a_read_only_bind_mount_asks_for_a_remount(bundle):
    plan = plan_of(bundle, mounts=[{"destination": "/etc/hosts", "type": "bind",
                                    "source": "/etc/hosts", "options": ["ro", "nosuid"]}])
    mount = plan["mounts"][0]
    assert mount["bind"] is True and mount["recursive"] is False
    assert mount["remount_readonly"] is True
    assert mount["flags"] == oci.MS_RDONLY | oci.MS_NOSUID and mount["source"] == "/etc/hosts"


def test_rbind_makes_a_recursive_bind_of_any_type(bundle):
    plan = plan_of(bundle, mounts=[{"destination": "/srv", "type": "none",
                                    "source": "/srv", "options": ["rbind", "rprivate"]}])
    mount = plan["mounts"][0]
    assert mount["bind"] is True and mount["recursive"] is True
    assert mount["remount_readonly"] is False and mount["type"] == "none"
    assert mount["propagation"] == oci.MS_PRIVATE | oci.MS_REC


def test_a_relative_bind_source_that_climbs_out_of_the_bundle_is_refused(bundle):
    with pytest.raises(BadConfigError, match="climbs out of the bundle") as raised:
        plan_of(bundle, mounts=[{"destination": "/data", "source": "rootfs/../../etc",
                                 "options": ["bind"]}])
    assert raised.value.details["field"] == "mounts[0].source"


def test_recursive_options_become_mount_attributes_to_set_and_clear(bundle):
    plan = plan_of(bundle, mounts=[{"destination": "/srv", "type": "bind", "source": "/srv",
                                    "options": ["rbind", "rro", "rnosuid", "rrw", "rro",
                                                "rexec", "rnoatime"]}])
    mount = plan["mounts"][0]
    assert mount["setattr"] == [
        oci.kernel.MOUNT_ATTR_RDONLY | oci.kernel.MOUNT_ATTR_NOSUID
        | oci.kernel.MOUNT_ATTR_NOATIME,
        oci.kernel.MOUNT_ATTR_NOEXEC | oci.kernel.MOUNT_ATTR__ATIME]
    assert mount["flags"] == 0 and mount["data"] == ""


def test_a_mount_without_recursive_options_sets_no_attributes(bundle):
    plan = plan_of(bundle, mounts=[{"destination": "/srv", "type": "tmpfs",
                                    "source": "tmpfs", "options": ["ro"]}])
    assert plan["mounts"][0]["setattr"] == [0, 0]


def test_rro_is_refused_naming_the_field_where_the_kernel_lacks_mount_setattr(
        bundle, monkeypatch):
    """When the kernel has no mount_setattr(2), rro is refused, not silently dropped."""
    monkeypatch.setattr(oci.kernel, "has_mount_setattr", lambda: False)
    with pytest.raises(BadConfigError, match="has rro, which needs mount_setattr") as caught:
        plan_of(bundle, mounts=[{"destination": "/proc", "type": "proc", "source": "proc"},
                                {"destination": "/srv", "type": "bind", "source": "/srv",
                                 "options": ["rbind", "rro"]}])
    assert caught.value.details == {"field": "mounts[1].options"}


def test_an_unknown_option_on_a_bind_mount_is_refused_naming_it(bundle):
    """When a bind mount has an option no one knows, which mount(2) would silently ignore
    there, it is refused naming the option."""
    with pytest.raises(BadConfigError, match='has "noexce", which is not a mount option') as (
            caught):
        plan_of(bundle, mounts=[{"destination": "/srv", "type": "bind", "source": "/srv",
                                 "options": ["bind", "ro", "noexce"]}])
    assert caught.value.details == {"field": "mounts[0].options"}


def test_filesystem_options_on_a_bind_mount_are_dropped_with_a_warning(bundle):
    plan = plan_of(bundle, mounts=[{"destination": "/srv", "type": "bind", "source": "/srv",
                                    "options": ["bind", "mode=755", "size=1k"]}])
    assert plan["mounts"][0]["data"] == ""
    assert plan["warnings"] == ["mounts[0].options mode=755,size=1k: filesystem options "
                                "mean nothing on a bind mount: ignored"]


def test_a_relative_bind_source_is_taken_from_the_bundle(bundle):
    plan = plan_of(bundle, mounts=[{"destination": "/data", "source": "data/./x",
                                    "options": ["bind"]}])
    assert plan["mounts"][0]["in_bundle"] == "data/x"
    mount = plan["mounts"][0]
    assert mount["source"] == os.path.join(bundle, "data", "x") and mount["type"] == "bind"


def test_cgroup_mounts_are_dropped_with_a_warning(bundle):
    plan = plan_of(bundle, mounts=[
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup"}])
    assert [m["destination"] for m in plan["mounts"]] == ["/proc"]
    assert plan["warnings"] == [
        "mounts[1] (/sys/fs/cgroup): cgroup mounts are skipped by the chroot runner"]


def test_other_filesystem_types_are_left_to_the_kernel(bundle):
    plan = plan_of(bundle, mounts=[{"destination": "/mnt/", "type": "overlay",
                                    "source": "overlay", "options": ["lowerdir=/a"]}])
    assert plan["mounts"][0]["type"] == "overlay"
    assert plan["mounts"][0]["destination"] == "/mnt"


# -- process -----------------------------------------------------------------------

def test_an_infinite_rlimit_becomes_minus_one(bundle):
    plan = plan_of(bundle, process={"args": ["/bin/sh"], "cwd": "/", "rlimits": [
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 2 ** 64 - 1},
        {"type": "RLIMIT_RTTIME", "soft": 2 ** 64 - 1, "hard": 2 ** 64 - 1}]})
    assert plan["process"]["rlimits"] == [[4, 0, -1], [15, -1, -1]]


def test_user_umask_oom_score_and_env_are_kept(bundle):
    plan = plan_of(bundle, process={
        "args": ["/bin/sh"], "cwd": "/srv", "env": ["A=1", "B="], "oomScoreAdj": -500,
        "user": {"uid": 1000, "gid": 100, "umask": 0o27, "additionalGids": [5, 6],
                 "username": "ignored"},
        "consoleSize": {"height": 10, "width": 20}, "commandLine": "ignored"})
    process = plan["process"]
    assert (process["uid"], process["gid"], process["additional_gids"]) == (1000, 100, [5, 6])
    assert process["umask"] == 0o27 and process["oom_score_adj"] == -500
    assert process["env"] == ["A=1", "B="] and process["cwd"] == "/srv"


def test_an_empty_env_stays_empty(bundle):
    plan = plan_of(bundle, process={"args": ["/bin/sh"], "cwd": "/", "env": []})
    assert plan["process"]["env"] == []


def test_absent_capability_sets_are_empty(bundle):
    plan = plan_of(bundle, process={"args": ["/bin/sh"], "cwd": "/", "capabilities": {
        "bounding": ["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN"]}})
    assert plan["process"]["capabilities"] == {
        "bounding": [0, 40], "effective": [], "inheritable": [], "permitted": [], "ambient": []}


def test_the_name_tables_use_the_linux_numbers():
    assert len(oci.CAPABILITIES) == 41 and oci.CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert oci.CAPABILITIES["CAP_AUDIT_WRITE"] == 29 and oci.CAPABILITIES["CAP_BPF"] == 39
    assert len(oci.RLIMITS) == 16 and oci.RLIMITS["RLIMIT_NOFILE"] == 7
    assert oci.RLIMITS["RLIMIT_AS"] == 9 and oci.RLIMITS["RLIMIT_RTTIME"] == 15


# -- linux ---------------------------------------------------------------------------

def test_the_pid_namespace_goes_last_and_paths_are_kept(bundle):
    plan = plan_of(bundle, linux={"namespaces": [
        {"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"}, {"type": "cgroup"}]})
    assert plan["namespaces"] == [
        {"type": "network", "flag": 0x40000000, "path": "/proc/self/ns/net",
         "field": "linux.namespaces[1]"},
        {"type": "cgroup", "flag": 0x02000000, "path": None, "field": "linux.namespaces[2]"},
        {"type": "pid", "flag": 0x20000000, "path": None, "field": "linux.namespaces[0]"}]


def test_a_namespace_path_of_another_type_is_refused_naming_the_path(bundle):
    """When a path names a namespace of another type, the refusal names its field."""
    with pytest.raises(BadConfigError) as caught:
        plan_of(bundle, linux={"namespaces": [
            {"type": "mount"}, {"type": "uts"}, {"type": "ipc", "path": "/proc/self/ns/net"}]})
    assert caught.value.details == {"field": "linux.namespaces[2].path"}
    assert "/proc/self/ns/net is a namespace of type network, but the entry's type is ipc" in (
        caught.value.message)


def test_a_namespace_path_that_cannot_be_opened_is_refused(bundle, tmp_path):
    missing = str(tmp_path / "missing")  # not /nonexistent: some tools make it (nobody's HOME)
    with pytest.raises(BadConfigError, match="cannot be opened") as caught:
        plan_of(bundle, linux={"namespaces": [{"type": "network", "path": missing}]})
    assert caught.value.details == {"field": "linux.namespaces[0].path"}


def test_namespaced_sysctls_are_kept_as_paths_under_proc_sys(bundle):
    plan = plan_of(bundle, linux={
        "namespaces": [{"type": "network"}, {"type": "ipc"}, {"type": "uts"}],
        "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "8192",
                   "fs.mqueue.msg_max": "20", "kernel.domainname": "example.org"}})
    assert plan["sysctl"] == [["fs/mqueue/msg_max", "20"], ["kernel/domainname", "example.org"],
                              ["kernel/shmmax", "8192"], ["net/ipv4/ip_forward", "1"]]


@pytest.mark.parametrize("key, namespaces, why", [
    ("net.ipv4.ip_forward", ["ipc"], "needs the container's own network namespace"),
    ("kernel.msgmax", ["network"], "needs the container's own ipc namespace"),
    ("vm.swappiness", ["network", "ipc", "uts"], "not in a separate kernel namespace"),
    ("kernel.hostname", ["uts"], "use the hostname field"),
    ("net..x", ["network"], "is not a sysctl name"),
])
def test_a_sysctl_that_would_change_the_host_is_refused_as_runc_refuses_it(
        bundle, key, namespaces, why):
    with pytest.raises(BadConfigError, match=why) as caught:
        plan_of(bundle, linux={"namespaces": [{"type": kind} for kind in namespaces],
                               "sysctl": {key: "1"}})
    assert caught.value.details == {"field": "linux.sysctl." + key}


def test_a_hostname_with_a_uts_namespace_is_kept(bundle):
    plan = plan_of(bundle, hostname="box", domainname="example.org",
                   linux={"namespaces": [{"type": "uts"}]})
    assert (plan["hostname"], plan["domainname"]) == ("box", "example.org")


def test_the_default_devices_and_links_are_always_in_the_plan(bundle):
    plan = plan_of(bundle)
    assert [(d["path"], d["major"], d["minor"], d["mode"]) for d in plan["devices"]] == [
        ("/dev/null", 1, 3, 0o666), ("/dev/zero", 1, 5, 0o666), ("/dev/full", 1, 7, 0o666),
        ("/dev/random", 1, 8, 0o666), ("/dev/urandom", 1, 9, 0o666), ("/dev/tty", 5, 0, 0o666)]
    assert ["/dev/ptmx", "pts/ptmx"] in plan["links"] and len(plan["links"]) == 5


def test_linux_devices_are_added_and_replace_a_default_of_the_same_path(bundle):
    plan = plan_of(bundle, linux={"devices": [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o20660,
         "uid": 0, "gid": 5},
        {"path": "/dev/null", "type": "u", "major": 1, "minor": 3, "fileMode": 0o600},
        {"path": "/dev/pipe", "type": "p"}]})
    devices = {d["path"]: d for d in plan["devices"]}
    assert [d["path"] for d in plan["devices"]][-2:] == ["/dev/fuse", "/dev/pipe"]
    assert devices["/dev/fuse"] == {"path": "/dev/fuse", "type": "c", "major": 10,
                                    "minor": 229, "mode": 0o660, "uid": 0, "gid": 5}
    assert devices["/dev/null"]["mode"] == 0o600 and devices["/dev/null"]["type"] == "c"
    assert plan["devices"][0]["path"] == "/dev/null"
    assert devices["/dev/pipe"]["type"] == "p" and devices["/dev/pipe"]["major"] == 0


@pytest.mark.parametrize("rules", [
    [{"allow": False, "access": "rwm"}],
    [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3,
                                         "access": "rwm"}],
    [{"allow": True, "type": "c", "major": 136, "access": "rwm"}],
], ids=["deny-all", "allow-null", "allow-pts"])
def test_device_rules_that_deny_or_allow_made_nodes_are_accepted(bundle, rules):
    plan_of(bundle, linux={"resources": {"devices": rules, "memory": {}, "pids": None}})


def test_a_device_rule_may_allow_a_node_from_linux_devices(bundle):
    plan_of(bundle, linux={
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
        "resources": {"devices": [{"allow": True, "type": "c", "major": 10, "minor": 229}]}})


def test_rootfs_propagation_becomes_flags(bundle):
    plan = plan_of(bundle, linux={"rootfsPropagation": "rslave"})
    assert plan["rootfs_propagation"] == oci.MS_SLAVE | oci.MS_REC


def test_unknown_and_ignored_fields_do_not_matter(bundle):
    plan_of(bundle, annotations={"a": "b"}, future={"x": 1}, solaris={},
            linux={"future": True, "seccomp": None, "sysctl": {}, "cgroupsPath": ""},
            hooks={"prestart": []})


# -- refusals --------------------------------------------------------------------------

def change(path, value):
    """A function that sets the dotted ``path`` of a config to ``value``."""
    def apply(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return apply


def drop(path):
    def apply(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]
    return apply


NS = "linux.namespaces"
REFUSALS = [
    ("ociVersion", change("ociVersion", "2.0.0"), "ociVersion"),
    ("ociVersion-missing", drop("ociVersion"), "ociVersion"),
    ("root-missing", drop("root"), "root"),
    ("root-path-empty", change("root.path", ""), "root.path"),
    ("root-path-not-a-dir", change("root.path", "nothing"), "root.path"),
    ("root-readonly", change("root.readonly", "yes"), "root.readonly"),
    ("process-missing", drop("process"), "process"),
    ("args-empty", change("process.args", []), "process.args"),
    ("args-not-strings", change("process.args", ["/bin/sh", 1]), "process.args[1]"),
    ("args-nul", change("process.args", ["/bin/sh\0"]), "process.args[0]"),
    ("cwd-relative", change("process.cwd", "srv"), "process.cwd"),
    ("cwd-missing", drop("process.cwd"), "process.cwd"),
    ("env-no-equals", change("process.env", ["A=1", "NOEQUALS"]), "process.env[1]"),
    ("uid-negative", change("process.user", {"uid": -1, "gid": 0}), "process.user.uid"),
    ("gid-bool", change("process.user", {"uid": 0, "gid": True}), "process.user.gid"),
    ("umask", change("process.user", {"umask": 0o1777}), "process.user.umask"),
    ("additional-gids", change("process.user", {"additionalGids": ["5"]}),
     "process.user.additionalGids[0]"),
    ("terminal-not-bool", change("process.terminal", "yes"), "process.terminal"),
    ("oom", change("process.oomScoreAdj", 1001), "process.oomScoreAdj"),
    ("rlimit-duplicate", change("process.rlimits", [
        {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
        {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
        {"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]), "process.rlimits[1].type"),
    ("rlimit-bogus", change("process.rlimits", [
        {"type": "RLIMIT_CPU", "soft": 1, "hard": 1},
        {"type": "RLIMIT_FSIZE", "soft": 1, "hard": 1},
        {"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]), "process.rlimits[2].type"),
    ("rlimit-soft-above-hard", change("process.rlimits", [
        {"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]), "process.rlimits[0]"),
    ("rlimit-too-big", change("process.rlimits", [
        {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2 ** 64}]), "process.rlimits[0].hard"),
    ("rlimit-missing-soft", change("process.rlimits", [
        {"type": "RLIMIT_NOFILE", "hard": 1}]), "process.rlimits[0].soft"),
    ("capability-unknown", change("process.capabilities", {
        "effective": ["CAP_KILL", "CAP_BOGUS"]}), "process.capabilities.effective[1]"),
    ("capabilities-not-object", change("process.capabilities", ["CAP_KILL"]),
     "process.capabilities"),
    ("no-new-privileges", change("process.noNewPrivileges", 1), "process.noNewPrivileges"),
    ("apparmor", change("process.apparmorProfile", "docker-default"),
     "process.apparmorProfile"),
    ("selinux", change("process.selinuxLabel", "system_u:system_r:svirt_lxc_net_t:s0"),
     "process.selinuxLabel"),
    ("io-priority", change("process.ioPriority", {"class": "IOPRIO_CLASS_IDLE",
                                                  "priority": 0}), "process.ioPriority"),
    ("scheduler", change("process.scheduler", {"policy": "SCHED_IDLE"}), "process.scheduler"),
    ("cpu-affinity", change("process.execCPUAffinity", {"initial": "0"}),
     "process.execCPUAffinity"),
    ("hostname-without-uts", change("hostname", "box"), "hostname"),
    ("domainname-without-uts", change("domainname", "example.org"), "domainname"),
    ("linux-not-object", change("linux", []), "linux"),
    ("user-namespace", change(NS, [{"type": "mount"}, {"type": "user"}]), NS + "[1]"),
    ("time-namespace", change(NS, [{"type": "time"}]), NS + "[0]"),
    ("unknown-namespace", change(NS, [{"type": "bogus"}]), NS + "[0]"),
    ("duplicate-namespace", change(NS, [{"type": "pid"}, {"type": "pid"}]), NS + "[1]"),
    ("namespace-path-relative", change(NS, [{"type": "network", "path": "ns/net"}]),
     NS + "[0].path"),
    ("uid-mappings", change("linux.uidMappings", [{"containerID": 0, "hostID": 1000,
                                                   "size": 1}]), "linux.uidMappings"),
    ("gid-mappings", change("linux.gidMappings", [{"containerID": 0, "hostID": 1000,
                                                   "size": 1}]), "linux.gidMappings"),
    ("time-offsets", change("linux.timeOffsets", {"monotonic": {"secs": 1}}),
     "linux.timeOffsets"),
    ("cgroups-path", change("linux.cgroupsPath", "/vz/app"), "linux.cgroupsPath"),
    ("sysctl", change("linux.sysctl", {"net.ipv4.ip_forward": "1"}),
     "linux.sysctl.net.ipv4.ip_forward"),
    ("seccomp-notify", change("linux.seccomp", {"defaultAction": "SCMP_ACT_NOTIFY"}),
     "linux.seccomp.defaultAction"),
    ("seccomp-bad-action", change("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                                                    "syscalls": [{"names": ["mount"]}]}),
     "linux.seccomp.syscalls[0].action"),
    ("intel-rdt", change("linux.intelRdt", {"closID": "x"}), "linux.intelRdt"),
    ("personality", change("linux.personality", {"domain": "LINUX32"}), "linux.personality"),
    ("mount-label", change("linux.mountLabel", "system_u:object_r:svirt_sandbox_file_t:s0"),
     "linux.mountLabel"),
    ("memory-policy", change("linux.memoryPolicy", {"mode": "MPOL_BIND"}),
     "linux.memoryPolicy"),
    ("net-devices", change("linux.netDevices", {"eth1": {}}), "linux.netDevices"),
    ("hooks", change("hooks", {"poststop": [], "prestart": [{"path": "/bin/true"}]}),
     "hooks.prestart"),
    ("resources-memory", change("linux.resources", {"memory": {"limit": 1 << 30}}),
     "linux.resources.memory"),
    ("resources-unified", change("linux.resources", {"unified": {"pids.max": "10"}}),
     "linux.resources.unified"),
    ("resources-allow-all", change("linux.resources", {"devices": [
        {"allow": False, "access": "rwm"}, {"allow": True, "access": "rwm"}]}),
     "linux.resources.devices[1]"),
    ("resources-allow-sda", change("linux.resources", {"devices": [
        {"allow": True, "type": "b", "major": 8, "minor": 0}]}), "linux.resources.devices[0]"),
    ("device-outside-dev", change("linux.devices", [
        {"path": "/etc/null", "type": "c", "major": 1, "minor": 3}]), "linux.devices[0].path"),
    ("device-dotdot", change("linux.devices", [
        {"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}]),
     "linux.devices[0].path"),
    ("device-type", change("linux.devices", [
        {"path": "/dev/x", "type": "s", "major": 1, "minor": 3}]), "linux.devices[0].type"),
    ("device-no-major", change("linux.devices", [
        {"path": "/dev/x", "type": "c", "minor": 3}]), "linux.devices[0].major"),
    ("masked-relative", change("linux.maskedPaths", ["proc/kcore"]), "linux.maskedPaths[0]"),
    ("readonly-dotdot", change("linux.readonlyPaths", ["/proc/../etc"]),
     "linux.readonlyPaths[0]"),
    ("propagation", change("linux.rootfsPropagation", "bogus"), "linux.rootfsPropagation"),
    ("mounts-not-list", change("mounts", {"destination": "/x"}), "mounts"),
    ("mount-not-object", change("mounts", ["/proc"]), "mounts[0]"),
    ("mount-relative", change("mounts", [{"destination": "proc", "type": "proc"}]),
     "mounts[0].destination"),
    ("mount-dotdot", change("mounts", [
        {"destination": "/proc", "type": "proc"},
        {"destination": "/x/../../etc", "type": "tmpfs"}]), "mounts[1].destination"),
    ("mount-no-type", change("mounts", [{"destination": "/x", "source": "x"}]),
     "mounts[0].type"),
    ("bind-no-source", change("mounts", [{"destination": "/x", "options": ["bind"]}]),
     "mounts[0].source"),
    ("mount-options", change("mounts", [{"destination": "/x", "type": "tmpfs",
                                         "options": "ro"}]), "mounts[0].options"),
    ("mount-idmap", change("mounts", [
        {"destination": "/proc", "type": "proc"}, {"destination": "/proc", "type": "proc"},
        {"destination": "/proc", "type": "proc"},
        {"destination": "/x", "source": "/x", "type": "bind", "options": ["rbind", "idmap"]}]),
     "mounts[3].options"),
    ("mount-uid-mappings", change("mounts", [
        {"destination": "/x", "source": "/x", "options": ["bind"],
         "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]),
     "mounts[0].uidMappings"),
]


@pytest.mark.parametrize("mutate, field", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refuses_what_the_chroot_runner_cannot_do_naming_the_field(bundle, mutate, field):
    config = copy.deepcopy(minimal())
    mutate(config)
    with pytest.raises(BadConfigError) as caught:
        plan_of(bundle, config)
    assert caught.value.details == {"field": field}
    assert field.split("[")[0] in caught.value.message


@pytest.mark.parametrize("mutate", [
    change("linux.uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
    change("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/agent"}),
    change("process.apparmorProfile", "x"),
    change("linux.namespaces", [{"type": "user"}]),
    change("linux.resources", {"cpu": {"shares": 2}}),
    change("hooks", {"createRuntime": [{"path": "/bin/true"}]}),
], ids=["uid-mappings", "seccomp", "apparmor", "user-namespace", "resources", "hooks"])
def test_refusals_of_unsupported_features_point_at_runc_or_crun(bundle, mutate):
    config = minimal()
    mutate(config)
    with pytest.raises(BadConfigError) as caught:
        plan_of(bundle, config)
    assert "set runtime to runc or crun to run this bundle unchanged" in caught.value.message


def test_a_root_path_of_dot_makes_the_bundle_dir_the_rootfs(bundle):
    """When root.path is ".", as the spec and runc allow, the bundle dir is the rootfs."""
    assert plan_of(bundle, root={"path": "."})["rootfs"] == bundle


@pytest.mark.parametrize("root_path", ["..", "../outside", "/tmp", "rootfs/../.."])
def test_refuses_a_root_path_outside_the_bundle(bundle, tmp_path, root_path):
    with pytest.raises(BadConfigError) as caught:
        plan_of(bundle, root={"path": root_path})
    assert caught.value.details == {"field": "root.path"}


def test_refuses_a_rootfs_symlink_that_leads_out_of_the_bundle(bundle, tmp_path):
    os.rmdir(os.path.join(bundle, "rootfs"))
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    os.symlink(str(outside), os.path.join(bundle, "rootfs"))
    with pytest.raises(BadConfigError) as caught:
        plan_of(bundle)
    assert caught.value.details == {"field": "root.path"}


# -- load_config ------------------------------------------------------------------------

def write_config(bundle, data):
    with open(os.path.join(bundle, "config.json"), "wb") as out:
        out.write(data)


def test_load_config_reads_the_bundles_config(bundle):
    write_config(bundle, json.dumps(minimal()).encode())
    assert oci.load_config(bundle) == minimal()


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe{}", b"[" * 100000],
                         ids=["garbage", "not-utf8", "too-deep"])
def test_load_config_refuses_what_is_not_json(bundle, data):
    write_config(bundle, data)
    with pytest.raises(BadConfigError) as caught:
        oci.load_config(bundle)
    assert caught.value.details == {"field": "config.json"}
    assert "not valid JSON" in caught.value.message


def test_load_config_refuses_json_that_is_not_an_object(bundle):
    write_config(bundle, b'["ociVersion"]')
    with pytest.raises(BadConfigError, match="JSON object") as caught:
        oci.load_config(bundle)
    assert caught.value.details == {"field": "config.json"}


def test_load_config_refuses_a_missing_config(bundle):
    with pytest.raises(BadConfigError, match="is missing") as caught:
        oci.load_config(bundle)
    assert caught.value.details == {"field": "config.json"}


def test_load_config_refuses_a_config_that_is_a_symlink_out_of_the_bundle(bundle, tmp_path):
    outside = tmp_path.parent / (tmp_path.name + "-secret.json")
    outside.write_text(json.dumps(minimal()))
    os.symlink(str(outside), os.path.join(bundle, "config.json"))
    with pytest.raises(BadConfigError, match="symbolic link") as caught:
        oci.load_config(bundle)
    assert caught.value.details == {"field": "config.json"}


def test_load_config_refuses_a_config_larger_than_the_limit(bundle):
    write_config(bundle, json.dumps(minimal(padding="x" * 2000)).encode())
    with pytest.raises(BadConfigError, match="larger than 1000 bytes") as caught:
        oci.load_config(bundle, max_bytes=1000)
    assert caught.value.details == {"field": "config.json"}


def test_load_config_accepts_a_config_of_exactly_the_limit(bundle):
    data = json.dumps(minimal()).encode()
    write_config(bundle, data)
    assert oci.load_config(bundle, max_bytes=len(data)) == minimal()


def test_load_config_refuses_a_fifo_without_blocking(bundle):
    """When config.json is a named pipe, opening it must not wait for a writer."""
    os.mkfifo(os.path.join(bundle, "config.json"))
    with pytest.raises(BadConfigError, match="not a regular file") as caught:
        oci.load_config(bundle)
    assert caught.value.details == {"field": "config.json"}


def test_load_config_of_a_missing_bundle_says_so(tmp_path):
    with pytest.raises(NoSuchBundleError):
        oci.load_config(str(tmp_path / "nothing"))
