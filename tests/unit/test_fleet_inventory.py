"""Ansible inventories as vz nodes: read by ansible-core, merged under vz.yml's nodes:."""

import os
import sys
import textwrap

import pytest

from vzmaster.fleet.config import ConfigError, NodeSpec, load_config
from vzmaster.fleet.inventory import InventoryError, read_inventory

pytest.importorskip("ansible", reason="ansible-core is not installed (pip install -e '.[test]')")

INI = """\
fra1 ansible_host=203.0.113.10 ansible_port=2222 vz_firewall=true

[eu]
fra1
ams1 ansible_user=deploy ansible_ssh_private_key_file=keys/ams

[us:children]
east

[east]
nyc1 ansible_host=198.51.100.7

[eu:vars]
ansible_user=eu
"""


def write(directory, name, text):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_an_ini_inventory_gives_each_host_its_node_fields_and_groups(tmp_path):
    assert read_inventory(write(tmp_path, "hosts.ini", INI)) == {
        "fra1": {"host": "203.0.113.10", "port": 2222, "user": "eu", "firewall": True,
                 "groups": ["eu"]},
        "ams1": {"host": "ams1", "user": "deploy", "key": str(tmp_path / "keys/ams"),
                 "groups": ["eu"]},
        "nyc1": {"host": "198.51.100.7", "groups": ["east", "us"]}}


def test_a_yaml_inventory_is_read_too(tmp_path):
    path = write(tmp_path, "hosts.yml", """\
        all:
          hosts:
            fra1: {ansible_host: 203.0.113.10, vz_firewall: true}
          children:
            eu:
              hosts:
                ams1: {ansible_port: "2022"}
              vars: {ansible_user: eu}
        """)
    assert read_inventory(path) == {
        "fra1": {"host": "203.0.113.10", "firewall": True},
        "ams1": {"host": "ams1", "port": 2022, "user": "eu", "groups": ["eu"]}}


def test_group_vars_beside_the_inventory_count_as_for_ansible(tmp_path):
    write(tmp_path, "group_vars/east.yml", "ansible_port: 2200\n")
    assert read_inventory(write(tmp_path, "hosts.ini", INI))["nyc1"]["port"] == 2200


def test_reading_an_inventory_needs_no_writable_home(tmp_path, monkeypatch):
    """When HOME was not writable, ansible-core failed making ~/.ansible/tmp."""
    home = write(tmp_path, "home", "a file, so nothing can be made under it\n")
    monkeypatch.setenv("HOME", home)
    monkeypatch.delenv("ANSIBLE_LOCAL_TEMP", raising=False)
    assert list(read_inventory(write(tmp_path, "hosts.ini", INI))) == ["fra1", "ams1", "nyc1"]
    assert "ANSIBLE_LOCAL_TEMP" not in os.environ


def test_reading_an_inventory_prints_nothing(tmp_path, capfd):
    read_inventory(write(tmp_path, "hosts.ini", INI))
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("line, told", [
    ("fra1 ansible_port=ssh", "host fra1: ansible_port must be a port from 1 to 65535, not "
                              "'ssh'"),
    ("fra1 vz_firewall=maybe", "host fra1: vz_firewall must be true or false, not 'maybe'"),
    ("fra1 ansible_user='{{ lookup(\"env\", \"USER\") }}'", "host fra1: ansible_user is a "
                                                           "Jinja template")])
def test_a_host_variable_vz_cannot_use_is_refused(tmp_path, line, told):
    with pytest.raises(InventoryError) as caught:
        read_inventory(write(tmp_path, "hosts.ini", line + "\n"))
    assert caught.value.message.startswith(told)


def test_an_unreadable_inventory_says_what_ansible_found_and_prints_nothing(tmp_path, capfd):
    with pytest.raises(InventoryError) as caught:
        read_inventory(write(tmp_path, "hosts.ini", "[eu\nfra1 = [[\n"))
    assert caught.value.message.startswith("ansible-core could not read it: ")
    assert capfd.readouterr() == ("", "")


def test_an_executable_inventory_is_never_run(tmp_path):
    path = write(tmp_path, "hosts", f"#!/bin/sh\ntouch {tmp_path}/ran\necho '{{}}'\n")
    os.chmod(path, 0o755)
    with pytest.raises(InventoryError):
        read_inventory(path)
    assert not os.path.exists(tmp_path / "ran")


def test_a_missing_inventory_is_refused(tmp_path):
    with pytest.raises(InventoryError, match="gone.ini: no such file"):
        read_inventory(str(tmp_path / "gone.ini"))


def test_without_ansible_core_reading_an_inventory_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ansible", None)
    with pytest.raises(InventoryError) as caught:
        read_inventory(write(tmp_path, "hosts.ini", INI))
    assert caught.value.message == ("reading an Ansible inventory needs ansible-core: pip "
                                    "install 'vz[ansible]'")


def test_without_ansible_core_vz_yml_names_its_inventory_line(tmp_path, monkeypatch):
    write(tmp_path, "hosts.ini", INI)
    path = write(tmp_path, "vz.yml", "name: shop\ninventory: hosts.ini\n")
    monkeypatch.setitem(sys.modules, "ansible", None)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        "vz.yml:2: inventory: hosts.ini: reading an Ansible inventory needs ansible-core: pip "
        "install 'vz[ansible]'"]


# -- merged with vz.yml --------------------------------------------------------------------


def test_the_inventory_s_hosts_are_nodes_of_the_fleet(tmp_path):
    write(tmp_path, "inventory/hosts.ini", INI)
    path = write(tmp_path, "vz.yml", "ssh: {user: root, port: 22}\n"
                                     "inventory: inventory/hosts.ini\n")
    config = load_config(path)
    assert config.inventory == str(tmp_path / "inventory/hosts.ini")
    assert config.nodes["nyc1"] == NodeSpec(name="nyc1", host="198.51.100.7", user="root",
                                            port=22, groups=("east", "us"))
    assert config.groups == {"eu": ["fra1", "ams1"], "east": ["nyc1"], "us": ["nyc1"]}


def test_a_nodes_entry_overrides_the_fields_it_sets_and_comes_first(tmp_path):
    write(tmp_path, "hosts.ini", INI)
    config = load_config(write(tmp_path, "vz.yml", """\
        inventory: hosts.ini
        nodes:
          ams1: {port: 2200, groups: [west]}
          lon1: {host: 192.0.2.5}
        """))
    assert list(config.nodes) == ["ams1", "lon1", "fra1", "nyc1"]
    assert config.nodes["ams1"] == NodeSpec(
        name="ams1", host="ams1", user="deploy", port=2200, key=(str(tmp_path / "keys/ams"),),
        groups=("west",))


def test_a_host_name_vz_refuses_is_named_at_the_inventory_line(tmp_path):
    write(tmp_path, "hosts.ini", "FRA1 ansible_host=203.0.113.10\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "vz.yml", "name: shop\ninventory: hosts.ini\n"))
    assert caught.value.problems == [
        "vz.yml:2: inventory: hosts.ini: host FRA1: bad node name 'FRA1': use 1 to 63 of "
        "a-z, 0-9, _ . and -, starting with a letter or digit"]


def test_an_inventory_group_named_like_a_node_is_refused(tmp_path):
    write(tmp_path, "hosts.ini", "[ams1]\nfra1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "vz.yml", "inventory: hosts.ini\nnodes:\n  ams1: {host: b}\n"))
    assert caught.value.problems == [
        "vz.yml:1: inventory: node fra1 is in group 'ams1', which is also a node's name: "
        "rename the group"]


def test_an_inventory_without_hosts_and_no_nodes_is_refused(tmp_path):
    write(tmp_path, "hosts.ini", "# nobody yet\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "vz.yml", "name: shop\ninventory: hosts.ini\n"))
    assert caught.value.problems == [
        "vz.yml:2: inventory: hosts.ini has no hosts, and there is no nodes:"]
