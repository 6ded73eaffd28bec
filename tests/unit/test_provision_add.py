"""node add's own parts: the launcher, the vz.yml entry, the public key found."""

import re

import pytest

from vzmaster.provision import add
from vzmaster.provision.remote import Done, ProvisionError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me"


def test_the_launcher_pins_the_nodes_python_and_the_agents_tree_isolated():
    text = add.launcher_text("/usr/bin/python3.6", "/usr/local/lib/vz/vzslave-1-abc")
    assert text.startswith(b"#!/bin/sh\n")
    assert text.endswith(b'exec /usr/bin/python3.6 -I /usr/local/lib/vz/vzslave-1-abc "$@"\n')


def test_the_launcher_runs_the_agent_as_root_through_sudo_for_another_user():
    text = add.launcher_text("/usr/bin/python3", "/usr/local/lib/vz/t")
    assert b'[ "$(id -u)" = 0 ] || exec sudo -n -- "$0" "$@"\n' in text


def ask(**fields):
    values = dict(name="n1", host="203.0.113.10", config="vz.yml", public_key=KEY,
                  private_key="/k", known_hosts="/kh")
    values.update(fields)
    return add.NodeAdd(**values)


def test_the_vz_yml_entry_holds_only_what_differs_from_the_defaults():
    assert add._entry(ask()) == {"host": "203.0.113.10"}  # noqa: SLF001
    assert add._entry(ask(user="deploy", port=2222, groups=("eu",))) == {  # noqa: SLF001
        "host": "203.0.113.10", "user": "deploy", "port": 2222, "groups": ["eu"]}


def test_the_public_key_is_the_private_keys_pub_file(tmp_path):
    (tmp_path / "id").write_text("private")
    (tmp_path / "id.pub").write_text(KEY + "\n")
    assert add.public_key_for(str(tmp_path / "id")) == (KEY, str(tmp_path / "id"))


def test_a_missing_or_bad_public_key_is_refused(tmp_path):
    (tmp_path / "bad.pub").write_text("hello\n")
    with pytest.raises(ProvisionError, match="public key"):
        add.public_key_for(str(tmp_path / "none"))
    with pytest.raises(ProvisionError, match="not an OpenSSH public key"):
        add.public_key_for(str(tmp_path / "x"), str(tmp_path / "bad.pub"))


def test_what_a_package_manager_said_is_its_warnings_and_errors_first():
    done = Done(0, b"Reading package lists...\nW: Failed to fetch http://x  no DNS\n",
                b"E: Unable to locate package python3\n")
    assert add._gist(done) == ("; it said: W: Failed to fetch http://x  no DNS / "
                               "E: Unable to locate package python3")


def test_with_no_warning_what_it_said_is_its_last_line():
    done = Done(0, b"Reading package lists...\npython3 is already the newest version.\n", b"")
    assert add._gist(done) == "; it said: python3 is already the newest version."


def ask_with(tmp_path, **fields):
    values = dict(name="n1", host="192.0.2.1", config=str(tmp_path / "vz.yml"),
                  public_key="ssh-ed25519 AAAA k", private_key="/nonexistent",
                  known_hosts=str(tmp_path / "known_hosts"), password="pw")
    values.update(fields)
    return add.NodeAdd(**values)


@pytest.mark.parametrize("fields, said", [
    ({"name": "bad name"}, "nodes.bad name: bad node name"),
    ({"name": "all"}, "'all' is reserved"),
    ({"port": 0}, "nodes.n1.port: must be at least 1, got 0"),
    ({"port": 70000}, "nodes.n1.port: must be at most 65535"),
    ({"groups": ("a b",)}, "bad group name 'a b'"),
    ({"host": "-oProxyCommand=touch /tmp/x"}, "nodes.n1.host"),
    ({"connect_timeout": -1.0}, "the connect timeout must be above 0"),
])
def test_bad_input_is_refused_before_the_node_is_touched(tmp_path, fields, said):
    def connector(*args):
        raise AssertionError("node add connected despite bad input")

    with pytest.raises(ProvisionError, match=re.escape(said)):
        add.add_node(ask_with(tmp_path, sock_factory=connector, **fields))
    assert not (tmp_path / "vz.yml").exists()
