"""The node's policy: loading it (fail closed) and checking configs and start options."""

import json
import os

import pytest

from vzslave import oci
from vzslave.errors import PolicyDeniedError
from vzslave.policy import load_policy


def policy(tmp_path, **rules):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(rules))
    return load_policy(str(path))


def config(**extra):
    document = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                "process": {"args": ["/bin/sh"], "cwd": "/"}}
    document.update(extra)
    return document


def denied(check, *args):
    with pytest.raises(PolicyDeniedError) as raised:
        check(*args)
    return raised.value


def test_without_a_policy_file_everything_is_allowed(tmp_path):
    rules = load_policy(str(tmp_path / "absent.json"))
    rules.check_config(config(mounts=[{"destination": "/x", "type": "bind",
                                       "source": "/etc"}],
                              linux={"namespaces": [{"type": "network",
                                                     "path": "/proc/1/ns/net"}]}),
                       str(tmp_path))
    rules.check_start("runc", ["--debug"])
    assert rules.chroot_fallback is True


@pytest.mark.parametrize("text, why", [
    ("{", "it is not JSON"),
    ("[]", "it must hold a JSON object"),
    ('{"bind_source": []}', 'unknown key "bind_source"'),
    ('{"capabilities": "CAP_CHOWN"}', "capabilities must be a list of strings"),
    ('{"capabilities": ["CAP_FLY"]}', "CAP_FLY is not a Linux capability"),
    ('{"chroot_fallback": "no"}', "chroot_fallback must be true or false"),
    ('{"require_namespaces": ["user"]}', "user is not a namespace type"),
    ('{"devices": ["c 1"]}', "devices entries are"),
])
def test_a_broken_policy_file_refuses_everything(tmp_path, text, why):
    """When the policy file has a typo, nothing is allowed until it is fixed: a
    misspelt key must not leave the node open."""
    path = tmp_path / "policy.json"
    path.write_text(text)
    error = denied(load_policy, str(path))
    assert why in error.message and error.details["policy"] == "file"


def test_a_bind_source_outside_the_allowed_node_paths_is_refused(tmp_path):
    rules = policy(tmp_path, bind_sources=["/srv", "/etc/hosts"])
    mounts = [{"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts"},
              {"destination": "/data", "source": "/srv/app/data", "options": ["rbind"]},
              {"destination": "/own", "type": "bind", "source": "rootfs/own"},
              {"destination": "/x", "type": "none", "source": "/etc", "options": ["bind"]}]
    error = denied(rules.check_config, config(mounts=mounts), str(tmp_path))
    assert error.details == {"field": "mounts[3].source", "policy": "bind_sources"}
    assert "binds /etc from the node" in error.message


def test_a_bind_source_is_judged_where_the_nodes_symlinks_lead(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    os.symlink("/etc", str(allowed / "sneaky"))
    rules = policy(tmp_path, bind_sources=[str(allowed)])
    error = denied(rules.check_config, config(mounts=[
        {"destination": "/x", "type": "bind", "source": str(allowed / "sneaky")}]),
        str(tmp_path))
    assert "(that is /etc)" in error.message


def test_a_device_beyond_the_allowed_ones_is_refused(tmp_path):
    rules = policy(tmp_path, devices=["c 10:200"])
    linux = {"devices": [{"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200},
                         {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]}
    error = denied(rules.check_config, config(linux=linux), str(tmp_path))
    assert error.details == {"field": "linux.devices[1]", "policy": "devices"}


def test_a_capability_beyond_the_allowed_ones_is_refused(tmp_path):
    rules = policy(tmp_path, capabilities=["CAP_CHOWN", "CAP_SETUID"])
    process = {"args": ["/bin/sh"], "cwd": "/",
               "capabilities": {"bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}}
    error = denied(rules.check_config, config(process=process), str(tmp_path))
    assert error.details == {"field": "process.capabilities.bounding[1]",
                             "policy": "capabilities"}


def test_no_capabilities_section_means_the_default_set_which_must_be_allowed(tmp_path):
    rules = policy(tmp_path, capabilities=["CAP_CHOWN"])
    error = denied(rules.check_config, config(), str(tmp_path))
    assert error.details["field"] == "process.capabilities"
    policy(tmp_path, capabilities=oci.DEFAULT_CAPABILITIES).check_config(config(),
                                                                         str(tmp_path))


def test_joining_a_namespace_of_the_node_can_be_forbidden(tmp_path):
    rules = policy(tmp_path, join_namespaces=False)
    linux = {"namespaces": [{"type": "mount"}, {"type": "network", "path": "/proc/1/ns/net"}]}
    error = denied(rules.check_config, config(linux=linux), str(tmp_path))
    assert error.details == {"field": "linux.namespaces[1].path",
                             "policy": "join_namespaces"}


def test_a_required_namespace_must_be_created(tmp_path):
    rules = policy(tmp_path, require_namespaces=["pid"])
    error = denied(rules.check_config, config(linux={"namespaces": [{"type": "mount"}]}),
                   str(tmp_path))
    assert error.details == {"field": "linux.namespaces", "policy": "require_namespaces"}
    rules.check_config(config(linux={"namespaces": [{"type": "pid"}]}), str(tmp_path))


def test_runtimes_and_runtime_args_are_checked_at_start(tmp_path):
    rules = policy(tmp_path, runtimes=["builtin", "crun"],
                   runtime_args=["--cgroup-manager"])
    rules.check_start("crun", ["--cgroup-manager=disabled"])
    assert denied(rules.check_start, "runc", []).details["policy"] == "runtimes"
    assert denied(rules.check_start, "crun", ["--root=/x"]).details["policy"] == \
        "runtime_args"
