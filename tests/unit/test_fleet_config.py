"""vz.yml: found, loaded, checked (every problem one line, with its line), secrets."""

import logging
import os
import pickle
import textwrap

import pytest

from vzmaster.fleet.config import (AppSpec, ConfigError, FleetConfig, NodeSpec, Port,
                                   find_config, load, load_config, read_dotenv)
from vzmaster.imaging.builder import Recipe
from vzmaster.transports.base import SSHOptions

NODES = """\
nodes:
  fra1: {host: 203.0.113.10}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Each test runs in its own directory, so messages name the file vz.yml."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text, name="vz.yml"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def loaded(tmp_path, text, environ=None):
    return load_config(write(tmp_path, text), environ=environ or {})


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        loaded(tmp_path, text)
    return caught.value.problems


def app(tmp_path, body, nodes=NODES):
    """The AppSpec of app web, whose keys are ``body`` (one YAML line each)."""
    text = nodes + "apps:\n  web:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return loaded(tmp_path, text).apps["web"]


def app_problems(tmp_path, body, nodes=NODES):
    text = nodes + "apps:\n  web:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return problems(tmp_path, text)


# -- a whole file ----------------------------------------------------------------------


FULL = """\
name: shop
ssh: {user: root, port: 22, key: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts,
      via: paramiko, connect_timeout: 10}
nodes:
  fra1: {host: 203.0.113.10, groups: [eu]}
  ams1: {host: ams1, user: deploy}
  nyc1: {host: 198.51.100.7, firewall: true}
apps:
  web:
    image: images/web.tar.zst
    replicas: 2
    env: {LANG: C.UTF-8}
    secrets: [DB_PASSWORD]
    volumes: {data: /var/lib/web}
    ports: [8080/tcp]
    health: {http: "http://127.0.0.1:8080/up", timeout: 20}
    keep: 3
    start: {runtime: builtin, log_max: 10MiB}
    release: [/app/migrate]
    max_unavailable: 1
    grace: 10
"""


def test_the_example_of_the_reference_loads_into_the_fleet_it_describes(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/u")
    config = loaded(tmp_path, FULL)
    assert (config.name, config.path, config.directory) == (
        "shop", str(tmp_path / "vz.yml"), str(tmp_path))
    assert list(config.nodes) == ["fra1", "ams1", "nyc1"]
    assert config.nodes["ams1"] == NodeSpec(
        name="ams1", host="ams1", user="deploy", port=22, key=("/home/u/.ssh/id_ed25519",),
        known_hosts="/home/u/.ssh/known_hosts", via="paramiko", groups=(), firewall=False)
    assert config.nodes["nyc1"].firewall and config.groups == {"eu": ["fra1"]}
    assert config.apps["web"] == AppSpec(
        name="web", image=str(tmp_path / "images/web.tar.zst"), build=None, replicas=2,
        nodes=None, env={"LANG": "C.UTF-8"}, secrets=("DB_PASSWORD",),
        volumes={"data": "/var/lib/web"}, ports=(Port(8080, "tcp"),),
        health={"http": "http://127.0.0.1:8080/up", "timeout": 20}, keep=3,
        start={"runtime": "builtin", "log_max": 10 * 1024 ** 2}, release=["/app/migrate"],
        max_unavailable=1, grace=10.0)


def test_an_app_gets_the_defaults_of_the_reference(tmp_path):
    web = app(tmp_path, "image: web.tar.zst\n")
    assert (web.replicas, web.nodes, web.env, web.secrets, web.ports, web.health, web.keep,
            web.start, web.release, web.max_unavailable, web.grace) == (
        None, None, {}, (), (), None, 3, {}, None, 1, 10.0)


def test_apps_may_be_empty(tmp_path):
    assert loaded(tmp_path, NODES + "apps: {}\n").apps == {}
    assert loaded(tmp_path, NODES).apps == {}


def test_the_fleet_name_defaults_to_the_directory_name(tmp_path):
    config = load_config(write(tmp_path / "My Shop_2", NODES))
    assert config.name == "my-shop-2"


def test_a_directory_name_that_makes_no_fleet_name_asks_for_name(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "___", NODES))
    assert caught.value.problems == [
        "___/vz.yml:1: the directory name '___' makes no fleet name: give one with name:"]


def test_a_fleet_name_must_fit_a_dns_label(tmp_path):
    assert problems(tmp_path, "name: Shop_1\n" + NODES) == [
        "vz.yml:1: name: bad fleet name 'Shop_1': use 1 to 63 of a-z, 0-9 and -, starting "
        "with a letter or digit"]


# -- the file itself ---------------------------------------------------------------------


def test_an_unknown_key_is_named_with_its_line_and_the_key_meant(tmp_path):
    assert app_problems(tmp_path, "image: web.tar.zst\nreplica: 2\n") == [
        "vz.yml:6: apps.web.replica: unknown key (did you mean 'replicas'?)"]


def test_an_unknown_key_like_no_known_one_lists_the_keys_allowed_there(tmp_path):
    assert problems(tmp_path, NODES + "ssh: {colour: blue}\n") == [
        "vz.yml:3: ssh.colour: unknown key: use user, port, key, known_hosts, via, "
        "connect_timeout"]


def test_an_unknown_top_level_key_is_refused(tmp_path):
    assert problems(tmp_path, NODES + "app: {}\n") == [
        "vz.yml:3: app: unknown key (did you mean 'apps'?)"]


def test_a_duplicate_key_is_refused_at_the_line_of_the_second(tmp_path):
    assert app_problems(tmp_path, "image: a.tar.zst\nkeep: 2\nimage: b.tar.zst\n") == [
        "vz.yml:7: apps.web.image: duplicate key (first on line 5); keep one"]


def test_a_key_beside_a_merge_key_overrides_the_merged_one(tmp_path):
    config = loaded(tmp_path, """\
        nodes:
          fra1: &base {host: 203.0.113.10, port: 2222}
          ams1: {<<: *base, host: ams1}
        """)
    assert (config.nodes["ams1"].host, config.nodes["ams1"].port) == ("ams1", 2222)


def test_a_yaml_syntax_error_gives_the_line_and_column_of_the_library(tmp_path):
    assert problems(tmp_path, NODES + "apps:\n  web: [a\n  db: {}\n") == [
        "vz.yml:5: YAML syntax error at column 5: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence on line 4)"]


def test_an_alias_loop_is_refused(tmp_path):
    assert problems(tmp_path, NODES + "apps: &a\n  web: *a\n") == [
        "vz.yml:4: an alias refers to a value that contains it (a loop)"]


def test_an_empty_file_says_what_to_put_in_it(tmp_path):
    assert problems(tmp_path, "# nothing yet\n") == [
        "vz.yml:1: the file is empty: give nodes: (or inventory:) and apps:"]


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    assert problems(tmp_path, "- fra1\n") == [
        "vz.yml:1: expected a mapping (key: value), got a list"]


def test_a_file_that_cannot_be_read_says_why(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path / "nope.yml"))
    assert caught.value.problems == ["nope.yml: cannot read it: No such file or directory"]


def test_a_file_outside_the_current_directory_is_named_by_its_absolute_path(tmp_path,
                                                                            monkeypatch):
    path = write(tmp_path, "- x\n")
    monkeypatch.chdir(tmp_path.parent)
    os.mkdir(tmp_path.parent / "elsewhere")
    monkeypatch.chdir(tmp_path.parent / "elsewhere")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].startswith(path + ":1: ")


def test_a_word_where_a_number_belongs_gets_a_plain_message(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nreplicas: two\n") == [
        "vz.yml:6: apps.web.replicas: expected a whole number, got 'two'"]


def test_a_boolean_is_not_a_number(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nkeep: yes\n") == [
        "vz.yml:6: apps.web.keep: expected a whole number, got true"]


def test_a_number_out_of_range_says_the_bound(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nreplicas: 0\n") == [
        "vz.yml:6: apps.web.replicas: must be at least 1, got 0"]


def test_a_wrong_choice_suggests_the_close_one(tmp_path):
    assert problems(tmp_path, NODES + "ssh: {via: openssl}\n") == [
        "vz.yml:3: ssh.via: expected one of paramiko, openssh, got 'openssl' (did you mean "
        "'openssh'?)"]


def test_a_single_value_where_a_list_belongs_says_how_to_write_one(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nrelease: /app/migrate\n") == [
        "vz.yml:6: apps.web.release: expected a list, got '/app/migrate': write "
        "['/app/migrate'] for one"]


def test_every_problem_is_reported_one_per_line_sorted_by_line(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nkeep: 0\ngrace: 0\n",
                        nodes="ssh: {port: 0}\n" + NODES) == [
        "vz.yml:1: ssh.port: must be at least 1, got 0",
        "vz.yml:7: apps.web.keep: must be at least 1, got 0",
        "vz.yml:8: apps.web.grace: must be more than 0, got 0"]


# -- nodes and groups ----------------------------------------------------------------------


def test_a_fleet_needs_a_node(tmp_path):
    assert problems(tmp_path, "apps: {}\n") == [
        "vz.yml:1: no nodes: list them under nodes:, or name an Ansible inventory with "
        "inventory:"]


def test_an_empty_nodes_mapping_is_refused_at_its_line(tmp_path):
    assert problems(tmp_path, "name: shop\nnodes: {}\n") == [
        "vz.yml:2: nodes: is empty: list the fleet's nodes here, or name an Ansible "
        "inventory with inventory:"]


def test_a_node_needs_a_host(tmp_path):
    assert problems(tmp_path, NODES + "  ams1: {user: deploy}\n") == [
        "vz.yml:3: nodes.ams1: missing host: give the node's address, name or ~/.ssh/config "
        "alias"]


def test_a_node_name_must_be_lower_case_letters_digits_and_few_signs(tmp_path):
    assert problems(tmp_path, NODES + "  Ams1: {host: ams1}\n") == [
        "vz.yml:3: nodes.Ams1: bad node name 'Ams1': use 1 to 63 of a-z, 0-9, _ . and -, "
        "starting with a letter or digit"]


def test_no_node_may_be_called_all(tmp_path):
    assert problems(tmp_path, NODES + "  all: {host: x}\n") == [
        "vz.yml:3: nodes.all: 'all' is reserved (nodes: all means every node): give the node "
        "another name"]


def test_a_host_starting_with_a_dash_is_refused(tmp_path):
    assert problems(tmp_path, "nodes:\n  fra1: {host: -oProxyCommand=x}\n") == [
        "vz.yml:2: nodes.fra1.host: bad host '-oProxyCommand=x': give a name, an address or "
        "an ~/.ssh/config alias, without spaces, not starting with -"]


def test_a_group_named_like_a_node_is_refused_at_its_item(tmp_path):
    assert problems(tmp_path, NODES + "  ams1: {host: ams1, groups: [eu, fra1]}\n") == [
        "vz.yml:3: nodes.ams1.groups[1]: node ams1 is in group 'fra1', which is also a "
        "node's name: rename the group"]


def test_groups_list_their_nodes_in_the_order_declared(tmp_path):
    config = loaded(tmp_path, """\
        nodes:
          fra1: {host: a, groups: [eu, all-eu]}
          nyc1: {host: b, groups: [us]}
          ams1: {host: c, groups: [eu, eu]}
        """)
    assert config.groups == {"eu": ["fra1", "ams1"], "all-eu": ["fra1"], "us": ["nyc1"]}
    assert config.nodes["ams1"].groups == ("eu",)


def test_expand_gives_node_names_in_the_order_declared_each_once(tmp_path):
    config = loaded(tmp_path, """\
        nodes:
          fra1: {host: a, groups: [eu]}
          nyc1: {host: b}
          ams1: {host: c, groups: [eu]}
        """)
    assert config.expand(["nyc1", "eu", "ams1"]) == ["fra1", "nyc1", "ams1"]
    assert config.expand("all") == ["fra1", "nyc1", "ams1"]
    assert config.expand("nyc1") == ["nyc1"]


def test_expand_of_an_unknown_name_suggests_the_close_one(tmp_path):
    config = loaded(tmp_path, NODES)
    with pytest.raises(ConfigError) as caught:
        config.expand(["fra2"])
    assert caught.value.problems == ["vz.yml: no node or group named 'fra2' (did you mean "
                                     "'fra1'?)"]


# -- where an app runs ---------------------------------------------------------------------


PLACES = """\
nodes:
  fra1: {host: a, groups: [eu]}
  ams1: {host: b, groups: [eu]}
  nyc1: {host: c}
"""


def test_an_app_without_nodes_or_replicas_wants_one_replica_on_any_node(tmp_path):
    config = loaded(tmp_path, PLACES + "apps:\n  web: {image: w.tar.zst}\n")
    assert config.eligible_nodes("web") == ["fra1", "ams1", "nyc1"]
    assert config.wanted_count("web") == 1


def test_an_app_naming_nodes_without_replicas_wants_one_on_each(tmp_path):
    config = loaded(tmp_path, PLACES + "apps:\n  web: {image: w.tar.zst, nodes: [nyc1, eu]}\n")
    assert config.apps["web"].nodes == ("nyc1", "eu")
    assert config.eligible_nodes("web") == ["fra1", "ams1", "nyc1"]
    assert config.wanted_count("web") is None


def test_an_app_naming_nodes_and_replicas_wants_that_many_among_them(tmp_path):
    config = loaded(tmp_path, PLACES + "apps:\n  web: {image: w.tar.zst, nodes: [eu], "
                                       "replicas: 2}\n")
    assert config.eligible_nodes("web") == ["fra1", "ams1"]
    assert config.wanted_count("web") == 2


def test_an_app_on_all_nodes_wants_one_on_each(tmp_path):
    config = loaded(tmp_path, PLACES + "apps:\n  web: {image: w.tar.zst, nodes: all}\n")
    assert config.apps["web"].nodes == "all"
    assert config.eligible_nodes("web") == ["fra1", "ams1", "nyc1"]
    assert config.wanted_count("web") is None


def test_nodes_all_with_replicas_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nnodes: all\nreplicas: 2\n") == [
        "vz.yml:4: apps.web: nodes: all runs one replica on each node: drop replicas:, or "
        "name the nodes to choose among"]


def test_more_replicas_than_the_nodes_named_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nnodes: [eu]\nreplicas: 3\n",
                        nodes=PLACES) == [
        "vz.yml:9: apps.web.replicas: 3 replicas, but at most one runs on each of the 2 "
        "nodes nodes: names"]


def test_more_replicas_than_the_fleet_has_nodes_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nreplicas: 4\n", nodes=PLACES) == [
        "vz.yml:8: apps.web.replicas: 4 replicas, but at most one runs on each of the "
        "fleet's 3 nodes"]


def test_an_unknown_name_in_nodes_is_refused_at_its_item(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nnodes: [eu, nyk1]\n", nodes=PLACES) == [
        "vz.yml:8: apps.web.nodes[1]: no node or group named 'nyk1' (did you mean 'nyc1'?)"]


def test_one_name_for_nodes_must_be_a_list(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nnodes: fra1\n") == [
        "vz.yml:6: apps.web.nodes: expected a list of node or group names, or all, got "
        "'fra1': write [fra1] for one"]


def test_all_inside_a_nodes_list_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nnodes: [all]\n") == [
        "vz.yml:6: apps.web.nodes: all means every node: write nodes: all, not a list with it"]


def test_asking_about_an_unknown_app_suggests_the_close_one(tmp_path):
    config = loaded(tmp_path, NODES + "apps:\n  web: {image: w.tar.zst}\n")
    with pytest.raises(ConfigError, match=r"no app named 'wbe' \(did you mean 'web'\?\)"):
        config.wanted_count("wbe")


# -- an app's fields -----------------------------------------------------------------------


def test_an_app_name_is_checked(tmp_path):
    assert problems(tmp_path, NODES + "apps:\n  Web: {image: w.tar.zst}\n") == [
        "vz.yml:4: apps.Web: bad app name 'Web': use 1 to 63 of a-z, 0-9, _ . and -, "
        "starting with a letter or digit"]


def test_an_app_needs_image_or_build(tmp_path):
    assert app_problems(tmp_path, "keep: 2\n") == [
        "vz.yml:4: apps.web: give image: (a file) or build: (a recipe), one of them"]


def test_an_app_may_not_have_both_image_and_build(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nbuild: {args: [/bin/web], ldd: [/bin/web]}"
                                  "\n") == [
        "vz.yml:4: apps.web: give image: (a file) or build: (a recipe), not both"]


def test_the_image_path_is_relative_to_the_directory_of_vz_yml(tmp_path, monkeypatch):
    path = write(tmp_path / "fleet", NODES + "apps:\n  web: {image: images/w.tar.zst}\n")
    monkeypatch.chdir("/")
    assert load_config(path).apps["web"].image == str(tmp_path / "fleet/images/w.tar.zst")


@pytest.mark.parametrize("written, port", [
    ("8080", Port(8080, "tcp")), ("8080/tcp", Port(8080, "tcp")), ("53/udp", Port(53, "udp")),
    ("'8080'", Port(8080, "tcp"))])
def test_a_port_is_a_number_or_number_slash_protocol(tmp_path, written, port):
    assert app(tmp_path, f"image: w.tar.zst\nports: [{written}]\n").ports == (port,)


def test_a_port_shows_as_number_slash_protocol():
    assert str(Port(53, "udp")) == "53/udp"


def test_a_port_out_of_range_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nports: [80, 70000]\n") == [
        "vz.yml:6: apps.web.ports[1]: port 70000 is not from 1 to 65535"]


def test_a_port_that_is_not_one_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nports: [8080/sctp]\n") == [
        "vz.yml:6: apps.web.ports[0]: expected a port such as 8080, 8080/tcp or 53/udp, got "
        "'8080/sctp'"]


def test_a_port_listed_twice_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nports:\n  - 8080/tcp\n  - 53/udp\n"
                                  "  - 8080\n") == [
        "vz.yml:9: apps.web.ports[2]: 8080/tcp is listed twice"]


def test_the_same_number_over_tcp_and_udp_is_two_ports(tmp_path):
    assert len(app(tmp_path, "image: w.tar.zst\nports: [53, 53/udp]\n").ports) == 2


@pytest.mark.parametrize("spec", ["{tcp: 8080}", "{http: 'http://127.0.0.1:8080/up', "
                                  "interval: 1, min_uptime: 3}", "{cmd: [/bin/check, -q]}"])
def test_a_health_check_is_the_node_s_spec_with_the_keys_given(tmp_path, spec):
    import yaml
    assert app(tmp_path, f"image: w.tar.zst\nhealth: {spec}\n").health == yaml.safe_load(spec)


def test_a_health_check_with_two_kinds_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nhealth: {tcp: 80, cmd: [/bin/true]}\n") == [
        "vz.yml:6: apps.web.health: give exactly one of tcp:, http: or cmd:, not tcp and cmd"]


def test_a_health_check_of_no_kind_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nhealth: {timeout: 5}\n") == [
        "vz.yml:6: apps.web.health: give exactly one of tcp:, http: or cmd:"]


def test_a_health_check_the_node_would_refuse_is_refused_here(tmp_path):
    problem, = app_problems(tmp_path, "image: w.tar.zst\nhealth: {http: 'http://example.com/'}\n")
    assert problem.startswith("vz.yml:6: apps.web.health: health http must be a URL on this "
                              "node with its port")


def test_a_health_time_must_be_positive(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nhealth: {tcp: 80, timeout: 0}\n") == [
        "vz.yml:6: apps.web.health.timeout: must be more than 0, got 0"]


@pytest.mark.parametrize("written, size", [
    ("10MiB", 10 * 1024 ** 2), ("10M", 10 * 1024 ** 2), ("10mb", 10 * 1024 ** 2),
    ("512k", 512 * 1024), ("100KB", 100 * 1024), ("1G", 1024 ** 3), ("1.5M", 1536 * 1024),
    ("2048", 2048), ("4096B", 4096), ("'64 KiB'", 64 * 1024)])
def test_log_max_is_a_size_in_bytes_or_powers_of_1024(tmp_path, written, size):
    web = app(tmp_path, f"image: w.tar.zst\nstart: {{log_max: {written}}}\n")
    assert web.start == {"log_max": size}


def test_a_size_that_is_not_one_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nstart: {log_max: 10 megs}\n") == [
        "vz.yml:6: apps.web.start.log_max: expected a size such as 10MiB, 512k or 1048576 "
        "(bytes), got '10 megs'"]


@pytest.mark.parametrize("written", ["512", "2G"])
def test_a_size_outside_what_the_node_takes_is_refused(tmp_path, written):
    problem, = app_problems(tmp_path, f"image: w.tar.zst\nstart: {{log_max: {written}}}\n")
    assert "apps.web.start.log_max: must be from 1KiB to 1GiB" in problem


def test_start_holds_only_the_options_given(tmp_path):
    web = app(tmp_path, "image: w.tar.zst\nstart: {runtime: crun, runtime_args: [--debug], "
                        "log_keep: 0, syslog: false}\n")
    assert web.start == {"runtime": "crun", "runtime_args": ["--debug"], "log_keep": 0,
                         "syslog": False}


def test_an_env_value_that_yaml_reads_as_a_number_must_be_quoted(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nenv: {PORT: 8080}\n") == [
        "vz.yml:6: apps.web.env.PORT: expected text, got 8080: quote it ('8080')"]


def test_an_env_value_that_yaml_reads_as_a_boolean_must_be_quoted(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nenv:\n  DEBUG: yes\n") == [
        "vz.yml:7: apps.web.env.DEBUG: expected text, got true (YAML reads an unquoted yes, "
        "no, on, off, true or false as a boolean): quote it"]


def test_an_env_name_must_be_an_environment_variable_name(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nenv: {DB-HOST: db}\n") == [
        "vz.yml:6: apps.web.env.DB-HOST: 'DB-HOST' is not an environment variable name: use "
        "letters, digits and _, not starting with a digit"]


def test_a_secret_name_must_be_an_environment_variable_name(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nsecrets: [DB_PASSWORD, 2FA]\n") == [
        "vz.yml:6: apps.web.secrets[1]: '2FA' is not an environment variable name: use "
        "letters, digits and _, not starting with a digit"]


def test_a_secret_listed_twice_or_also_in_env_is_refused(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nenv: {A: x}\nsecrets: [B, A, B]\n") == [
        "vz.yml:7: apps.web.secrets[2]: B is listed twice",
        "vz.yml:7: apps.web.secrets[1]: A is in env: too: keep one"]


def test_a_volume_path_must_be_absolute_in_the_container(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nvolumes: {data: var/lib}\n") == [
        "vz.yml:6: apps.web.volumes: volume data: 'var/lib' must be an absolute path in the "
        "container, without '..', and not / itself"]


def test_a_release_command_must_name_a_program(tmp_path):
    assert app_problems(tmp_path, "image: w.tar.zst\nrelease: []\n") == [
        "vz.yml:6: apps.web.release: release must be an argv list of 1 to 256 strings, the "
        "first naming the program"]


# -- build -----------------------------------------------------------------------------------


def test_build_is_a_recipe_of_the_builder(tmp_path):
    web = app(tmp_path, "build: {args: [/usr/sbin/mini_httpd, -D], ldd: [/usr/sbin/mini_httpd],"
                        " readonly: true}\n")
    assert web.build == Recipe(args=["/usr/sbin/mini_httpd", "-D"],
                               ldd=["/usr/sbin/mini_httpd"], readonly=True)
    assert isinstance(web.build, Recipe) and web.image is None


def test_build_takes_exactly_the_fields_of_the_recipe():
    from vzmaster.fleet.schema import BuildModel
    assert list(BuildModel.model_fields) == list(Recipe._fields)


def test_an_unknown_build_field_is_refused_with_the_one_meant(tmp_path):
    assert app_problems(tmp_path, "build:\n  args: [/bin/web]\n  libray_path: [lib]\n") == [
        "vz.yml:7: apps.web.build.libray_path: unknown key (did you mean 'library_path'?)"]


def test_the_files_of_a_build_are_relative_to_the_directory_of_vz_yml(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/u")
    path = write(tmp_path / "fleet", NODES + textwrap.dedent("""\
        apps:
          web:
            build:
              args: [/bin/web]
              ldd: [bin/web, busybox, /usr/bin/env]
              add: [etc/web.conf:/etc/web.conf, static]
              spec: web.spec
              from_root: ~/roots/base.tar
              library_path: [lib]
              seccomp: seccomp.json
              binds: [/srv/data:/data]
        """))
    monkeypatch.chdir("/")
    build = load_config(path).apps["web"].build
    here = str(tmp_path / "fleet")
    assert build.ldd == [here + "/bin/web", "busybox", "/usr/bin/env"]
    assert build.add == [here + "/etc/web.conf:/etc/web.conf", here + "/static"]
    assert (build.spec, build.from_root, build.library_path, build.seccomp, build.binds) == (
        here + "/web.spec", "/home/u/roots/base.tar", [here + "/lib"], here + "/seccomp.json",
        ["/srv/data:/data"])


def test_the_named_seccomp_profiles_of_a_build_are_not_paths(tmp_path):
    web = app(tmp_path, "build: {args: [/bin/web], seccomp: unconfined}\n")
    assert web.build.seccomp == "unconfined"


# -- SSH -----------------------------------------------------------------------------------


def test_key_paths_are_relative_to_vz_yml_and_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/u")
    config = loaded(tmp_path, """\
        ssh: {key: keys/deploy, known_hosts: known_hosts}
        nodes:
          fra1: {host: a}
          ams1: {host: b, key: [~/.ssh/a, /etc/vz/b], known_hosts: ~/kh}
        """)
    assert config.nodes["fra1"].key == (str(tmp_path / "keys/deploy"),)
    assert config.nodes["fra1"].known_hosts == str(tmp_path / "known_hosts")
    assert config.nodes["ams1"].key == ("/home/u/.ssh/a", "/etc/vz/b")
    assert config.nodes["ams1"].known_hosts == "/home/u/kh"


def test_node_options_merge_the_node_over_the_ssh_defaults(tmp_path):
    config = loaded(tmp_path, """\
        ssh: {user: root, port: 2222, via: openssh, connect_timeout: 4}
        nodes:
          fra1: {host: 203.0.113.10, port: 22}
        """)
    assert config.node_options("fra1") == SSHOptions(
        host="203.0.113.10", user="root", port=22, key_filename=None, known_hosts=None,
        via="openssh", connect_timeout=4.0)


def test_node_options_leave_unset_fields_to_ssh_and_time_out_in_10_s(tmp_path):
    options = loaded(tmp_path, NODES).node_options("fra1")
    assert (options.user, options.port, options.key_files, options.via,
            options.connect_timeout) == (None, None, (), "paramiko", 10.0)


def test_node_options_take_a_connect_timeout_of_the_caller(tmp_path):
    assert loaded(tmp_path, NODES).node_options("fra1", connect_timeout=2).connect_timeout == 2


def test_node_options_of_an_unknown_node_suggest_the_close_one(tmp_path):
    with pytest.raises(ConfigError, match=r"no node named 'fra' \(did you mean 'fra1'\?\)"):
        loaded(tmp_path, NODES).node_options("fra")


# -- secrets -------------------------------------------------------------------------------


SECRETS = NODES + "apps:\n  web: {image: w.tar.zst, secrets: [DB_PASSWORD, API_KEY]}\n"


def test_secrets_come_from_the_environment(tmp_path):
    config = loaded(tmp_path, SECRETS, environ={"DB_PASSWORD": "pw", "API_KEY": "k"})
    assert config.secret_values("web") == {"DB_PASSWORD": "pw", "API_KEY": "k"}


def test_secrets_come_from_dot_env_beside_vz_yml(tmp_path, monkeypatch):
    write(tmp_path / "fleet", textwrap.dedent("""\
        # the shop's secrets

        export DB_PASSWORD="p#w 'x'"
          API_KEY = 'k=1 "2"'
        OTHER=plain value # kept
        """), name=".env")
    path = write(tmp_path / "fleet", SECRETS)
    monkeypatch.chdir("/")
    config = load_config(path, environ={})
    assert config.secret_values("web") == {"DB_PASSWORD": "p#w 'x'", "API_KEY": 'k=1 "2"'}
    assert read_dotenv(str(tmp_path / "fleet/.env"))["OTHER"] == "plain value # kept"


def test_the_environment_wins_over_dot_env(tmp_path):
    write(tmp_path, "DB_PASSWORD=file\nAPI_KEY=file\n", name=".env")
    config = loaded(tmp_path, SECRETS, environ={"DB_PASSWORD": "env"})
    assert config.secret_values("web") == {"DB_PASSWORD": "env", "API_KEY": "file"}


def test_a_missing_secret_names_itself_its_app_and_both_places_looked(tmp_path):
    write(tmp_path, "DB_PASSWORD=file\n", name=".env")
    config = loaded(tmp_path, SECRETS)
    with pytest.raises(ConfigError) as caught:
        config.secret_values("web")
    assert caught.value.problems == [
        "vz.yml:4: apps.web.secrets[1]: secret API_KEY of app web is not set: it is not in "
        "the environment, and .env has no line for it"]


def test_a_missing_secret_without_dot_env_says_there_is_none(tmp_path):
    config = loaded(tmp_path, SECRETS, environ={"API_KEY": "k"})
    with pytest.raises(ConfigError, match="DB_PASSWORD of app web is not set: it is not in "
                                          "the environment, and there is no .env$"):
        config.secret_values("web")


def test_a_malformed_dot_env_line_is_refused_without_showing_it(tmp_path):
    write(tmp_path, "DB_PASSWORD hunter2\nAPI_KEY='k\n", name=".env")
    config = loaded(tmp_path, SECRETS)
    with pytest.raises(ConfigError) as caught:
        config.secret_values("web")
    assert caught.value.problems == [
        ".env:1: expected NAME=VALUE (the line is not shown: it may hold a secret)",
        ".env:2: API_KEY: the quote is not closed on this line (values are one line each)"]
    assert "hunter2" not in caught.value.message


def test_a_dot_env_others_may_read_is_used_with_a_warning(tmp_path, caplog):
    os.chmod(write(tmp_path, "DB_PASSWORD=pw\nAPI_KEY=k\n", name=".env"), 0o644)
    with caplog.at_level(logging.WARNING, logger="vzmaster.fleet"):
        assert loaded(tmp_path, SECRETS).secret_values("web")["API_KEY"] == "k"
    assert ".env holds secrets but its mode is 644: chmod 600 it" in caplog.text


def test_a_private_dot_env_is_used_without_a_warning(tmp_path, caplog):
    os.chmod(write(tmp_path, "DB_PASSWORD=pw\nAPI_KEY=k\n", name=".env"), 0o600)
    with caplog.at_level(logging.WARNING, logger="vzmaster.fleet"):
        loaded(tmp_path, SECRETS).secret_values("web")
    assert caplog.text == ""


def test_secret_values_stay_out_of_the_fleet_s_repr(tmp_path):
    config = loaded(tmp_path, SECRETS, environ={"DB_PASSWORD": "hunter2", "API_KEY": "k"})
    config.secret_values("web")
    assert "hunter2" not in repr(config)


# -- finding vz.yml ------------------------------------------------------------------------


def test_an_explicit_file_wins_over_vz_config_and_the_directories(tmp_path):
    write(tmp_path, NODES)
    other = write(tmp_path, NODES, name="other.yml")
    assert find_config("other.yml", {"VZ_CONFIG": "vz.yml"}, str(tmp_path)) == other


def test_vz_config_wins_over_the_directories(tmp_path):
    write(tmp_path, NODES)
    other = write(tmp_path, NODES, name="conf/other.yml")
    assert find_config(None, {"VZ_CONFIG": "conf/other.yml"}, str(tmp_path)) == other


def test_an_empty_vz_config_counts_as_unset(tmp_path):
    path = write(tmp_path, NODES)
    assert find_config(None, {"VZ_CONFIG": ""}, str(tmp_path)) == path


def test_vz_yml_is_found_in_a_directory_above(tmp_path):
    path = write(tmp_path, NODES)
    os.makedirs(tmp_path / "a/b")
    assert find_config(None, {}, str(tmp_path / "a/b")) == path


def test_vz_yaml_is_found_too(tmp_path):
    path = write(tmp_path, NODES, name="vz.yaml")
    assert find_config(None, {}, str(tmp_path)) == path


def test_vz_yml_and_vz_yaml_side_by_side_are_refused(tmp_path):
    write(tmp_path, NODES)
    write(tmp_path, NODES, name="vz.yaml")
    with pytest.raises(ConfigError, match="both .*vz.yml and .*vz.yaml: which one is meant"):
        find_config(None, {}, str(tmp_path))


def test_no_vz_yml_anywhere_says_where_it_looked_and_how_to_give_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        find_config(None, {}, str(tmp_path))
    assert caught.value.problems == [
        f"no vz.yml (or vz.yaml) in {tmp_path} or any directory above it: write one, or give "
        "its path with -c FILE or VZ_CONFIG=FILE"]


@pytest.mark.parametrize("explicit, environ, told", [
    ("gone.yml", {}, "-c gone.yml: no such file"),
    (None, {"VZ_CONFIG": "gone.yml"}, "VZ_CONFIG gone.yml: no such file"),
    (".", {}, "-c .: is a directory: give the file")])
def test_a_file_given_that_is_not_there_is_refused(tmp_path, explicit, environ, told):
    with pytest.raises(ConfigError) as caught:
        find_config(explicit, environ, str(tmp_path))
    assert caught.value.problems == [told]


def test_load_finds_and_loads(tmp_path):
    write(tmp_path, NODES)
    os.makedirs(tmp_path / "sub")
    config = load(environ={}, cwd=str(tmp_path / "sub"))
    assert isinstance(config, FleetConfig) and list(config.nodes) == ["fra1"]


# -- the error -------------------------------------------------------------------------------


def test_a_config_error_keeps_its_problems_and_joins_them_in_its_message():
    error = ConfigError(["vz.yml:1: a", "vz.yml:2: b"])
    assert (error.problems, error.message) == (["vz.yml:1: a", "vz.yml:2: b"],
                                               "vz.yml:1: a\nvz.yml:2: b")


def test_a_config_error_pickles_back_with_its_problems():
    back = pickle.loads(pickle.dumps(ConfigError(["vz.yml:1: a", "vz.yml:2: b"])))
    assert back.problems == ["vz.yml:1: a", "vz.yml:2: b"]
